"""Subscriptions' money doors (issue 8, findings 3, 4, 5, 8): only trusted callers date a change,
a change or cancel now settles the period's included credits by the time on the plan, a trial is
once per organization, and the period job and hold expiry refuse a future time.

Each exploit sequence of the issue is a test that passed through on the code before the fix.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from billing_core import charging, credits, ledger, organizations, periods, reports, subscriptions
from billing_core.database import fetch
from billing_core.errors import InsufficientPoolCredits, InvalidInput, PermissionDenied
from tests.ledger_state import billing_verify, refused

ROOT = "root"
D = Decimal


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.fixture
def org_with_root(db, org):
    """test-org-001 (admin-1, user-1..3) on a calendar of the 1st in UTC, and the system admin 'root'."""
    organizations.create_user(db, None, ROOT, "root@example.com", "Root", is_system_admin=True)
    fetch(db, "update organizations set billing_anchor_day = 1, billing_timezone = 'UTC' where id = :o", {"o": org.id})
    return org


def enterprise_since(db, org_id: str, created_at: datetime, started_at: datetime, job_at: datetime | None,
                     plan: str = "enterprise") -> None:
    """Set-up: the organization opened at `created_at`, subscribed (by root, dated) at `started_at`, and
    the period job run up to `job_at` (None: now), which granted the plan's included credits."""
    fetch(db, "update organizations set created_at = :at where id = :o", {"at": created_at, "o": org_id})
    subscriptions.create_subscription(db, ROOT, org_id, plan, started_at=started_at)
    periods.run(db, job_at)


def pool_figures(db, org_id: str) -> tuple:
    p = reports.pool(db, ROOT, org_id)
    return p.total_credits, p.allocated_credits, p.used_credits


def history(db, org_id: str, event_type: str) -> list[tuple]:
    rows = fetch(db, "select credits, amount, created_at, metadata from org_billing_history"
                     " where org_id = :o and event_type = :t order by id", {"o": org_id, "t": event_type})
    return [tuple(r) for r in rows]


def spend(db, org_id: str, user_id: str, amount: int) -> None:
    credits.allocate(db, ROOT, org_id, user_id, amount)
    credits.deduct(db, org_id, user_id, amount, "llm", "gpt")


# --------------------------------------------------------------------------- 3. backdated changes


def test_an_org_admin_cannot_date_a_cancel_one_minute_after_the_period_start(db, org_with_root, db_url):
    org = org_with_root
    now = fetch(db, "select now()")[0][0]
    period_start = datetime(now.year, now.month, 1, tzinfo=UTC)
    enterprise_since(db, org.id, period_start - timedelta(days=40), period_start - timedelta(days=30), None)

    # the exploit: a cancel dated one minute after the period start refunds (almost) the whole period
    message = refused(db, PermissionDenied, "system admin or the operator only",
                      lambda: subscriptions.cancel(db, org.admin, org.id, at_period_end=False,
                                                   occurred_at=period_start + timedelta(minutes=1)))
    assert "leave it empty" in message
    # nor any other dated change, nor a dated subscription
    later = period_start + timedelta(minutes=2)
    for action in (
        lambda: subscriptions.change_plan(db, org.admin, org.id, "starter", occurred_at=later),
        lambda: subscriptions.schedule_change(db, org.admin, org.id, "starter", occurred_at=later),
        lambda: subscriptions.cancel(db, org.admin, org.id, occurred_at=later),
        lambda: subscriptions.preview_change(db, org.admin, org.id, "starter", at=later),
    ):
        refused(db, PermissionDenied, "system admin or the operator only", action)
    # a system admin may date it (a payment provider's event, a correction)
    subscriptions.schedule_change(db, ROOT, org.id, "starter", occurred_at=later)
    subscriptions.cancel(db, org.admin, org.id)  # at period end, now: fine
    refused(db, PermissionDenied, "system admin or the operator only",
            lambda: subscriptions.reactivate(db, org.admin, org.id, occurred_at=later))
    assert billing_verify(db_url).returncode == 0


def test_an_org_admin_cannot_date_a_new_subscription(db, org_with_root):
    org = org_with_root
    refused(db, PermissionDenied, "Subscription start",
            lambda: subscriptions.create_subscription(
                db, org.admin, org.id, "platform", started_at=fetch(db, "select now()")[0][0] - timedelta(days=20)))
    subscriptions.create_subscription(db, org.admin, org.id, "platform")  # starting now: fine


# --------------------------------------------------------------------------- 5. trials


def test_cancel_then_create_with_a_trial_is_refused_to_an_org_admin(db, org_with_root):
    org = org_with_root
    subscriptions.create_subscription(db, org.admin, org.id, "platform")
    assert fetch(db, "select status from organization_subscriptions where org_id = :o", {"o": org.id})[0][0] == "trialing"
    subscriptions.cancel(db, org.admin, org.id, at_period_end=False)

    # the exploit: cancel, then subscribe again with trial => true, a new 14-day trial each time
    refused(db, PermissionDenied, "a free trial is once per organization",
            lambda: subscriptions.create_subscription(db, org.admin, org.id, "platform", trial=True))
    refused(db, PermissionDenied, "a free trial is once per organization",
            lambda: subscriptions.create_subscription(db, org.admin, org.id, "starter", trial=True))
    # the same plan, or another one with a trial, without asking: no trial either
    subscriptions.create_subscription(db, org.admin, org.id, "starter")
    statuses = fetch(db, "select plan, status, trial_ends_at from organization_subscriptions where org_id = :o"
                         " order by number", {"o": org.id})
    assert [(p, s) for p, s, _ in statuses] == [("platform", "canceled"), ("starter", "active")]
    assert statuses[1][2] is None


def test_a_system_admin_may_force_a_trial(db, org_with_root):
    org = org_with_root
    subscriptions.create_subscription(db, org.admin, org.id, "platform", trial=False)
    subscriptions.cancel(db, ROOT, org.id, at_period_end=False)
    subscriptions.create_subscription(db, ROOT, org.id, "starter", trial=True)
    assert fetch(db, "select status from organization_subscriptions where org_id = :o and number = 2",
                 {"o": org.id})[0][0] == "trialing"


def test_an_org_admin_asking_a_trial_for_a_first_subscription_gets_the_plans_trial(db, org_with_root):
    org = org_with_root
    subscriptions.create_subscription(db, org.admin, org.id, "platform", trial=True)
    assert fetch(db, "select status from organization_subscriptions where org_id = :o", {"o": org.id})[0][0] == "trialing"


# --------------------------------------------------------------------------- 4. refund and keep


def test_cancel_now_takes_back_the_unearned_included_credits(db, org_with_root, db_url):
    """The exploit: cancel now (refund recorded), then spend 90,000 of the 100,000 included credits."""
    org = org_with_root
    now = fetch(db, "select now()")[0][0]
    period_start = datetime(now.year, now.month, 1, tzinfo=UTC)
    enterprise_since(db, org.id, period_start - timedelta(days=40), period_start - timedelta(days=30), None)
    assert pool_figures(db, org.id) == (100_000, 0, 0)

    amount = subscriptions.cancel(db, org.admin, org.id, at_period_end=False)

    [(_, recorded, _, meta)] = history(db, org.id, "subscription_canceled")
    left, full = D(meta["proration"]["seconds_left"]), D(meta["proration"]["seconds_full"])
    assert amount == recorded == -round(D(99) * left / full, 2)  # the prorated refund stays
    unearned = (D(100_000) * left / full).quantize(D("0.000001"), rounding="ROUND_DOWN")
    assert meta["included"]["taken_back"] == float(unearned)
    total, allocated, used = pool_figures(db, org.id)
    assert total == 100_000 - unearned  # what the time on the plan earned
    refused(db, InsufficientPoolCredits, "available",
            lambda: credits.allocate(db, ROOT, org.id, "user-1", total + 1))
    [(taken, _, at, expiry_meta)] = [row for row in history(db, org.id, "credit_expiry") if row[3].get("taken_back")]
    assert taken == -unearned and expiry_meta["reason"] == "cancel"
    assert ledger.verify(db) == []
    assert billing_verify(db_url).returncode == 0


def test_upgrade_before_the_boundary_then_downgrade_is_not_profitable(db, org_with_root, db_url):
    """The exploit: upgrade a minute before the boundary, collect the included credits, downgrade for a refund."""
    org = org_with_root
    enterprise_since(db, org.id, utc(2026, 7, 15), utc(2026, 8, 1), utc(2026, 8, 1, 1), plan="starter")
    subscriptions.change_plan(db, ROOT, org.id, "enterprise", occurred_at=utc(2026, 8, 31, 23, 59))
    periods.run(db, utc(2026, 9, 1, 0, 30))  # the boundary: Enterprise's 100,000 included credits
    spend(db, org.id, "user-1", 100_000)

    change = subscriptions.change_plan(db, ROOT, org.id, "starter", occurred_at=utc(2026, 9, 1, 1))

    # Enterprise's 100,000 were all spent one hour into a 30-day period: 138.888889 earned,
    # 99,861.111111 spent above the share, worth $99.86 > the $98.86 credit: no refund
    assert (change.credit, change.charge, change.amount) == (D("0.00"), D("18.97"), D("18.97"))
    paid = fetch(db, "select sum(amount) from org_billing_history where org_id = :o and created_at >= :at",
                 {"o": org.id, "at": utc(2026, 8, 31, 23, 59)})[0][0]
    assert paid >= 99  # at least Enterprise's month for Enterprise's month of credits (was $19.11)
    assert ledger.verify(db) == []
    assert billing_verify(db_url).returncode == 0


def test_upgrade_before_the_boundary_then_downgrade_without_spending_keeps_no_credits(db, org_with_root):
    org = org_with_root
    enterprise_since(db, org.id, utc(2026, 7, 15), utc(2026, 8, 1), utc(2026, 8, 1, 1), plan="starter")
    subscriptions.change_plan(db, ROOT, org.id, "enterprise", occurred_at=utc(2026, 8, 31, 23, 59))
    periods.run(db, utc(2026, 9, 1, 0, 30))
    subscriptions.change_plan(db, ROOT, org.id, "starter", occurred_at=utc(2026, 9, 1, 1))
    # Enterprise: 100,000 x 719 h / 720 h = 99,861.111111 unearned (rounded down) taken back, 138.888889 kept;
    # Starter: 5,000 x 719 / 720 = 4,993.055555 (rounded down) for the rest of September
    assert pool_figures(db, org.id) == (D("138.888889") + D("4993.055555"), 0, 0)


# the rule, by hand. September 2026: 30 days. Enterprise $99 with 100,000 included credits a period,
# Starter $19 with 5,000. (case, at, members' credits: {user: (allocated, spent)},
#  -> amount recorded, included taken back, granted, withheld, pool total after)
SEP = utc(2026, 9, 1)
RULE = [
    # cancel 3 days in, nothing spent: 90,000 of 100,000 unearned; refund 99 x 27/30
    ("cancel", "enterprise", SEP + timedelta(days=3), {}, D("-89.10"), 90_000, 0, D(0), 10_000),
    # cancel 3 days in, 90,000 spent: 10,000 unspent taken back, 80,000 spent above the 10,000 earned: $80 withheld
    ("cancel", "enterprise", SEP + timedelta(days=3), {"user-1": (90_000, 90_000)},
     D("-9.10"), 10_000, 0, D("80.00"), 90_000),
    # cancel 3 days in, members hold 85,000 unused of 90,000 allocated: 10,000 unallocated, 80,000 from members
    ("cancel", "enterprise", SEP + timedelta(days=3), {"user-1": (60_000, 5_000), "user-2": (30_000, 0)},
     D("-89.10"), 90_000, 0, D(0), 10_000),
    # downgrade 3 days in, nothing spent: -89.10 + 19 x 27/30; Starter's 5,000 x 27/30 granted
    ("starter", "enterprise", SEP + timedelta(days=3), {}, D("-72.00"), 90_000, 4_500, D(0), 14_500),
    # downgrade 3 days in, everything spent: $90 of spent-above-share withholds the whole $89.10 credit
    ("starter", "enterprise", SEP + timedelta(days=3), {"user-1": (100_000, 100_000)},
     D("17.10"), 0, 4_500, D("89.10"), 104_500),
    # upgrade half way: Starter's 2,500 unearned taken back, -9.50 + 49.50, Enterprise's 50,000 granted
    ("enterprise", "starter", SEP + timedelta(days=15), {}, D("40.00"), 2_500, 50_000, D(0), 52_500),
]


@pytest.mark.parametrize("change, plan, at, members, amount, taken, granted, withheld, total", RULE)
def test_the_included_credit_rule_by_hand(db, org_with_root, db_url, change, plan, at, members, amount, taken,
                                          granted, withheld, total):
    org = org_with_root
    enterprise_since(db, org.id, utc(2026, 7, 15), utc(2026, 8, 1), utc(2026, 9, 1, 1), plan=plan)
    assert pool_figures(db, org.id)[0] == (100_000 if plan == "enterprise" else 5_000)
    for user_id, (allocated, spent) in members.items():
        credits.allocate(db, ROOT, org.id, user_id, allocated)
        if spent:
            credits.deduct(db, org.id, user_id, spent, "llm", "gpt")

    if change == "cancel":
        recorded = subscriptions.cancel(db, ROOT, org.id, at_period_end=False, occurred_at=at)
        event = "subscription_canceled"
    else:
        recorded = subscriptions.change_plan(db, ROOT, org.id, change, occurred_at=at).amount
        event = "subscription_plan_changed"

    [(_, row_amount, _, meta)] = [r for r in history(db, org.id, event) if r[2] == at]
    assert recorded == row_amount == amount
    assert D(str(meta["included"]["taken_back"])) == taken
    assert D(str(meta["included"]["granted"])) == granted
    assert D(str(meta["included"]["refund_withheld"])) == withheld
    assert pool_figures(db, org.id)[0] == total
    grants = [r for r in history(db, org.id, "credit_grant") if r[2] == at]
    assert [g[0] for g in grants] == ([granted] if granted else [])
    assert ledger.verify(db) == []
    assert billing_verify(db_url).returncode == 0


def test_a_second_change_in_the_period_takes_back_only_what_the_current_plan_has_not_earned(db, org_with_root, db_url):
    org = org_with_root
    enterprise_since(db, org.id, utc(2026, 7, 15), utc(2026, 8, 1), utc(2026, 9, 1, 1), plan="starter")
    subscriptions.change_plan(db, ROOT, org.id, "enterprise", occurred_at=SEP + timedelta(days=15))
    assert pool_figures(db, org.id)[0] == 52_500  # 5,000 - 2,500 + 50,000 (the table above)

    back = subscriptions.change_plan(db, ROOT, org.id, "starter", occurred_at=SEP + timedelta(days=24))

    # Enterprise's 50,000 for Sep 16 - Oct 1: 6 of its 15 days unearned = 20,000 taken back; Starter's
    # first lot stopped earning at the upgrade (nothing more taken); Starter's 5,000 x 6/30 = 1,000 granted
    assert pool_figures(db, org.id)[0] == 52_500 - 20_000 + 1_000
    assert (back.credit, back.charge, back.amount) == (D("19.80"), D("3.80"), D("-16.00"))
    assert ledger.verify(db) == []
    assert billing_verify(db_url).returncode == 0


def test_members_give_back_in_proportion_to_their_unused_credits(db, org_with_root):
    org = org_with_root
    enterprise_since(db, org.id, utc(2026, 7, 15), utc(2026, 8, 1), utc(2026, 9, 1, 1))
    credits.allocate(db, ROOT, org.id, "user-1", 60_000)
    credits.allocate(db, ROOT, org.id, "user-2", 30_000)
    credits.deduct(db, org.id, "user-1", 5_000, "llm", "gpt")
    subscriptions.cancel(db, ROOT, org.id, at_period_end=False, occurred_at=SEP + timedelta(days=3))
    # 90,000 unearned: 10,000 unallocated, 80,000 from 85,000 unused: 55/85 and 30/85 (rest to the largest)
    taken = fetch(db, "select user_id, credits from credit_allocation_events where kind = 'expiry' order by user_id")
    assert [tuple(t) for t in taken] == [("user-1", D("-51764.705883")), ("user-2", D("-28235.294117"))]


# --------------------------------------------------------------------------- 8. no future period work


def test_the_period_job_and_hold_expiry_refuse_a_future_time(db, db_url, org_with_root):
    org = org_with_root
    credits.add_credits(db, None, org.id, 1000, 1)
    credits.allocate(db, None, org.id, "user-1", 500)
    charging.reserve(db, "user-1", 100, "in-flight", "llm", "gpt-4o", org_id=org.id)
    runs = fetch(db, "select count(*) from billing_period_runs")[0][0]

    with psycopg.connect(db_url, autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as caught:
            conn.execute("call run_billing_periods(now() + interval '40 days', null)")
        assert caught.value.sqlstate == "CB009" and "in the future" in str(caught.value)
        with pytest.raises(psycopg.Error) as caught:
            conn.execute("select release_expired_holds(now() + '30 days')")
        assert caught.value.sqlstate == "CB009"
        # the clock-skew allowance of the rest of the ledger: a few seconds ahead is now
        conn.execute("call run_billing_periods(clock_timestamp() + interval '5 seconds', null)")

    refused(db, InvalidInput, "in the future",
            lambda: periods.run(db, fetch(db, "select now()")[0][0] + timedelta(days=40)))
    refused(db, InvalidInput, "in the future",
            lambda: charging.release_expired_holds(db, fetch(db, "select now()")[0][0] + timedelta(days=30)))
    assert fetch(db, "select count(*) from billing_period_runs")[0][0] == runs + 1
    assert fetch(db, "select status from credit_holds where request_id = 'in-flight'")[0][0] == "open"


def test_a_cancel_now_while_members_spend_keeps_the_ledger_exact(db, org_with_root, db_url):
    import threading

    from billing_core import database
    from billing_core.errors import InsufficientCredits

    org = org_with_root
    now = fetch(db, "select now()")[0][0]
    period_start = datetime(now.year, now.month, 1, tzinfo=UTC)
    enterprise_since(db, org.id, period_start - timedelta(days=40), period_start - timedelta(days=30), None)
    for user_id in org.members:
        credits.allocate(db, ROOT, org.id, user_id, 30_000)
    engine = database.get_engine(db_url)
    start = threading.Barrier(len(org.members) + 1)
    errors: list[Exception] = []

    def spend_loop(user_id: str) -> None:
        start.wait(timeout=10)
        for n in range(40):
            try:
                credits.deduct(engine, org.id, user_id, 100, "llm", "gpt", request_id=f"{user_id}-{n}")
            except InsufficientCredits:
                pass  # what was taken back is no longer there to spend
            except Exception as exc:  # noqa: BLE001 -- asserted below
                errors.append(exc)

    threads = [threading.Thread(target=spend_loop, args=(u,)) for u in org.members]
    for thread in threads:
        thread.start()
    start.wait(timeout=10)
    subscriptions.cancel(engine, org.admin, org.id, at_period_end=False)
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    periods.run(db)  # settles the lots
    assert ledger.verify(db) == []
    assert billing_verify(db_url).returncode == 0
