"""The system overview's figures, checked against numbers computed by hand.

The dataset (tests/system_dataset.py) has subscriptions started, canceled and
past due at known days, and usage in both 30-day windows.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pandas as pd
import pytest

from billing_core import analytics, audit, organizations
from billing_core.database import fetch
from billing_core.errors import InvalidInput, NotFound, PermissionDenied
from tests import system_dataset as data


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
        "organization.created", "member.added", "member.added", "subscription.created", "credits.purchased",
        "allocation.created", "allocation.created"])
    assert audit.entries(db, ds.sysadmin, "alpha").total == alpha.total

    by_actor = audit.entries(db, ds.sysadmin, "alpha", by_actor=ds.alpha_admin)
    assert set(by_actor.entries.actor_id) == {ds.alpha_admin}
    assert by_actor.total == 4  # added the member, bought, allocated twice
    assert by_actor.entries.actor_name.iloc[0] == "Alice <i>Admin</i>"
    changes = audit.entries(db, ds.sysadmin, actions=["subscription.status_changed"])
    assert sorted(changes.entries.org_id) == ["delta", "epsilon", "eta", "zeta"]
    assert set(changes.entries.actor_name) == {"Root Admin"}
    purchases = audit.entries(db, ds.sysadmin, by_actor=ds.beta_admin, actions=["credits.purchased"])
    assert sorted(purchases.entries.org_id) == ["beta", "gamma"]
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
