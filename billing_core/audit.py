"""The audit log: who did what, when, filterable.

System admins read every entry (or one organization's); an org admin reads
their organization's entries only. Each read is a stored function that
takes the acting user and authorizes it itself (`ledger_authorize_scope`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import pandas as pd
from sqlalchemy.engine import Engine

from billing_core.database import fetch, fetch_frame
from billing_core.errors import InvalidInput

MAX_LIMIT = 5000


@dataclass(frozen=True)
class AuditPage:
    """Matching audit entries, newest first, and how many matched in all."""

    entries: pd.DataFrame
    total: int


@dataclass(frozen=True)
class AuditChoices:
    """What the filters can offer: the actions and actors found in the log in scope."""

    actions: list[str]
    actors: pd.DataFrame  # actor_id, actor_name


# who an entry with no acting user was written by: a trusted job or the operator's CLI
OPERATOR = "operator (no user: CLI or scheduled job)"


def _start_of(day: date | datetime | None) -> datetime | None:
    if day is None or isinstance(day, datetime):
        return day
    return datetime.combine(day, time.min, tzinfo=UTC)


def _end_of(day: date | datetime | None) -> datetime | None:
    """The first moment after `day` (a date means the whole day, UTC); a datetime is taken as is."""
    if day is None or isinstance(day, datetime):
        return day
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


def entries(
    db: Engine,
    actor_id: str,
    org_id: str | None = None,
    *,
    by_actor: str | None = None,
    actions: Sequence[str] | None = None,
    since: date | datetime | None = None,
    until: date | datetime | None = None,
    limit: int | None = 500,
    offset: int = 0,
) -> AuditPage:
    """Audit entries newest first: one organization's (its admins) or all (system admins), filtered.

    `by_actor` keeps one acting user's entries, `actions` the listed actions;
    `since` / `until` are inclusive days (UTC) or exact moments. `limit` entries
    (None: every matching one, for an export) after skipping the newest `offset`.
    """
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"The number of entries to show must be between 1 and {MAX_LIMIT:,} (got {limit}).")
    if offset < 0:
        raise InvalidInput(f"The first entry to show cannot be before the first one (got offset {offset}).")
    start, end = _start_of(since), _end_of(until)
    if start is not None and end is not None and start >= end:
        raise InvalidInput("The start date is after the end date: pick a start on or before the end.")
    params = {"actor_id": actor_id, "org_id": org_id, "by_actor": by_actor, "actions": list(actions or ()), "start": start, "end": end,
              "limit": limit, "offset": offset}
    table = fetch_frame(
        db,
        "select * from audit_entries(:actor_id, :org_id, :by_actor, :actions, :start, :end, :limit, :offset)",
        params,
    )
    if table.empty and offset > 0:  # a page past the end: the count of all matches still answers
        total = int(fetch(
            db, "select count(*) from audit_entries(:actor_id, :org_id, :by_actor, :actions, :start, :end, null, 0)",
            params,
        )[0][0])
    else:
        total = int(table.matching.iloc[0]) if not table.empty else 0  # every row carries the count of all matches
    frame = table.drop(columns="matching")
    frame["actor_name"] = frame["actor_name"].where(frame["actor_id"].notna(), OPERATOR)
    return AuditPage(frame, total)


def choices(db: Engine, actor_id: str, org_id: str | None = None) -> AuditChoices:
    """The actions and acting users present in the log, in the same scope as `entries`."""
    params = {"actor_id": actor_id, "org_id": org_id}
    actions = fetch(db, "select action from audit_actions(:actor_id, :org_id)", params)
    actors = fetch_frame(db, "select actor_id, actor_name from audit_actors(:actor_id, :org_id)", params)
    return AuditChoices([row.action for row in actions], actors)
