"""The API's frame: health and readiness, request ids, problem+json for unknown routes, the access log."""

from __future__ import annotations

import json

import httpx
import pytest
from api_server import log_lines, running_api
from world import auth, make_world

from billing_core import database, migrations, settings
from billing_core.errors import InvalidInput


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


def test_cors_allows_only_the_configured_origins(api_db_url, api_url):
    preflight = {"Origin": "https://console.example.com", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    closed = httpx.options(f"{api_url}/api/v1/charges", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers  # none by default
    env = {"BILLING_API_CORS_ORIGINS": "https://console.example.com, https://admin.example.com"}
    with running_api(api_db_url, env=env, log_name="api-cors.log") as base:
        allowed = httpx.options(f"{base}/api/v1/charges", headers=preflight)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://console.example.com"
        other = httpx.options(f"{base}/api/v1/charges", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        simple = httpx.get(f"{base}/health", headers={"Origin": "https://admin.example.com"})
        assert simple.headers["access-control-allow-origin"] == "https://admin.example.com"
        assert "X-Request-ID" in simple.headers["access-control-expose-headers"]


def test_a_bad_cors_setting_is_refused_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("BILLING_API_CORS_ORIGINS", "*")
    with pytest.raises(InvalidInput, match="BILLING_API_CORS_ORIGINS"):
        settings.api_cors_origins()
    monkeypatch.setenv("BILLING_API_CORS_ORIGINS", "https://a.example/path")
    with pytest.raises(InvalidInput, match="no path"):
        settings.api_cors_origins()
    monkeypatch.setenv("BILLING_API_CORS_ORIGINS", "https://a.example:8443,http://localhost:3000")
    assert settings.api_cors_origins() == ("https://a.example:8443", "http://localhost:3000")


def test_metrics_count_charges_refusals_and_credits(api_url, api_db_url, request):
    db = database.get_engine(api_db_url)
    world = make_world(db)
    body = {"user_id": "mia", "org_id": "acme", "credits": "2.5", "service_type": "company_enrichment",
            "service_name": "enrich", "request_id": "m-1"}
    for _ in range(2):  # a charge and its replay
        assert httpx.post(f"{api_url}/api/v1/charges", json=body, headers=auth(world.platform)).status_code == 200
    httpx.post(f"{api_url}/api/v1/charges", json={**body, "request_id": "m-2", "credits": "5000"},
               headers=auth(world.platform))
    httpx.post(f"{api_url}/api/v1/charges", json=body, headers=auth(world.revoked))
    text = httpx.get(f"{api_url}/metrics").text
    assert 'billing_api_charges_total{endpoint="charge",outcome="charged"} 1.0' in text
    assert 'billing_api_charges_total{endpoint="charge",outcome="replayed"} 1.0' in text
    assert 'billing_api_refusals_total{code="CB005"} 1.0' in text
    assert 'billing_api_refusals_total{code="CB015"} 1.0' in text
    assert "billing_api_credits_charged_total 2.5" in text
    assert 'billing_api_request_duration_seconds_bucket{le="0.05",method="POST",route="/api/v1/charges"}' in text
    lines = [json.loads(line) for line in log_lines(f"api-{request.module.__name__}.log") if line.startswith("{")]
    keyed = [line for line in lines if line["route"] == "/api/v1/charges" and line["method"] == "POST"]
    assert keyed and all(line["key_prefix"] for line in keyed)
    log_text = "\n".join(log_lines(f"api-{request.module.__name__}.log"))
    assert world.platform not in log_text and world.platform.split("_", 2)[2] not in log_text
