"""The date range in a real browser: a tiny page shows the usage sections of pages/sections/usage.py.

The page (written to a temporary folder, run with `streamlit run`) builds its Screen from the user named
in its environment, as the navigation builds it after a login (the login itself is test_browser.py's).
One flow: the default range, a preset, a custom range refused and then accepted, the CSV download, and
the page at 390 px. Screenshots land in test-artifacts/usage-*.png.
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path

import pytest

from billing_core import credits, database, organizations, periods
from billing_core.database import PROJECT_ROOT, call
from tests.browser.test_browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    migrated_database,
    playwright_api,
    running_streamlit,
    settle,
    shot,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: install it with apt-get install -y chromium"),
]

PAGE = f"""
import os
import sys

sys.path.insert(0, {str(PROJECT_ROOT)!r})
import streamlit as st

from billing_core import auth
from pages import kit
from pages.kit.session import Screen
from pages.sections import usage as sections

st.set_page_config(page_title="Usage", layout="wide")
db = kit.engine()
actor = os.environ["USAGE_ACTOR"]
screen = Screen(db=db, actor_id=actor, roles=auth.user_roles(db, actor), org_id=os.environ["USAGE_ORG"])
st.title("Organization usage")
date_range = kit.date_range_control(screen, key="org_usage_range")
sections.usage_summary_section(screen, "organization", date_range)
sections.recent_charges_section(screen, "organization", date_range)
"""


@pytest.fixture(scope="module")
def usage_db(pg_server, template_database) -> Iterator[str]:
    """Organization berlin (Europe/Berlin): ada its admin; mia charged 12 x 10 now, 7 at 23:30 UTC five days ago."""
    with migrated_database(pg_server, template_database) as url:
        db = database.get_engine(url)
        organizations.create_organization(db, None, "berlin", "Berlin GmbH")
        periods.set_calendar(db, None, "berlin", 1, "Europe/Berlin")
        credits.add_credits(db, None, "berlin", 10_000, 10)
        for user, role in (("ada", "admin"), ("mia", "member")):
            organizations.create_user(db, None, user, f"{user}@example.com", user.title())
            organizations.add_member(db, None, "berlin", user, role)
        credits.allocate(db, "ada", "berlin", "mia", 1_000)
        for n in range(12):
            credits.deduct(db, "berlin", "mia", 10, "contact_lookup", "=1+1" if n == 0 else "lookup",
                           request_id=f"lookup-{n}")
        late = datetime.combine(datetime.now(UTC).date() - timedelta(days=5), clock(23, 30), tzinfo=UTC)
        credits.deduct(db, "berlin", "mia", 7, "llm", "late-night", request_id="late", occurred_at=late)
        yield url


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextlib.contextmanager
def running_page(database_url: str, folder: Path) -> Iterator[str]:
    """The tiny page, started with `streamlit run` on a free loopback port as ada of berlin; its base URL."""
    script = folder / "usage_page.py"
    script.write_text(PAGE)
    env = {"USAGE_ACTOR": "ada", "USAGE_ORG": "berlin"}
    with running_streamlit(script, database_url, "browser-usage-streamlit.log", env) as base:
        yield base


def credits_used(page) -> str:
    card = page.locator('[data-testid="stMetric"]').filter(has_text="Credits used")
    return card.locator('[data-testid="stMetricValue"]').inner_text().strip()


def choose_preset(page, words: str) -> None:
    page.get_by_role("combobox", name="Dates").click()  # the selectbox's own label
    page.get_by_role("option", name=words, exact=True).click()
    settle(page)


def type_date(page, label: str, day) -> None:
    # a date field of segments (year, month, day as the format says): typing fills each and moves on
    page.get_by_role("group", name=label, exact=True).get_by_role("spinbutton").first.click()
    page.keyboard.type(f"{day:%Y%m%d}")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Organization usage").click()  # away from the field: the value is sent
    settle(page)


def test_choosing_a_preset_then_a_custom_range(usage_db, chromium, tmp_path):
    today = call(database.get_engine(usage_db), "select (now() at time zone 'Europe/Berlin')::date")
    late_day = datetime.now(UTC).date() - timedelta(days=4)  # 23:30 UTC five days ago, in Berlin
    with running_page(usage_db, tmp_path) as base:
        context = chromium.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        context.set_default_timeout(20_000)
        page = context.new_page()
        page.goto(base)
        page.get_by_text("Times in Europe/Berlin").first.wait_for()
        settle(page)
        assert credits_used(page) == "127"  # last 30 days: 12 x 10 + 7
        assert page.get_by_text("1–13 of 13 charges. Times in Europe/Berlin.").is_visible()
        shot(page, "usage-last-30-days")

        choose_preset(page, "Today")
        assert credits_used(page) == "120"

        choose_preset(page, "Custom dates")
        type_date(page, "From", today)
        type_date(page, "To", today - timedelta(days=2))
        error = page.get_by_text("is after the end date")
        error.wait_for()
        assert credits_used(page) == "120"  # refused: the figures stay as they were
        shot(page, "usage-custom-refused")

        type_date(page, "From", late_day)
        type_date(page, "To", late_day)
        page.get_by_text("Credits used").first.wait_for()
        assert credits_used(page) == "7"
        assert not error.is_visible()
        shot(page, "usage-custom-day")

        choose_preset(page, "Last 30 days")
        with page.expect_download() as download:
            page.get_by_role("button", name="Download all 13 charges (CSV)").click()
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
        assert len(rows) == 13 and "'=1+1" in {row["Detail"] for row in rows}

        charges = page.get_by_role("heading", name="Charges")
        charges.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "usage-charges.png"))
        page.set_viewport_size({"width": 390, "height": 844})
        settle(page)
        charges.scroll_into_view_if_needed()
        page.wait_for_timeout(500)  # the columns stack
        page.screenshot(path=str(ARTIFACTS / "usage-charges-phone.png"))
        context.close()
