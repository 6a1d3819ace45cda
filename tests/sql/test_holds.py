"""Two-phase charging: reserve holds credits (never spendable twice), settle charges the actual amount and
frees the excess, release frees all, unsettled holds expire; retries answer as the first call; concurrent
reserve/settle/release/deduct on one allocation stay exact."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
import sqlalchemy as sa

from billing_core import charging, credits, database, ledger, organizations, pricing, reports
from billing_core.database import fetch
from billing_core.errors import (
    HoldNotOpen,
    InsufficientCredits,
    InvalidAmount,
    InvalidInput,
    NotFound,
    RequestConflict,
)
from tests.core.test_pricing import refused_all, sysadmin  # noqa: F401 -- sysadmin is a fixture
from tests.ledger_state import billing_verify
from tests.time_travel import earlier, into_the_past

D = Decimal


@pytest.fixture
def ready(db, funded_org):
    """user-1 holds 1,000 credits of a 10,000 pool."""
    credits.allocate(db, funded_org.admin, funded_org.id, "user-1", 1_000)
    return funded_org


def allocation(db, org_id, user_id="user-1"):
    """(allocated, used, held) of the member's active allocation."""
    rows = fetch(db, "select allocated_credits, used_credits, held_credits from user_credit_allocations"
                     " where org_id = :o and user_id = :u and is_active", {"o": org_id, "u": user_id})
    return tuple(rows[0]) if rows else None


def hold_row(db, org_id, request_id):
    rows = fetch(db, "select status, settled_credits, close_reason from credit_holds where org_id = :o and request_id = :r",
                 {"o": org_id, "r": request_id})
    return tuple(rows[0])


def reserve(db, org_id, request_id, amount, **kwargs):
    return charging.reserve(db, "user-1", amount, request_id, "llm", "gpt-4o", org_id=org_id, **kwargs)


def test_reserve_then_settle_less_charges_once_and_frees_the_excess(db, ready, db_url):
    org = ready.id
    hold = reserve(db, org, "h-1", 300)
    assert (hold.org_id, hold.credits, hold.remaining, hold.replayed) == (org, D("300"), D("700"), False)
    assert allocation(db, org) == (D("1000"), D("0"), D("300"))
    # held credits cannot be spent: by a deduction, a second hold, or a reclaim
    refused_all(db, InsufficientCredits, "300 more held",
                lambda: credits.deduct(db, org, "user-1", 701, "llm", "gpt-4o"))
    refused_all(db, InsufficientCredits, "insufficient", lambda: reserve(db, org, "h-2", 701))
    refused_all(db, InsufficientCredits, "300 more are held", lambda: credits.reclaim(db, ready.admin, org, "user-1", 701))
    assert credits.has_sufficient_credits(db, org, "user-1", 700)
    assert not credits.has_sufficient_credits(db, org, "user-1", 701)
    assert reports.my_credits(db, "user-1").iloc[0].remaining_credits == D("700")

    assert reserve(db, org, "h-1", 300) == charging.Hold(org, "h-1", D("300"), hold.expires_at, D("700"), True)
    assert allocation(db, org) == (D("1000"), D("0"), D("300"))

    done = charging.settle(db, org, "h-1", D("123.456789"), metadata={"tokens": 4321})
    assert (done.credits, done.remaining, done.replayed) == (D("123.456789"), D("876.543211"), False)
    assert allocation(db, org) == (D("1000"), D("123.456789"), D("0"))
    rows = fetch(db, "select credits_used, request_id, service_name, metadata from credit_usage_attribution"
                     " where org_id = :o", {"o": org})
    assert len(rows) == 1 and rows[0][:3] == (D("123.456789"), "h-1", "gpt-4o")
    assert rows[0][3]["tokens"] == 4321 and rows[0][3]["hold"]["held_credits"] == 300
    # retries answer as the first call; another figure is a conflict; the hold cannot be released now
    assert charging.settle(db, org, "h-1", D("123.456789")) == charging.HoldEnd(D("123.456789"), D("876.543211"), True)
    refused_all(db, RequestConflict, "already settled for 123.456789", lambda: charging.settle(db, org, "h-1", 100))
    refused_all(db, HoldNotOpen, "already settled", lambda: charging.release(db, org, "h-1"))
    assert reserve(db, org, "h-1", 300).replayed
    assert hold_row(db, org, "h-1") == ("settled", D("123.456789"), "settled")
    assert billing_verify(db_url).returncode == 0


def test_settle_above_the_hold_charges_when_the_allocation_has_room(db, ready):
    org = ready.id
    reserve(db, org, "h-1", 100)
    reserve(db, org, "h-2", 800)
    # free beside h-1: 1,000 - 900 held = 100; h-1 may settle up to 200
    refused_all(db, InsufficientCredits, "only 200 credits free", lambda: charging.settle(db, org, "h-1", 201))
    assert charging.settle(db, org, "h-1", 200).remaining == D("0")
    assert allocation(db, org) == (D("1000"), D("200"), D("800"))
    assert charging.settle(db, org, "h-2", 0) == charging.HoldEnd(D("0"), D("800"), False)  # nothing used
    assert hold_row(db, org, "h-2") == ("settled", D("0"), "settled")
    assert fetch(db, "select count(*) from credit_usage_attribution where request_id = 'h-2'")[0][0] == 0
    assert ledger.verify(db) == []


def test_release_frees_the_hold_and_retries_are_harmless(db, ready):
    org = ready.id
    reserve(db, org, "h-1", 250)
    assert charging.release(db, org, "h-1") == charging.HoldEnd(D("250"), D("1000"), False)
    assert charging.release(db, org, "h-1") == charging.HoldEnd(D("250"), D("1000"), True)
    assert allocation(db, org) == (D("1000"), D("0"), D("0"))
    refused_all(db, HoldNotOpen, "was released", lambda: charging.settle(db, org, "h-1", 10))
    assert reserve(db, org, "h-1", 250).replayed  # a late retry of the reserve holds nothing again
    assert allocation(db, org) == (D("1000"), D("0"), D("0"))
    assert ledger.verify(db) == []


def test_settle_usage_prices_the_held_call(db, ready):
    org = ready.id
    reserve(db, org, "h-1", 50)
    done = charging.settle_usage(db, org, "h-1", input_tokens=1000, output_tokens=500)  # 11.25 credits
    assert (done.credits, done.remaining, done.replayed) == (D("11.25"), D("988.75"), False)
    assert done.explanation["model"] == "gpt-4o"
    again = charging.settle_usage(db, org, "h-1", input_tokens=1000, output_tokens=500)
    assert (again.credits, again.remaining, again.replayed) == (D("11.25"), D("988.75"), True)
    refused_all(db, RequestConflict, "already settled",
                lambda: charging.settle_usage(db, org, "h-1", input_tokens=2000, output_tokens=500))
    meta = fetch(db, "select metadata from credit_usage_attribution where request_id = 'h-1'")[0][0]
    assert meta["pricing"]["credits"] == 11.25


def test_holds_expire_and_the_job_releases_them(db, ready, db_url):
    org = ready.id
    reserve(db, org, "short", 100, ttl_seconds=1)
    long_hold = reserve(db, org, "long", 200)  # the platform rule's 15 minutes
    assert 899 <= (long_hold.expires_at - fetch(db, "select now()")[0][0]).total_seconds() <= 901
    time.sleep(1.2)
    refused_all(db, HoldNotOpen, "expired", lambda: charging.settle(db, org, "short", 50))
    assert charging.release_expired_holds(db) == 1
    assert charging.release_expired_holds(db) == 0  # the job twice changes nothing
    assert hold_row(db, org, "short") == ("expired", None, "expired")
    assert allocation(db, org) == (D("1000"), D("0"), D("200"))
    refused_all(db, HoldNotOpen, "expired", lambda: charging.settle(db, org, "short", 50))
    assert charging.release(db, org, "short").replayed  # releasing an expired hold is harmless
    # the job refuses a later time (CB009); once the hold's time has come, it frees it
    refused_all(db, InvalidInput, "in the future", lambda: charging.release_expired_holds(db, long_hold.expires_at))
    into_the_past(db)
    assert charging.release_expired_holds(db, earlier(long_hold.expires_at)) == 1
    assert allocation(db, org) == (D("1000"), D("0"), D("0"))
    assert billing_verify(db_url).returncode == 0


def test_a_short_member_frees_their_own_expired_holds_first(db, ready):
    org = ready.id
    reserve(db, org, "old", 900, ttl_seconds=1)
    time.sleep(1.2)
    hold = reserve(db, org, "new", 500)
    assert (hold.credits, hold.remaining) == (D("500"), D("500"))
    assert hold_row(db, org, "old") == ("expired", None, "expired")
    assert allocation(db, org) == (D("1000"), D("0"), D("500"))


def test_closing_the_allocation_releases_its_holds(db, ready, db_url):
    org = ready.id
    reserve(db, org, "h-1", 400)
    credits.deduct(db, org, "user-1", 100, "llm", "gpt-4o")
    assert organizations.remove_member(db, ready.admin, org, "user-1") == D("900")
    assert hold_row(db, org, "h-1") == ("released", None, "allocation_closed")
    refused_all(db, HoldNotOpen, "allocation closed", lambda: charging.settle(db, org, "h-1", 10))
    assert billing_verify(db_url).returncode == 0


def test_hold_refusals_change_nothing(db, ready):
    org = ready.id
    organizations.create_organization(db, None, "other-org", "Other Org")
    organizations.create_user(db, None, "outsider", "outsider@example.com")
    organizations.add_member(db, None, "other-org", "outsider", "admin")
    credits.add_credits(db, None, "other-org", 100, "0.1")
    credits.allocate(db, "outsider", "other-org", "outsider", 100)
    charging.reserve(db, "outsider", 10, "theirs", "llm", "gpt-4o", org_id="other-org")
    reserve(db, org, "mine", 10)

    refused_all(db, NotFound, "no credit hold", lambda: charging.settle(db, org, "unknown", 1))
    refused_all(db, NotFound, "no credit hold", lambda: charging.release(db, org, "unknown"))
    refused_all(db, NotFound, "no credit hold", lambda: charging.settle(db, org, "theirs", 1))  # another org's hold
    refused_all(db, NotFound, "no credit hold", lambda: charging.release(db, org, "theirs"))
    refused_all(db, NotFound, "does not exist", lambda: charging.settle(db, "nope", "mine", 1))
    refused_all(db, InvalidAmount, "greater than 0", lambda: charging.settle(db, org, "mine", -1))
    refused_all(db, InvalidAmount, "6 decimal", lambda: charging.settle(db, org, "mine", D("0.0000001")))
    refused_all(db, InvalidAmount, "too large", lambda: charging.settle(db, org, "mine", D("1e13")))
    refused_all(db, InvalidAmount, "greater than 0", lambda: reserve(db, org, "x", 0))
    refused_all(db, InvalidAmount, "too large", lambda: reserve(db, org, "x", D("1e13")))
    refused_all(db, InvalidAmount, "hold lifetime", lambda: reserve(db, org, "x", 5, ttl_seconds=0))
    refused_all(db, InvalidInput, "request id", lambda: reserve(db, org, None, 5))
    refused_all(db, InvalidInput, "request id", lambda: reserve(db, org, "a\tb", 5))
    refused_all(db, RequestConflict, "already holds", lambda: reserve(db, org, "mine", 11))
    refused_all(db, RequestConflict, "already holds",
                lambda: charging.reserve(db, "user-2", 10, "mine", "llm", "gpt-4o", org_id=org))
    credits.deduct(db, org, "user-1", 5, "llm", "gpt-4o", request_id="charged")
    refused_all(db, RequestConflict, "already charged", lambda: reserve(db, org, "charged", 5))
    refused_all(db, InsufficientCredits, "no credits allocated",
                lambda: charging.reserve(db, "user-2", 5, "u2", "llm", "gpt-4o", org_id=org))
    refused_all(db, InvalidInput, "infinity", lambda: fetch(db, "select release_expired_holds('infinity')"))


def test_a_hold_for_a_call_the_price_list_cannot_price_is_refused_up_front(db, ready, sysadmin):  # noqa: F811
    """Finding 16: reserve_credits accepted any model name, and settle_usage then failed; it refuses as
    price_usage does, and nothing is held."""
    org = ready.id
    refused_all(db, NotFound, "no price for model 'gpt-17-imaginary'",
                lambda: charging.reserve(db, "user-1", 10, "h-x", "llm", "gpt-17-imaginary", org_id=org))
    # a withdrawn model or service is refused too, with what price_usage says
    pricing.set_model_price(db, sysadmin, "openai", "gpt-4o", 1, 1, available=False)
    refused_all(db, InvalidInput, "withdrawn",
                lambda: charging.reserve(db, "user-1", 10, "h-y", "llm", "gpt-4o", org_id=org))
    pricing.set_service_price(db, sysadmin, "contact_lookup", 10, available=False)
    refused_all(db, InvalidInput, "not offered",
                lambda: charging.reserve(db, "user-1", 10, "h-z", "contact_lookup", "apollo", org_id=org))
    # what the price list prices is held: a model with a price, a fixed-price service under any label
    assert charging.reserve(db, "user-1", 10, "h-1", "llm", "gpt-4o-mini", org_id=org).credits == 10
    assert charging.reserve(db, "user-1", 60, "h-2", "company_enrichment", "any label", org_id=org).credits == 60
    assert charging.settle_usage(db, org, "h-1", input_tokens=100).credits > 0
    assert charging.settle_usage(db, org, "h-2").credits == 50
    assert allocation(db, org) == (D("1000"), D("50") + charged_credits(db, org, "h-1"), D("0"))


def charged_credits(db, org_id, request_id):
    return fetch(db, "select credits_used from credit_usage_attribution where org_id = :o and request_id = :r",
                 {"o": org_id, "r": request_id})[0][0]


# --------------------------------------------------------------------------- concurrency


def _engine(db_url: str, workers: int) -> sa.Engine:
    engine = sa.create_engine(database.sqlalchemy_url(db_url), pool_size=workers, max_overflow=0)
    for conn in [engine.connect() for _ in range(workers)]:
        conn.close()
    return engine


def _run(workers: int, work) -> list[tuple]:
    """Run work(worker) in `workers` threads released together; returns every (worker, key, value, error)."""
    barrier = threading.Barrier(workers, timeout=30)
    outcomes: list[tuple] = []
    lock = threading.Lock()

    def target(worker: int) -> None:
        barrier.wait()
        for key, fn in work(worker):
            try:
                result = (worker, key, fn(), None)
            except Exception as exc:  # noqa: BLE001 - every outcome is judged below
                result = (worker, key, None, exc)
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=target, args=(w,), daemon=True) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
        assert not thread.is_alive(), "a worker hung"
    return outcomes


def test_concurrent_reserves_never_hold_more_than_the_allocation(db, db_url, ready):
    org = ready.id
    engine = _engine(db_url, 12)
    try:
        outcomes = _run(12, lambda w: [
            (w, lambda: charging.reserve(engine, "user-1", 100, f"h-{w}", "llm", "gpt-4o", org_id=org))])
    finally:
        engine.dispose()
    won = [o for o in outcomes if o[3] is None]
    lost = [o for o in outcomes if o[3] is not None]
    assert len(won) == 10 and len(lost) == 2
    assert all(isinstance(o[3], InsufficientCredits) for o in lost)
    assert allocation(db, org) == (D("1000"), D("0"), D("1000"))
    refused_all(db, InsufficientCredits, "1000 more held", lambda: credits.deduct(db, org, "user-1", 1, "llm", "x"))


def test_concurrent_reserve_settle_release_and_deduct_stay_exact(db, db_url, ready):
    """Workers w and w+4 send the same request ids (retries racing their first call); allocation 300, so some
    calls run out; every credit ends up charged exactly once or freed."""
    org = ready.id
    credits.reclaim(db, ready.admin, org, "user-1", 700)  # 300 left, for about 400 credits of distinct charges
    workers, rounds = 8, 18

    def actual(i: int) -> Decimal:
        return D(i % 4 * 7)  # 0, 7, 14, 21: the last is above its 20-credit hold

    def settle_or_release(engine, request_id, amount):
        try:
            return charging.settle(engine, org, request_id, amount)
        except InsufficientCredits:
            return charging.release(engine, org, request_id)

    engine = _engine(db_url, workers)

    def work(w: int):
        pair = w % 4
        calls = []
        for i in range(rounds):
            key = f"{pair}-{i}"
            kind = (pair + i) % 3
            if kind == 0:
                calls.append((("reserve", key), lambda key=key: charging.reserve(engine, "user-1", 20, f"h-{key}", "llm", "gpt-4o", org_id=org)))
                calls.append((("settle", key), lambda key=key, i=i: settle_or_release(engine, f"h-{key}", actual(i))))
            elif kind == 1:
                calls.append((("reserve", key), lambda key=key: charging.reserve(engine, "user-1", 15, f"h-{key}", "llm", "gpt-4o", org_id=org)))
                calls.append((("release", key), lambda key=key: charging.release(engine, org, f"h-{key}")))
            else:
                calls.append((("deduct", key), lambda key=key: credits.deduct(engine, org, "user-1", 6, "llm", "gpt-4o", request_id=f"d-{key}")))
        return calls

    try:
        outcomes = _run(workers, work)
    finally:
        engine.dispose()

    unexpected = [o for o in outcomes if o[3] is not None
                  and not isinstance(o[3], (InsufficientCredits, NotFound, HoldNotOpen))]
    assert unexpected == []
    # a settle or release may only fail because its reserve did not happen (refused for lack of credits)
    refused_reserves = {o[1][1] for o in outcomes if o[1][0] == "reserve" and o[3] is not None}
    for _worker, (kind, key), _, error in outcomes:
        if error is not None and kind in ("settle", "release"):
            assert key in refused_reserves or isinstance(error, HoldNotOpen), (kind, key, error)

    # the storm did what it is for: retries raced their first calls, and credits ran out
    assert any(o[3] is None and o[1][0] == "reserve" and o[2].replayed for o in outcomes)
    assert any(isinstance(o[3], InsufficientCredits) for o in outcomes)

    allocated, used, held = allocation(db, org)
    assert (allocated, held) == (D("300"), D("0"))
    assert fetch(db, "select count(*) from credit_holds where status = 'open'")[0][0] == 0
    settled = fetch(db, "select coalesce(sum(settled_credits), 0) from credit_holds where status = 'settled'")[0][0]
    deducted = fetch(db, "select count(*) from credit_usage_attribution where request_id like 'd-%'")[0][0]
    attributed = fetch(db, "select coalesce(sum(credits_used), 0), count(*) from credit_usage_attribution")[0]
    assert used == settled + 6 * deducted == attributed[0] <= D("300")
    # each request id charged at most once, whatever the racing retries did
    assert fetch(db, "select count(distinct request_id) = count(*) from credit_usage_attribution")[0][0]
    # what callers were told agrees with the rows: every successful settle reported its own figure
    for _worker, (kind, key), value, error in outcomes:
        if kind == "settle" and error is None and value.credits:
            assert hold_row(db, org, f"h-{key}")[:2] == ("settled", value.credits)
    assert billing_verify(db_url).returncode == 0
