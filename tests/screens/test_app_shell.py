"""The app shell (app.py) under AppTest: login form, server-side session check, logout, navigation per role,
organization selector, and the account page's password change.

AppTest runs no custom components, so the authenticator's cookie is never read here: a logged-in
browser session is seeded with what the authenticator puts in session state after a login, plus the
server-side session id. The real login through the cookie is covered by tests/browser/test_browser.py.
"""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine
from streamlit.testing.v1 import AppTest

import pages
from billing_core import auth, invitations, organizations
from billing_core.database import PROJECT_ROOT, fetch
from tests.screen_testing import plain, registered_screens, switch_screen

APP = str(PROJECT_ROOT / "app.py")
PASSWORD = "open sesame 1"
PASSWORD_HASH = auth.hash_password(PASSWORD)  # one bcrypt round for the whole module

ALL_PAGES = [entry.name for entry in pages.SCREENS]
NAVIGATION = {
    "mia": ["my_credits", "account"],  # member of acme
    "oscar": ["my_credits", "org_billing", "billing_settings", "audit_log", "account"],  # admin
    "root": ALL_PAGES,  # system admin
}
TITLES = {entry.name: entry.title for entry in pages.SCREENS}
EMAILS = {"mia": "mia@example.com", "oscar": "oscar@example.com", "root": "root@example.com"}


@pytest.fixture
def people(db: Engine, db_url: str, monkeypatch) -> Engine:
    """acme (mia member, oscar admin) and beta (oscar member), root the system admin; all with PASSWORD."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("BILLING_LOGIN_SLEEP_SECONDS", "0")
    monkeypatch.delenv("BILLING_COOKIE_KEY", raising=False)
    organizations.create_organization(db, None, "acme", "Acme <script>alert(1)</script>")
    organizations.create_organization(db, None, "beta", "Beta")
    for user_id, email in EMAILS.items():
        organizations.create_user(db, None, user_id, email, user_id.title(), is_system_admin=user_id == "root",
                                  password_hash=PASSWORD_HASH)
    organizations.add_member(db, None, "acme", "oscar", "admin")
    organizations.add_member(db, None, "acme", "mia", "member")
    organizations.add_member(db, None, "beta", "oscar", "member")
    return db


def anonymous() -> AppTest:
    return AppTest.from_file(APP, default_timeout=30)


def logged_in(db: Engine, user_id: str) -> tuple[AppTest, str]:
    """An app whose browser session is logged in as `user_id`, with a live server-side session."""
    session = auth.start_session(db, user_id)
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state["authentication_status"] = True
    at.session_state["username"] = EMAILS[user_id]
    at.session_state["name"] = user_id.title()
    at.session_state["billing_session_id"] = session
    return at, session


def navigation(at: AppTest) -> list[str]:
    """The screens st.navigation registered in the last run (their URL paths)."""
    return registered_screens(at)


def shows_login_form(at: AppTest) -> bool:
    return [t.label for t in at.text_input] == ["Email", "Password"] and at.button[0].label == "Log in"


def text_input(at: AppTest, label: str):
    return next(t for t in at.text_input if t.label == label)


def session_row(db: Engine, session: str) -> tuple:
    return tuple(fetch(db, "select ended_at is not null, end_reason from user_sessions where id = :id", {"id": session})[0])


def test_every_screen_of_the_registry_has_its_module():
    missing = [name for name in ALL_PAGES if not (PROJECT_ROOT / "pages" / f"{name}.py").is_file()]
    assert missing == [], f"pages.SCREENS lists these screens but their modules are missing: {missing}"


def test_anonymous_sees_the_login_form_and_no_page(people):
    at = anonymous().run()
    assert not at.exception
    assert shows_login_form(at)
    assert navigation(at) == []  # only the hidden login page: no screen is registered
    assert "actor_id" not in at.session_state and len(at.sidebar) == 0
    switch_screen(at, "account").run()  # a screen's URL leads to the login form
    assert shows_login_form(at) and "actor_id" not in at.session_state


def test_form_login_counts_failures_then_opens_a_session(people):
    db = people
    at = anonymous().run()
    text_input(at, "Email").input("Mia@Example.com")
    text_input(at, "Password").input("wrong password")
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["Email or password is incorrect."]
    assert fetch(db, "select failed_login_attempts from users where id = 'mia'")[0][0] == 1
    assert navigation(at) == []

    text_input(at, "Email").input("Mia@Example.com")
    text_input(at, "Password").input(PASSWORD)
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert at.session_state["actor_id"] == "mia" and at.session_state["org_id"] == "acme"
    assert navigation(at) == sorted((NAVIGATION["mia"]))
    # the run that logged in drew the landing screen without the login form above it
    assert [t.label for t in at.text_input if t.label in ("Email", "Password")] == []
    assert "Log in" not in [b.label for b in at.button]
    # and wrote the login cookie with a script (no component whose answer reruns the screen)
    scripts = [e.proto.srcdoc for e in at.get("iframe")]
    assert len(scripts) == 1 and "document.cookie = \"org_billing_login=" in scripts[0], scripts
    rows = fetch(db, "select user_id, cookie_ref is not null, ended_at from user_sessions")
    assert [tuple(r) for r in rows] == [("mia", True, None)]  # bound to the login cookie just issued
    assert fetch(db, "select failed_login_attempts, last_login_at is not null from users where id = 'mia'")[0] == (0, True)


def test_too_many_failed_logins_lock_the_account_for_a_while(people):
    db = people
    for _ in range(auth.MAX_LOGIN_ATTEMPTS):
        auth.record_failed_login(db, "mia@example.com")
    at = anonymous().run()
    text_input(at, "Email").input("mia@example.com")
    text_input(at, "Password").input(PASSWORD)  # even the right password
    at.button[0].click().run()
    assert "Too many failed logins" in at.error[0].value
    assert "actor_id" not in at.session_state
    assert fetch(db, "select count(*) from user_sessions")[0][0] == 0


@pytest.mark.parametrize("user_id", ["mia", "oscar", "root"])
def test_navigation_lists_exactly_what_the_role_may_see(people, user_id):
    at, _ = logged_in(people, user_id)
    at.run()
    assert not at.exception
    assert at.session_state["actor_id"] == user_id
    assert navigation(at) == sorted((NAVIGATION[user_id]))
    for page in ALL_PAGES:
        if page not in NAVIGATION[user_id]:
            switch_screen(at, page).run()  # not listed: its URL opens the landing screen instead
            assert not at.exception and TITLES[page] not in [title.value for title in at.title]


def test_organization_choice_heads_the_screen_drives_org_id_and_survives_in_the_url(people):
    at, _ = logged_in(people, "oscar")
    at.run()  # lands on My credits, an organization's screen: the choice heads it (also on a phone)
    selector = at.selectbox(key="organization_choice")
    assert selector.label == "Organization"
    assert selector.options == ["Acme <script>alert(1)</script> · admin", "Beta · member"]  # default first, as text
    assert at.session_state["org_id"] == "acme" and at.query_params["org"] == "acme"
    selector.set_value("beta").run()
    assert at.session_state["org_id"] == "beta" and at.query_params["org"] == "beta"
    assert navigation(at) == sorted(["my_credits", "account"])  # only a member there

    reloaded, _ = logged_in(people, "oscar")  # a reload: a new browser session with the URL's ?org=
    reloaded.query_params["org"] = "beta"
    reloaded.run()
    assert reloaded.session_state["org_id"] == "beta"
    stranger, _ = logged_in(people, "mia")  # a link naming an organization she is not in: her own instead
    stranger.query_params["org"] = "beta"
    stranger.run()
    assert stranger.session_state["org_id"] == "acme" and not stranger.exception

    root, _ = logged_in(people, "root")
    switch_screen(root.run(), "org_billing").run()
    assert root.selectbox(key="organization_choice").options == ["Acme <script>alert(1)</script>", "Beta"]
    # a screen that sets org_id (a click through to an organization) moves the choice with it
    root.session_state["org_id"] = "beta"
    root.run()
    assert root.selectbox(key="organization_choice").value == "beta" and root.session_state["org_id"] == "beta"


@pytest.mark.parametrize("how, notice", [
    ("logout elsewhere", "You logged out: please log in again."),
    ("password changed elsewhere", "Your password was changed since you logged in"),
    ("password reset by an admin", "A system admin reset your password"),
])
def test_a_dead_server_side_session_logs_the_browser_out(people, how, notice):
    db = people
    at, session = logged_in(db, "oscar")
    at.run()
    assert at.session_state["actor_id"] == "oscar"
    if how == "logout elsewhere":
        auth.end_session(db, session)
    elif how == "password changed elsewhere":
        with db.begin() as conn:  # however the hash changes, sessions started before are dead
            conn.exec_driver_sql("update users set password_hash = %s where id = 'oscar'", (PASSWORD_HASH[:-1] + "x",))
    else:
        auth.reset_password(db, "root", "oscar", "a fresh secret")
    at.run()
    assert not at.exception
    assert shows_login_form(at)
    assert notice in plain(at.info[0].value)
    assert "actor_id" not in at.session_state and not at.session_state["authentication_status"]
    assert navigation(at) == []


def test_logout_button_ends_the_server_side_session(people):
    db = people
    at, session = logged_in(db, "mia")
    at.run()
    logout = next(b for b in at.sidebar.button if b.label == "Log out")
    logout.click().run()
    assert shows_login_form(at)
    assert session_row(db, session) == (True, "logout")
    assert "actor_id" not in at.session_state and navigation(at) == []


def test_account_page_changes_the_password_and_ends_other_logins(people):
    db = people
    elsewhere = auth.start_session(db, "mia")
    at, session = logged_in(db, "mia")
    at.run()
    switch_screen(at, "account").run()
    assert not at.exception
    assert at.title[0].value == "Account"
    assert "mia@example.com" in [t.value for t in at.text]

    def submit(old: str, new: str, repeat: str) -> None:
        text_input(at, "Current password").input(old)
        text_input(at, "New password").input(new)
        text_input(at, "New password again").input(repeat)
        next(b for b in at.button if b.label == "Change password").click().run()

    submit("not my password", "brand new pass", "brand new pass")
    assert plain(at.error[0].value) == "Your current password is not correct: nothing was changed."
    submit(PASSWORD, "short", "short")
    assert "too short" in plain(at.error[0].value)
    stored = fetch(db, "select password_hash from users where id = 'mia'")[0][0]
    assert stored == PASSWORD_HASH and session_row(db, elsewhere) == (False, None)

    submit(PASSWORD, "brand new pass", "brand new pass")
    assert not at.error
    assert at.success[0].value == "Password changed. This login stays open; 1 other login ended."
    assert auth.password_matches("brand new pass", fetch(db, "select password_hash from users where id = 'mia'")[0][0])
    assert session_row(db, elsewhere) == (True, "password_changed")
    assert session_row(db, session) == (False, None)
    at.run()  # this login stays open after its own password change (app.py ran its session check)
    assert at.session_state["actor_id"] == "mia" and at.title[0].value == "Account"
    assert [b.label for b in at.sidebar.button] == ["Log out"]


def test_system_admin_resets_a_password_from_the_account_page(people):
    db = people
    mia_session = auth.start_session(db, "mia")
    at, _ = logged_in(db, "oscar")
    at.run()
    switch_screen(at, "account").run()
    assert "Reset a user's password" not in [s.value for s in at.subheader]  # org admins cannot

    at, _ = logged_in(db, "root")
    at.run()
    switch_screen(at, "account").run()
    text_input(at, "User's email").input("nobody@example.com")
    next(b for b in at.button if b.label == "Reset password").click().run()
    assert plain(at.error[0].value) == "No user has the email 'nobody@example.com'."
    text_input(at, "User's email").input(" MIA@example.com ")
    next(b for b in at.button if b.label == "Reset password").click().run()
    assert not at.error
    assert plain(at.success[0].value).startswith("New password for mia@example.com (1 login ended)")
    one_time = at.code[0].value
    stored = fetch(db, "select password_hash from users where id = 'mia'")[0][0]
    assert auth.password_matches(one_time, stored)
    assert session_row(db, mia_session) == (True, "password_reset")


def test_an_anonymous_page_load_reads_no_password_hash_and_the_app_runs_as_billing_app(people, monkeypatch):
    """Issue 8 (findings 7, 15): the login form's credentials hold no hash and no other user; every engine
    the app and its pages open is the app role's (SET ROLE billing_app)."""
    from billing_core import database

    loaded, roles_used = [], []
    real_load, real_get_engine = auth.load_credentials, database.get_engine

    def recording_load(db, email=None):
        loaded.append((email, real_load(db, email)))
        return loaded[-1][1]

    def recording_get_engine(url=None, role="owner"):
        roles_used.append(role)
        return real_get_engine(url, role)

    monkeypatch.setattr(auth, "load_credentials", recording_load)
    monkeypatch.setattr(database, "get_engine", recording_get_engine)
    at = anonymous().run()
    assert shows_login_form(at)
    assert loaded == [(None, {"usernames": {}})]  # every user with a password used to be here, hash included
    text_input(at, "Email").input("mia@example.com")
    text_input(at, "Password").input(PASSWORD)
    at.button[0].click().run()
    assert at.session_state["actor_id"] == "mia"
    switch_screen(at, "account").run()
    assert not at.exception
    assert all("password" not in entry for _, creds in loaded for entry in creds["usernames"].values())
    assert roles_used and set(roles_used) == {"app"}


HOSTILE_NAME = "[click](http://evil.example) ![x](http://evil.example/i.png) :red[x] **b** <b>h</b>"


def escaped(body: str) -> bool:
    """True when no markdown or HTML in `body` can take effect: every markup character is backslash-escaped."""
    return all(body.count(special) == body.count("\\" + special) for special in "[]()!*<>:_`#")


def test_names_render_as_text_in_the_sidebar_caption_and_headings(people):
    db = people
    organizations.create_organization(db, None, "evil", HOSTILE_NAME)
    organizations.add_member(db, None, "evil", "oscar", "admin")
    at, _ = logged_in(db, "oscar")
    at.session_state["org_id"] = "evil"
    at.run()
    assert not at.exception
    [caption] = [c.value for c in at.sidebar.caption]
    assert plain(caption) == f"Admin of Acme <script>alert(1)</script> · Member of Beta · Admin of {HOSTILE_NAME}"
    assert escaped(caption.replace(" · ", " "))
    switch_screen(at, "org_billing").run()
    assert not at.exception
    headings = [h.value for h in at.subheader if HOSTILE_NAME in plain(h.value)]
    assert headings and all(escaped(h) for h in headings)
    switch_screen(at, "my_credits").run()
    cards = [m.value for m in at.markdown if HOSTILE_NAME in plain(m.value)]
    assert cards and all(escaped(m.replace("**", "", 1)[::-1].replace("**", "", 1)[::-1]) for m in cards)


def test_an_invited_person_sets_their_own_password_at_the_login_page_then_accepts(people):
    db = people
    invitation = invitations.invite(db, "oscar", "acme", "newbie@example.com", display_name="New Bie")
    at = anonymous().run()
    assert shows_login_form(at)  # the code is no login: the login form stays email + password
    next(b for b in at.button if b.key == "first_password_open").click().run()

    def send(code: str, new: str) -> None:
        fields = {t.key: t for t in at.text_input if t.key and t.key.startswith("first_")}
        fields["first_email"].input(" NewBie@example.com ")
        fields["first_code"].input(code)
        fields["first_new"].input(new)
        fields["first_repeat"].input(new)
        next(b for b in at.button if b.key == "first_password_submit").click().run()
        assert not at.exception

    send("0" * 32, "my own password 1")
    assert any("do not match an open invitation" in plain(e.value) for e in at.error)
    send(invitation.one_time_code, "my own password 1")
    assert any(plain(s.value).startswith("Password set for NewBie@example.com") for s in at.success)
    assert auth.password_matches("my own password 1", fetch(db, "select password_hash from users"
                                                                 " where id = 'newbie@example.com'")[0][0])
    send(invitation.one_time_code, "taken over 1234")  # once
    assert any("works once" in plain(e.value) for e in at.error)

    # logged in with the new password: a notice says an invitation waits, My credits answers it
    session = auth.start_session(db, "newbie@example.com")
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state["authentication_status"] = True
    at.session_state["username"] = "newbie@example.com"
    at.session_state["billing_session_id"] = session
    at.run()
    assert not at.exception
    assert any("1 invitation to an organization waiting for your answer" in i.value for i in at.sidebar.info)
    next(b for b in at.button if b.label == "Accept").click().run()
    assert auth.user_roles(db, "newbie@example.com").role_in("acme") == "member"
    at.run()
    assert not at.sidebar.info


def test_an_invitation_names_its_organization_as_text(people):
    db = people
    organizations.create_organization(db, None, "evil", HOSTILE_NAME)
    organizations.add_member(db, None, "evil", "oscar", "admin")
    invitations.invite(db, "oscar", "evil", "mia@example.com")
    at, _ = logged_in(db, "mia")
    at.run()
    switch_screen(at, "my_credits").run()
    assert not at.exception
    [invitation] = [m.value for m in at.markdown if HOSTILE_NAME in plain(m.value)]
    assert plain(invitation).startswith(f"Oscar invites you to {HOSTILE_NAME} as member") and escaped(invitation)
