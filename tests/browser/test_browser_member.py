"""My credits in Chromium: a member asks for more credits on a 390 px phone, an org admin approves, the member
sees the new allocation (and the 90% alert gone).

Both sides log in to one server of the real app. Until the integrator wires `credit_requests_section`
into Organization billing, the test serves app.py through a two-line harness that runs the section below
that screen (what the wiring will do); one process, so the admin's approval clears the cached reads the
member's page then shows, as in the app. Screenshots land in test-artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from billing_core import auth, credits, database, organizations, usage
from tests.browser.test_browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    migrated_database,
    running_app,
    settle,
    shot,
)

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install -e '.[dev]')")
expect = playwright_api.expect
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: install it with apt-get install -y chromium"),
]

PASSWORD = "mia member password 1"
PHONE = {"width": 390, "height": 844}



@pytest.fixture
def chromium() -> Iterator[object]:
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def member_db(pg_server, template_database) -> Iterator[str]:
    """north (admin nora) and south; mia has 1,000 credits in north, 950 of them used (an alert), 400 in south."""
    with migrated_database(pg_server, template_database) as url:
        db = database.get_engine(url)
        organizations.create_user(db, None, "mia", "mia@example.com", 'Mia "M" <b>Member</b>',
                                  password_hash=auth.hash_password(PASSWORD))
        organizations.create_user(db, None, "nora", "nora@example.com", "Nora Admin",
                                  password_hash=auth.hash_password(PASSWORD))
        for org_id, name in (("north", "Northwind Trading & Logistics Partners"), ("south", "South Ltd")):
            organizations.create_organization(db, None, org_id, name)
            organizations.add_member(db, None, org_id, "mia")
            credits.add_credits(db, None, org_id, 10_000, 10)
        organizations.add_member(db, None, "north", "nora", "admin")
        credits.allocate(db, None, "north", "mia", 1_000)
        credits.allocate(db, None, "south", "mia", 400)
        credits.deduct(db, "north", "mia", 950, "llm", "gpt-4o")
        yield url


def start_login(context, base: str, email: str):
    """A new page of `context` with the login sent as `email` (not waited for: the other browser goes on)."""
    page = context.new_page()
    page.goto(base)
    page.get_by_role("textbox", name="Email").fill(email)
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    return page


def fits_the_screen(page, locator) -> bool:
    """The element is drawn inside the viewport's width (no horizontal scrolling needed to see it)."""
    box = locator.bounding_box()
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= page.viewport_size["width"]


def whole_page_shot(page, name: str) -> None:
    """A screenshot of the whole page at the viewport's width (the app scrolls inside its main block, which a
    full-page screenshot does not unroll): the viewport is made as tall as that block for the shot."""
    size = dict(page.viewport_size)
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], height)})
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    page.set_viewport_size(size)


def no_sideways_scrolling(page) -> bool:
    return page.evaluate("() => document.documentElement.scrollWidth") <= page.viewport_size["width"]


def test_request_more_credits_round_trip_on_a_phone(member_db, chromium, tmp_path):
    db = database.get_engine(member_db)
    with running_app(member_db, "browser-member-streamlit.log") as app:
        phone = chromium.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
        desk = chromium.new_context(viewport={"width": 1280, "height": 900})
        try:
            for ctx in (phone, desk):
                ctx.set_default_timeout(20_000)
            page = start_login(phone, app, "mia@example.com")
            admin = start_login(desk, app, "nora@example.com")  # logs in meanwhile
            page.get_by_role("heading", name="My credits").first.wait_for()
            settle(page)

            # 390 px: the organization choice and the Remaining figure are on screen, nothing scrolls sideways
            choice = page.get_by_test_id("stSelectbox").filter(has_text="Organization").first
            remaining = page.get_by_test_id("stMetric").filter(has_text="Remaining").first
            assert choice.is_visible() and fits_the_screen(page, choice)
            assert remaining.is_visible() and fits_the_screen(page, remaining)
            assert remaining.get_by_test_id("stMetricValue").inner_text().strip() == "50"
            assert no_sideways_scrolling(page)
            assert page.get_by_text("You have used 95.0% of your credits in Northwind").is_visible()
            whole_page_shot(page, "member-1-my-credits-390px")

            # bad input is refused before any question; a good one asks, then is sent
            page.get_by_text("Request more credits", exact=True).first.click()  # the expander of the first card
            amount = page.get_by_role("textbox", name="Credits to request").first
            amount.fill("abc")
            page.get_by_role("button", name="Request more credits").first.click()
            page.get_by_text("Credits to request is not a number").wait_for()
            assert page.get_by_role("button", name="Confirm").count() == 0
            amount.fill("300")
            page.get_by_role("textbox", name="Note for the admins (optional)").first.fill('See https://x.example <b>Q3</b>')
            page.get_by_role("button", name="Request more credits").first.click()
            page.get_by_text("Ask the admins of Northwind Trading & Logistics Partners for 300 more credits").wait_for()
            page.get_by_role("button", name="Confirm").click()
            page.get_by_text("Request sent").wait_for()
            assert page.get_by_text("You asked for 300 credits on").is_visible()
            shot(page, "member-2-request-sent-390px")

            # the org admin sees it below Organization billing, the note as text (no live link), and approves
            admin.get_by_text("Logged in as").wait_for()
            admin.get_by_role("link", name="Organization billing").click()
            admin.get_by_text("asks for 300 credits").wait_for()
            note = admin.get_by_text("Note: “See https://x.example <b>Q3</b>”")
            assert note.is_visible() and admin.locator('a[href^="https://x.example"]').count() == 0
            note.scroll_into_view_if_needed()
            admin.screenshot(path=str(ARTIFACTS / "member-3-admin-sees-the-request.png"))
            admin.get_by_role("button", name="Approve").click()
            admin.get_by_text("Their allocation becomes 1,300 credits").wait_for()
            admin.get_by_role("button", name="Confirm").click()
            admin.get_by_text("Approved: 300 credits allocated").wait_for()

            # the member sees the new allocation; 950 of 1,300 used is under 90%: the alert is gone
            page.reload()
            allocated = page.get_by_test_id("stMetric").filter(has_text="Allocated").first
            expect(allocated.get_by_test_id("stMetricValue")).to_have_text("1,300")
            settle(page)
            assert page.get_by_text("Approved by Nora Admin on").first.is_visible()
            assert page.get_by_text("of your credits in Northwind").count() == 0
            assert no_sideways_scrolling(page)
            whole_page_shot(page, "member-4-approved-390px")
        finally:
            phone.close()
            desk.close()
    north = next(card for card in usage.member_cards(db, "mia") if card.org_id == "north")
    assert (north.allocated_credits, north.used_credits) == (1_300, 950)
