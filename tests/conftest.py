"""Test harness: a real PostgreSQL for the whole session, a fresh database per test.

With DATABASE_URL set, that server is used (the role needs CREATEDB);
otherwise an embedded server starts in a temporary folder. A template database
is migrated once; each test gets a clone of it, which takes milliseconds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql as pgsql
from sqlalchemy.engine import Engine, make_url

from billing_core import database, migrations, orders, organizations

TEMPLATE = f"billing_test_template_{os.getpid()}"


@dataclass(frozen=True)
class Server:
    """A PostgreSQL server the tests may create databases on."""

    admin_url: str  # a URL to an existing database, for CREATE/DROP DATABASE

    def url_for(self, name: str) -> str:
        """The URL of database `name` on this server."""
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database `name` (optionally cloned from `template`); returns its URL."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            statement = pgsql.SQL("create database {}").format(pgsql.Identifier(name))
            if template:
                statement = pgsql.SQL("create database {} template {}").format(
                    pgsql.Identifier(name), pgsql.Identifier(template)
                )
            conn.execute(statement)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database `name`, closing whatever is still connected to it."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(pgsql.SQL("drop database if exists {} with (force)").format(pgsql.Identifier(name)))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    """The session's PostgreSQL server (DATABASE_URL's, or an embedded one)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield Server(url)
        return
    # not under pytest's tmp folder: a second pytest run resets it to mode 700,
    # which would lock out the server's own system user (when run as root)
    folder = Path(tempfile.mkdtemp(prefix="billing-test-pg-"))
    server = database.embedded_server(folder / "data", stop_on_exit=True)
    admin_url = server.get_uri("postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        # a throwaway server: durability on disk buys nothing, speed does
        conn.execute("alter system set fsync = off")
        conn.execute("alter system set synchronous_commit = off")
        conn.execute("select pg_reload_conf()")
    yield Server(admin_url)
    server.cleanup()  # stops the server
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def template_database(pg_server: Server) -> Iterator[str]:
    """A migrated database that every test's database is cloned from."""
    pg_server.drop_database(TEMPLATE)
    url = pg_server.create_database(TEMPLATE)
    migrations.migrate(url)
    yield TEMPLATE
    pg_server.drop_database(TEMPLATE)


@pytest.fixture
def db_url(pg_server: Server, template_database: str) -> Iterator[str]:
    """The URL of a fresh, migrated database for this test alone."""
    name = f"billing_test_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name, template=template_database)
    yield url
    database.dispose_engine(url)
    pg_server.drop_database(name)


@pytest.fixture
def db(db_url: str) -> Engine:
    """An engine on this test's fresh database."""
    return database.get_engine(db_url)


@dataclass(frozen=True)
class Org:
    """A small organization set up through the public functions."""

    id: str
    admin: str
    members: tuple[str, ...]


@pytest.fixture
def org(db: Engine) -> Org:
    """Organization test-org-001 with admin 'admin-1' and members 'user-1'..'user-3', empty pool."""
    organizations.create_organization(db, None, "test-org-001", "Test Org 001")
    organizations.create_user(db, None, "admin-1", "admin-1@example.com", "Ada Admin")
    organizations.add_member(db, None, "test-org-001", "admin-1", "admin")
    members = []
    for n in (1, 2, 3):
        user_id = f"user-{n}"
        organizations.create_user(db, None, user_id, f"{user_id}@example.com", f"Member {n}")
        organizations.add_member(db, None, "test-org-001", user_id)
        members.append(user_id)
    return Org("test-org-001", "admin-1", tuple(members))


@pytest.fixture
def funded_org(db: Engine, org: Org) -> Org:
    """`org` with 10,000 credits bought for $10: its admin's order, paid as recorded by the operator."""
    order = orders.create_order(db, org.admin, org.id, credits=10_000)
    orders.record_payment(db, None, order.id, f"PAY-{org.id}-funding")
    return org


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail a run in which no test passed: an empty or all-skipped suite proves nothing."""
    if hasattr(session.config, "workerinput"):
        return  # a pytest-xdist worker runs a share of the tests; the controller judges the whole run
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    passed = len(reporter.stats.get("passed", [])) if reporter else 0
    if exitstatus == 0 and passed == 0:
        if reporter:
            reporter.write_line("ERROR: no test passed; a suite that proves nothing fails.", red=True)
        session.exitstatus = 1
