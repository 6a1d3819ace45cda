"""Subscriptions: the plan catalogue, one live subscription per organization, status changes
with their history and audit rows, opening an organization atomically, role checks, bad input."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing_core import auth, charging, credits, database, ledger, organizations, reports, subscriptions
from billing_core.database import fetch
from billing_core.errors import AlreadyExists, InvalidInput, NotFound, PermissionDenied
from tests.ledger_state import refused, snapshot

ROOT = "root"
HASH = auth.hash_password("one-time secret")  # hashed once for the module: bcrypt is slow on purpose


@pytest.fixture
def ready(db, org):
    """test-org-001 (admin-1, user-1..3) without a subscription, a system admin 'root', a second org."""
    organizations.create_user(db, None, ROOT, "root@example.com", "Root", is_system_admin=True)
    organizations.create_organization(db, None, "other-org", "Other Org")
    return org


def history(db, org_id: str) -> list[tuple]:
    return [tuple(r) for r in fetch(
        db,
        "select event_type, credits, amount, metadata, created_by, created_at, recorded_at"
        " from org_billing_history where org_id = :org_id and event_type like 'subscription%' order by id",
        {"org_id": org_id},
    )]


def audit(db, org_id: str) -> list[tuple]:
    return [tuple(r) for r in fetch(
        db,
        "select action, actor_id, target_type, details from audit_log"
        " where org_id = :org_id and action like 'subscription.%' order by id",
        {"org_id": org_id},
    )]


def subscription_rows(db, org_id: str) -> list:
    return fetch(
        db,
        "select id, plan, status, price_amount, billing_cycle, created_at, canceled_at, current_period_start,"
        " current_period_end, created_by, status_changed_at, recorded_at"
        " from organization_subscriptions where org_id = :org_id order by created_at, recorded_at",
        {"org_id": org_id},
    )


# the documented catalogue, as the migrations seed it
DOCUMENTED_PLANS = [
    subscriptions.Plan("starter", "Starter", Decimal(19), "markup"),
    subscriptions.Plan("byok", "BYOK", Decimal(30), "passthrough"),
    subscriptions.Plan("platform", "Platform", Decimal(50), "markup"),
    subscriptions.Plan("hybrid", "Hybrid", Decimal(99), "mixed"),
    subscriptions.Plan("enterprise", "Enterprise", Decimal(99), "mixed"),
]


def db_now(db) -> datetime:
    return fetch(db, "select now()")[0][0]


# --------------------------------------------------------------------------- the catalogue


def test_plan_catalogue_is_the_documented_one(db):
    assert subscriptions.plans(db) == DOCUMENTED_PLANS
    prices = {p.code: p.monthly_price for p in subscriptions.plans(db)}
    assert prices == {"starter": 19, "byok": 30, "platform": 50, "hybrid": 99, "enterprise": 99}
    modes = {p.code: p.pricing_mode for p in subscriptions.plans(db)}
    assert (modes["platform"], modes["byok"], modes["hybrid"]) == ("markup", "passthrough", "mixed")


# --------------------------------------------------------------------------- create


def test_create_subscription_writes_row_history_and_audit(db, ready):
    sub_id = subscriptions.create_subscription(db, ROOT, ready.id, "platform", trial=False)
    [row] = subscription_rows(db, ready.id)
    assert row.id == sub_id
    assert (row.plan, row.status, row.price_amount, row.billing_cycle, row.created_by) == (
        "platform", "active", Decimal(50), "monthly", ROOT,
    )
    assert row.canceled_at is None
    assert row.current_period_start <= db_now(db) < row.current_period_end
    [event] = history(db, ready.id)
    assert event[:3] == ("subscription_created", 0, 0)
    assert event[3] == {
        "subscription_id": sub_id, "plan": "platform", "plan_version": 1, "billing_cycle": "monthly",
        "price_amount": 50, "monthly_amount": 50, "status": "active", "previous_status": None, "mrr_after": 50,
        "previous_plan": None, "previous_plan_version": None, "previous_price_amount": None, "previous_mrr": None,
    }
    assert event[4] == ROOT
    [entry] = audit(db, ready.id)
    assert entry[:3] == ("subscription.created", ROOT, "subscription")
    assert entry[3]["plan"] == "platform"
    assert ledger.verify(db) == []


def test_yearly_subscription_costs_twelve_months(db, ready):
    subscriptions.create_subscription(db, ROOT, ready.id, "hybrid", billing_cycle="yearly")
    [row] = subscription_rows(db, ready.id)
    assert (row.price_amount, row.billing_cycle) == (Decimal(1188), "yearly")
    # the first period runs to the twelfth calendar boundary after the one it starts in
    assert row.current_period_start == row.created_at
    assert timedelta(days=364) < row.current_period_end - row.current_period_start <= timedelta(days=366)
    [event] = history(db, ready.id)
    assert (event[3]["monthly_amount"], event[3]["mrr_after"]) == (99, 99)


def test_a_trusted_job_may_subscribe_without_an_actor(db, ready):
    subscriptions.create_subscription(db, None, ready.id, "starter")
    assert subscription_rows(db, ready.id)[0].created_by is None


def test_one_live_subscription_per_organization(db, ready):
    subscriptions.create_subscription(db, ROOT, ready.id, "starter")
    message = refused(db, AlreadyExists, "already has a live subscription",
                      lambda: subscriptions.create_subscription(db, ROOT, ready.id, "platform"))
    assert "starter" in message and "cancel it" in message
    subscriptions.set_subscription_status(db, ROOT, ready.id, "past_due")
    refused(db, AlreadyExists, "past due", lambda: subscriptions.create_subscription(db, ROOT, ready.id, "platform"))
    # canceled: the organization may subscribe again, and the old subscription stays as history
    subscriptions.set_subscription_status(db, ROOT, ready.id, "canceled")
    subscriptions.create_subscription(db, ROOT, ready.id, "platform")
    assert [(r.plan, r.status) for r in subscription_rows(db, ready.id)] == [
        ("starter", "canceled"), ("platform", "active"),
    ]
    # another organization is not affected
    subscriptions.create_subscription(db, ROOT, "other-org", "platform")


def test_concurrent_subscriptions_of_one_org_one_wins_the_other_is_told_why(db, db_url, ready):
    barrier = threading.Barrier(4, timeout=30)
    outcomes: list[object] = []
    lock = threading.Lock()
    engine = database.get_engine(db_url)

    def work(plan: str) -> None:
        barrier.wait()
        try:
            result: object = subscriptions.create_subscription(engine, ROOT, ready.id, plan)
        except Exception as exc:  # noqa: BLE001 -- the outcome itself is what is checked
            result = exc
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=work, args=(p,)) for p in ("starter", "platform", "byok", "hybrid")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(outcomes) == 4
    won = [o for o in outcomes if isinstance(o, str)]
    lost = [o for o in outcomes if not isinstance(o, str)]
    assert len(won) == 1
    assert all(isinstance(o, AlreadyExists) for o in lost), lost
    assert len(subscription_rows(db, ready.id)) == 1
    assert len(history(db, ready.id)) == 1


# --------------------------------------------------------------------------- status changes


def test_status_changes_leave_history_and_audit(db, ready):
    sub_id = subscriptions.create_subscription(db, ROOT, ready.id, "platform", trial=False)
    subscriptions.set_subscription_status(db, ROOT, ready.id, "past_due")
    subscriptions.set_subscription_status(db, ROOT, ready.id, "active")
    subscriptions.set_subscription_status(db, ROOT, ready.id, "past_due")
    subscriptions.set_subscription_status(db, ROOT, ready.id, "canceled")
    events = history(db, ready.id)
    assert [(e[0], e[3]["previous_status"], e[3]["status"], e[3]["mrr_after"]) for e in events] == [
        ("subscription_created", None, "active", 50),
        ("subscription_past_due", "active", "past_due", 50),  # past due still counts in MRR
        ("subscription_activated", "past_due", "active", 50),
        ("subscription_past_due", "active", "past_due", 50),
        ("subscription_canceled", "past_due", "canceled", 0),
    ]
    assert all(e[3]["subscription_id"] == sub_id and e[4] == ROOT for e in events)
    assert [(a[0], a[3].get("from"), a[3].get("to")) for a in audit(db, ready.id)] == [
        ("subscription.created", None, None),
        ("subscription.status_changed", "active", "past_due"),
        ("subscription.status_changed", "past_due", "active"),
        ("subscription.status_changed", "active", "past_due"),
        ("subscription.status_changed", "past_due", "canceled"),
    ]
    [row] = subscription_rows(db, ready.id)
    assert row.status == "canceled"
    assert row.canceled_at == row.status_changed_at == events[-1][5]


def test_setting_the_current_status_again_changes_nothing(db, ready):
    subscriptions.create_subscription(db, ROOT, ready.id, "byok")
    before = snapshot(db)
    subscriptions.set_subscription_status(db, ROOT, ready.id, "active")  # a repeated webhook, say
    assert snapshot(db) == before


def test_status_change_needs_a_live_subscription(db, ready):
    refused(db, NotFound, "no live subscription",
            lambda: subscriptions.set_subscription_status(db, ROOT, ready.id, "canceled"))
    subscriptions.create_subscription(db, ROOT, ready.id, "byok")
    subscriptions.set_subscription_status(db, ROOT, ready.id, "canceled")
    refused(db, NotFound, "no live subscription",
            lambda: subscriptions.set_subscription_status(db, ROOT, ready.id, "active"))


@pytest.mark.parametrize("status", ["trialing", "paused", "ACTIVE", "", None, "active; drop table plans"])
def test_unknown_status_is_refused(db, ready, status):
    subscriptions.create_subscription(db, ROOT, ready.id, "byok")
    refused(db, InvalidInput, "must be 'active', 'past_due' or 'canceled'",
            lambda: subscriptions.set_subscription_status(db, ROOT, ready.id, status))


# --------------------------------------------------------------------------- entered after the fact


def test_backdated_subscription_and_status_changes(db, ready):
    now = db_now(db)
    started = now - timedelta(days=100)
    subscriptions.create_subscription(db, ROOT, ready.id, "platform", started_at=started)
    [row] = subscription_rows(db, ready.id)
    assert row.created_at == started == row.status_changed_at
    assert row.recorded_at >= now - timedelta(seconds=5)
    # its first period is the calendar period it started in (renewals bring it forward)
    assert row.current_period_start == started < row.current_period_end <= started + timedelta(days=31)
    subscriptions.set_subscription_status(db, ROOT, ready.id, "past_due", occurred_at=now - timedelta(days=20))
    # before the last change: refused
    refused(db, InvalidInput, "before the subscription's last change",
            lambda: subscriptions.set_subscription_status(db, ROOT, ready.id, "active",
                                                          occurred_at=now - timedelta(days=30)))
    subscriptions.set_subscription_status(db, ROOT, ready.id, "canceled", occurred_at=now - timedelta(days=10))
    events = history(db, ready.id)
    assert [e[5] for e in events] == [started, now - timedelta(days=20), now - timedelta(days=10)]
    assert all(e[6] >= now - timedelta(seconds=5) for e in events)  # recorded now
    assert audit(db, ready.id)[-1][3]["occurred_at"]
    # a new subscription cannot start before the previous one ended
    refused(db, InvalidInput, "before the end of the organization's previous subscription",
            lambda: subscriptions.create_subscription(db, ROOT, ready.id, "byok", started_at=now - timedelta(days=15)))
    subscriptions.create_subscription(db, ROOT, ready.id, "byok", started_at=now - timedelta(days=10))


@pytest.mark.parametrize(
    ("offset", "words"),
    [(timedelta(days=1), "in the future"), (timedelta(minutes=5), "in the future"),
     (-timedelta(days=401), "more than 400 days ago")],
)
def test_start_in_the_future_or_too_old_is_refused(db, ready, offset, words):
    at = datetime.now(UTC) + offset
    refused(db, InvalidInput, words,
            lambda: subscriptions.create_subscription(db, ROOT, ready.id, "platform", started_at=at))
    subscriptions.create_subscription(db, ROOT, ready.id, "platform")
    refused(db, InvalidInput, words,
            lambda: subscriptions.set_subscription_status(db, ROOT, ready.id, "past_due", occurred_at=at))


def test_times_without_timezone_are_refused(db, ready):
    naive = datetime.now() - timedelta(days=1)  # no timezone: the point of the test
    refused(db, InvalidInput, "no timezone",
            lambda: subscriptions.create_subscription(db, ROOT, ready.id, "platform", started_at=naive))
    refused(db, InvalidInput, "date and time",
            lambda: subscriptions.create_subscription(db, ROOT, ready.id, "platform", started_at="yesterday"))


# --------------------------------------------------------------------------- roles and bad input


@pytest.mark.parametrize("actor", ["admin-1", "user-1"])
def test_only_system_admins_set_status_or_open_organizations(db, ready, actor):
    subscriptions.create_subscription(db, ROOT, ready.id, "platform")
    refused(db, PermissionDenied, "not a system admin",
            lambda: subscriptions.set_subscription_status(db, actor, ready.id, "canceled"))
    refused(db, PermissionDenied, "not a system admin",
            lambda: subscriptions.open_organization(db, actor, "new-org", "New", "starter", "new-admin",
                                                    "new-admin@example.com", "New Admin", HASH))


def test_unknown_actor_and_unknown_organization(db, ready):
    refused(db, NotFound, "does not exist", lambda: subscriptions.create_subscription(db, "ghost", ready.id, "platform"))
    refused(db, NotFound, "does not exist", lambda: subscriptions.create_subscription(db, ROOT, "no-such-org", "platform"))
    refused(db, NotFound, "does not exist",
            lambda: subscriptions.set_subscription_status(db, ROOT, "no-such-org", "canceled"))


@pytest.mark.parametrize("plan", ["gold", "", None, "Platform", "platform'--"])
def test_unknown_plan_is_refused_and_the_known_ones_named(db, ready, plan):
    message = refused(db, InvalidInput, "unknown plan",
                      lambda: subscriptions.create_subscription(db, ROOT, ready.id, plan))
    assert "starter, byok, platform, hybrid, enterprise" in message


@pytest.mark.parametrize("cycle", ["weekly", "", None, "Monthly"])
def test_unknown_billing_cycle_is_refused(db, ready, cycle):
    refused(db, InvalidInput, "billing cycle",
            lambda: subscriptions.create_subscription(db, ROOT, ready.id, "platform", billing_cycle=cycle))


# --------------------------------------------------------------------------- open an organization


def test_open_organization_creates_everything_at_once(db, ready):
    name = "O'Brien & \"Partners\" <b>Ltd</b> <script>alert(1)</script>"
    subscriptions.open_organization(db, ROOT, "obrien", name, "hybrid", "niamh", "Niamh@OBrien.example",
                                    "Niamh O'Brien", HASH, billing_cycle="yearly")
    [org] = fetch(db, "select name, status from organizations where id = 'obrien'")
    assert tuple(org) == (name, "active")
    assert reports.pool(db, ROOT, "obrien").total_credits == 0
    user = organizations.get_user(db, "niamh")
    assert (user.email, user.display_name, user.is_system_admin) == ("niamh@obrien.example", "Niamh O'Brien", False)
    [hashed] = fetch(db, "select password_hash from users where id = 'niamh'")[0]
    assert auth.password_matches("one-time secret", hashed)
    assert auth.user_roles(db, "niamh").role_in("obrien") == "admin"
    assert charging.charging_org(db, "niamh") == "obrien"  # the organization its calls are charged to
    [row] = subscription_rows(db, "obrien")
    assert (row.plan, row.status, row.price_amount, row.billing_cycle) == ("hybrid", "active", 1188, "yearly")
    actions = [r[0] for r in fetch(db, "select action from audit_log where actor_id = :a order by id", {"a": ROOT})]
    assert actions[-4:] == ["organization.created", "user.created", "member.added", "subscription.created"]
    # the new admin can run the organization at once
    assert credits.add_credits(db, None, "obrien", 1000, 1) == 1000
    assert ledger.verify(db) == []


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        ({"admin_email": "ADMIN-1@example.com"}, AlreadyExists, "already used"),  # taken, in another case
        ({"admin_user_id": "user-1"}, AlreadyExists, "already taken"),
        ({"org_id": "other-org"}, AlreadyExists, "already taken"),
        ({"plan": "gold"}, InvalidInput, "unknown plan"),
        ({"admin_password_hash": "one-time secret"}, InvalidInput, "bcrypt hash"),
        ({"admin_password_hash": None}, InvalidInput, "bcrypt hash"),
        ({"admin_email": "not an email"}, InvalidInput, "not an email address"),
        ({"name": "   "}, InvalidInput, "organization name is missing"),
        ({"org_id": "has space"}, InvalidInput, "without spaces"),
        ({"started_at": datetime.now(UTC) + timedelta(days=2)}, InvalidInput, "in the future"),
    ],
)
def test_open_organization_is_all_or_nothing(db, ready, change, error, words):
    args = {
        "org_id": "fresh-org", "name": "Fresh Org", "plan": "starter", "admin_user_id": "fresh-admin",
        "admin_email": "fresh-admin@example.com", "admin_name": "Fresh Admin", "admin_password_hash": HASH,
    }
    args.update(change)
    started_at = args.pop("started_at", None)
    refused(db, error, words,
            lambda: subscriptions.open_organization(db, ROOT, **args, started_at=started_at))
    assert fetch(db, "select count(*) from organizations where id = 'fresh-org'")[0][0] == 0
    assert fetch(db, "select count(*) from users where id = 'fresh-admin'")[0][0] == 0
