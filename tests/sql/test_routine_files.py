"""The routines in a migrated database are exactly those sql/ defines, and each carries its contract.

The functions, procedures and views of schema public are compared with what
the files create (sql/migrations/ in number order, then sql/routines/ in name
order; a `drop ... if exists` of a signature removes it), by name and argument
types. The migrator drops every function, procedure and view before the
routine files re-create them as a set (billing_core.migrations), so a function
renamed or given another signature cannot linger without a hand-written drop:
the tests below rename one, and migrate from main's files to this tree's. Every routine also carries its contract as COMMENT ON, so that
`\\df+` shows what it returns, locks and raises.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from billing_core import migrations
from billing_core.database import PROJECT_ROOT
from billing_core.errors import MigrationError

SQL = PROJECT_ROOT / "sql"

_CREATE_ROUTINE = re.compile(
    r"^\s*create\s+(?:or\s+replace\s+)?(function|procedure)\s+(?:public\.)?(\w+)\s*\(", re.I | re.M
)
_CREATE_VIEW = re.compile(r"^\s*create\s+(?:or\s+replace\s+)?view\s+(?:public\.)?(\w+)", re.I | re.M)
_DROP_ROUTINE = re.compile(
    r"^\s*drop\s+(function|procedure|routine)\s+(?:if\s+exists\s+)?(?:public\.)?(\w+)\s*\(", re.I | re.M
)
_DROP_VIEW = re.compile(r"^\s*drop\s+view\s+(?:if\s+exists\s+)?(?:public\.)?(\w+)", re.I | re.M)
_MODES = {"in", "out", "inout", "variadic"}


@dataclass(frozen=True, order=True)
class Routine:
    """A function, procedure or view: kind, name and (routines only) input argument types as written."""

    kind: str  # 'function', 'procedure' or 'view'
    name: str
    args: tuple[str, ...] = ()

    def regprocedure(self) -> str:
        """The text to_regprocedure() reads: name(type, ...)."""
        return f"{self.name}({', '.join(self.args)})"


def _argument_list(text: str, open_at: int) -> str:
    """The text between the parenthesis at open_at and its match."""
    depth = 0
    for at in range(open_at, len(text)):
        depth += {"(": 1, ")": -1}.get(text[at], 0)
        if depth == 0:
            return text[open_at + 1 : at]
    raise ValueError(f"unbalanced parentheses after {text[open_at - 40:open_at]!r}")


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [p for p in parts + [current] if p.strip()]


def _input_types(arguments: str, named: bool) -> tuple[str, ...]:
    """The input argument types of a parameter list (OUT parameters and defaults left out)."""
    types = []
    for parameter in _split_top_level(re.sub(r"--[^\n]*", "", arguments)):
        words = re.split(r"\s+(?:default\b|=)", parameter.strip(), maxsplit=1, flags=re.I)[0].split()
        if words[0].lower() in _MODES:
            mode, words = words[0].lower(), words[1:]
            if mode == "out":
                continue
        types.append(" ".join(words[1:] if named else words))
    return tuple(types)


def sql_files(root: Path = SQL) -> list[Path]:
    """The files in the order migrate() applies them."""
    return sorted((root / "migrations").glob("*.sql")) + sorted((root / "routines").glob("*.sql"))


def statements(path: Path) -> list[tuple[str, Routine]]:
    """('create' | 'drop', routine) for each create or drop of a function, procedure or view, in file order."""
    text = path.read_text()
    found = []
    for match in _CREATE_ROUTINE.finditer(text):
        args = _input_types(_argument_list(text, match.end() - 1), named=True)
        found.append((match.start(), "create", Routine(match[1].lower(), match[2], args)))
    for match in _DROP_ROUTINE.finditer(text):
        args = _input_types(_argument_list(text, match.end() - 1), named=False)
        found.append((match.start(), "drop", Routine(match[1].lower(), match[2], args)))
    for match in _CREATE_VIEW.finditer(text):
        found.append((match.start(), "create", Routine("view", match[1])))
    for match in _DROP_VIEW.finditer(text):
        found.append((match.start(), "drop", Routine("view", match[1])))
    return [(action, routine) for _, action, routine in sorted(found)]


def _signature(conn: psycopg.Connection, routine: Routine) -> str:
    """The routine as the database spells it: name(canonical types), or the view's name."""
    if routine.kind == "view":
        return f"view {routine.name}"
    types = [conn.execute("select %s::regtype::text", [t]).fetchone()[0] for t in routine.args]
    return f"{routine.name}({', '.join(types)})"


def defined_in_files(conn: psycopg.Connection, root: Path = SQL) -> set[str]:
    """What the files leave behind on a fresh database: each routine's signature, each view as 'view NAME'."""
    defined: set[str] = set()
    for path in sql_files(root):
        for action, routine in statements(path):
            signature = _signature(conn, routine)
            if action == "create":
                defined.add(signature)
            else:
                defined.discard(signature)
    return defined


def in_database(conn: psycopg.Connection) -> set[str]:
    """The functions, procedures and views of schema public (extensions' members left out)."""
    routines = conn.execute(
        "select p.proname || '(' || oidvectortypes(p.proargtypes) || ')'"
        "  from pg_proc p"
        " where p.pronamespace = 'public'::regnamespace"
        "   and not exists (select 1 from pg_depend d where d.classid = 'pg_proc'::regclass"
        "                   and d.objid = p.oid and d.deptype = 'e')"
    ).fetchall()
    views = conn.execute("select 'view ' || viewname from pg_views where schemaname = 'public'").fetchall()
    return {r[0] for r in routines} | {v[0] for v in views}


def without_contract(conn: psycopg.Connection) -> list[str]:
    """The routines and views of schema public whose COMMENT ON is missing or blank."""
    rows = conn.execute(
        "select p.oid::regprocedure::text from pg_proc p"
        " where p.pronamespace = 'public'::regnamespace"
        "   and not exists (select 1 from pg_depend d where d.classid = 'pg_proc'::regclass"
        "                   and d.objid = p.oid and d.deptype = 'e')"
        "   and coalesce(btrim(obj_description(p.oid, 'pg_proc')), '') = ''"
        " union all "
        "select 'view ' || c.relname from pg_class c"
        " where c.relnamespace = 'public'::regnamespace and c.relkind in ('v', 'm')"
        "   and coalesce(btrim(obj_description(c.oid, 'pg_class')), '') = ''"
        " order by 1"
    ).fetchall()
    return [r[0] for r in rows]


def lingering_and_missing(url: str, root: Path = SQL) -> tuple[set[str], set[str]]:
    """(in the database but in no file, in the files but not in the database)."""
    with psycopg.connect(url) as conn:
        defined, present = defined_in_files(conn, root), in_database(conn)
    return present - defined, defined - present


@pytest.fixture
def empty_database(pg_server) -> Iterator[str]:
    """A brand-new database, nothing in it."""
    name = f"billing_routines_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name)
    yield url
    pg_server.drop_database(name)


@pytest.fixture
def sql_copy(tmp_path, monkeypatch) -> Path:
    """A copy of sql/ that billing_core.migrations reads instead of the real one."""
    copy = tmp_path / "sql"
    shutil.copytree(SQL, copy)
    monkeypatch.setattr(migrations, "SQL_DIR", copy)
    return copy


# --------------------------------------------------------------------------- the parser reads the files right


def test_the_files_define_the_key_routines_with_their_signatures(db_url):
    with psycopg.connect(db_url) as conn:
        defined = defined_in_files(conn)
    assert any(s.startswith("deduct_credits(") for s in defined)
    assert "pricing_mode_of(text, timestamp with time zone)" in defined  # OUT parameters are no input
    assert "pricing_mode_of(text)" not in defined  # its old signature, gone from the files
    assert "run_billing_periods(timestamp with time zone, bigint)" in defined  # a procedure; INOUT counts
    assert "organization_subscriptions_defaults()" in defined  # a trigger's function
    assert {"view login_credentials", "view organization_credit_pools"} <= defined
    assert not any(s.startswith("subscription_period_bounds(") for s in defined)  # renamed


# --------------------------------------------------------------------------- exactly the files' routines


def test_a_migrated_database_holds_exactly_the_routines_and_views_of_the_files(db_url):
    lingering, missing = lingering_and_missing(db_url)
    assert lingering == set(), "in the database, in no file of sql/ (drop it where it was replaced)"
    assert missing == set()


def test_a_renamed_or_resigned_routine_cannot_linger(empty_database, sql_copy):
    probe = sql_copy / "routines" / "055_probe.sql"
    probe.write_text(
        "create or replace function routine_probe_old(p_a text) returns int language sql as $$ select 1 $$;\n"
        "create or replace function routine_probe_args(p_a text) returns int language sql as $$ select 1 $$;\n"
        "create or replace view routine_probe_view as select 1 as one;\n"
    )
    migrations.migrate(empty_database)
    assert lingering_and_missing(empty_database, sql_copy) == (set(), set())

    # renamed, given a second argument, view renamed: all without a drop of the old ones
    probe.write_text(
        "create or replace function routine_probe_new(p_a text) returns int language sql as $$ select 1 $$;\n"
        "create or replace function routine_probe_args(p_a text, p_b timestamptz default now())\n"
        "returns int language sql as $$ select 2 $$;\n"
        "create or replace view routine_probe_view_2 as select 1 as one;\n"
    )
    migrations.migrate(empty_database)
    assert lingering_and_missing(empty_database, sql_copy) == (set(), set())
    with psycopg.connect(empty_database) as conn:
        assert conn.execute("select routine_probe_args('a')").fetchone()[0] == 2  # no ambiguity left

    # a file deleted: its routines go with it
    probe.unlink()
    migrations.migrate(empty_database)
    lingering, missing = lingering_and_missing(empty_database, sql_copy)
    assert (lingering, missing) == (set(), set())


def test_a_routine_created_outside_the_files_is_found_then_removed_by_the_next_migration(db_url, sql_copy):
    with psycopg.connect(db_url) as conn:
        conn.execute("create function routine_probe_stray() returns int language sql as $$ select 1 $$")
    assert lingering_and_missing(db_url) == ({"routine_probe_stray()"}, set())
    (sql_copy / "routines" / "990_access.sql").write_text((sql_copy / "routines" / "990_access.sql").read_text() + "\n")
    migrations.migrate(db_url)  # a routine changed: the set is re-created
    assert lingering_and_missing(db_url) == (set(), set())


def test_a_table_that_depends_on_a_routine_is_refused_instead_of_losing_it(db_url, sql_copy):
    # CASCADE would silently drop the column default: the migrator refuses and changes nothing
    with psycopg.connect(db_url) as conn:
        conn.execute("create table routine_probe_table (id text default ledger_new_order_id())")
    (sql_copy / "routines" / "990_access.sql").write_text((sql_copy / "routines" / "990_access.sql").read_text() + "\n")
    with pytest.raises(MigrationError, match="routine_probe_table"):
        migrations.migrate(db_url)
    with psycopg.connect(db_url) as conn:
        assert conn.execute(
            "select pg_get_expr(adbin, adrelid) from pg_attrdef where adrelid = 'routine_probe_table'::regclass"
        ).fetchone()[0] == "ledger_new_order_id()"


def test_no_routine_file_drops_an_old_signature_by_hand():
    # the migrator drops the whole set before the files re-create it: a hand-written drop is dead weight
    hand_drops = [(path.name, routine) for path in sql_files() for action, routine in statements(path) if action == "drop"]
    assert hand_drops == []


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], check=True, capture_output=True, text=True).stdout


def _main_sql(tmp_path: Path) -> Path:
    """sql/ as main had it where this branch started (skips without git or a main branch).

    On main itself that is this tree: the upgrade then checks nothing new; it guards a branch before its merge.
    """
    try:
        branch = next(b for b in ("main", "origin/main") if subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "--verify", "--quiet", b], capture_output=True
        ).returncode == 0)
        base = _git("merge-base", "HEAD", branch).strip()
        names = _git("ls-tree", "-r", "--name-only", base, "--", "sql/migrations", "sql/routines").split()
    except (OSError, StopIteration, subprocess.CalledProcessError):
        pytest.skip("no git checkout with a main branch: nothing to upgrade from")
    root = tmp_path / "main"
    for name in names:
        if name.endswith(".sql"):
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(_git("show", f"{base}:{name}"))
    return root / "sql"


def test_upgrading_from_main_leaves_no_routine_behind(empty_database, tmp_path, monkeypatch):
    monkeypatch.setattr(migrations, "SQL_DIR", _main_sql(tmp_path))
    migrations.migrate(empty_database)
    monkeypatch.setattr(migrations, "SQL_DIR", SQL)

    migrations.migrate(empty_database)

    lingering, missing = lingering_and_missing(empty_database)
    assert lingering == set(), "left behind by an upgrade: the migrator should have dropped it with the set"
    assert missing == set()


# --------------------------------------------------------------------------- contracts as COMMENT ON


def test_every_routine_and_view_carries_its_contract_as_a_comment(db_url):
    with psycopg.connect(db_url) as conn:
        assert without_contract(conn) == []
        # \df+ shows the contract: what it returns, locks and raises
        texts = conn.execute(
            "select obj_description(oid, 'pg_proc') from pg_proc where proname = 'deduct_credits'"
        ).fetchall()
    assert texts and all("Raises" in text for text, in texts)


def test_a_routine_without_a_contract_is_found(db_url):
    with psycopg.connect(db_url) as conn:
        conn.execute("create function contract_probe() returns int language sql as $$ select 1 $$")
        conn.execute("create view contract_probe_view as select 1 as one")
        conn.execute("comment on view contract_probe_view is '  '")
        assert without_contract(conn) == ["contract_probe()", "view contract_probe_view"]
