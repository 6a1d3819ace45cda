"""The Pricing screen (system admins) under AppTest: figures from a known setup, who may open it, each dialog's
save and refusals, text shown as text, and the calculator against billing_core.pricing.calculator.

Known setup: the seed prices of migration 0009 (gpt-4o $0.0025 / $0.01 per 1,000 input / output tokens,
gpt-4o-mini $0.00015 / $0.0006, dall-e-3 $0.04 per image; company_enrichment 50, contact_lookup 10,
intelligence_cache_lookup 2 credits; markup 1.5, BYOK fee 1 credit, holds 900 s; packages Starter 10K for $10,
Growth 50K + 2,500 for $50, Scale 200K + 20,000 for $200, Enterprise 1M + 150,000 for $1,000) and the plan
catalogue (Starter and Platform: markup; BYOK: passthrough; Hybrid and Enterprise: mixed).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from streamlit.testing.v1 import AppTest

from billing_core import ledger, organizations, pricing
from billing_core.database import fetch
from billing_core.pricing import Usage
from tests.ledger_state import billing_verify, snapshot
from tests.screen_testing import dataframe, errors, no_html_allowed, open_page, plain

D = Decimal
PRICING_TABLES = ("model_prices", "service_prices", "platform_pricing_rules", "org_pricing_overrides",
                  "credit_packages")


@pytest.fixture
def setup(db, db_url, monkeypatch):
    """root (system admin); acme with ada (admin) and mia (member)."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    organizations.create_user(db, None, "root", "root@example.com", "Root", is_system_admin=True)
    organizations.create_organization(db, None, "acme", "Acme <b>Inc</b>")
    for user_id, role in (("ada", "admin"), ("mia", "member")):
        organizations.create_user(db, None, user_id, f"{user_id}@example.com", user_id.title())
        organizations.add_member(db, None, "acme", user_id, role)
    return db


def state(db) -> dict:
    """Every ledger row and every pricing row, as text: a refusal must leave all of it as it was."""
    rows = snapshot(db)
    for table in PRICING_TABLES:  # constant names
        rows[table] = [row[0] for row in fetch(db, f"select t::text from {table} t order by 1")]
    return rows


def button(at: AppTest, key: str):
    return at.button(key=key)


def submit(at: AppTest, label: str) -> AppTest:
    """Press the dialog's form submit button with this label."""
    found = [b for b in at.get("button") if b.label == label]
    assert len(found) == 1, [b.label for b in at.get("button")]
    return found[0].click().run()


def test_smoke(setup):
    at = open_page("pricing", "root")
    assert not at.exception, at.exception
    assert not errors(at)
