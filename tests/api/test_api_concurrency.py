"""Concurrency through HTTP: a storm of charges on allocations that cannot pay them all charges exactly what they
can pay (then `billing verify` is clean); the rate limit is exact across two worker processes."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal

import httpx
import pytest
from api_server import running_api
from ledger_state import billing_verify
from world import auth, make_world

from billing_core import api_keys, database
from billing_core.database import fetch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(api_db_url):
    return make_world(database.get_engine(api_db_url))


def test_a_storm_of_charges_takes_exactly_what_the_allocations_hold(api_url, api_db_url, world):
    # max holds 30 credits and gina 500: 40 charges of 1 credit for max, 80 of 10 for gina, all at once
    events = [("max", "acme", "1", f"storm-max-{n}") for n in range(40)]
    events += [("gina", "globex", "10", f"storm-gina-{n}") for n in range(80)]

    async def storm() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=120, max_keepalive_connections=120)
        async with httpx.AsyncClient(base_url=api_url, timeout=60, limits=limits) as client:
            return await asyncio.gather(*(
                client.post("/api/v1/charges", headers=auth(world.platform), json={
                    "user_id": user, "org_id": org, "credits": amount, "request_id": request_id,
                    "service_type": "company_enrichment", "service_name": "enrich"})
                for user, org, amount, request_id in events))

    answers = asyncio.run(storm())
    by_user: dict[str, list[int]] = {"max": [], "gina": []}
    for (user, *_), answer in zip(events, answers):
        by_user[user].append(answer.status_code)
    assert sorted(set(by_user["max"])) == [200, 402] and by_user["max"].count(200) == 30
    assert sorted(set(by_user["gina"])) == [200, 402] and by_user["gina"].count(200) == 50
    db = database.get_engine(api_db_url)
    spent = fetch(db, "select user_id, sum(credits_used) as used, count(*) as calls from credit_usage_attribution"
                      " where request_id like 'storm-%' group by user_id order by user_id")
    assert [(r.user_id, r.used, r.calls) for r in spent] == [("gina", Decimal(500), 50), ("max", Decimal(30), 30)]
    verified = billing_verify(api_db_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_the_rate_limit_is_exact_across_two_worker_processes(api_db_url, world):
    db = database.get_engine(api_db_url)
    fresh = api_keys.create_organization_key(db, "ada", "acme", "rate probe")  # 20 writes a minute

    async def thirty(base: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            return await asyncio.gather(*(
                client.post("/api/v1/organizations/acme/allocations", headers=auth(fresh.token),
                            json={"user_id": "mia", "credits": "1"})
                for _ in range(30)))

    with running_api(api_db_url, workers=2, log_name="api-two-workers.log") as base:
        answers = asyncio.run(thirty(base))
        metrics = httpx.get(f"{base}/metrics").text
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == 20 and statuses.count(429) == 10, statuses
    for refused in (a for a in answers if a.status_code == 429):
        assert refused.headers["content-type"] == "application/problem+json" and refused.json()["code"] == "CB013"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
    # both workers' counts reach /metrics (prometheus multiprocess mode, set up by `billing api serve --workers 2`)
    route = re.escape('route="/api/v1/organizations/{org_id}/allocations"')
    counts = {status: float(m[1]) for status in ("200", "429")
              for m in [re.search(rf'billing_api_requests_total{{method="POST",{route},status="{status}"}} (\S+)',
                                  metrics)] if m}
    assert counts == {"200": 20.0, "429": 10.0}, metrics[:2000]
