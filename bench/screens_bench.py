"""How long each screen's server-side run takes with the demo data, and which query is the slowest.

README
======
Run from the repository root (a few minutes on 2 cores, most of it loading the demo):

    .venv/bin/python bench/screens_bench.py              # 5 warm runs of each kind per screen and role
    .venv/bin/python bench/screens_bench.py --runs 10    # more warm runs
    .venv/bin/python bench/screens_bench.py --keep       # keep the database (its URL is printed)
    .venv/bin/python bench/screens_bench.py --no-vacuum  # right after the load, before autovacuum

Where: an embedded PostgreSQL started in a temporary folder (stopped and deleted at the end), or,
with DATABASE_URL set, a scratch database `screens_bench_<pid>` created on that server (the role
needs CREATEDB) and dropped at the end. Either is migrated and gets the demo data through
billing_core.demo.load, the loader of `billing demo` (40 organizations, 300 users, ~65,000 calls
over 90 days). The embedded server runs with fsync and synchronous_commit off (the load is faster;
the screens only read). After the load the database is vacuumed, as autovacuum would do within a
minute or two (done at once, so that it cannot start in the middle of the measurements);
--no-vacuum measures the database as the loader leaves it, right after `billing demo`: its
index-only scans then still read the usage table's rows (about 1.7x the time of the
system-wide queries).

What: each screen under each role that may open it, with the organization app.py would choose
(the user's default one), the demo's own logins:
  member          My credits, Account
  org admin       My credits, Organization billing, Audit log, Account
  multi-org user  My credits, Account
  system admin    System overview, Organization billing (of the organization with the most usage
                  in 30 days: the heaviest), Audit log (all organizations), My credits, Account
A page runs alone with streamlit.testing.v1.AppTest, the way tests/screen_testing.py runs it
(session state seeded for a logged-in user; app.py's login and sidebar are not part of the run,
see "app.py shell" below), and the time is AppTest.run() (script + Streamlit, in this process):
  cold      a new browser session with every cached read cleared (Python modules already imported:
            the process's very first AppTest run, with its imports, is printed apart)
  cached    the same session run again, the screens' read cache (screen_kit.read, 30 s) as the app
            has it: what a user gets when they click again within 30 s
  uncached  the same session run again after clearing that cache: every read goes to the database
            again (what a user gets after 30 s, or after a write)
Database time: SQLAlchemy's before/after_cursor_execute events on the screens' engine time every
statement (cursor.execute, rows fetched included; BEGIN/COMMIT and the pool's ping are not
statements). `queries` and `db ms` are those of an uncached run; the slowest query of a screen is
the statement with the highest median time over its uncached runs. The verdict compares each
screen's median warm run with the 0.5 s target of issue 3, cached and uncached.

app.py shell: a real browser run also runs app.py (session check, roles, organization selector)
around the page. It is measured once per role as app.py + the Account page (the lightest page),
minus the Account page alone.

Exit status 0 when every screen ran without an exception or error box (target met or not), 3 when
one did not (its figures would mean nothing).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # billing_core, and screen_kit for the pages

import psycopg
import sqlalchemy as sa
import streamlit as st
from ledger_bench import cpu_times  # bench/, this script's folder
from psycopg import sql as pgsql
from streamlit import logger as streamlit_logger
from streamlit.testing.v1 import AppTest

import billing_demo as demo
from billing_core import analytics, auth, database, migrations


class _Harmless(logging.Filter):
    """Drops the two warnings this driver causes by touching Streamlit outside a script run."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "missing ScriptRunContext" not in message and "No runtime found" not in message


for _name in ("streamlit.runtime.scriptrunner_utils.script_run_context", "streamlit.runtime.caching.cache_data_api"):
    streamlit_logger.get_logger(_name).addFilter(_Harmless())

TARGET_SECONDS = 0.5
APP = REPO / "app.py"
TEXT_WIDTH = 80


# --------------------------------------------------------------------------- the database


@dataclass
class Scratch:
    """The database this run made, and how to remove it."""

    url: str
    remove: Callable[[], None]
    describe: str
    server_pid: int | None = None  # the postmaster, when this run started it


def embedded_scratch(keep: bool) -> Scratch:
    """An embedded server in a temporary folder, with database `billing` (left running when `keep`)."""
    folder = Path(tempfile.mkdtemp(prefix="screens-bench-pg-"))
    server = database.embedded_server(folder / "data", stop_on_exit=not keep)
    admin_url = server.get_uri("postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("alter system set fsync = off")
        conn.execute("alter system set synchronous_commit = off")
        conn.execute("select pg_reload_conf()")
    database.ensure_database(admin_url, database.DATABASE_NAME)

    def remove() -> None:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)

    pid_file = folder / "data" / "postmaster.pid"
    return Scratch(server.get_uri(database.DATABASE_NAME), remove,
                   f"embedded server in {folder} (stop it with: kill $(head -1 {pid_file}))",
                   server.get_pid())


def server_scratch(server_url: str) -> Scratch:
    """A new database on DATABASE_URL's server."""
    name = f"screens_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(pgsql.SQL("create database {}").format(pgsql.Identifier(name)))
    url = sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)

    def remove() -> None:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(pgsql.SQL("drop database if exists {} with (force)").format(pgsql.Identifier(name)))

    return Scratch(url, remove, f"database {name} on DATABASE_URL's server")


# --------------------------------------------------------------------------- query timing


@dataclass
class Statement:
    text: str
    params: Any
    seconds: float


class QueryClock:
    """Every statement the engine runs, with its time, into `statements` (reset per run)."""

    def __init__(self, engine: sa.engine.Engine) -> None:
        self.statements: list[Statement] = []
        sa.event.listen(engine, "before_cursor_execute", self._before)
        sa.event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def _after(self, conn, cursor, statement, parameters, context, executemany) -> None:
        started = conn.info["bench_started"].pop()
        self.statements.append(Statement(statement, parameters, time.perf_counter() - started))

    def take(self) -> list[Statement]:
        """The statements since the last take."""
        taken, self.statements = self.statements, []
        return taken


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Case:
    screen: str  # pages/<screen>.py
    role: str
    user_id: str
    org_id: str | None


@dataclass
class Result:
    case: Case
    cold: float
    cached: list[float]
    uncached: list[float]
    cached_queries: int
    uncached_statements: list[list[Statement]]
    problems: list[str] = field(default_factory=list)

    def slowest(self) -> tuple[str, float, Statement] | None:
        """(statement, its median seconds over the uncached runs, one execution) of the slowest statement."""
        per_text: dict[str, list[float]] = defaultdict(list)
        example: dict[str, Statement] = {}
        for run in self.uncached_statements:
            longest: dict[str, Statement] = {}
            for s in run:
                if s.text not in longest or s.seconds > longest[s.text].seconds:
                    longest[s.text] = s
            for text, s in longest.items():
                per_text[text].append(s.seconds)
                if text not in example or s.seconds > example[text].seconds:
                    example[text] = s
        if not per_text:
            return None
        text = max(per_text, key=lambda t: statistics.median(per_text[t]))
        return text, statistics.median(per_text[text]), example[text]

    def queries(self) -> int:
        return round(statistics.median(len(run) for run in self.uncached_statements))

    def db_seconds(self) -> float:
        return statistics.median(sum(s.seconds for s in run) for run in self.uncached_statements)


def problems_of(at: AppTest) -> list[str]:
    """Exceptions and error boxes of the last run: a screen that failed fast is no figure."""
    found = [f"exception: {one_line(e.message)[:200]}" for e in at.exception]
    found += [f"error box: {one_line(e.value)[:200]}" for e in at.error]
    return found


def page(case: Case) -> AppTest:
    """A new browser session on the case's page, logged in as its user with its organization chosen."""
    at = AppTest.from_file(str(REPO / "pages" / f"{case.screen}.py"), default_timeout=120)
    at.session_state["actor_id"] = case.user_id
    at.session_state["org_id"] = case.org_id
    return at


def timed(at: AppTest) -> float:
    started = time.perf_counter()
    at.run()
    return time.perf_counter() - started


def measure(case: Case, clock: QueryClock, runs: int) -> Result:
    """Cold run, then `runs` runs with the read cache, then `runs` with it cleared before each."""
    st.cache_data.clear()
    at = page(case)
    clock.take()
    cold = timed(at)
    problems = problems_of(at)
    clock.take()
    cached, cached_queries = [], []
    for _ in range(runs):
        cached.append(timed(at))
        cached_queries.append(len(clock.take()))
        problems += problems_of(at)
    uncached, statements = [], []
    for _ in range(runs):
        st.cache_data.clear()
        clock.take()
        uncached.append(timed(at))
        statements.append(clock.take())
        problems += problems_of(at)
    return Result(case, cold, cached, uncached, round(statistics.median(cached_queries)), statements,
                  sorted(set(problems)))


@dataclass
class Shell:
    role: str
    seconds: float  # median app.py + Account minus median Account alone
    queries: int
    slowest: tuple[str, float] | None


def measure_shell(db: sa.engine.Engine, clock: QueryClock, case: Case, email: str, runs: int) -> Shell:
    """app.py's own share of a warm run (cached reads), for the case's user: app.py + Account minus Account."""
    session = auth.start_session(db, case.user_id)
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["authentication_status"] = True
    at.session_state["username"] = email
    at.session_state["billing_session_id"] = session
    at.run()
    at.switch_page("pages/account.py")
    timed(at)
    alone = page(Case("account", case.role, case.user_id, case.org_id))
    alone.run()
    whole, single, statements = [], [], []
    problems = problems_of(at) + problems_of(alone)
    clock.take()
    for _ in range(runs):
        whole.append(timed(at))
        statements.append(clock.take())
        single.append(timed(alone))
        clock.take()
    problems += problems_of(at)
    if problems or not at.session_state["actor_id"] == case.user_id:
        raise RuntimeError(f"app.py did not run logged in as {case.user_id}: {problems}")
    auth.end_session(db, session)
    per_text: dict[str, list[float]] = defaultdict(list)
    for run in statements:
        for s in run:
            per_text[s.text].append(s.seconds)
    slowest = max(((t, statistics.median(v)) for t, v in per_text.items()), key=lambda p: p[1], default=None)
    return Shell(case.role, statistics.median(whole) - statistics.median(single),
                 round(statistics.median(len(run) for run in statements)), slowest)


# --------------------------------------------------------------------------- the cases


def cases(db: sa.engine.Engine, logins: list[demo.Login]) -> tuple[list[Case], dict[str, str]]:
    """(screen, role) pairs with the demo's users and the organization app.py would choose; emails by role."""
    by_role = {login.role: login for login in logins}
    emails = {login.role: login.email for login in logins}

    def default_org(user_id: str) -> str | None:
        choices = auth.organization_choices(db, auth.user_roles(db, user_id))
        return choices[0].org_id if choices else None

    found = []
    for role, screens in (
        ("member", ["my_credits", "account"]),
        ("org admin", ["my_credits", "org_billing", "billing_settings", "audit_log", "account"]),
        ("multi-org user", ["my_credits", "account"]),
    ):
        user_id = by_role[role].user_id
        found += [Case(screen, role, user_id, default_org(user_id)) for screen in screens]
    admin = by_role["system admin"].user_id
    busiest = str(analytics.top_organizations(db, admin, 1).org_id.iloc[0])
    found += [
        Case("system_overview", "system admin", admin, None),
        Case("pricing", "system admin", admin, None),
        Case("org_billing", "system admin", admin, busiest),
        Case("audit_log", "system admin", admin, None),
        Case("my_credits", "system admin", admin, None),
        Case("account", "system admin", admin, None),
    ]
    return found, emails


# --------------------------------------------------------------------------- printing


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def print_table(results: list[Result]) -> None:
    header = (f"{'screen':<16} {'role':<15} {'cold s':>7} {'cached med/max s':>17} {'uncached med/max s':>19}"
              f" {'db ms':>6} {'queries':>7} {'slowest ms':>10}  slowest query")
    print(header)
    print("-" * (len(header) + TEXT_WIDTH - len("slowest query")))
    for r in results:
        slowest = r.slowest()
        text, seconds = (one_line(slowest[0])[:TEXT_WIDTH], ms(slowest[1])) if slowest else ("(none)", "-")
        print(f"{r.case.screen:<16} {r.case.role:<15} {r.cold:>7.3f}"
              f" {statistics.median(r.cached):>8.3f}/{max(r.cached):<8.3f}"
              f" {statistics.median(r.uncached):>9.3f}/{max(r.uncached):<9.3f}"
              f" {ms(r.db_seconds()):>6} {r.queries():>3} ({r.cached_queries:>1}) {seconds:>10}  {text}")


def verdict(results: list[Result]) -> str:
    def part(kind: str, pick: Callable[[Result], list[float]]) -> str:
        slow = [r for r in results if statistics.median(pick(r)) >= TARGET_SECONDS]
        worst = max(results, key=lambda r: statistics.median(pick(r)))
        figure = f"slowest {worst.case.screen} as {worst.case.role}, median {statistics.median(pick(worst)):.3f} s"
        if not slow:
            return f"{kind}: all {len(results)} under {TARGET_SECONDS} s ({figure})"
        names = ", ".join(f"{r.case.screen}/{r.case.role}" for r in slow)
        return f"{kind}: {len(slow)} of {len(results)} at or over {TARGET_SECONDS} s: {names} ({figure})"

    return (f"VERDICT (issue 3: each screen's warm server-side run under {TARGET_SECONDS} s, median of warm runs)"
            f"\n  {part('warm, cached reads (the app as it is)', lambda r: r.cached)}"
            f"\n  {part('warm, cache cleared (database reads included)', lambda r: r.uncached)}")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="warm runs of each kind per screen and role (default 5)")
    parser.add_argument("--keep", action="store_true", help="keep the database for inspection (its URL is printed)")
    parser.add_argument("--no-vacuum", action="store_true",
                        help="measure right after the load, before (auto)vacuum has run (slower scans of the usage table)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    server_url = os.environ.get("DATABASE_URL")
    scratch = server_scratch(server_url) if server_url else embedded_scratch(args.keep)
    try:
        return bench(scratch, args.runs, not args.no_vacuum)
    finally:
        database.dispose_engine(scratch.url)
        if args.keep:
            print(f"\nKept: {scratch.describe}\n  DATABASE_URL={scratch.url}")
        else:
            scratch.remove()


def bench(scratch: Scratch, runs: int, vacuum: bool) -> int:
    url = scratch.url
    os.environ["DATABASE_URL"] = url  # the pages' database.get_engine() finds it here
    os.environ[auth.COOKIE_KEY_ENV] = "screens-bench-" + uuid.uuid4().hex  # app.py's cookie key, never the default
    migrations.migrate(url)
    db = database.get_engine(url)
    loaded = demo.load(db)
    print(f"demo loaded in {loaded.seconds:.1f} s: {loaded.organizations} organizations, {loaded.users} users,"
          f" {loaded.usage_rows:,} calls; {runs} warm runs of each kind per screen")
    if vacuum:
        # what autovacuum does a minute or so after the load; done now, so that it cannot start mid-run
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("vacuum (analyze)")
        print("database vacuumed after the load (the steady state; --no-vacuum: as the loader leaves it)\n")
    else:
        print("database as the loader leaves it: analyzed, not vacuumed yet (index-only scans visit the table)\n")
    clock = QueryClock(db)
    found, emails = cases(db, loaded.logins)

    # the process's first AppTest run pays Streamlit's, pandas' and Plotly's first use: not a screen's cost
    started = time.perf_counter()
    page(found[0]).run()
    print(f"first AppTest run of the process (imports, first Plotly figure): {time.perf_counter() - started:.3f} s\n")
    st.cache_data.clear()
    clock.take()

    roots = [os.getpid()] + ([scratch.server_pid] if scratch.server_pid else [])
    busy0, total0, ours0 = cpu_times(roots)
    results = [measure(case, clock, runs) for case in found]
    busy1, total1, ours1 = cpu_times(roots)
    print_table(results)
    print("  (cold: new session, read cache empty; cached: warm runs with screen_kit.read's cache; uncached: warm runs"
          "\n   with the cache cleared before each; db ms, queries: median of the uncached runs (in brackets: queries"
          "\n   of a cached run); slowest ms: the slowest statement's median over the uncached runs)")

    if total1 > total0:
        others = ((busy1 - busy0) - (ours1 - ours0)) / (total1 - total0)
        server = "" if scratch.server_pid else " (DATABASE_URL's server counts as other programs)"
        print(f"\nCPU during the measurements: {100 * (busy1 - busy0) / (total1 - total0):.0f}% of the machine busy,"
              f" {100 * others:.0f}% by other programs{server}"
              + ("; more than 5%: these figures are inflated" if others > 0.05 else ""))

    overall = max((r for r in results if r.slowest()), key=lambda r: r.slowest()[1])
    text, seconds, example = overall.slowest()
    print(f"\nSlowest query overall: {ms(seconds)} ms (median), on {overall.case.screen} as {overall.case.role}:"
          f"\n  {one_line(text)}\n  parameters: {example.params}")

    print("\napp.py shell around a page (session check, roles, organization selector), warm, cached reads:")
    for role in ("member", "org admin", "multi-org user", "system admin"):
        case = next(c for c in found if c.role == role)
        shell = measure_shell(db, clock, case, emails[role], runs)
        slow = f"slowest {ms(shell.slowest[1])} ms: {one_line(shell.slowest[0])[:TEXT_WIDTH]}" if shell.slowest else ""
        print(f"  {role:<15} +{shell.seconds:.3f} s, {shell.queries} queries; {slow}")

    print()
    print(verdict(results))
    broken = [r for r in results if r.problems]
    for r in broken:
        print(f"PROBLEM {r.case.screen} as {r.case.role}: " + "; ".join(r.problems))
    return 3 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
