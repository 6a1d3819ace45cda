#!/usr/bin/env bash
# Install the product into .venv and start it: PostgreSQL (embedded unless
# DATABASE_URL is set), migrations, then the billing app.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
exec .venv/bin/billing start "$@"
