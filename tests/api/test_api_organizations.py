"""The organization and system routes through real HTTP: each read and write, acting as the key's user; keys
outside their organization or scope; usage grouped, paged and exported as formula-safe CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from world import auth, make_world

from billing_core import api_keys, credits, database, subscriptions
from billing_core.database import fetch


@pytest.fixture(scope="module")
def world(api_db_url):
    db = database.get_engine(api_db_url)
    made = make_world(db)
    subscriptions.create_subscription(db, None, "acme", "platform")
    credits.deduct(db, "acme", "mia", 40, "llm", "=HYPERLINK(\"http://x\")", request_id="u-1")
    credits.deduct(db, "acme", "mia", 2, "contact_lookup", "lookup", request_id="u-2")
    credits.deduct(db, "acme", "max", 5, "contact_lookup", "lookup", request_id="u-3")
    return made


@pytest.fixture(scope="module")
def client(api_url, world):
    with httpx.Client(base_url=api_url, timeout=30) as http:
        yield http


def problem(answer: httpx.Response, status: int, code: str | None) -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == code
    return answer.json()


ACME = "/api/v1/organizations/acme"
TODAY = datetime.now(UTC).date()
RANGE = {"from": str(TODAY - timedelta(days=1)), "to": str(TODAY)}


def test_pool_subscription_members_orders_and_history(client, world):
    key = auth(world.acme_key)
    pool = client.get(f"{ACME}/pool", headers=key).json()
    assert pool["org_id"] == "acme" and pool["total_credits"] == "10000" and pool["allocated_credits"] == "1030"
    sub = client.get(f"{ACME}/subscription", headers=key).json()
    assert sub["plan"] == "platform" and sub["subscription_status"] in ("active", "trialing")
    members = client.get(f"{ACME}/members", headers=key).json()
    assert members["total"] == 3 and {m["user_id"] for m in members["items"]} == {"ada", "mia", "max"}
    assert client.get(f"{ACME}/members", params={"limit": 1, "offset": 1}, headers=key).json()["items"][0]
    order_page = client.get(f"{ACME}/orders", headers=key).json()
    assert order_page["total"] == 1 and order_page["items"][0]["status"] == "paid"
    history = client.get(f"{ACME}/billing-history", headers=key).json()
    assert history["items"] and all("created_at" in row for row in history["items"])
    allocations = client.get(f"{ACME}/allocations", headers=key).json()
    assert {a["user_id"] for a in allocations["items"]} >= {"mia", "max"}


def test_allocate_and_take_back(client, world, api_db_url):
    key = auth(world.acme_key)
    given = client.post(f"{ACME}/allocations", json={"user_id": "ada", "credits": "100"}, headers=key)
    assert given.status_code == 200 and given.json() == {"org_id": "acme", "user_id": "ada", "remaining": "100"}
    taken = client.post(f"{ACME}/allocations/ada/take-back", json={"credits": "40"}, headers=key)
    assert taken.json() == {"org_id": "acme", "user_id": "ada", "credits": "40"}
    rest = client.post(f"{ACME}/allocations/ada/take-back", json={}, headers=key)
    assert rest.json()["credits"] == "60"
    problem(client.post(f"{ACME}/allocations", json={"user_id": "ada", "credits": "999999"}, headers=key),
            402, "CB004")
    problem(client.post(f"{ACME}/allocations", json={"user_id": "gina", "credits": "1"}, headers=key), 404, "CB003")
    problem(client.post(f"{ACME}/allocations", json={"user_id": "ada", "credits": 5}, headers=key), 422, "CB009")
    problem(client.post(f"{ACME}/allocations/ada/take-back", json={"credits": "1"}, headers=key), 402, "CB005")
    audit = fetch(database.get_engine(api_db_url),
                  "select details from audit_log"
                  " where action in ('allocation.created', 'credits.allocated', 'credits.reclaimed')"
                  " and target_id = 'ada' order by id")
    assert len(audit) == 3 and all(row.details["api_key_id"].startswith("key_") for row in audit)


def test_a_plan_change_through_the_api(client, world):
    key = auth(world.acme_key)
    problem(client.post(f"{ACME}/subscription", json={"plan": "no-such-plan"}, headers=key), 422, "CB009")
    changed = client.post(f"{ACME}/subscription", json={"plan": "hybrid"}, headers=key)
    assert changed.status_code == 200, changed.text
    assert changed.json()["plan"] == "hybrid"
    assert client.get(f"{ACME}/subscription", headers=key).json()["plan"] == "hybrid"
    later = client.post(f"{ACME}/subscription", json={"plan": "platform", "when": "period_end"}, headers=key)
    assert later.status_code == 200 and later.json()["applies_at"]


def test_usage_grouped_paged_and_as_formula_safe_csv(client, world):
    key = auth(world.acme_key)
    by_user = client.get(f"{ACME}/usage", params={**RANGE, "group_by": "user"}, headers=key).json()
    assert [(g["key"], g["credits_used"], g["requests"]) for g in by_user["items"]] == [("mia", "42", 2),
                                                                                         ("max", "5", 1)]
    assert by_user["total"] == 2
    page = client.get(f"{ACME}/usage", params={**RANGE, "group_by": "service", "limit": 1, "offset": 1},
                      headers=key).json()
    assert page["total"] == 2 and [g["key"] for g in page["items"]] == ["contact_lookup"]
    by_day = client.get(f"{ACME}/usage", params={**RANGE, "group_by": "day"}, headers=key).json()
    assert sum(int(g["requests"]) for g in by_day["items"]) == 3
    exported = client.get(f"{ACME}/usage", params={**RANGE, "group_by": "model", "format": "csv"}, headers=key)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(exported.text)))
    assert {row["model"] for row in table} == {"'=HYPERLINK(\"http://x\")", "lookup"}
    mine = client.get(f"{ACME}/usage", params={**RANGE, "group_by": "user", "user_id": "max"}, headers=key).json()
    assert [g["key"] for g in mine["items"]] == ["max"]
    problem(client.get(f"{ACME}/usage", params={"from": str(TODAY), "to": str(TODAY + timedelta(days=2))},
                       headers=key), 422, "CB009")
    problem(client.get(f"{ACME}/usage", params={**RANGE, "group_by": "planet"}, headers=key), 422, "CB009")


def test_keys_act_only_within_their_organization_or_scope(client, world, api_db_url):
    problem(client.get("/api/v1/organizations/globex/pool", headers=auth(world.acme_key)), 403, "CB008")
    problem(client.get(f"{ACME}/pool", headers=auth(world.listed)), 403, "CB008")
    assert client.get("/api/v1/organizations/globex/pool", headers=auth(world.listed)).status_code == 200
    assert client.get(f"{ACME}/pool", headers=auth(world.platform)).status_code == 200  # system scope
    problem(client.get("/api/v1/organizations/no-such-org/pool", headers=auth(world.platform)), 404, "CB002")
    problem(client.get(f"{ACME}/pool", headers=auth(world.revoked)), 401, "CB015")
    problem(client.post(f"{ACME}/allocations", json={"user_id": 1}, headers=auth(world.revoked)), 401, "CB015")
    # the key acts as its creator: once ada is no longer an admin, her key stops working
    db = database.get_engine(api_db_url)
    member_key = api_keys.create_organization_key(db, "ada", "acme", "short-lived")
    from billing_core import organizations

    organizations.add_member(db, None, "acme", "gus", "admin")  # acme keeps an admin
    organizations.set_member_role(db, None, "acme", "ada", "member")
    try:
        problem(client.get(f"{ACME}/pool", headers=auth(member_key.token)), 403, "CB008")
    finally:
        organizations.set_member_role(db, None, "acme", "ada", "admin")


def test_system_routes_need_system_scope(client, world):
    overview = client.get("/api/v1/system/overview", headers=auth(world.platform))
    assert overview.status_code == 200 and overview.json()["organizations"] >= 2
    assert set(overview.json()["mrr"]) == {"value", "previous"}
    orgs = client.get("/api/v1/system/organizations", params={"sort_by": "org_name", "limit": 1},
                      headers=auth(world.platform)).json()
    assert orgs["total"] >= 2 and orgs["items"][0]["org_name"].startswith("Acme")
    platform_only = client.get("/api/v1/system/organizations", params={"plan": "hybrid"},
                               headers=auth(world.platform)).json()
    assert [o["org_id"] for o in platform_only["items"]] == ["acme"]
    problem(client.get("/api/v1/system/organizations", params={"sort_by": "nonsense"}, headers=auth(world.platform)),
            422, "CB009")
    problem(client.get("/api/v1/system/overview", headers=auth(world.listed)), 403, "CB008")
    problem(client.get("/api/v1/system/overview", headers=auth(world.acme_key)), 403, "CB008")
    problem(client.get("/api/v1/system/overview"), 401, "CB015")
