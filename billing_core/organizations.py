"""Organizations, users and memberships."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import pandas as pd
from sqlalchemy.engine import Engine

from billing_core import access, auth, subscriptions
from billing_core.database import call, fetch, fetch_frame, record
from billing_core.errors import InvalidInput


@dataclass(frozen=True)
class User:
    """A person who can log in."""

    id: str
    email: str
    display_name: str
    is_system_admin: bool


def create_organization(db: Engine, actor_id: str | None, org_id: str, name: str) -> None:
    """Create an organization with an empty credit pool (system admins; None for operators)."""
    call(db, "select create_organization(:org_id, :name, :actor_id)", {"org_id": org_id, "name": name, "actor_id": actor_id})


def create_user(
    db: Engine,
    actor_id: str | None,
    user_id: str,
    email: str,
    display_name: str | None = None,
    *,
    is_system_admin: bool = False,
    password_hash: str | None = None,
) -> None:
    """Create a user (system admins; None for operators)."""
    call(
        db,
        "select create_user(:user_id, :email, :display_name, :is_system_admin, :password_hash, :actor_id)",
        {
            "user_id": user_id,
            "email": email,
            "display_name": display_name,
            "is_system_admin": is_system_admin,
            "password_hash": password_hash,
            "actor_id": actor_id,
        },
    )


def add_member(db: Engine, actor_id: str | None, org_id: str, user_id: str, role: str = "member") -> None:
    """Add an existing user to an organization as 'admin' or 'member' (system admins; None for operators);
    from an organization admin, a pending invitation the user accepts (see billing_core.invitations)."""
    call(
        db,
        "select add_organization_member(:org_id, :user_id, :role, :actor_id)",
        {"org_id": org_id, "user_id": user_id, "role": role, "actor_id": actor_id},
    )


def add_member_by_email(db: Engine, actor_id: str | None, org_id: str, email: str, role: str = "member") -> str:
    """Add the existing user with this email to an organization (system admins; None for operators); returns
    their user id. Organization admins invite instead (billing_core.invitations.invite)."""
    return call(
        db,
        "select add_organization_member_by_email(:org_id, :email, :role, :actor_id)",
        {"org_id": org_id, "email": email, "role": role, "actor_id": actor_id},
    )


def set_member_role(db: Engine, actor_id: str | None, org_id: str, user_id: str, role: str) -> None:
    """Change a member's role; the organization keeps at least one admin."""
    call(
        db,
        "select set_member_role(:org_id, :user_id, :role, :actor_id)",
        {"org_id": org_id, "user_id": user_id, "role": role, "actor_id": actor_id},
    )


def remove_member(db: Engine, actor_id: str | None, org_id: str, user_id: str) -> Decimal:
    """Remove a member; returns the unused credits that went back to the pool."""
    return call(
        db,
        "select remove_organization_member(:org_id, :user_id, :actor_id)",
        {"org_id": org_id, "user_id": user_id, "actor_id": actor_id},
    )


def set_default_organization(db: Engine, actor_id: str, org_id: str) -> None:
    """Make `org_id` the organization the acting user spends from by default."""
    call(db, "select set_default_organization(:actor_id, :org_id)", {"actor_id": actor_id, "org_id": org_id})


def get_user(db: Engine, user_id: str) -> User | None:
    """The user with this id, or None."""
    rows = fetch(
        db,
        "select id, email, coalesce(display_name, email) as display_name, is_system_admin from users"
        " where id = :user_id",
        {"user_id": user_id},
    )
    return record(User, rows[0]) if rows else None


def members(db: Engine, actor_id: str, org_id: str) -> pd.DataFrame:
    """The organization's members with their role and current allocation (org admins)."""
    return fetch_frame(
        db,
        "select user_id, email, display_name, role, is_default, allocated_credits, used_credits,"
        " remaining_credits, usage_percent from user_multi_org_credits where org_id = :org_id"
        " order by display_name, user_id",
        {"org_id": org_id},
        checks=[access.check(actor_id, org_id, "admin")],
    )


def organizations(db: Engine, actor_id: str) -> pd.DataFrame:
    """Every organization with its status (system admins); individual balances are not organizations."""
    return fetch_frame(
        db,
        "select id as org_id, name, status, created_at from organizations where kind = 'organization'"
        " order by name, id",
        checks=[access.check(actor_id, None, "system_admin")],
    )


@dataclass(frozen=True)
class OpenedOrganization:
    """A new organization and its first admin, with the one-time password to pass on (shown once, never stored)."""

    org_id: str
    admin_user_id: str
    admin_email: str
    one_time_password: str


def open_organization(
    db: Engine,
    actor_id: str | None,
    org_id: str,
    name: str,
    plan: str,
    admin_email: str,
    admin_name: str | None = None,
    admin_user_id: str | None = None,
    *,
    billing_cycle: str = "monthly",
    started_at: datetime | None = None,
) -> OpenedOrganization:
    """Open an organization on a plan with a new first admin (user id: `admin_user_id`, else the email) who logs
    in with a one-time password made here, as invitations make their codes; all or nothing (system admins)."""
    email = (admin_email or "").strip()
    user_id = (admin_user_id or "").strip() or email.lower()
    if not user_id:
        raise InvalidInput("Give the first admin's email.")
    password = auth.generate_password()
    subscriptions.open_organization(
        db, actor_id, (org_id or "").strip(), name, plan, user_id, email, (admin_name or "").strip() or None,
        auth.hash_password(password), billing_cycle=billing_cycle, started_at=started_at,
    )
    return OpenedOrganization((org_id or "").strip(), user_id, email, password)
