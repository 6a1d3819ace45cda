#!/usr/bin/env bash
# Install the product and its test dependencies into .venv, lint the tree with
# ruff (pyproject.toml's [tool.ruff]), then run every test against a real
# PostgreSQL (embedded unless DATABASE_URL is set).
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
# browser tests drive Debian's Chromium; install it where missing (needs root and apt)
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
.venv/bin/ruff check .
# two processes, one per core, each with its own PostgreSQL; a test file stays on one process (its
# module fixtures, e.g. a served app, start once). `./test.sh -n 0 ...` runs in this process alone.
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@"
