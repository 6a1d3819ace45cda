"""Low-balance alerts: an allocation past 90% used, a pool below its threshold.

The database raises them (sql/routines/094_alerts.sql); here they are listed
and acknowledged or resolved, with the acting user's role checked in SQL.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy.engine import Engine

from billing_core.database import call, fetch_frame


def org_alerts(db: Engine, actor_id: str, org_id: str, *, include_resolved: bool = False) -> pd.DataFrame:
    """The organization's alerts, newest first; unresolved ones only unless asked (org admins)."""
    return fetch_frame(
        db,
        "select * from credit_alerts_of(:org_id, :actor_id, :all)",
        {"org_id": org_id, "actor_id": actor_id, "all": include_resolved},
    )


def my_alerts(db: Engine, actor_id: str, org_id: str) -> pd.DataFrame:
    """The acting member's own unresolved alerts in the organization, newest first."""
    return fetch_frame(db, "select * from my_credit_alerts(:org_id, :actor_id)", {"org_id": org_id, "actor_id": actor_id})


def acknowledge(db: Engine, actor_id: str | None, org_id: str, alert_id: int) -> None:
    """Mark an alert as seen (org admins, or the member it is about)."""
    call(db, "select acknowledge_credit_alert(:org_id, :alert_id, :actor_id)",
         {"org_id": org_id, "alert_id": alert_id, "actor_id": actor_id})


def resolve(db: Engine, actor_id: str | None, org_id: str, alert_id: int) -> None:
    """Close an alert (org admins, or the member it is about)."""
    call(db, "select resolve_credit_alert(:org_id, :alert_id, :actor_id)",
         {"org_id": org_id, "alert_id": alert_id, "actor_id": actor_id})
