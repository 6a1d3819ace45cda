"""The login and the browser session: the login form, the server-side session check on every run,
logout, and the "First time here?" password form. app.py asks `logged_in_user` who is acting.

Session state this module sets for the screens (they only read it): actor_id, the logged-in user's id.
"""

from __future__ import annotations

import json
import types
from datetime import datetime, timezone
from urllib.parse import urlsplit

import streamlit as st
import streamlit.components.v1 as components
import streamlit_authenticator as stauth
from sqlalchemy.engine import Engine
from streamlit import config as st_config
from streamlit.runtime.pages_manager import PagesManager
from streamlit_authenticator.models import cookie_model
from streamlit_authenticator.utilities import LoginError

from billing_core import auth, database, invitations, migrations, settings
from billing_core.errors import BillingError
from pages import kit
from pages.kit.session import ACTOR_KEY, ORG_KEY

COOKIE_NAME = "org_billing_login"


COOKIE_EXPIRY_DAYS = 1.0


SESSION_KEY = "billing_session_id"  # the server-side session (user_sessions.id) of this browser session


LOGOUT_KEY = "_billing_logout_requested"


NOTICE_KEY = "_billing_login_notice"


RESUME_KEY = "_billing_cookie_session"  # the live session a returning login cookie is bound to


WANTED_KEY = "_billing_wanted_page"  # the URL path a browser session opened with (a link, a reload)


STARTED_KEY = "_billing_started"


FIRST_PASSWORD_KEY = "_billing_first_password"  # the login page shows the "set your password" form


class _LoginCookie:
    """The authenticator's cookie manager, without a component that answers: it sets and deletes the login
    cookie with a script in an iframe of no height, and the cookie is read from the request
    (st.context.cookies), as the authenticator reads it anyway.

    extra_streamlit_components' CookieManager draws a component on every run that sends all cookies back
    when it loads and after each change; each answer reruns the whole screen: one more run for every
    new browser session, two more after each login, all of them paying the screen's charts again.
    """

    def __init__(self, key: str = "init") -> None:
        self.cookies: dict[str, str] = {}
        self.place: st.delta_generator.DeltaGenerator | None = None  # where its script is drawn (logged_in_user)

    def set(self, cookie: str, val: str, key: str = "set", path: str = "/", expires_at: datetime | None = None,
            **_: object) -> None:
        """Set cookie `cookie` to `val` in the browser (until `expires_at`, else for the browser session)."""
        expires = f"; expires={expires_at.astimezone(timezone.utc):%a, %d %b %Y %H:%M:%S GMT}" if expires_at else ""
        self._script(f"{cookie}={val}{expires}; path={path}; SameSite=Strict")
        self.cookies[cookie] = val

    def delete(self, cookie: str, key: str = "delete") -> None:
        """Delete cookie `cookie` in the browser."""
        self._script(f"{cookie}=; expires=Thu, 01 Jan 1970 00:00:00 GMT; path=/; SameSite=Strict")
        self.cookies.pop(cookie, None)

    def _script(self, assignment: str) -> None:
        # the iframe is same-origin (Streamlit's sandbox allows it): its document.cookie is the app's
        literal = json.dumps(assignment).replace("<", "\\u003c")  # no "</script>" can close the script early
        with (self.place or st.empty()).container():
            components.html(f"<script>document.cookie = {literal};</script>", height=0)


# streamlit-authenticator 0.4 builds its cookie manager as stx.CookieManager() in CookieModel.__init__
cookie_model.stx = types.SimpleNamespace(CookieManager=_LoginCookie)


@st.cache_resource(show_spinner="Preparing the database…")
def _prepared_database(configured_url: str | None) -> str:
    """The database URL, migrated once per process (and per DATABASE_URL)."""
    url = database.database_url()
    migrations.migrate(url)
    return url


@st.cache_resource
def _cookie_key(url: str, configured_key: str | None) -> str:
    return auth.cookie_key(database.app_engine(url))


def _request_logout(url: str, session_id: str | None) -> None:
    """Logout button: end the server-side session now; the next run logs the authenticator out."""
    if session_id:
        auth.end_session(database.app_engine(url), session_id)
    st.session_state[LOGOUT_KEY] = True


def _sign_out(db: Engine, authenticator: stauth.Authenticate, notice: str | None = None) -> None:
    """Log this browser session out: clear the login, end its server-side session, delete the cookie.

    A run can be interrupted at any Streamlit element (a component's answer triggers a rerun), so
    the login is cleared first and the cookie, which renders an element, is deleted last.
    """
    state = st.session_state
    if state.get("authentication_status"):
        authenticator.authentication_controller.logout()  # session state only: no element
    state["logout"] = True  # the authenticator's flag: ignore the cookie from now on
    session_id = state.pop(SESSION_KEY, None)
    if session_id:
        auth.end_session(db, session_id)
    for key in (ACTOR_KEY, ORG_KEY, RESUME_KEY):
        state.pop(key, None)
    if notice:
        state[NOTICE_KEY] = notice
    _delete_cookie(authenticator)


def _delete_cookie(authenticator: stauth.Authenticate) -> None:
    """Delete the login cookie in the browser (an element: once per run, or its key would repeat)."""
    if not getattr(authenticator, "_billing_cookie_deleted", False):
        authenticator._billing_cookie_deleted = True
        authenticator.cookie_controller.delete_cookie()


def _session_user(db: Engine, credentials: dict) -> str:
    """The user id of this browser session's live server-side session; raises BillingError when it is dead."""
    state = st.session_state
    user_id = auth.check_session(db, state.get(SESSION_KEY))
    entry = credentials["usernames"].get((state.get("username") or "").lower())
    if entry is None or entry["user_id"] != user_id:
        raise BillingError("Your login does not match your session: please log in again.")
    return user_id


def _check_cookie(db: Engine, authenticator: stauth.Authenticate) -> None:
    """Before the authenticator logs in from its cookie: that cookie's server-side session must be live.

    A live one is remembered (RESUME_KEY) for the login to adopt; a cookie whose session ended
    (logout, password change) is refused: the authenticator is told to ignore it, it is deleted,
    and the login form says why.
    """
    state = st.session_state
    state.pop(RESUME_KEY, None)
    token = authenticator.cookie_controller.get_cookie()
    if not token:
        return
    try:
        state[RESUME_KEY] = auth.resume_session(db, auth.cookie_ref(token["username"], token["exp_date"]))
        # the authenticator logs in from the cookie only for a user in its credentials: this one alone
        authenticator.authentication_controller.authentication_model.credentials["usernames"].update(
            auth.load_credentials(db, token["username"])["usernames"]
        )
    except BillingError as exc:
        state["logout"] = True
        state[NOTICE_KEY] = str(exc)
        _delete_cookie(authenticator)


def _check_passwords_in_database(db: Engine, authenticator: stauth.Authenticate) -> None:
    """Let the authenticator check a submitted login with auth.verify_login instead of its credentials dict.

    The dict then never holds a password hash: verify_login reads the one hash of the email being tried,
    after counting the attempt in SQL under the user's row lock (parallel attempts cannot pass the
    lockout), and its entry joins the dict only when the password is right.
    """
    model = authenticator.authentication_controller.authentication_model

    def check_credentials(username: str, password: str) -> bool:
        entry = auth.verify_login(db, username, password)
        if entry is None:
            return False
        model.credentials["usernames"][username] = entry
        return True

    model.check_credentials = check_credentials


def _login_form(authenticator: stauth.Authenticate, slot: st.delta_generator.DeltaGenerator) -> None:
    """The login form (or the authenticator's login from its cookie); attempts are counted in the database.

    The form is drawn in `slot`, which a successful login empties in the same run, so the landing screen
    drawn below it does not open under a stale login form. The login cookie's element (the authenticator
    draws it at the login) is drawn after the slot, not in it: emptied, it would never set the cookie.
    """
    cookie_wanted = []
    set_cookie = authenticator.cookie_controller.set_cookie
    authenticator.cookie_controller.set_cookie = lambda: cookie_wanted.append(True)
    with slot.container():
        st.title("Organization billing")
        notice = st.session_state.get(NOTICE_KEY)  # kept until the next login: a rerun must not hide it
        if notice:
            st.info(kit.md_text(notice))
        try:
            authenticator.login(
                location="main",  # no max_login_attempts: begin_login_attempt enforces the lockout
                fields={"Form name": "Log in", "Username": "Email", "Password": "Password", "Login": "Log in"},
                key="login",
            )
        except LoginError:
            st.error("This login is not valid any more: please log in with your email and password.")
        except BillingError as exc:  # too many failed logins (RateLimited), malformed email
            st.error(str(exc))
        if st.session_state.get("authentication_status") is False:
            st.error("Email or password is incorrect.")
    authenticator.cookie_controller.set_cookie = set_cookie
    if st.session_state.get("authentication_status"):
        st.session_state.pop(NOTICE_KEY, None)
        slot.empty()
        if cookie_wanted:
            set_cookie()


def _open_session(db: Engine, authenticator: stauth.Authenticate, credentials: dict) -> None:
    """For a login without a server-side session yet: adopt its cookie's live session, or start one.

    Only the authenticator's login sets authentication_status, and a logout clears it before it
    drops the session id, so a login without a session id is a fresh one (possibly from a run that
    was interrupted before it got this far).
    """
    state = st.session_state
    entry = credentials["usernames"].get((state.get("username") or "").lower())
    if entry is None:
        raise BillingError("This account cannot log in any more: ask a system admin.")
    resumed = state.pop(RESUME_KEY, None)
    if resumed:
        state[SESSION_KEY] = resumed  # _session_user checks that it is this user's
        return
    expires = authenticator.cookie_controller.cookie_model.exp_date  # set when this run's form login set a cookie
    cookie = auth.cookie_ref(state["username"], expires) if expires else None
    state[SESSION_KEY] = auth.start_session(db, entry["user_id"], cookie)


def _identify(db: Engine, authenticator: stauth.Authenticate, credentials: dict,
              form_slot: st.delta_generator.DeltaGenerator) -> str | None:
    """The logged-in user's id for this run (its server-side session checked), or None after the login form."""
    state = st.session_state
    if state.pop(LOGOUT_KEY, False):
        _sign_out(db, authenticator)
    fresh = not state.get("authentication_status")
    if fresh:
        _check_cookie(db, authenticator)
        _login_form(authenticator, form_slot)
        if not state.get("authentication_status"):
            state.pop(RESUME_KEY, None)
            return None
    try:
        if not state.get(SESSION_KEY):
            _open_session(db, authenticator, credentials)
        return _session_user(db, credentials)
    except BillingError as exc:
        _sign_out(db, authenticator, notice=str(exc))
        if fresh:
            st.rerun()  # this run already showed the login form
        _login_form(authenticator, form_slot)
        return None


def _leave_pages_folder_mode() -> None:
    """Run again, once per process, when Streamlit started this run in its old pages/-folder mode.

    A process's first run sees the pages/ folder and runs this script as one page of an old-style
    multipage app; its widgets get other ids than in every later run, so a login typed into that
    run's form would be lost. (AppTest starts every run in that mode, consistently: left alone.)
    """
    if PagesManager.uses_pages_directory and not st_config.get_option("global.appTest"):
        PagesManager.uses_pages_directory = False
        st.rerun()


def _remember_wanted_page() -> None:
    """On a browser session's first run, remember the page its URL names: that run is often cut short
    (the cookie component's answer reruns the app) and the rerun no longer carries the URL's page."""
    state = st.session_state
    if not state.get(STARTED_KEY):
        state[STARTED_KEY] = True
        path = urlsplit(st.context.url or "").path.strip("/").rsplit("/", 1)[-1]
        if path and path != "login":
            state[WANTED_KEY] = path


def _login_help() -> None:
    st.caption("Log in with your email address. Forgot your password? Ask a system admin to reset it.")
    _first_password_form()


def _set_first_password() -> None:
    """The "First time here?" form was sent: the invitation's one-time code sets the person's own password."""
    state = st.session_state
    db = database.get_engine(_prepared_database(settings.database_url()))
    email = (state.get("first_email") or "").strip()
    kit.write(
        "first_password",
        invitations.set_password_with_code, db, email, state.get("first_code") or "",
        state.get("first_new") or "", state.get("first_repeat") or "",
        success=f"Password set for {email}: log in with it above, then accept your invitation.",
    )
    for key in ("first_code", "first_new", "first_repeat"):
        state[key] = ""


def _first_password_form() -> None:
    """For a person an invitation created an account for: set their own password with its one-time code."""
    state = st.session_state
    if not state.get(FIRST_PASSWORD_KEY):
        st.button("First time here? Set your password with the one-time code of your invitation",
                  key="first_password_open", on_click=lambda: state.update({FIRST_PASSWORD_KEY: True}))
    else:
        with st.form("first_password_form"):
            st.markdown("**Set your password**")
            st.text_input("Email", key="first_email")
            st.text_input("One-time code", key="first_code", type="password")
            st.text_input("New password", key="first_new", type="password",
                          help=f"At least {auth.MIN_PASSWORD_LENGTH} characters.")
            st.text_input("New password again", key="first_repeat", type="password")
            st.form_submit_button("Set my password", key="first_password_submit", on_click=_set_first_password)
    kit.show_flash("first_password")


def begin_run() -> None:
    """First in every run: remember the page a fresh browser session's URL names; leave the old pages/ mode."""
    _remember_wanted_page()
    _leave_pages_folder_mode()


def prepared_database() -> str:
    """The database URL of this process, migrated once."""
    return _prepared_database(settings.database_url())


def wanted_page() -> str | None:
    """The screen (URL path) a fresh browser session's first URL named, once."""
    return st.session_state.pop(WANTED_KEY, None)


def logged_in_user(db: Engine, url: str, screen_paths: list[str]) -> str | None:
    """The logged-in user's id for this run (session checked), or None after showing the login form.

    Without a login, every screen's URL path leads to the login form (no "page not found"); the screen
    opens after the login.
    """
    state = st.session_state
    key = _cookie_key(url, settings.COOKIE_KEY.value())
    known = state.get("username") if state.get("authentication_status") else None
    credentials = auth.load_credentials(db, known)
    authenticator = stauth.Authenticate(  # never cached: it holds this browser session's login
        credentials,
        COOKIE_NAME,
        key,
        COOKIE_EXPIRY_DAYS,
        auto_hash=False,
        login_sleep_time=settings.login_sleep_seconds(),
    )
    _check_passwords_in_database(db, authenticator)
    # two places at the top of every run, logged in or not, so that the screen's elements keep their
    # positions from the run that logged in to the next (shifted, they would show twice while it runs)
    form_slot, cookie_slot = st.empty(), st.empty()
    authenticator.cookie_controller.cookie_model.cookie_manager.place = cookie_slot
    user_id = _identify(db, authenticator, credentials, form_slot)
    if user_id is None:
        state.pop(ACTOR_KEY, None)
        state.pop(ORG_KEY, None)
        login = [st.Page(_login_help, title="Log in", url_path="login", default=True)]
        login += [st.Page(_login_help, title="Log in", url_path=path) for path in screen_paths]
        st.navigation(login, position="hidden").run()
        return None
    state[ACTOR_KEY] = user_id
    return user_id


def logout_button(url: str) -> None:
    """The sidebar's Log out button."""
    st.button("Log out", key="logout_button", on_click=_request_logout,
              args=(url, st.session_state.get(SESSION_KEY)))
