#!/usr/bin/env bash
# Install the product and its test dependencies into .venv and run every test
# against a real PostgreSQL (embedded unless DATABASE_URL is set).
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
exec .venv/bin/python -m pytest "$@"
