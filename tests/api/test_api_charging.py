"""The charging routes through real HTTP: charges, replays and conflicts, holds, balances, quotes, batches; every
refusal as problem+json with its status and CB code; keys wrong, revoked and out of scope; 401 before 422."""

from __future__ import annotations

import httpx
import pytest
from world import GPT4O, GPT4O_CREDITS, auth, make_world

from billing_core import database, ledger
from billing_core.database import fetch


@pytest.fixture(scope="module")
def world(api_db_url):
    return make_world(database.get_engine(api_db_url))


@pytest.fixture(scope="module")
def client(api_url, world):
    with httpx.Client(base_url=api_url, timeout=30) as http:
        yield http


def problem(answer: httpx.Response, status: int, code: str | None) -> dict:
    """The problem+json body of `answer`, checked for its status, code and shape."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["status"] == status and body["code"] == code
    assert body["type"].startswith("urn:org-billing:problem:") and body["title"] and body["detail"]
    return body


def stored(api_db_url: str, request_id: str):
    rows = fetch(database.get_engine(api_db_url), "select org_id, user_id, credits_used, metadata"
                 " from credit_usage_attribution where request_id = :r", {"r": request_id})
    return rows


# -- charging ---------------------------------------------------------------------------------------------


def test_a_metered_charge_is_priced_attributed_and_replayed(client, world, api_db_url):
    body = {"user_id": "mia", "org_id": "acme", "request_id": "c-1", **GPT4O, "metadata": {"trace": "t1"}}
    first = client.post("/api/v1/charges", json=body, headers={**auth(world.platform), "X-Request-ID": "http-1"})
    assert first.status_code == 200, first.text
    charge = first.json()
    assert charge["credits"] == GPT4O_CREDITS and charge["remaining"] == "988.75" and charge["replayed"] is False
    assert charge["org_id"] == "acme" and charge["explanation"]["method"]
    assert "Idempotent-Replayed" not in first.headers and first.headers["x-request-id"] == "http-1"
    [row] = stored(api_db_url, "c-1")
    assert row.metadata["http_request_id"] == "http-1" and row.metadata["trace"] == "t1"
    assert row.metadata["api_key_id"].startswith("key_")
    again = client.post("/api/v1/charges", json=body, headers={**auth(world.platform), "X-Request-ID": "http-2"})
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == {**charge, "replayed": True}
    assert len(stored(api_db_url, "c-1")) == 1


def test_the_idempotency_key_header_names_the_request(client, world, api_db_url):
    body = {"user_id": "mia", **GPT4O}  # no org: mia's default organization pays
    headers = {**auth(world.platform), "Idempotency-Key": "c-header"}
    first = client.post("/api/v1/charges", json=body, headers=headers)
    assert first.status_code == 200 and first.json()["org_id"] == "acme" and first.json()["request_id"] == "c-header"
    assert client.post("/api/v1/charges", json=body, headers=headers).headers["Idempotent-Replayed"] == "true"
    mismatch = client.post("/api/v1/charges", json={**body, "request_id": "other"}, headers=headers)
    problem(mismatch, 422, "CB009")


def test_a_request_id_reused_with_other_figures_is_a_conflict(client, world):
    body = {"user_id": "mia", "org_id": "acme", "request_id": "c-conflict", **GPT4O}
    assert client.post("/api/v1/charges", json=body, headers=auth(world.platform)).status_code == 200
    other = client.post("/api/v1/charges", json={**body, "input_tokens": "2000"}, headers=auth(world.platform))
    assert "c-conflict" in problem(other, 409, "CB007")["detail"]


def test_a_fixed_credit_charge_and_its_replay(client, world):
    body = {"user_id": "mia", "org_id": "acme", "request_id": "f-1", "credits": "50",
            "service_type": "company_enrichment", "service_name": "enrich"}
    first = client.post("/api/v1/charges", json=body, headers=auth(world.platform))
    assert first.status_code == 200 and first.json()["credits"] == "50" and first.json()["replayed"] is False
    again = client.post("/api/v1/charges", json=body, headers=auth(world.platform))
    assert again.headers["Idempotent-Replayed"] == "true" and again.json()["remaining"] == first.json()["remaining"]
    both = client.post("/api/v1/charges", json={**body, "request_id": "f-2", "input_tokens": "5"},
                       headers=auth(world.platform))
    problem(both, 422, "CB009")


def test_insufficient_credits_is_402_with_remaining_and_needed(client, world, api_db_url):
    body = {"user_id": "max", "org_id": "acme", "request_id": "short-1", "credits": "31",
            "service_type": "company_enrichment", "service_name": "enrich"}
    refused = problem(client.post("/api/v1/charges", json=body, headers=auth(world.platform)), 402, "CB005")
    assert refused["remaining"] == "30" and refused["needed"] == "31"
    assert stored(api_db_url, "short-1") == []


@pytest.mark.parametrize("amount, words", [
    (31, "decimal strings"), (1.5, "decimal strings"), ("-5", "greater than 0"), ("0", "greater than 0"),
    ("abc", "not a number"),
    ("1e400", ""), ("NaN", "finite"), ("10000000000000", ""), ("1.0000001", ""),
])
def test_bad_amounts_are_422_and_charge_nothing(client, world, api_db_url, amount, words):
    body = {"user_id": "max", "org_id": "acme", "request_id": f"bad-{amount}", "credits": amount,
            "service_type": "company_enrichment", "service_name": "enrich"}
    refused = client.post("/api/v1/charges", json=body, headers=auth(world.platform))
    assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
    assert words in refused.json()["detail"]
    assert stored(api_db_url, f"bad-{amount}") == []


def test_unknown_user_or_organization_is_404(client, world):
    problem(client.post("/api/v1/charges", json={"user_id": "nobody", "org_id": "acme", **GPT4O},
                        headers=auth(world.platform)), 404, "CB002")
    problem(client.post("/api/v1/charges", json={"user_id": "mia", "org_id": "no-such-org", **GPT4O},
                        headers=auth(world.platform)), 404, "CB002")
    problem(client.post("/api/v1/charges", json={"user_id": "gina", "org_id": "acme", **GPT4O},
                        headers=auth(world.platform)), 404, "CB003")


def test_text_with_quotes_html_and_sql_is_data(client, world, api_db_url):
    request_id = "'); drop table users; -- <b>x</b> =1+1"
    body = {"user_id": "mia", "org_id": "acme", "request_id": request_id, **GPT4O,
            "metadata": {"note": "<script>alert(1)</script> **bold** \"quoted\""}}
    assert client.post("/api/v1/charges", json=body, headers=auth(world.platform)).status_code == 200
    assert stored(api_db_url, request_id)[0].metadata["note"].startswith("<script>")


# -- keys ---------------------------------------------------------------------------------------------------


def test_no_wrong_malformed_or_revoked_key_is_401(client, world):
    body = {"user_id": "mia", "org_id": "acme", **GPT4O}
    assert "Bearer" in problem(client.post("/api/v1/charges", json=body), 401, "CB015")["detail"]
    answer = client.post("/api/v1/charges", json=body, headers={"Authorization": "Basic abc"})
    assert problem(answer, 401, "CB015") and answer.headers["www-authenticate"].startswith("Bearer")
    problem(client.post("/api/v1/charges", json=body, headers=auth("cbk_nope")), 401, "CB015")
    unknown = world.platform[:-4] + ("AAAA" if not world.platform.endswith("AAAA") else "BBBB")
    assert "unknown or revoked" in problem(
        client.post("/api/v1/charges", json=body, headers=auth(unknown)), 401, "CB015")["detail"]
    problem(client.post("/api/v1/charges", json=body, headers=auth(world.revoked)), 401, "CB015")


def test_authentication_comes_before_body_validation(client, world):
    invalid = {"user_id": 5, "credits": 1.5}
    problem(client.post("/api/v1/charges", json=invalid), 401, "CB015")
    problem(client.post("/api/v1/charges", json=invalid, headers=auth(world.revoked)), 401, "CB015")
    malformed = client.post("/api/v1/charges", content=b"{not json", headers={"Content-Type": "application/json"})
    problem(malformed, 401, "CB015")
    problem(client.post("/api/v1/charges", json=invalid, headers=auth(world.platform)), 422, "CB009")


def test_keys_outside_their_scope_are_403(client, world, api_db_url):
    body = {"user_id": "mia", "org_id": "acme", "request_id": "scope-1", **GPT4O}
    assert "listed organizations" in problem(
        client.post("/api/v1/charges", json=body, headers=auth(world.listed)), 403, "CB008")["detail"]
    problem(client.post("/api/v1/charges", json={**body, "org_id": None}, headers=auth(world.listed)), 403, "CB008")
    problem(client.post("/api/v1/charges", json=body, headers=auth(world.acme_key)), 403, "CB008")
    assert stored(api_db_url, "scope-1") == []
    ok = client.post("/api/v1/charges", json={"user_id": "gina", "org_id": "globex", **GPT4O},
                     headers=auth(world.listed))
    assert ok.status_code == 200 and ok.json()["org_id"] == "globex"


# -- holds, balances, quotes --------------------------------------------------------------------------------


def test_hold_settle_and_release(client, world):
    key = auth(world.platform)
    hold = {"user_id": "mia", "org_id": "acme", "request_id": "h-1", "credits": "100", "service_type": "llm",
            "service_name": "gpt-4o"}
    held = client.post("/api/v1/holds", json=hold, headers=key)
    assert held.status_code == 200 and held.json()["credits"] == "100" and held.json()["replayed"] is False
    assert client.post("/api/v1/holds", json=hold, headers=key).headers["Idempotent-Replayed"] == "true"
    settled = client.post("/api/v1/holds/h-1/settle", json={"org_id": "acme", "input_tokens": "1000",
                                                            "output_tokens": "500"}, headers=key)
    assert settled.status_code == 200 and settled.json()["credits"] == GPT4O_CREDITS
    again = client.post("/api/v1/holds/h-1/settle", json={"org_id": "acme", "input_tokens": "1000",
                                                          "output_tokens": "500"}, headers=key)
    assert again.headers["Idempotent-Replayed"] == "true"
    problem(client.post("/api/v1/holds/h-1/release", json={"org_id": "acme"}, headers=key), 409, "CB014")
    assert client.post("/api/v1/holds", json={**hold, "request_id": "h-2"}, headers=key).status_code == 200
    released = client.post("/api/v1/holds/h-2/release", json={"org_id": "acme"}, headers=key)
    assert released.status_code == 200 and released.json()["credits"] == "100"
    problem(client.post("/api/v1/holds/h-2/settle", json={"org_id": "acme", "credits": "5"}, headers=key),
            409, "CB014")
    problem(client.post("/api/v1/holds/h-none/settle", json={"org_id": "acme", "credits": "5"}, headers=key),
            404, "CB002")
    problem(client.post("/api/v1/holds", json={**hold, "request_id": None}, headers=key), 422, "CB009")
    problem(client.post("/api/v1/holds", json={**hold, "request_id": "h-3", "credits": "100000"}, headers=key),
            402, "CB005")
    problem(client.post("/api/v1/holds", json={**hold, "request_id": "h-4"}, headers=auth(world.listed)),
            403, "CB008")


def test_balance_check_and_read(client, world):
    key = auth(world.platform)
    check = client.post("/api/v1/balance/check", json={"user_id": "max", "credits": "30"}, headers=key)
    assert check.status_code == 200 and check.json() == {"org_id": "acme", "user_id": "max", "credits": "30",
                                                         "sufficient": True}
    assert client.post("/api/v1/balance/check", json={"user_id": "max", "credits": "30.000001"},
                       headers=key).json()["sufficient"] is False
    read = client.get("/api/v1/balance", params={"user_id": "max"}, headers=key)
    assert read.status_code == 200 and read.json()["allocated"] == "30" and read.json()["remaining"] == "30"
    problem(client.get("/api/v1/balance", params={"user_id": "nobody"}, headers=key), 404, "CB002")
    problem(client.get("/api/v1/balance", params={"user_id": "max"}, headers=auth(world.listed)), 403, "CB008")
    problem(client.get("/api/v1/balance", params={"user_id": "max"}, headers=auth(world.acme_key)), 403, "CB008")


def test_quote_prices_without_charging(client, world, api_db_url):
    before = fetch(database.get_engine(api_db_url), "select count(*) from credit_usage_attribution")[0][0]
    quoted = client.post("/api/v1/prices/quote", json={"org_id": "acme", **GPT4O}, headers=auth(world.platform))
    assert quoted.status_code == 200 and quoted.json()["credits"] == GPT4O_CREDITS
    assert quoted.json()["dollars"] == "0.01125"
    assert fetch(database.get_engine(api_db_url), "select count(*) from credit_usage_attribution")[0][0] == before
    problem(client.post("/api/v1/prices/quote", json={"service_type": "llm", "service_name": "no-such-model"},
                        headers=auth(world.platform)), 404, "CB002")


# -- batches ------------------------------------------------------------------------------------------------


def test_a_batch_charges_each_event_on_its_own(client, world, api_db_url):
    events = [{"user_id": "gina", "org_id": "globex", "request_id": f"b-{n}", **GPT4O} for n in range(3)]
    events.append({"user_id": "gina", "org_id": "globex", "request_id": "b-big", **GPT4O, "input_tokens": "9000000"})
    events.append({"user_id": "nobody", "org_id": "globex", "request_id": "b-nobody", **GPT4O})
    answer = client.post("/api/v1/charges/batch", json={"events": events}, headers=auth(world.platform))
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["charged"], result["refused"]) == (3, 2)
    assert [r["status"] for r in result["results"]] == [200, 200, 200, 402, 404]
    assert result["results"][3]["code"] == "CB005" and result["results"][4]["code"] == "CB002"
    assert stored(api_db_url, "b-big") == [] and len(stored(api_db_url, "b-0")) == 1
    again = client.post("/api/v1/charges/batch", json={"events": events[:3]}, headers=auth(world.platform))
    assert again.headers["Idempotent-Replayed"] == "true" and all(r["replayed"] for r in again.json()["results"])
    assert ledger.verify(database.get_engine(api_db_url)) == []


def test_a_batch_stays_within_its_keys_scope(client, world, api_db_url):
    mine = [{"user_id": "gina", "org_id": "globex", "request_id": "bl-1", **GPT4O}]
    assert client.post("/api/v1/charges/batch", json={"events": mine}, headers=auth(world.listed)).status_code == 200
    theirs = mine + [{"user_id": "mia", "org_id": "acme", "request_id": "bl-2", **GPT4O}]
    problem(client.post("/api/v1/charges/batch", json={"events": theirs}, headers=auth(world.listed)), 403, "CB008")
    unnamed = [{"user_id": "gina", "request_id": "bl-3", **GPT4O}]
    problem(client.post("/api/v1/charges/batch", json={"events": unnamed}, headers=auth(world.listed)), 403, "CB008")
    assert stored(api_db_url, "bl-2") == [] and stored(api_db_url, "bl-3") == []


def test_a_batch_holds_1_to_1000_events(client, world):
    problem(client.post("/api/v1/charges/batch", json={"events": []}, headers=auth(world.platform)), 422, "CB009")
    many = [{"user_id": "gina", "org_id": "globex", **GPT4O}] * 1001
    problem(client.post("/api/v1/charges/batch", json={"events": many}, headers=auth(world.platform)), 422, "CB009")
