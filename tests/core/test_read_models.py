"""Read models are labelled by the query's own column names, and each rule has one home.

A column reordered in SQL must never mislabel data: reads become DataFrames
from the result's keys (`fetch_frame`) and dataclasses field by field from
`row._mapping` (`record`), never by position against a list kept beside the
query. The organization a call is charged to is SQL's rule (`charging_org_for`).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import billing_core
from billing_core import charging, credits, database, organizations
from billing_core.database import fetch, fetch_frame, record, records
from billing_core.errors import NotAMember, NotFound
from billing_core.pricing import Usage

PACKAGE = Path(billing_core.__file__).resolve().parent


def test_fetch_frame_labels_columns_by_the_querys_names_in_its_order(db):
    table = fetch_frame(db, "select 2 as b, 1 as a union all select 4, 3")
    assert list(table.columns) == ["b", "a"]
    assert table.to_dict("records") == [{"b": 2, "a": 1}, {"b": 4, "a": 3}]


def test_fetch_frame_keeps_the_column_names_when_nothing_matches(db):
    table = fetch_frame(db, "select 1 as b, 'x' as a where :never", {"never": False})
    assert table.empty
    assert list(table.columns) == ["b", "a"]


@dataclass(frozen=True)
class Pair:
    first: str
    second: int


def test_record_maps_columns_to_fields_by_name_not_position(db):
    [row] = fetch(db, "select 7 as second, 'x' as first")
    assert record(Pair, row) == Pair(first="x", second=7)
    assert records(Pair, fetch(db, "select 1 as second, 'a' as first union all select 2, 'b'")) == [
        Pair("a", 1), Pair("b", 2),
    ]


@pytest.mark.parametrize("statement", [
    "select 'x' as first",  # a column missing
    "select 'x' as first, 7 as second, 0 as third",  # a column added
    "select 'x' as first, 7 as seconds",  # a column renamed
])
def test_record_refuses_a_row_whose_names_are_not_the_fields(db, statement):
    [row] = fetch(db, statement)
    with pytest.raises(TypeError, match="Pair needs columns named as its fields"):
        record(Pair, row)


def _modules() -> list[Path]:
    return sorted(PACKAGE.glob("*.py"))


def test_no_read_in_billing_core_binds_columns_by_position():
    """No hand-kept column list labels rows: a *COLUMNS name may only pick columns of a frame by name."""
    assert not hasattr(database, "frame"), "database.frame labelled rows with a list of names by position"
    offenders = []
    for path in _modules():
        tree = ast.parse(path.read_text(), str(path))
        by_name = {id(node.slice) for node in ast.walk(tree) if isinstance(node, ast.Subscript)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id.endswith("COLUMNS") and isinstance(node.ctx, ast.Load):
                if id(node) not in by_name:  # anything but table[NAME]: a list bound to rows by position
                    offenders.append(f"{path.name}:{node.lineno} {node.id}")
        for function in ast.walk(tree):
            if isinstance(function, ast.FunctionDef):
                offenders += [f"{path.name}:{line} DataFrame(fetched rows, columns=...)" for line in _named_rows(function)]
    assert offenders == []


def _named_rows(function: ast.FunctionDef) -> list[int]:
    """Lines where rows from `fetch` become a DataFrame with a columns= list (names bound by position)."""
    fetched = {
        target.id
        for node in ast.walk(function)
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
        and getattr(node.value.func, "id", None) == "fetch"
        for target in node.targets if isinstance(target, ast.Name)
    }
    lines = []
    for node in ast.walk(function):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "DataFrame" and node.args:
            source = node.args[0]
            names = {n.id for n in ast.walk(source) if isinstance(n, ast.Name)}
            if any(kw.arg == "columns" for kw in node.keywords) and names & fetched:
                lines.append(node.lineno)
    return lines


def test_the_paying_organization_is_chosen_in_sql_only():
    """organizations.default_organization was a Python twin of SQL's charging_org_for."""
    assert not hasattr(organizations, "default_organization")
    for module in PACKAGE.glob("*.py"):
        assert not re.search(r"\b(from|join)\s+organization_members\b", module.read_text()), module.name


def test_one_way_to_charge_a_call_to_the_paying_organization():
    """credits.deduct_for_user was a second way to charge a user (beside charging.charge_usage, which the
    service interface documents); with it went the Python step of choosing the organization first."""
    assert not hasattr(credits, "deduct_for_user")
    assert hasattr(charging, "charge_usage")


def test_charging_follows_sqls_rule_for_an_unknown_user_and_one_without_a_pool(db):
    """The SQL rule checks the user: an unknown one is NotFound (the Python twin said "no organization")."""
    with pytest.raises(NotFound, match="does not exist"):
        charging.charge_usage(db, "ghost", Usage("contact_lookup", "lookup"))
    organizations.create_user(db, None, "loner", "loner@example.com")
    with pytest.raises(NotAMember, match="no individual balance"):
        charging.charge_usage(db, "loner", Usage("contact_lookup", "lookup"))


def _sql_built_from_strings(path: Path) -> list[str]:
    """Where a module builds SQL text from pieces: an f-string, .format or + / % on a string naming SELECT."""
    sql = re.compile(r"\b(select|insert|update|delete)\b.*|\bfrom\s+\w+", re.I | re.S)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        pieces: list[str] = []
        if isinstance(node, ast.JoinedStr):
            pieces = [v.value for v in node.values if isinstance(v, ast.Constant)]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "format":
            pieces = [node.func.value.value] if isinstance(node.func.value, ast.Constant) else []
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
            pieces = [s.value for s in (node.left, node.right) if isinstance(s, ast.Constant)]
        if any(isinstance(p, str) and re.search(r"\bselect\b", p, re.I) and sql.search(p) for p in pieces):
            found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_sql_is_built_from_strings_in_billing_core():
    """orders.py and reports.py built their SELECT column lists with f-strings; every read is now a constant
    statement over a stored function, with parameters."""
    assert [hit for path in sorted(PACKAGE.glob("*.py")) for hit in _sql_built_from_strings(path)] == []


@pytest.mark.parametrize("module", ["reports", "organizations", "auth", "pricing", "charging", "plans", "ledger",
                                    "orders", "subscriptions", "credits", "invitations", "usage", "analytics", "audit",
                                    "periods", "alerts"])
def test_these_reads_leave_authorization_to_their_stored_functions(module):
    """No role check chosen in Python beside the read: the stored function takes the actor and decides."""
    source = (PACKAGE / f"{module}.py").read_text()
    assert "checks=" not in source and "access." not in source
