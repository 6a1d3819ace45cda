"""A real API server for the tests: `billing api serve` in a subprocess on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from billing_core.database import PROJECT_ROOT

LOGS = PROJECT_ROOT / "test-artifacts"  # ignored by git, as the browser tests' logs


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_api(database_url: str, *, workers: int = 1, env: dict[str, str] | None = None,
                log_name: str = "api-server.log") -> Iterator[str]:
    """`billing api serve` against `database_url` on a free loopback port until the block ends; its base URL."""
    port = free_port()
    full_env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(PROJECT_ROOT), **(env or {})}
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    LOGS.mkdir(exist_ok=True)
    log: Path = LOGS / log_name
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "billing_core.cli", "api", "serve", "--port", str(port), "--workers", str(workers)],
            cwd=PROJECT_ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the API did not start; see {log}:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def log_lines(log_name: str = "api-server.log") -> list[str]:
    """The lines the server wrote to its log so far."""
    return (LOGS / log_name).read_text().splitlines()
