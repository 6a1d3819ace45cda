"""The API's frame: health and readiness, request ids, problem+json for unknown routes, the access log."""

from __future__ import annotations

import json

import httpx
from api_server import log_lines

from billing_core import database


def test_health_and_ready(api_url):
    assert httpx.get(f"{api_url}/health").json() == {"status": "alive"}
    ready = httpx.get(f"{api_url}/ready")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


def test_ready_says_which_migrations_are_pending(api_url, api_db_url):
    db = database.get_engine(api_db_url)
    with db.begin() as conn:
        conn.exec_driver_sql("update schema_migrations set checksum = 'edited' where name = 'routines/990_access.sql'")
    try:
        answer = httpx.get(f"{api_url}/ready")
        assert answer.status_code == 503
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["pending"] == ["routines/990_access.sql"]
    finally:
        from billing_core import migrations

        migrations.migrate(api_db_url)
    assert httpx.get(f"{api_url}/ready").status_code == 200


def test_request_id_is_echoed_or_made_and_a_bad_one_refused(api_url):
    mine = httpx.get(f"{api_url}/health", headers={"X-Request-ID": "gateway-42"})
    assert mine.headers["x-request-id"] == "gateway-42"
    made = httpx.get(f"{api_url}/health")
    assert made.headers["x-request-id"].startswith("req_")
    assert made.headers["x-request-id"] != httpx.get(f"{api_url}/health").headers["x-request-id"]
    long = httpx.get(f"{api_url}/health", headers={"X-Request-ID": "x" * 201})
    assert long.status_code == 422 and long.json()["code"] == "CB009"
    assert "200" in long.json()["detail"]
    assert long.headers["x-request-id"].startswith("req_")  # a fresh one: the refused id is not echoed


def test_unknown_route_is_a_problem(api_url):
    answer = httpx.get(f"{api_url}/api/v1/nothing-here")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert set(body) >= {"type", "title", "status", "detail", "code"} and body["status"] == 404


def test_openapi_and_docs_are_served(api_url):
    document = httpx.get(f"{api_url}/api/v1/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert httpx.get(f"{api_url}/api/v1/docs").status_code == 200


def test_access_log_is_one_json_line_per_request(api_url, request):
    httpx.get(f"{api_url}/health", headers={"X-Request-ID": "log-probe-1"})
    lines = [json.loads(line) for line in log_lines(f"api-{request.module.__name__}.log") if line.startswith("{")]
    probe = [line for line in lines if line["request_id"] == "log-probe-1"]
    assert len(probe) == 1
    assert set(probe[0]) == {"time", "method", "route", "status", "ms", "request_id", "key_prefix"}
    assert probe[0]["route"] == "/health" and probe[0]["status"] == 200
