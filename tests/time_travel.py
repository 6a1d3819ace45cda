"""Test set-up: move a test database's whole history into the past.

The period job and hold expiry refuse a time in the future (CB009), so a test
that needs a boundary to have passed sets things up now and then moves every
recorded moment back by SHIFT: the same as having done the set-up that long
ago. Each test has its own database, so every table is moved.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

SHIFT = timedelta(days=183)

# the columns are read from the catalogue, never from input; SHIFT is a constant
_MOVE = """
do $$
declare
    r record;
begin
    for r in
        select c.table_name, c.column_name
          from information_schema.columns c
          join information_schema.tables t on t.table_schema = c.table_schema and t.table_name = c.table_name
         where c.table_schema = current_schema() and t.table_type = 'BASE TABLE'
           and c.data_type = 'timestamp with time zone' and c.is_generated = 'NEVER'
           and c.table_name <> 'schema_migrations'
           and (c.table_name || '.' || c.column_name) <> all (string_to_array('{keep}', ','))
    loop
        execute format('update %I set %I = %I - interval ''{days} days''', r.table_name, r.column_name, r.column_name);
    end loop;
end;
$$
"""


def into_the_past(db: Engine, *, keep: tuple[str, ...] = ()) -> None:
    """Move every moment the database recorded back by SHIFT (except the `keep` 'table.column's)."""
    with db.begin() as conn:
        conn.execute(sa.text(_MOVE.format(keep=",".join(keep), days=SHIFT.days)))


def earlier(moment: datetime) -> datetime:
    """`moment` moved as into_the_past moves the database."""
    return moment - SHIFT
