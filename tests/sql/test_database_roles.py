"""Database roles (issue 8, finding 7): each role connects and is refused what it must not do.

The `db` fixture is the owner's connection (the operator). `app_db` is the app's engine (the same
login after SET ROLE billing_app, as app.py and `billing --as` use it); `service_db` logs in as a
metered service's own login, created with billing_core.roles (what `billing db service-login` runs).
The embedded test server trusts local socket connections, so the generated password is not checked
here; the login, its role memberships and its grants are the real thing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal as D

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from billing_core import charging, cli, credits, database, orders, roles
from billing_core.database import call, fetch
from billing_core.errors import PermissionDenied
from billing_core.pricing import Usage

GPT4O = Usage("llm", "gpt-4o", 1000, 500)
SERVICE_FUNCTIONS = {
    "has_sufficient_credits", "deduct_credits", "charge_usage", "reserve_credits", "settle_hold",
    "settle_usage", "release_hold", "price_usage", "charge_credits", "charge_usage_batch",
}
SECRETS = [
    "select * from app_settings",
    "select password_hash from users",
    "select * from users",
    "select * from user_sessions",
    "select * from login_credentials",
]


@pytest.fixture
def app_db(db_url: str) -> Engine:
    """The app's engine on this test's database (SET ROLE billing_app); disposed by db_url."""
    return database.app_engine(db_url)


@pytest.fixture
def service_login(db_url: str) -> Iterator[roles.ServiceLogin]:
    """A metered service's login on this test's server (roles are cluster-wide: dropped afterwards)."""
    login = roles.service_login(db_url, f"svc_{uuid.uuid4().hex[:10]}")
    yield login
    database.dispose_engine(login.url)
    roles.drop_service_login(db_url, login.name)


@pytest.fixture
def service_db(service_login: roles.ServiceLogin) -> Engine:
    """An engine logged in as the service login."""
    return database.get_engine(service_login.url)


@pytest.fixture
def ready(db, funded_org):
    """user-1 holds 1,000 credits of the 10,000-credit pool of test-org-001."""
    credits.allocate(db, funded_org.admin, funded_org.id, "user-1", 1_000)
    return funded_org


def ledger_counts(db: Engine) -> tuple:
    return tuple(fetch(db, "select (select count(*) from org_billing_history), (select count(*) from audit_log),"
                           " (select total_credits from credit_pools where org_id = 'test-org-001'),"
                           " (select count(*) from user_credit_allocations), (select count(*) from users),"
                           " (select count(*) from organization_subscriptions)")[0])


def refused(db: Engine, statement: str, params: dict | None = None) -> str:
    """The message of the refusal `statement` meets on `db` (fails the test when it is accepted)."""
    with pytest.raises((PermissionDenied, sa.exc.ProgrammingError)) as caught:
        fetch(db, statement, params)
    return str(caught.value)


# -- who is the operator ---------------------------------------------------------------------------------


def test_only_the_owners_own_connection_is_the_operator(db, app_db, service_db):
    assert call(db, "select ledger_is_operator()") is True
    assert call(app_db, "select current_user") == roles.APP_ROLE
    assert "permission denied" in refused(app_db, "select ledger_is_operator()")  # helpers run inside functions only
    # a SECURITY DEFINER function runs as the owner, yet still sees the caller's SET ROLE: no operator there
    assert call(app_db, "select app_setting('test.probe', 'x')") == "x"
    assert "operator action" in refused(app_db, "select * from org_billing_summaries(null)")
    assert "permission denied" in refused(service_db, "select ledger_is_operator()")


def test_a_null_actor_still_works_for_the_operator(db, org):
    assert credits.add_credits(db, None, org.id, 500, D("0.5")) == 500
    assert credits.allocate(db, None, org.id, "user-1", 100) == 100


# -- the metered service --------------------------------------------------------------------------------


def test_service_login_charges_through_the_charging_functions(db, ready, service_db):
    org = ready.id
    assert credits.has_sufficient_credits(service_db, org, "user-1", 50) is True
    assert credits.deduct(service_db, org, "user-1", 50, "company_enrichment", "enrich", request_id="d-1") == 950
    charge = charging.charge_usage(service_db, "user-1", GPT4O, org_id=org, request_id="c-1")
    assert charge.credits == D("11.25")
    assert charging.reserve(service_db, "user-1", 100, "h-1", "llm", "gpt-4o", org_id=org).credits == 100
    assert charging.settle(service_db, org, "h-1", 40).credits == 40
    charging.reserve(service_db, "user-1", 100, "h-2", "llm", "gpt-4o", org_id=org)
    assert charging.settle_usage(service_db, org, "h-2", input_tokens=1000, output_tokens=500).credits == D("11.25")
    charging.reserve(service_db, "user-1", 100, "h-3", "llm", "gpt-4o", org_id=org)
    charging.release(service_db, org, "h-3")
    assert call(service_db, "select credits from price_usage(:o, 'llm', 'gpt-4o', 1000, 500, 0, 1, false, null)",
                {"o": org}) == D("11.25")
    used = call(db, "select used_credits from user_credit_allocations where user_id = 'user-1' and is_active")
    assert used == D("50") + D("11.25") + D("40") + D("11.25")


@pytest.mark.parametrize("statement", [
    "select add_credits_to_pool('test-org-001', 1000000, 0)",
    "select add_credits_to_pool('test-org-001', 1000000, 0, 'admin-1')",
    "select allocate_credits_to_user('test-org-001', 'user-1', 100, null)",
    "select allocate_credits_to_user('test-org-001', 'user-1', 100, 'admin-1')",
    "select reclaim_credits_from_user('test-org-001', 'user-1', null, 'admin-1')",
    "select * from top_up_personal_balance('user-1', 1000, 0, 'user-1')",
    "select create_subscription('test-org-001', 'platform')",
    "select set_subscription_status('test-org-001', 'canceled')",
    "select create_user('mallory', 'mallory@example.com', 'Mallory', true)",
    "call run_billing_periods(null, null)",
    "select release_expired_holds(null)",
    "select * from ledger_violations(null)",
    "select app_setting('login.cookie_key', 'guess')",
    "update user_credit_allocations set used_credits = 0",
    "update credit_pools set total_credits = total_credits + 1000000",
    "insert into audit_log (action, target_type, target_id) values ('x', 'y', 'z')",
])
def test_service_login_may_not_change_money_or_state(db, ready, service_db, statement):
    before = ledger_counts(db)
    assert "permission denied" in refused(service_db, statement)
    assert ledger_counts(db) == before


def test_service_login_reads_no_table_view_or_secret(db, service_db):
    relations = [name for (name,) in fetch(
        db, "select c.relname from pg_class c where c.relnamespace = 'public'::regnamespace"
            " and c.relkind in ('r', 'v', 'm') order by 1")]
    assert "app_settings" in relations and "user_credit_allocations" in relations
    for name in relations:
        assert "permission denied" in refused(service_db, f'select 1 from "{name}" limit 1'), name


def test_service_role_executes_exactly_the_charging_functions(db, service_login):
    granted = {name for (name,) in fetch(
        db,
        "select distinct p.proname from pg_proc p where p.pronamespace = 'public'::regnamespace"
        " and has_function_privilege(:login, p.oid, 'EXECUTE')",
        {"login": service_login.name},
    )}
    assert granted == SERVICE_FUNCTIONS
    tables = fetch(
        db,
        "select c.relname from pg_class c where c.relnamespace = 'public'::regnamespace"
        " and (has_table_privilege(:login, c.oid, 'SELECT,INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER')"
        "      or (c.relkind = 'S' and has_sequence_privilege(:login, c.oid, 'USAGE,SELECT,UPDATE')))",
        {"login": service_login.name},
    )
    assert tables == []


# -- the app ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("statement", [
    "select add_credits_to_pool('test-org-001', 1000000, 0)",
    "select allocate_credits_to_user('test-org-001', 'user-1', 100, null)",
    "select allocate_credits_to_users('test-org-001', array['user-1'], 100, null)",
    "select reclaim_credits_from_user('test-org-001', 'user-1', null, null)",
    "select remove_organization_member('test-org-001', 'user-1', null)",
    "select * from top_up_personal_balance('user-1', 1000, 0, null)",
    "select create_subscription('test-org-001', 'platform')",
    "select set_subscription_status('test-org-001', 'canceled')",
    "select create_organization('evil', 'Evil Inc')",
    "select create_user('mallory', 'mallory@example.com', 'Mallory', true)",
    "select add_organization_member('test-org-001', 'user-1', 'admin')",
    "select set_member_role('test-org-001', 'user-1', 'admin', null)",
    "select set_low_balance_threshold('test-org-001', 10, null)",
    "select change_user_password('user-1', '$2b$12$' || repeat('a', 53), null)",
])
def test_app_role_refuses_a_null_actor_on_every_money_function(db, funded_org, app_db, statement):
    before = ledger_counts(db)
    assert "only accepted on the database owner's connection" in refused(app_db, statement)
    assert ledger_counts(db) == before


@pytest.mark.parametrize("statement", [
    "call run_billing_periods(null, null)",
    "select release_expired_holds(null)",
    "select * from ledger_violations(null)",
    "select deduct_credits('test-org-001', 'user-1', 1, 'company_enrichment', 'x')",
    "update user_credit_allocations set used_credits = 0",
    "update credit_pools set total_credits = total_credits + 1000000",
    "insert into organization_members (org_id, user_id, role) values ('test-org-001', 'user-1', 'admin')",
    "delete from credit_usage_attribution",
    "update users set is_system_admin = true",
    *SECRETS,
])
def test_app_role_may_not_run_operator_jobs_write_tables_or_read_secrets(db, ready, app_db, statement):
    before = ledger_counts(db)
    assert "permission denied" in refused(app_db, statement)
    assert ledger_counts(db) == before


def test_app_role_writes_no_table_and_reads_none_but_through_functions(db, app_db, org):
    writable = fetch(
        db,
        "select c.relname from pg_class c where c.relnamespace = 'public'::regnamespace"
        " and c.relkind in ('r', 'v', 'S') and (has_table_privilege('billing_app', c.oid, 'INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER')"
        "      or (c.relkind = 'S' and has_sequence_privilege('billing_app', c.oid, 'USAGE,UPDATE')))",
    )
    assert writable == []
    readable = fetch(
        db,
        "select c.relname from pg_class c where c.relnamespace = 'public'::regnamespace"
        " and c.relkind in ('r', 'v', 'm') and (has_table_privilege('billing_app', c.oid, 'SELECT')"
        "      or has_any_column_privilege('billing_app', c.oid, 'SELECT'))",
    )
    assert readable == []  # every read is a function that authorizes its actor
    assert "permission denied" in refused(app_db, "select email from users where id = 'admin-1'")
    assert "permission denied" in refused(app_db, "select is_system_admin from users where id = 'admin-1'")
    assert call(app_db, "select email from user_account('admin-1')") == "admin-1@example.com"
    assert call(db, "select has_column_privilege('billing_app', 'users', 'password_hash', 'SELECT')") is False


def test_app_role_does_what_the_screens_do_with_an_acting_user(db, org, app_db):
    order = orders.create_order(app_db, org.admin, org.id, credits=1_000)  # the screen's "Buy credits"
    with pytest.raises(PermissionDenied, match="only a system admin or the operator"):
        credits.add_credits(app_db, org.admin, org.id, 1_000, 1)
    orders.record_payment(db, None, order.id, "INV-APP-ROLE-1")  # the operator records the payment
    assert credits.allocate(app_db, org.admin, org.id, "user-1", 100) == 100
    assert credits.reclaim(app_db, org.admin, org.id, "user-1", 40) == 40
    with pytest.raises(PermissionDenied, match="not an admin"):
        credits.allocate(app_db, "user-2", org.id, "user-2", 100)


def test_every_function_the_app_or_a_service_may_run_is_security_definer_with_a_pinned_search_path(db):
    loose = fetch(
        db,
        "select p.oid::regprocedure::text from pg_proc p where p.pronamespace = 'public'::regnamespace"
        " and (has_function_privilege('billing_app', p.oid, 'EXECUTE')"
        "      or has_function_privilege('billing_service', p.oid, 'EXECUTE'))"
        " and p.proname not like 'ledger\\_%'"
        " and not (p.prosecdef and p.proconfig @> array['search_path=pg_catalog, public, pg_temp'])",
    )
    assert loose == []
    public = fetch(db, "select p.oid::regprocedure::text from pg_proc p where p.pronamespace = 'public'::regnamespace"
                       " and has_function_privilege('public', p.oid, 'EXECUTE')")
    assert public == []


# -- the commands -----------------------------------------------------------------------------------------


def test_cli_creates_rotates_and_drops_a_service_login(db_url, db, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", db_url)
    name = f"svc_cli_{uuid.uuid4().hex[:8]}"
    try:
        assert cli.main(["db", "service-login", name]) == 0
        out = capsys.readouterr().out
        assert f"Created service login {name}" in out and "Password (shown once): " in out
        url = out.split("Connect with: ", 1)[1].strip()
        service = database.get_engine(url)
        assert call(service, "select session_user") == name
        price = "select credits from price_usage(null, 'company_enrichment', 'enrich', 0, 0, 0, 1, false, null)"
        assert call(service, price) == 50
        database.dispose_engine(url)
        assert cli.main(["db", "service-login", name]) == 0
        assert "Rotated the password" in capsys.readouterr().out
        # a role that is not a service login is never touched
        assert cli.main(["db", "service-login", "billing_app"]) == 1
        assert cli.main(["db", "roles"]) == 0
        assert "already in place" in capsys.readouterr().out
    finally:
        assert cli.main(["db", "service-login", name, "--drop"]) == 0
    assert f"Dropped service login {name}" in capsys.readouterr().out
    assert call(db, "select count(*) from pg_roles where rolname = :n", {"n": name}) == 0


def test_cli_as_a_user_runs_on_the_app_role(db_url, funded_org, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert cli.main(["--as", funded_org.admin, "credits", "allocate", funded_org.id, "user-1", "10"]) == 0
    capsys.readouterr()
    assert cli.main(["--as", funded_org.admin, "periods", "run"]) == 1  # the period job is the operator's
    assert "operator action" in capsys.readouterr().err
    assert cli.main(["--as", funded_org.admin, "verify"]) == 1
    assert cli.main(["verify"]) == 0


def test_an_owner_without_the_right_to_grant_roles_is_told_what_to_run(pg_server):
    """A migrating login that is neither superuser nor allowed to grant the roles: migrate stops and names
    `billing db roles`; once a superuser ran it, migrate passes and the app engine runs as billing_app."""
    import psycopg
    from psycopg import sql as pgsql

    from billing_core import migrations
    from billing_core.errors import MigrationError

    owner, name = f"owner_{uuid.uuid4().hex[:8]}", f"billing_owned_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(pgsql.SQL("create role {} login createdb").format(pgsql.Identifier(owner)))
        conn.execute(pgsql.SQL("create database {} owner {}").format(pgsql.Identifier(name), pgsql.Identifier(owner)))
    admin_url = pg_server.url_for(name)
    owner_url = sa.engine.make_url(admin_url).set(username=owner).render_as_string(hide_password=False)
    try:
        with pytest.raises(MigrationError, match=f"Run `billing db roles --owner {owner}` once"):
            migrations.migrate(owner_url)
        assert {f"granted billing_app to {owner}", f"granted billing_service to {owner} with admin option"} <= set(
            roles.prepare_roles(admin_url, owner))  # (and the roles created, when no migration ran on this server yet)
        assert migrations.migrate(owner_url).changed
        assert call(database.get_engine(owner_url), "select ledger_is_operator()") is True
        assert call(database.app_engine(owner_url), "select current_user") == roles.APP_ROLE
        assert "operator action" in refused(database.app_engine(owner_url), "select * from org_billing_summaries(null)")
        with pytest.raises(PermissionDenied, match="needs CREATEROLE"):  # this owner may not create logins
            roles.service_login(owner_url, f"svc_{uuid.uuid4().hex[:8]}")
        login = roles.service_login(admin_url, f"svc_{uuid.uuid4().hex[:8]}")
        service = database.get_engine(login.url)
        assert call(service, "select has_function_privilege('deduct_credits(text, text, numeric, text, text, text,"
                             " jsonb, timestamptz)', 'EXECUTE')") is True
        database.dispose_engine(login.url)
        assert roles.drop_service_login(admin_url, login.name)
    finally:
        database.dispose_engine(owner_url)
        pg_server.drop_database(name)
        with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
            conn.execute(pgsql.SQL("drop owned by {}").format(pgsql.Identifier(owner)))
            conn.execute(pgsql.SQL("drop role {}").format(pgsql.Identifier(owner)))
