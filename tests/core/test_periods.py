"""Billing periods: the calendar the job follows, grants, allocation reset and rollover,
idempotence, catch-up, overlapping runs, settings and their refusals, the CLI."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from ledger_state import billing_verify, refused
from time_travel import earlier, into_the_past

from billing_core import cli, credits, ledger, organizations, periods, subscriptions
from billing_core.database import fetch
from billing_core.errors import InvalidAmount, InvalidInput, NotAMember, NotFound, PermissionDenied

HOUR = timedelta(hours=1)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def opened(db, org_id: str) -> list[tuple]:
    """(period_start, period_end, is_baseline) of the periods the job opened, oldest first, in UTC."""
    rows = fetch(db, "select period_start, period_end, is_baseline from billing_periods"
                     " where org_id = :o order by period_start", {"o": org_id})
    return [(s.astimezone(UTC), e.astimezone(UTC), b) for s, e, b in rows]


def backdate(db, org_id: str, created_at: datetime, anchor: int, zone: str) -> None:
    """Test set-up: an organization opened at `created_at` on this calendar (the job has not seen it yet)."""
    fetch(db, "update organizations set created_at = :at, billing_anchor_day = :a, billing_timezone = :z"
              " where id = :o", {"at": created_at, "a": anchor, "z": zone, "o": org_id})


def pool(db, org_id: str) -> tuple:
    return tuple(fetch(db, "select total_credits, allocated_credits, closed_used_credits from credit_pools"
                           " where org_id = :o", {"o": org_id})[0])


def active(db, org_id: str) -> dict[str, tuple]:
    rows = fetch(db, "select user_id, allocated_credits, used_credits, standing_credits from user_credit_allocations"
                     " where org_id = :o and is_active", {"o": org_id})
    return {u: (a, used, s) for u, a, used, s in rows}


def first_boundary(db, org) -> datetime:
    return periods.current_period(db, org.admin, org.id).period_end


# --------------------------------------------------------------------------- the calendar the job follows


def test_boundaries_at_month_ends_leap_day_and_anchor_31(db, org, db_url):
    backdate(db, org.id, utc(2023, 12, 31, 12), 31, "UTC")

    run = periods.run(db, utc(2024, 4, 1))

    assert opened(db, org.id) == [
        (utc(2023, 12, 31), utc(2024, 1, 31), True),
        (utc(2024, 1, 31), utc(2024, 2, 29), False),  # leap year: the 29th
        (utc(2024, 2, 29), utc(2024, 3, 31), False),
        (utc(2024, 3, 31), utc(2024, 4, 30), False),
    ]
    assert (run.orgs_processed, run.periods_closed, run.orgs_failed) == (1, 3, 0)
    assert billing_verify(db_url).returncode == 0


def test_boundaries_at_local_midnight_in_a_non_utc_zone(db, org):
    backdate(db, org.id, utc(2023, 3, 15), 1, "Europe/Berlin")

    periods.run(db, utc(2023, 5, 31, 22))  # 00:00 on June 1st in Berlin (summer time, UTC+2)

    assert opened(db, org.id) == [
        (utc(2023, 2, 28, 23), utc(2023, 3, 31, 22), True),  # winter time until March 26
        (utc(2023, 3, 31, 22), utc(2023, 4, 30, 22), False),
        (utc(2023, 4, 30, 22), utc(2023, 5, 31, 22), False),
        (utc(2023, 5, 31, 22), utc(2023, 6, 30, 22), False),
    ]


def test_calendar_change_keeps_the_current_end_and_never_adds_a_boundary(db, org):
    backdate(db, org.id, utc(2023, 1, 12), 10, "UTC")
    periods.set_calendar(db, org.admin, org.id, 20, "UTC")

    current = periods.current_period(db, org.admin, org.id)
    # Feb 10 is not a boundary of the 20th: the next period runs to the second boundary after it
    assert (current.period_start, current.period_end, current.next_period_end) == (
        utc(2023, 1, 10), utc(2023, 2, 10), utc(2023, 3, 20))
    periods.run(db, utc(2023, 4, 21))
    assert [p[:2] for p in opened(db, org.id)] == [
        (utc(2023, 1, 10), utc(2023, 2, 10)),
        (utc(2023, 2, 10), utc(2023, 3, 20)),
        (utc(2023, 3, 20), utc(2023, 4, 20)),
        (utc(2023, 4, 20), utc(2023, 5, 20)),
    ]
    audit = fetch(db, "select actor_id, details ->> 'anchor_day' from audit_log where action = 'billing.calendar_changed'")
    assert [tuple(r) for r in audit] == [(org.admin, "20")]


# --------------------------------------------------------------------------- what a boundary does


def test_boundary_grants_refresh_and_plan_credits_and_resets_allocations(db, funded_org, db_url):
    org = funded_org
    subscriptions.create_subscription(db, None, org.id, "starter")  # 5,000 included credits a period
    periods.set_monthly_refresh(db, None, org.id, 500)
    credits.allocate(db, org.admin, org.id, "user-1", 300)
    credits.allocate(db, org.admin, org.id, "user-2", 50)
    credits.deduct(db, org.id, "user-1", 100, "llm", "gpt")
    into_the_past(db)  # the job refuses a future time: the set-up happened SHIFT ago
    boundary = first_boundary(db, org)
    next_end = periods.current_period(db, org.admin, org.id).next_period_end

    periods.run(db, boundary + HOUR)

    # 10,000 - 100 used (settled as the allocation closed) + 500 + 5,000; 350 allocated again
    assert pool(db, org.id) == (Decimal(15400), Decimal(350), Decimal(100))
    assert active(db, org.id) == {"user-1": (300, 0, 300), "user-2": (50, 0, 50)}
    grants = fetch(db, "select credits, metadata ->> 'source', created_at, credits_expire_at from org_billing_history"
                       " where org_id = :o and event_type = 'credit_grant' order by id", {"o": org.id})
    assert [tuple(g) for g in grants] == [
        (500, "monthly_refresh", boundary, next_end),
        (5000, "plan_included", boundary, next_end),
    ]
    closed = fetch(db, "select user_id, used_credits, period_end from user_credit_allocations"
                       " where org_id = :o and not is_active order by user_id", {"o": org.id})
    assert [tuple(c) for c in closed] == [("user-1", 100, boundary), ("user-2", 0, boundary)]
    assert billing_verify(db_url).returncode == 0


def test_rollover_carries_unused_up_to_the_cap_without_growing_the_standing_amount(db, funded_org):
    org = funded_org
    periods.set_policy(db, org.admin, org.id, "rollover", 50)
    credits.allocate(db, org.admin, org.id, "user-1", 300)
    credits.allocate(db, org.admin, org.id, "user-2", 30)
    credits.deduct(db, org.id, "user-1", 100, "llm", "gpt")
    into_the_past(db)  # the job refuses a future time: the set-up happened SHIFT ago
    boundary = first_boundary(db, org)

    periods.run(db, boundary + HOUR)
    # user-1: 300 standing + min(200 unused, 50); user-2: 30 + min(30, 50)
    assert active(db, org.id) == {"user-1": (350, 0, 300), "user-2": (60, 0, 30)}
    kinds = fetch(db, "select e.user_id, kind, credits from credit_allocation_events e join user_credit_allocations a"
                      " on a.org_id = e.org_id and a.id = e.allocation_id where a.is_active order by e.user_id, kind")
    assert [tuple(k) for k in kinds] == [
        ("user-1", "reopen", 300), ("user-1", "rollover", 50), ("user-2", "reopen", 30), ("user-2", "rollover", 30)]

    periods.run(db, periods.current_period(db, org.admin, org.id).period_end + HOUR)
    # the standing amount stays 300 / 30; what rolls over is capped, whatever it was made of
    assert active(db, org.id) == {"user-1": (350, 0, 300), "user-2": (80, 0, 30)}
    assert ledger.verify(db) == []


def test_standing_amounts_and_a_pool_that_cannot_fund_them(db, org):
    credits.add_credits(db, None, org.id, 100, "0.1")
    credits.allocate(db, org.admin, org.id, "user-1", 10)
    periods.set_standing_credits(db, org.admin, org.id, "user-1", 80)
    periods.set_standing_credits(db, org.admin, org.id, "user-2", 120)  # no allocation yet: one opens
    periods.set_standing_credits(db, org.admin, org.id, "user-3", 0)
    into_the_past(db)  # the job refuses a future time: the set-up happened SHIFT ago

    periods.run(db, first_boundary(db, org) + HOUR)

    # 200 asked, 100 in the pool: each gets half of theirs
    assert active(db, org.id) == {"user-1": (40, 0, 80), "user-2": (60, 0, 120)}
    assert pool(db, org.id) == (100, 100, 0)
    row = fetch(db, "select credits_requested, credits_allocated, allocations_closed, allocations_opened"
                    " from billing_periods where org_id = :o and not is_baseline", {"o": org.id})[0]
    assert tuple(row) == (200, 100, 1, 2)
    assert fetch(db, "select count(*) from audit_log where action = 'billing.allocation_shortfall'")[0][0] == 1
    assert ledger.verify(db) == []


# --------------------------------------------------------------------------- exactly once


def ledger_figures(db, org_id: str) -> dict[str, list]:
    """What the job decides for an organization, without ids and recording times."""
    queries = {
        "pool": "select total_credits, allocated_credits, closed_used_credits, lots_settled_credits"
                " from credit_pools where org_id = :o",
        "allocations": "select user_id, allocated_credits, used_credits, is_active,"
                       " case when standing_credits is not null then period_start end, period_end,"
                       " standing_credits from user_credit_allocations where org_id = :o"
                       " order by user_id, period_start",
        # credit events in the order they happened (a late run renews the subscription first, so ids differ)
        "history": "select event_type, credits, credits_expire_at, metadata - 'lot_id' - 'subscription_id' - 'allocation_id',"
                   " created_at from org_billing_history"
                   " where org_id = :o and event_type in ('credit_grant', 'usage_settlement', 'credit_expiry')"
                   " order by created_at, event_type, credits",
        # the subscription's periods and their invoices (its first period started when the test set it up)
        "invoices": "select metadata ->> 'period_end', amount from org_billing_history"
                    " where org_id = :o and event_type = 'invoice' and created_at > (select min(created_at)"
                    "  from org_billing_history where org_id = :o and event_type = 'invoice')"
                    " order by created_at",
        "lots": "select source, credits, expires_at, consumed_credits, expired_credits from credit_lots"
                " where org_id = :o order by expires_at nulls last, source, credits",
        "periods": "select period_start, period_end, is_baseline, refresh_credits, included_credits,"
                   " allocations_closed, allocations_opened, credits_requested, credits_allocated"
                   " from billing_periods where org_id = :o order by period_start",
    }
    return {name: [tuple(r) for r in fetch(db, q, {"o": org_id})] for name, q in queries.items()}


def set_up(db, org_id: str, admin: str) -> None:
    organizations.create_organization(db, None, org_id, org_id)
    organizations.add_member(db, None, org_id, admin, "admin")
    organizations.add_member(db, None, org_id, "user-1")
    credits.add_credits(db, None, org_id, 1000, 1)
    subscriptions.create_subscription(db, None, org_id, "starter")
    periods.set_monthly_refresh(db, None, org_id, 200)
    periods.set_policy(db, None, org_id, "rollover", 25)
    credits.allocate(db, None, org_id, "user-1", 100)
    credits.deduct(db, org_id, "user-1", 40, "llm", "gpt")


def test_running_twice_changes_nothing_more(db, funded_org):
    org = funded_org
    periods.set_monthly_refresh(db, None, org.id, 200)
    credits.allocate(db, org.admin, org.id, "user-1", 100)
    into_the_past(db)  # the job refuses a future time: the set-up happened SHIFT ago
    at = first_boundary(db, org) + HOUR
    first = periods.run(db, at)
    state = ledger_figures(db, org.id)

    second = periods.run(db, at)

    assert ledger_figures(db, org.id) == state
    assert (first.periods_closed, second.periods_closed, second.orgs_processed) == (1, 0, 1)


def test_catching_up_three_missed_periods_equals_running_on_time(db, org):
    set_up(db, "on-time", org.admin)
    set_up(db, "late", org.admin)
    fetch(db, "update organizations set created_at = (select created_at from organizations where id = 'on-time'),"
              " billing_anchor_day = (select billing_anchor_day from organizations where id = 'on-time')"
              " where id = 'late'")
    into_the_past(db)  # the job refuses a future time: the set-up happened SHIFT ago
    fetch(db, "update organizations set status = 'closed' where id = 'late'")  # the on-time runs skip it
    boundary = first_boundary(db, org)
    for _ in range(3):
        periods.run(db, boundary + HOUR)
        boundary = periods.current_period(db, org.admin, "on-time").period_end
    on_time = ledger_figures(db, "on-time")

    fetch(db, "update organizations set status = 'active' where id = 'late'")
    run = periods.run(db, boundary - HOUR)  # one run, three boundaries late

    assert run.periods_closed == 3
    assert ledger_figures(db, "late") == on_time
    assert len(on_time["periods"]) == 4 and on_time["allocations"][-1][1:4] == (125, 0, True)
    assert ledger.verify(db) == []


def test_overlapping_runs_do_the_work_once(db, db_url, org):
    for n in range(4):
        set_up(db, f"org-{n}", org.admin)
    into_the_past(db)  # the job refuses a future time: the set-up happened SHIFT ago
    at = first_boundary(db, org) + 40 * timedelta(days=1)
    start = threading.Barrier(2)
    runs, errors = [], []

    def go() -> None:
        try:
            start.wait(timeout=10)
            runs.append(periods.run(db, at))
        except Exception as exc:  # noqa: BLE001 -- asserted below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == [] and len(runs) == 2
    assert sum(r.periods_closed for r in runs) == 2 * 5  # two boundaries per org (and the fixture's), each once
    assert all(r.orgs_failed == 0 and r.finished_at for r in runs)
    grants = fetch(db, "select org_id, count(*) from org_billing_history where event_type = 'credit_grant'"
                       " group by org_id order by org_id")
    assert [tuple(g) for g in grants] == [(f"org-{n}", 4) for n in range(4)]  # refresh + plan, twice
    assert billing_verify(db_url).returncode == 0


# --------------------------------------------------------------------------- settings and refusals


def test_bad_settings_are_refused_and_change_nothing(db, org):
    other = "outsider"
    organizations.create_user(db, None, other, "outsider@example.com")
    refused(db, InvalidInput, "1 to 31 (got 0)", lambda: periods.set_calendar(db, org.admin, org.id, 0, "UTC"))
    refused(db, InvalidInput, "not a time zone", lambda: periods.set_calendar(db, org.admin, org.id, 1, "Mars/Olympus"))
    refused(db, InvalidInput, "not a time zone",
            lambda: periods.set_calendar(db, org.admin, org.id, 1, "UTC'; drop table users; --"))
    refused(db, InvalidInput, "must be 'reset' or 'rollover'",
            lambda: periods.set_policy(db, org.admin, org.id, "<b>forever</b>"))
    refused(db, InvalidInput, "needs a cap", lambda: periods.set_policy(db, org.admin, org.id, "rollover"))
    refused(db, InvalidInput, "'rollover' policy only", lambda: periods.set_policy(db, org.admin, org.id, "reset", 5))
    refused(db, InvalidAmount, "greater than 0 (got -5)",
            lambda: periods.set_policy(db, org.admin, org.id, "rollover", -5))
    refused(db, InvalidAmount, "too large", lambda: periods.set_policy(db, org.admin, org.id, "rollover", 10**13))
    refused(db, InvalidAmount, "not a number", lambda: periods.set_standing_credits(db, org.admin, org.id, "user-1", "abc"))
    refused(db, InvalidAmount, "more than 6 decimal places",
            lambda: periods.set_standing_credits(db, org.admin, org.id, "user-1", "1.0000001"))
    refused(db, NotAMember, "not a member", lambda: periods.set_standing_credits(db, org.admin, org.id, other, 5))
    refused(db, NotFound, "does not exist", lambda: periods.set_standing_credits(db, org.admin, org.id, "ghost", 5))
    refused(db, InvalidAmount, "got -1", lambda: periods.set_low_balance_threshold(db, org.admin, org.id, -1))
    refused(db, PermissionDenied, "not an admin", lambda: periods.set_low_balance_threshold(db, "user-1", org.id, 5))
    refused(db, PermissionDenied, "not an admin", lambda: periods.set_calendar(db, other, org.id, 5, "UTC"))
    refused(db, PermissionDenied, "not a system admin", lambda: periods.set_monthly_refresh(db, org.admin, org.id, 100))
    refused(db, InvalidAmount, "missing", lambda: periods.set_monthly_refresh(db, None, org.id, None))
    refused(db, NotFound, "does not exist", lambda: periods.set_policy(db, None, "no-such-org", "reset"))


def test_settings_are_read_back_and_audited(db, org):
    periods.set_calendar(db, org.admin, org.id, 31, "America/New_York")
    periods.set_policy(db, org.admin, org.id, "rollover", "12.5")
    periods.set_low_balance_threshold(db, org.admin, org.id, 1000)
    periods.set_monthly_refresh(db, None, org.id, 0)

    got = periods.settings(db, "user-1", org.id)

    assert got == periods.Settings(31, "America/New_York", "rollover", Decimal("12.5"), Decimal(1000), Decimal(0))
    actions = [r[0] for r in fetch(db, "select action from audit_log where action like 'billing.%' order by id")]
    assert actions == ["billing.calendar_changed", "billing.allocation_policy_changed",
                       "billing.low_balance_threshold_changed", "billing.monthly_refresh_changed"]


# --------------------------------------------------------------------------- the command and last_run


def test_cli_runs_the_job_and_says_when_it_last_ran(db, db_url, org, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert periods.last_run(db, None) is None
    assert cli.main(["periods", "last"]) == 0
    assert "never run" in capsys.readouterr().out

    assert cli.main(["periods", "run"]) == 0
    out = capsys.readouterr().out
    assert "1 organizations processed, 0 periods closed" in out

    last = periods.last_run(db, None)
    assert last is not None and last.finished_at is not None and last.orgs_processed == 1
    assert cli.main(["periods", "last"]) == 0
    assert f"Period run {last.id}" in capsys.readouterr().out
    assert cli.main(["periods", "run", "--now", "2999-01-01"]) == 1
    assert "in the future" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        cli.main(["periods", "run", "--now", "yesterday"])
    assert caught.value.code == 2


def test_a_call_in_flight_keeps_its_hold_across_the_boundary(db, org):
    from billing_core import charging

    # an organization whose next boundary is three days away (holds live at most 7 days)
    soon = datetime.now(UTC) + timedelta(days=3)
    organizations.create_organization(db, None, "flight", "flight")
    backdate(db, "flight", datetime.now(UTC), min(soon.day, 28), "UTC")
    organizations.add_member(db, None, "flight", org.admin, "admin")
    organizations.add_member(db, None, "flight", "user-1")
    credits.add_credits(db, None, "flight", 1000, 1)
    periods.set_policy(db, None, "flight", "rollover", 25)
    credits.allocate(db, None, "flight", "user-1", 100)
    credits.deduct(db, "flight", "user-1", 40, "llm", "gpt")
    boundary = periods.current_period(db, org.admin, "flight").period_end
    assert boundary - datetime.now(UTC) < timedelta(days=6)
    ttl = int((boundary - datetime.now(UTC)).total_seconds()) + 7200
    charging.reserve(db, "user-1", 50, "call-across", "llm", "gpt-4o", org_id="flight", ttl_seconds=ttl)
    # the job refuses a future time: the set-up happened SHIFT ago, the call is still in flight now
    into_the_past(db, keep=("credit_holds.expires_at",))
    boundary = earlier(boundary)

    periods.run(db, boundary + HOUR)

    [row] = fetch(db, "select a.allocated_credits, a.used_credits, a.held_credits, h.status"
                      "  from credit_holds h join user_credit_allocations a"
                      "    on a.org_id = h.org_id and a.id = h.allocation_id"
                      " where h.org_id = 'flight' and h.request_id = 'call-across'")
    # standing 100 + rollover min(100 - 40 used - 50 held, 25) + the 50 held = 160; the hold moved along, open
    assert tuple(row) == (Decimal(160), Decimal(0), Decimal(50), "open")
    assert ledger.verify(db) == []
    end = charging.settle(db, "flight", "call-across", 30)
    assert end.credits == 30
    [row] = fetch(db, "select allocated_credits, used_credits, held_credits from user_credit_allocations"
                      " where org_id = 'flight' and user_id = 'user-1' and is_active")
    assert tuple(row) == (Decimal(160), Decimal(30), Decimal(0))
    assert ledger.verify(db) == []
