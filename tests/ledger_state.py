"""The ledger as tests see it: snapshots (to prove a refused call changed nothing) and `billing verify`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from billing_core import ledger
from billing_core.database import fetch

_TABLES = (
    "organizations",
    "users",
    "organization_members",
    "credit_pools",
    "user_credit_allocations",
    "credit_allocation_events",
    "credit_usage_attribution",
    "org_billing_history",
    "organization_subscriptions",
    "audit_log",
    "credit_lots",
    "billing_periods",
    "credit_alerts",
    "credit_orders",
    "credit_requests",
)


def snapshot(db: Engine) -> dict[str, Any]:
    """Every row of every ledger table, as text, in a stable order."""
    # table names come from the constant above, never from input
    statement = " union all ".join(
        f"select '{table}' as tbl, t::text as row from {table} t" for table in _TABLES
    )
    rows = fetch(db, f"select tbl, array_agg(row order by row) from ({statement}) s group by tbl")
    return {table: rows_ for table, rows_ in rows}


def billing_verify(url: str) -> subprocess.CompletedProcess[str]:
    """`billing verify` as a separate process against the database at `url`."""
    exe = Path(sys.executable).with_name("billing")
    return subprocess.run(
        [str(exe), "verify"],
        check=False,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def refused(db, error: type[Exception], words: str, action) -> str:
    """Run `action`, expect `error` whose message contains `words`, and prove nothing changed."""
    before = snapshot(db)
    with pytest.raises(error) as caught:
        action()
    assert words.lower() in str(caught.value).lower(), str(caught.value)
    assert snapshot(db) == before
    assert ledger.verify(db) == []
    return str(caught.value)
