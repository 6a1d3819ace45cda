"""The system overview's figures, checked against numbers computed by hand.

The dataset (tests/system_dataset.py) has subscriptions started, canceled and
past due at known days, and usage in both 30-day windows.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pandas as pd
import pytest

from billing_core import analytics, audit, organizations, subscriptions, usage
from billing_core.database import fetch
from billing_core.errors import InvalidInput, NotFound, PermissionDenied
from tests import system_dataset as data
from tests.ledger_state import billing_verify


@pytest.fixture
def ds(db):
    return data.build(db)


def _q4(value: Decimal) -> Decimal:
    return round(value, 4)


def test_headline_figures_match_the_hand_computed_ones(db, ds):
    o = analytics.overview(db, ds.sysadmin)

    assert o.mrr.value == data.MRR_NOW == 278
    assert o.mrr.previous == data.MRR_30D_AGO == 297
    assert o.mrr.change == -19
    assert o.mrr.change_percent == round(Decimal(-1900) / 297, 2) == Decimal("-6.40")
    assert o.arr.value == 12 * 278 and o.arr.previous == 12 * 297
    assert o.arr.change_percent == o.mrr.change_percent

    assert o.active_subscriptions.value == data.PAYING_NOW == 6
    assert o.active_subscriptions.previous == data.PAYING_30D_AGO == 5
    assert o.active_subscriptions.change == 1
    assert o.active_subscriptions.change_percent == Decimal("20.00")

    assert o.credits_used_30d.value == data.CREDITS_30D == 620
    assert o.credits_used_30d.previous == data.CREDITS_PREV_30D == 206
    assert o.credits_used_30d.change == 414
    assert o.credits_used_30d.change_percent == round(Decimal(41400) / 206, 2)
    assert o.requests_30d == data.REQUESTS_30D
    assert o.organizations == len(data.ORG_NAMES)
    assert o.past_due_subscriptions == 1


def test_figures_move_with_the_moment_described(db, ds):
    now = fetch(db, "select now()")[0][0]
    # 12 days on, 30 days before is 18 days ago: gamma (10 days old) was not paying yet, epsilon
    # (canceled 10 days ago) and zeta (20 days old, canceled 15 days ago) still were
    soon = analytics.overview(db, ds.sysadmin, as_of=now + timedelta(days=12))
    assert soon.mrr.value == data.MRR_NOW
    assert soon.mrr.previous == data.MRR_NOW - 30 + 99 + 50
    assert soon.active_subscriptions.previous == data.PAYING_NOW - 1 + 2
    assert (soon.credits_used_30d.value, soon.credits_used_30d.previous) == (data.CREDITS_30D, data.CREDITS_PREV_30D)
    # 35 days on, today's usage has moved into the previous 30 days
    later = analytics.overview(db, ds.sysadmin, as_of=now + timedelta(days=35))
    assert later.mrr.previous == later.mrr.value == data.MRR_NOW
    assert (later.credits_used_30d.value, later.credits_used_30d.previous) == (0, data.CREDITS_30D)
    # 50 days back: alpha, delta, epsilon and eta's yearly starter ($228 / 12); beta started 45 days ago
    earlier = analytics.overview(db, ds.sysadmin, as_of=now - timedelta(days=50))
    assert earlier.mrr.value == 50 + 19 + 99 + 19
    assert earlier.active_subscriptions.value == 4
    assert earlier.credits_used_30d.value == 0  # the usage in the past is 40 and 45 days old
    assert earlier.credits_used_30d.previous == 0


def test_trials_and_prices_written_outside_the_functions(db):
    """Rows an integrator wrote straight into organization_subscriptions (no function makes these)."""
    organizations.create_user(db, None, "root", "root@example.com", is_system_admin=True)
    for org_id in ("odd", "trial", "converted"):
        organizations.create_organization(db, None, org_id, org_id.title())
    fetch(
        db,
        "insert into organization_subscriptions (org_id, plan, status, price_amount, billing_cycle, created_at,"
        " trial_ends_at) values"
        " ('odd', 'platform', 'active', 100, 'yearly', now() - interval '40 days', null),"
        " ('trial', 'platform', 'trialing', 50, 'monthly', now() - interval '5 days', now() + interval '9 days'),"
        " ('converted', 'byok', 'active', 30, 'monthly', now() - interval '40 days', now() - interval '20 days')",
    )
    o = analytics.overview(db, "root")
    mrr = Decimal(100) / 12 + 30  # the trial pays nothing yet
    assert o.mrr.value == round(mrr, 4) == Decimal("38.3333")
    assert o.arr.value == 12 * mrr == 460  # ARR from the unrounded MRR: $100 a year counts as $100
    assert o.mrr.previous == Decimal("8.3333")  # 30 days ago 'converted' was still in its trial
    assert o.active_subscriptions.value == 2 and o.active_subscriptions.previous == 1
    mix = analytics.plan_mix(db, "root").set_index("plan")
    assert mix.loc["byok", "mrr"] == 30 and mix.loc["platform", "mrr"] == Decimal("8.3333")
    assert mix.loc["platform", "plan_name"] == "Platform"
    table = analytics.organizations(db, "root").set_index("org_id")
    assert table.loc["trial", "subscription_status"] == "trialing" and table.loc["trial", "mrr"] == 0


def test_an_empty_system_reports_zeros(db):
    organizations.create_user(db, None, "root", "root@example.com", is_system_admin=True)
    o = analytics.overview(db, "root")
    assert (o.mrr.value, o.arr.value, o.active_subscriptions.value, o.credits_used_30d.value) == (0, 0, 0, 0)
    assert o.mrr.change_percent is None
    assert analytics.plan_mix(db, "root").empty
    assert analytics.organizations(db, "root").empty
    assert analytics.top_organizations(db, "root").empty
    assert analytics.past_due_organizations(db, "root").empty
    assert analytics.running_low(db, "root").empty
    assert list(analytics.running_low(db, "root").columns) == analytics.RUNNING_LOW_COLUMNS
    months = analytics.mrr_months(db, "root")
    assert len(months) == 12 and set(months.mrr_end) == {0} and set(months.logo_churn_percent) == {None}
    assert set(analytics.credit_months(db, "root").credits_consumed) == {0}


def test_plan_mix_counts_and_mrr_per_plan(db, ds):
    mix = analytics.plan_mix(db, ds.sysadmin)
    assert list(mix.plan) == ["platform", "hybrid", "byok", "starter"]
    assert list(mix.plan_name) == ["Platform", "Hybrid", "BYOK", "Starter"]
    assert list(mix.subscriptions) == [2, 1, 2, 1]
    assert list(mix.mrr) == [100, 99, 60, 19]
    expected_shares = [round(100 * Decimal(x) / data.MRR_NOW, 2) for x in (100, 99, 60, 19)]
    assert list(mix.mrr_share_percent) == expected_shares == [
        Decimal("35.97"), Decimal("35.61"), Decimal("21.58"), Decimal("6.83")]
    assert sum(mix.subscriptions) == data.PAYING_NOW


def test_organizations_table_rows_filters_and_sorting(db, ds):
    table = analytics.organizations(db, ds.sysadmin)
    assert len(table) == len(data.ORG_NAMES)
    assert sum(table.mrr) == data.MRR_NOW
    # default order: MRR, largest first, then name ("<" sorts before letters)
    assert list(table.org_id[:5]) == ["beta", "iota", "alpha", "eta", "gamma"]
    rows = table.set_index("org_id")
    assert rows.loc["iota", "org_name"] == "<script>alert(1)</script>"
    assert rows.loc["beta", "mrr"] == 99 and rows.loc["beta", "billing_cycle"] == "yearly"
    assert rows.loc["beta", "price_amount"] == 1188 and rows.loc["beta", "plan_name"] == "Hybrid"
    assert rows.loc["eta", "plan"] == "byok" and rows.loc["eta", "subscription_status"] == "active"
    assert rows.loc["epsilon", "subscription_status"] == "canceled" and rows.loc["epsilon", "mrr"] == 0
    assert rows.loc["theta", "subscription_status"] == "none" and pd.isna(rows.loc["theta", "plan"])
    alpha = rows.loc["alpha"]
    assert (alpha.member_count, alpha.total_credits, alpha.allocated_credits, alpha.used_credits,
            alpha.available_credits) == (2, 10_000, 1_500, 700, 8_500)
    assert alpha.allocated_percent == Decimal("15.00")
    assert (alpha.credits_used_30d, alpha.credits_used_prev_30d, alpha.requests_30d) == (500, 200, 10)
    assert alpha.usage_change_percent == Decimal("150.00")
    assert rows.loc["gamma", "usage_change_percent"] == Decimal("-100.00")
    assert pd.isna(rows.loc["beta", "usage_change_percent"])  # nothing to compare with

    platform = analytics.organizations(db, ds.sysadmin, plans=["platform"])
    assert sorted(platform.org_id) == ["alpha", "iota", "zeta"]
    live = analytics.organizations(db, ds.sysadmin, statuses=["active", "past_due"], plans=["byok", "starter"])
    assert sorted(live.org_id) == ["delta", "eta", "gamma"]
    assert sorted(analytics.organizations(db, ds.sysadmin, statuses=["canceled"]).org_id) == ["epsilon", "zeta"]
    assert list(analytics.organizations(db, ds.sysadmin, statuses=["none"]).org_id) == ["theta"]
    assert analytics.organizations(db, ds.sysadmin, plans=["no-such-plan"]).empty

    by_usage = analytics.organizations(db, ds.sysadmin, sort_by="credits_used_30d")
    assert list(by_usage.org_id[:3]) == ["alpha", "beta", "iota"]  # then no usage, by name
    by_name = analytics.organizations(db, ds.sysadmin, sort_by="org_name")
    assert list(by_name.org_name) == sorted(data.ORG_NAMES.values())
    with pytest.raises(InvalidInput, match="sort"):
        analytics.organizations(db, ds.sysadmin, sort_by="1; drop table users")
    with pytest.raises(InvalidInput, match="status"):
        analytics.organizations(db, ds.sysadmin, statuses=["unpaid"])


def test_top_organizations_and_past_due(db, ds):
    top = analytics.top_organizations(db, ds.sysadmin)
    assert list(top.org_id) == ["alpha", "beta"]  # gamma used nothing in the last 30 days
    assert list(top.credits_used_30d) == [500, 120]
    assert list(analytics.top_organizations(db, ds.sysadmin, limit=1).org_id) == ["alpha"]
    with pytest.raises(InvalidInput):
        analytics.top_organizations(db, ds.sysadmin, limit=0)

    due = analytics.past_due_organizations(db, ds.sysadmin)
    assert list(due.org_id) == ["delta"]
    assert due.loc[0, "org_name"] == "Delta <b>bold</b>"
    assert (due.loc[0, "plan"], due.loc[0, "mrr"], due.loc[0, "price_amount"]) == ("starter", 19, 19)
    now = fetch(db, "select now()")[0][0]
    assert abs(due.loc[0, "status_changed_at"] - (now - timedelta(days=5))) < timedelta(minutes=1)


@pytest.mark.parametrize(
    "read",
    [
        lambda db, actor: analytics.overview(db, actor),
        lambda db, actor: analytics.plan_mix(db, actor),
        lambda db, actor: analytics.organizations(db, actor),
        lambda db, actor: analytics.top_organizations(db, actor),
        lambda db, actor: analytics.past_due_organizations(db, actor),
    ],
    ids=["overview", "plan_mix", "organizations", "top_organizations", "past_due"],
)
def test_only_system_admins_read_the_overview(db, ds, read):
    for actor in (ds.alpha_admin, ds.alpha_member, ds.beta_admin):
        with pytest.raises(PermissionDenied, match="not a system admin"):
            read(db, actor)
    with pytest.raises(PermissionDenied):
        read(db, "")
    with pytest.raises(NotFound):
        read(db, "nobody")


def test_audit_log_scope_and_filters(db, ds):
    everything = audit.entries(db, ds.sysadmin)
    assert everything.total == len(everything.entries) > 0
    assert set(everything.entries.org_id.dropna()) >= {"alpha", "beta", "gamma"}
    # newest first
    assert list(everything.entries.created_at) == sorted(everything.entries.created_at, reverse=True)

    alpha = audit.entries(db, ds.alpha_admin, "alpha")
    assert set(alpha.entries.org_id) == {"alpha"}
    # created, admin and member added, subscribed, credits bought, two allocations opened
    assert sorted(alpha.entries.action) == sorted([
        "organization.created", "member.added", "member.added", "subscription.created", "order.created",
        "order.paid", "credits.purchased", "allocation.created", "allocation.created"])
    assert audit.entries(db, ds.sysadmin, "alpha").total == alpha.total

    by_actor = audit.entries(db, ds.sysadmin, "alpha", by_actor=ds.alpha_admin)
    assert set(by_actor.entries.actor_id) == {ds.alpha_admin}
    assert by_actor.total == 3  # ordered credits, allocated twice (the member was added by a trusted caller)
    assert by_actor.entries.actor_name.iloc[0] == "Alice <i>Admin</i>"
    changes = audit.entries(db, ds.sysadmin, actions=["subscription.status_changed"])
    assert sorted(changes.entries.org_id) == ["delta", "epsilon", "eta", "zeta"]
    assert set(changes.entries.actor_name) == {"Root Admin"}
    purchases = audit.entries(db, ds.sysadmin, by_actor=ds.beta_admin, actions=["order.created"])
    assert sorted(purchases.entries.org_id) == ["beta"]
    recorded = audit.entries(db, ds.sysadmin, by_actor=ds.sysadmin, actions=["credits.purchased", "credits.granted"])
    assert sorted(recorded.entries.org_id) == ["alpha", "beta", "gamma"]
    assert '"credits": 2000' in purchases.entries.set_index("org_id").loc["beta", "details"]

    today = fetch(db, "select (now() at time zone 'utc')::date")[0][0]
    assert audit.entries(db, ds.sysadmin, since=today, until=today).total == everything.total
    assert audit.entries(db, ds.sysadmin, until=today - timedelta(days=1)).total == 0
    assert audit.entries(db, ds.sysadmin, since=today + timedelta(days=1)).total == 0
    with pytest.raises(InvalidInput, match="start date"):
        audit.entries(db, ds.sysadmin, since=today, until=today - timedelta(days=1))
    limited = audit.entries(db, ds.sysadmin, limit=3)
    assert len(limited.entries) == 3 and limited.total == everything.total

    choices = audit.choices(db, ds.alpha_admin, "alpha")
    assert choices.actions == sorted(set(alpha.entries.action))
    assert set(choices.actors.actor_id) == {ds.sysadmin, ds.alpha_admin}


def test_audit_log_refuses_other_organizations_and_members(db, ds):
    with pytest.raises(PermissionDenied, match="not a system admin"):
        audit.entries(db, ds.alpha_admin)
    with pytest.raises(PermissionDenied, match="not an admin of organization 'beta'"):
        audit.entries(db, ds.alpha_admin, "beta")
    with pytest.raises(PermissionDenied):
        audit.entries(db, ds.alpha_member, "alpha")
    with pytest.raises(PermissionDenied):
        audit.choices(db, ds.alpha_member, "alpha")
    with pytest.raises(PermissionDenied):
        audit.choices(db, ds.beta_admin)
    with pytest.raises(PermissionDenied):
        audit.entries(db, "", "alpha")


# ====================================================================== month by month


@pytest.fixture
def months(db):
    return data.build_months(db)


def _by_offset(table: pd.DataFrame, columns: list[str]) -> dict[int, tuple]:
    """Rows keyed by how many months before the current one they are."""
    current = data.month_start(0).date()
    keyed = {}
    for row in table.itertuples():
        offset = (current.year - row.month.year) * 12 + current.month - row.month.month
        keyed[offset] = tuple(getattr(row, c) for c in columns)
    return keyed


MRR_FIGURES = [
    "mrr_start", "new_mrr", "reactivation_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr", "net_new_mrr",
    "mrr_end", "paying_orgs_start", "paying_orgs_end", "new_orgs", "reactivated_orgs", "churned_orgs",
    "logo_churn_percent",
]
CREDIT_FIGURES = ["credits_sold", "revenue", "credits_granted", "credits_consumed", "requests", "credits_expired"]


def test_mrr_movements_and_logo_churn_match_the_hand_computed_months(db, db_url, months):
    table = analytics.mrr_months(db, months.sysadmin)
    assert len(table) == 12  # the default: the 12 months up to the current one
    assert list(table.month) == [data.month_start(k).date() for k in range(11, -1, -1)]
    assert list(table.month_start) == [data.month_start(k) for k in range(11, -1, -1)]
    got = _by_offset(table, MRR_FIGURES)
    for offset, expected in data.MRR_MONTHS.items():
        assert got[offset] == expected, f"{offset} months ago"
    assert list(table.arr_end) == [12 * data.MRR_MONTHS[k][7] for k in range(11, -1, -1)]
    verify = billing_verify(db_url)  # the stand-in expiry left the pool's total and its history in step
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_mrr_months_add_up(db, months):
    table = analytics.mrr_months(db, months.sysadmin)
    for row in table.itertuples():
        assert row.net_new_mrr == (row.new_mrr + row.reactivation_mrr + row.expansion_mrr - row.contraction_mrr
                                   - row.churned_mrr)
        assert row.mrr_end == row.mrr_start + row.net_new_mrr
    assert list(table.mrr_start[1:]) == list(table.mrr_end[:-1])
    assert list(table.paying_orgs_start[1:]) == list(table.paying_orgs_end[:-1])


def test_mrr_months_agree_with_the_headline_mrr(db):
    """The first dataset goes through the subscription functions only: history and subscriptions agree."""
    ds = data.build(db)
    table = analytics.mrr_months(db, ds.sysadmin)
    assert table.mrr_end.iloc[-1] == data.MRR_NOW == analytics.overview(db, ds.sysadmin).mrr.value
    assert sum(table.new_mrr) + sum(table.reactivation_mrr) - sum(table.churned_mrr) + table.mrr_start.iloc[0] \
        == data.MRR_NOW


def test_a_plan_change_moves_the_card_the_movements_and_the_plan_mix_alike(db):
    """Issue 9: after a +$49 upgrade the card's "30 days ago" priced the organization at its new plan (the
    change stayed where it was) while the movements said +$49. Every past figure uses the plan then."""
    organizations.create_user(db, None, "root", "root@example.com", is_system_admin=True)
    for org_id in ("upgrader", "steady"):
        organizations.create_organization(db, "root", org_id, org_id.title())
    now = fetch(db, "select now()")[0][0]
    subscriptions.create_subscription(db, "root", "upgrader", "platform", started_at=now - timedelta(days=60))
    subscriptions.create_subscription(db, "root", "steady", "byok", started_at=now - timedelta(days=60))
    before = analytics.overview(db, "root")
    assert (before.mrr.value, before.mrr.previous) == (80, 80)

    subscriptions.change_plan(db, "root", "upgrader", "hybrid")  # $50 -> $99, now
    after = analytics.overview(db, "root")
    assert after.mrr.value == 129
    assert after.mrr.previous == 80  # the old code said 129: today's plan priced 30 days ago
    assert after.mrr.change == 49 and after.arr.change == 12 * 49
    assert after.active_subscriptions.previous == after.active_subscriptions.value == 2

    # the movements: the current month's end is the card's MRR, with the upgrade as expansion; the same
    # table 30 days ago ends at the card's "30 days ago"
    months = analytics.mrr_months(db, "root", months=3)
    assert months.mrr_end.iloc[-1] == after.mrr.value
    assert months.expansion_mrr.iloc[-1] == 49
    then = analytics.mrr_months(db, "root", months=3, as_of=now - timedelta(days=30))
    assert then.mrr_end.iloc[-1] == after.mrr.previous

    # the plan mix now and 30 days ago adds up to the card's figures, each on the plan in force then
    mix = analytics.plan_mix(db, "root").set_index("plan").mrr.to_dict()
    assert mix == {"hybrid": 99, "byok": 30} and sum(mix.values()) == after.mrr.value
    mix_then = analytics.plan_mix(db, "root", as_of=now - timedelta(days=30)).set_index("plan").mrr.to_dict()
    assert mix_then == {"platform": 50, "byok": 30} and sum(mix_then.values()) == after.mrr.previous
    then_rows = analytics.organizations(db, "root", as_of=now - timedelta(days=30)).set_index("org_id")
    assert then_rows.loc["upgrader", "mrr"] == 50


def test_mrr_months_for_a_chosen_range_and_moment(db, months):
    first, last = data.month_start(7).date(), data.month_start(5).date().replace(day=17)  # any day of the month
    table = analytics.mrr_months(db, months.sysadmin, first_month=first, last_month=last)
    assert list(table.month) == [data.month_start(k).date() for k in (7, 6, 5)]
    assert _by_offset(table, MRR_FIGURES) == {k: data.MRR_MONTHS[k] for k in (7, 6, 5)}

    # as of M-1 day 20: heath's cancel (day 25) has not happened; the month runs to that moment
    as_of = data.month_start(1).replace(day=20)
    table = analytics.mrr_months(db, months.sysadmin, as_of=as_of)
    assert table.month.iloc[-1] == data.month_start(1).date() and len(table) == 12
    last_month = table.iloc[-1]
    assert (last_month.new_mrr, last_month.churned_mrr, last_month.mrr_end) == (50, 19, 336 + 50 - 19)
    assert last_month.churned_orgs == 1 and last_month.paying_orgs_end == 6

    # a month with nothing in it, long ago: zeros, no churn rate
    early = analytics.mrr_months(db, months.sysadmin, first_month=data.month_start(13).date(),
                                 last_month=data.month_start(12).date())
    assert list(early.mrr_end) == [0, 0] and list(early.logo_churn_percent) == [None, None]


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"first_month": "2024-01-01"}, "must be a date"),
        ({"last_month": 202401}, "must be a date"),
        ({"first_month": data.month_start(2).date(), "last_month": data.month_start(4).date()}, "is after the last"),
        ({"last_month": data.month_start(-1).date()}, "months to report end with the current one"),
        ({"first_month": data.month_start(-2).date()}, "months to report end with the current one"),
        ({"first_month": data.month_start(120).date()}, "At most 120 months"),
    ],
)
def test_month_ranges_that_make_no_sense_are_refused(db, months, kwargs, words):
    with pytest.raises(InvalidInput, match=words):
        analytics.mrr_months(db, months.sysadmin, **kwargs)
    with pytest.raises(InvalidInput, match=words):
        analytics.credit_months(db, months.sysadmin, **kwargs)


def test_credits_sold_granted_consumed_and_expired_per_month(db, months):
    table = analytics.credit_months(db, months.sysadmin)
    assert len(table) == 12
    got = _by_offset(table, CREDIT_FIGURES)
    for offset in range(12):
        assert got[offset] == data.CREDIT_MONTHS.get(offset, (0, 0, 0, 0, 0, 0)), f"{offset} months ago"

    anvil = _by_offset(analytics.credit_months(db, months.anvil_admin, "anvil"), CREDIT_FIGURES)
    for offset in range(12):
        assert anvil[offset] == data.ANVIL_CREDIT_MONTHS.get(offset, (0, 0, 0, 0, 0, 0)), f"{offset} months ago"
    # what the pool holds is what came in minus what left (consumption of open allocations stays in the total)
    assert sum(v[0] + v[2] - v[5] for v in data.ANVIL_CREDIT_MONTHS.values()) == 15_500 == fetch(
        db, "select total_credits from credit_pools where org_id = 'anvil'")[0][0]

    # as of M-2 day 13: the grant (day 12) is in, the usage (day 15) not yet
    as_of = data.month_start(2).replace(day=13)
    early = analytics.credit_months(db, months.sysadmin, first_month=data.month_start(3).date(), as_of=as_of)
    assert _by_offset(early, CREDIT_FIGURES) == {3: (10_000, 10, 0, 0, 0, 0), 2: (0, 0, 1_100, 0, 0, 0)}


def test_credit_months_of_one_organization_for_its_admins_only(db, months):
    assert analytics.credit_months(db, months.sysadmin, "jade").credits_granted.sum() == 100
    assert analytics.credit_months(db, months.jade_admin, "jade").credits_granted.sum() == 100
    with pytest.raises(PermissionDenied, match="not an admin of organization 'anvil'"):
        analytics.credit_months(db, months.ember_admin, "anvil")
    with pytest.raises(PermissionDenied, match="not an admin of organization 'anvil'"):
        analytics.credit_months(db, months.anvil_member, "anvil")
    with pytest.raises(PermissionDenied, match="not a system admin"):
        analytics.credit_months(db, months.anvil_admin)
    with pytest.raises(NotFound, match="'nowhere' does not exist"):
        analytics.credit_months(db, months.sysadmin, "nowhere")
    with pytest.raises(PermissionDenied, match="not a system admin"):
        analytics.mrr_months(db, months.anvil_admin)


def test_burn_rate_and_runway_in_the_organizations_table(db, months):
    table = analytics.organizations(db, months.sysadmin, sort_by="runway_days")
    assert list(table.org_id[:2]) == ["ember", "anvil"]  # shortest runway first, then those using nothing
    rows = table.set_index("org_id")
    for org_id, (remaining, used, burn, runway) in data.RUNWAY.items():
        row = rows.loc[org_id]
        assert (row.remaining_credits, row.credits_used_30d, row.burn_per_day) == (remaining, used, burn), org_id
        assert row.runway_days == runway if runway is not None else pd.isna(row.runway_days), org_id
    assert rows.loc["iris", "remaining_credits"] == 0 and pd.isna(rows.loc["iris", "runway_days"])

    low = analytics.running_low(db, months.sysadmin)
    assert list(low.org_id) == ["ember"]
    assert (low.remaining_credits[0], low.burn_per_day[0], low.runway_days[0]) == (500, 50, 10)
    assert list(analytics.running_low(db, months.sysadmin, days=695).org_id) == ["ember", "anvil"]
    assert list(analytics.running_low(db, months.sysadmin, days=9).org_id) == []
    with pytest.raises(InvalidInput, match="1 to 3650 days"):
        analytics.running_low(db, months.sysadmin, days=0)

    # 31 days on, nothing was used in the last 30: no burn, no runway
    now = fetch(db, "select now()")[0][0]
    later = analytics.organizations(db, months.sysadmin, as_of=now + timedelta(days=31)).set_index("org_id")
    assert later.loc["ember", "burn_per_day"] == 0 and pd.isna(later.loc["ember", "runway_days"])


def test_an_org_admin_reads_their_own_burn_rate_and_runway(db, months):
    now = fetch(db, "select now()")[0][0]
    ember = usage.runway(db, months.ember_admin, "ember", as_of=now)
    assert (ember.org_id, ember.remaining_credits, ember.credits_used_30d, ember.burn_per_day,
            ember.runway_days) == ("ember", 500, 1_500, 50, 10)
    assert ember.runs_out_at == now + timedelta(days=10)
    anvil = usage.runway(db, months.sysadmin, "anvil")
    assert (anvil.burn_per_day, anvil.runway_days) == (20, Decimal("695.0"))
    jade = usage.runway(db, months.jade_admin, "jade")
    assert (jade.remaining_credits, jade.burn_per_day, jade.runway_days, jade.runs_out_at) == (100, 0, None, None)

    # a runway that does not come out even: 1,007 credits left at 50 a day is 20.14 days
    data.buy(db, months.ember_admin, "ember", 507)
    ember = usage.runway(db, months.ember_admin, "ember", as_of=now)
    assert ember.runway_days == Decimal("20.1")
    assert ember.runs_out_at == now + timedelta(days=20, hours=3, minutes=21, seconds=36)  # 0.14 days unrounded

    with pytest.raises(PermissionDenied, match="not an admin of organization 'ember'"):
        usage.runway(db, months.anvil_admin, "ember")
    with pytest.raises(PermissionDenied):
        usage.runway(db, months.anvil_member, "anvil")
    with pytest.raises(NotFound):
        usage.runway(db, months.sysadmin, "nowhere")
    with pytest.raises(InvalidInput, match="timezone"):
        usage.runway(db, months.sysadmin, "anvil", as_of=now.replace(tzinfo=None))


def test_months_counted_back_and_chart_rows(db, months):
    table = analytics.mrr_months(db, months.sysadmin, months=3)
    assert list(table.month) == [data.month_start(k).date() for k in (2, 1, 0)]
    table = analytics.mrr_months(db, months.sysadmin, months=2, last_month=data.month_start(5).date())
    assert list(table.month) == [data.month_start(k).date() for k in (6, 5)]
    for bad in (0, 121):
        with pytest.raises(InvalidInput, match="1 to 120 months"):
            analytics.credit_months(db, months.sysadmin, months=bad)
    with pytest.raises(InvalidInput, match="whole number"):
        analytics.mrr_months(db, months.sysadmin, months="12")

    bars = analytics.movement_bars(analytics.mrr_months(db, months.sysadmin, months=2))
    label = f"{data.month_start(1):%Y-%m}"
    assert bars[bars.month == label].set_index("movement").mrr.to_dict() == {
        "New": 50, "Reactivation": 0, "Expansion": 0, "Contraction": 0, "Churned": -69}
    credit = analytics.credit_bars(analytics.credit_months(db, months.sysadmin, months=2))
    assert credit[credit.month == label].set_index("kind").credits.to_dict() == {
        "Sold": 7_000, "Granted": 0, "Consumed": 0, "Expired": 500}
