"""The HTTP API's charging speed against the same charges made straight over SQL, on one server.

README
======
Run from the repository root (about 2 minutes with the default 10 s per measurement):

    .venv/bin/python bench/api_bench.py                  # 16 and 64 clients, 2 API workers
    .venv/bin/python bench/api_bench.py --duration 5     # quicker
    .venv/bin/python bench/api_bench.py --workers 1 --clients 16,64,128 --keep

What it does, on ONE fresh embedded PostgreSQL in a temporary folder (stopped and deleted at exit):
1. migrates a database, creates organization `bench` with 64 members holding 1,000,000 credits each,
   through billing_core (the stored functions), and a service key (system admin `bench-admin`) whose
   charge limit is raised to 1,000,000 a second (the benchmark measures the path, not the limiter);
2. starts `billing api serve --workers N` on a free loopback port;
3. measures, for each client count, with the same asyncio load generator on both sides (each client one
   persistent connection, back-to-back requests, a unique request id each, random member):
     sql     `select deduct_credits('bench', <member>, 1, ...)` on psycopg async connections (owner role)
     http    POST /api/v1/charges {"credits": "1", ...} with keep-alive (a minimal HTTP/1.1 client, so the
             load generator's own cost stays small next to the server's)
     priced  POST /api/v1/charges of one metered event (model and tokens, priced by the engine), at 16 clients:
             the single charge a batch event is
     batch   POST /api/v1/charges/batch of 1,000 metered events, 4 clients: events per second
   after a warm-up of the same workload (duration / 5), and prints charges per second, p50 and p99;
4. prints the ratios against the targets: HTTP >= 0.5x SQL at 64 clients, HTTP p99 <= 25 ms at 16 clients,
   batch events/s >= 10x single HTTP charges/s (at 16 clients; against the priced single charge too, the same
   work per event as the batch's), then checks the ledger (billing verify's
   ledger_violations(): none).

The load generator runs on the same machine (2 cores shared by the server, the API workers and itself):
compare ratios of one run, not absolute figures between runs. Exit status 0 when the ledger checks out
(targets met or not), 4 when it does not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx
import psycopg

from billing_core import api_keys, credits, database, ledger, migrations, orders, organizations

MEMBERS = 64
CREDITS_PER_MEMBER = 1_000_000
BATCH_EVENTS = 1000
BATCH_CLIENTS = 4
TARGETS = {"http_vs_sql_64": 0.5, "http_p99_16_ms": 25.0, "batch_vs_single": 10.0}


@dataclass
class Result:
    workload: str
    clients: int
    per_second: float  # charges (events, for the batch) per second
    p50_ms: float
    p99_ms: float
    failed: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load(db) -> str:
    """Organization `bench`, its members funded and allocated; a service key's token."""
    organizations.create_user(db, None, "bench-admin", "bench-admin@example.com", "Bench Admin", is_system_admin=True)
    organizations.create_organization(db, None, "bench", "Bench")
    organizations.add_member(db, None, "bench", "bench-admin", "admin")
    order = orders.create_order(db, "bench-admin", "bench", credits=MEMBERS * CREDITS_PER_MEMBER)
    orders.record_payment(db, None, order.id, "PAY-bench")
    for n in range(MEMBERS):
        organizations.create_user(db, None, f"m-{n}", f"m-{n}@example.com", f"Member {n}")
        organizations.add_member(db, None, "bench", f"m-{n}")
        credits.allocate(db, None, "bench", f"m-{n}", CREDITS_PER_MEMBER)
    key = api_keys.create_service_key(db, "bench-admin", "bench", limits={"charges_per_second": 1_000_000})
    return key.token


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


async def _run_clients(clients: int, seconds: float, one_call) -> tuple[list[float], int, int]:
    """Run `clients` loops of `one_call(client_index)` for `seconds`; (latencies in ms, calls, failures)."""
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def loop(index: int) -> None:
        nonlocal failures
        call = await one_call(index)
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                ok = await call()
                latencies.append((time.perf_counter() - started) * 1000)
                failures += 0 if ok else 1
        finally:
            await call.close()

    await asyncio.gather(*(loop(i) for i in range(clients)))
    return latencies, len(latencies), failures


class SqlCaller:
    """One psycopg async connection charging random members with deduct_credits."""

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn

    async def __call__(self) -> bool:
        member = f"m-{uuid.uuid4().int % MEMBERS}"
        await self.conn.execute("select deduct_credits('bench', %s, 1, 'company_enrichment', 'bench', %s)",
                                [member, uuid.uuid4().hex])
        return True

    async def close(self) -> None:
        await self.conn.close()


class HttpCaller:
    """One keep-alive HTTP/1.1 connection POSTing JSON to the API (a minimal client: the bench's own cost)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: str, path: str,
                 body, count_events: int = 1) -> None:
        self.reader, self.writer, self.token, self.path, self.body = reader, writer, token, path, body
        self.count_events = count_events

    async def __call__(self) -> bool:
        payload = json.dumps(self.body()).encode()
        self.writer.write(
            f"POST {self.path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {self.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        answer = await self.reader.readexactly(length)
        if status == 200 and self.count_events > 1:
            return json.loads(answer)["refused"] == 0
        return status == 200

    async def close(self) -> None:
        self.writer.close()


def charge_body() -> dict:
    return {"user_id": f"m-{uuid.uuid4().int % MEMBERS}", "org_id": "bench", "credits": "1",
            "service_type": "company_enrichment", "service_name": "bench", "request_id": uuid.uuid4().hex}


def priced_body() -> dict:
    return {"user_id": f"m-{uuid.uuid4().int % MEMBERS}", "org_id": "bench", "service_type": "llm",
            "service_name": "gpt-4o-mini", "input_tokens": "100", "output_tokens": "20", "request_id": uuid.uuid4().hex}


def batch_body() -> dict:
    return {"events": [{"user_id": f"m-{n % MEMBERS}", "org_id": "bench", "service_type": "llm",
                        "service_name": "gpt-4o-mini", "input_tokens": "100", "output_tokens": "20",
                        "request_id": uuid.uuid4().hex} for n in range(BATCH_EVENTS)]}


def measure(workload: str, clients: int, seconds: float, warmup: float, url: str, port: int, token: str) -> Result:
    async def make(index: int):
        if workload == "sql":
            return SqlCaller(await psycopg.AsyncConnection.connect(url, autocommit=True))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if workload == "batch":
            return HttpCaller(reader, writer, token, "/api/v1/charges/batch", batch_body, BATCH_EVENTS)
        body = priced_body if workload == "priced" else charge_body
        return HttpCaller(reader, writer, token, "/api/v1/charges", body)

    asyncio.run(_run_clients(clients, warmup, make))
    latencies, calls, failed = asyncio.run(_run_clients(clients, seconds, make))
    per_call = BATCH_EVENTS if workload == "batch" else 1
    return Result(workload, clients, calls * per_call / seconds, statistics.median(latencies) if latencies else 0,
                  percentile(latencies, 0.99), failed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    parser.add_argument("--clients", default="16,64", help="comma-separated client counts (default 16,64)")
    parser.add_argument("--workers", type=int, default=2, help="API worker processes (default 2: the cores)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (data, the API's log)")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.clients.split(",")]
    warmup = min(5.0, max(1.0, args.duration / 5))

    workdir = Path(tempfile.mkdtemp(prefix="api-bench-"))
    server = database.embedded_server(workdir / "pgdata", stop_on_exit=True)
    database.ensure_database(server.get_uri("postgres"), "api_bench")
    url = server.get_uri("api_bench")
    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        max_connections = conn.execute("show max_connections").fetchone()[0]
    migrations.migrate(url)
    db = database.get_engine(url)
    print(f"Loading organization bench with {MEMBERS} members...", flush=True)
    token = load(db)
    port = free_port()
    log = (workdir / "api.log").open("w")
    api = subprocess.Popen(
        [sys.executable, "-m", "billing_core.cli", "api", "serve", "--port", str(port), "--workers", str(args.workers)],
        cwd=REPO, env={**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(REPO)}, stdout=log,
        stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if api.poll() is not None or time.monotonic() > deadline:
                print((workdir / "api.log").read_text()[-3000:], file=sys.stderr)
                return 1
            time.sleep(0.3)
        print(f"PostgreSQL max_connections {max_connections}; API: {args.workers} worker(s) on port {port};"
              f" {args.duration:g} s per measurement after {warmup:g} s of warm-up.", flush=True)
        results: dict[tuple[str, int], Result] = {}
        for clients in counts:
            for workload in ("sql", "http"):
                result = measure(workload, clients, args.duration, warmup, url, port, token)
                results[(workload, clients)] = result
                print(f"  {workload:<6} {clients:>4} clients  {result.per_second:>9,.0f} charges/s"
                      f"  p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms  failed {result.failed}", flush=True)
        priced = measure("priced", 16, args.duration, warmup, url, port, token)
        print(f"  priced   16 clients  {priced.per_second:>9,.0f} charges/s  p50 {priced.p50_ms:6.1f} ms"
              f"  p99 {priced.p99_ms:6.1f} ms  failed {priced.failed}", flush=True)
        batch = measure("batch", BATCH_CLIENTS, args.duration, warmup, url, port, token)
        print(f"  batch  {BATCH_CLIENTS:>4} clients  {batch.per_second:>9,.0f} events/s"
              f"   p50 {batch.p50_ms:6.1f} ms  p99 {batch.p99_ms:6.1f} ms per batch of {BATCH_EVENTS:,}"
              f"  failed {batch.failed}")
        print("Targets:")
        if (("sql", 64) in results) and (("http", 64) in results):
            ratio = results[("http", 64)].per_second / results[("sql", 64)].per_second
            print(f"  HTTP / SQL at 64 clients     {ratio:5.2f}x  (target >= {TARGETS['http_vs_sql_64']}x)"
                  f"  {'met' if ratio >= TARGETS['http_vs_sql_64'] else 'MISSED'}")
        if ("http", 16) in results:
            p99 = results[("http", 16)].p99_ms
            print(f"  HTTP p99 at 16 clients       {p99:5.1f} ms (target <= {TARGETS['http_p99_16_ms']:g} ms)"
                  f"  {'met' if p99 <= TARGETS['http_p99_16_ms'] else 'MISSED'}")
            ratio = batch.per_second / results[("http", 16)].per_second
            print(f"  batch / single HTTP charges  {ratio:5.1f}x  (target >= {TARGETS['batch_vs_single']:g}x)"
                  f"  {'met' if ratio >= TARGETS['batch_vs_single'] else 'MISSED'}")
        ratio = batch.per_second / priced.per_second
        print(f"  batch / single priced HTTP   {ratio:5.1f}x  (the same work per event)")
        violations = ledger.verify(db)
        print(f"Ledger: {'every invariant holds' if not violations else f'{len(violations)} VIOLATION(S)'}.")
        return 0 if not violations else 4
    finally:
        api.terminate()
        try:
            api.wait(timeout=15)
        except subprocess.TimeoutExpired:
            api.kill()
        log.close()
        database.dispose_engine(url)
        server.cleanup()
        if args.keep:
            print(f"Kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
