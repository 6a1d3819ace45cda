"""Read models are labelled by the query's own column names, and each rule has one home.

A column reordered in SQL must never mislabel data: reads become DataFrames
from the result's keys (`fetch_frame`) and dataclasses field by field from
`row._mapping` (`record`), never by position against a list kept beside the
query. The organization a call is charged to is SQL's rule (`charging_org_for`).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import billing_core
from billing_core import credits, database, organizations
from billing_core.database import fetch, fetch_frame, record, records
from billing_core.errors import NotAMember, NotFound

PACKAGE = Path(billing_core.__file__).resolve().parent


def test_fetch_frame_labels_columns_by_the_querys_names_in_its_order(db):
    table = fetch_frame(db, "select 2 as b, 1 as a union all select 4, 3")
    assert list(table.columns) == ["b", "a"]
    assert table.to_dict("records") == [{"b": 2, "a": 1}, {"b": 4, "a": 3}]


def test_fetch_frame_keeps_the_column_names_when_nothing_matches(db):
    table = fetch_frame(db, "select 1 as b, 'x' as a where :never", {"never": False})
    assert table.empty
    assert list(table.columns) == ["b", "a"]


def test_fetch_frame_runs_its_checks_in_the_same_transaction(db):
    with pytest.raises(NotFound):
        fetch_frame(db, "select 1 as a", checks=[("select ledger_require_user(:u)", {"u": "ghost"})])


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
    source = (PACKAGE / "credits.py").read_text()
    assert "organization_members" not in source and "charging_org" in source


def test_deduct_for_user_follows_sqls_rule_for_an_unknown_user_and_one_without_a_pool(db):
    """The SQL rule checks the user: an unknown one is NotFound (the Python twin said "no organization")."""
    with pytest.raises(NotFound, match="does not exist"):
        credits.deduct_for_user(db, "ghost", 10, "contact_lookup", "lookup")
    organizations.create_user(db, None, "loner", "loner@example.com")
    with pytest.raises(NotAMember, match="no individual balance"):
        credits.deduct_for_user(db, "loner", 10, "contact_lookup", "lookup")
