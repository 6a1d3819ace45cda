"""Invitations: a person joins an organization only by accepting its invitation.

An organization admin invites an email address; the answer is the same whether
the address has an account or not (sql/routines/047_invitations.sql). An
address without an account gets one without a password, and the invitation's
one-time code lets the person set their own password once, at the login page;
then they log in and accept (or decline). Admins see pending invitations and
may revoke them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy.engine import Engine

from billing_core.auth import check_new_password, hash_password
from billing_core.database import call, fetch, fetch_frame


@dataclass(frozen=True)
class Invitation:
    """A pending invitation and its one-time code, to hand over once (it is stored only as a digest)."""

    invitation_id: str
    email: str
    one_time_code: str


def invite(
    db: Engine,
    actor_id: str | None,
    org_id: str,
    email: str,
    role: str = "member",
    display_name: str | None = None,
) -> Invitation:
    """Invite this email address to the organization as 'admin' or 'member' (its admins; None for operators).

    `display_name` names a person who has no account yet (ignored otherwise).
    """
    rows = fetch(
        db,
        "select invitation_id, one_time_code from invite_organization_member(:org_id, :email, :role, :actor_id,"
        " :display_name)",
        {"org_id": org_id, "email": email, "role": role, "actor_id": actor_id, "display_name": display_name},
    )
    invited = rows[0]
    return Invitation(invited.invitation_id, email.strip().lower(), invited.one_time_code)


def pending_for_organization(db: Engine, actor_id: str | None, org_id: str) -> pd.DataFrame:
    """The organization's pending invitations, newest first (its admins): who was invited, never their name."""
    return fetch_frame(
        db,
        "select * from organization_pending_invitations(:org_id, :actor_id)",
        {"org_id": org_id, "actor_id": actor_id},
    )


def mine(db: Engine, actor_id: str) -> pd.DataFrame:
    """The acting user's pending invitations, newest first."""
    return fetch_frame(db, "select * from my_pending_invitations(:actor_id)", {"actor_id": actor_id})


def accept(db: Engine, actor_id: str, invitation_id: str) -> str:
    """Accept one of my invitations: I become a member; returns the organization id."""
    return call(
        db,
        "select accept_organization_invitation(:invitation_id, :actor_id)",
        {"invitation_id": invitation_id, "actor_id": actor_id},
    )


def decline(db: Engine, actor_id: str, invitation_id: str) -> None:
    """Decline one of my invitations."""
    call(
        db,
        "select decline_organization_invitation(:invitation_id, :actor_id)",
        {"invitation_id": invitation_id, "actor_id": actor_id},
    )


def revoke(db: Engine, actor_id: str | None, invitation_id: str) -> None:
    """Take back a pending invitation (the organization's admins; None for operators)."""
    call(
        db,
        "select revoke_organization_invitation(:invitation_id, :actor_id)",
        {"invitation_id": invitation_id, "actor_id": actor_id},
    )


def set_password_with_code(db: Engine, email: str, code: str, new: str, repeat: str | None = None) -> None:
    """Set my first password with the one-time code of my invitation (works once; the code is no login)."""
    check_new_password(new, repeat)
    call(
        db,
        "select set_password_with_invitation_code(:email, :code, :new_hash)",
        {"email": email, "code": code, "new_hash": hash_password(new)},
    )
