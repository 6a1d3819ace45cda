"""Logins and server-side sessions: the records that make a logout or a password change really end a login."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from billing_core import auth, organizations
from billing_core.database import fetch
from billing_core.errors import InvalidInput, PermissionDenied, RequestConflict

PASSWORD = "correct horse 1"
PASSWORD_HASH = auth.hash_password(PASSWORD)  # one bcrypt round for the module
OTHER_HASH = auth.hash_password("another password")


@pytest.fixture
def ada(db: Engine) -> str:
    """User 'ada' (ada@example.com) with password PASSWORD, admin of acme, member of beta (default acme)."""
    organizations.create_organization(db, None, "acme", "Acme <b>Inc</b>")
    organizations.create_organization(db, None, "beta", "Beta")
    organizations.create_user(db, None, "ada", "Ada@Example.com", "Ada", password_hash=PASSWORD_HASH)
    organizations.add_member(db, None, "acme", "ada", "admin")
    organizations.add_member(db, None, "beta", "ada", "member")
    return "ada"


def user_row(db: Engine, user_id: str) -> dict:
    rows = fetch(
        db,
        "select password_hash, failed_login_attempts, password_changed_at from users where id = :id",
        {"id": user_id},
    )
    return dict(zip(("hash", "failed", "changed_at"), rows[0], strict=True))


def audit(db: Engine, action: str) -> list[tuple]:
    return [tuple(r) for r in fetch(
        db, "select actor_id, target_id, details from audit_log where action = :a order by id", {"a": action})]


def test_session_lives_until_logout_and_logout_is_repeatable(db, ada):
    session = auth.start_session(db, ada, auth.cookie_ref("ada@example.com", 1.5))
    assert auth.check_session(db, session) == ada
    assert auth.resume_session(db, auth.cookie_ref("ada@example.com", 1.5)) == session
    assert auth.end_session(db, session) is True
    assert auth.end_session(db, session) is False  # already ended: nothing more to do
    with pytest.raises(PermissionDenied, match="You logged out: please log in again"):
        auth.check_session(db, session)
    with pytest.raises(PermissionDenied, match="You logged out"):
        auth.resume_session(db, auth.cookie_ref("ada@example.com", 1.5))


def test_unknown_session_cookie_and_user_are_refused(db, ada):
    with pytest.raises(PermissionDenied, match="unknown"):
        auth.check_session(db, "no-such-session")
    with pytest.raises(PermissionDenied, match="not logged in"):
        auth.check_session(db, "")
    with pytest.raises(PermissionDenied, match="belongs to no session"):
        auth.resume_session(db, auth.cookie_ref("ada@example.com", 2.0))
    organizations.create_user(db, None, "nopass", "nopass@example.com")
    with pytest.raises(PermissionDenied, match="has no password"):
        auth.start_session(db, "nopass")
    auth.start_session(db, ada, "same-cookie")
    with pytest.raises(Exception, match="already belongs to another session"):
        auth.start_session(db, ada, "same-cookie")


def test_idle_session_expires_without_being_touched(db, ada):
    session = auth.start_session(db, ada)
    with db.begin() as conn:
        conn.exec_driver_sql("update user_sessions set last_seen_at = now() - interval '13 hours'")
    with pytest.raises(PermissionDenied, match="expired after 12:00:00 without activity"):
        auth.check_session(db, session)


def test_password_change_ends_other_sessions_keeps_this_one_and_is_audited(db, ada):
    here = auth.start_session(db, ada)
    elsewhere = auth.start_session(db, ada, "cookie-elsewhere")
    ended = auth.change_password(db, ada, PASSWORD, "a new secret 2", repeat="a new secret 2", keep_session_id=here)
    assert ended == 1
    assert auth.check_session(db, here) == ada
    with pytest.raises(PermissionDenied, match="Your password was changed"):
        auth.check_session(db, elsewhere)
    with pytest.raises(PermissionDenied, match="Your password was changed"):
        auth.resume_session(db, "cookie-elsewhere")
    row = user_row(db, ada)
    assert auth.password_matches("a new secret 2", row["hash"]) and row["changed_at"] is not None
    assert audit(db, "user.password_changed") == [("ada", "ada", {"sessions_ended": 1})]
    # the new password is what the login form checks next
    assert auth.verify_login(db, "ada@example.com", "a new secret 2")["user_id"] == "ada"
    assert auth.verify_login(db, "ada@example.com", PASSWORD) is None


def test_wrong_old_password_or_bad_new_one_changes_nothing(db, ada):
    session = auth.start_session(db, ada)
    before = user_row(db, ada)
    refusals = [
        ("wrong old", "a new secret 2", "a new secret 2", PermissionDenied, "current password is not correct"),
        ("", "a new secret 2", "a new secret 2", PermissionDenied, "current password is not correct"),
        (PASSWORD, "short", "short", InvalidInput, "too short: use at least 12 characters"),
        (PASSWORD, "a new secret 2", "a new secret 3", InvalidInput, "two new passwords differ"),
        (PASSWORD, " padded secret ", " padded secret ", InvalidInput, "cannot start or end with a space"),
        (PASSWORD, "x" * 73, "x" * 73, InvalidInput, "too long"),
        (PASSWORD, PASSWORD, PASSWORD, InvalidInput, "is your current password"),
        (PASSWORD, "tab\tinside here!", "tab\tinside here!", InvalidInput, "control characters"),
    ]
    for old, new, repeat, error, message in refusals:
        with pytest.raises(error, match=message):
            auth.change_password(db, ada, old, new, repeat=repeat, keep_session_id=session)
    # nothing changed, except that the wrong current password counts as a failed login
    assert user_row(db, ada) == {**before, "failed": before["failed"] + 1}
    assert auth.check_session(db, session) == ada
    assert audit(db, "user.password_changed") == []


def test_password_changed_meanwhile_is_refused(db, ada):
    stale = user_row(db, ada)["hash"]
    auth.reset_password(db, None, ada, "operator set 1")
    with pytest.raises(RequestConflict, match="changed meanwhile"):
        db_call = "select change_user_password(:u, :h, :u, :old)"
        fetch(db, db_call, {"u": ada, "h": auth.hash_password("another one 1"), "old": stale})
    assert auth.password_matches("operator set 1", user_row(db, ada)["hash"])


def test_admin_reset_ends_every_session_and_only_system_admins_may(db, ada):
    organizations.create_user(db, None, "root", "root@example.com", "Root", is_system_admin=True,
                              password_hash=OTHER_HASH)
    organizations.create_user(db, None, "bob", "bob@example.com", "Bob", password_hash=OTHER_HASH)
    sessions = [auth.start_session(db, ada), auth.start_session(db, ada)]
    with pytest.raises(PermissionDenied, match="not a system admin"):
        auth.reset_password(db, "bob", ada, "bob was here 1")
    assert auth.password_matches(PASSWORD, user_row(db, ada)["hash"])
    assert auth.reset_password(db, "root", ada, "reset by root 1") == 2
    for session in sessions:
        with pytest.raises(PermissionDenied, match="A system admin reset your password"):
            auth.check_session(db, session)
    assert audit(db, "user.password_reset") == [("root", "ada", {"sessions_ended": 2})]


def test_a_direct_hash_update_also_kills_older_sessions(db, ada):
    session = auth.start_session(db, ada)
    with db.begin() as conn:
        conn.exec_driver_sql("update users set password_hash = null where id = 'ada'")
    with pytest.raises(PermissionDenied, match="password was changed since you logged in"):
        auth.check_session(db, session)
    assert auth.verify_login(db, "ada@example.com", PASSWORD) is None  # no password: no login


def test_failed_logins_are_counted_and_a_login_clears_them(db, ada):
    assert auth.verify_login(db, " ADA@example.com ", "wrong password 1") is None
    assert auth.verify_login(db, "ada@example.com", "wrong password 2") is None
    assert auth.record_failed_login(db, " ADA@example.com ") == 3
    assert auth.record_failed_login(db, "nobody@example.com") is None
    assert auth.verify_login(db, "nobody@example.com", PASSWORD) is None  # nothing written for an unknown email
    assert user_row(db, ada)["failed"] == 3
    # failures older than the lockout window no longer count
    with db.begin() as conn:
        conn.exec_driver_sql("update users set last_failed_login_at = now() - interval '16 minutes'")
    assert auth.record_failed_login(db, "ada@example.com") == 1
    assert auth.verify_login(db, "ada@example.com", PASSWORD)["user_id"] == "ada"  # counted as it is tried
    assert user_row(db, ada)["failed"] == 2
    auth.start_session(db, ada)
    assert user_row(db, ada)["failed"] == 0


def test_credentials_dict_holds_only_the_asked_user_without_a_hash(db, ada):
    organizations.create_user(db, None, "root", "root@example.com", "Root", is_system_admin=True,
                              password_hash=OTHER_HASH)
    assert auth.load_credentials(db) == {"usernames": {}}  # an anonymous page load reads no user
    creds = auth.load_credentials(db, " ADA@example.com")
    assert creds == {"usernames": {"ada@example.com": {
        "user_id": "ada", "email": "ada@example.com", "name": "Ada", "roles": ["admin", "member"], "logged_in": False,
    }}}
    assert auth.load_credentials(db, "root@example.com")["usernames"]["root@example.com"]["roles"] == ["system_admin"]
    assert auth.verify_login(db, "ada@example.com", PASSWORD) == creds["usernames"]["ada@example.com"]


def test_user_roles_and_organization_choices(db, ada):
    roles = auth.user_roles(db, ada)
    assert [m.org_id for m in roles.memberships] == ["acme", "beta"]  # default first
    assert roles.default_org_id == "acme"
    assert roles.labels == ["Admin of Acme <b>Inc</b>", "Member of Beta"]
    assert (roles.is_admin_of("acme"), roles.is_admin_of("beta"), roles.role_in("gamma")) == (True, False, None)
    organizations.set_default_organization(db, ada, "beta")
    assert auth.user_roles(db, ada).default_org_id == "beta"
    assert [c.org_id for c in auth.organization_choices(db, auth.user_roles(db, ada))] == ["beta", "acme"]

    organizations.create_organization(db, None, "gamma", "Gamma")
    organizations.create_user(db, None, "root", "root@example.com", "Root", is_system_admin=True)
    alone = auth.user_roles(db, "root")  # a user of no organization yet
    assert (alone.memberships, alone.default_org_id, alone.name, alone.is_system_admin) == ((), None, "Root", True)
    organizations.add_member(db, None, "gamma", "root", "member")
    root = auth.user_roles(db, "root")
    assert root.is_system_admin and root.is_admin_of("beta") and root.labels[0] == "System admin"
    choices = auth.organization_choices(db, root)
    assert [(c.org_id, c.role) for c in choices] == [("gamma", "member"), ("acme", None), ("beta", None)]
    with pytest.raises(Exception, match="does not exist"):
        auth.user_roles(db, "ghost")


def test_cookie_key_comes_from_the_environment_or_is_generated_once(db, monkeypatch):
    monkeypatch.delenv(auth.COOKIE_KEY_ENV, raising=False)
    first = auth.cookie_key(db)
    assert len(first) >= 48 and auth.cookie_key(db) == first  # stored once, reused
    monkeypatch.setenv(auth.COOKIE_KEY_ENV, "k" * 40)
    assert auth.cookie_key(db) == "k" * 40
    monkeypatch.setenv(auth.COOKIE_KEY_ENV, "some_key")
    with pytest.raises(InvalidInput, match="too short"):
        auth.cookie_key(db)


def test_generated_passwords_pass_the_rules():
    password = auth.generate_password()
    auth.check_new_password(password)
    assert password != auth.generate_password()


# -- login hardening (issue 8, finding 15) -------------------------------------------------------------


def test_parallel_logins_get_no_try_past_the_lockout(db, db_url, ada):
    """8 attempts at once, one try left: one password is checked, seven are refused before any check."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from billing_core import database
    from billing_core.errors import RateLimited

    app_db = database.app_engine(db_url)  # as the login form runs
    for n in range(auth.MAX_LOGIN_ATTEMPTS - 1):
        assert auth.verify_login(app_db, "ada@example.com", f"wrong password {n}") is None
    start = Barrier(8)
    checked = []

    def attempt(n: int) -> str:
        start.wait()
        try:
            entry = auth.verify_login(app_db, "ada@example.com", PASSWORD if n == 7 else f"guess number {n}")
        except RateLimited:
            return "refused"
        checked.append(n)
        return "in" if entry else "wrong"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(8)))
    assert outcomes.count("refused") == 7 and len(checked) == 1
    assert user_row(db, ada)["failed"] == auth.MAX_LOGIN_ATTEMPTS
    with pytest.raises(RateLimited, match="Too many failed logins for this email: try again after"):
        auth.verify_login(app_db, "ada@example.com", PASSWORD)  # even the right password, until the window passes
    assert user_row(db, ada)["failed"] == auth.MAX_LOGIN_ATTEMPTS  # a refused attempt writes nothing


def test_a_wrong_current_password_on_the_account_page_counts_as_a_failed_login(db, ada):
    from billing_core.errors import RateLimited

    for _ in range(auth.MAX_LOGIN_ATTEMPTS):
        with pytest.raises(PermissionDenied, match="current password is not correct"):
            auth.change_password(db, ada, "a wrong guess", "a new secret 2")
    with pytest.raises(RateLimited):
        auth.change_password(db, ada, PASSWORD, "a new secret 2")
    assert auth.password_matches(PASSWORD, user_row(db, ada)["hash"])


def test_sessions_end_seven_days_after_the_login_however_active(db, ada):
    session = auth.start_session(db, ada, "cookie-week")
    with db.begin() as conn:
        conn.exec_driver_sql("update user_sessions set started_at = now() - interval '6 days 23 hours'")
    assert auth.check_session(db, session) == ada
    with db.begin() as conn:  # seen a minute ago, but logged in 7 days and a minute ago
        conn.exec_driver_sql("update user_sessions set started_at = now() - interval '7 days 1 minute',"
                             " last_seen_at = now() - interval '1 minute'")
    with pytest.raises(PermissionDenied, match="older than 7 days, the longest a login lasts"):
        auth.check_session(db, session)
    with pytest.raises(PermissionDenied, match="older than 7 days"):
        auth.resume_session(db, "cookie-week")


@pytest.mark.parametrize(("password", "message"), [
    ("elevenchars", "too short: use at least 12"),
    ("Password1234", "too easy to guess"),
    ("!!password!!", "too easy to guess"),
    ("qwertyuiop12", "too easy to guess"),
    ("zzzzzzzzzzzz", "too easy to guess"),
    ("abcdefghijklm", "too easy to guess"),
    ("ada.lovelace@example.com", "contains your email or name"),
    ("my name is Lovelace", "contains your email or name"),
    ("I am ada.lovelace!", "contains your email or name"),
])
def test_password_policy_refuses_short_common_personal_and_trivial_passwords(password, message):
    with pytest.raises(InvalidInput, match=message):
        auth.check_new_password(password, email="ada.lovelace@example.com", name="Ada Lovelace")


def test_password_policy_accepts_long_passphrases_and_generated_passwords():
    for password in ("correct horse 1", "four words make a key", auth.generate_password()):
        auth.check_new_password(password, email="ada.lovelace@example.com", name="Ada Lovelace")


def test_a_reset_password_follows_the_policy_with_the_users_own_details(db, ada):
    with pytest.raises(InvalidInput, match="contains your email or name"):
        auth.reset_password(db, None, ada, "Ada@Example.com is me")
