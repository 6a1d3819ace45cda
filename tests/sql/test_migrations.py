"""Migrations: a fresh database gets the whole schema once; edits, re-runs and races are handled.

Also: the plain INSERTs an integrator writes (organizations, users, members)
work with defaults for every other column, and the credit functions work on
such rows (the pool row is created on demand).
"""

from __future__ import annotations

import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from billing_core import credits, ledger, migrations, reports
from billing_core.database import PROJECT_ROOT, fetch
from billing_core.errors import InsufficientPoolCredits, MigrationError

SQL = PROJECT_ROOT / "sql"

TABLES = {
    "organizations", "users", "organization_members", "credit_pools", "user_credit_allocations",
    "credit_allocation_events", "credit_usage_attribution", "org_billing_history",
    "organization_subscriptions", "audit_log", "schema_migrations", "plans", "plan_versions",
    "user_sessions", "app_settings", "model_prices", "service_prices", "platform_pricing_rules",
    "org_pricing_overrides", "credit_packages", "credit_holds",
    "credit_lots", "billing_periods", "billing_period_runs", "credit_alerts", "organization_invitations",
    "credit_orders", "ledger_rules_since", "credit_requests",
    "api_keys", "api_key_organizations", "api_key_rate_windows",
}
VIEWS = {
    "organization_credit_pools", "user_multi_org_credits", "top_credit_users_by_org",
    "org_billing_metrics", "org_billing_summary", "login_credentials",
}
# the functions integrators and billing_core call by name (README, billing_core/*)
KEY_FUNCTIONS = {
    "add_credits_to_pool", "allocate_credits_to_user", "allocate_credits_to_users", "reclaim_credits_from_user",
    "deduct_credits", "has_sufficient_credits", "remove_organization_member", "create_organization",
    "create_user", "add_organization_member", "set_member_role", "set_default_organization",
    "ledger_violations", "ledger_authorize", "ledger_role_in", "ledger_require_org",
    "create_subscription", "set_subscription_status", "create_organization_with_plan",
    "create_credit_order", "record_order_payment", "cancel_credit_order", "grant_credits",
    "create_api_key", "revoke_api_key", "api_keys_of", "api_key_authorize",
}


def files(kind: str, root: Path = SQL) -> list[str]:
    return [f"{kind}/{p.name}" for p in sorted((root / kind).glob("*.sql"))]


def functions_in_files(root: Path = SQL) -> set[str]:
    """Every function the routine files create."""
    names = set()
    for path in (root / "routines").glob("*.sql"):
        names |= set(re.findall(r"create (?:or replace )?function\s+(\w+)\s*\(", path.read_text(), re.IGNORECASE))
    return names


def schema(url: str) -> dict[str, set[str]]:
    """The tables, views and functions of the public schema."""
    with psycopg.connect(url) as conn:
        tables = {r[0] for r in conn.execute(
            "select table_name from information_schema.tables"
            " where table_schema = 'public' and table_type = 'BASE TABLE'")}
        views = {r[0] for r in conn.execute(
            "select table_name from information_schema.views where table_schema = 'public'")}
        functions = {r[0] for r in conn.execute(
            "select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
            " where n.nspname = 'public'")}
    return {"tables": tables, "views": views, "functions": functions}


def applied(url: str) -> list[tuple]:
    """schema_migrations as it stands: (name, kind, checksum, applied_at), by name."""
    with psycopg.connect(url) as conn:
        return conn.execute("select name, kind, checksum, applied_at from schema_migrations order by name").fetchall()


@pytest.fixture
def empty_database(pg_server) -> Iterator[str]:
    """A brand-new database (no template): nothing in it, not even schema_migrations."""
    name = f"billing_empty_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name)
    yield url
    pg_server.drop_database(name)


@pytest.fixture
def sql_copy(tmp_path, monkeypatch) -> Path:
    """A copy of sql/ that billing_core.migrations reads instead of the real one."""
    copy = tmp_path / "sql"
    shutil.copytree(SQL, copy)
    monkeypatch.setattr(migrations, "SQL_DIR", copy)
    return copy


def test_empty_database_gets_every_table_view_and_function(empty_database):
    assert schema(empty_database)["tables"] == set()

    report = migrations.migrate(empty_database)

    assert report.changed
    assert report.migrations == files("migrations")
    assert report.routines == files("routines")
    found = schema(empty_database)
    assert found["tables"] == TABLES
    assert found["views"] == VIEWS
    assert KEY_FUNCTIONS <= functions_in_files()
    assert functions_in_files() <= found["functions"]
    rows = applied(empty_database)
    assert [(name, kind) for name, kind, *_ in rows] == sorted(
        [(n, "migration") for n in files("migrations")] + [(n, "routine") for n in files("routines")]
    )
    # a freshly migrated, empty ledger is sound
    with psycopg.connect(empty_database) as conn:
        assert conn.execute("select count(*) from ledger_violations()").fetchone()[0] == 0


def test_second_run_changes_nothing(empty_database):
    migrations.migrate(empty_database)
    before, schema_before = applied(empty_database), schema(empty_database)

    report = migrations.migrate(empty_database)

    assert not report.changed
    assert (report.migrations, report.routines) == ([], [])
    assert applied(empty_database) == before  # not even applied_at moved
    assert schema(empty_database) == schema_before


def test_edited_migration_is_refused_and_nothing_is_applied(empty_database, sql_copy):
    migrations.migrate(empty_database)  # from the (identical) copy
    before = applied(empty_database)
    first = min((sql_copy / "migrations").glob("*.sql"))
    first.write_text(first.read_text() + "\ncreate table sneaky_edit (id int);\n")
    # a new migration and a changed routine wait behind the edited file: neither may land
    (sql_copy / "migrations" / "9998_new.sql").write_text("create table should_not_appear (id int);\n")
    routine = min((sql_copy / "routines").glob("*.sql"))
    routine.write_text(routine.read_text() + "\n-- edited\n")

    with pytest.raises(MigrationError) as caught:
        migrations.migrate(empty_database)

    message = str(caught.value)
    assert f"migrations/{first.name}" in message and "forward-only" in message
    assert applied(empty_database) == before
    tables = schema(empty_database)["tables"]
    assert "sneaky_edit" not in tables and "should_not_appear" not in tables


def test_new_migration_is_applied_once(db_url, sql_copy):
    (sql_copy / "migrations" / "9999_probe.sql").write_text(
        "create table migration_probe (id text primary key);\ninsert into migration_probe values ('once');\n"
    )
    report = migrations.migrate(db_url)
    assert (report.migrations, report.routines) == (["migrations/9999_probe.sql"], [])

    assert not migrations.migrate(db_url).changed
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select id from migration_probe").fetchall() == [("once",)]


def test_changed_routine_is_reapplied(db_url, sql_copy):
    before = {name: (checksum, at) for name, _, checksum, at in applied(db_url)}
    routine = sql_copy / "routines" / "030_credit_purchases.sql"
    routine.write_text(
        routine.read_text()
        + "\ncreate or replace function migration_probe() returns int language sql as $$ select 42 $$;\n"
    )

    report = migrations.migrate(db_url)

    # every routine file is re-applied, in name order; no migration runs again
    assert report.migrations == []
    assert report.routines == files("routines", sql_copy)
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select migration_probe()").fetchone()[0] == 42
    after = {name: (checksum, at) for name, _, checksum, at in applied(db_url)}
    assert after["routines/030_credit_purchases.sql"][0] != before["routines/030_credit_purchases.sql"][0]
    for name in files("migrations"):
        assert after[name] == before[name]
    # views were dropped and recreated along the way: they still answer
    with psycopg.connect(db_url) as conn:
        conn.execute("select * from organization_credit_pools, user_multi_org_credits limit 1")
    assert schema(db_url)["views"] == VIEWS
    assert not migrations.migrate(db_url).changed


def test_broken_routine_rolls_back_everything(db_url, sql_copy):
    before, schema_before = applied(db_url), schema(db_url)
    (sql_copy / "routines" / "045_broken.sql").write_text("create or replace function oops( returns;\n")
    (sql_copy / "migrations" / "9999_probe.sql").write_text("create table migration_probe (id int);\n")

    with pytest.raises(MigrationError, match="Migration failed"):
        migrations.migrate(db_url)

    assert applied(db_url) == before
    assert schema(db_url) == schema_before  # the new table went with the rollback; views still there


@pytest.mark.parametrize("round_", range(3))
def test_two_migrators_at_once_apply_the_schema_once(empty_database, round_):
    start = threading.Barrier(2)
    reports_, errors = [], []

    def run() -> None:
        try:
            start.wait(timeout=10)
            reports_.append(migrations.migrate(empty_database))
        except Exception as exc:  # noqa: BLE001 -- collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(reports_) == 2
    # one of them applied everything, the other found it done
    assert sorted(r.changed for r in reports_) == [False, True]
    done = next(r for r in reports_ if r.changed)
    assert (done.migrations, done.routines) == (files("migrations"), files("routines"))
    rows = applied(empty_database)
    assert len(rows) == len(files("migrations")) + len(files("routines"))
    assert schema(empty_database)["tables"] == TABLES


# --------------------------------------------------------------------------- integrators' plain inserts


def test_plain_inserts_take_defaults_and_the_credit_functions_work_on_them(db, db_url):
    with psycopg.connect(db_url) as conn:
        conn.execute("insert into organizations (id, name) values ('plain-org', 'Plain Org')")
        conn.execute("insert into users (id, email) values ('plain-admin', 'admin@plain.example')")
        conn.execute("insert into users (id, email) values ('plain-user', 'user@plain.example')")
        conn.execute(
            "insert into organization_members (org_id, user_id, role) values"
            " ('plain-org', 'plain-admin', 'admin'), ('plain-org', 'plain-user', 'member')"
        )
        org = conn.execute(
            "select status, created_at is not null, updated_at is not null from organizations"
        ).fetchone()
        user = conn.execute(
            "select display_name, is_system_admin, password_hash, created_at is not null from users"
            " where id = 'plain-user'"
        ).fetchone()
        member = conn.execute(
            "select is_default, joined_at is not null from organization_members where user_id = 'plain-user'"
        ).fetchone()
    assert org == ("active", True, True)
    assert user == (None, False, None, True)
    assert member == (False, True)

    def pool_rows():
        return fetch(db, "select count(*) from credit_pools where org_id = 'plain-org'")[0][0]

    # no pool row yet: the pool reads as empty, and a refused allocation leaves no pool behind
    assert pool_rows() == 0
    assert reports.pool(db, "plain-admin", "plain-org").total_credits == 0
    with pytest.raises(InsufficientPoolCredits):
        credits.allocate(db, "plain-admin", "plain-org", "plain-user", 1)
    assert pool_rows() == 0

    # the stored functions, called in SQL as another service would
    total = fetch(db, "select add_credits_to_pool('plain-org', 1000, 1)")[0][0]
    assert total == 1000
    assert pool_rows() == 1
    assert fetch(db, "select allocate_credits_to_user('plain-org', 'plain-user', 300, 'plain-admin')")[0][0] == 300
    remaining = fetch(
        db, "select deduct_credits('plain-org', 'plain-user', 12.5, 'llm', 'gpt-4o', 'plain-req-1')"
    )[0][0]
    assert remaining == Decimal("287.5")
    # and through billing_core: a retry answers the same and charges once
    assert credits.deduct(db, "plain-org", "plain-user", "12.5", "llm", "gpt-4o", request_id="plain-req-1") == Decimal(
        "287.5"
    )

    pool = reports.pool(db, "plain-admin", "plain-org")
    assert (pool.total_credits, pool.allocated_credits, pool.used_credits, pool.available_credits) == (
        1000, 300, Decimal("12.5"), 700,
    )
    mine = reports.my_credits(db, "plain-user")
    assert list(mine.org_id) == ["plain-org"]
    assert (mine.iloc[0].remaining_credits, mine.iloc[0].role) == (Decimal("287.5"), "member")
    row = fetch(db, "select display_name from user_multi_org_credits where user_id = 'plain-user'")[0]
    assert row.display_name == "user@plain.example"  # no display name: the email stands in
    assert ledger.verify(db) == []
