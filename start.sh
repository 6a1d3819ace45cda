#!/usr/bin/env bash
# Install the product into .venv and start it: PostgreSQL (embedded unless
# DATABASE_URL is set), migrations, demo data on an empty embedded database,
# then the billing app on http://localhost:${BILLING_PORT:-8501}.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
.venv/bin/billing start
exec .venv/bin/streamlit run app.py --server.headless true --browser.gatherUsageStats false \
    --server.port "${BILLING_PORT:-8501}"
