"""The real login in a real browser: Playwright drives Debian's Chromium against the app on a loopback port.

Covers what AppTest cannot: the login form and the authenticator's cookie. A reload with a live
cookie resumes its server-side session; after a logout or a password change made elsewhere, the
same (still validly signed) cookie is refused by the server-side session check.
Screenshots land in test-artifacts/.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from billing_core import auth, credits, database, organizations
from billing_core.database import PROJECT_ROOT, fetch

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PASSWORDS = {"ada@example.com": "ada password 1", "mia@example.com": "mia password 1"}

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install -e '.[dev]')")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: install it with apt-get install -y chromium"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app_db(pg_server, template_database) -> Iterator[str]:
    """A migrated database for this module: acme with ada (admin) and mia (member), both with passwords."""
    name = f"billing_browser_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name, template=template_database)
    db = database.get_engine(url)
    organizations.create_organization(db, None, "acme", "Acme <b>Inc</b> \"quoted\"")
    for user_id, role in (("ada", "admin"), ("mia", "member")):
        email = f"{user_id}@example.com"
        organizations.create_user(db, None, user_id, email, user_id.title(), password_hash=auth.hash_password(PASSWORDS[email]))
        organizations.add_member(db, None, "acme", user_id, role)
    credits.add_credits(db, None, "acme", 10_000, 10)
    yield url
    database.dispose_engine(url)
    pg_server.drop_database(name)


@contextlib.contextmanager
def running_app(database_url: str, log_name: str = "browser-streamlit.log") -> Iterator[str]:
    """The app, started with `streamlit run app.py` on a free loopback port against `database_url`; its base URL."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "BILLING_LOGIN_SLEEP_SECONDS": "0.1"}
    env.pop("BILLING_COOKIE_KEY", None)  # the app generates its key and keeps it in the database
    log = (ARTIFACTS / log_name)
    ARTIFACTS.mkdir(exist_ok=True)
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
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
                pytest.fail(f"the app did not start; see {log}:\n{log.read_text()[-2000:]}")
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
    page.goto(f"{app_url}/overview")  # a page a member may not open, by its URL (AppTest checks every page)
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
        second.goto(f"{app_url}/my-account")
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
