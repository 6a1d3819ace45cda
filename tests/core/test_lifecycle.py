"""The subscription lifecycle: trials, renewals (idempotent, catching up), scheduled changes and cancels
applied once, plan versions met at period starts, MRR after each change, the org admin rate limit,
refusals that change nothing."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing_core import analytics, database, organizations, subscriptions
from billing_core.database import fetch
from billing_core.errors import (
    AlreadyExists,
    InvalidInput,
    NotFound,
    PermissionDenied,
    RateLimited,
    RuleViolation,
)
from tests.ledger_state import billing_verify, refused, snapshot

ROOT = "root"


@pytest.fixture
def ready(db, org):
    """test-org-001 (admin-1, user-1..3), calendar anchored on the 1st in UTC; 'root'; a second org with its admin."""
    organizations.create_user(db, None, ROOT, "root@example.com", "Root", is_system_admin=True)
    organizations.create_organization(db, None, "other-org", "Other Org")
    organizations.create_user(db, None, "other-admin", "other-admin@example.com", "Other Admin")
    organizations.add_member(db, None, "other-org", "other-admin", "admin")
    fetch(db, "update organizations set billing_anchor_day = 1, billing_timezone = 'UTC'")
    return org


def now(db) -> datetime:
    return fetch(db, "select now()")[0][0]


def month_start(moment: datetime, back: int = 0) -> datetime:
    first = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    for _ in range(back):
        first = (first - timedelta(days=1)).replace(day=1)
    return first


def next_month(first: datetime) -> datetime:
    return (first + timedelta(days=32)).replace(day=1)


def events(db, org_id: str) -> list:
    return fetch(
        db,
        "select event_type, amount, created_at, external_ref, metadata from org_billing_history"
        " where org_id = :o and metadata ? 'mrr_after' order by created_at, id",
        {"o": org_id},
    )


def sub(db, org_id: str):
    return fetch(db, "select * from organization_subscriptions where org_id = :o order by number desc limit 1",
                 {"o": org_id})[0]


# ----------------------------------------------------------------------------- trials


def test_a_first_subscription_starts_with_the_plans_trial(db, ready):
    subscriptions.create_subscription(db, "admin-1", ready.id, "platform")  # an org admin may subscribe
    s = sub(db, ready.id)
    assert s.status == "trialing" and s.trial_ends_at == s.created_at + timedelta(days=14)
    [created] = events(db, ready.id)
    assert (created.event_type, created.metadata["mrr_after"]) == ("subscription_created", 0)
    assert analytics.overview(db, ROOT).mrr.value == 0
    # a plan without a trial, or a second subscription, starts active at once
    subscriptions.cancel(db, "admin-1", ready.id, at_period_end=False)
    subscriptions.create_subscription(db, "admin-1", ready.id, "platform")
    assert sub(db, ready.id).status == "active"
    assert analytics.overview(db, ROOT).mrr.value == 50


def test_a_trial_ends_at_renewal_with_a_prorated_invoice(db, db_url, ready):
    started = now(db) - timedelta(days=20)
    subscriptions.create_subscription(db, ROOT, ready.id, "platform", started_at=started, trial=True)
    assert sub(db, ready.id).status == "trialing"
    written = subscriptions.renew(db, None, ready.id)
    trial_end = started + timedelta(days=14)
    s = sub(db, ready.id)
    assert s.status == "active" and s.status_changed_at == trial_end
    rows = events(db, ready.id)
    assert [r.event_type for r in rows if r.created_at < trial_end] == ["subscription_created"]  # no invoice in trial
    [ended] = [r for r in rows if r.event_type == "subscription_trial_ended"]
    [first_invoice] = [r for r in rows if r.event_type == "invoice" and r.created_at == trial_end]
    assert ended.created_at == trial_end and ended.metadata["mrr_after"] == 50
    period_start = month_start(trial_end)
    period_end = next_month(period_start)
    assert first_invoice.amount == (Decimal(50) * Decimal((period_end - trial_end) // timedelta(microseconds=1))
                                    / Decimal((period_end - period_start) // timedelta(microseconds=1))
                                    ).quantize(Decimal("0.01"))
    assert written == len(rows) - 1
    assert subscriptions.renew(db, None, ready.id) == 0
    assert analytics.overview(db, ROOT).mrr.value == 50
    assert billing_verify(db_url).returncode == 0


def test_cancel_at_period_end_during_a_trial_ends_with_the_trial(db, ready):
    started = now(db) - timedelta(days=20)
    subscriptions.create_subscription(db, ROOT, ready.id, "starter", started_at=started, trial=True)
    subscriptions.cancel(db, ROOT, ready.id, occurred_at=started + timedelta(days=1))
    subscriptions.renew(db, None, ready.id)
    s = sub(db, ready.id)
    assert (s.status, s.canceled_at) == ("canceled", started + timedelta(days=14))
    assert [r.event_type for r in events(db, ready.id)] == [
        "subscription_created", "subscription_cancel_scheduled", "subscription_canceled"]
    assert not [r for r in events(db, ready.id) if r.amount != 0]  # never charged


# ----------------------------------------------------------------------------- renewals


def test_renew_catches_up_missed_periods_once_and_in_steps_gives_the_same(db, ready):
    t = now(db)
    started = month_start(t, 4) + timedelta(days=9, hours=5)
    for org_id in (ready.id, "other-org"):
        subscriptions.create_subscription(db, ROOT, org_id, "starter", started_at=started)
    # one org renewed late, in one go; the other month by month, twice each time
    assert subscriptions.renew(db, None, ready.id) == 4
    step = month_start(t, 3)
    while step <= t:
        subscriptions.renew(db, None, "other-org", until=step + timedelta(hours=1))
        subscriptions.renew(db, None, "other-org", until=step + timedelta(hours=1))
        step = next_month(step)
    assert subscriptions.renew(db, None, "other-org") == 0
    assert subscriptions.renew(db, None, ready.id) == 0

    def invoices(org_id):
        return [(r.amount, r.created_at, r.external_ref) for r in events(db, org_id) if r.event_type == "invoice"]

    assert invoices(ready.id) == invoices("other-org")
    amounts = [a for a, _, _ in invoices(ready.id)]
    assert amounts[1:] == [Decimal(19)] * 4  # the four boundaries since the start, at $19
    assert [d for _, d, _ in invoices(ready.id)][1:] == [month_start(t, n) for n in (3, 2, 1, 0)]
    s = sub(db, ready.id)
    assert (s.current_period_start, s.current_period_end) == (month_start(t), next_month(month_start(t)))


def test_a_scheduled_downgrade_applies_once_at_the_period_end(db, ready):
    t = now(db)
    started = month_start(t, 3)
    subscriptions.create_subscription(db, ROOT, ready.id, "hybrid", started_at=started)
    applies = subscriptions.schedule_change(db, ROOT, ready.id, "starter", occurred_at=started + timedelta(days=3))
    assert applies == month_start(t, 2)
    for _ in range(2):
        subscriptions.renew(db, None, ready.id)
    rows = events(db, ready.id)
    changed = [r for r in rows if r.event_type == "subscription_plan_changed"]
    assert len(changed) == 1 and changed[0].created_at == applies and changed[0].amount == 0
    assert (changed[0].metadata["previous_plan"], changed[0].metadata["plan"], changed[0].metadata["mrr_after"],
            changed[0].metadata["previous_mrr"]) == ("hybrid", "starter", 19, 99)
    invoices = [(r.amount, r.created_at) for r in rows if r.event_type == "invoice"]
    assert invoices == [(Decimal(99), started), (Decimal(19), month_start(t, 2)), (Decimal(19), month_start(t, 1)),
                        (Decimal(19), month_start(t, 0))]
    s = sub(db, ready.id)
    assert (s.plan, s.scheduled_plan) == ("starter", None)


def test_cancel_at_period_end_applies_once_and_reactivate_undoes_it(db, ready):
    t = now(db)
    started = month_start(t, 2)
    subscriptions.create_subscription(db, ROOT, ready.id, "byok", started_at=started)
    subscriptions.cancel(db, ROOT, ready.id, occurred_at=started + timedelta(days=1))
    subscriptions.reactivate(db, ROOT, ready.id, occurred_at=started + timedelta(days=2))
    subscriptions.cancel(db, ROOT, ready.id, occurred_at=started + timedelta(days=3))
    subscriptions.renew(db, None, ready.id)
    subscriptions.renew(db, None, ready.id)
    s = sub(db, ready.id)
    assert (s.status, s.canceled_at) == ("canceled", month_start(t, 1))
    rows = events(db, ready.id)
    assert [(r.event_type, r.metadata["mrr_after"]) for r in rows] == [
        ("subscription_created", 30), ("invoice", 30), ("subscription_cancel_scheduled", 30),
        ("subscription_reactivated", 30), ("subscription_cancel_scheduled", 30), ("subscription_canceled", 0),
    ]
    assert analytics.overview(db, ROOT).mrr.value == 0
    # a canceled organization subscribes again
    subscriptions.create_subscription(db, "admin-1", ready.id, "byok")
    assert sub(db, ready.id).number == 2


def test_plan_versions_meet_subscriptions_at_their_next_period_start(db, ready):
    t = now(db)
    # as if the catalogue had been migrated a year ago and Platform repriced to $60 forty days ago
    fetch(db, "update plan_versions set effective_at = now() - interval '1 year' where version = 1")
    fetch(db, "insert into plan_versions (plan, version, monthly_price, pricing_mode, included_credits, effective_at)"
              " values ('platform', 2, 60, 'markup', 30000, now() - interval '40 days')")
    started = month_start(t, 3)
    subscriptions.create_subscription(db, ROOT, ready.id, "platform", started_at=started)
    assert sub(db, ready.id).plan_version == 1
    created_before = events(db, ready.id)[0]
    subscriptions.renew(db, None, ready.id)
    move = t - timedelta(days=40)
    first_after = next_month(month_start(move))
    rows = events(db, ready.id)
    moved = [r for r in rows if r.event_type == "subscription_plan_version_changed"]
    assert len(moved) == 1 and moved[0].created_at == first_after
    assert (moved[0].metadata["previous_price_amount"], moved[0].metadata["price_amount"]) == (50, 60)
    invoices = [(r.amount, r.created_at) for r in rows if r.event_type == "invoice"]
    assert all(a == 50 for a, d in invoices if d < first_after) and all(a == 60 for a, d in invoices if d >= first_after)
    assert rows[0] == created_before  # what was paid before is not rewritten
    assert fetch(db, "select org_included_credits(:o, :at)", {"o": ready.id, "at": first_after - timedelta(seconds=1)})[0][0] == 25000
    assert fetch(db, "select org_included_credits(:o, :at)", {"o": ready.id, "at": first_after})[0][0] == 30000


# ----------------------------------------------------------------------------- MRR after each change


def test_mrr_after_every_change(db, ready):
    subscriptions.create_subscription(db, ROOT, ready.id, "byok")
    subscriptions.change_plan(db, "admin-1", ready.id, "hybrid")
    subscriptions.schedule_change(db, "admin-1", ready.id, "starter")
    subscriptions.reactivate(db, "admin-1", ready.id)
    subscriptions.set_subscription_status(db, ROOT, ready.id, "past_due")
    subscriptions.cancel(db, ROOT, ready.id)
    assert analytics.overview(db, ROOT).mrr.value == 99  # until the period end
    rows = events(db, ready.id)
    assert [(r.event_type, r.metadata["mrr_after"], r.metadata["previous_mrr"]) for r in rows] == [
        ("subscription_created", 30, None), ("invoice", 30, 30), ("subscription_plan_changed", 99, 30),
        ("subscription_change_scheduled", 99, 99), ("subscription_reactivated", 99, 99),
        ("subscription_past_due", 99, 99), ("subscription_cancel_scheduled", 99, 99),
    ]
    refused(db, RuleViolation, "ends at", lambda: subscriptions.cancel(db, ROOT, ready.id))
    subscriptions.set_subscription_status(db, ROOT, ready.id, "canceled")
    assert events(db, ready.id)[-1].metadata["mrr_after"] == 0
    assert analytics.overview(db, ROOT).mrr.value == 0


# ----------------------------------------------------------------------------- rate limit


def test_an_org_admin_may_make_five_changes_an_hour(db, ready):
    subscriptions.create_subscription(db, "admin-1", ready.id, "byok")  # 1
    subscriptions.schedule_change(db, "admin-1", ready.id, "starter")  # 2
    subscriptions.reactivate(db, "admin-1", ready.id)  # 3
    subscriptions.change_plan(db, "admin-1", ready.id, "hybrid")  # 4
    subscriptions.cancel(db, "admin-1", ready.id)  # 5
    message = refused(db, RateLimited, "5 an hour", lambda: subscriptions.reactivate(db, "admin-1", ready.id))
    assert "try again after" in message.lower()
    # system admins and jobs are not limited
    subscriptions.reactivate(db, ROOT, ready.id)
    subscriptions.cancel(db, None, ready.id)


def test_two_parallel_calls_cannot_both_be_the_fifth(db, db_url, ready):
    organizations.add_member(db, None, "other-org", "admin-1", "admin")
    subscriptions.create_subscription(db, "admin-1", ready.id, "byok")
    subscriptions.create_subscription(db, "admin-1", "other-org", "byok")
    subscriptions.schedule_change(db, "admin-1", ready.id, "starter")
    subscriptions.reactivate(db, "admin-1", ready.id)  # 4 changes
    engine = database.get_engine(db_url)
    barrier = threading.Barrier(2, timeout=30)
    outcomes: list[object] = []

    def work(org_id: str) -> None:
        barrier.wait()
        try:
            outcomes.append(subscriptions.schedule_change(engine, "admin-1", org_id, "hybrid"))
        except Exception as exc:  # noqa: BLE001 -- the outcome is what is checked
            outcomes.append(exc)

    threads = [threading.Thread(target=work, args=(o,)) for o in (ready.id, "other-org")]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert len(outcomes) == 2
    assert sum(isinstance(o, datetime) for o in outcomes) == 1
    assert sum(isinstance(o, RateLimited) for o in outcomes) == 1


# ----------------------------------------------------------------------------- refusals


def test_refusals_change_nothing(db, ready):
    refused(db, NotFound, "no live subscription", lambda: subscriptions.change_plan(db, ROOT, ready.id, "hybrid"))
    subscriptions.create_subscription(db, ROOT, ready.id, "byok")
    refused(db, InvalidInput, "unknown plan", lambda: subscriptions.change_plan(db, ROOT, ready.id, "gold'; --"))
    refused(db, NotFound, "does not exist", lambda: subscriptions.change_plan(db, ROOT, "no-such-org", "hybrid"))
    refused(db, PermissionDenied, "not an admin", lambda: subscriptions.change_plan(db, "user-1", ready.id, "hybrid"))
    refused(db, PermissionDenied, "not an admin",
            lambda: subscriptions.change_plan(db, "other-admin", ready.id, "hybrid"))
    refused(db, PermissionDenied, "not a system admin", lambda: subscriptions.renew(db, "admin-1", ready.id))
    refused(db, RuleViolation, "already", lambda: subscriptions.change_plan(db, ROOT, ready.id, "byok"))
    refused(db, RuleViolation, "nothing to undo", lambda: subscriptions.reactivate(db, ROOT, ready.id))
    refused(db, AlreadyExists, "live subscription", lambda: subscriptions.create_subscription(db, ROOT, ready.id, "hybrid"))
    refused(db, InvalidInput, "in the future",
            lambda: subscriptions.change_plan(db, ROOT, ready.id, "hybrid", occurred_at=datetime.now(UTC) + timedelta(days=2)))
    refused(db, InvalidInput, "before the subscription's last change",
            lambda: subscriptions.change_plan(db, ROOT, ready.id, "hybrid", occurred_at=datetime.now(UTC) - timedelta(days=2)))
    refused(db, InvalidInput, "in the future",
            lambda: subscriptions.renew(db, None, ready.id, until=datetime.now(UTC) + timedelta(days=40)))
    subscriptions.cancel(db, ROOT, ready.id, at_period_end=False)
    for action in (lambda: subscriptions.change_plan(db, ROOT, ready.id, "hybrid"),
                   lambda: subscriptions.schedule_change(db, ROOT, ready.id, "hybrid"),
                   lambda: subscriptions.cancel(db, ROOT, ready.id),
                   lambda: subscriptions.reactivate(db, ROOT, ready.id)):
        refused(db, NotFound, "no live subscription", action)
    before = snapshot(db)
    assert subscriptions.renew(db, None, ready.id) == 0
    assert snapshot(db) == before
