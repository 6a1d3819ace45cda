"""Invitations (finding 9): nobody joins an organization without accepting, and an invitation reveals nothing.

  corp-a  admin 'a-admin'          corp-b  admin 'b-admin'
  eve     a user of corp-b (member), with a password
  root    a system admin
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from ledger_state import snapshot

from billing_core import auth, invitations, organizations
from billing_core.database import fetch
from billing_core.errors import AlreadyExists, InvalidInput, PermissionDenied, RuleViolation

PASSWORD_HASH = auth.hash_password("eve's own secret")


@pytest.fixture
def corps(db):
    organizations.create_user(db, None, "root", "root@example.com", "Root", is_system_admin=True)
    for org_id, admin in (("corp-a", "a-admin"), ("corp-b", "b-admin")):
        organizations.create_organization(db, None, org_id, org_id.title())
        organizations.create_user(db, None, admin, f"{admin}@example.com", admin.title(), password_hash=PASSWORD_HASH)
        organizations.add_member(db, None, org_id, admin, "admin")
    organizations.create_user(db, None, "eve", "eve@corp-b.example", "Eve Existing", password_hash=PASSWORD_HASH)
    organizations.add_member(db, None, "corp-b", "eve")
    return db


def member_ids(db, org_id: str) -> set[str]:
    return {row[0] for row in fetch(db, "select user_id from organization_members where org_id = :o", {"o": org_id})}


def user_by_email(db, email: str):
    rows = fetch(db, "select id, password_hash from users where lower(email) = lower(:e)", {"e": email})
    return rows[0] if rows else None


def can_log_in(db, email: str) -> bool:
    """The login form has a password to check for this email (the login's own read finds the account)."""
    return bool(fetch(db, "select 1 from begin_login_attempt(:email)", {"email": email}))


def test_the_pre_registration_attack_is_refused(corps):
    db = corps
    # corp-a's admin pre-registers corp-b's colleague: they cannot choose (or pass) a password any more
    with pytest.raises(Exception, match="does not exist|function"):
        fetch(db, "select invite_organization_member('corp-a', 'victim', 'victim@corp-b.example', 'Victim',"
                  " 'member', :hash, 'a-admin')", {"hash": PASSWORD_HASH})
    from_a = invitations.invite(db, "a-admin", "corp-a", "Victim@Corp-B.example", display_name="Victim")
    victim_id, password_hash = user_by_email(db, "victim@corp-b.example")
    assert password_hash is None and not can_log_in(db, "victim@corp-b.example")  # an account nobody controls
    assert victim_id not in member_ids(db, "corp-a")  # and not even a member of corp-a before accepting

    # later corp-b adds that address: the account joins nobody, whoever holds it
    from_b = invitations.invite(db, "b-admin", "corp-b", "victim@corp-b.example")
    assert victim_id not in member_ids(db, "corp-b")
    # corp-b's code sets nothing on an account corp-a's invitation made
    with pytest.raises(PermissionDenied, match="do not match an open invitation"):
        invitations.set_password_with_code(db, "victim@corp-b.example", from_b.one_time_code, "chosen by b 123")
    # corp-a's admin cannot answer the invitation for the account, nor add it directly
    with pytest.raises(PermissionDenied, match="for another user"):
        invitations.accept(db, "a-admin", from_b.invitation_id)
    with pytest.raises(PermissionDenied, match="invites people by email"):
        organizations.add_member_by_email(db, "a-admin", "corp-a", "victim@corp-b.example")
    # the person the code was handed to sets their own password, then decides for themselves
    invitations.set_password_with_code(db, "victim@corp-b.example", from_a.one_time_code, "victim's own 123")
    assert auth.password_matches("victim's own 123", user_by_email(db, "victim@corp-b.example")[1])
    invitations.decline(db, victim_id, from_a.invitation_id)
    assert invitations.accept(db, victim_id, from_b.invitation_id) == "corp-b"
    assert victim_id in member_ids(db, "corp-b") and victim_id not in member_ids(db, "corp-a")


def test_adding_an_existing_user_of_another_org_needs_their_acceptance(corps):
    db = corps
    before = member_ids(db, "corp-a")
    organizations.add_member(db, "a-admin", "corp-a", "eve")  # by id: an invitation, not a membership
    assert member_ids(db, "corp-a") == before
    [pending] = invitations.pending_for_organization(db, "a-admin", "corp-a").itertuples()
    assert (pending.invited, pending.role) == ("eve", "member")  # what the admin typed: no email, no name
    shown = " ".join(str(v) for v in invitations.pending_for_organization(db, "a-admin", "corp-a").iloc[0])
    assert "corp-b.example" not in shown and "Eve Existing" not in shown
    org_audit = fetch(db, "select details::text from audit_log where org_id = 'corp-a'")
    assert not any("corp-b.example" in row[0] or "Existing" in row[0] for row in org_audit)
    with pytest.raises(AlreadyExists, match="already has a pending invitation"):
        organizations.add_member(db, "a-admin", "corp-a", "eve")

    [mine] = invitations.mine(db, "eve").itertuples()
    assert (mine.org_id, mine.org_name, mine.invited_by) == ("corp-a", "Corp-A", "A-Admin")
    with pytest.raises(PermissionDenied):  # only eve answers it
        invitations.accept(db, "b-admin", mine.invitation_id)
    assert invitations.accept(db, "eve", mine.invitation_id) == "corp-a"
    assert "eve" in member_ids(db, "corp-a")
    assert invitations.mine(db, "eve").empty and invitations.pending_for_organization(db, "a-admin", "corp-a").empty
    with pytest.raises(RuleViolation, match="already accepted"):
        invitations.accept(db, "eve", mine.invitation_id)
    actions = [row[0] for row in fetch(db, "select action from audit_log where org_id = 'corp-a' order by id")]
    assert actions[-3:] == ["member.invited", "member.added", "member.invitation_accepted"]


def test_declined_and_revoked_invitations_join_nobody(corps):
    db = corps
    declined = invitations.invite(db, "a-admin", "corp-a", "eve@corp-b.example")
    invitations.decline(db, "eve", declined.invitation_id)
    revoked = invitations.invite(db, "a-admin", "corp-a", "eve@corp-b.example")  # a new one after the decline
    with pytest.raises(PermissionDenied):  # another organization's admin cannot revoke it
        invitations.revoke(db, "b-admin", revoked.invitation_id)
    invitations.revoke(db, "a-admin", revoked.invitation_id)
    before = snapshot(db)
    for invitation in (declined, revoked):
        with pytest.raises(RuleViolation, match="already (declined|revoked)"):
            invitations.accept(db, "eve", invitation.invitation_id)
    assert snapshot(db) == before and "eve" not in member_ids(db, "corp-a")


def test_the_answer_does_not_reveal_whether_an_email_has_an_account(corps):
    db = corps
    existing = invitations.invite(db, "a-admin", "corp-a", "EVE@corp-b.example", display_name="ignored")
    new = invitations.invite(db, "a-admin", "corp-a", "nobody-yet@corp-c.example", display_name="Nobody Yet")
    for invitation in (existing, new):
        assert re.fullmatch(r"[0-9a-f]{32}", invitation.one_time_code)
    assert (existing.email, new.email) == ("eve@corp-b.example", "nobody-yet@corp-c.example")
    pending = invitations.pending_for_organization(db, "a-admin", "corp-a").set_index("invited")
    assert sorted(pending.index) == ["eve@corp-b.example", "nobody-yet@corp-c.example"]
    assert pending.loc["eve@corp-b.example"].drop("invitation_id").drop("created_at").tolist() == \
        pending.loc["nobody-yet@corp-c.example"].drop("invitation_id").drop("created_at").tolist()
    audit = fetch(db, "select details from audit_log where org_id = 'corp-a' and action = 'member.invited'"
                      " order by id")
    assert [sorted(row[0]) for row in audit] == [["invited", "role"], ["invited", "role"]]
    assert not fetch(db, "select 1 from audit_log where org_id = 'corp-a' and action = 'user.created'")
    assert organizations.get_user(db, "eve").display_name == "Eve Existing"  # an admin names nobody's account
    # the same refusal for a code on an existing account, a wrong code and an unknown address
    messages = set()
    for email, code in (("eve@corp-b.example", existing.one_time_code), ("nobody-yet@corp-c.example", "0" * 32),
                        ("ghost@corp-c.example", new.one_time_code)):
        with pytest.raises(PermissionDenied) as refused:
            invitations.set_password_with_code(db, email, code, "some new password")
        messages.add(str(refused.value))
    assert len(messages) == 1
    assert auth.password_matches("eve's own secret", user_by_email(db, "eve@corp-b.example")[1])


def test_the_one_time_code_works_once_and_only_to_set_a_new_password(corps):
    db = corps
    invitation = invitations.invite(db, "a-admin", "corp-a", "newbie@example.com", "admin", "New Bie")
    newbie, _ = user_by_email(db, "newbie@example.com")
    assert newbie == "newbie@example.com"
    # the code is no password: the login form does not know the account, and it opens nothing
    assert not can_log_in(db, "newbie@example.com")
    with pytest.raises(PermissionDenied, match="no password"):
        auth.start_session(db, newbie)
    with pytest.raises(PermissionDenied, match="Set your password first"):
        invitations.accept(db, newbie, invitation.invitation_id)
    with pytest.raises(InvalidInput, match="too short"):
        invitations.set_password_with_code(db, "newbie@example.com", invitation.one_time_code, "short")

    invitations.set_password_with_code(db, " NewBie@example.com ", f" {invitation.one_time_code} ", "my own pass 1")
    assert auth.verify_login(db, "newbie@example.com", "my own pass 1") is not None
    assert auth.verify_login(db, "newbie@example.com", invitation.one_time_code) is None
    before = snapshot(db)
    with pytest.raises(PermissionDenied, match="works once"):  # once
        invitations.set_password_with_code(db, "newbie@example.com", invitation.one_time_code, "taken over 12")
    assert snapshot(db) == before
    assert auth.password_matches("my own pass 1", user_by_email(db, "newbie@example.com")[1])
    assert invitations.accept(db, newbie, invitation.invitation_id) == "corp-a"
    assert auth.user_roles(db, newbie).role_in("corp-a") == "admin"


def test_an_expired_or_revoked_code_sets_nothing_and_a_new_invitation_brings_a_new_code(corps):
    db = corps
    first = invitations.invite(db, "a-admin", "corp-a", "late@example.com")
    with db.begin() as conn:
        conn.exec_driver_sql("update organization_invitations set code_expires_at = now() - %s",
                             (timedelta(seconds=1),))
    with pytest.raises(PermissionDenied):
        invitations.set_password_with_code(db, "late@example.com", first.one_time_code, "my own pass 1")
    invitations.revoke(db, "a-admin", first.invitation_id)
    second = invitations.invite(db, "a-admin", "corp-a", "late@example.com")  # the same organization invites again
    with pytest.raises(PermissionDenied):
        invitations.set_password_with_code(db, "late@example.com", first.one_time_code, "my own pass 1")
    invitations.set_password_with_code(db, "late@example.com", second.one_time_code, "my own pass 1")
    assert can_log_in(db, "late@example.com")


def test_trusted_callers_still_add_members_directly(corps):
    db = corps
    organizations.add_member(db, "root", "corp-a", "eve")
    assert organizations.add_member_by_email(db, None, "corp-b", "a-admin@example.com") == "a-admin"
    assert "eve" in member_ids(db, "corp-a") and "a-admin" in member_ids(db, "corp-b")
    with pytest.raises(PermissionDenied, match="not an admin"):  # a member neither adds nor invites
        organizations.add_member(db, "eve", "corp-a", "b-admin")
    with pytest.raises(PermissionDenied, match="not an admin"):
        invitations.invite(db, "eve", "corp-a", "someone@example.com")
    # an invitation pending when a system admin adds the person directly closes as accepted
    invitation = invitations.invite(db, "a-admin", "corp-a", "b-admin@example.com")
    organizations.add_member(db, "root", "corp-a", "b-admin")
    assert invitations.accept(db, "b-admin", invitation.invitation_id) == "corp-a"
