"""The plan catalogue: versions with effective dates, new plans, renaming, retiring; only system admins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing_core import organizations, plans, subscriptions
from billing_core.database import fetch
from billing_core.errors import AlreadyExists, InvalidAmount, InvalidInput, PermissionDenied, RuleViolation
from tests.ledger_state import refused

ROOT = "root"


@pytest.fixture
def ready(db, org):
    organizations.create_user(db, None, ROOT, "root@example.com", "Root", is_system_admin=True)
    return org


def test_the_documented_plans_are_version_1(db):
    entries = plans.catalogue(db)
    assert [(e.code, e.version, e.monthly_price, e.included_credits, e.trial_days) for e in entries] == [
        ("starter", 1, 19, 5000, 14), ("byok", 1, 30, 0, None), ("platform", 1, 50, 25000, 14),
        ("hybrid", 1, 99, 50000, None), ("enterprise", 1, 99, 100000, None),
    ]
    assert all(e.next_version is None and not e.retired for e in entries)
    assert [v.version for v in plans.versions(db, "platform")] == [1]


def test_a_price_change_is_a_new_version_and_never_reprices_what_was_paid(db, ready):
    subscriptions.create_subscription(db, ROOT, ready.id, "platform", trial=False)
    paid = fetch(db, "select amount, metadata from org_billing_history order by id")
    assert plans.edit_plan(db, ROOT, "platform", monthly_price="55.5") == 2
    [v1, v2] = plans.versions(db, "platform")
    assert (v1.monthly_price, v2.monthly_price, v2.pricing_mode, v2.included_credits, v2.trial_days) == (
        50, Decimal("55.5"), "markup", 25000, 14)
    assert v2.created_by == ROOT and v2.effective_at > v1.effective_at
    entry = {e.code: e for e in plans.catalogue(db)}["platform"]
    assert (entry.version, entry.monthly_price) == (2, Decimal("55.5"))
    # plans' own columns follow the version in force, for older readers
    assert fetch(db, "select monthly_price from plans where code = 'platform'")[0][0] == Decimal("55.5")
    assert {p.code: p.monthly_price for p in subscriptions.plans(db)}["platform"] == Decimal("55.5")
    # the subscription keeps paying version 1 until its next period start; its history is untouched
    row = fetch(db, "select plan_version, price_amount from organization_subscriptions")[0]
    assert tuple(row) == (1, 50)
    assert fetch(db, "select amount, metadata from org_billing_history order by id") == paid
    # a new subscriber pays version 2
    subscriptions.cancel(db, ROOT, ready.id, at_period_end=False)
    subscriptions.create_subscription(db, ROOT, ready.id, "platform")
    row = fetch(db, "select plan_version, price_amount from organization_subscriptions where status = 'active'")[0]
    assert tuple(row) == (2, Decimal("55.5"))
    actions = [r[0] for r in fetch(db, "select action from audit_log where target_type = 'plan'")]
    assert actions == ["plan.version_created"]


def test_a_future_version_shows_as_next_and_takes_effect_later(db, ready):
    later = datetime.now(UTC) + timedelta(days=10)
    plans.edit_plan(db, ROOT, "byok", monthly_price=35, trial_days=7, effective_at=later)
    entry = {e.code: e for e in plans.catalogue(db)}["byok"]
    assert (entry.version, entry.monthly_price, entry.next_version) == (1, 30, 2)
    assert abs(entry.next_effective_at - later) < timedelta(microseconds=1)
    future = {e.code: e for e in plans.catalogue(db, later + timedelta(seconds=1))}["byok"]
    assert (future.version, future.monthly_price, future.trial_days) == (2, 35, 7)
    # never before the latest version, never in the past
    refused(db, InvalidInput, "must be after version 2",
            lambda: plans.edit_plan(db, ROOT, "byok", monthly_price=40, effective_at=later - timedelta(days=1)))
    refused(db, InvalidInput, "in the past",
            lambda: plans.edit_plan(db, ROOT, "byok", monthly_price=40,
                                    effective_at=datetime.now(UTC) - timedelta(days=1)))
    refused(db, RuleViolation, "nothing to change",
            lambda: plans.edit_plan(db, ROOT, "byok", monthly_price=35,
                                    effective_at=later + timedelta(days=1)))
    # trial_days 0 removes the trial
    plans.edit_plan(db, ROOT, "byok", trial_days=0, effective_at=later + timedelta(days=1))
    assert plans.versions(db, "byok")[-1].trial_days is None


def test_create_rename_and_retire_a_plan(db, ready):
    assert plans.create_plan(db, ROOT, "team", "Team <b>&</b> 'Co'", "29.99", "mixed",
                             included_credits="1000.5", trial_days=30) == 1
    entry = {e.code: e for e in plans.catalogue(db)}["team"]
    assert (entry.name, entry.monthly_price, entry.included_credits, entry.trial_days) == (
        "Team <b>&</b> 'Co'", Decimal("29.99"), Decimal("1000.5"), 30)
    subscriptions.create_subscription(db, "admin-1", ready.id, "team")
    plans.rename_plan(db, ROOT, "team", "Teams")
    plans.retire_plan(db, ROOT, "team")
    assert {e.code: e for e in plans.catalogue(db)}["team"].retired
    assert "team" not in {p.code for p in subscriptions.plans(db)}
    # the subscription keeps it; nobody moves to it; the catalogue cannot change it
    assert fetch(db, "select plan from organization_subscriptions")[0][0] == "team"
    subscriptions.change_plan(db, ROOT, ready.id, "byok")
    refused(db, RuleViolation, "retired", lambda: subscriptions.change_plan(db, ROOT, ready.id, "team"))
    refused(db, RuleViolation, "retired", lambda: subscriptions.schedule_change(db, ROOT, ready.id, "team"))
    refused(db, RuleViolation, "retired", lambda: plans.edit_plan(db, ROOT, "team", monthly_price=1))
    refused(db, RuleViolation, "retired already", lambda: plans.retire_plan(db, ROOT, "team"))
    actions = [r[0] for r in fetch(db, "select action from audit_log where target_type = 'plan' order by id")]
    assert actions == ["plan.created", "plan.renamed", "plan.retired"]


@pytest.mark.parametrize("actor", ["admin-1", "user-1"])
def test_only_system_admins_edit_the_catalogue(db, ready, actor):
    refused(db, PermissionDenied, "not a system admin", lambda: plans.edit_plan(db, actor, "byok", monthly_price=1))
    refused(db, PermissionDenied, "not a system admin",
            lambda: plans.create_plan(db, actor, "x", "X", 1, "markup"))
    refused(db, PermissionDenied, "not a system admin", lambda: plans.rename_plan(db, actor, "byok", "B"))
    refused(db, PermissionDenied, "not a system admin", lambda: plans.retire_plan(db, actor, "byok"))


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"code": "Bad Code"}, InvalidInput, "plan code"),
        ({"code": "byok"}, AlreadyExists, "already taken"),
        ({"name": "  "}, InvalidInput, "plan name is missing"),
        ({"monthly_price": -1}, InvalidAmount, "cannot be negative"),
        ({"monthly_price": "1.00001"}, InvalidAmount, "4 decimal places"),
        ({"monthly_price": "abc"}, InvalidAmount, "not a number"),
        ({"included_credits": "-5"}, InvalidAmount, "greater than 0"),
        ({"included_credits": "0.0000001"}, InvalidAmount, "6 decimal places"),
        ({"pricing_mode": "free"}, InvalidInput, "pricing mode"),
        ({"trial_days": 400}, InvalidInput, "1 to 365 days"),
    ],
)
def test_bad_plans_are_refused(db, ready, kwargs, error, words):
    args = {"code": "new_plan", "name": "New", "monthly_price": 10, "pricing_mode": "markup"}
    extra = {k: kwargs.pop(k) for k in ("included_credits", "trial_days") if k in kwargs}
    args.update(kwargs)
    refused(db, error, words, lambda: plans.create_plan(db, ROOT, **args, **extra))


def test_editing_an_unknown_plan_is_refused(db, ready):
    refused(db, InvalidInput, "unknown plan", lambda: plans.edit_plan(db, ROOT, "gold", monthly_price=1))
    assert plans.versions(db, "gold") == []
