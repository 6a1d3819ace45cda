"""Passwords, logins and server-side sessions: what the app's login needs from PostgreSQL.

Users log in with their email (the authenticator's "username") and a bcrypt
password kept in users.password_hash. The authenticator's login cookie stays
valid after a logout or a password change, so every login also gets a session
row (sql/routines/060_sessions.sql) that the app checks on every run:
`start_session` after a login, `check_session` on each run, `end_session` at
logout; `change_password` ends the user's other sessions.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from typing import Any

import bcrypt
from sqlalchemy.engine import Engine

from billing_core import access
from billing_core.database import call, fetch
from billing_core.errors import InvalidInput, NotFound, PermissionDenied

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_BYTES = 72  # bcrypt reads no further; bcrypt 5 refuses longer input
MIN_COOKIE_KEY_LENGTH = 32
COOKIE_KEY_SETTING = "login.cookie_key"
COOKIE_KEY_ENV = "BILLING_COOKIE_KEY"
MAX_LOGIN_ATTEMPTS = 5  # within ledger_login_lockout_window() (15 minutes)


def hash_password(plain: str) -> str:
    """A bcrypt hash of `plain`, in the form streamlit-authenticator verifies."""
    return bcrypt.hashpw(plain.encode(), bcrypt.gensalt()).decode()


def password_matches(plain: str, hashed: str) -> bool:
    """True when `plain` is the password behind `hashed`."""
    return bcrypt.checkpw(plain.encode(), hashed.encode())


def generate_password() -> str:
    """A random one-time password (16 URL-safe characters) to show once to a new user."""
    return secrets.token_urlsafe(12)


def check_new_password(new: str, repeat: str | None = None) -> None:
    """Raise InvalidInput, with what to fix, unless `new` is acceptable (and equals `repeat`, when given)."""
    if not new:
        raise InvalidInput("Enter a new password.")
    if new != new.strip():
        raise InvalidInput("The new password cannot start or end with a space (the login form drops them).")
    if len(new) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"The new password is too short: use at least {MIN_PASSWORD_LENGTH} characters.")
    if len(new.encode()) > MAX_PASSWORD_BYTES:
        raise InvalidInput(f"The new password is too long: at most {MAX_PASSWORD_BYTES} bytes.")
    if any(not ch.isprintable() for ch in new):
        raise InvalidInput("The new password contains control characters (tabs, line breaks...): remove them.")
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
    users = fetch(
        db,
        "select id, email, coalesce(display_name, email), is_system_admin from users where id = :user_id",
        {"user_id": user_id},
    )
    if not users:
        raise NotFound(f"User {user_id!r} does not exist.")
    rows = fetch(
        db,
        "select m.org_id, o.name, m.role, m.is_default from organization_members m"
        " join organizations o on o.id = m.org_id where m.user_id = :user_id"
        " order by m.is_default desc, m.joined_at, m.org_id",
        {"user_id": user_id},
    )
    user = users[0]
    return UserRoles(user[0], user[1], user[2], user[3], tuple(Membership(*row) for row in rows))


def user_id_for_email(db: Engine, email: str) -> str | None:
    """The id of the user with this email (any case, surrounding spaces ignored), or None."""
    if not email or not email.strip():
        raise InvalidInput("Enter an email address.")
    return call(db, "select id from users where lower(email) = lower(btrim(:email))", {"email": email})


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
        rows = fetch(
            db,
            "select id, name from organizations where kind = 'organization' order by lower(name), id",
            checks=[access.check(roles.user_id, None, "system_admin")],
        )
        choices += [OrgChoice(org_id, name, None) for org_id, name in rows if org_id not in own]
    return choices


# -- the authenticator's credentials -----------------------------------------------------------------


def load_credentials(db: Engine, email: str | None = None) -> dict[str, Any]:
    """The credentials dict streamlit-authenticator takes, keyed by email: every user with a password
    (or only `email`'s entry). Each entry: user_id, email, name, password (the bcrypt hash),
    failed_login_attempts (those still counting), roles, logged_in."""
    rows = fetch(
        db,
        "select user_id, email, name, password_hash, failed_login_attempts, roles from login_credentials"
        " where cast(:email as text) is null or lower(email) = lower(:email)",
        {"email": email},
    )
    usernames = {}
    for user_id, user_email, name, password_hash, failed, roles in rows:
        usernames[user_email.lower()] = {
            "user_id": user_id,
            "email": user_email,
            "name": name,
            "password": password_hash,
            "failed_login_attempts": failed,
            "roles": list(roles),
            "logged_in": False,
        }
    return {"usernames": usernames}


def save_login_changes(db: Engine, before: dict[str, Any], after: dict[str, Any]) -> None:
    """Write back what the authenticator changed in the credentials: new failed login attempts.

    (A successful login clears the count in `start_session`; passwords change only through
    `change_password`, never through the authenticator.)
    """
    old = before.get("usernames", {})
    for username, entry in after.get("usernames", {}).items():
        added = entry.get("failed_login_attempts", 0) - old.get(username, {}).get("failed_login_attempts", 0)
        if added > 0:
            record_failed_login(db, username, added)


def record_failed_login(db: Engine, email: str, attempts: int = 1) -> int | None:
    """Count failed logins for `email`; returns the count within the lockout window (None: unknown email)."""
    return call(db, "select record_failed_login(:email, :attempts)", {"email": email, "attempts": attempts})


def cookie_key(db: Engine) -> str:
    """The login cookie's signing key: BILLING_COOKIE_KEY, else a random key generated once and kept in the database."""
    configured = os.environ.get(COOKIE_KEY_ENV, "").strip()
    if configured:
        if len(configured) < MIN_COOKIE_KEY_LENGTH:
            raise InvalidInput(
                f"{COOKIE_KEY_ENV} is too short to sign login cookies safely: use at least "
                f"{MIN_COOKIE_KEY_LENGTH} random characters, or unset it to let the app generate one."
            )
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


def _stored_hash(db: Engine, user_id: str) -> str | None:
    rows = fetch(db, "select password_hash from users where id = :user_id", {"user_id": user_id})
    if not rows:
        raise NotFound(f"User {user_id!r} does not exist.")
    return rows[0][0]


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
    (all but `keep_session_id`) and returns how many. Refusals change nothing."""
    check_new_password(new, repeat)
    current = _stored_hash(db, user_id)
    if not current or not old or not password_matches(old, current):
        raise PermissionDenied("Your current password is not correct: nothing was changed.")
    if password_matches(new, current):
        raise InvalidInput("The new password is your current password: choose a different one.")
    return call(
        db,
        "select change_user_password(:user_id, :new_hash, :user_id, :old_hash, :keep)",
        {"user_id": user_id, "new_hash": hash_password(new), "old_hash": current, "keep": keep_session_id},
    )


def reset_password(db: Engine, actor_id: str | None, user_id: str, new: str) -> int:
    """Set another user's password (system admins; None for operators); ends all their sessions, returns how many."""
    check_new_password(new)
    return call(
        db,
        "select change_user_password(:user_id, :new_hash, :actor_id)",
        {"user_id": user_id, "new_hash": hash_password(new), "actor_id": actor_id},
    )
