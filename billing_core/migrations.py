"""Bring a database's schema up to date from the files in sql/.

sql/migrations/NNNN_*.sql are forward-only: each is applied once, and editing
one after it was applied is refused. sql/routines/*.sql (functions and views)
are re-applied as a set whenever any of them changed: every function,
procedure and view of schema public is dropped first, in the migration's
transaction, then the files re-create them in name order. So a routine renamed,
re-signed or deleted in a file cannot linger in a database migrated before, and
no file needs a hand-written `drop function if exists old(types)`. The routines
own every function and view of schema public: a migration creates tables, never
a function or a view (the drop would take it). Triggers on tables are dropped
with their function and re-created by the routine file that defines both.
The files live in the checkout's top-level sql/; a non-editable install
(`pip install .`) ships them inside the package as billing_core/sql/.
Files are executed as they are, through psycopg without parameters, so their
`%` and `:` characters are never taken for placeholders.
The database roles the grants name (billing_core.roles) are ensured first, so
that sql/routines/990_access.sql, applied last, can grant to them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from billing_core import roles
from billing_core.database import PROJECT_ROOT
from billing_core.errors import DatabaseUnavailable, MigrationError


def sql_dir() -> Path:
    """The sql/ folder: inside the installed package (a wheel ships it as billing_core/sql), else the checkout's."""
    installed = Path(__file__).resolve().parent / "sql"
    return installed if installed.is_dir() else PROJECT_ROOT / "sql"


SQL_DIR = sql_dir()
# any constant: serializes migrators started at the same time (app + CLI, say)
_MIGRATION_LOCK_KEY = 7_240_318_001


@dataclass
class MigrationReport:
    """What one run of `migrate` applied."""

    migrations: list[str] = field(default_factory=list)
    routines: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True when anything was applied."""
        return bool(self.migrations or self.routines or self.roles)


def _files(kind: str) -> list[Path]:
    folder = SQL_DIR / kind
    if not folder.is_dir():
        raise MigrationError(f"SQL folder {folder} is missing: reinstall the project (`pip install .` ships it).")
    return sorted(folder.glob("*.sql"))


# A constant statement, no input. It refuses (and the migration rolls back) when
# something other than a view, a routine or a trigger depends on a routine (a
# column default, a constraint, an index): CASCADE would drop that silently.
_DROP_ROUTINES = """
do $drop$
declare
    v_object record;
    v_dependent text;
begin
    select pg_describe_object(d.classid, d.objid, d.objsubid) into v_dependent
      from pg_depend d
      left join pg_proc p on d.refclassid = 'pg_proc'::regclass and p.oid = d.refobjid
      left join pg_class c on d.refclassid = 'pg_class'::regclass and c.oid = d.refobjid
     where (p.pronamespace = 'public'::regnamespace
            or (c.relnamespace = 'public'::regnamespace and c.relkind in ('v', 'm')))
       and d.deptype = 'n'
       and d.classid not in ('pg_proc'::regclass, 'pg_rewrite'::regclass, 'pg_trigger'::regclass)
     limit 1;
    if v_dependent is not null then
        raise exception 'cannot re-create the routines as a set: % depends on one of them '
            '(routines own functions and views; a table may use them only through a trigger)', v_dependent;
    end if;
    for v_object in
        select c.oid::regclass::text as name, case c.relkind when 'm' then 'materialized view' else 'view' end as kind
          from pg_class c
         where c.relnamespace = 'public'::regnamespace and c.relkind in ('v', 'm')
           and not exists (select 1 from pg_depend e where e.classid = 'pg_class'::regclass
                           and e.objid = c.oid and e.deptype = 'e')
    loop
        -- a view may already be gone with one it read
        execute format('drop %s if exists %s cascade', v_object.kind, v_object.name);
    end loop;
    for v_object in
        select p.oid::regprocedure::text as name from pg_proc p
         where p.pronamespace = 'public'::regnamespace
           and not exists (select 1 from pg_depend e where e.classid = 'pg_proc'::regclass
                           and e.objid = p.oid and e.deptype = 'e')
    loop
        if to_regprocedure(v_object.name) is not null then
            execute format('drop routine %s cascade', v_object.name);
        end if;
    end loop;
end;
$drop$
"""


def _checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def migrate(url: str) -> MigrationReport:
    """Apply pending migrations and changed routines to the database at `url`."""
    report = MigrationReport()
    try:
        with psycopg.connect(url) as conn, conn.transaction():
            conn.execute("select pg_advisory_xact_lock(%s)", [_MIGRATION_LOCK_KEY])
            conn.execute(
                "create table if not exists schema_migrations ("
                " name text primary key, kind text not null, checksum text not null,"
                " applied_at timestamptz not null default now())"
            )
            applied = dict(conn.execute("select name, checksum from schema_migrations").fetchall())

            for path in _files("migrations"):
                name = f"migrations/{path.name}"
                checksum = _checksum(path)
                if name in applied:
                    if applied[name] != checksum:
                        raise MigrationError(
                            f"{name} changed after it was applied; migrations are forward-only: "
                            "restore it and put the change in a new numbered file."
                        )
                    continue
                conn.execute(path.read_text())
                conn.execute(
                    "insert into schema_migrations (name, kind, checksum) values (%s, 'migration', %s)",
                    [name, checksum],
                )
                report.migrations.append(name)

            report.roles = roles.ensure_roles(conn)
            routines = [(f"routines/{p.name}", p, _checksum(p)) for p in _files("routines")]
            # new roles have none of the grants yet: 990_access.sql must run again; a routine file
            # removed takes its routines with it
            removed = {n for n in applied if n.startswith("routines/")} - {name for name, _, _ in routines}
            if report.roles or removed or any(applied.get(name) != checksum for name, _, checksum in routines):
                conn.execute(_DROP_ROUTINES)
                for name, path, checksum in routines:
                    conn.execute(path.read_text())
                    conn.execute(
                        "insert into schema_migrations (name, kind, checksum) values (%s, 'routine', %s)"
                        " on conflict (name) do update set checksum = excluded.checksum, applied_at = now()",
                        [name, checksum],
                    )
                    report.routines.append(name)
                # a routine file that was renamed or removed leaves no record behind
                conn.execute(
                    "delete from schema_migrations where kind = 'routine' and not (name = any(%s))",
                    [[name for name, _, _ in routines]],
                )
    except psycopg.Error as exc:
        raise MigrationError(f"Migration failed: {exc}") from exc
    return report


def pending(url: str) -> list[str]:
    """The migrations and routine files not applied as they are now (empty: the schema is current)."""
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            known = conn.execute("select to_regclass('public.schema_migrations') is not null").fetchone()[0]
            applied = dict(conn.execute("select name, checksum from schema_migrations").fetchall()) if known else {}
    except psycopg.Error as exc:
        raise DatabaseUnavailable(f"The database is unreachable: {exc}") from None
    files = [(f"{kind}/{path.name}", path) for kind in ("migrations", "routines") for path in _files(kind)]
    return [name for name, path in files if applied.get(name) != _checksum(path)]
