"""The `billing` command: every operator command, and bad input answered in one line.

Most cases call billing_core.cli.main(argv) in this process with DATABASE_URL
pointing at the test's database; a few run the installed console script to
prove the real exit statuses. A refusal or usage error must print exactly one
line on stderr, nothing on stdout, no traceback, exit non-zero and leave every
ledger table as it was.
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

import billing_demo as demo
from billing_core import api_keys, auth, cli, credits, database, organizations, reports
from billing_core.database import fetch
from tests.ledger_state import snapshot

BILLING = Path(sys.executable).parent / "billing"
DEDUCT = ("--service-type", "llm", "--service-name", "gpt-4o")


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def billing(db_url, monkeypatch, capsys):
    """Run `billing ARGS...` in this process against the test's database."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.delenv("BILLING_DEBUG", raising=False)
    capsys.readouterr()

    def run(*argv: str) -> Result:
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def assert_one_line_refusal(result: Result, code: int) -> None:
    assert result.code == code, result
    assert "Traceback" not in result.err
    assert result.out == ""
    assert result.err.endswith("\n") and result.err.count("\n") == 1, f"not one line: {result.err!r}"
    assert re.match(r"billing( [\w-]+)*: ", result.err), result.err


def figures(text: str) -> dict[str, str]:
    """`pool show` output as {label: figure}."""
    return dict(re.findall(r"^\s+(\w+)\s+([-\d,.]+)$", text, re.MULTILINE))


# --------------------------------------------------------------------------- every command works


def test_every_operator_command(billing, db, db_url):
    run = billing
    assert run("org", "create", "acme", "Acme Inc") == Result(0, "Created organization acme.\n", "")
    assert run("user", "create", "ada", "ada@acme.example", "--name", "Ada Admin").code == 0
    assert run("user", "create", "bob", "bob@acme.example").out == "Created user bob.\n"
    assert run("user", "create", "root", "root@ops.example", "--system-admin").code == 0
    assert run("member", "add", "acme", "ada", "--role", "admin").out == "Added ada to acme as admin.\n"
    assert run("member", "add", "acme", "bob").out == "Added bob to acme as member.\n"
    assert organizations.get_user(db, "ada").display_name == "Ada Admin"
    assert organizations.get_user(db, "root").is_system_admin is True

    added = run("credits", "add", "acme", "10000", "--amount", "10", "--reference", "INV-1")
    assert added == Result(0, "Pool of acme now holds 10,000 credits.\n", "")
    # the same payment reference again adds nothing
    assert run("credits", "add", "acme", "10000", "--amount", "10", "--reference", "INV-1") == added
    assert run("credits", "grant", "acme", "0.5", "--reason", "Pilot bonus").out == (
        "Granted 0.5 credits to acme (Pilot bonus); its pool now holds 10,000.5 credits.\n")

    assert run("credits", "allocate", "acme", "bob", "1000").out == "bob now has 1,000 credits remaining in acme.\n"
    assert run("--as", "ada", "credits", "allocate", "acme", "bob", "0.25").code == 0
    deduct = ("credits", "deduct", "acme", "bob", "50", "--service-type", "company_enrichment",
              "--service-name", "Company enrichment", "--request-id", "req-1")
    assert run(*deduct).out == "Charged. bob has 950.25 credits remaining in acme.\n"
    assert run(*deduct).out == "Charged. bob has 950.25 credits remaining in acme.\n"  # a retry: charged once
    assert run("credits", "deduct", "acme", "bob", "0.25", *DEDUCT).code == 0
    assert run("credits", "reclaim", "acme", "bob", "100").out == "Took back 100 credits from bob in acme.\n"
    assert run("--as", "ada", "credits", "reclaim", "acme", "bob").out == "Took back 850 credits from bob in acme.\n"
    assert run("credits", "allocate", "acme", "bob", "10").code == 0

    shown = run("--as", "ada", "pool", "show", "acme")
    assert shown.code == 0 and shown.out.startswith("Pool of acme:\n")
    assert figures(shown.out) == {"total": "10,000.5", "allocated": "60.25", "used": "50.25", "available": "9,940.25"}
    assert figures(run("--as", "root", "pool", "show", "acme").out) == figures(shown.out)  # a system admin too

    removed = run("member", "remove", "acme", "bob")
    assert removed.out == "Removed bob from acme; 10 unused credits returned to the pool.\n"
    pool = reports.pool(db, "ada", "acme")
    # bob's 50.25 used credits left the total with his allocation, and stay counted as used
    assert (pool.total_credits, pool.allocated_credits, pool.used_credits, pool.available_credits) == (
        Decimal("9950.25"), 0, Decimal("50.25"), Decimal("9950.25"),
    )
    assert fetch(db, "select count(*) from credit_usage_attribution")[0][0] == 2
    assert fetch(db, "select count(*) from org_billing_history where external_ref = 'INV-1'")[0][0] == 1

    assert run("verify") == Result(0, "Ledger verified: every invariant holds.\n", "")
    assert run("verify", "--org", "acme").code == 0
    assert run("db", "migrate") == Result(0, "Schema up to date.\n", "")
    assert run("db", "url") == Result(0, db_url + "\n", "")


# --------------------------------------------------------------------------- bad input


@pytest.fixture
def ready(db):
    """acme: admin ada, member bob holding 1,000 of a 10,000 pool. other: admin olga, member oscar."""
    organizations.create_organization(db, None, "acme", "Acme Inc")
    organizations.create_organization(db, None, "other", "Other Org")
    for user in ("ada", "bob", "olga", "oscar"):
        organizations.create_user(db, None, user, f"{user}@example.com")
    organizations.create_user(db, None, "root", "root@example.com", is_system_admin=True)
    organizations.add_member(db, None, "acme", "ada", "admin")
    organizations.add_member(db, None, "acme", "bob")
    organizations.add_member(db, None, "other", "olga", "admin")
    organizations.add_member(db, None, "other", "oscar")
    credits.add_credits(db, None, "acme", 10_000, 10)
    credits.add_credits(db, None, "other", 100, "0.1")
    credits.allocate(db, None, "acme", "bob", 1_000)
    credits.allocate(db, None, "other", "oscar", 10)
    return db


def check_all(billing, db, cases, code: int) -> None:
    """Every case exits `code` with one line on stderr and changes nothing; all failures reported at once."""
    problems = []
    for argv in cases:
        before = snapshot(db)
        result = billing(*argv)
        try:
            assert_one_line_refusal(result, code)
            if code == 1:
                assert result.err.startswith("billing: refused: ")
                assert len(result.err.strip()) > len("billing: refused: ") + 10  # says why
            else:
                assert "error:" in result.err
            assert snapshot(db) == before, "the database changed"
        except AssertionError as exc:
            problems.append(f"billing {argv!r}: {exc}")
    assert not problems, "\n\n".join(problems)


def test_usage_errors_exit_2_in_one_line(billing, ready):
    check_all(billing, ready, [
        (),
        ("frobnicate",),
        ("--as",),
        ("db",),
        ("db", "explode"),
        ("org", "create"),
        ("org", "create", "only-an-id"),
        ("user", "create", "carol"),
        ("member", "add", "acme", "bob", "--role", "owner"),
        ("credits", "add", "acme", "5"),  # --amount is required
        ("credits", "add", "acme", "5", "--amount"),
        ("credits", "allocate", "acme", "bob"),
        ("credits", "allocate", "acme", "bob", "5", "extra"),
        ("credits", "deduct", "acme", "bob", "5"),  # service type and name are required
        ("credits", "deduct", "acme", "bob", "5", "--service-type", "llm"),
        ("credits", "allocate", "acme", "bob", "-Infinity"),  # read as an unknown option
        ("pool", "show"),
        ("verify", "--org"),
        ("credits", "add", "acme", "5", "--amount", "1", "--bogus"),
    ], 2)


BAD_AMOUNTS = ["abc", "-5", "0", "-0", "0.000", "NaN", "nan", "sNaN", "Infinity", "inf", "1e400", "1e1000000",
               "1e-1000000", "1e13", "1000000000000.000001", "0.0000001", "", " ", "12 credits", "0x10", "1/2", "5%",
               "9" * 5000]


def test_bad_amounts_refused(billing, ready):
    check_all(billing, ready, [
        *[("credits", "add", "acme", amount, "--amount", "1") for amount in BAD_AMOUNTS],
        *[("credits", "allocate", "acme", "bob", amount) for amount in BAD_AMOUNTS],
        *[("credits", "reclaim", "acme", "bob", amount) for amount in ("abc", "-5", "0", "NaN", "1e400", "0.0000001")],
        *[("credits", "deduct", "acme", "bob", amount, *DEDUCT) for amount in BAD_AMOUNTS],
        *[("credits", "add", "acme", "5", "--amount", paid) for paid in ("-1", "NaN", "0.00001", "1e11", "ten", "inf")],
        ("credits", "allocate", "acme", "bob", "9000.000001"),  # 9,000 available
        ("credits", "deduct", "acme", "bob", "1000.000001", *DEDUCT),  # 1,000 remaining
        ("credits", "reclaim", "acme", "bob", "1000.000001"),
    ], 1)


def test_unknown_organizations_and_users_refused(billing, ready):
    check_all(billing, ready, [
        ("credits", "add", "nope", "5", "--amount", "1"),
        ("credits", "allocate", "nope", "bob", "5"),
        ("credits", "deduct", "nope", "bob", "5", *DEDUCT),
        ("credits", "reclaim", "nope", "bob"),
        ("member", "add", "nope", "bob"),
        ("member", "remove", "nope", "bob"),
        ("--as", "root", "pool", "show", "nope"),
        ("credits", "allocate", "acme", "ghost", "5"),
        ("credits", "deduct", "acme", "ghost", "5", *DEDUCT),
        ("member", "add", "acme", "ghost"),
        ("--as", "ghost", "pool", "show", "acme"),
        ("--as", "ghost", "credits", "allocate", "acme", "bob", "5"),
    ], 1)


def test_users_of_another_organization_and_missing_roles_refused(billing, ready):
    check_all(billing, ready, [
        ("credits", "allocate", "acme", "oscar", "5"),
        ("credits", "deduct", "acme", "oscar", "5", *DEDUCT),
        ("credits", "reclaim", "acme", "oscar"),
        ("member", "remove", "acme", "oscar"),
        ("--as", "olga", "credits", "allocate", "acme", "bob", "5"),
        ("--as", "olga", "pool", "show", "acme"),
        ("--as", "bob", "pool", "show", "acme"),
        ("--as", "bob", "credits", "allocate", "acme", "bob", "5"),
        ("--as", "ada", "org", "create", "new-org", "New"),
        ("pool", "show", "acme"),  # reading a pool needs --as
    ], 1)


def test_broken_rules_refused(billing, ready):
    check_all(billing, ready, [
        ("member", "add", "acme", "bob"),
        ("member", "remove", "acme", "ada"),  # the only admin
        ("org", "create", "acme", "Again"),
        ("user", "create", "bob", "someone@example.com"),
        ("user", "create", "bobby", "BOB@example.com"),
        ("credits", "reclaim", "acme", "ada"),  # no allocation to take back from
    ], 1)


def test_bad_text_refused(billing, ready):
    check_all(billing, ready, [
        ("org", "create", "has space", "X"),
        ("org", "create", "x'; drop table organizations; --", "X"),
        ("org", "create", "", "X"),
        ("org", "create", "x" * 129, "X"),
        ("org", "create", "new-org", "   "),
        ("org", "create", "new-org", "tab\there"),
        ("org", "create", "new-org", "n" * 201),
        ("user", "create", "o'neil", "not-an-email"),
        ("user", "create", "<b>carol</b>", "carol@localhost"),
        ("user", "create", "carol", "carol@example.com", "--name", "x" * 201),
        ("user", "create", "carol", "'; drop table users; --@example.com"),
        ("credits", "deduct", "acme", "bob", "1", "--service-type", "LLM Calls", "--service-name", "m"),
        ("credits", "deduct", "acme", "bob", "1", "--service-type", "llm'; drop table users; --",
         "--service-name", "m"),
        ("credits", "deduct", "acme", "bob", "1", "--service-type", "<script>", "--service-name", "m"),
        ("credits", "deduct", "acme", "bob", "1", "--service-type", "llm", "--service-name", ""),
        ("credits", "deduct", "acme", "bob", "1", "--service-type", "llm", "--service-name", "a\tb"),
        ("credits", "deduct", "acme", "bob", "1", *DEDUCT, "--request-id", ""),
        ("credits", "deduct", "acme", "bob", "1", *DEDUCT, "--request-id", "r" * 201),
        ("credits", "add", "acme", "5", "--amount", "1", "--reference", "r" * 201),
        ("credits", "allocate", "acme", "bob'; update credit_pools set total_credits = 0; --", "5"),
    ], 1)


def test_db_stop_refuses_a_database_url_server(billing, ready):
    result = billing("db", "stop")
    assert (result.code, result.out) == (1, "")
    assert result.err == "DATABASE_URL is set: that server is not ours to stop.\n"


def test_refusal_messages_name_the_problem(billing, ready):
    assert "does not exist" in billing("credits", "allocate", "nope", "bob", "5").err
    assert "'ghost' does not exist" in billing("credits", "allocate", "acme", "ghost", "5").err
    assert "not a member" in billing("credits", "deduct", "acme", "oscar", "5", *DEDUCT).err
    assert "9000 available, 9001 requested" in billing("credits", "allocate", "acme", "bob", "9001").err
    assert "1000 remaining" in billing("credits", "deduct", "acme", "bob", "1001", *DEDUCT).err
    assert "greater than 0" in billing("credits", "allocate", "acme", "bob", "0").err
    assert "6 decimal places" in billing("credits", "allocate", "acme", "bob", "0.0000001").err
    assert "too large" in billing("credits", "allocate", "acme", "bob", "1e13").err
    assert "not a number" in billing("credits", "allocate", "acme", "bob", "abc").err
    assert "finite" in billing("credits", "allocate", "acme", "bob", "NaN").err
    assert "not an admin" in billing("--as", "bob", "pool", "show", "acme").err
    assert "--as USER" in billing("pool", "show", "acme").err
    assert "only admin" in billing("member", "remove", "acme", "ada").err
    assert "invalid choice: 'owner'" in billing("member", "add", "acme", "bob", "--role", "owner").err
    assert "--amount" in billing("credits", "add", "acme", "5").err


def test_orders_commands(billing, ready):
    run = billing
    created = run("--as", "ada", "orders", "create", "acme", "--package", "growth_50k")
    assert created.code == 0, created
    order_id = re.search(r"Order (ord-\w+) of acme", created.out).group(1)
    assert "52,500 credits for $50, awaiting payment." in created.out
    by_credits = run("--as", "ada", "orders", "create", "acme", "--credits", "2500")
    other_id = re.search(r"Order (ord-\w+)", by_credits.out).group(1)
    assert "2,500 credits for $2.5, awaiting payment." in by_credits.out

    waiting = run("orders", "list", "--awaiting")
    assert waiting.code == 0 and order_id in waiting.out and other_id in waiting.out
    assert order_id in run("--as", "ada", "orders", "list", "acme").out
    # the org admin neither records a payment nor grants, nor adds credits at a price
    check_all(billing, ready, [
        ("--as", "ada", "orders", "pay", order_id, "--reference", "INV-9"),
        ("--as", "ada", "orders", "list"),
        ("--as", "ada", "credits", "grant", "acme", "100", "--reason", "mine"),
        ("--as", "ada", "credits", "add", "acme", "1000000000000", "--amount", "0"),
        ("--as", "ada", "credits", "add", "acme", "100", "--amount", "0.0001"),
        ("credits", "add", "acme", "100", "--amount", "0"),  # free credits are a grant
        ("credits", "add", "acme", "100", "--amount", "1000000000"),  # above the list price
        ("credits", "grant", "acme", "100", "--reason", " "),
        ("--as", "bob", "orders", "create", "acme", "--credits", "10"),
        ("orders", "create", "acme", "--credits", "1.5"),
        ("orders", "pay", "ord-nope", "--reference", "INV-9"),
    ], 1)
    check_all(billing, ready, [
        ("orders", "create", "acme"),
        ("orders", "create", "acme", "--package", "growth_50k", "--credits", "5"),
        ("orders", "pay", order_id),
    ], 2)

    paid = run("orders", "pay", order_id, "--reference", "INV-9")
    assert paid.code == 0 and "paid (payment INV-9)." in paid.out
    assert reports.pool(ready, "ada", "acme").total_credits == Decimal("62500")
    assert run("orders", "pay", order_id, "--reference", "INV-9").code == 0  # a retry: nothing more
    assert reports.pool(ready, "ada", "acme").total_credits == Decimal("62500")
    assert "one payment credits one order" in run("orders", "pay", other_id, "--reference", "INV-9").err
    assert "canceled" in run("--as", "ada", "orders", "cancel", other_id).out
    assert run("orders", "list").out == "No orders.\n"
    assert run("--as", "root", "credits", "grant", "acme", "100", "--reason", "Outage credit").code == 0
    assert run("verify").code == 0


def test_a_user_orders_credits_for_their_individual_balance(billing, ready):
    """Finding 2: a user buys their own credits only through an order; they arrive when it is paid."""
    created = billing("--as", "bob", "orders", "personal", "bob", "--credits", "3000")
    assert created.code == 0, created
    assert "3,000 credits for $3, awaiting payment." in created.out
    order_id = re.search(r"Order (ord-\w+) of (\S+):", created.out).group(1)
    check_all(billing, ready, [
        ("--as", "bob", "orders", "personal", "oscar", "--credits", "10"),  # not for someone else
        ("--as", "bob", "credits", "add", personal_org(ready, "bob"), "3000", "--amount", "0"),
    ], 1)
    assert billing("orders", "pay", order_id, "--reference", "INV-BOB-1").code == 0
    assert reports.pool(ready, "bob", personal_org(ready, "bob")).total_credits == Decimal("3000")


def personal_org(db, user_id: str) -> str:
    """The id of the user's individual balance (their personal organization)."""
    return fetch(db, "select id from organizations where personal_user_id = :u", {"u": user_id})[0][0]


def test_request_id_reused_for_another_charge_is_refused(billing, ready):
    first = billing("credits", "deduct", "acme", "bob", "5", *DEDUCT, "--request-id", "r-1")
    assert first.out == "Charged. bob has 995 credits remaining in acme.\n"
    before = snapshot(ready)
    for argv in (
        ("credits", "deduct", "acme", "bob", "6", *DEDUCT, "--request-id", "r-1"),
        ("credits", "deduct", "acme", "bob", "5", "--service-type", "other", "--service-name", "x",
         "--request-id", "r-1"),
    ):
        result = billing(*argv)
        assert_one_line_refusal(result, 1)
        assert "already used" in result.err
    assert snapshot(ready) == before
    # the same figures written differently are the same charge: a retry, charged once
    assert billing("credits", "deduct", "acme", "bob", "5.000", *DEDUCT, "--request-id", "r-1").out == first.out
    after = snapshot(ready)
    for table in ("credit_usage_attribution", "org_billing_history", "credit_allocation_events", "audit_log"):
        assert after[table] == before[table]
    assert reports.my_credits(ready, "bob").iloc[0].used_credits == 5


def test_payment_reference_reused_with_other_figures_is_refused(billing, ready):
    assert billing("credits", "add", "acme", "1000", "--amount", "1", "--reference", "INV-9").code == 0
    before = snapshot(ready)
    result = billing("credits", "add", "acme", "2000", "--amount", "1", "--reference", "INV-9")
    assert_one_line_refusal(result, 1)
    assert "INV-9" in result.err and "one payment credits one order" in result.err
    assert snapshot(ready) == before


def test_quotes_html_and_sql_in_ids_and_names_are_stored_verbatim(billing, ready):
    org_id = "o'brien<script>\"x\""
    name = "Robert'); DROP TABLE users;-- <b>&amp;</b> \"quoted\""
    user_id = "bobby'tables;--"
    assert billing("org", "create", org_id, name).code == 0
    assert billing("user", "create", user_id, "bobby@example.com", "--name", "<img src=x onerror=alert(1)>").code == 0
    assert billing("member", "add", org_id, user_id, "--role", "admin").code == 0
    assert billing("credits", "grant", org_id, "10", "--reason", name).code == 0
    allocated = billing("credits", "allocate", org_id, user_id, "4").out
    assert allocated == f"{user_id} now has 4 credits remaining in {org_id}.\n"
    assert billing("credits", "deduct", org_id, user_id, "1", "--service-type", "llm", "--service-name", name,
                   "--request-id", name).code == 0

    row = fetch(ready, "select o.name, u.display_name from organizations o, users u where o.id = :o and u.id = :u",
                {"o": org_id, "u": user_id})[0]
    assert tuple(row) == (name, "<img src=x onerror=alert(1)>")
    assert fetch(ready, "select count(*) from users")[0][0] == 6  # the users table is still there, and whole
    assert figures(billing("--as", user_id, "pool", "show", org_id).out) == {
        "total": "10", "allocated": "4", "used": "1", "available": "6",
    }
    assert billing("verify").code == 0


# --------------------------------------------------------------------------- verify on a corrupted ledger


def test_verify_exits_4_and_prints_the_violation(billing, ready, db_url):
    assert billing("verify").code == 0
    with psycopg.connect(db_url) as conn:
        conn.execute("update credit_pools set allocated_credits = allocated_credits + 1 where org_id = 'acme'")

    result = billing("verify")
    assert result.code == 4
    assert result.out == (
        "pool_allocated_matches_allocations: org acme pool: "
        "pool allocated 1001.000000, active allocations hold 1000.000000\n"
    )
    assert result.err == "1 invariant violation(s).\n"
    assert billing("verify", "--org", "acme").code == 4
    assert billing("verify", "--org", "other") == Result(0, "Ledger verified: every invariant holds.\n", "")


def test_verify_catches_a_charge_written_around_the_functions(billing, ready, db_url):
    with psycopg.connect(db_url) as conn:
        conn.execute("update user_credit_allocations set used_credits = used_credits + 5 where user_id = 'bob'")
    result = billing("verify")
    assert result.code == 4
    invariants = sorted(line.split(":")[0] for line in result.out.splitlines())
    assert invariants == ["allocation_used_matches_attribution", "pool_used_matches_attribution"]
    assert result.err == "2 invariant violation(s).\n"


def test_verify_catches_lots_holds_and_subscription_history_changed_around_the_functions(billing, ready, db_url):
    from billing_core import charging, subscriptions

    subscriptions.create_subscription(ready, None, "acme", "platform", trial=False)
    charging.reserve(ready, "bob", 30, "call-1", "llm", "gpt-4o", org_id="acme")
    assert billing("verify").code == 0
    with psycopg.connect(db_url) as conn:
        conn.execute("update organization_subscriptions set price_amount = 80 where org_id = 'acme'")
        conn.execute("update credit_holds set credits = 20 where request_id = 'call-1'")
        conn.execute("update credit_lots set credits = credits + 5 where org_id = 'other'")
    result = billing("verify")
    assert result.code == 4
    invariants = sorted({line.split(":")[0] for line in result.out.splitlines()})
    assert invariants == [
        "allocation_held_matches_holds", "history_credits_without_lot", "lots_match_pool",
        "subscription_history_matches_mrr",
    ]


# --------------------------------------------------------------------------- the installed command


def test_installed_command_exit_statuses(db_url, ready):
    env = {k: v for k, v in os.environ.items() if k != "BILLING_DEBUG"}
    env["DATABASE_URL"] = db_url

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BILLING), *argv], env=env, capture_output=True, text=True, timeout=120, check=False)

    usage = run("credits", "frobnicate")
    assert (usage.returncode, usage.stdout, usage.stderr.count("\n")) == (2, "", 1)
    refused = run("credits", "allocate", "acme", "bob", "NaN")
    assert (refused.returncode, refused.stdout, refused.stderr.count("\n")) == (1, "", 1)
    assert "Traceback" not in usage.stderr + refused.stderr

    with psycopg.connect(db_url) as conn:
        conn.execute("update credit_pools set allocated_credits = allocated_credits + 1 where org_id = 'acme'")
    corrupted = run("verify")
    assert corrupted.returncode == 4
    assert corrupted.stdout.startswith("pool_allocated_matches_allocations: org acme pool:")
    assert corrupted.stderr == "1 invariant violation(s).\n"


# --------------------------------------------------------------------------- an unreachable database


@pytest.fixture
def unreachable_url(monkeypatch):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://nobody@127.0.0.1:{port}/billing"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv("BILLING_DEBUG", raising=False)
    yield url
    database.dispose_engine(url)


@pytest.mark.parametrize("argv", [("verify",), ("db", "migrate"), ("credits", "allocate", "acme", "bob", "5")])
def test_unreachable_database_exits_3(unreachable_url, capsys, argv):
    assert cli.main(list(argv)) == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("billing: ") and "Traceback" not in err
    assert "127.0.0.1" in err


@pytest.mark.parametrize("argv", [("verify",), ("db", "migrate")])
def test_unreachable_database_error_is_one_line(unreachable_url, capsys, argv):
    cli.main(list(argv))
    err = capsys.readouterr().err
    assert err.count("\n") == 1, repr(err)


# --------------------------------------------------------------------------- input people get wrong


@pytest.mark.parametrize("argv", [
    ("org", "create", "x\ny", "X"),
    ("credits", "allocate", "acme", "gh\nost", "5"),
    ("credits", "deduct", "ac\nme", "bob", "5", *DEDUCT),
])
def test_line_break_in_an_id_gives_a_one_line_refusal(billing, ready, argv):
    result = billing(*argv)
    assert result.code == 1
    assert result.err.count("\n") == 1, repr(result.err)


def test_a_decimal_comma_is_not_read_as_a_thousands_separator(billing, ready):
    before = snapshot(ready)
    result = billing("credits", "add", "acme", "1,5", "--amount", "0")
    assert result.code == 1, result  # today: 0, and the pool grew by 15 credits
    assert snapshot(ready) == before


def test_verify_of_an_unknown_organization_is_refused(billing, ready):
    result = billing("verify", "--org", "acmee")  # a typo
    assert result.code != 0, result  # today: 0 and "Ledger verified: every invariant holds."


def test_an_org_admins_member_add_is_an_invitation(billing, ready):
    result = billing("--as", "ada", "member", "add", "acme", "oscar")
    assert (result.code, result.out) == (0, "Invited oscar to acme as member: they join when they accept.\n")
    assert "acme" not in {m.org_id for m in auth.user_roles(ready, "oscar").memberships}
    assert billing("--as", "root", "member", "add", "acme", "olga").out == "Added olga to acme as member.\n"


def test_a_nul_character_is_refused_in_one_line(billing, ready, db):
    """Finding 14: text holding \\x00 is a refusal (exit 1, one line), not a traceback."""
    check_all(billing, db, [
        ("org", "create", "nul\x00org", "X"),
        ("user", "create", "carol", "carol@example.com", "--name", "Car\x00ol"),
        ("credits", "deduct", "acme", "bob", "1", "--service-type", "llm", "--service-name", "gpt\x00"),
        ("credits", "deduct", "acme", "bob", "1", *DEDUCT, "--request-id", "r\x00"),
    ], 1)
    result = billing("credits", "deduct", "acme", "bob", "1", *DEDUCT, "--request-id", "r\x00")
    assert "NUL character" in result.err and "\x00" not in result.err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_demo_progress_is_a_bar_redrawn_in_place_on_a_terminal():
    shown = _Terminal()
    progress = cli._DemoProgress(shown)
    progress(demo.PLANNING, 0, 1)
    progress(demo.USAGE, 0, 200)
    progress(demo.USAGE, 100, 200)
    progress(demo.USAGE, 200, 200)
    lines = shown.getvalue().split("\n")
    # the planning stage ended when the next began; each stage's last state stays on its own line
    assert re.fullmatch(r"  \[1/9\] Planning the data set +\[\.{30}\] [\d.]+ s", lines[0].split("\r")[-1])
    redraws = lines[1].split("\r")[1:]
    assert redraws[1].endswith("[" + "#" * 15 + "." * 15 + "] 100 of 200")
    assert re.fullmatch(r"  \[6/9\] Metered calls +\[#{30}\] 200 of 200 [\d.]+ s", redraws[-1])
    assert lines[2] == ""


# --------------------------------------------------------------------------- API keys


def test_keys_commands_make_list_and_revoke_keys(billing, ready, db):
    made = billing("--as", "ada", "keys", "create", "--org", "acme", "--name", "CI <pipeline>")
    assert made.code == 0 and made.err == "", made
    token = re.search(r"^Token: (cbk_\S+)$", made.out, re.MULTILINE)[1]
    assert "will not be shown again" in made.out
    key_id = re.search(r"organization key (key_\w+)", made.out)[1]
    assert api_keys.authorize(database.app_engine(), token, "read").actor_id == "ada"

    service = billing("--as", "root", "keys", "create", "--service", "--name", "Meter", "--org", "acme",
                      "--org", "other", "--system", "--charges-per-second", "50")
    assert service.code == 0 and "Created service key" in service.out, service
    listed = billing("--as", "ada", "keys", "list", "--org", "acme")
    assert listed.code == 0 and key_id in listed.out and "CI <pipeline>" in listed.out and "; last used 20" in listed.out
    assert token not in listed.out and "Meter" not in listed.out
    everything = billing("--as", "root", "keys", "list")
    assert "listed: acme, other, system scope" in everything.out and key_id in everything.out
    assert billing("keys", "list").code == 0  # the operator reads every key on the owner's connection

    assert billing("--as", "ada", "keys", "revoke", key_id).out == f"Revoked API key {key_id}: it is refused from now on.\n"
    assert billing("--as", "ada", "keys", "revoke", key_id).out == f"API key {key_id} was already revoked.\n"
    assert "revoked 20" in billing("--as", "ada", "keys", "list", "--org", "acme").out


def test_keys_commands_refuse_in_one_line_and_write_nothing(billing, ready, db):
    check_all(billing, db, [
        ("--as", "bob", "keys", "create", "--org", "acme", "--name", "K"),  # a member
        ("--as", "olga", "keys", "create", "--org", "acme", "--name", "K"),  # another organization's admin
        ("--as", "ada", "keys", "create", "--service", "--name", "K"),  # an org admin's service key
        ("--as", "ada", "keys", "create", "--org", "nope", "--name", "K"),
        ("--as", "ada", "keys", "create", "--org", "acme", "--name", ""),
        ("--as", "ada", "keys", "create", "--org", "acme", "--name", "x" * 101),
        ("--as", "ada", "keys", "create", "--org", "acme", "--name", "K", "--writes-per-minute", "0"),
        ("--as", "ada", "keys", "create", "--name", "K"),  # an organization key without its organization
        ("--as", "ada", "keys", "create", "--org", "acme", "--org", "other", "--name", "K"),
        ("keys", "create", "--org", "acme", "--name", "K"),  # no user to act as
        ("--as", "bob", "keys", "list", "--org", "acme"),
        ("--as", "ada", "keys", "list"),
        ("--as", "ada", "keys", "revoke", "key_nope"),
    ], 1)
    check_all(billing, db, [
        ("--as", "ada", "keys", "create", "--org", "acme"),  # no --name
        ("--as", "ada", "keys", "create", "--org", "acme", "--name", "K", "--reads-per-minute", "many"),
    ], 2)
    assert fetch(db, "select count(*) as n from api_keys")[0].n == 0
