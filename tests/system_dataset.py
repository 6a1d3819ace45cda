"""Small, hand-computable datasets for the system overview and the audit log.

`build` (below) serves the headline figures and tables; `build_months` (at
the end) the month-by-month analytics.

Everything goes through the public functions; subscriptions, status changes
and usage in the past use their `started_at` / `occurred_at` parameters.

Subscriptions (days before now):
  alpha    platform    $50 / month   since 90        active
  beta     hybrid    $1188 / year    since 45        active       (99 / month)
  gamma    byok        $30 / month   since 10        active       (new: not paying 30 days ago)
  delta    starter     $19 / month   since 60        past due since 5 days ago
  epsilon  enterprise  $99 / month   since 90        canceled 10 days ago (paying 30 days ago)
  zeta     platform    $50 / month   since 20        canceled 15 days ago (never paying at either moment)
  eta      starter    $228 / year    since 100       canceled 40 days ago
           byok        $30 / month   since 40        active
  theta    (never subscribed)
  iota     platform   $600 / year    since 20        active       (50 / month)

Usage (credits):
  alpha: 10 x 50 company_enrichment now; 5 x 40 contact_lookup 40 days ago
  beta:  12 x 10 contact_lookup now
  gamma: 3 x 2 intelligence_cache_lookup 45 days ago
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.engine import Engine

from billing_core import credits, orders, organizations, subscriptions
from billing_core.database import fetch

SYSADMIN = "root-admin"


@dataclass(frozen=True)
class Dataset:
    """Ids of the dataset's people."""

    sysadmin: str = SYSADMIN
    alpha_admin: str = "alpha-admin"
    alpha_member: str = "alpha-member"
    beta_admin: str = "beta-admin"


# expected figures, computed by hand from the table above
MRR_NOW = Decimal(50 + 99 + 30 + 19 + 30 + 50)  # alpha, beta, gamma, delta, eta (byok), iota: 278
MRR_30D_AGO = Decimal(50 + 99 + 19 + 99 + 30)  # alpha, beta, delta, epsilon, eta (byok): 297
PAYING_NOW = 6
PAYING_30D_AGO = 5
CREDITS_30D = Decimal(10 * 50 + 12 * 10)
CREDITS_PREV_30D = Decimal(5 * 40 + 3 * 2)
REQUESTS_30D = 10 + 12

ORG_NAMES = {
    "alpha": "Alpha Corp",
    "beta": "Beta & Sons",
    "gamma": "Gamma \"quoted\" Ltd",
    "delta": "Delta <b>bold</b>",
    "epsilon": "Epsilon",
    "zeta": "Zeta",
    "eta": "Eta",
    "theta": "Theta",
    "iota": "<script>alert(1)</script>",
}


def _ago(days: int) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def _subscribe(db: Engine, org_id: str, plan: str, cycle: str, days_ago: int) -> None:
    subscriptions.create_subscription(db, SYSADMIN, org_id, plan, billing_cycle=cycle, started_at=_ago(days_ago))


def _set_status(db: Engine, org_id: str, status: str, days_ago: int) -> None:
    subscriptions.set_subscription_status(db, SYSADMIN, org_id, status, occurred_at=_ago(days_ago))


def _charge(
    db: Engine, org_id: str, user_id: str, times: int, credits_each: int, service_type: str, days_ago: int = 0
) -> None:
    for _ in range(times):
        credits.deduct(
            db, org_id, user_id, credits_each, service_type, service_type.replace("_", "-"),
            occurred_at=_ago(days_ago) if days_ago else None,
        )


def build(db: Engine) -> Dataset:
    """Create the dataset described in this module's docstring."""
    ds = Dataset()
    organizations.create_user(db, None, ds.sysadmin, "root@example.com", "Root Admin", is_system_admin=True)
    for org_id, name in ORG_NAMES.items():
        organizations.create_organization(db, ds.sysadmin, org_id, name)

    organizations.create_user(db, ds.sysadmin, ds.alpha_admin, "alpha-admin@example.com", "Alice <i>Admin</i>")
    organizations.create_user(db, ds.sysadmin, ds.alpha_member, "alpha-member@example.com", "Al Member")
    organizations.create_user(db, ds.sysadmin, ds.beta_admin, "beta-admin@example.com", "Bea Admin")
    organizations.add_member(db, ds.sysadmin, "alpha", ds.alpha_admin, "admin")
    organizations.add_member(db, ds.sysadmin, "alpha", ds.alpha_member, "member")
    organizations.add_member(db, ds.sysadmin, "beta", ds.beta_admin, "admin")
    organizations.add_member(db, ds.sysadmin, "gamma", ds.beta_admin, "admin")

    _subscribe(db, "alpha", "platform", "monthly", 90)
    _subscribe(db, "beta", "hybrid", "yearly", 45)
    _subscribe(db, "gamma", "byok", "monthly", 10)
    _subscribe(db, "delta", "starter", "monthly", 60)
    _set_status(db, "delta", "past_due", 5)
    _subscribe(db, "epsilon", "enterprise", "monthly", 90)
    _set_status(db, "epsilon", "canceled", 10)
    _subscribe(db, "zeta", "platform", "monthly", 20)
    _set_status(db, "zeta", "canceled", 15)
    _subscribe(db, "eta", "starter", "yearly", 100)
    _set_status(db, "eta", "canceled", 40)
    _subscribe(db, "eta", "byok", "monthly", 40)
    _subscribe(db, "iota", "platform", "yearly", 20)

    buy(db, ds.alpha_admin, "alpha", 10_000)
    credits.allocate(db, ds.alpha_admin, "alpha", ds.alpha_member, 1_000)
    credits.allocate(db, ds.alpha_admin, "alpha", ds.alpha_admin, 500)
    _charge(db, "alpha", ds.alpha_member, 5, 40, "contact_lookup", days_ago=40)
    _charge(db, "alpha", ds.alpha_member, 10, 50, "company_enrichment")

    buy(db, ds.beta_admin, "beta", 2_000)
    credits.allocate(db, ds.beta_admin, "beta", ds.beta_admin, 300)
    _charge(db, "beta", ds.beta_admin, 12, 10, "contact_lookup")

    orders.grant_credits(db, ds.sysadmin, "gamma", 100, "Trial credits")
    credits.allocate(db, ds.beta_admin, "gamma", ds.beta_admin, 50)
    _charge(db, "gamma", ds.beta_admin, 3, 2, "intelligence_cache_lookup", days_ago=45)
    return ds


# ====================================================================== month by month
# A second dataset, for the month-by-month analytics (MRR movements, logo
# churn, credits per month, burn and runway). Dates are calendar days of the
# months before the current one (UTC), so every figure below is the same
# whichever day the tests run; usage "now" falls in the current month and in
# the last 30 days.
#
# Subscription events ("M-k d": day d of the month k months ago, 12:00 UTC):
#   iris    starter yearly $228 (19/mo)  M-11 d10 new; canceled M-1 d5
#   birch   enterprise $99               M-10 d5 new; downgraded to starter $19 M-5 d10; canceled M-3 d20
#   anvil   platform $50                 M-10 d10 new; upgraded to hybrid $99 M-6 d15
#   cobalt  byok $30                     M-9 d1 00:00 new (the month's first moment); canceled M-7 d10;
#           platform $50                 M-4 d10 (reactivation: it paid before)
#   dune    starter $19                  M-8 d10 new; past due M-6 d20; active M-5 d1; past due M-2 d5
#                                        (past due still counts in MRR: no movement)
#   ember   hybrid yearly $1188 (99/mo)  M-7 d10 new
#   fjord   platform trial (0)           M-4 d10; converted to platform $50 M-3 d10 (new, not a reactivation)
#   grove   platform trial (0)           M-2 d10; trial ended without paying M-1 d10 (no movement at all)
#   heath   platform $50                 M-1 d10 new; canceled M-1 d25 (new and churned in one month)
#   jade    never subscribed
#
# Month by month (offset k = months before the current one), computed by hand:
#   k   MRR start  new  react  exp  contr  churn  net  MRR end  paying start  churned orgs  logo churn %
#   11      0       19                                19     19       0             0          none
#   10     19      149                               149    168       1             0          0
#    9    168       30                                30    198       3             0          0
#    8    198       19                                19    217       4             0          0
#    7    217       99                        30      69    286       5             1 cobalt  20.00
#    6    286                    49                   49    335       5             0          0
#    5    335                          80            -80    255       5             0          0
#    4    255              50                         50    305       5             0          0
#    3    305       50                        19      31    336       6             1 birch   16.67
#    2    336                                          0    336       6             0          0
#    1    336       50                        69     -19    317       6             1 iris    16.67
#    0    317                                          0    317       5             0          0
# (month 1: heath's 50 is new and churned, iris's 19 churned; heath was not paying at the month's start.)
# Paying at the end: anvil 99, cobalt 50, dune 19 (past due), ember 99, fjord 50 = 317.
#
# Credits:
#   anvil  bought 10,000 for $10 M-3 d12; granted 1,000 ($0) M-2 d12; bought 5,000 for $5 M-1 d12;
#          500 expired M-1 d28; used 20 x 50 M-2 d15 and 15 x 40 now
#   ember  bought 2,000 for $3 M-1 d3; used 30 x 50 now
#   jade   granted 100 ($0) M-2 d12
#   per month (system): M-3 sold 10,000 ($10); M-2 granted 1,100, consumed 1,000 (20 requests);
#   M-1 sold 7,000 ($8), expired 500; M0 consumed 2,100 (45 requests)
# Burn and runway now (remaining = pool total - what open allocations used):
#   anvil  remaining 16,000 - 500 - 1,600 = 13,900; 600 used in 30 days: 20 a day, 695 days
#   ember  remaining 2,000 - 1,500 = 500; 1,500 used: 50 a day, 10 days (running low)
#   jade   remaining 100, nothing used: no runway

MONTH_ORGS = ("anvil", "birch", "cobalt", "dune", "ember", "fjord", "grove", "heath", "iris", "jade")

# offset k -> (mrr_start, new, reactivation, expansion, contraction, churned, net, mrr_end,
#              paying_start, paying_end, new_orgs, reactivated_orgs, churned_orgs, logo churn %)
MRR_MONTHS = {
    11: (0, 19, 0, 0, 0, 0, 19, 19, 0, 1, 1, 0, 0, None),
    10: (19, 149, 0, 0, 0, 0, 149, 168, 1, 3, 2, 0, 0, Decimal("0.00")),
    9: (168, 30, 0, 0, 0, 0, 30, 198, 3, 4, 1, 0, 0, Decimal("0.00")),
    8: (198, 19, 0, 0, 0, 0, 19, 217, 4, 5, 1, 0, 0, Decimal("0.00")),
    7: (217, 99, 0, 0, 0, 30, 69, 286, 5, 5, 1, 0, 1, Decimal("20.00")),
    6: (286, 0, 0, 49, 0, 0, 49, 335, 5, 5, 0, 0, 0, Decimal("0.00")),
    5: (335, 0, 0, 0, 80, 0, -80, 255, 5, 5, 0, 0, 0, Decimal("0.00")),
    4: (255, 0, 50, 0, 0, 0, 50, 305, 5, 6, 0, 1, 0, Decimal("0.00")),
    3: (305, 50, 0, 0, 0, 19, 31, 336, 6, 6, 1, 0, 1, Decimal("16.67")),
    2: (336, 0, 0, 0, 0, 0, 0, 336, 6, 6, 0, 0, 0, Decimal("0.00")),
    1: (336, 50, 0, 0, 0, 69, -19, 317, 6, 5, 1, 0, 1, Decimal("16.67")),
    0: (317, 0, 0, 0, 0, 0, 0, 317, 5, 5, 0, 0, 0, Decimal("0.00")),
}

# offset k -> (credits_sold, revenue, credits_granted, credits_consumed, requests, credits_expired); others 0
CREDIT_MONTHS = {
    3: (10_000, 10, 0, 0, 0, 0),
    2: (0, 0, 1_100, 1_000, 20, 0),
    1: (7_000, 7, 0, 0, 0, 500),
    0: (0, 0, 0, 2_100, 45, 0),
}
ANVIL_CREDIT_MONTHS = {
    3: (10_000, 10, 0, 0, 0, 0),
    2: (0, 0, 1_000, 1_000, 20, 0),
    1: (5_000, 5, 0, 0, 0, 500),
    0: (0, 0, 0, 600, 15, 0),
}
# org -> (remaining credits, credits used in 30 days, burn per day, runway days)
RUNWAY = {
    "anvil": (13_900, 600, 20, Decimal("695.0")),
    "ember": (500, 1_500, 50, Decimal("10.0")),
    "jade": (100, 0, 0, None),
}


@dataclass(frozen=True)
class MonthsDataset:
    """Ids of the month-by-month dataset's people."""

    sysadmin: str = SYSADMIN
    anvil_admin: str = "anvil-admin"
    anvil_member: str = "anvil-member"
    ember_admin: str = "ember-admin"
    jade_admin: str = "jade-admin"


def month_start(months_ago: int, now: datetime | None = None) -> datetime:
    """The first moment (UTC) of the calendar month `months_ago` months before the current one."""
    now = now or datetime.now(UTC)
    index = now.year * 12 + now.month - 1 - months_ago
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def buy(db: Engine, admin: str, org_id: str, credits_ordered: int, paid_at: datetime | None = None) -> None:
    """The org admin orders credits at the list price; the system admin records the payment (dated `paid_at`)."""
    order = orders.create_order(db, admin, org_id, credits=credits_ordered)
    orders.record_payment(db, SYSADMIN, order.id, f"PAY-{order.id}", paid_at=paid_at)


def _on(months_ago: int, day: int, hour: int = 12) -> datetime:
    return month_start(months_ago).replace(day=day, hour=hour)


# ---- STAND-IN: trials of a month ------------------------------------------------------------------
# The catalogue's trials last 14 days and convert by themselves; this dataset needs trials that last a
# month (fjord) or end canceled (grove). This helper writes the history row the lifecycle writes for
# them, through ledger_subscription_event (metadata mrr_after etc.), with no subscription row.


def _stand_in_subscription_event(
    db: Engine, org_id: str, plan: str, cycle: str, status: str, previous_status: str | None, event_type: str,
    at: datetime,
) -> None:
    fetch(
        db,
        "select ledger_subscription_event("
        "  jsonb_populate_record(null::organization_subscriptions, jsonb_build_object("
        "    'org_id', cast(:org_id as text), 'id', 'stand-in-' || cast(:org_id as text),"
        "    'plan', cast(:plan as text), 'plan_version', 1, 'billing_cycle', cast(:cycle as text),"
        "    'status', cast(:status as text),"
        "    'price_amount', (select monthly_price * case when cast(:cycle as text) = 'yearly' then 12 else 1 end"
        "                       from plans where code = cast(:plan as text)))),"
        "  case when cast(:previous_status as text) is not null then"
        "  jsonb_populate_record(null::organization_subscriptions, jsonb_build_object("
        "    'org_id', cast(:org_id as text), 'id', 'stand-in-' || cast(:org_id as text),"
        "    'plan', cast(:plan as text), 'plan_version', 1, 'billing_cycle', cast(:cycle as text),"
        "    'status', cast(:previous_status as text))) end,"
        "  cast(:event_type as text), cast(:description as text), cast(:actor_id as text), cast(:at as timestamptz))",
        {"org_id": org_id, "plan": plan, "cycle": cycle, "status": status, "previous_status": previous_status,
         "event_type": event_type, "description": f"{event_type} ({plan}, {status})", "actor_id": SYSADMIN,
         "at": at},
    )


def _stand_in_expiry(db: Engine, org_id: str, credits_expired: int, at: datetime) -> None:
    """A lot expired in the past (expiry dates can only be set in the future, and the job expires them then):
    the rows ledger_expire_lot writes, on the organization's latest lot: its expired credits, the pool's
    total, and the 'credit_expiry' history row."""
    fetch(
        db,
        "with pool as ("
        "  update credit_pools set total_credits = total_credits - :credits, updated_at = now()"
        "   where org_id = :org_id returning total_credits),"
        " lot as (select max(id) as id from credit_lots where org_id = :org_id),"
        " expiry as ("
        "  insert into org_billing_history (org_id, event_type, credits, description, total_credits_after, metadata,"
        "                                   created_at)"
        "  select :org_id, 'credit_expiry', -cast(:credits as numeric), :description, pool.total_credits,"
        "         jsonb_build_object('lot_id', lot.id), cast(:at as timestamptz) from pool, lot returning id)"
        " update credit_lots set expired_credits = expired_credits + :credits, expires_at = :at, expired_at = :at,"
        "        expiry_history_id = (select id from expiry)"
        "  where org_id = :org_id and id = (select id from lot)",
        {"org_id": org_id, "credits": credits_expired, "description": f"{credits_expired} credits expired", "at": at},
    )


# ---- end of stand-ins ---------------------------------------------------------------------------------


def build_months(db: Engine) -> MonthsDataset:
    """Create the month-by-month dataset described above."""
    ds = MonthsDataset()
    organizations.create_user(db, None, ds.sysadmin, "root@example.com", "Root Admin", is_system_admin=True)
    for org_id in MONTH_ORGS:
        organizations.create_organization(db, ds.sysadmin, org_id, org_id.title())
    for user_id, org_id, role in (
        (ds.anvil_admin, "anvil", "admin"), (ds.anvil_member, "anvil", "member"),
        (ds.ember_admin, "ember", "admin"), (ds.jade_admin, "jade", "admin"),
    ):
        organizations.create_user(db, ds.sysadmin, user_id, f"{user_id}@example.com", user_id.title())
        organizations.add_member(db, ds.sysadmin, org_id, user_id, role)

    def subscribe(org_id: str, plan: str, cycle: str, at: datetime) -> None:
        subscriptions.create_subscription(db, ds.sysadmin, org_id, plan, billing_cycle=cycle, started_at=at)

    def status(org_id: str, new_status: str, at: datetime) -> None:
        subscriptions.set_subscription_status(db, ds.sysadmin, org_id, new_status, occurred_at=at)

    subscribe("iris", "starter", "yearly", _on(11, 10))
    status("iris", "canceled", _on(1, 5))
    subscribe("birch", "enterprise", "monthly", _on(10, 5))
    subscriptions.change_plan(db, ds.sysadmin, "birch", "starter", occurred_at=_on(5, 10))
    status("birch", "canceled", _on(3, 20))
    subscribe("anvil", "platform", "monthly", _on(10, 10))
    subscriptions.change_plan(db, ds.sysadmin, "anvil", "hybrid", occurred_at=_on(6, 15))
    subscribe("cobalt", "byok", "monthly", _on(9, 1, hour=0))
    status("cobalt", "canceled", _on(7, 10))
    subscribe("cobalt", "platform", "monthly", _on(4, 10))
    subscribe("dune", "starter", "monthly", _on(8, 10))
    status("dune", "past_due", _on(6, 20))
    status("dune", "active", _on(5, 1))
    status("dune", "past_due", _on(2, 5))
    subscribe("ember", "hybrid", "yearly", _on(7, 10))
    _stand_in_subscription_event(db, "fjord", "platform", "monthly", "trialing", None, "subscription_created",
                                 _on(4, 10))
    subscribe("fjord", "platform", "monthly", _on(3, 10))
    _stand_in_subscription_event(db, "grove", "platform", "monthly", "trialing", None, "subscription_created",
                                 _on(2, 10))
    _stand_in_subscription_event(db, "grove", "platform", "monthly", "canceled", "trialing",
                                 "subscription_canceled", _on(1, 10))
    subscribe("heath", "platform", "monthly", _on(1, 10))
    status("heath", "canceled", _on(1, 25))

    buy(db, ds.anvil_admin, "anvil", 10_000, _on(3, 12))
    orders.grant_credits(db, ds.sysadmin, "anvil", 1_000, "Goodwill credits", occurred_at=_on(2, 12))
    buy(db, ds.anvil_admin, "anvil", 5_000, _on(1, 12))
    credits.allocate(db, ds.anvil_admin, "anvil", ds.anvil_member, 3_000)
    for _ in range(20):
        credits.deduct(db, "anvil", ds.anvil_member, 50, "company_enrichment", "company-enrichment",
                       occurred_at=_on(2, 15))
    for _ in range(15):
        credits.deduct(db, "anvil", ds.anvil_member, 40, "llm", "gpt-4o")
    _stand_in_expiry(db, "anvil", 500, _on(1, 28))

    buy(db, ds.ember_admin, "ember", 2_000, _on(1, 3))
    credits.allocate(db, ds.ember_admin, "ember", ds.ember_admin, 1_900)
    for _ in range(30):
        credits.deduct(db, "ember", ds.ember_admin, 50, "company_enrichment", "company-enrichment")

    orders.grant_credits(db, ds.sysadmin, "jade", 100, "Pilot credits", occurred_at=_on(2, 12))
    return ds
