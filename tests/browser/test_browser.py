"""The real login in a real browser: Playwright drives Debian's Chromium against the app on a loopback port.

Covers what AppTest cannot: the login form and the authenticator's cookie. A reload with a live
cookie resumes its server-side session; after a logout or a password change made elsewhere, the
same (still validly signed) cookie is refused by the server-side session check.
Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from ledger_state import billing_verify, snapshot

from billing_core import analytics, auth, credits, database, organizations, subscriptions, usage
from billing_core.database import PROJECT_ROOT, fetch

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PASSWORDS = {
    "ada@example.com": "ada password 1",
    "mia@example.com": "mia password 1",
    "root@example.com": "root password 1",
    "gus@example.com": "gus password 1",
    "nova@example.com": "nova password 1",
}

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install -e '.[dev]')")
expect = playwright_api.expect
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: install it with apt-get install -y chromium"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def migrated_database(pg_server, template_database) -> Iterator[str]:
    """A fresh clone of the migrated template, dropped afterwards; its URL."""
    name = f"billing_browser_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name, template=template_database)
    try:
        yield url
    finally:
        database.dispose_engine(url)
        pg_server.drop_database(name)


def add_user(db, user_id: str, org_id: str | None = None, role: str = "member", *, system_admin: bool = False) -> None:
    """User `user_id` (email user_id@example.com, password from PASSWORDS), a `role` of `org_id` when given."""
    email = f"{user_id}@example.com"
    organizations.create_user(db, None, user_id, email, user_id.title(), is_system_admin=system_admin,
                              password_hash=auth.hash_password(PASSWORDS[email]))
    if org_id:
        organizations.add_member(db, None, org_id, user_id, role)


@pytest.fixture(scope="module")
def app_db(pg_server, template_database) -> Iterator[str]:
    """A migrated database for this module: acme with ada (admin) and mia (member), both with passwords."""
    with migrated_database(pg_server, template_database) as url:
        db = database.get_engine(url)
        organizations.create_organization(db, None, "acme", "Acme <b>Inc</b> \"quoted\"")
        add_user(db, "ada", "acme", "admin")
        add_user(db, "mia", "acme")
        credits.add_credits(db, None, "acme", 10_000, 10)
        yield url


@contextlib.contextmanager
def running_app(database_url: str, log_name: str = "browser-streamlit.log") -> Iterator[str]:
    """The app, started with `streamlit run app.py` on a free loopback port against `database_url`; its base URL."""
    env = {"BILLING_LOGIN_SLEEP_SECONDS": "0.1"}
    with running_streamlit("app.py", database_url, log_name, env) as base:
        yield base


@contextlib.contextmanager
def running_streamlit(script: str | Path, database_url: str, log_name: str,
                      env: dict[str, str] | None = None) -> Iterator[str]:
    """`script` served by `streamlit run` on a free loopback port against `database_url` (and `env`); its base
    URL. The app generates its cookie key and keeps it in the database."""
    port = free_port()
    full_env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(PROJECT_ROOT), **(env or {})}
    full_env.pop("BILLING_COOKIE_KEY", None)
    log = ARTIFACTS / log_name
    ARTIFACTS.mkdir(exist_ok=True)
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
             "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
            cwd=PROJECT_ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=1) as answer:
                    if answer.read() == b"ok":
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{script} did not start; see {log}:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def app_url(app_db: str) -> Iterator[str]:
    """The app, started with `streamlit run app.py` on a free loopback port against app_db."""
    with running_app(app_db) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    ctx.set_default_timeout(20_000)
    yield ctx
    ctx.close()


def settle(page) -> None:
    """Wait until the app's script has finished running (and no rerun follows at once)."""
    quiet = 0
    deadline = time.monotonic() + 20
    while quiet < 3 and time.monotonic() < deadline:
        state = page.evaluate(
            "() => document.querySelector('[data-testid=\"stApp\"]')?.getAttribute('data-test-script-state')")
        quiet = quiet + 1 if state == "notRunning" else 0
        page.wait_for_timeout(150)


def open_app(context, base: str):
    page = context.new_page()
    page.goto(base)
    page.get_by_role("button", name="Log in").wait_for()
    settle(page)
    return page


def log_in(page, email: str) -> None:
    page.get_by_role("textbox", name="Email").fill(email)
    page.get_by_role("textbox", name="Password").fill(PASSWORDS[email])
    page.get_by_role("button", name="Log in").click()
    try:
        page.get_by_text("Logged in as").wait_for()
    except playwright_api.TimeoutError:
        shot(page, "login-failed")
        raise
    settle(page)


def navigation(page) -> list[str]:
    return [text.strip() for text in page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()]


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def live_sessions(url: str, user_id: str) -> int:
    return fetch(database.get_engine(url), "select count(*) from user_sessions where user_id = :u and ended_at is null",
                 {"u": user_id})[0][0]


def test_login_navigation_reload_and_logout(app_url, app_db, context):
    page = open_app(context, app_url)
    assert navigation(page) == []
    shot(page, "login-form")
    log_in(page, "ada@example.com")
    assert [n.split("\n")[-1] for n in navigation(page)] == [
        "My credits", "Organization billing", "Billing periods", "Audit log", "Account",
    ]
    assert page.get_by_text('Acme <b>Inc</b> "quoted"').first.is_visible()  # the name as text, not markup
    shot(page, "org-admin-logged-in")
    assert live_sessions(app_db, "ada") == 1

    page.reload()  # a new browser session: the cookie logs in again and resumes the same server-side session
    page.get_by_text("Logged in as").wait_for()
    settle(page)
    assert live_sessions(app_db, "ada") == 1
    assert fetch(database.get_engine(app_db), "select count(*) from user_sessions where user_id = 'ada'")[0][0] == 1

    page.get_by_role("button", name="Log out").click()
    page.get_by_role("button", name="Log in").wait_for()
    settle(page)
    assert navigation(page) == [] and live_sessions(app_db, "ada") == 0
    shot(page, "logged-out")


def test_a_copied_cookie_is_refused_after_logout_and_after_a_password_change(app_url, app_db, context, browser):
    page = open_app(context, app_url)
    log_in(page, "mia@example.com")
    assert [n.split("\n")[-1] for n in navigation(page)] == ["My credits", "Account"]  # a member's pages
    page.goto(f"{app_url}/system_overview")  # a page a member may not open, by its URL (AppTest checks every page)
    page.get_by_text("Logged in as").wait_for()
    settle(page)
    assert page.get_by_role("heading", name="System overview").count() == 0
    shot(page, "member-url-to-forbidden-page")
    page.goto(app_url)
    page.get_by_text("Logged in as").wait_for()
    settle(page)
    saved = context.cookies()
    assert saved, "the login set no cookie"
    page.get_by_role("button", name="Log out").click()
    page.get_by_role("button", name="Log in").wait_for()
    settle(page)

    # the authenticator's cookie is still validly signed: put it back and come again
    context.add_cookies(saved)
    page.goto(app_url)
    page.get_by_text("You logged out: please log in again.").wait_for()
    page.get_by_role("button", name="Log in").wait_for()
    settle(page)
    assert navigation(page) == [] and live_sessions(app_db, "mia") == 0
    assert page.get_by_text("You logged out: please log in again.").is_visible()
    shot(page, "copied-cookie-refused")

    # logged in in two browsers; a password change in the second ends the first
    page = open_app(context, app_url)
    log_in(page, "mia@example.com")
    other = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        second = open_app(other, app_url)
        log_in(second, "mia@example.com")
        second.goto(f"{app_url}/account")
        second.get_by_role("textbox", name="Current password").fill(PASSWORDS["mia@example.com"])
        second.get_by_role("textbox", name="New password", exact=True).fill("mia password 2")
        second.get_by_role("textbox", name="New password again").fill("mia password 2")
        second.get_by_role("button", name="Change password").click()
        second.get_by_text("Password changed.").wait_for()
        shot(second, "password-changed")
    finally:
        other.close()
    PASSWORDS["mia@example.com"] = "mia password 2"
    page.reload()
    page.get_by_text("Your password was changed").wait_for()
    page.get_by_role("button", name="Log in").wait_for()
    settle(page)
    assert navigation(page) == []
    assert live_sessions(app_db, "mia") == 1  # only the login the password was changed from
    assert page.get_by_text("Your password was changed").is_visible()  # the reason stays on screen
    shot(page, "logged-out-by-password-change")


def test_org_admin_allocates_through_the_form_and_sees_the_page_change(app_url, app_db, context):
    page = open_app(context, app_url)
    log_in(page, "ada@example.com")
    page.get_by_role("link", name="Organization billing").click()
    page.get_by_text("Available").first.wait_for()
    settle(page)
    assert page.get_by_text("10,000").first.is_visible()
    shot(page, "org-billing-before-allocation")

    page.get_by_role("tab", name="Allocations").click()
    page.get_by_role("textbox", name="Credits to allocate").fill("250")
    page.get_by_role("button", name="Allocate credits").click()
    page.get_by_role("button", name="Confirm").click()
    page.get_by_text("9,750").first.wait_for()  # the pool's available figure, on the same run
    settle(page)
    shot(page, "org-billing-after-allocation")
    allocated = fetch(database.get_engine(app_db),
                      "select allocated_credits from user_credit_allocations where org_id = 'acme' and is_active")
    assert [row[0] for row in allocated] == [250]

    for name in ("My credits", "Audit log", "Account"):
        page.get_by_role("link", name=name).click()
        page.get_by_role("heading", name=name).first.wait_for()
        settle(page)
        shot(page, f"org-admin-{name.lower().replace(' ', '-')}")


# ---------------------------------------------------------------- issue 9: a fresh server, the organization choice


def chosen_organization(page) -> str:
    """The label the organization choice at the top of the screen shows."""
    return organization_choice(page).locator("input").input_value()


def organization_choice(page):
    """The organization choice at the top of the screen (a combo box)."""
    return page.get_by_test_id("stSelectbox").filter(has=page.get_by_label("Organization", exact=True)).first


def test_a_fresh_server_opens_a_screen_url_on_the_login_and_the_organization_choice_survives(
        pg_server, template_database, browser):
    """A screen's URL on a freshly started server shows the login, then that screen; the organization chosen
    survives a reload and a new tab (?org=), and at 390 px the choice shows, its label whole."""
    with migrated_database(pg_server, template_database) as url, running_app(url, "browser-fresh-streamlit.log") as base:
        db = database.get_engine(url)
        organizations.create_organization(db, None, "meridian", "Meridian Health Partners")
        organizations.create_organization(db, None, "northwind", "Northwind Regional Medical Group")
        add_user(db, "nova", "meridian", "admin")
        organizations.add_member(db, None, "northwind", "nova", "admin")
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        context.set_default_timeout(20_000)
        try:
            page = context.new_page()
            page.goto(f"{base}/org_billing")  # the server process's first run: Streamlit's old pages/ mode
            page.get_by_role("button", name="Log in").wait_for()
            settle(page)
            shot(page, "fresh-server-screen-url-login")
            assert page.get_by_role("textbox", name="Email").is_visible()
            assert navigation(page) == [] and page.get_by_text("Logged in as").count() == 0

            log_in(page, "nova@example.com")
            page.get_by_role("tab", name="Allocations").wait_for()  # the screen the URL named, after the login
            assert "/org_billing" in page.url and page.get_by_role("button", name="Log in").count() == 0
            assert chosen_organization(page) == "Meridian Health Partners · admin"

            choose(page, "Organization", "Northwind Regional Medical Group · admin")
            page.wait_for_url(re.compile(r"[?&]org=northwind"))
            settle(page)
            page.reload()
            page.get_by_text("Logged in as").wait_for()
            settle(page)
            assert chosen_organization(page) == "Northwind Regional Medical Group · admin" and "org=northwind" in page.url

            tab = context.new_page()  # the same URL in a new tab: the login cookie, and ?org= in the URL
            tab.goto(page.url)
            tab.get_by_text("Logged in as").wait_for()
            settle(tab)
            assert chosen_organization(tab) == "Northwind Regional Medical Group · admin"
            assert tab.get_by_role("tab", name="Allocations").count() == 1

            tab.set_viewport_size({"width": 390, "height": 844})
            settle(tab)
            shot(tab, "organization-choice-390px")
            box = organization_choice(tab)
            assert box.is_visible()
            place = box.bounding_box()
            assert place["x"] >= 0 and place["x"] + place["width"] <= 390 and place["y"] < 844, place
            shown = box.locator("input")  # the label fits in the box: the input does not scroll its text
            assert shown.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), "the organization's label is cut"
        finally:
            context.close()


# ---------------------------------------------------------------- issue 4: a plan upgrade, its history and MRR


@pytest.fixture
def globex_db(pg_server, template_database) -> Iterator[str]:
    """Globex on Platform ($50 / month, started without trial) with admin gus and 5,000 credits; root is a system admin."""
    with migrated_database(pg_server, template_database) as url:
        db = database.get_engine(url)
        add_user(db, "root", system_admin=True)
        organizations.create_organization(db, None, "globex", "Globex")
        add_user(db, "gus", "globex", "admin")
        subscriptions.create_subscription(db, None, "globex", "platform", trial=False)
        credits.add_credits(db, None, "globex", 5_000, 5)
        yield url


def metric_value(page, label: str):
    """The value of the metric card labelled exactly `label` (a locator)."""
    card = page.get_by_test_id("stMetric").filter(has=page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True))
    return card.get_by_test_id("stMetricValue")


def metric(page, label: str) -> str:
    """The value shown on the metric card labelled exactly `label`."""
    return metric_value(page, label).inner_text().strip()


def choose(page, label: str, option: str) -> None:
    """Pick `option` in the selectbox labelled `label`."""
    box = page.get_by_test_id("stSelectbox").filter(has_text=label).locator("input")
    box.click()
    if box.get_attribute("aria-expanded") != "true":
        box.press("ArrowDown")  # a click on a select that kept the focus of an earlier choice leaves it closed
    page.get_by_role("option", name=option, exact=True).click()


def dollars(text: str) -> Decimal:
    return Decimal(text.replace("$", "").replace(",", ""))


def test_an_org_admin_upgrades_now_and_the_history_and_mrr_follow(globex_db, browser):
    db = database.get_engine(globex_db)
    assert analytics.overview(db, "root").mrr.value == 50  # Platform, the only paying subscription
    with running_app(globex_db, "browser-plan-change-streamlit.log") as base:
        admin_context = browser.new_context(viewport={"width": 1280, "height": 860})
        org_context = browser.new_context(viewport={"width": 1280, "height": 1200})
        try:
            for ctx in (admin_context, org_context):
                ctx.set_default_timeout(20_000)
            system = open_app(admin_context, base)
            log_in(system, "root@example.com")  # a system admin lands on System overview
            system.get_by_role("heading", name="System overview").wait_for()
            assert (metric(system, "MRR"), metric(system, "ARR")) == ("$50.00", "$600.00")
            shot(system, "plan-change-1-mrr-before")

            page = open_app(org_context, base)
            log_in(page, "gus@example.com")
            page.get_by_role("link", name="Organization billing").click()
            page.get_by_text("Change plan").first.wait_for()
            settle(page)
            assert (metric(page, "Plan"), metric(page, "Price per month")) == ("Platform", "$50.00")
            shot(page, "plan-change-2-org-billing-on-platform")

            # upgrade now: the question shows the proration, the confirmation applies it
            choose(page, "New plan", "Hybrid ($99.00/month)")
            page.get_by_text("Now (prorated)").click()
            page.get_by_role("button", name="Change plan").click()
            question = page.get_by_text("Move Globex to Hybrid now?")
            question.wait_for()
            settle(page)
            shot(page, "plan-change-3-proration-question")
            asked = re.search(r"a credit of (\$[\d,.]+) for the current plan and a charge of (\$[\d,.]+) for Hybrid: "
                              r"(\$[\d,.]+) owed by the organization", question.inner_text())
            assert asked, question.inner_text()
            credit, charge, owed = (dollars(figure) for figure in asked.groups())
            # the period began at the latest midnight (UTC; the anchor day is the day globex was opened):
            # at most a day and the test's minutes of a period of 28 days or more are gone
            assert 48 < credit <= 50 and 95 < charge <= 99 and owed == charge - credit

            page.get_by_role("button", name="Confirm").click()
            done = page.get_by_text("Now on Hybrid:")
            done.wait_for()
            settle(page)
            assert (metric(page, "Plan"), metric(page, "Price per month")) == ("Hybrid", "$99.00")
            shot(page, "plan-change-4-now-on-hybrid")
            history = usage.billing_timeline(db, "gus", "globex")
            [amount] = history[history.event_type == "subscription_plan_changed"].amount
            # the question was a preview some seconds earlier: each side is rounded to cents, so 1 cent may move
            assert abs(amount - owed) <= Decimal("0.01")
            assert f"Now on Hybrid: ${amount:,.2f} recorded in the billing history." in done.inner_text()

            # the plan change is a row of the Billing history table: the grid draws on a canvas, whose
            # (hidden) accessible table holds the cells of the columns in view
            page.get_by_role("tab", name="Billing history").click()
            row = page.get_by_role("tabpanel").locator('[role="row"]').filter(has_text="plan changed")
            row.wait_for(state="attached")
            settle(page)
            shot(page, "plan-change-5-billing-history")
            cells = [cell.strip() for cell in row.locator('[role="gridcell"]').all_text_contents()]
            assert cells[1:5] == [  # when and what first (a phone shows them), the event in words
                "plan changed",
                "0",
                format(amount.normalize(), "f"),  # the grid's raw number (shown as $48.01)
                f"Plan changed from Platform to Hybrid: ${amount:.2f} charged for the rest of the period",
            ], cells

            # System overview: MRR (and ARR) up by Hybrid's $99 - Platform's $50
            mrr = analytics.overview(db, "root")
            assert (mrr.mrr.value, mrr.arr.value) == (99, 1188)
            system.get_by_role("link", name="System overview").click()
            expect(metric_value(system, "MRR")).to_have_text(f"${mrr.mrr.value:,.2f}")  # once the page has run again
            settle(system)
            assert (metric(system, "MRR"), metric(system, "ARR")) == ("$99.00", "$1,188.00")
            shot(system, "plan-change-6-mrr-after")
            assert billing_verify(globex_db).returncode == 0

            # four more changes by gus make five this hour: the sixth, on the screen, is refused
            for _ in range(2):
                subscriptions.schedule_change(db, "gus", "globex", "byok")
                subscriptions.reactivate(db, "gus", "globex")
            before = snapshot(db)
            choose(page, "New plan", "Starter ($19.00/month)")
            page.get_by_role("button", name="Change plan").click()
            refusal = page.get_by_text("Too many subscription changes")
            refusal.wait_for()
            settle(page)
            shot(page, "plan-change-7-rate-limited")
            assert "an organization admin may make 5 an hour" in refusal.inner_text()
            assert page.get_by_role("button", name="Confirm").count() == 0  # refused before any question
            assert metric(page, "Plan") == "Hybrid" and snapshot(db) == before
        finally:
            org_context.close()
            admin_context.close()


# ---------------------------------------------------------------- issue 8: money enters through a paid order


def test_an_org_admin_orders_credits_and_they_arrive_when_a_system_admin_records_the_payment(globex_db, browser):
    db = database.get_engine(globex_db)
    with running_app(globex_db, "browser-orders-streamlit.log") as base:
        org_context = browser.new_context(viewport={"width": 1280, "height": 1200})
        admin_context = browser.new_context(viewport={"width": 1280, "height": 1200})
        try:
            page = open_app(org_context, base)
            log_in(page, "gus@example.com")
            page.get_by_role("link", name="Organization billing").click()
            page.get_by_role("button", name="Review order").wait_for()
            settle(page)
            assert metric(page, "Total credits") == "5,000"

            # the price is the catalogue's, shown before anything is ordered; bad input never reaches a question
            page.get_by_text("A number of credits").click()
            settle(page)
            page.get_by_role("textbox", name="Number of credits").fill("-5")
            page.get_by_role("button", name="Review order").click()
            page.get_by_text("must be greater than 0").wait_for()
            assert page.get_by_role("button", name="Confirm").count() == 0
            page.get_by_role("textbox", name="Number of credits").fill("2500")
            page.get_by_role("button", name="Review order").click()
            question = page.get_by_text("Order 2,500 credits for $2.50")
            question.wait_for()
            shot(page, "orders-1-price-before-confirm")
            page.get_by_role("button", name="Confirm").click()
            page.get_by_text("awaiting payment").first.wait_for()
            settle(page)
            [(order_id, price)] = fetch(db, "select id, price from credit_orders where status = 'awaiting_payment'")
            assert price == Decimal("2.50")
            assert metric(page, "Total credits") == "5,000"  # nothing arrives before the payment

            system = open_app(admin_context, base)
            log_in(system, "root@example.com")
            system.get_by_role("link", name="Credits", exact=True).click()  # payments are on the Credits screen
            system.get_by_role("heading", name="Credits", exact=True).wait_for()
            settle(system)
            system.get_by_role("textbox", name="Payment reference").fill("INV-BROWSER-1")
            system.get_by_role("button", name="Record payment").click()
            system.get_by_text(f"Record payment INV-BROWSER-1 for order {order_id}").wait_for()
            system.get_by_role("button", name="Confirm").click()
            system.get_by_text("Payment INV-BROWSER-1 recorded: 2,500 credits").wait_for()
            settle(system)
            shot(system, "orders-2-payment-recorded")
            assert system.get_by_text("No order is awaiting payment.").is_visible()

            page.reload()
            page.get_by_role("link", name="Organization billing").click()
            expect(metric_value(page, "Total credits")).to_have_text("7,500")
            settle(page)
            shot(page, "orders-3-credits-arrived")
            assert fetch(db, "select status, payment_reference from credit_orders where id = :id", {"id": order_id}) == [
                ("paid", "INV-BROWSER-1")]
            assert billing_verify(globex_db).returncode == 0
        finally:
            admin_context.close()
            org_context.close()


# ---------------------------------------------------------------- issue 9: org admin forms on a 390 px phone


def test_an_org_admin_on_a_phone_is_refused_before_any_question_and_asked_beside_the_form(globex_db, browser):
    db = database.get_engine(globex_db)
    with running_app(globex_db, "browser-org-phone-streamlit.log") as base:
        phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
        phone.set_default_timeout(20_000)
        try:
            page = open_app(phone, base)
            log_in(page, "gus@example.com")
            # the navigation is folded away on a phone: open it, as a person would, and pick the screen
            page.locator('[data-testid="stExpandSidebarButton"], [data-testid="stSidebarCollapsedControl"] button'
                         ).first.click()
            page.get_by_role("link", name="Organization billing").click()
            page.get_by_role("heading", name="Organization billing").wait_for()
            settle(page)
            if page.get_by_test_id("stSidebar").get_attribute("data-collapsed") == "false":  # it covers the page
                page.get_by_test_id("stSidebarCollapseButton").locator("button").click(force=True)
                expect(page.get_by_test_id("stSidebar")).to_have_attribute("data-collapsed", "true")
            page.get_by_role("tab", name="Allocations").click()
            amount = page.get_by_role("textbox", name="Credits to allocate")
            before = snapshot(db)
            for typed, refusal in (("-5", "must be greater than 0"), ("1e20", "is too large"),
                                   ("0.0000001", "more than 6 decimal places"), ("abc", "is not a number"),
                                   ("5001", "Not enough credits in the pool of Globex")):
                amount.fill(typed)
                page.get_by_role("button", name="Allocate credits").click()
                page.get_by_text(refusal).wait_for()
                assert page.get_by_role("button", name="Confirm").count() == 0, typed  # refused before asking
                if typed == "-5":
                    settle(page)
                    shot(page, "org-phone-1-refused-before-asking")
            assert snapshot(db) == before

            amount.fill("100")
            page.get_by_role("button", name="Allocate credits").click()
            question = page.get_by_text("Allocate 100 credits to Gus? Gus then has 100 credits remaining.")
            question.wait_for()
            settle(page)
            assert question.locator("a").count() == 0  # no live link in a question
            confirm = page.get_by_role("button", name="Confirm")
            # the question sits under its own form, before the next form: where the person is looking
            form_bottom = page.get_by_role("button", name="Allocate credits").bounding_box()["y"]
            next_form = page.get_by_text("Take back credits", exact=True).first.bounding_box()["y"]
            assert form_bottom < confirm.bounding_box()["y"] < next_form
            confirm.scroll_into_view_if_needed()
            shot(page, "org-phone-2-question-beside-the-form")
            confirm.click()
            page.get_by_text("Allocated 100 credits: Gus now has 100 credits remaining.").wait_for()
            settle(page)
            assert amount.input_value() == ""  # cleared: a second click cannot send it again
            assert fetch(db, "select allocated_credits from user_credit_allocations where org_id = 'globex'"
                             " and is_active") == [(100,)]

            # the allocations grid: name and remaining are its first columns, inside the phone's width
            grid = page.get_by_role("tabpanel").get_by_test_id("stDataFrame").first
            grid.scroll_into_view_if_needed()
            settle(page)
            headers = grid.locator('[role="columnheader"]')
            names = [text.strip() for text in headers.all_text_contents()]
            assert names[:2] == ["Name", "Remaining"], names
            box = grid.bounding_box()  # the grid draws on a canvas: its first columns are what fits the phone
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390
            shot(page, "org-phone-3-allocations-name-and-remaining-first")
        finally:
            phone.close()


# ---------------------------------------------------------------- issue 9: the system screens, split


def test_a_system_admin_walks_the_system_screens_and_records_a_past_due_payment_in_its_row(globex_db, browser):
    db = database.get_engine(globex_db)
    subscriptions.set_subscription_status(db, "root", "globex", "past_due")
    with running_app(globex_db, "browser-system-streamlit.log") as base:
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        context.set_default_timeout(20_000)
        try:
            page = open_app(context, base)
            log_in(page, "root@example.com")
            for title in ("System overview", "Organizations", "Credits", "Past due"):
                page.get_by_role("link", name=title, exact=True).click()
                page.get_by_role("heading", name=title, exact=True).wait_for()
                settle(page)
                shot(page, f"system-{title.lower().replace(' ', '-')}")
            page.goto(f"{base}/system_overview")  # the landing screen by its own path, as a bookmark holds it
            page.get_by_role("heading", name="System overview", exact=True).wait_for()
            settle(page)
            assert page.get_by_text("Page not found").count() == 0 and "/system_overview" in page.url
            page.get_by_role("link", name="Past due", exact=True).click()
            page.get_by_role("heading", name="Past due", exact=True).wait_for()
            settle(page)
            page.get_by_role("textbox", name="Payment reference").fill("INV-PAST-DUE-1")
            page.get_by_role("button", name="Mark active").click()
            question = page.get_by_text("Record payment INV-PAST-DUE-1 for the Platform subscription of Globex")
            question.wait_for()
            settle(page)
            shot(page, "system-past-due-question-in-its-row")
            box, view = question.bounding_box(), page.viewport_size
            assert 0 <= box["y"] and box["y"] + box["height"] <= view["height"]  # asked in view, by its button
            page.get_by_role("button", name="Confirm").click()
            page.get_by_text("Globex: payment INV-PAST-DUE-1 recorded, subscription active again.").wait_for()
            settle(page)
            shot(page, "system-past-due-paid")
            assert fetch(db, "select status from organization_subscriptions where org_id = 'globex'")[0][0] == "active"
            assert billing_verify(globex_db).returncode == 0
        finally:
            context.close()
