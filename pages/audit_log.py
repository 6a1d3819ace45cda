"""Audit log: who did what, when, a page at a time; every matching entry exportable as CSV. System admins see
every organization; org admins their own (the scope is checked in SQL on every read)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd
import streamlit as st

import pages
from billing_core import audit, organizations
from billing_core.errors import BillingError
from pages import kit
from pages.kit.session import Screen

PAGE_SIZES = [50, 100, 250, 500]
COLUMNS = {
    "created_at": ("When (UTC)", kit.datetime_column),
    "org_name": ("Organization", kit.text_column),
    "org_id": ("Organization id", kit.text_column),
    "actor_name": ("Who", kit.text_column),
    "actor_id": ("User id", kit.text_column),
    "action": ("Action", kit.text_column),
    "target_type": ("Target", kit.text_column),
    "target_id": ("Target id", kit.text_column),
    "details": ("Details", kit.text_column),
}


@dataclass(frozen=True)
class Filters:
    """Which entries: one organization's (None: all) and who, which actions, between which UTC days."""

    org_id: str | None
    by_actor: str | None
    actions: tuple[str, ...]
    since: date | None
    until: date | None

    def query(self) -> dict[str, Any]:
        """The filters as audit.entries takes them."""
        return {"by_actor": self.by_actor, "actions": self.actions, "since": self.since, "until": self.until}


def render(screen: Screen) -> None:
    """The Audit log screen."""
    st.title("Audit log")
    scope = scope_section(screen)
    try:
        choices = kit.read(screen.db, audit.choices, screen.actor_id, scope)  # org admins of `scope` only
    except BillingError as exc:
        kit.refuse(exc)
    filters = filters_section(choices, scope)
    entries_section(screen, filters)


def scope_section(screen: Screen) -> str | None:
    """Which organization's log: the one chosen at the top of the page; a system admin may read every one's."""
    name = organization_name(screen)
    if screen.roles.is_system_admin:
        every = kit.md_text(f"Every organization's entries (and actions outside any), not only {name}'s")
        if screen.org_id is None or st.toggle(every, key="audit_all"):  # a label is markdown: the name as text
            st.caption("Entries of every organization, and actions outside any.")
            return None
    elif screen.org_id is None:
        kit.refuse("You belong to no organization: there is no audit log to show.")
    st.caption(kit.md_text(f"Entries of {name} (choose another organization at the top of the page)."))
    return screen.org_id


def organization_name(screen: Screen) -> str | None:
    """The chosen organization's name (its id when the actor is not a member: a system admin)."""
    if screen.org_id is None:
        return None
    member = next((m.org_name for m in screen.roles.memberships if m.org_id == screen.org_id), None)
    if member is not None or not screen.roles.is_system_admin:  # not a member: the log's read refuses them
        return member or screen.org_id
    orgs = kit.read(screen.db, organizations.organizations, screen.actor_id)
    return next(iter(orgs[orgs.org_id == screen.org_id].name), screen.org_id)


def filters_section(choices: audit.AuditChoices, scope: str | None) -> Filters:
    """Who, which actions, between which days."""
    actors = choices.actors
    actor_names = dict(zip(actors.actor_id, actors.actor_name + " (" + actors.actor_id + ")", strict=True))
    left, middle, right = st.columns(3)
    by_actor = left.selectbox("Who", [None, *actor_names], key="audit_actor",
                              format_func=lambda user_id: "Anyone" if user_id is None else actor_names[user_id])
    actions = middle.multiselect("Action", choices.actions, key="audit_actions", placeholder="All actions",
                                 format_func=action_words)
    dates = right.date_input("Between (UTC days)", value=(), key="audit_dates", format="YYYY-MM-DD")
    return Filters(scope, by_actor, tuple(actions), dates[0] if len(dates) >= 1 else None,
                   dates[1] if len(dates) == 2 else None)


def entries_section(screen: Screen, filters: Filters) -> None:
    """One page of the matching entries, newest first, where it sits among them, and the export of them all."""
    size = st.session_state.get("audit_page_size", PAGE_SIZES[0])
    if st.session_state.get("_audit_filters") != filters:  # other filters: back to their first page
        st.session_state["_audit_filters"] = filters
        st.session_state["audit_page"] = 1
    page = st.session_state.get("audit_page") or 1
    try:
        found = kit.read(screen.db, audit.entries, screen.actor_id, filters.org_id, **filters.query(), limit=size,
                         offset=(page - 1) * size)
    except BillingError as exc:
        kit.refuse(exc)
    last = max(1, -(-found.total // size))
    if page > last:  # fewer entries than when this page was chosen: the last page there is
        st.session_state["audit_page"] = page = last
        found = kit.read(screen.db, audit.entries, screen.actor_id, filters.org_id, **filters.query(), limit=size,
                         offset=(page - 1) * size)
    if found.total:
        first = (page - 1) * size + 1
        st.caption(f"Showing {first:,}–{first + len(found.entries) - 1:,} of "
                   f"{kit.counted(found.total, 'matching entry', 'matching entries')}, newest first.")
    kit.table(shown_entries(found.entries), {name: column(label) for name, (label, column) in COLUMNS.items()},
              key="audit_entries", empty="No audit entry matches these filters.")
    size_col, page_col, export_col = st.columns(3, vertical_alignment="bottom")
    size_col.selectbox("Entries per page", PAGE_SIZES, key="audit_page_size")
    page_col.number_input(f"Page (of {last:,})", min_value=1, max_value=last, step=1, key="audit_page")
    if found.total:
        export_col.download_button(
            f"Download all {kit.counted(found.total, 'entry', 'entries')} (CSV)",
            lambda: export_csv(screen, filters), file_name="audit_log.csv", mime="text/csv", key="audit_csv",
        )


def export_csv(screen: Screen, filters: Filters) -> bytes:
    """Every entry matching `filters` (not only the page shown) as CSV with the screen's columns, formula-safe."""
    everything = audit.entries(screen.db, screen.actor_id, filters.org_id, **filters.query(), limit=None)
    frame = shown_entries(everything.entries)[list(COLUMNS)]
    return kit.csv_bytes(frame.rename(columns={name: label for name, (label, _) in COLUMNS.items()}))


def shown_entries(entries: pd.DataFrame) -> pd.DataFrame:
    """The entries with their action, target and details in words (display and export)."""
    return entries.assign(
        org_name=entries.org_name.fillna("—"),
        org_id=entries.org_id.fillna("—"),
        actor_id=entries.actor_id.fillna("—"),
        target_id=entries.target_id.fillna("—"),
        action=entries.action.map(action_words),
        target_type=entries.target_type.map(lambda kind: kit.term(kind) if kind else "—"),
        details=entries.details.map(details_words),
    )


def action_words(action: str) -> str:
    """'plan.version_created' -> 'plan: version created' (or the words kit.term has for it)."""
    if action in kit.WORDS:
        return kit.term(action)
    subject, _, verb = action.partition(".")
    return f"{kit.term(subject)}: {kit.term(verb)}" if verb else kit.term(subject)


def details_words(details: str | None) -> str:
    """An entry's details as 'name: value; name: value' (nested values as compact text)."""
    try:
        values = json.loads(details) if details else {}
    except ValueError:
        return str(details)
    if not isinstance(values, dict):
        return str(values)
    return "; ".join(f"{kit.term(key)}: {shown_value(value)}" for key, value in values.items()) or "—"


def shown_value(value: Any) -> str:
    """One detail's value as text: nothing as '—', lists and objects compact."""
    if value is None:
        return "—"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(", ", ": "), default=str)
    return str(value)


if __name__ == "__main__":
    pages.run_app()  # Streamlit's old pages/ mode opened this file by its URL: the app, with its login, instead
