"""The organization's members: invitations (sent, pending, revoked), roles, removals, and direct adds."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from billing_core import invitations, organizations
from pages import kit
from pages.kit.session import Screen
from pages.sections.org_forms import Organization, ask_checked, credits_words, dashed, write_worded

ROLES = ["member", "admin"]
_INVITATION = "_org_billing_invitation"  # the invitation just sent, its one-time code shown on this run only


def members_section(screen: Screen, org: Organization, members: pd.DataFrame) -> None:
    """The members (name, role and remaining first), invitations, and the role and removal forms."""
    kit.table(
        members.assign(role=members.role.map(kit.term)) if not members.empty else members,
        {
            "display_name": kit.text_column("Name"),
            "role": kit.text_column("Role"),
            "remaining_credits": kit.credits_column("Remaining"),
            "email": kit.text_column("Email"),
            "joined_at": kit.datetime_column("Joined"),
        },
        key="members_table",
    )
    invite_col, pending_col = st.columns(2)
    with invite_col:
        invite_form(screen, org)
    with pending_col:
        pending_invitations(screen, org)
    if screen.roles.is_system_admin:
        add_member_form(screen, org)
    role_col, remove_col = st.columns(2)
    with role_col:
        role_form(screen, org)
    with remove_col:
        remove_form(screen, org)


def invite_form(screen: Screen, org: Organization) -> None:
    """Invite by email (no question: an invitation changes nothing until it is accepted, and can be revoked)."""
    with st.form("member_invite_form"):
        st.markdown("**Invite by email**")
        st.caption("They join when they accept the invitation after logging in.")
        st.text_input("Email", key="member_invite_email")
        st.text_input("Name (for someone without an account yet)", key="member_invite_name")
        st.selectbox("Role", ROLES, format_func=kit.term, key="member_invite_role")
        st.form_submit_button("Invite", key="member_invite_submit", on_click=invite, args=(screen, org))
    kit.show_flash("member_invite")
    invitation = st.session_state.pop(_INVITATION, None)
    if invitation is not None:
        st.code(invitation.one_time_code, language=None)
        st.caption(kit.md_text(
            f"The one-time code, shown once: hand it to {invitation.email} privately. Someone without an "
            "account here sets their own password with it on the login page (\"First time here?\"); it works "
            "once, for 7 days. Someone with an account just logs in and accepts."
        ))


def invite(screen: Screen, org: Organization) -> None:
    """The "Invite by email" form was sent: the database refuses a bad address, a member, a pending invitation."""
    state = st.session_state
    email = (state.get("member_invite_email") or "").strip()
    name = (state.get("member_invite_name") or "").strip() or None
    role = state.get("member_invite_role", "member")
    write_worded(
        org, "member_invite",
        lambda: invitations.invite(screen.db, screen.actor_id, org.org_id, email, role, name),
        success=invited,
        clear=("member_invite_email", "member_invite_name", "member_invite_role"),
    )


def invited(invitation: invitations.Invitation) -> str:
    """Keep the one-time code for this run only; the message (the same whether the address has an account)."""
    st.session_state[_INVITATION] = invitation
    return f"Invitation sent to {invitation.email}; they join when they accept."


def pending_invitations(screen: Screen, org: Organization) -> None:
    """The invitations waiting for an answer (who, as what, first); revoke one."""
    pending = kit.read(screen.db, invitations.pending_for_organization, screen.actor_id, org.org_id)
    st.markdown("**Pending invitations**")
    kit.table(
        dashed(pending, "invited_by").assign(role=pending.role.map(kit.term)),
        {
            "invited": kit.text_column("Invited"),
            "role": kit.text_column("Role"),
            "created_at": kit.datetime_column("Sent"),
            "invited_by": kit.text_column("By"),
        },
        key="pending_invitations_table",
        empty="No invitation is waiting for an answer.",
    )
    labels = {row.invitation_id: f"{row.invited} ({kit.term(row.role)})" for row in pending.itertuples()}
    if labels:
        with st.form("member_revoke_form"):
            st.selectbox("Invitation", list(labels), format_func=labels.get, key="member_revoke_invitation")
            st.form_submit_button("Revoke invitation", key="member_revoke_submit", on_click=ask_revoke,
                                  args=(screen, org, labels))
    kit.confirmation("member_revoke")


@kit.refusing
def ask_revoke(screen: Screen, org: Organization, labels: dict[str, str]) -> None:
    """The "Revoke an invitation" form was sent: rehearse the revoke, then ask."""
    invitation_id = kit.chosen_member("member_revoke", "member_revoke_invitation", "Choose an invitation.")
    who = labels.get(invitation_id, "this invitation")
    ask_checked(
        screen, org, "member_revoke",
        lambda: invitations.revoke(screen.db, screen.actor_id, invitation_id),
        lambda _: f"Revoke the invitation of {who} to {org.name}? Their one-time code stops working too.",
        success=f"Revoked the invitation of {who}.",
        clear=("member_revoke_invitation",),
    )


def add_member_form(screen: Screen, org: Organization) -> None:
    """System admins add an existing user directly (a trusted add, no invitation)."""
    with st.form("member_add_form"):
        st.markdown("**Add an existing user directly** (system admins)")
        st.text_input("Email", key="member_add_email")
        st.selectbox("Role", ROLES, format_func=kit.term, key="member_add_role")
        st.form_submit_button("Add member", key="member_add_submit", on_click=add_existing, args=(screen, org))
    kit.show_flash("member_add")


def add_existing(screen: Screen, org: Organization) -> None:
    """The "Add an existing user directly" form was sent."""
    email = (st.session_state.get("member_add_email") or "").strip()
    role = st.session_state.get("member_add_role", "member")
    write_worded(
        org, "member_add",
        lambda: organizations.add_member_by_email(screen.db, screen.actor_id, org.org_id, email, role),
        success=lambda user_id: f"Added {email} to {org.name} as {kit.term(role)}.",
        clear=("member_add_email", "member_add_role"),
    )


def role_form(screen: Screen, org: Organization) -> None:
    """Make a member an admin, or an admin a member."""
    with st.form("member_role_form"):
        st.markdown("**Change a role**")
        st.selectbox("Member", list(org.people), format_func=org.person, key="member_role_user")
        st.selectbox("New role", ROLES, format_func=kit.term, key="member_role_role")
        st.form_submit_button("Change role", key="member_role_submit", on_click=ask_role_change, args=(screen, org))
    kit.confirmation("member_role")


@kit.refusing
def ask_role_change(screen: Screen, org: Organization) -> None:
    """The "Change role" form was sent: rehearse the change (the only admin stays one), then ask."""
    user_id = kit.chosen_member("member_role", "member_role_user", "Choose a member.")
    role = st.session_state.get("member_role_role", "member")
    name = org.people.get(user_id, user_id)
    ask_checked(
        screen, org, "member_role",
        lambda: organizations.set_member_role(screen.db, screen.actor_id, org.org_id, user_id, role),
        lambda _: f"Make {name} {'an admin' if role == 'admin' else 'a member'} of {org.name}?",
        success=f"{name} is now {'an admin' if role == 'admin' else 'a member'} of {org.name}.",
        clear=("member_role_user", "member_role_role"),
    )


def remove_form(screen: Screen, org: Organization) -> None:
    """Remove a member: their unused credits return to the pool."""
    with st.form("member_remove_form"):
        st.markdown("**Remove a member**")
        st.selectbox("Member", list(org.people), format_func=org.person, key="member_remove_user")
        st.form_submit_button("Remove member", key="member_remove_submit", on_click=ask_remove, args=(screen, org))
    kit.confirmation("member_remove")


@kit.refusing
def ask_remove(screen: Screen, org: Organization) -> None:
    """The "Remove a member" form was sent: rehearse the removal, then ask with the credits it returns."""
    user_id = kit.chosen_member("member_remove", "member_remove_user", "Choose a member.")
    name = org.people.get(user_id, user_id)
    ask_checked(
        screen, org, "member_remove",
        lambda: organizations.remove_member(screen.db, screen.actor_id, org.org_id, user_id),
        lambda returned: f"Remove {name} from {org.name}? Their {credits_words(returned, 'unused')} "
                         "return to the pool; what they used stays in the history.",
        success=lambda returned: f"Removed {name}; {credits_words(returned, 'unused')} returned to the pool.",
        clear=("member_remove_user",),
    )
