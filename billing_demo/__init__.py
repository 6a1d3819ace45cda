"""Demo data: a realistic, deterministic dataset loaded through the ledger's own functions.

Not part of the domain: this package sits beside billing_core and uses only its public
functions and the stored functions (`billing demo` and ./start.sh load it).

`load(db)` fills an empty database with about 40 organizations on the
documented plans (some past due, some canceled, a few plan changes), 300 users
(a third of them in two or three organizations), allocations, 90 days of usage
with a weekday rhythm, purchases and billing history. Everything goes through
the stored functions users and services call (create_organization_with_plan,
create_user, add_organization_member, create_subscription,
set_subscription_status, create_credit_order and record_order_payment (each
purchase an order paid by the system admin), grant_credits (promotional
credits, with a reason), allocate_credits_to_user,
charge_usage with the time each call happened, remove_organization_member,
and for plans and periods schedule_subscription_change, cancel_subscription,
set_allocation_policy, set_low_balance_threshold, edit_plan), set-based and
in ONE transaction: a failed load leaves nothing behind; then the period job
runs once. The
dataset is a function of the seed and of the day it is anchored to (the 90
days end yesterday, UTC), so two loads on the same day agree to the credit.

Every demo user shares one password (DEMO_PASSWORD), hashed once with bcrypt.
The metered calls (model and tokens, or a fixed-price service; on the
customer's own key as their plan allows) are priced and charged by the
pricing engine (price_usage to size allocations, charge_usage to charge).
"""

from __future__ import annotations

import json
import math
import random
import re
import time
import unicodedata
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import ROUND_CEILING, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from billing_core import auth, database, periods
from billing_core.errors import BillingError

DEMO_PASSWORD = "billing-demo"
DEFAULT_SEED = 20240601
SYSADMIN_ID = "sysadmin"
SYSADMIN_EMAIL = "admin@billing-demo.example"
SYSADMIN_NAME = "Sam Sysadmin"
_LOAD_LOCK_KEY = 7_240_318_003  # serializes two loads started at once

# the organizations, in the order they are used; the fourth (HTML_ORG_INDEX)
# proves that screens render names as text
HTML_ORG_INDEX = 3
ORGANIZATION_NAMES = [
    "Northwind Analytics", "Bluefin Logistics", "Cedar & Pine Consulting",
    "O'Brien & \"Partners\" <b>Ltd</b> <script>alert(1)</script>",
    "Helios Robotics", "Meridian Health Partners", "Quarry Lane Capital", "Silverline Media",
    "Tidewater Shipping", "Juniper Learning", "Atlas Freight Systems", "Brightwave Energy",
    "Copperleaf Software", "Driftwood Design Studio", "Evergreen Dental Group", "Foxglove Biotech",
    "Granite Peak Outdoor", "Harborview Realty", "Ironbridge Security", "Kestrel Aerospace",
    "Lumen Legal LLP", "Maplewood Insurance", "Nimbus Cloud Services", "Oakridge Manufacturing",
    "Pioneer Agritech", "Redwood Data Labs", "Saffron Hospitality Group", "Summit Ridge Ventures",
    "Tallgrass Foods", "Umbra Games", "Vantage Point Research", "Willow Creek Clinics",
    "Yellowstone Telecom", "Zephyr Mobility", "Alder & Finch Architects", "Beacon Hill Recruiting",
    "Coastal Grid Utilities", "Delta Forge Engineering", "Emberline Marketing", "Fjord Financial",
    "Golden Gate Translations", "Hollow Oak Publishing", "Indigo Bay Retail", "Jasper Lane Legal",
]
_ORG_IDS = {"O'Brien & \"Partners\" <b>Ltd</b> <script>alert(1)</script>": "obrien-partners"}

FIRST_NAMES = [
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Mateo", "Sofia", "Lucas", "Isabella", "Ethan",
    "Mia", "James", "Amara", "Wei", "Priya", "Yuki", "Oluwaseun", "Ingrid", "Dmitri", "Fatima",
    "Chloé", "Andrés", "Mei", "Kwame", "Noor", "Elif", "Rahul", "Hana", "Lars", "Diego",
    "Leila", "Tomás", "Nadia", "Kenji", "Zara", "Omar", "Freya", "Ravi", "Camila", "Jonas",
    "Ana", "Mohammed", "Grace", "Samuel", "Aiko", "Bjørn", "Carmen", "Daniel", "Esther", "Felix",
    "Gabriela", "Hiroshi", "Imani", "Jakub", "Katarina", "Luis", "Maya", "Nikolai", "Paula", "Rosa",
    "Sanjay", "Thandiwe", "Victor", "Yasmin", "Zoë", "Aaron", "Beatriz", "Connor", "Divya", "Emil",
]
LAST_NAMES = [
    "Smith", "Johnson", "Nguyen", "Garcia", "Müller", "Rossi", "Kowalski", "Okafor", "Tanaka", "Patel",
    "Kim", "Silva", "Dubois", "Andersen", "Haddad", "Cohen", "O'Neill", "Fernández", "Ivanova", "Chen",
    "Williams", "Brown", "Martin", "Lopez", "Schmidt", "Novak", "Mensah", "Sato", "Sharma", "Park",
    "Costa", "Laurent", "Nielsen", "Khalil", "Levi", "Byrne", "Ruiz", "Petrov", "Wang", "Taylor",
    "Anderson", "Moreau", "Becker", "Horvat", "Adeyemi", "Suzuki", "Gupta", "Choi", "Pereira", "Lambert",
]
# a user whose name is quotes, HTML, a script tag and SQL: screens must show it as text
HTML_USER_NAME = "Robert'); DROP TABLE users;-- \"Bobby\" <i>Tables</i> <script>alert('x')</script>"

# plan code -> share of organizations, members (besides the first admin) as (min, max)
PLAN_SHARES = {"starter": 0.2, "byok": 0.175, "platform": 0.3, "hybrid": 0.175, "enterprise": 0.15}
PLAN_SIZES = {"starter": (2, 5), "byok": (4, 9), "platform": (5, 12), "hybrid": (8, 16), "enterprise": (15, 28)}
# models the demo's LLM calls use (the pricing engine's price table prices them) -> provider
MODELS = {
    "gpt-4o-mini": "openai",
    "gpt-4o": "openai",
    "claude-sonnet-4": "anthropic",
    "claude-3-5-haiku": "anthropic",
    "gemini-2.5-flash": "google",
    "gemini-2.0-flash": "google",
}
# fixed-price services: service_type -> service_name (the engine prices them: 50, 10, 2 credits)
FIXED_SERVICES = {
    "company_enrichment": "Company enrichment",
    "contact_lookup": "Contact lookup",
    "intelligence_cache_lookup": "Intelligence cache lookup",
}
# share of LLM calls on the customer's own keys, by plan (its pricing mode decides what it may run)
OWN_KEY_SHARE = {"byok": 1.0, "hybrid": 0.5, "enterprise": 0.4}
# Monday..Sunday: share of a weekday's calls
WEEKDAY_FACTORS = (1.0, 1.08, 1.05, 1.0, 0.82, 0.16, 0.1)
# hours of the working day (local), weights
WORK_HOURS = [(8, 2), (9, 6), (10, 9), (11, 9), (12, 5), (13, 7), (14, 9), (15, 8), (16, 7), (17, 4), (18, 2), (19, 1)]
# organizations' UTC offsets (hours): where their working day falls
UTC_OFFSETS = (-8, -5, -5, 0, 1, 1, 2, 5.5, 8, 9)
_BATCH = 5_000  # deductions per statement: small enough that the progress moves every second or so

Progress = Callable[[str, int, int], None]
"""Told of a load's steps: the stage (in words), how many of its items are done, and how many in all."""


def _silent(stage: str, done: int, total: int) -> None:
    """A Progress that shows nothing (a load called from code or a test)."""


# the stages of a load, in order; the count each reports is of what its words name
PLANNING = "Planning the data set"
PRICING = "Pricing the calls"
PEOPLE = "Users and organizations"
HISTORY = "Memberships and plan history"
CREDITS = "Purchases and allocations"
USAGE = "Metered calls"
FEATURES = "Plans, policies and lots"
PERIODS = "Billing periods"
STATISTICS = "Statistics for the screens"
STAGES = (PLANNING, PRICING, PEOPLE, HISTORY, CREDITS, USAGE, FEATURES, PERIODS, STATISTICS)


class DatabaseNotEmpty(BillingError):
    """The demo is only loaded into a database without organizations."""


@dataclass(frozen=True)
class Login:
    """A demo login to print: who, as what, with which password."""

    role: str
    user_id: str
    email: str
    name: str
    password: str = DEMO_PASSWORD

    def __str__(self) -> str:
        return f"{self.role:<16} {self.email:<44} password: {self.password}   ({self.name})"


@dataclass
class Org:
    id: str
    name: str
    domain: str
    plan: str
    cycle: str
    started_at: datetime
    size: int
    utc_offset: float
    mix: dict[str, float]  # service_type -> share of calls
    models: list[tuple[str, float]]
    owner: str = ""
    events: list[tuple[datetime, str, str]] = field(default_factory=list)  # (when, kind, value)
    ends_at: datetime | None = None  # canceled for good: usage stops here


@dataclass
class Person:
    id: str
    email: str
    name: str


@dataclass
class Usage:
    at: datetime
    org_id: str
    user_id: str
    service_type: str
    service_name: str
    input_tokens: int
    output_tokens: int
    byok: bool
    metadata: dict[str, Any]
    credits: Decimal | None = None  # what the pricing engine charges for it (see `plan`'s `price`)


@dataclass
class Dataset:
    """Everything the demo loads, planned in Python before a row is written."""

    anchor: date  # the day after the last day of usage (UTC)
    password_hash: str
    orgs: list[Org]
    people: list[Person]
    memberships: list[tuple[str, str, str]]  # (org_id, user_id, role); a user's first row is their default
    purchases: list[tuple[datetime, str, Decimal, str, str]]  # (when, org, credits, payer, reference)
    allocations: list[tuple[str, str, Decimal, str]]  # (org, user, credits, allocated_by)
    usage: list[Usage]
    removals: list[tuple[str, str, str]]  # (org, user, removed_by)
    logins: list[Login]


@dataclass(frozen=True)
class LoadReport:
    """What a load wrote and how long it took."""

    organizations: int
    users: int
    memberships: int
    usage_rows: int
    purchases: int
    seconds: float
    logins: list[Login]


# --------------------------------------------------------------------------- planning (pure Python)


def _ascii(text: str) -> str:
    text = text.replace("ø", "o").replace("Ø", "O")
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _slug(text: str, sep: str = "-") -> str:
    return re.sub(r"[^a-z0-9]+", sep, _ascii(text).lower().replace("'", "")).strip(sep)


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _weighted(rng: random.Random, pairs: list[tuple[Any, float]]) -> Any:
    return rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


def _round_up(value: Decimal, step: int) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_CEILING) * step


def _plan_counts(n: int) -> list[str]:
    counts = {code: int(share * n) for code, share in PLAN_SHARES.items()}
    for code in sorted(PLAN_SHARES, key=lambda c: -PLAN_SHARES[c] * n % 1):
        if sum(counts.values()) >= n:
            break
        counts[code] += 1
    return [code for code, count in counts.items() for _ in range(count)]


def _plan_orgs(rng: random.Random, n: int, anchor_at: datetime) -> list[Org]:
    if not 1 <= n <= len(ORGANIZATION_NAMES):
        raise ValueError(f"organizations must be 1 to {len(ORGANIZATION_NAMES)}")
    plans = _plan_counts(n)
    rng.shuffle(plans)
    orgs = []
    for name, plan in zip(ORGANIZATION_NAMES[:n], plans, strict=True):
        org_id = _ORG_IDS.get(name) or _slug(name)
        lo, hi = PLAN_SIZES[plan]
        llm = rng.uniform(0.35, 0.8)
        rest = 1 - llm
        enrich, contact = rng.uniform(0.05, 0.3) * rest, rng.uniform(0.25, 0.5) * rest
        models = list(MODELS)
        rng.shuffle(models)
        orgs.append(Org(
            id=org_id,
            name=name,
            domain=f"{org_id}.example",
            plan=plan,
            cycle="yearly" if rng.random() < 0.15 else "monthly",
            # subscriptions started over the last ~120 days, a few hours into a working day
            started_at=anchor_at - timedelta(days=rng.randint(4, 124), hours=rng.randint(6, 14)),
            size=rng.randint(lo, hi),
            utc_offset=rng.choice(UTC_OFFSETS),
            mix={"llm": llm, "company_enrichment": enrich, "contact_lookup": contact,
                 "intelligence_cache_lookup": rest - enrich - contact},
            models=[(m, w) for m, w in zip(models[:3], (0.6, 0.3, 0.1), strict=True)],
        ))
    return orgs


def _plan_subscription_events(rng: random.Random, orgs: list[Org], anchor_at: datetime) -> None:
    """Past due, recovered, canceled and changed plans, spread over the orgs (disjoint)."""
    n = len(orgs)
    order = list(range(n))
    rng.shuffle(order)
    yesterday = anchor_at - timedelta(days=1)

    def take(share: float) -> list[Org]:
        return [orgs[order.pop()] for _ in range(min(max(1, round(n * share)), len(order)))]

    def within(start: datetime, low: float, high: float) -> datetime:
        """A moment between `start` and yesterday, at a random fraction in [low, high] of the way."""
        return start + (yesterday - start) * rng.uniform(low, high)

    for org in take(0.1):  # canceled for good
        at = within(org.started_at, 0.5, 0.95)
        org.events.append((at, "status", "canceled"))
        org.ends_at = at
    for org in take(0.1):  # past due now
        org.events.append((within(max(org.started_at, anchor_at - timedelta(days=25)), 0.2, 0.95), "status", "past_due"))
    for org in take(0.05):  # were past due, paid again
        failed = within(org.started_at, 0.2, 0.6)
        org.events.append((failed, "status", "past_due"))
        org.events.append((failed + (yesterday - failed) * rng.uniform(0.1, 0.5), "status", "active"))
    for org in take(0.075):  # changed plan: the old one canceled, the new one started at once
        at = within(org.started_at, 0.3, 0.8)
        org.events.append((at, "status", "canceled"))
        org.events.append((at, "subscribe", rng.choice([p for p in PLAN_SHARES if p != org.plan])))


def _showcase(orgs: list[Org]) -> Org:
    """The organization whose first admin is the printed org-admin login: a platform customer in good standing."""
    calm = [org for i, org in enumerate(orgs) if not org.events and i != HTML_ORG_INDEX]
    return next((org for org in calm if org.plan == "platform"), calm[0] if calm else orgs[0])


def _plan_people(rng: random.Random, orgs: list[Org], n_people: int) -> tuple[list[Person], list[tuple[str, str, str]]]:
    """People (the first len(orgs) are the organizations' first admins) and memberships, defaults first."""
    if n_people < len(orgs) + 4:
        raise ValueError("users must exceed organizations by at least 5")
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n_people - 1:
        full = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        if full not in seen:
            seen.add(full)
            names.append(full)
    names.insert(len(orgs), HTML_USER_NAME)
    html_index = len(orgs)  # the first user who is not an organization's first admin
    html_org = orgs[HTML_ORG_INDEX % len(orgs)]
    showcase = _showcase(orgs)
    taken: set[str] = set()

    def person(name: str, domain: str) -> Person:
        base = "bobby.tables" if name == HTML_USER_NAME else _slug(name, ".")
        local_part, k = base, 1
        while local_part in taken:
            k += 1
            local_part = f"{base}{k}"
        taken.add(local_part)
        return Person(local_part.replace(".", "-"), f"{local_part}@{domain}", name)

    people: list[Person] = []
    homes: list[Org] = []
    weights = [org.size for org in orgs]
    for i in range(n_people):
        if i < len(orgs):
            home = orgs[i]
        elif i == html_index:
            home = html_org
        else:
            home = rng.choices(orgs, weights=weights)[0]
        homes.append(home)
        people.append(person(names[i], home.domain))
    for org, owner in zip(orgs, people, strict=False):
        org.owner = owner.id

    memberships: dict[str, list[str]] = {p.id: [homes[i].id] for i, p in enumerate(people)}
    # the quoted-HTML user is also a member of the showcase organization, so its admin's screens show the name
    if showcase is not html_org:
        memberships[people[html_index].id].append(showcase.id)
    # a third of all users (the system admin counted) work in two or three organizations
    fixed = {html_index, orgs.index(showcase)}
    candidates = [i for i in range(n_people) if i not in fixed]
    for i in rng.sample(candidates, max(0, (n_people + 1) // 3 - 1)):
        for _ in range(1 if rng.random() < 0.65 else 2):
            choices = [(org, org.size) for org in orgs if org.id not in memberships[people[i].id]]
            if choices:
                memberships[people[i].id].append(_weighted(rng, choices).id)
    rows: list[tuple[str, str, str]] = []
    for i, p in enumerate(people):
        for org_id in memberships[p.id]:
            rows.append((org_id, p.id, "admin" if i < len(orgs) and org_id == orgs[i].id else "member"))
    # larger organizations have a second admin
    members_of: dict[str, list[int]] = defaultdict(list)
    for k, (org_id, user_id, role) in enumerate(rows):
        if role == "member" and user_id != people[html_index].id:
            members_of[org_id].append(k)
    for org in orgs:
        if len(members_of[org.id]) >= 8:
            k = rng.choice(members_of[org.id])
            rows[k] = (rows[k][0], rows[k][1], "admin")
    return people, rows


def _plan_at(org: Org, at: datetime) -> str:
    """The plan the organization is on at `at` (a plan change starts a new subscription)."""
    changes = [value for when, kind, value in org.events if kind == "subscribe" and when <= at]
    return changes[-1] if changes else org.plan


def _call(rng: random.Random, org: Org, at: datetime) -> tuple[str, str, int, int, bool, dict[str, Any]]:
    """One metered call: (service_type, service_name, input tokens, output tokens, own key, metadata)."""
    service = _weighted(rng, list(org.mix.items()))
    if service != "llm":
        return service, FIXED_SERVICES[service], 0, 0, False, {}
    model = _weighted(rng, org.models)
    tokens_in = max(20, int(rng.lognormvariate(7.2, 0.8)))  # median ~1,300
    tokens_out = max(5, int(rng.lognormvariate(5.8, 0.7)))  # median ~330
    own_key = rng.random() < OWN_KEY_SHARE.get(_plan_at(org, at), 0.0)
    return "llm", model, tokens_in, tokens_out, own_key, {
        "provider": MODELS[model], "input_tokens": tokens_in, "output_tokens": tokens_out, "own_key": own_key,
    }


def _plan_usage(
    rng: random.Random,
    orgs: list[Org],
    memberships: list[tuple[str, str, str]],
    anchor: date,
    days: int,
    keen: set[str],
) -> list[Usage]:
    by_id = {org.id: org for org in orgs}
    usage: list[Usage] = []
    first_day = anchor - timedelta(days=days)
    for org_id, user_id, role in memberships:
        org = by_id[org_id]
        if rng.random() < 0.12 and user_id not in keen:
            continue  # members who never used a metered service
        rate = min(40.0, rng.lognormvariate(1.3, 0.8)) * (0.5 if role == "admin" else 1.0)
        if user_id in keen:
            rate = max(rate, 3.0)  # the printed logins find usage on every screen
        start = max(org.started_at, datetime.combine(first_day, dtime(), UTC))
        for d in range(days):
            day = first_day + timedelta(days=d)
            growth = 0.75 + 0.4 * d / max(1, days - 1)
            calls = _poisson(rng, rate * growth * WEEKDAY_FACTORS[day.weekday()])
            for _ in range(calls):
                hour = _weighted(rng, WORK_HOURS)
                local = datetime.combine(day, dtime(hour), UTC) + timedelta(seconds=rng.randint(0, 3599))
                at = local - timedelta(hours=org.utc_offset)
                if at < start or (org.ends_at is not None and at >= org.ends_at):
                    continue
                if at >= datetime.combine(anchor, dtime(), UTC):
                    continue  # usage ends yesterday (UTC)
                service_type, service_name, tokens_in, tokens_out, own_key, metadata = _call(rng, org, at)
                usage.append(Usage(at, org_id, user_id, service_type, service_name, tokens_in, tokens_out, own_key,
                                   metadata))
    usage.sort(key=lambda u: (u.org_id, u.user_id, u.at))
    return usage


def _plan_credits(
    rng: random.Random, orgs: list[Org], memberships: list[tuple[str, str, str]], usage: list[Usage], anchor_at: datetime
) -> tuple[list, list]:
    used: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for u in usage:
        used[(u.org_id, u.user_id)] += u.credits
    by_id = {org.id: org for org in orgs}
    allocations: list[tuple[str, str, Decimal, str]] = []
    allocated: dict[str, Decimal] = defaultdict(Decimal)
    for org_id, user_id, _role in memberships:
        spent = used.get((org_id, user_id), Decimal(0))
        if spent > 0:
            factor = rng.uniform(1.01, 1.08) if rng.random() < 0.06 else rng.uniform(1.15, 2.2)  # a few near the end
            credits = _round_up(spent * Decimal(str(round(factor, 3))), 100)
        elif rng.random() < 0.6:
            credits = Decimal(rng.choice((500, 1000, 2000, 5000)))
        else:
            continue  # no allocation yet
        allocations.append((org_id, user_id, credits, by_id[org_id].owner))
        allocated[org_id] += credits

    purchases: list[tuple[datetime, str, Decimal, str, str]] = []
    for n, org in enumerate(orgs):
        total = _round_up(allocated[org.id] * Decimal(str(round(rng.uniform(1.2, 1.6), 2))) + 5000, 1000)
        end = org.ends_at or anchor_at - timedelta(hours=1)
        moments = [org.started_at + timedelta(hours=1)]
        while moments[-1] + timedelta(days=35) < end:
            moments.append(moments[-1] + timedelta(days=rng.randint(25, 35), hours=rng.randint(-3, 3)))
        first = _round_up(total * Decimal("0.4"), 1000) if len(moments) > 1 else total
        rest = total - first
        share = _round_up(rest / max(1, len(moments) - 1), 1000) if rest > 0 else Decimal(0)
        amounts = [first]
        for _ in moments[1:]:
            amounts.append(min(share, total - sum(amounts)))
        for k, (at, credits) in enumerate(zip(moments, amounts, strict=True)):
            if credits > 0:
                purchases.append((at, org.id, credits, org.owner, f"DEMO-INV-{n + 1:03d}-{k + 1:02d}"))
    purchases.sort()
    return allocations, purchases


def plan(
    seed: int = DEFAULT_SEED,
    *,
    organizations: int = 40,
    users: int = 300,
    days: int = 90,
    anchor: date | None = None,
    password_hash: str | None = None,
    price: Callable[[list[Usage]], list[Decimal]] | None = None,
) -> Dataset:
    """The dataset `load` writes (deterministic per seed and anchor day); `price` gives each call's credits.

    `load` prices the calls with the database's pricing engine. Without `price` the plan stops at the calls:
    no credits, allocations or purchases (what a plan without a database can know).
    """
    anchor = anchor or datetime.now(UTC).date()
    anchor_at = datetime.combine(anchor, dtime(), UTC)
    rng = random.Random(seed)
    orgs = _plan_orgs(rng, organizations, anchor_at)
    _plan_subscription_events(rng, orgs, anchor_at)
    people, memberships = _plan_people(rng, orgs, users - 1)  # the system admin is the last user
    # picked from the structure alone, so that they do not depend on the days of usage
    logins = _pick_logins(orgs, people, memberships)
    keen = {login.user_id for login in logins}
    usage = _plan_usage(rng, orgs, memberships, anchor, days, keen)

    # a few members leave: their unused credits return to the pool, their usage stays
    used_by = {(u.org_id, u.user_id) for u in usage}
    count: dict[str, int] = defaultdict(int)
    for org_id, _user, _role in memberships:
        count[org_id] += 1
    leavers = [
        (o, u) for o, u, role in memberships
        if role == "member" and (o, u) in used_by and count[o] >= 6 and u not in keen
    ]
    owners = {org.id: org.owner for org in orgs}
    removals = [(o, u, owners[o]) for o, u in rng.sample(leavers, min(3, len(leavers)))]

    allocations: list[tuple[str, str, Decimal, str]] = []
    purchases: list[tuple[datetime, str, Decimal, str, str]] = []
    if price is not None:
        for call, credits in zip(usage, price(usage), strict=True):
            call.credits = credits
        allocations, purchases = _plan_credits(rng, orgs, memberships, usage, anchor_at)
    return Dataset(anchor, password_hash or "", orgs, people, memberships, purchases, allocations, usage,
                   removals, logins)


def _pick_logins(orgs: list[Org], people: list[Person], memberships: list[tuple[str, str, str]]) -> list[Login]:
    """System admin, the showcase org's admin, a member of it, and a member of three organizations."""
    by_person = {p.id: p for p in people}
    quiet = {org.id for org in orgs if not org.events}  # subscribed, never past due or canceled
    mine: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for org_id, user_id, role in memberships:
        mine[user_id].append((org_id, role))
    html_user = next(p.id for p in people if p.name == HTML_USER_NAME)
    html_org = orgs[HTML_ORG_INDEX % len(orgs)].id
    showcase = _showcase(orgs)

    def member_only(user_id: str, count: int) -> bool:
        ms = mine[user_id]
        return (len(ms) == count and user_id != html_user
                and all(role == "member" and (org_id in quiet or org_id == html_org) for org_id, role in ms))

    admin = showcase.owner
    member = next((u for o, u, _ in memberships if o == showcase.id and member_only(u, 1)), None) or next(
        (p.id for p in people if member_only(p.id, 1)), people[-1].id
    )
    triple = [p.id for p in people if member_only(p.id, 3)]
    multi = next((u for u in triple if html_org in (o for o, _ in mine[u])), None) or next(iter(triple), None) or next(
        (p.id for p in people if len(mine[p.id]) >= 2 and p.id not in (admin, member, html_user)), people[-2].id
    )
    logins = [Login("system admin", SYSADMIN_ID, SYSADMIN_EMAIL, SYSADMIN_NAME)]
    for role, user_id in (("org admin", admin), ("member", member), ("multi-org user", multi)):
        p = by_person[user_id]
        logins.append(Login(role, p.id, p.email, p.name))
    return logins


# --------------------------------------------------------------------------- loading


def _run(conn: Connection, statement: str, params: dict[str, Any] | None = None) -> list[sa.Row]:
    try:
        result = conn.execute(sa.text(statement), params or {})
        return list(result) if result.returns_rows else []
    except sa.exc.DBAPIError as exc:
        domain = database.domain_error(exc)
        if domain is not None:
            raise type(domain)(f"Loading the demo failed, nothing was written: {domain}") from None
        raise


def _events(calls: list[Usage]) -> dict[str, list]:
    """The calls as the pricing engine's parameter arrays (types, names, tokens, own key, time), in order."""
    return {
        "types": [c.service_type for c in calls],
        "names": [c.service_name for c in calls],
        "ins": [c.input_tokens for c in calls],
        "outs": [c.output_tokens for c in calls],
        "byok": [c.byok for c in calls],
        "times": [c.at for c in calls],
    }


def engine_prices(db: Engine, calls: list[Usage]) -> list[Decimal]:
    """What the pricing engine charges for each call, in order: price_usage under the platform's rules (no
    organization: the demo's organizations have no overrides, and their plans only decide what they may run)."""
    rows = database.fetch(
        db,
        "select p.credits from unnest(cast(:types as text[]), cast(:names as text[]), cast(:ins as numeric[]),"
        "                             cast(:outs as numeric[]), cast(:byok as boolean[]), cast(:times as timestamptz[]))"
        "              with ordinality as c(st, sn, i, o, b, t, n)"
        " cross join lateral price_usage(null, c.st, c.sn, c.i, c.o, 0, 1, c.b, c.t) p"
        " order by c.n",
        _events(calls),
    )
    return [row[0] for row in rows]


def organization_count(db: Engine) -> int:
    """How many organizations the database holds."""
    return database.call(db, "select count(*) from organizations")


def ensure_empty(db: Engine) -> None:
    """Raise DatabaseNotEmpty unless the database has no organization (the demo is only loaded into such)."""
    if organization_count(db):
        raise DatabaseNotEmpty(
            "The database already has organizations: the demo is only loaded into an empty one "
            "(start with a fresh BILLING_DATA_DIR, or point DATABASE_URL at a new database)."
        )


def load(
    db: Engine,
    seed: int = DEFAULT_SEED,
    *,
    organizations: int = 40,
    users: int = 300,
    days: int = 90,
    anchor: date | None = None,
    progress: Progress = _silent,
) -> LoadReport:
    """Load the demo into a database without organizations, in one transaction; refuses (DatabaseNotEmpty) otherwise.

    `progress` hears of each stage (STAGES, in order) as it starts, of each batch within it, and of its end
    (a stage may also end by the next one starting).
    """
    started = time.monotonic()
    ensure_empty(db)
    progress(PLANNING, 0, 1)

    def price(calls: list[Usage]) -> list[Decimal]:
        credits: list[Decimal] = []
        for start in range(0, len(calls), _BATCH):
            progress(PRICING, start, len(calls))
            credits += engine_prices(db, calls[start:start + _BATCH])
        progress(PRICING, len(calls), len(calls))
        return credits

    data = plan(seed, organizations=organizations, users=users, days=days, anchor=anchor,
                password_hash=auth.hash_password(DEMO_PASSWORD), price=price)
    with db.begin() as conn:
        _run(conn, "select pg_advisory_xact_lock(:key)", {"key": _LOAD_LOCK_KEY})
        if _run(conn, "select count(*) from organizations")[0][0]:
            raise DatabaseNotEmpty("The database already has organizations: another load got there first.")
        _write(conn, data, progress)
        progress(FEATURES, 0, 1)
        _write_billing_features(conn, data)
        progress(FEATURES, 1, 1)
    progress(PERIODS, 0, 1)
    periods.run(db)  # records each organization's current period and when the job last ran
    progress(PERIODS, 1, 1)
    progress(STATISTICS, 0, 1)
    with db.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # fresh statistics and visibility map for the screens' first queries: without the vacuum,
        # index-only scans over the new usage rows visit the heap until autovacuum comes by
        conn.execute(sa.text("vacuum (analyze) credit_usage_attribution, org_billing_history, user_credit_allocations"))
    progress(STATISTICS, 1, 1)
    return LoadReport(
        organizations=len(data.orgs),
        users=len(data.people) + 1,  # and the system admin
        memberships=len(data.memberships) - len(data.removals),
        usage_rows=len(data.usage),
        purchases=len(data.purchases),
        seconds=time.monotonic() - started,
        logins=data.logins,
    )


def _write_billing_features(conn: Connection, data: Dataset) -> None:
    """Plans, periods and lots on a few organizations, through the functions the screens call: a scheduled
    downgrade, a cancel at the period end, rollover policies, low-balance thresholds, promotional credits
    that expire, and a Starter price change that takes effect next month."""
    showcase = _showcase(data.orgs).id
    active = [(org_id, plan) for org_id, plan in _run(
        conn, "select org_id, plan from organization_subscriptions where status = 'active' order by org_id")]
    others = [(org_id, plan) for org_id, plan in active if org_id != showcase]
    big = [org_id for org_id, plan in others if plan in ("hybrid", "enterprise")]
    small = [org_id for org_id, plan in others if plan == "starter"]
    if big:
        _run(conn, "select schedule_subscription_change(:org, 'platform', :actor)", {"org": big[0], "actor": SYSADMIN_ID})
    if small:
        _run(conn, "select cancel_subscription(:org, :actor, true)", {"org": small[0], "actor": SYSADMIN_ID})
    rollover = [showcase, *[org_id for org_id, _ in others[1:3]]]
    _run(conn, "select count(set_allocation_policy(o, 'rollover', 500, :actor)) from unnest(cast(:orgs as text[])) o",
         {"orgs": rollover, "actor": SYSADMIN_ID})
    # a quarter of what each organization bought, in thousands: some are below it already and show an alert
    _run(
        conn,
        "select count(set_low_balance_threshold(p.org_id, round(p.total_credits * 0.25, -3), :actor))"
        "  from credit_pools p where p.org_id = any(cast(:orgs as text[]))",
        {"orgs": [showcase, *[org_id for org_id, _ in others[::4]]], "actor": SYSADMIN_ID},
    )
    _run(
        conn,
        "select count(grant_credits(o, 2000, 'Promotional credits, 30 days', :actor, now() + interval '30 days'))"
        "  from unnest(cast(:orgs as text[])) o",
        {"orgs": [showcase, *[org_id for org_id, _ in others[:3]]], "actor": SYSADMIN_ID},
    )
    _run(conn, "select edit_plan('starter', :actor, 24, null, null, null, date_trunc('month', now()) + interval '1 month')",
         {"actor": SYSADMIN_ID})


def _write(conn: Connection, data: Dataset, progress: Progress) -> None:
    owners = {org.owner for org in data.orgs}
    by_person = {p.id: p for p in data.people}
    people = len(data.people) + 1 + len(data.orgs)  # users, the system admin, organizations
    progress(PEOPLE, 0, people)
    _run(conn, "select create_user(:id, :email, :name, true, :hash, null)",
         {"id": SYSADMIN_ID, "email": SYSADMIN_EMAIL, "name": SYSADMIN_NAME, "hash": data.password_hash})

    # organizations, each with its first admin (a new user) and its first subscription
    _run(
        conn,
        "select count(create_organization_with_plan(o, n, p, u, e, un, :hash, :actor, c, s))"
        " from unnest(cast(:orgs as text[]), cast(:names as text[]), cast(:plans as text[]),"
        "             cast(:users as text[]), cast(:emails as text[]), cast(:user_names as text[]),"
        "             cast(:cycles as text[]), cast(:starts as timestamptz[])) as t(o, n, p, u, e, un, c, s)",
        {
            "orgs": [o.id for o in data.orgs],
            "names": [o.name for o in data.orgs],
            "plans": [o.plan for o in data.orgs],
            "users": [o.owner for o in data.orgs],
            "emails": [by_person[o.owner].email for o in data.orgs],
            "user_names": [by_person[o.owner].name for o in data.orgs],
            "cycles": [o.cycle for o in data.orgs],
            "starts": [o.started_at for o in data.orgs],
            "hash": data.password_hash,
            "actor": SYSADMIN_ID,
        },
    )
    others = [p for p in data.people if p.id not in owners]
    _run(
        conn,
        "select count(create_user(i, e, n, false, :hash, :actor))"
        " from unnest(cast(:ids as text[]), cast(:emails as text[]), cast(:names as text[])) as t(i, e, n)",
        {"ids": [p.id for p in others], "emails": [p.email for p in others], "names": [p.name for p in others],
         "hash": data.password_hash, "actor": SYSADMIN_ID},
    )
    progress(PEOPLE, people, people)
    # memberships in order: each user's first row is their default organization
    owner_of = {org.id: org.owner for org in data.orgs}
    new = [(o, u, r) for o, u, r in data.memberships if owner_of[o] != u]
    events = sorted((at, org.id, kind, value) for org in data.orgs for at, kind, value in org.events)
    history = len(new) + len(events)
    progress(HISTORY, 0, history)
    _run(
        conn,
        "select count(add_organization_member(o, u, r, :actor))"
        " from unnest(cast(:orgs as text[]), cast(:users as text[]), cast(:roles as text[])) with ordinality"
        "      as t(o, u, r, n)",
        {"orgs": [m[0] for m in new], "users": [m[1] for m in new], "roles": [m[2] for m in new],
         "actor": SYSADMIN_ID},
    )

    progress(HISTORY, len(new), history)
    # plan history, in time order
    for done, (at, org_id, kind, value) in enumerate(events, start=1):
        if kind == "status":
            _run(conn, "select set_subscription_status(:org, :status, :actor, :at)",
                 {"org": org_id, "status": value, "actor": SYSADMIN_ID, "at": at})
        else:
            _run(conn, "select create_subscription(:org, :plan, :actor, 'monthly', :at)",
                 {"org": org_id, "plan": value, "actor": SYSADMIN_ID, "at": at})
        progress(HISTORY, len(new) + done, history)

    credits = len(data.purchases) + len(data.allocations)
    progress(CREDITS, 0, credits)
    # purchases over time: each organization's first admin orders credits at the list price, and the
    # system admin records the payment (its invoice reference, dated when it was paid)
    _run(
        conn,
        "select count(record_order_payment((create_credit_order(o, null, c, a)).id, r, :sysadmin, t))"
        " from unnest(cast(:orgs as text[]), cast(:credits as numeric[]), cast(:actors as text[]),"
        "             cast(:refs as text[]), cast(:times as timestamptz[])) with ordinality as x(o, c, a, r, t, n)",
        {
            "sysadmin": SYSADMIN_ID,
            "orgs": [p[1] for p in data.purchases],
            "credits": [p[2] for p in data.purchases],
            "actors": [p[3] for p in data.purchases],
            "refs": [p[4] for p in data.purchases],
            "times": [p[0] for p in data.purchases],
        },
    )
    progress(CREDITS, len(data.purchases), credits)
    _run(
        conn,
        "select count(allocate_credits_to_user(o, u, c, a))"
        " from unnest(cast(:orgs as text[]), cast(:users as text[]), cast(:credits as numeric[]),"
        "             cast(:actors as text[])) as t(o, u, c, a)",
        {
            "orgs": [a[0] for a in data.allocations],
            "users": [a[1] for a in data.allocations],
            "credits": [a[2] for a in data.allocations],
            "actors": [a[3] for a in data.allocations],
        },
    )

    progress(CREDITS, credits, credits)
    # 90 days of metered calls, charged by the pricing engine in the order they happened
    progress(USAGE, 0, len(data.usage))
    for start in range(0, len(data.usage), _BATCH):
        batch = data.usage[start:start + _BATCH]
        _run(
            conn,
            "select count(c.credits)"
            " from (select * from unnest(cast(:orgs as text[]), cast(:users as text[]), cast(:types as text[]),"
            "                            cast(:names as text[]), cast(:ins as numeric[]), cast(:outs as numeric[]),"
            "                            cast(:byok as boolean[]), cast(:ids as text[]), cast(:meta as text[]),"
            "                            cast(:times as timestamptz[]))"
            "              with ordinality as x(o, u, st, sn, i, out, b, r, m, t, n)"
            "        order by n) calls"
            " cross join lateral charge_usage(o, u, st, sn, i, out, 0, 1, b, r, cast(m as jsonb), t) c",
            {
                **_events(batch),
                "orgs": [u.org_id for u in batch],
                "users": [u.user_id for u in batch],
                "ids": [f"demo-{start + k + 1:07d}" for k in range(len(batch))],
                "meta": [json.dumps(u.metadata, separators=(",", ":")) for u in batch],
            },
        )
        progress(USAGE, start + len(batch), len(data.usage))
    for org_id, user_id, actor in data.removals:
        _run(conn, "select remove_organization_member(:org, :user, :actor)",
             {"org": org_id, "user": user_id, "actor": actor})


def demo_logins(db: Engine, seed: int = DEFAULT_SEED, *, organizations: int = 40, users: int = 300) -> list[Login]:
    """The demo's logins whose password is still the demo password (empty when the demo was never loaded)."""
    logins = plan(seed, organizations=organizations, users=users, days=0).logins
    with db.connect() as conn:
        rows = conn.execute(
            sa.text("select id, email, password_hash from users where id = any(cast(:ids as text[]))"),
            {"ids": [login.user_id for login in logins]},
        ).all()
    found = {row[0]: (row[1], row[2]) for row in rows}
    valid: dict[str, bool] = {}
    result = []
    for login in logins:
        email, hashed = found.get(login.user_id, (None, None))
        if email != login.email or not hashed:
            continue
        if hashed not in valid:
            valid[hashed] = auth.password_matches(DEMO_PASSWORD, hashed)
        if valid[hashed]:
            result.append(login)
    return result
