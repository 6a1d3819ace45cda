"""The database's roles: who connects as what, and the logins of metered services.

Three roles (cluster-wide; their rights are granted per database by
sql/routines/990_access.sql):
  the owner        whatever login runs the migrations: owns the schema and every
                   object; on its own connection (no SET ROLE) it is the operator,
                   the only caller a NULL actor is accepted from
  billing_app      NOLOGIN: the Streamlit app and the CLI's `--as USER` commands,
                   which connect with the owner's URL and `SET ROLE billing_app`
  billing_service  NOLOGIN: metered services, through their own LOGIN roles that
                   are members of it (`service_login`), and the HTTP API's charging
                   endpoints (the owner's URL, then `SET ROLE billing_service`)
Role names and passwords cannot be bind parameters of CREATE/ALTER ROLE: they are
quoted by psycopg (sql.Identifier, sql.Literal), and a password reaches the
server only as a SCRAM verifier computed here.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import psycopg
from psycopg import sql as pgsql
from sqlalchemy.engine import make_url

from billing_core.errors import InvalidInput, MigrationError, PermissionDenied

APP_ROLE = "billing_app"
SERVICE_ROLE = "billing_service"
GROUP_ROLES = (APP_ROLE, SERVICE_ROLE)
SERVICE_LOGIN_PATTERN = re.compile(r"^[a-z][a-z0-9_]{2,62}$")


def _role_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("select 1 from pg_catalog.pg_roles where rolname = %s", [name]).fetchone() is not None


def _has(conn: psycopg.Connection, member: str, role: str, privilege: str) -> bool:
    return bool(conn.execute("select pg_catalog.pg_has_role(%s, %s, %s)", [member, role, privilege]).fetchone()[0])


def _can_set_role(conn: psycopg.Connection, member: str, role: str) -> bool:
    # PostgreSQL 16 separates SET from membership; 15 knows only MEMBER (which implies SET there)
    privilege = "SET" if conn.info.server_version >= 160000 else "MEMBER"
    return _has(conn, member, role, privilege)


def _missing_rights(conn: psycopg.Connection, owner: str) -> list[str]:
    missing = [f"role {name} does not exist" for name in GROUP_ROLES if not _role_exists(conn, name)]
    if not missing:
        if not _can_set_role(conn, owner, APP_ROLE):
            missing.append(f"{owner} may not SET ROLE {APP_ROLE}")
        if not _has(conn, owner, SERVICE_ROLE, "MEMBER WITH ADMIN OPTION"):
            missing.append(f"{owner} may not grant {SERVICE_ROLE} to service logins")
        elif not _can_set_role(conn, owner, SERVICE_ROLE):
            missing.append(f"{owner} may not SET ROLE {SERVICE_ROLE} (the HTTP API's charging connections)")
    return missing


def ensure_roles(conn: psycopg.Connection, owner: str | None = None) -> list[str]:
    """Create billing_app and billing_service when missing and let `owner` (default: this login) use them;
    returns what it changed. Raises MigrationError, saying what to run, when this login may not do it."""
    owner = owner or conn.execute("select current_user").fetchone()[0]
    if not _missing_rights(conn, owner):
        return []
    changed = []
    try:
        with conn.transaction():
            for name in GROUP_ROLES:
                if not _role_exists(conn, name):
                    try:
                        with conn.transaction():
                            conn.execute(pgsql.SQL("create role {} nologin").format(pgsql.Identifier(name)))
                        changed.append(f"created role {name}")
                    except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
                        pass  # another migrator (another database on this server) created it first
            if not _can_set_role(conn, owner, APP_ROLE):
                conn.execute(pgsql.SQL("grant {} to {}").format(pgsql.Identifier(APP_ROLE), pgsql.Identifier(owner)))
                changed.append(f"granted {APP_ROLE} to {owner}")
            if not _has(conn, owner, SERVICE_ROLE, "MEMBER WITH ADMIN OPTION"):
                conn.execute(
                    pgsql.SQL("grant {} to {} with admin option").format(
                        pgsql.Identifier(SERVICE_ROLE), pgsql.Identifier(owner)
                    )
                )
                changed.append(f"granted {SERVICE_ROLE} to {owner} with admin option")
            if not _can_set_role(conn, owner, SERVICE_ROLE):
                # PostgreSQL 16+: a grant may carry ADMIN without SET; the HTTP API's charging engine needs SET
                conn.execute(
                    pgsql.SQL("grant {} to {} with set true").format(
                        pgsql.Identifier(SERVICE_ROLE), pgsql.Identifier(owner)
                    )
                )
                changed.append(f"granted SET ROLE {SERVICE_ROLE} to {owner}")
    except psycopg.errors.InsufficientPrivilege as exc:
        missing = "; ".join(_missing_rights(conn, owner))
        raise MigrationError(
            f"The database roles are not ready ({missing}) and login {owner} may not fix that"
            f" ({exc.diag.message_primary}). "
            f"Run `billing db roles --owner {owner}` once with a login that may create and grant roles (a superuser, "
            "or the CREATEROLE login that created them; set DATABASE_URL to that login's URL for that one command), "
            "then `billing db migrate` again."
        ) from None
    return changed


def schema_owner(conn: psycopg.Connection) -> str | None:
    """The login that owns the migrated schema (the owner of its tables), or None before the first migration."""
    row = conn.execute(
        "select pg_catalog.pg_get_userbyid(c.relowner) from pg_catalog.pg_class c"
        " where c.oid = pg_catalog.to_regclass('public.organizations')"
    ).fetchone()
    return row[0] if row else None


def prepare_roles(url: str, owner: str | None = None) -> list[str]:
    """`billing db roles`: ensure_roles at `url` for `owner` (default: the schema's owner, else this login)."""
    with psycopg.connect(url) as conn:
        return ensure_roles(conn, owner or schema_owner(conn))


@dataclass(frozen=True)
class ServiceLogin:
    """A metered service's login: its name, its new password (shown once) and a URL to connect with."""

    name: str
    password: str
    url: str
    created: bool  # False: an existing login whose password was rotated


def _check_service_name(conn: psycopg.Connection, name: str) -> bool:
    """True when login `name` exists (and is a service login); raises for a name that may not be used."""
    if not name or not SERVICE_LOGIN_PATTERN.match(name):
        raise InvalidInput(
            f"Service login {name!r} must be 3 to 63 lower-case letters, digits or underscores, starting with a letter."
        )
    if name in GROUP_ROLES or name.startswith("pg_"):
        raise InvalidInput(f"{name!r} is a reserved role name: choose another name for the service login.")
    if not _role_exists(conn, name):
        return False
    is_service = conn.execute(
        "select r.rolcanlogin and not r.rolsuper and exists (select 1 from pg_catalog.pg_auth_members m"
        " where m.member = r.oid and m.roleid = (select oid from pg_catalog.pg_roles where rolname = %s))"
        " and not exists (select 1 from pg_catalog.pg_auth_members m join pg_catalog.pg_roles g on g.oid = m.roleid"
        " where m.member = r.oid and g.rolname <> %s)"
        " from pg_catalog.pg_roles r where r.rolname = %s",
        [SERVICE_ROLE, SERVICE_ROLE, name],
    ).fetchone()[0]
    if not is_service:
        raise PermissionDenied(
            f"Role {name!r} exists and is not a service login (a login member of {SERVICE_ROLE} only): "
            "it is left alone; choose another name."
        )
    return True


def service_login(url: str, name: str) -> ServiceLogin:
    """Create service login `name` (a LOGIN member of billing_service) with a generated password, or rotate
    the password of an existing one; returns the password (shown once) and a URL to connect with."""
    password = secrets.token_urlsafe(24)
    try:
        with psycopg.connect(url) as conn:
            exists = _check_service_name(conn, name)
            verifier = conn.pgconn.encrypt_password(password.encode(), name.encode(), b"scram-sha-256").decode()
            if exists:
                conn.execute(
                    pgsql.SQL("alter role {} password {}").format(pgsql.Identifier(name), pgsql.Literal(verifier))
                )
            else:
                conn.execute(
                    pgsql.SQL("create role {} login password {} in role {}").format(
                        pgsql.Identifier(name), pgsql.Literal(verifier), pgsql.Identifier(SERVICE_ROLE)
                    )
                )
    except psycopg.errors.InsufficientPrivilege as exc:
        raise PermissionDenied(
            f"This login may not manage service logins ({exc.diag.message_primary}): that needs CREATEROLE and"
            f" the right to grant {SERVICE_ROLE} (`billing db roles --owner LOGIN` gives the latter); run it with"
            " such a login's DATABASE_URL."
        ) from None
    login_url = make_url(url).set(username=name, password=password).render_as_string(hide_password=False)
    return ServiceLogin(name, password, login_url, created=not exists)


def drop_service_login(url: str, name: str) -> bool:
    """Drop service login `name`; False when there was none. Its open connections keep working until they close."""
    try:
        with psycopg.connect(url) as conn:
            if not _check_service_name(conn, name):
                return False
            conn.execute(pgsql.SQL("drop role {}").format(pgsql.Identifier(name)))
    except psycopg.errors.InsufficientPrivilege as exc:
        raise PermissionDenied(f"This login may not drop service logins ({exc.diag.message_primary}).") from None
    return True
