"""The demo data set: realistic shape, loaded through the ledger's functions, deterministic,
clean under `billing verify`, refused on a database that already has organizations; and
`billing start` loads it by itself only into an empty embedded database.

The full-size set (40 organizations, 300 users, 90 days) is loaded once, through `billing demo`;
the other tests load a small one.
"""

from __future__ import annotations

import functools
import hashlib
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import billing_demo as demo
from billing_core import auth, cli, database, ledger, organizations
from billing_core.database import fetch
from billing_core.errors import AlreadyExists
from tests.ledger_state import billing_verify, snapshot

ANCHOR = datetime.now(UTC).date()  # one anchor day for every load of this module
SMALL = {"organizations": 8, "users": 40, "days": 30, "anchor": ANCHOR}


@pytest.fixture
def second_db_url(pg_server, template_database) -> Iterator[str]:
    """Another fresh, migrated database."""
    name = f"billing_test_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name, template=template_database)
    yield url
    database.dispose_engine(url)
    pg_server.drop_database(name)


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run `billing ARGS...` in this process; returns (exit status, stdout, stderr)."""
    monkeypatch.delenv("BILLING_DEBUG", raising=False)

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


def scalar(db, statement: str, **params):
    return fetch(db, statement, params)[0][0]


def parse_logins(out: str) -> dict[str, tuple[str, str]]:
    """role -> (email, password) from the printed logins."""
    found = re.findall(r"^\s+(system admin|org admin|member|multi-org user)\s+(\S+@\S+)\s+password: (\S+)",
                       out, re.MULTILINE)
    return {role: (email, password) for role, email, password in found}


# --------------------------------------------------------------------------- the real size, once


def test_billing_demo_loads_the_full_data_set(db, db_url, run_cli, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", db_url)
    started = time.monotonic()
    code, out, err = run_cli("demo")
    seconds = time.monotonic() - started
    with capsys.disabled():  # the load time, for the record (-s shows it)
        print(f"\nbilling demo: {seconds:.1f} s\n{out}")
    assert code == 0, err
    assert err == ""
    assert re.search(r"Demo data loaded in [\d.]+ s: 40 organizations, 300 users", out)
    # not a terminal: one line per stage as it ends, in order, with its count and time
    stages = re.findall(r"^  \[(\d)/9\] ([^:\n]+):(?: ([\d,]+) of ([\d,]+))? [\d.]+ s$", out, re.M)
    assert [name for _, name, _, _ in stages] == list(demo.STAGES)
    assert [int(n) for n, _, _, _ in stages] == list(range(1, 10))
    calls = next(stage for stage in stages if stage[1] == demo.USAGE)
    assert calls[2] == calls[3] and int(calls[2].replace(",", "")) == scalar(
        db, "select count(*) from credit_usage_attribution")

    # organizations on the documented plans, some past due, some canceled, starts spread over ~120 days
    assert scalar(db, "select count(*) from organizations") == 40
    assert {r[0] for r in fetch(db, "select distinct plan from organization_subscriptions")} == {
        "starter", "byok", "platform", "hybrid", "enterprise"}
    live = dict(fetch(db, "select status, count(*) from organization_subscriptions"
                          " where status <> 'canceled' group by status"))
    assert live.get("active", 0) >= 25 and 2 <= live.get("past_due", 0) <= 8
    assert 2 <= scalar(db, "select count(*) from organizations o where not exists (select 1 from"
                           " organization_subscriptions s where s.org_id = o.id and s.status <> 'canceled')") <= 8
    assert scalar(db, "select count(distinct org_id) from organization_subscriptions") == 40
    first, last = fetch(db, "select min(created_at), max(created_at) from organization_subscriptions")[0]
    assert now_minus(db, days=126) <= first <= now_minus(db, days=100)
    assert last >= now_minus(db, days=30)
    assert scalar(db, "select count(*) from org_billing_history where event_type = 'subscription_canceled'") >= 4

    # 300 users, a third of them in two or three organizations, every organization with an admin
    assert scalar(db, "select count(*) from users") == 300
    assert scalar(db, "select count(*) from users where is_system_admin") == 1
    per_user = dict(fetch(db, "select n, count(*) from (select user_id, count(*) n from organization_members"
                              " group by user_id) t group by n"))
    assert set(per_user) <= {1, 2, 3}
    assert 90 <= per_user.get(2, 0) + per_user.get(3, 0) <= 110
    assert scalar(db, "select count(*) from organizations o where not exists (select 1 from organization_members m"
                      " where m.org_id = o.id and m.role = 'admin')") == 0
    assert scalar(db, "select count(*) from users where password_hash is null") == 0

    # allocations: most members hold one, a few are nearly spent, some have none yet
    assert scalar(db, "select count(*) from user_credit_allocations where is_active") >= 300
    assert scalar(db, "select count(*) from user_multi_org_credits where usage_percent > 90") >= 3
    assert scalar(db, "select count(*) from user_multi_org_credits where allocation_id is null") >= 5

    # 90 days of usage ending yesterday, with a weekday rhythm, across the documented services
    anchor = datetime.now(UTC).date()
    days = fetch(db, "select (created_at at time zone 'UTC')::date, count(*) from credit_usage_attribution group by 1")
    by_day = {d: n for d, n in days}
    assert min(by_day) == anchor - timedelta(days=90) and max(by_day) == anchor - timedelta(days=1)
    assert len(by_day) == 90
    weekday = [n for d, n in by_day.items() if d.weekday() < 5]
    weekend = [n for d, n in by_day.items() if d.weekday() >= 5]
    assert sum(weekday) / len(weekday) > 4 * sum(weekend) / len(weekend)
    assert 30_000 <= sum(by_day.values()) <= 150_000
    prices = {r[0]: (r[1], r[2]) for r in fetch(
        db, "select service_type, min(credits_used), max(credits_used) from credit_usage_attribution"
            " where service_type <> 'llm' group by 1")}
    assert prices == {"company_enrichment": (50, 50), "contact_lookup": (10, 10), "intelligence_cache_lookup": (2, 2)}
    models = {r[0] for r in fetch(db, "select distinct service_name from credit_usage_attribution"
                                      " where service_type = 'llm'")}
    assert {"gpt-4o-mini", "claude-sonnet-4", "gemini-2.5-flash"} <= models <= set(demo.MODELS)
    assert scalar(db, "select count(*) from credit_usage_attribution where service_type = 'llm'"
                      " and not (metadata ? 'input_tokens' and metadata ? 'output_tokens')") == 0
    # every call was recorded by this load, dated when it happened
    assert scalar(db, "select count(*) from credit_usage_attribution where recorded_at < created_at") == 0

    # purchases over time
    assert scalar(db, "select count(*) from org_billing_history where event_type = 'credit_purchase'") >= 60
    assert scalar(db, "select count(distinct date_trunc('month', created_at)) from org_billing_history"
                      " where event_type = 'credit_purchase'") >= 3

    # plans and periods: a scheduled downgrade, a cancel at the period end, promotional credits that
    # expire, thresholds, a Starter price change next month, and the period job's first run
    assert scalar(db, "select count(*) from organization_subscriptions where scheduled_plan = 'platform'") == 1
    assert scalar(db, "select count(*) from organization_subscriptions where cancel_at_period_end") == 1
    assert scalar(db, "select count(*) from credit_lots where expires_at > now()") == 4
    assert scalar(db, "select count(*) from credit_pools where allocation_policy = 'rollover'") == 3
    assert scalar(db, "select count(*) from credit_pools where low_balance_threshold is not null") >= 5
    assert scalar(db, "select count(*) from plan_versions where plan = 'starter' and effective_at > now()") == 1
    assert scalar(db, "select count(*) from billing_period_runs where finished_at is not null") == 1
    assert scalar(db, "select count(*) from billing_periods") == 40

    # names that are quotes, HTML and script tags, stored as they are
    assert scalar(db, "select count(*) from organizations where name like '%<script>%' and name like '%\"%'") == 1
    assert scalar(db, "select count(*) from users where display_name like '%<script>%'"
                      " and display_name like '%''%'") == 1

    # the printed logins work and fit their roles
    logins = parse_logins(out)
    assert set(logins) == {"system admin", "org admin", "member", "multi-org user"}
    users = {}
    for role, (email, password) in logins.items():
        assert password == demo.DEMO_PASSWORD
        user_id, hashed, is_admin = fetch(db, "select id, password_hash, is_system_admin from users"
                                              " where email = :e", {"e": email})[0]
        assert auth.password_matches(password, hashed)
        assert is_admin == (role == "system admin")
        users[role] = user_id

    def roles(user_id: str) -> list:
        return fetch(db, "select org_id, role from organization_members where user_id = :u", {"u": user_id})

    assert [r.role for r in roles(users["org admin"])] == ["admin"]
    assert [r.role for r in roles(users["member"])] == ["member"]
    multi = roles(users["multi-org user"])
    assert len(multi) == 3 and {r.role for r in multi} == {"member"}
    for role in ("member", "multi-org user"):
        used_in = scalar(db, "select count(distinct org_id) from credit_usage_attribution where user_id = :u"
                             " and created_at >= now() - interval '30 days'", u=users[role])
        assert used_in == len(roles(users[role]))
    assert demo.demo_logins(db) == [
        demo.Login(role, users[role], logins[role][0], organizations.get_user(db, users[role]).display_name)
        for role in ("system admin", "org admin", "member", "multi-org user")
    ]

    # the ledger is sound, and a second load is refused in one line, changing nothing
    assert ledger.verify(db) == []
    verified = billing_verify(db_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    before = snapshot(db)
    code, out, err = run_cli("demo")
    assert (code, out) == (1, "")
    assert err.startswith("billing: refused: The database already has organizations") and err.count("\n") == 1
    assert snapshot(db) == before


def now_minus(db, **delta) -> datetime:
    return scalar(db, "select now()") - timedelta(**delta)


# --------------------------------------------------------------------------- small loads


def fingerprint(db) -> dict[str, str]:
    """A digest of every table the demo fills, leaving out generated ids and the time of the load."""
    queries = {
        "users": "select id, email, display_name, is_system_admin from users",
        "organizations": "select id, name, status from organizations",
        "members": "select org_id, user_id, role, is_default from organization_members",
        "subscriptions": "select org_id, plan, status, price_amount, billing_cycle, created_at, canceled_at"
                         " from organization_subscriptions",
        "pools": "select org_id, total_credits, allocated_credits, closed_used_credits from credit_pools",
        "allocations": "select org_id, user_id, allocated_credits, used_credits, is_active from user_credit_allocations",
        "usage": "select org_id, user_id, credits_used, service_type, service_name, request_id, metadata,"
                 " remaining_after, created_at from credit_usage_attribution",
        "history": "select org_id, event_type, credits, amount, description, external_ref,"
                   " case when created_at < recorded_at then created_at end from org_billing_history",
    }
    return {
        name: hashlib.sha256(
            "\n".join(sorted(repr(tuple(r)) for r in fetch(db, q))).encode()
        ).hexdigest()
        for name, q in queries.items()
    }


def test_two_loads_in_two_databases_are_identical(db, second_db_url):
    report = demo.load(db, **SMALL)
    other = database.get_engine(second_db_url)
    demo.load(other, **SMALL)
    assert fingerprint(db) == fingerprint(other)
    assert report.usage_rows == scalar(db, "select count(*) from credit_usage_attribution") > 500
    assert ledger.verify(db) == []


def test_the_seed_decides_the_data(db):
    calls = demo.plan(**SMALL)  # no database: the calls, not what they cost
    assert calls.usage == demo.plan(**SMALL).usage
    assert calls.usage != demo.plan(demo.DEFAULT_SEED + 1, **SMALL).usage
    assert {u.credits for u in calls.usage} == {None} and calls.allocations == calls.purchases == []

    planned = demo.plan(**SMALL, price=lambda usage: demo.engine_prices(db, usage))
    demo.load(db, **SMALL)
    assert scalar(db, "select sum(credits_used) from credit_usage_attribution") == sum(u.credits for u in planned.usage)
    # the engine priced every call: the attribution row carries its arithmetic
    assert scalar(db, "select count(*) from credit_usage_attribution where not metadata ? 'pricing'") == 0


def test_a_database_with_organizations_is_refused(db, org):
    before = snapshot(db)
    with pytest.raises(demo.DatabaseNotEmpty, match="already has organizations"):
        demo.load(db, **SMALL)
    assert snapshot(db) == before


def test_a_failed_load_leaves_nothing_behind(db):
    # the demo's system admin email is taken: the load fails midway and rolls back whole
    organizations.create_user(db, None, "someone", demo.SYSADMIN_EMAIL.upper())
    before = snapshot(db)
    with pytest.raises(AlreadyExists, match="nothing was written"):
        demo.load(db, **SMALL)
    assert snapshot(db) == before
    assert scalar(db, "select count(*) from organizations") == 0


# --------------------------------------------------------------------------- billing start


def test_start_against_database_url_never_loads_the_demo(db, db_url, run_cli, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    code, out, err = run_cli("start")
    assert code == 0, err
    assert "`billing demo` loads the demo data set" in out
    assert "password" not in out
    assert scalar(db, "select count(*) from organizations") == 0


@pytest.mark.slow
def test_start_loads_the_demo_into_an_empty_embedded_database_once(run_cli, monkeypatch):
    folder = Path(tempfile.mkdtemp(prefix="billing-test-start-"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("BILLING_DATA_DIR", str(folder / "data"))
    small = {k: v for k, v in SMALL.items() if k != "days"}
    monkeypatch.setattr(demo, "load", functools.partial(demo.load, **SMALL))
    monkeypatch.setattr(demo, "demo_logins", functools.partial(demo.demo_logins, **{
        k: v for k, v in small.items() if k != "anchor"}))
    url = None
    try:
        code, out, err = run_cli("start")
        assert code == 0, err
        assert "Empty database: loading the demo data set" in out
        first = parse_logins(out)
        assert set(first) == {"system admin", "org admin", "member", "multi-org user"}
        url = database.database_url()
        engine = database.get_engine(url)
        assert scalar(engine, "select count(*) from organizations") == 8
        # started again: nothing loaded twice, the same logins shown while their password is unchanged
        code, out, err = run_cli("start")
        assert code == 0, err
        assert "loading" not in out.lower()
        assert parse_logins(out) == first
        assert scalar(engine, "select count(*) from organizations") == 8
        assert ledger.verify(engine) == []
    finally:
        if url:
            database.dispose_engine(url)
        run_cli("db", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def test_the_demo_lives_beside_the_domain_and_only_the_command_loads_it():
    """Demo data generation is no part of billing_core: only the `billing` command (cli) imports it."""
    core = Path(database.__file__).parent
    assert not (core / "demo.py").exists()
    importers = sorted(path.name for path in core.glob("*.py") if "billing_demo" in path.read_text())
    assert importers == ["cli.py"]
    assert Path(demo.__file__).parent.name == "billing_demo"
