"""Role checks run beside a read, for the reads whose stored function does not take the actor yet.

The rules live in SQL (`ledger_authorize`). The way a read is authorized is by
its stored function: it takes the actor and calls `ledger_authorize` itself,
as writes do (reports, organizations, auth, pricing, charging, orders). What
still passes `check`/`org_checks` to `fetch(checks=...)` (usage, analytics,
audit, periods, alerts) chooses the required role in Python: move each such
read into a function that takes the actor, then this module goes.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy.engine import Engine

from billing_core.database import call
from billing_core.errors import PermissionDenied

Role = Literal["system_admin", "admin", "member"]


def check(actor_id: str, org_id: str | None, required: Role) -> tuple[str, dict[str, Any]]:
    """A check statement for `fetch(checks=...)`: raises PermissionDenied unless allowed."""
    if not actor_id:
        # in SQL a null actor is a trusted service; a person's call always names someone
        raise PermissionDenied("No acting user: log in first.")
    return (
        "select ledger_authorize(:actor_id, :org_id, :required)",
        {"actor_id": actor_id, "org_id": org_id, "required": required},
    )


def org_checks(actor_id: str, org_id: str, required: Role) -> list[tuple[str, dict[str, Any]]]:
    """Checks for a read of one organization: it exists (NotFound), then the actor has the role."""
    return [("select ledger_require_org(:org_id)", {"org_id": org_id}), check(actor_id, org_id, required)]


def role_in(db: Engine, actor_id: str, org_id: str | None) -> str | None:
    """The actor's role in the organization: 'system_admin', 'admin', 'member' or None."""
    return call(db, "select ledger_role_in(:actor_id, :org_id)", {"actor_id": actor_id, "org_id": org_id})
