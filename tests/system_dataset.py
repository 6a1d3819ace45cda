"""A small, hand-computable dataset for the system overview and the audit log.

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

from billing_core import credits, organizations, subscriptions

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
    organizations.add_member(db, ds.alpha_admin, "alpha", ds.alpha_member, "member")
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

    credits.add_credits(db, ds.alpha_admin, "alpha", 10_000, 10)
    credits.allocate(db, ds.alpha_admin, "alpha", ds.alpha_member, 1_000)
    credits.allocate(db, ds.alpha_admin, "alpha", ds.alpha_admin, 500)
    _charge(db, "alpha", ds.alpha_member, 5, 40, "contact_lookup", days_ago=40)
    _charge(db, "alpha", ds.alpha_member, 10, 50, "company_enrichment")

    credits.add_credits(db, ds.beta_admin, "beta", 2_000, 2)
    credits.allocate(db, ds.beta_admin, "beta", ds.beta_admin, 300)
    _charge(db, "beta", ds.beta_admin, 12, 10, "contact_lookup")

    credits.add_credits(db, ds.beta_admin, "gamma", 100, 0)
    credits.allocate(db, ds.beta_admin, "gamma", ds.beta_admin, 50)
    _charge(db, "gamma", ds.beta_admin, 3, 2, "intelligence_cache_lookup", days_ago=45)
    return ds
