"""Concurrent calls against the real PostgreSQL: exact, idempotent, deadlock-free.

DESIGN.md: "Concurrent calls are exact: no lost update, no overdraft, no
deadlock that a caller sees. Lock in one fixed order." and "The same request
id, sent again (a retry), charges once and answers as the first call did."

Every worker thread calls billing_core on its own connection: each test opens
an engine whose pool holds one connection per worker, opened before the
workers start, and a threading.Barrier releases the workers together so that
their calls really overlap. Where a race must go one precise way every run, a
transaction held open on a separate connection makes the workers queue behind
it first. No figure is taken on trust: every test checks the answers the
callers got against the rows in the database, then the ledger's invariants
(`ledger.verify`, and `billing verify` as a separate process after the bigger
storms).
"""

from __future__ import annotations

import random
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from billing_core import charging, credits, database, ledger, orders, organizations, periods, reports
from billing_core.database import fetch
from billing_core.errors import (
    AllocationInactive,
    AlreadyExists,
    InsufficientCredits,
    InsufficientPoolCredits,
    NotAMember,
    RequestConflict,
)
from billing_core.pricing import Usage
from tests.ledger_state import billing_verify

ORG = "conc-org"
ADMIN = "conc-admin"
DEADLOCK_DETECTED = "40P01"
JOIN_TIMEOUT = 60.0


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def worker_engine(db_url: str) -> Iterator[Callable[[int], Engine]]:
    """A factory of engines with one pooled connection per worker, all opened up front."""
    engines: list[Engine] = []

    def make(workers: int) -> Engine:
        engine = sa.create_engine(
            database.sqlalchemy_url(db_url),
            pool_size=workers,
            max_overflow=0,
            pool_timeout=30,
            connect_args={"application_name": "concurrency-worker"},
        )
        engines.append(engine)
        # open every connection now: the barrier then releases calls, not connection set-ups
        connections = [engine.connect() for _ in range(workers)]
        for connection in connections:
            connection.close()
        assert engine.pool.checkedin() == workers
        return engine

    yield make
    for engine in engines:
        engine.dispose()


@dataclass
class Outcome:
    """What one call answered: a value, or the exception it raised."""

    worker: int
    key: Any
    value: Any = None
    error: BaseException | None = None


class Workers:
    """Threads that each run a list of (key, call) pairs, released together by one barrier."""

    def __init__(self, tasks: list[list[tuple[Any, Callable[[], Any]]]]) -> None:
        self._barrier = threading.Barrier(len(tasks), timeout=30)
        self._lock = threading.Lock()
        self._expected = sum(len(calls) for calls in tasks)
        self.outcomes: list[Outcome] = []
        self._threads = [
            threading.Thread(target=self._work, args=(i, calls), daemon=True) for i, calls in enumerate(tasks)
        ]

    def _work(self, worker: int, calls: list[tuple[Any, Callable[[], Any]]]) -> None:
        self._barrier.wait()
        for key, fn in calls:
            try:
                outcome = Outcome(worker, key, value=fn())
            except BaseException as exc:  # noqa: BLE001 - every outcome is recorded and judged
                outcome = Outcome(worker, key, error=exc)
            with self._lock:
                self.outcomes.append(outcome)

    def start(self) -> Workers:
        for thread in self._threads:
            thread.start()
        return self

    def join(self) -> list[Outcome]:
        """Every call's outcome; a worker that hangs fails the test."""
        for thread in self._threads:
            thread.join(JOIN_TIMEOUT)
        assert not any(t.is_alive() for t in self._threads), "a worker hung: a lock wait that never ended?"
        assert len(self.outcomes) == self._expected
        return self.outcomes


def run_together(tasks: list[list[tuple[Any, Callable[[], Any]]]]) -> list[Outcome]:
    """Run each worker's (key, call) list on its own thread, all released at once; every outcome."""
    return Workers(tasks).start().join()


@contextmanager
def deduction_held_open(db_url: str, user_id: str, amount: Decimal, request_id: str) -> Iterator[Decimal]:
    """A deduction whose transaction stays open (its locks held) until the block ends, then commits.

    It stands for a charge of the same member that is still committing while
    other calls arrive: they queue behind its locks, deterministically.
    """
    with psycopg.connect(db_url) as conn:  # not autocommit: the transaction stays open
        remaining = conn.execute(
            "select deduct_credits(%s, %s, %s, 'llm', 'gpt-4o', %s)", [ORG, user_id, amount, request_id]
        ).fetchone()[0]
        yield remaining
        conn.commit()


def wait_for_lock_waiters(db_url: str, count: int) -> None:
    """Block until `count` worker connections are waiting for a lock."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while True:
            waiting = conn.execute(
                "select count(*) from pg_stat_activity where datname = current_database()"
                " and application_name = 'concurrency-worker' and wait_event_type = 'Lock'"
            ).fetchone()[0]
            if waiting >= count:
                return
            assert time.monotonic() < deadline, f"only {waiting} of {count} workers queued on the held locks"
            time.sleep(0.02)


def describe(exc: BaseException) -> str:
    """One line naming an exception and, for a database error, its SQLSTATE."""
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return f"{type(exc).__name__}[{sqlstate}]: {str(exc).splitlines()[0] if str(exc) else ''}"


def is_deadlock(exc: BaseException) -> bool:
    """True when the exception is (or wraps) PostgreSQL's deadlock error."""
    orig = getattr(exc, "orig", None)
    return isinstance(orig, psycopg.errors.DeadlockDetected) or getattr(orig, "sqlstate", None) == DEADLOCK_DETECTED


def assert_ledger_sound(db: Engine, url: str) -> None:
    """The invariants hold, checked in-process and by the `billing verify` command."""
    assert ledger.verify(db) == []
    result = billing_verify(url)
    assert result.returncode == 0, f"billing verify exited {result.returncode}:\n{result.stdout}{result.stderr}"
    assert "every invariant holds" in result.stdout


def deadlocks_recorded(db_url: str) -> int:
    """PostgreSQL's own count of deadlocks detected in this database.

    Waits for the workers' backends to exit first: a backend hands its
    statistics over when it ends.
    """
    with psycopg.connect(db_url, autocommit=True) as conn:
        deadline = time.monotonic() + 10
        while conn.execute(
            "select count(*) from pg_stat_activity"
            " where datname = current_database() and application_name = 'concurrency-worker'"
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "worker backends did not exit"
            time.sleep(0.05)
        conn.execute("select pg_stat_clear_snapshot()")
        return conn.execute("select deadlocks from pg_stat_database where datname = current_database()").fetchone()[0]


def setup_org(db: Engine, members: list[str], pool_credits: int) -> None:
    """Organization ORG with admin ADMIN, the given members and `pool_credits` bought."""
    organizations.create_organization(db, None, ORG, "Concurrency Org")
    organizations.create_user(db, None, ADMIN, f"{ADMIN}@example.com", "Conc Admin")
    organizations.add_member(db, None, ORG, ADMIN, "admin")
    for user_id in members:
        organizations.create_user(db, None, user_id, f"{user_id.lower()}@example.com")
        organizations.add_member(db, None, ORG, user_id)
    orders.grant_credits(db, None, ORG, pool_credits, "Credits for the concurrency test")


def allocations(db: Engine) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
    """user_id -> (allocated, used, remaining) of each active allocation in ORG."""
    rows = fetch(
        db,
        "select user_id, allocated_credits, used_credits, remaining_credits from user_credit_allocations"
        " where org_id = :org and is_active",
        {"org": ORG},
    )
    return {r.user_id: (r.allocated_credits, r.used_credits, r.remaining_credits) for r in rows}


def attribution(db: Engine) -> list[sa.Row]:
    return fetch(
        db,
        "select request_id, user_id, allocation_id, credits_used, remaining_after from credit_usage_attribution"
        " where org_id = :org order by id",
        {"org": ORG},
    )


# --------------------------------------------------------------------------- exact deductions


def test_deduction_storm_charges_exactly_what_allocations_afford(db, db_url, worker_engine):
    """160 deductions from 40 connections against 4 allocations that afford 65 of them."""
    amount = Decimal("2.5")
    affordable = {"m-1": 7, "m-2": 13, "m-3": 20, "m-4": 25}
    leftover = Decimal("1.25")  # less than one charge: the last refusal is decided to the cent
    members = list(affordable)
    setup_org(db, members, 1_000)
    allocated = {m: k * amount + leftover for m, k in affordable.items()}
    for member in members:
        credits.allocate(db, ADMIN, ORG, member, allocated[member])

    workers = 40
    engine = worker_engine(workers)
    tasks = []
    for w in range(workers):
        order = members[w % 4 :] + members[: w % 4]  # every member is contended from the first call on
        tasks.append(
            [
                (
                    (member, f"storm-{w}-{member}"),
                    lambda member=member, rid=f"storm-{w}-{member}": credits.deduct(
                        engine, ORG, member, amount, "company_enrichment", "Company enrichment", request_id=rid
                    ),
                )
                for member in order
            ]
        )
    outcomes = run_together(tasks)
    assert len(outcomes) == 160

    unexpected = [
        (o.key, describe(o.error)) for o in outcomes if o.error and not isinstance(o.error, InsufficientCredits)
    ]
    assert unexpected == []
    answered: dict[str, Decimal] = {o.key[1]: o.value for o in outcomes if o.error is None}
    for member, k in affordable.items():
        mine = [o for o in outcomes if o.key[0] == member]
        successes = sorted((o.value for o in mine if o.error is None), reverse=True)
        refusals = [o for o in mine if o.error is not None]
        assert (len(successes), len(refusals)) == (k, 40 - k), member
        # each success saw every earlier one: the remaining figures step down one charge at a time
        assert successes == [allocated[member] - j * amount for j in range(1, k + 1)], member
        for refusal in refusals:
            assert "Insufficient credits" in str(refusal.error)

    rows = attribution(db)
    assert {r.request_id: r.remaining_after for r in rows} == answered
    assert len(rows) == sum(affordable.values()) == 65
    assert Counter(r.user_id for r in rows) == Counter(affordable)
    assert all(r.credits_used == amount for r in rows)

    state = allocations(db)
    for member, k in affordable.items():
        assert state[member] == (allocated[member], k * amount, leftover), member

    pool = reports.pool(db, ADMIN, ORG)
    assert pool.used_credits == 65 * amount == sum(used for _, used, _ in state.values())
    assert pool.allocated_credits == sum(allocated.values())
    assert pool.total_credits == 1_000
    assert pool.available_credits == 1_000 - sum(allocated.values())
    assert_ledger_sound(db, db_url)


# --------------------------------------------------------------------------- idempotency under concurrency


@pytest.mark.parametrize(
    ("queued", "allocation", "expected_remaining"),
    [(False, Decimal(100), Decimal(93)), (True, Decimal(100), Decimal(92)), (True, Decimal(8), Decimal(0))],
    ids=["free-for-all", "queued-behind-another-charge", "queued-first-call-spends-the-allocation"],
)
def test_retry_storm_charges_once_and_answers_alike(db, db_url, worker_engine, queued, allocation, expected_remaining):
    """One request id sent 3 times from each of 24 connections at once: one charge, one answer.

    "queued": another charge of the same member (1 credit, its own request id)
    is still committing when the storm arrives, so every first attempt waits on
    the allocation row and the retries meet the first call's charge only after
    it committed. In the last case that charge leaves nothing: a retry must
    still answer as the first call did, not "insufficient credits".
    """
    amount = Decimal(7)
    setup_org(db, ["m-1"], 1_000)
    credits.allocate(db, ADMIN, ORG, "m-1", allocation)

    workers = 24
    engine = worker_engine(workers)

    def call():
        return credits.deduct(engine, ORG, "m-1", amount, "llm", "gpt-4o", request_id="retry-storm-1")

    storm = Workers([[(("m-1", n), call) for n in range(3)] for _ in range(workers)])
    if queued:
        with deduction_held_open(db_url, "m-1", Decimal(1), "another-charge") as left:
            assert left == allocation - 1
            storm.start()
            wait_for_lock_waiters(db_url, workers)
    else:
        storm.start()
    outcomes = storm.join()

    answers = Counter(o.value if o.error is None else describe(o.error) for o in outcomes)
    assert answers == Counter({expected_remaining: workers * 3})
    rows = [r for r in attribution(db) if r.request_id == "retry-storm-1"]
    assert [(r.credits_used, r.remaining_after) for r in rows] == [(amount, expected_remaining)]
    charged = amount + (1 if queued else 0)
    assert allocations(db)["m-1"] == (allocation, charged, allocation - charged)
    assert ledger.verify(db) == []


@pytest.mark.parametrize("queued", [False, True], ids=["free-for-all", "queued-behind-the-first-charge"])
def test_same_request_id_for_different_users_charges_one_of_them(db, db_url, worker_engine, queued):
    """One request id for 8 different members, 3 connections each: one charge, the rest conflict.

    "queued": m-1's charge under that id is still committing when the others
    arrive, so they all wait on it (on its allocation row or on its
    request id in the unique index) and m-1 is known to be the winner.
    """
    members = [f"m-{n}" for n in range(1, 9)]
    setup_org(db, members, 1_000)
    for member in members:
        credits.allocate(db, ADMIN, ORG, member, 50)

    workers = 24
    engine = worker_engine(workers)
    storm = Workers(
        [
            [
                (
                    members[w % 8],
                    lambda member=members[w % 8]: credits.deduct(
                        engine, ORG, member, 5, "llm", "gpt-4o", request_id="shared-request"
                    ),
                )
            ]
            for w in range(workers)
        ]
    )
    if queued:
        with deduction_held_open(db_url, "m-1", Decimal(5), "shared-request") as left:
            assert left == 45
            storm.start()
            wait_for_lock_waiters(db_url, workers)
    else:
        storm.start()
    outcomes = storm.join()

    rows = attribution(db)
    assert len(rows) == 1 and rows[0].request_id == "shared-request"
    winner = rows[0].user_id
    if queued:
        assert winner == "m-1"
    for o in outcomes:
        if o.key == winner:
            assert (o.value, o.error) == (Decimal(45), None), describe(o.error) if o.error else o.value
        else:
            assert isinstance(o.error, RequestConflict), (o.key, o.value if o.error is None else describe(o.error))
            assert f"already used for another charge (5 credits to user '{winner}'" in str(o.error)
    state = allocations(db)
    assert {m: used for m, (_, used, _) in state.items()} == {m: Decimal(5 if m == winner else 0) for m in members}
    assert reports.pool(db, ADMIN, ORG).used_credits == 5
    assert_ledger_sound(db, db_url)


@pytest.mark.parametrize("queued", [False, True], ids=["free-for-all", "queued-behind-another-charge"])
def test_charge_usage_retries_that_queued_behind_their_first_call_answer_replayed(db, db_url, worker_engine, queued):
    """Finding 11: one charge_usage request id from 8 connections at once: one charge, answered replayed = false
    once and replayed = true by every retry (they all answered false, the retries that waited on the first
    call's row lock included)."""
    setup_org(db, ["m-1"], 1_000)
    credits.allocate(db, ADMIN, ORG, "m-1", 100)
    workers = 8
    engine = worker_engine(workers)

    def call():
        return charging.charge_usage(engine, "m-1", Usage("company_enrichment", "clearbit"), org_id=ORG,
                                     request_id="charge-storm")

    storm = Workers([[(w, call)] for w in range(workers)])
    if queued:
        with deduction_held_open(db_url, "m-1", Decimal(1), "another-charge"):
            storm.start()
            wait_for_lock_waiters(db_url, workers)
    else:
        storm.start()
    outcomes = storm.join()

    assert [describe(o.error) for o in outcomes if o.error] == []
    assert Counter(o.value.replayed for o in outcomes) == Counter({False: 1, True: workers - 1})
    expected = Decimal(50 - (1 if queued else 0))
    assert {(o.value.credits, o.value.remaining) for o in outcomes} == {(Decimal(50), expected)}
    rows = [r for r in attribution(db) if r.request_id == "charge-storm"]
    assert [(r.credits_used, r.remaining_after) for r in rows] == [(Decimal(50), expected)]
    assert allocations(db)["m-1"][1] == 50 + (1 if queued else 0)
    assert ledger.verify(db) == []


def test_reserve_retries_queued_behind_a_first_call_that_took_the_rest_answer_replayed(db, db_url, worker_engine):
    """Finding 11 for holds: the first reserve of a request id leaves nothing free; its retries, queued on the
    allocation row behind it, must answer as it did (replayed), not "insufficient credits"."""
    setup_org(db, ["m-1"], 1_000)
    credits.allocate(db, ADMIN, ORG, "m-1", 9)
    workers = 8
    engine = worker_engine(workers)

    def call():
        return charging.reserve(engine, "m-1", 8, "hold-storm", "llm", "gpt-4o", org_id=ORG)

    storm = Workers([[(w, call)] for w in range(workers)])
    with deduction_held_open(db_url, "m-1", Decimal(1), "another-charge"):  # 8 left: exactly the hold
        storm.start()
        wait_for_lock_waiters(db_url, workers)
    outcomes = storm.join()

    assert [describe(o.error) for o in outcomes if o.error] == []
    assert Counter(o.value.replayed for o in outcomes) == Counter({False: 1, True: workers - 1})
    assert {(o.value.credits, o.value.remaining) for o in outcomes} == {(Decimal(8), Decimal(0))}
    [(used, held)] = fetch(db, "select used_credits, held_credits from user_credit_allocations"
                               " where org_id = :org and is_active", {"org": ORG})
    assert (used, held) == (1, 8)
    assert ledger.verify(db) == []


# --------------------------------------------------------------------------- lock order: no deadlock


def test_bulk_allocations_listing_members_in_opposite_orders_never_deadlock(db, db_url, worker_engine):
    """6 connections allocate to the same members, listed in opposite orders, 30 times each."""
    # mixed case: "C" order (B < D < a) differs from a linguistic one (a < B < c)
    members = ["alice", "Bob", "carol", "Dave", "erin", "Frank"]
    setup_org(db, members, 100_000)

    workers, rounds = 6, 30
    lists = [members, members[::-1], members[:3][::-1], members[2:], members[::2][::-1], members[1::2]]
    engine = worker_engine(workers)
    tasks = [
        [
            (tuple(lists[w]), lambda listed=lists[w]: credits.allocate_to_members(engine, ADMIN, ORG, listed, 1))
            for _ in range(rounds)
        ]
        for w in range(workers)
    ]
    outcomes = run_together(tasks)

    errors = [describe(o.error) for o in outcomes if o.error is not None]
    assert errors == []
    assert [o.value for o in outcomes] == [len(o.key) for o in outcomes]
    state = allocations(db)
    for member in members:
        expected = rounds * sum(1 for listed in lists if member in listed)
        assert state[member] == (expected, 0, expected), member
    assert reports.pool(db, ADMIN, ORG).allocated_credits == rounds * sum(len(listed) for listed in lists)
    engine.dispose()
    assert deadlocks_recorded(db_url) == 0
    assert ledger.verify(db) == []


# Refusals a caller may rightly get while others change the same members:
# the member was just removed (NotAMember) or re-added without credits
# (AllocationInactive), credits ran out (InsufficientCredits, InsufficientPoolCredits),
# two re-adds raced (AlreadyExists). Anything else, a deadlock above all, fails.
EXPECTED_REFUSALS = (NotAMember, AllocationInactive, InsufficientCredits, InsufficientPoolCredits, AlreadyExists)
STORM_SECONDS = 3.0


def test_mixed_storm_on_one_org_never_deadlocks_and_stays_exact(db, db_url, worker_engine):
    """12 connections for 3 s: allocate, bulk-allocate, reclaim, deduct, remove and re-add, buy, read."""
    members = ["m-1", "m-2", "m-3", "m-4", "m-5"]
    setup_org(db, members, 50_000)
    for member in members:
        credits.allocate(db, ADMIN, ORG, member, 500)

    workers = 12
    engine = worker_engine(workers)
    barrier = threading.Barrier(workers, timeout=30)
    lock = threading.Lock()
    deductions: dict[str, tuple[str, Decimal, Decimal]] = {}  # request id -> (member, credits, remaining)
    tally: Counter[tuple[str, str]] = Counter()  # (operation, outcome class)
    unexpected: list[str] = []
    purchased = [Decimal(0)]

    def operation(rng: random.Random, worker: int, n: int) -> tuple[str, Callable[[], None]]:
        member = rng.choice(members)
        roll = rng.random()
        if roll < 0.35:
            amount = rng.choice([Decimal("0.5"), Decimal(1), Decimal("2.5"), Decimal(5)])
            rid = f"mixed-{worker}-{n}"

            def deduct() -> None:
                remaining = credits.deduct(engine, ORG, member, amount, "llm", "storm", request_id=rid)
                with lock:
                    deductions[rid] = (member, amount, remaining)

            return "deduct", deduct
        if roll < 0.50:
            return "allocate", lambda: credits.allocate(engine, ADMIN, ORG, member, rng.randint(1, 40))
        if roll < 0.60:
            listed = rng.sample(members, rng.randint(2, len(members)))  # random subset, random order
            return "allocate_many", lambda: credits.allocate_to_members(engine, ADMIN, ORG, listed, rng.randint(1, 5))
        if roll < 0.72:
            amount = rng.choice([None, Decimal(1), Decimal(10)])
            return "reclaim", lambda: credits.reclaim(engine, ADMIN, ORG, member, amount)
        if roll < 0.80:

            def remove_then_add() -> None:
                try:
                    organizations.remove_member(engine, ADMIN, ORG, member)
                except NotAMember:
                    pass  # another worker removed them first; it re-adds them too
                organizations.add_member(engine, None, ORG, member)  # AlreadyExists if that one was first
                credits.allocate(engine, ADMIN, ORG, member, 100)

            return "remove_add", remove_then_add
        if roll < 0.85:

            def buy() -> None:
                credits.add_credits(engine, None, ORG, 200, "0.2")
                with lock:
                    purchased[0] += 200

            return "buy", buy
        if roll < 0.92:
            return "check", lambda: credits.has_sufficient_credits(engine, ORG, member, 1)
        return "read_pool", lambda: reports.pool(engine, ADMIN, ORG)

    def work(worker: int) -> None:
        rng = random.Random(1_000 + worker)  # the sequence of operations is the same every run
        barrier.wait()
        deadline = time.monotonic() + STORM_SECONDS
        n = 0
        while time.monotonic() < deadline:
            name, fn = operation(rng, worker, n)
            n += 1
            try:
                fn()
                outcome = "ok"
            except EXPECTED_REFUSALS as exc:
                outcome = type(exc).__name__
            except BaseException as exc:  # noqa: BLE001 - judged below
                outcome = "UNEXPECTED"
                with lock:
                    unexpected.append(
                        f"{name}: {'DEADLOCK ' if is_deadlock(exc) else ''}{describe(exc)}\n{traceback.format_exc()}"
                    )
            with lock:
                tally[(name, outcome)] += 1

    threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(STORM_SECONDS + JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a worker hung: a lock wait that never ended?"

    assert unexpected == [], "\n".join(unexpected[:5])
    engine.dispose()
    assert deadlocks_recorded(db_url) == 0
    # the storm did what it says: every kind of call got through at least once
    done = {name for (name, outcome), count in tally.items() if outcome == "ok"}
    assert done == {"deduct", "allocate", "allocate_many", "reclaim", "remove_add", "buy", "check", "read_pool"}, tally

    # every acknowledged deduction is in the ledger, exactly as answered, and nothing else is
    rows = attribution(db)
    assert {r.request_id: (r.user_id, r.credits_used) for r in rows} == {
        rid: (member, amount) for rid, (member, amount, _) in deductions.items()
    }
    assert len(rows) == len(deductions)
    assert {r.request_id: r.remaining_after for r in rows} == {rid: rem for rid, (_, _, rem) in deductions.items()}

    # every member is back; used figures add up over open and closed allocations
    member_rows = fetch(db, "select user_id from organization_members where org_id = :org", {"org": ORG})
    assert sorted(r.user_id for r in member_rows) == sorted([ADMIN, *members])
    used_by_allocation = defaultdict(Decimal)
    for r in rows:
        used_by_allocation[r.allocation_id] += r.credits_used
    all_allocations = fetch(
        db, "select id, used_credits from user_credit_allocations where org_id = :org", {"org": ORG}
    )
    assert {a.id: a.used_credits for a in all_allocations if a.used_credits} == dict(used_by_allocation)
    pool = reports.pool(db, ADMIN, ORG)
    assert pool.used_credits == sum(amount for _, amount, _ in deductions.values())
    # what was bought minus what closed allocations consumed (settled out of the pool total)
    settled = fetch(
        db,
        "select coalesce(sum(credits), 0) from org_billing_history"
        " where org_id = :org and event_type = 'usage_settlement'",
        {"org": ORG},
    )[0][0]
    assert pool.total_credits == 50_000 + purchased[0] + settled
    assert_ledger_sound(db, db_url)


# --------------------------------------------------------------------------- charges during a period reset


def backdate_org(db: Engine, days: int) -> None:
    """Test set-up: ORG opened `days` ago on a calendar starting each month's 1st (UTC): boundaries are due."""
    fetch(
        db,
        "update organizations set created_at = now() - make_interval(days => :d), billing_anchor_day = 1,"
        " billing_timezone = 'UTC' where id = :org",
        {"d": days, "org": ORG},
    )


def active_allocation_id(db: Engine, user_id: str) -> str:
    return fetch(
        db,
        "select id from user_credit_allocations where org_id = :org and user_id = :u and is_active",
        {"org": ORG, "u": user_id},
    )[0][0]


@contextmanager
def period_reset_held_open(db_url: str) -> Iterator[None]:
    """The period job's work on ORG (close every allocation, reopen them) in a transaction left open until
    the block ends, then committed: calls that arrive meanwhile queue on the allocation rows it closed."""
    with psycopg.connect(db_url) as conn:  # not autocommit: the job's locks stay held
        run_id = conn.execute("insert into billing_period_runs (run_as_of) values (now()) returning id").fetchone()[0]
        closed = conn.execute("select periods_closed from billing_periods_process_org(%s, %s, now())",
                              [run_id, ORG]).fetchone()[0]
        assert closed >= 1
        yield
        conn.commit()


def _charge_kinds(engine: Engine) -> dict[str, Callable[[], Any]]:
    return {
        "deduct_credits": lambda: credits.deduct(engine, ORG, "m-1", 1, "llm", "gpt-4o", request_id="during-reset"),
        "deduct_credits, no request id": lambda: credits.deduct(engine, ORG, "m-1", 1, "llm", "gpt-4o"),
        "charge_usage, no request id": lambda: charging.charge_usage(
            engine, "m-1", Usage("company_enrichment", "clearbit"), org_id=ORG
        ).remaining,
        "charge_usage": lambda: charging.charge_usage(
            engine, "m-1", Usage("company_enrichment", "clearbit"), org_id=ORG, request_id="during-reset"
        ).remaining,
        "reserve_credits": lambda: charging.reserve(
            engine, "m-1", 1, "during-reset", "llm", "gpt-4o", org_id=ORG
        ).remaining,
        "settle_hold": lambda: charging.settle(engine, ORG, "held-before", 30).remaining,
    }


@pytest.mark.parametrize(
    ("kind", "expected_remaining"),
    [("deduct_credits", 4999), ("deduct_credits, no request id", 4999), ("charge_usage", 4950),
     ("charge_usage, no request id", 4950), ("reserve_credits", 4999), ("settle_hold", 5070)],
)
def test_a_charge_that_waits_on_a_period_reset_is_made_on_the_new_allocation(
    db, db_url, worker_engine, kind, expected_remaining
):
    """Finding 6: a charge queued behind the period job's close-and-reopen of the member's allocation.

    Under read committed the waiting UPDATE re-checks the closed row (no longer
    active) and its snapshot cannot see the new allocation: it used to be
    refused "has 5000 remaining, 1 needed". It must be made, on the new one.
    """
    setup_org(db, ["m-1"], 20_000)
    credits.allocate(db, ADMIN, ORG, "m-1", 5_000)
    if kind == "settle_hold":
        charging.reserve(db, "m-1", 100, "held-before", "llm", "gpt-4o", org_id=ORG)  # in flight across the reset
    backdate_org(db, 40)
    before = active_allocation_id(db, "m-1")
    engine = worker_engine(1)
    charge = _charge_kinds(engine)[kind]

    with period_reset_held_open(db_url):
        worker = Workers([[(kind, charge)]]).start()
        wait_for_lock_waiters(db_url, 1)
    [outcome] = worker.join()

    assert outcome.error is None, describe(outcome.error)
    assert outcome.value == expected_remaining
    after = active_allocation_id(db, "m-1")
    assert after != before  # the reset did happen under the charge
    if kind in ("reserve_credits", "settle_hold"):
        [row] = fetch(db, "select allocation_id, status from credit_holds where org_id = :org and request_id = :r",
                      {"org": ORG, "r": "during-reset" if kind == "reserve_credits" else "held-before"})
        assert tuple(row) == (after, "open" if kind == "reserve_credits" else "settled")
    if kind != "reserve_credits":
        rows = attribution(db)
        assert [r.allocation_id for r in rows] == [after]
    assert ledger.verify(db) == []
    assert fetch(db, "select count(*) from ledger_violations()")[0][0] == 0


def test_the_real_period_job_under_charges_refuses_none_of_them(db, db_url, worker_engine):
    """Finding 6 with the real job: six runs of run_billing_periods (each closing and reopening every
    allocation) while four connections keep charging members who can afford every charge."""
    members = [f"m-{n}" for n in range(1, 5)]
    setup_org(db, members, 40_000)
    for member in members:
        credits.allocate(db, ADMIN, ORG, member, 5_000)
    backdate_org(db, 200)
    created = fetch(db, "select created_at from organizations where id = :org", {"org": ORG})[0][0]
    engine = worker_engine(4)
    done = threading.Event()
    runs: list[Any] = []

    def job() -> None:
        try:
            for k in range(1, 7):
                runs.append(periods.run(db, created + k * timedelta(days=31)))
                time.sleep(0.05)
        finally:
            done.set()

    def charger(member: str) -> list[Any]:
        outcomes = []
        n = 0
        while not done.is_set() or n < 20:
            try:
                outcomes.append(credits.deduct(engine, ORG, member, 1, "llm", "gpt-4o", request_id=f"{member}-{n}"))
            except Exception as exc:  # noqa: BLE001 - judged below
                outcomes.append(exc)
            n += 1
        return outcomes

    results: dict[str, list[Any]] = {}
    threads = [threading.Thread(target=lambda m=m: results.__setitem__(m, charger(m)), daemon=True) for m in members]
    job_thread = threading.Thread(target=job, daemon=True)
    for thread in [*threads, job_thread]:
        thread.start()
    for thread in [job_thread, *threads]:
        thread.join(JOIN_TIMEOUT * 2)
        assert not thread.is_alive()

    assert len(runs) == 6 and all(r.orgs_failed == 0 for r in runs)
    assert sum(r.periods_closed for r in runs) >= 6
    refusals = [(m, describe(o)) for m, outcomes in results.items() for o in outcomes if isinstance(o, Exception)]
    assert refusals == []
    charged = sum(len(outcomes) for outcomes in results.values())
    rows = attribution(db)
    assert len(rows) == charged
    assert reports.pool(db, ADMIN, ORG).used_credits == charged
    assert_ledger_sound(db, db_url)
