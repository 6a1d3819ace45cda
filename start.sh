#!/usr/bin/env bash
# Install the product into .venv and start it: PostgreSQL (embedded unless
# DATABASE_URL is set), migrations, demo data on an empty embedded database,
# then the HTTP API on http://127.0.0.1:${BILLING_API_PORT:-8502}/api/v1 and
# the billing app on http://localhost:${BILLING_PORT:-8501}.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
.venv/bin/billing start
.venv/bin/billing api serve --port "${BILLING_API_PORT:-8502}" &
api_pid=$!
trap 'kill "$api_pid" 2>/dev/null || true' EXIT INT TERM
echo "HTTP API: http://127.0.0.1:${BILLING_API_PORT:-8502}/api/v1 (docs: /api/v1/docs)"
echo "Billing app: http://localhost:${BILLING_PORT:-8501}"
.venv/bin/streamlit run app.py --server.headless true --browser.gatherUsageStats false \
    --server.port "${BILLING_PORT:-8501}"
