"""Requests for more credits: a member asks, the organization's admins approve (an allocation) or decline.

The funded organization holds 10,000 credits; its admin is admin-1, its members user-1..user-3.
"""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from ledger_state import billing_verify, refused, snapshot

from billing_core import alerts, credit_requests, credits, orders, organizations, usage
from billing_core.database import fetch
from billing_core.errors import (
    AlreadyExists,
    BillingError,
    InsufficientPoolCredits,
    InvalidAmount,
    InvalidInput,
    NotAMember,
    NotFound,
    PermissionDenied,
)


def card(db, user_id: str, org_id: str) -> usage.MemberCard:
    return next(c for c in usage.member_cards(db, user_id) if c.org_id == org_id)


def audit_actions(db, org_id: str) -> list[str]:
    rows = fetch(db, "select action from audit_log where org_id = :o and action like 'credit_request.%' order by id",
                 {"o": org_id})
    return [row[0] for row in rows]


@pytest.fixture
def other_org(db, funded_org):
    """A second organization with its own admin, who is no admin of the funded one."""
    organizations.create_organization(db, None, "other-org", "Other Org")
    organizations.create_user(db, None, "other-admin", "other-admin@example.com", "Otto Other")
    organizations.add_member(db, None, "other-org", "other-admin", "admin")
    return "other-org"


def test_a_request_approved_raises_the_allocation_from_the_pool(db, db_url, funded_org):
    org = funded_org
    credits.allocate(db, org.admin, org.id, "user-1", 100)
    asked = credit_requests.request(db, "user-1", org.id, 250, 'Need it for the "Q3" <b>report</b>')
    assert (asked.status, asked.credits, asked.note) == ("pending", 250, 'Need it for the "Q3" <b>report</b>')

    pending = credit_requests.of_organization(db, org.admin, org.id)
    assert list(pending.request_id) == [asked.id]
    assert (pending.iloc[0].member, pending.iloc[0].allocated_credits) == ("Member 1", 100)

    preview = credit_requests.preview_approval(db, org.admin, org.id, asked.id)
    assert preview == credit_requests.Approval(Decimal(250), Decimal(350), Decimal(9650))
    assert credit_requests.mine(db, "user-1", org.id).status.tolist() == ["pending"]  # the preview changed nothing

    approved = credit_requests.approve(db, org.admin, org.id, asked.id)
    assert (approved.status, approved.approved_credits, approved.decided_by) == ("approved", 250, org.admin)
    assert card(db, "user-1", org.id).allocated_credits == 350
    assert usage.org_overview(db, org.admin, org.id).total_credits == 10_000  # nothing minted
    assert usage.org_overview(db, org.admin, org.id).available_credits == 9_650
    mine = credit_requests.mine(db, "user-1")
    assert (mine.iloc[0].status, mine.iloc[0].approved_credits, mine.iloc[0].decided_by) == ("approved", 250,
                                                                                               "Ada Admin")
    assert audit_actions(db, org.id) == ["credit_request.created", "credit_request.approved"]
    assert billing_verify(db_url).returncode == 0


def test_an_admin_may_approve_another_amount_and_decline_with_a_reason(db, funded_org):
    org = funded_org
    first = credit_requests.request(db, "user-1", org.id, 500)
    approved = credit_requests.approve(db, org.admin, org.id, first.id, "120.5")
    assert (approved.credits, approved.approved_credits) == (500, Decimal("120.5"))
    assert card(db, "user-1", org.id).allocated_credits == Decimal("120.5")

    second = credit_requests.request(db, "user-2", org.id, 40, None)
    declined = credit_requests.decline(db, org.admin, org.id, second.id, "  Budget is frozen until July.  ")
    assert (declined.status, declined.decline_reason, declined.approved_credits) == (
        "declined", "Budget is frozen until July.", None)
    assert card(db, "user-2", org.id).allocated_credits == 0
    shown = credit_requests.mine(db, "user-2", org.id).iloc[0]
    assert (shown.status, shown.decline_reason) == ("declined", "Budget is frozen until July.")


def test_a_member_withdraws_and_may_then_ask_again_one_pending_at_a_time(db, funded_org):
    org = funded_org
    first = credit_requests.request(db, "user-1", org.id, 100)
    message = refused(db, AlreadyExists, "withdraw that request first",
                      lambda: credit_requests.request(db, "user-1", org.id, 200))
    assert "Test Org 001" in message and "100 credits" in message
    refused(db, PermissionDenied, "only the member who asked",
            lambda: credit_requests.withdraw(db, org.admin, org.id, first.id))
    withdrawn = credit_requests.withdraw(db, "user-1", org.id, first.id)
    assert withdrawn.status == "withdrawn"
    refused(db, BillingError, "already withdrawn", lambda: credit_requests.withdraw(db, "user-1", org.id, first.id))
    refused(db, BillingError, "already withdrawn", lambda: credit_requests.approve(db, org.admin, org.id, first.id))
    again = credit_requests.request(db, "user-1", org.id, 200)
    assert credit_requests.mine(db, "user-1", org.id).request_id.tolist() == [again.id, first.id]
    assert credit_requests.of_organization(db, org.admin, org.id, include_decided=False).request_id.tolist() == [
        again.id]
    assert audit_actions(db, org.id) == ["credit_request.created", "credit_request.withdrawn",
                                         "credit_request.created"]


@pytest.mark.parametrize(
    ("amount", "error", "words"),
    [(0, InvalidAmount, "greater than 0"), (-5, InvalidAmount, "greater than 0"),
     ("1e20", InvalidAmount, "too large"), ("0.0000001", InvalidAmount, "6 decimal places"),
     ("abc", InvalidAmount, "not a number")],
)
def test_bad_amounts_are_refused_and_change_nothing(db, funded_org, amount, error, words):
    org = funded_org
    refused(db, error, words, lambda: credit_requests.request(db, "user-1", org.id, amount))
    refused(db, error, words, lambda: credit_requests.preview_request(db, "user-1", org.id, amount))


def test_notes_and_reasons_are_checked_as_text(db, funded_org):
    org = funded_org
    refused(db, InvalidInput, "too long", lambda: credit_requests.request(db, "user-1", org.id, 5, "x" * 501))
    refused(db, InvalidInput, "control characters",
            lambda: credit_requests.request(db, "user-1", org.id, 5, "two\nlines"))
    asked = credit_requests.request(db, "user-1", org.id, 5, "   ")
    assert asked.note is None  # a blank note is no note
    refused(db, InvalidInput, "too long", lambda: credit_requests.decline(db, org.admin, org.id, asked.id, "y" * 501))


def test_a_member_cannot_approve_or_decline_and_an_admin_not_their_own(db, funded_org):
    org = funded_org
    asked = credit_requests.request(db, "user-1", org.id, 50)
    refused(db, PermissionDenied, "not an admin", lambda: credit_requests.approve(db, "user-1", org.id, asked.id))
    refused(db, PermissionDenied, "not an admin", lambda: credit_requests.approve(db, "user-2", org.id, asked.id))
    refused(db, PermissionDenied, "not an admin", lambda: credit_requests.decline(db, "user-1", org.id, asked.id))
    refused(db, PermissionDenied, "not an admin", lambda: credit_requests.of_organization(db, "user-1", org.id))
    assert credit_requests.mine(db, "user-2", org.id).empty  # another member does not see it

    own = credit_requests.request(db, org.admin, org.id, 50)  # an admin may ask too, but someone else decides
    refused(db, PermissionDenied, "your own request", lambda: credit_requests.approve(db, org.admin, org.id, own.id))


def test_an_admin_of_another_organization_can_neither_see_nor_answer(db, funded_org, other_org):
    org = funded_org
    asked = credit_requests.request(db, "user-1", org.id, 50)
    refused(db, PermissionDenied, "not an admin",
            lambda: credit_requests.of_organization(db, "other-admin", org.id))
    refused(db, PermissionDenied, "not an admin",
            lambda: credit_requests.approve(db, "other-admin", org.id, asked.id))
    refused(db, PermissionDenied, "not an admin",
            lambda: credit_requests.decline(db, "other-admin", org.id, asked.id))
    # naming their own organization does not reach a request of another one
    refused(db, NotFound, "does not exist", lambda: credit_requests.approve(db, "other-admin", other_org, asked.id))
    refused(db, PermissionDenied, "not a member", lambda: credit_requests.mine(db, "other-admin", org.id))
    refused(db, NotAMember, "not a member", lambda: credit_requests.request(db, "other-admin", org.id, 10))


def test_approving_more_than_the_pool_holds_is_refused_and_changes_nothing(db, funded_org):
    org = funded_org
    credits.allocate(db, org.admin, org.id, "user-2", 9_900)  # 100 available
    asked = credit_requests.request(db, "user-1", org.id, 150)
    refused(db, InsufficientPoolCredits, "100 available",
            lambda: credit_requests.preview_approval(db, org.admin, org.id, asked.id))
    refused(db, InsufficientPoolCredits, "100 available",
            lambda: credit_requests.approve(db, org.admin, org.id, asked.id))
    assert credit_requests.mine(db, "user-1", org.id).status.tolist() == ["pending"]
    approved = credit_requests.approve(db, org.admin, org.id, asked.id, 100)  # what the pool can give
    assert approved.approved_credits == 100


def test_a_system_admin_may_answer_and_a_personal_balance_cannot_be_asked(db, funded_org):
    org = funded_org
    organizations.create_user(db, None, "root", "root@example.com", "Root", is_system_admin=True)
    asked = credit_requests.request(db, "user-3", org.id, 10)
    assert credit_requests.decline(db, "root", org.id, asked.id).decided_by == "root"

    order = orders.order_personal_credits(db, "user-3", "user-3", credits=1_000)
    refused(db, BillingError, "no admins to ask", lambda: credit_requests.request(db, "user-3", order.org_id, 10))


def test_an_approval_that_brings_the_member_under_90_percent_clears_the_alert(db, funded_org):
    org = funded_org
    credits.allocate(db, org.admin, org.id, "user-1", 100)
    credits.deduct(db, org.id, "user-1", 95, "llm", "gpt")
    assert len(alerts.my_alerts(db, "user-1", org.id)) == 1
    asked = credit_requests.request(db, "user-1", org.id, 100)
    before = snapshot(db)["credit_alerts"]
    credit_requests.approve(db, org.admin, org.id, asked.id)  # 95 of 200
    assert alerts.my_alerts(db, "user-1", org.id).empty
    assert snapshot(db)["credit_alerts"] != before


def at_once(calls):
    """Run the calls in threads released together; each one's result or exception, in order."""
    barrier = threading.Barrier(len(calls), timeout=30)
    outcomes: list = [None] * len(calls)

    def run(index, call):
        barrier.wait()
        try:
            outcomes[index] = call()
        except BillingError as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


def test_simultaneous_requests_leave_one_pending_and_a_race_of_answers_has_one_winner(db, db_url, funded_org):
    org = funded_org
    outcomes = at_once([lambda n=n: credit_requests.request(db, "user-1", org.id, 10 + n) for n in range(4)])
    sent = [o for o in outcomes if isinstance(o, credit_requests.CreditRequest)]
    assert len(sent) == 1 and all(isinstance(o, AlreadyExists) for o in outcomes if o not in sent)
    assert credit_requests.mine(db, "user-1", org.id).status.tolist() == ["pending"]

    request_id = sent[0].id
    approve, withdraw = at_once([lambda: credit_requests.approve(db, org.admin, org.id, request_id),
                                 lambda: credit_requests.withdraw(db, "user-1", org.id, request_id)])
    [winner] = [o for o in (approve, withdraw) if isinstance(o, credit_requests.CreditRequest)]
    [loser] = [o for o in (approve, withdraw) if isinstance(o, BillingError)]
    assert "nothing changed" in str(loser)
    allocated = card(db, "user-1", org.id).allocated_credits
    assert allocated == (sent[0].credits if winner.status == "approved" else 0)
    assert billing_verify(db_url).returncode == 0
