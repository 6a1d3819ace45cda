"""Passwords, logins and server-side sessions: what the app's login needs from PostgreSQL.

Users log in with their email (the authenticator's "username") and a bcrypt
password kept in users.password_hash. The authenticator's login cookie stays
valid after a logout or a password change, so every login also gets a session
row (sql/routines/060_sessions.sql) that the app checks on every run:
`start_session` after a login, `check_session` on each run, `end_session` at
logout; `change_password` ends the user's other sessions. Sessions also end
7 days after the login however active (ledger_session_lifetime).

The login form never holds every user's password hash: the authenticator gets
the credentials of the logged-in user only (without a hash), and a submitted
login is checked by `verify_login`, which counts the attempt in SQL under the
user's row lock before it checks the password (begin_login_attempt), so
parallel attempts cannot get past the lockout.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

import bcrypt
from sqlalchemy.engine import Engine

from billing_core import settings
from billing_core.database import call, fetch
from billing_core.errors import InvalidInput, NotFound, PermissionDenied

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_BYTES = 72  # bcrypt reads no further; bcrypt 5 refuses longer input
MIN_COOKIE_KEY_LENGTH = settings.MIN_COOKIE_KEY_LENGTH
COOKIE_KEY_SETTING = "login.cookie_key"
COOKIE_KEY_ENV = settings.COOKIE_KEY.name
MAX_LOGIN_ATTEMPTS = 5  # ledger_login_max_attempts(), within ledger_login_lockout_window() (15 minutes)
PASSWORD_RULES = (
    f"At least {MIN_PASSWORD_LENGTH} characters (a few words make a good one); not a common password,"
    " not your email or name, not one character repeated or a run like abcdefghijkl."
)
# the most common passwords of public breach lists that are 12 characters or longer (shorter ones fail the
# length rule anyway), compared without case and without surrounding digits and punctuation
COMMON_PASSWORDS = frozenset({
    "password", "passwordpassword", "qwertyuiop", "qwertyuiopasdfghjkl", "qwertyuiopasdfghjklzxcvbnm",
    "asdfghjkl", "zxcvbnm", "iloveyou", "welcome", "letmein", "trustno", "administrator", "changeme",
    "baseball", "football", "superman", "princess", "sunshine", "starwars", "whatever", "monkey", "dragon",
    "master", "shadow", "michael", "jennifer", "abcdefghijkl", "abcdefghijklmnop", "billing", "billingdemo",
    "organization", "organizationbilling", "correcthorsebatterystaple", "1q2w3e4r5t6y", "q1w2e3r4t5y6",
    "qazwsxedcrfv", "1qaz2wsx3edc", "passw0rd", "p@ssw0rd", "p@ssword", "welcome to", "let me in",
})


def hash_password(plain: str) -> str:
    """A bcrypt hash of `plain`, in the form streamlit-authenticator verifies."""
    return bcrypt.hashpw(plain.encode(), bcrypt.gensalt()).decode()


def password_matches(plain: str, hashed: str) -> bool:
    """True when `plain` is the password behind `hashed`."""
    return bcrypt.checkpw(plain.encode(), hashed.encode())


def generate_password() -> str:
    """A random one-time password (16 URL-safe characters) to show once to a new user."""
    return secrets.token_urlsafe(12)


def _is_run(text: str) -> bool:
    """True for one character repeated, or a run of consecutive characters (abcdef, 98765), any case."""
    codes = [ord(ch) for ch in text.lower()]
    steps = {b - a for a, b in zip(codes, codes[1:], strict=False)}
    return len(steps) <= 1 and steps <= {-1, 0, 1}


def check_new_password(
    new: str, repeat: str | None = None, *, email: str | None = None, name: str | None = None
) -> None:
    """Raise InvalidInput, with what to fix, unless `new` is acceptable (and equals `repeat`, when given).

    The policy (NIST SP 800-63B style: length over composition rules): at least 12 characters, at most
    72 bytes (bcrypt), no control characters, not a common password, not the user's email, its name part
    or their name, not one character repeated or a run of consecutive characters.
    """
    if not new:
        raise InvalidInput("Enter a new password.")
    if new != new.strip():
        raise InvalidInput("The new password cannot start or end with a space (the login form drops them).")
    if len(new) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"The new password is too short: use at least {MIN_PASSWORD_LENGTH} characters"
            " (a few words make a good one)."
        )
    if len(new.encode()) > MAX_PASSWORD_BYTES:
        raise InvalidInput(f"The new password is too long: at most {MAX_PASSWORD_BYTES} bytes.")
    if any(not ch.isprintable() for ch in new):
        raise InvalidInput("The new password contains control characters (tabs, line breaks...): remove them.")
    folded = new.casefold()
    core = re.sub(r"^[\W\d_]+|[\W\d_]+$", "", folded)
    if folded in COMMON_PASSWORDS or core in COMMON_PASSWORDS or _is_run(new):
        raise InvalidInput(
            "The new password is too easy to guess (a common password or a simple run): choose another one."
        )
    personal = [email, (email or "").split("@")[0], name, *(name or "").split()]
    squeezed = re.sub(r"[\W_]+", "", folded)
    for part in (p.casefold() for p in personal if p and len(p.strip()) >= 4):
        if part in folded or re.sub(r"[\W_]+", "", part) in squeezed:
            raise InvalidInput("The new password contains your email or name: choose one that does not.")
    if repeat is not None and repeat != new:
        raise InvalidInput("The two new passwords differ: type the same new password twice.")


# -- roles -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Membership:
    """One organization a user belongs to."""

    org_id: str
    org_name: str
    role: str  # 'admin' or 'member'
    is_default: bool


@dataclass(frozen=True)
class UserRoles:
    """What a user may see: system admin or not, and their organizations, default first."""

    user_id: str
    email: str
    name: str
    is_system_admin: bool
    memberships: tuple[Membership, ...]

    @property
    def default_org_id(self) -> str | None:
        """The organization to show first: the default one, else the first joined, else None."""
        return self.memberships[0].org_id if self.memberships else None

    def role_in(self, org_id: str | None) -> str | None:
        """'system_admin', 'admin', 'member' or None for this organization."""
        if self.is_system_admin:
            return "system_admin"
        return next((m.role for m in self.memberships if m.org_id == org_id), None)

    def is_admin_of(self, org_id: str | None) -> bool:
        """True for a system admin, or an admin of `org_id`."""
        return self.role_in(org_id) in ("system_admin", "admin")

    @property
    def labels(self) -> list[str]:
        """The roles in words: 'System admin', 'Admin of Acme', 'Member of Beta'."""
        words = ["System admin"] if self.is_system_admin else []
        words += [f"{'Admin' if m.role == 'admin' else 'Member'} of {m.org_name}" for m in self.memberships]
        return words


def user_roles(db: Engine, user_id: str) -> UserRoles:
    """The user's roles and organizations (default organization first); NotFound for an unknown user."""
    rows = fetch(  # one round trip: the account, and a row per membership (none: one row of nulls)
        db,
        "select a.id as user_id, a.email, a.display_name as name, a.is_system_admin, m.org_id, m.org_name, m.role,"
        " m.is_default from user_account(:user_id) a"
        " left join lateral user_memberships(a.id) with ordinality m on true order by m.ordinality",
        {"user_id": user_id},
    )
    if not rows:
        raise NotFound(f"User {user_id!r} does not exist.")
    user = rows[0]._mapping
    memberships = tuple(Membership(row.org_id, row.org_name, row.role, row.is_default)
                        for row in rows if row.org_id is not None)
    return UserRoles(user["user_id"], user["email"], user["name"], user["is_system_admin"], memberships)


def user_id_for_email(db: Engine, email: str) -> str | None:
    """The id of the user with this email (any case, surrounding spaces ignored), or None."""
    if not email or not email.strip():
        raise InvalidInput("Enter an email address.")
    return call(db, "select user_id_for_email(:email)", {"email": email})


@dataclass(frozen=True)
class OrgChoice:
    """An organization the user may pick in the sidebar."""

    org_id: str
    name: str
    role: str | None  # the user's membership role; None for a system admin outside it


def organization_choices(db: Engine, roles: UserRoles) -> list[OrgChoice]:
    """The organizations this user may pick: their own (default first), then, for system admins, all others by name."""
    choices = [OrgChoice(m.org_id, m.org_name, m.role) for m in roles.memberships]
    if roles.is_system_admin:
        own = {m.org_id for m in roles.memberships}
        rows = fetch(db, "select org_id, name from all_organizations(:actor_id)", {"actor_id": roles.user_id})
        choices += [OrgChoice(org_id, name, None) for org_id, name in rows if org_id not in own]
    return choices


# -- the authenticator's credentials -----------------------------------------------------------------


def _entry(user_id: str, email: str, name: str, roles: Any) -> dict[str, Any]:
    return {"user_id": user_id, "email": email, "name": name, "roles": list(roles), "logged_in": False}


def load_credentials(db: Engine, email: str | None = None) -> dict[str, Any]:
    """The credentials dict streamlit-authenticator takes, keyed by email: only `email`'s entry (none
    without an email: an anonymous page load reads no user). Entries hold no password hash (passwords are
    checked by `verify_login`): user_id, email, name, roles, logged_in."""
    usernames: dict[str, Any] = {}
    if email:
        rows = fetch(db, "select user_id, email, name, roles from login_entry(:email)", {"email": email})
        for user_id, user_email, name, roles in rows:
            usernames[user_email.lower()] = _entry(user_id, user_email, name, roles)
    return {"usernames": usernames}


@functools.cache
def _decoy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def _begin_login_attempt(db: Engine, email: str) -> tuple[dict[str, Any], str] | None:
    rows = fetch(
        db, "select user_id, email, name, password_hash, roles from begin_login_attempt(:email)", {"email": email}
    )
    if not rows:
        return None
    user_id, user_email, name, password_hash, roles = rows[0]
    return _entry(user_id, user_email, name, roles), password_hash


def verify_login(db: Engine, email: str, password: str | None) -> dict[str, Any] | None:
    """The credentials entry of the user whose email and password these are, or None.

    The attempt is counted (in SQL, under the user's row lock) before the password is checked, so
    parallel attempts queue and none gets past the lockout; RateLimited once too many failed within
    the lockout window. A successful login clears the count (`start_session`). An unknown email costs
    the same bcrypt check, so the answer's timing does not tell which emails have an account.
    """
    if not email or not email.strip() or not password:
        return None
    attempt = _begin_login_attempt(db, email)
    if attempt is None:
        password_matches(password, _decoy_hash())
        return None
    entry, password_hash = attempt
    return entry if password_matches(password, password_hash) else None


def record_failed_login(db: Engine, email: str, attempts: int = 1) -> int | None:
    """Count failed logins for `email` (operators and tests); returns the count within the lockout window
    (None: unknown email). The app counts its attempts with `verify_login`."""
    return call(db, "select record_failed_login(:email, :attempts)", {"email": email, "attempts": attempts})


def cookie_key(db: Engine) -> str:
    """The login cookie's signing key: BILLING_COOKIE_KEY, else a random key generated once and kept in the database."""
    configured = settings.cookie_key()
    if configured:
        return configured
    return call(
        db,
        "select app_setting(:key, :candidate)",
        {"key": COOKIE_KEY_SETTING, "candidate": secrets.token_urlsafe(48)},
    )


def cookie_ref(username: str, expires: float) -> str:
    """The digest that binds a login cookie (its signed username and expiry) to its session row."""
    return hashlib.sha256(f"{username}\n{expires!r}".encode()).hexdigest()


# -- sessions ----------------------------------------------------------------------------------------


def start_session(db: Engine, user_id: str, cookie: str | None = None) -> str:
    """Record a new login of `user_id` (bound to the login cookie `cookie`, a `cookie_ref`); returns the session id."""
    return call(db, "select start_user_session(:user_id, :cookie)", {"user_id": user_id, "cookie": cookie})


def check_session(db: Engine, session_id: str) -> str:
    """The user id of a live session; PermissionDenied (saying why and what to do) for a dead one."""
    if not session_id:
        raise PermissionDenied("You are not logged in: please log in.")
    return call(db, "select check_user_session(:session_id)", {"session_id": session_id})


def resume_session(db: Engine, cookie: str) -> str:
    """The id of the live session bound to login cookie `cookie`; PermissionDenied when there is none."""
    return call(db, "select resume_user_session(:cookie)", {"cookie": cookie})


def end_session(db: Engine, session_id: str, reason: str = "logout") -> bool:
    """End a session (logout); False when it was unknown or already ended."""
    return bool(call(db, "select end_user_session(:session_id, :reason)", {"session_id": session_id, "reason": reason}))


def change_password(
    db: Engine,
    user_id: str,
    old: str,
    new: str,
    *,
    repeat: str | None = None,
    keep_session_id: str | None = None,
) -> int:
    """Change the user's own password after checking the old one; ends the user's other sessions
    (all but `keep_session_id`) and returns how many. Refusals change nothing, except that a wrong
    current password counts as a failed login (the form must not be a way around the lockout)."""
    me = user_roles(db, user_id)
    check_new_password(new, repeat, email=me.email, name=me.name)
    if old and new == old:  # checked before the attempt counts: a right old password is no failure
        raise InvalidInput("The new password is your current password: choose a different one.")
    attempt = _begin_login_attempt(db, me.email) if old else None
    if attempt is None or not password_matches(old, attempt[1]):
        raise PermissionDenied("Your current password is not correct: nothing was changed.")
    current = attempt[1]
    return call(
        db,
        "select change_user_password(:user_id, :new_hash, :user_id, :old_hash, :keep)",
        {"user_id": user_id, "new_hash": hash_password(new), "old_hash": current, "keep": keep_session_id},
    )


def reset_password(db: Engine, actor_id: str | None, user_id: str, new: str) -> int:
    """Set another user's password (system admins; None for operators); ends all their sessions, returns how many."""
    target = user_roles(db, user_id)
    check_new_password(new, email=target.email, name=target.name)
    return call(
        db,
        "select change_user_password(:user_id, :new_hash, :actor_id)",
        {"user_id": user_id, "new_hash": hash_password(new), "actor_id": actor_id},
    )
