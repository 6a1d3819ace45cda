"""Prometheus metrics: requests by route template and status, latency, charges, refusals by CB code, credits.

With PROMETHEUS_MULTIPROC_DIR set before this module is imported (`billing api serve --workers N` sets it), the
worker processes write their figures to files in that folder and /metrics sums them all; without it, one
process's own figures.
"""

from __future__ import annotations

from decimal import Decimal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from billing_core import settings

REQUESTS = Counter("billing_api_requests_total", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram(
    "billing_api_request_duration_seconds", "Time to answer an HTTP request", ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CHARGES = Counter("billing_api_charges_total", "Charges answered, by endpoint and outcome", ["endpoint", "outcome"])
REFUSALS = Counter("billing_api_refusals_total", "Refusals answered, by CB code", ["code"])
CREDITS = Counter("billing_api_credits_charged_total", "Credits charged through the API (replays not counted)")
CONTENT_TYPE = CONTENT_TYPE_LATEST


def charged(endpoint: str, credits: Decimal, replayed: bool) -> None:
    """Count one charge (or settlement) and, unless it was a replay, its credits."""
    CHARGES.labels(endpoint, "replayed" if replayed else "charged").inc()
    if not replayed:
        CREDITS.inc(float(credits))  # an observability figure; the ledger's figures stay Decimal


def refused(code: str | None) -> None:
    """Count one refusal by its CB code (or 'none' for an HTTP-level one)."""
    REFUSALS.labels(code or "none").inc()


def exposition() -> bytes:
    """The metrics in Prometheus' text format: every worker's when they share a folder, else this process's."""
    if settings.metrics_dir() is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)
