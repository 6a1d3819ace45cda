"""API keys: who may make, see, revoke and use them; their scope, rate limits, last use and attribution.

Everything runs on the app's connection (SET ROLE billing_app), which the HTTP API will use: the rules
are the stored functions' (sql/routines/140_api_keys.sql), not a check in Python.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest
import sqlalchemy as sa

from billing_core import api_keys, charging, credits, database, organizations
from billing_core.database import acting_through_key, fetch
from billing_core.errors import (
    AlreadyExists,
    InvalidInput,
    NotFound,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
)
from billing_core.pricing import Usage

GPT4O = Usage("llm", "gpt-4o", 1000, 500)


@pytest.fixture
def app_db(db_url):
    """The app's engine (the HTTP API's role)."""
    return database.app_engine(db_url)


@pytest.fixture
def world(db, funded_org):
    """test-org-001 (admin-1; user-1 holds 1,000 credits), other-org (other-admin; other-user holds 500),
    system admin 'root'."""
    credits.allocate(db, funded_org.admin, funded_org.id, "user-1", 1_000)
    organizations.create_organization(db, None, "other-org", "Other Org")
    organizations.create_user(db, None, "other-admin", "other@example.com", "Otto Other")
    organizations.add_member(db, None, "other-org", "other-admin", "admin")
    organizations.create_user(db, None, "other-user", "other-user@example.com", "Olga Other")
    organizations.add_member(db, None, "other-org", "other-user")
    organizations.create_user(db, None, "root", "root@example.com", "Root", is_system_admin=True)
    credits.add_credits(db, None, "other-org", 1_000, 1, external_ref="PAY-other")
    credits.allocate(db, None, "other-org", "other-user", 500)
    return funded_org


def audit_rows(db, action):
    return fetch(db, "select org_id, actor_id, target_id, details from audit_log where action = :a order by id",
                 {"a": action})


# -- making keys ----------------------------------------------------------------------------------------


def test_an_org_admin_makes_an_organization_key_shown_once_and_stored_as_a_digest(db, app_db, world):
    new = api_keys.create_organization_key(app_db, "admin-1", world.id, "CI pipeline")
    assert new.token.startswith(f"cbk_{new.key.prefix}_") and len(new.token) == 4 + 8 + 1 + 43
    assert api_keys.prefix_of(new.token) == new.key.prefix
    key = new.key
    assert (key.kind, key.org_id, key.org_ids, key.system_scope, key.created_by) == (
        "organization", world.id, (), False, "admin-1")
    assert key.limits == {"reads_per_minute": 100, "writes_per_minute": 20, "subscription_changes_per_hour": 5}
    assert key.last_used_at is None and key.revoked_at is None
    [stored] = fetch(db, "select prefix, digest from api_keys where key_id = :k", {"k": key.key_id})
    assert stored.digest == api_keys.digest(new.token) and len(stored.digest) == 32
    assert new.token.encode() not in repr(fetch(db, "select * from api_keys")).encode()
    [audit] = audit_rows(db, "api_key_created")
    assert (audit.org_id, audit.actor_id, audit.target_id) == (world.id, "admin-1", key.key_id)
    assert audit.details["prefix"] == key.prefix and "digest" not in audit.details
    assert api_keys.keys(app_db, "admin-1", world.id) == [key]


def test_a_system_admin_makes_service_keys_platform_wide_or_for_listed_organizations(app_db, world):
    wide = api_keys.create_service_key(app_db, "root", "Metering", system_scope=True,
                                       limits={"charges_per_second": 900})
    listed = api_keys.create_service_key(app_db, "root", "Partner", org_ids=["other-org", world.id, "other-org"])
    assert (wide.key.kind, wide.key.org_id, wide.key.org_ids, wide.key.system_scope) == ("service", None, (), True)
    assert wide.key.limits["charges_per_second"] == 900 and wide.key.limits["reads_per_minute"] == 6000
    assert listed.key.org_ids == ("other-org", world.id)
    # a system admin also makes an organization's key, and sees every key
    org_key = api_keys.create_organization_key(app_db, "root", "other-org", "Ops")
    assert {k.key_id for k in api_keys.keys(app_db, "root")} == {wide.key.key_id, listed.key.key_id,
                                                                  org_key.key.key_id}
    assert [k.key_id for k in api_keys.keys(app_db, "root", "other-org")] == [org_key.key.key_id]


@pytest.mark.parametrize("actor", ["user-1", "other-admin"])
def test_a_member_or_another_orgs_admin_cannot_make_an_organization_key(app_db, world, actor):
    with pytest.raises(PermissionDenied, match="not an admin of organization"):
        api_keys.create_organization_key(app_db, actor, world.id, "Sneaky")


def test_an_org_admin_cannot_make_a_service_key(app_db, world):
    with pytest.raises(PermissionDenied, match="only system admins manage service keys"):
        api_keys.create_service_key(app_db, "admin-1", "Sneaky", org_ids=[world.id])


def test_unknown_organizations_and_actors_are_not_found_and_nothing_is_written(db, app_db, world):
    with pytest.raises(NotFound, match="'no-such-org' does not exist"):
        api_keys.create_organization_key(app_db, "root", "no-such-org", "Key")
    with pytest.raises(NotFound, match="'no-such-org' does not exist"):
        api_keys.create_service_key(app_db, "root", "Key", org_ids=[world.id, "no-such-org"])
    with pytest.raises(NotFound, match="'ghost' does not exist"):
        api_keys.create_organization_key(app_db, "ghost", world.id, "Key")
    with pytest.raises(PermissionDenied, match="acts as the user"):  # the operator is no user to act as
        api_keys.create_organization_key(db, None, world.id, "Key")
    assert fetch(db, "select count(*) as n from api_keys")[0].n == 0


@pytest.mark.parametrize("name, error, message", [
    ("", InvalidInput, "Key name is missing"),
    ("   ", InvalidInput, "Key name is missing"),
    ("x" * 101, InvalidInput, "at most 100 characters"),
    ("line\nbreak", InvalidInput, "control characters"),
    ("nul\x00", InvalidInput, "NUL character"),
])
def test_a_bad_name_is_refused(db, app_db, world, name, error, message):
    with pytest.raises(error, match=message):
        api_keys.create_organization_key(app_db, "admin-1", world.id, name)
    assert fetch(db, "select count(*) as n from api_keys")[0].n == 0


def test_quotes_html_and_sql_in_a_name_are_kept_as_text(app_db, world):
    name = "<b>x</b>'); drop table api_keys; -- **md**"
    assert api_keys.create_organization_key(app_db, "admin-1", world.id, name).key.name == name
    assert api_keys.create_organization_key(app_db, "admin-1", world.id, "x" * 100).key.name == "x" * 100


@pytest.mark.parametrize("limits, message", [
    ({"reads_per_minute": 0}, "between 1 and 1,000,000"),
    ({"writes_per_minute": -5}, "between 1 and 1,000,000"),
    ({"subscription_changes_per_hour": 1_000_001}, "between 1 and 1,000,000"),
    ({"reads_per_minute": "100"}, "whole number"),
    ({"reads_per_minute": 1.5}, "whole number"),
    ({"reads_per_minute": True}, "whole number"),
    ({"requests_per_day": 5}, "Unknown API key limit"),
    ({"charges_per_second": 10}, "no charge limit"),  # an organization key cannot charge
])
def test_bad_limits_are_refused(app_db, world, limits, message):
    with pytest.raises(InvalidInput, match=message):
        api_keys.create_organization_key(app_db, "admin-1", world.id, "Key", limits=limits)


def test_a_service_key_cannot_belong_to_an_organization_and_an_org_key_cannot_be_system_scoped(app_db, world):
    with pytest.raises(InvalidInput, match="belongs to no organization"):
        database.fetch(app_db, "select * from create_api_key('root', 'service', 'K', :o, null, false,"
                               " 'abcdefgh', sha256('t'::bytea))", {"o": world.id})
    with pytest.raises(InvalidInput, match="no system scope"):
        database.fetch(app_db, "select * from create_api_key('root', 'organization', 'K', :o, null, true,"
                               " 'abcdefgh', sha256('t'::bytea))", {"o": world.id})
    with pytest.raises(InvalidInput, match="Key kind must be"):
        database.fetch(app_db, "select * from create_api_key('root', 'admin', 'K', null, null, false,"
                               " 'abcdefgh', sha256('t'::bytea))")


def test_a_reused_prefix_is_refused(app_db, world):
    statement = ("select * from create_api_key('root', 'service', 'K', null, null, false, 'abcdefgh',"
                 " sha256(cast(:t as bytea)))")
    database.fetch(app_db, statement, {"t": "one"})
    with pytest.raises(AlreadyExists, match="already used"):
        database.fetch(app_db, statement, {"t": "two"})


# -- listing and revoking -------------------------------------------------------------------------------


def test_keys_are_listed_only_to_the_admins_who_may_make_them(app_db, world):
    api_keys.create_organization_key(app_db, "admin-1", world.id, "Mine")
    api_keys.create_organization_key(app_db, "other-admin", "other-org", "Theirs")
    assert [k.name for k in api_keys.keys(app_db, "admin-1", world.id)] == ["Mine"]
    for actor, org in [("user-1", world.id), ("other-admin", world.id), ("admin-1", None)]:
        with pytest.raises(PermissionDenied):
            api_keys.keys(app_db, actor, org)
    with pytest.raises(NotFound):
        api_keys.keys(app_db, "admin-1", "no-such-org")


def test_the_app_role_cannot_read_the_digests(app_db, world):
    api_keys.create_organization_key(app_db, "admin-1", world.id, "Key")
    for relation in ("api_keys", "api_key_organizations", "api_key_rate_windows"):
        with pytest.raises((PermissionDenied, sa.exc.ProgrammingError), match="permission denied"):
            fetch(app_db, f"select * from {relation} limit 1")
    with pytest.raises((PermissionDenied, sa.exc.ProgrammingError), match="permission denied"):
        fetch(app_db, "select * from ledger_api_key_rows()")
    [row] = fetch(app_db, "select * from api_keys_of('admin-1', :o)", {"o": world.id})
    assert "digest" not in row._mapping


def test_revoking_is_for_who_may_make_the_key_and_is_idempotent(db, app_db, world):
    new = api_keys.create_organization_key(app_db, "admin-1", world.id, "Key")
    service = api_keys.create_service_key(app_db, "root", "Svc")
    for actor, key in [("user-1", new), ("other-admin", new), ("admin-1", service)]:
        with pytest.raises(PermissionDenied):
            api_keys.revoke(app_db, actor, key.key.key_id)
    with pytest.raises(NotFound, match="does not exist"):
        api_keys.revoke(app_db, "admin-1", "key_nope")
    assert api_keys.authorize(app_db, new.token, "read").key_id == new.key.key_id
    assert api_keys.revoke(app_db, "admin-1", new.key.key_id) is True
    assert api_keys.revoke(app_db, "admin-1", new.key.key_id) is False
    assert api_keys.revoke(app_db, "root", service.key.key_id) is True
    [key] = api_keys.keys(app_db, "admin-1", world.id)
    assert key.revoked_at is not None
    assert [r.target_id for r in audit_rows(db, "api_key_revoked")] == [new.key.key_id, service.key.key_id]
    with pytest.raises(Unauthenticated, match="unknown or revoked"):
        api_keys.authorize(app_db, new.token, "read")


# -- using keys -----------------------------------------------------------------------------------------


def test_an_organization_key_acts_as_its_creator_in_its_organization_only(db, app_db, world):
    new = api_keys.create_organization_key(app_db, "admin-1", world.id, "Key")
    grant = api_keys.authorize(app_db, new.token, "write")
    assert grant == api_keys.KeyGrant(new.key.key_id, new.key.prefix, "organization", "admin-1", world.id)
    assert api_keys.authorize(app_db, new.token, "read", org_id=world.id).org_id == world.id
    with pytest.raises(PermissionDenied, match="cannot act on organization 'other-org'"):
        api_keys.authorize(app_db, new.token, "read", org_id="other-org")
    with pytest.raises(PermissionDenied, match="cannot charge usage"):
        api_keys.authorize(app_db, new.token, "charge", user_id="user-1")
    with pytest.raises(PermissionDenied, match="System endpoints"):
        api_keys.authorize(app_db, new.token, "system")
    with pytest.raises(InvalidInput, match="Unknown use"):
        api_keys.authorize(app_db, new.token, "delete")


@pytest.mark.parametrize("token", [
    "", "nonsense", "cbk_", "cbk_ABCDEFGH_" + "a" * 43, "cbk_abcdefgh_" + "a" * 42, "cbk_abcdefgh_" + "a" * 44,
    "cbk_abcdefgh_" + "a" * 42 + "'", None, 12,
])
def test_a_malformed_token_is_refused_without_asking_the_database(token):
    # no engine at all: a database call would fail with another error
    with pytest.raises(Unauthenticated, match="shape of a key"):
        api_keys.authorize(None, token, "read")


def test_a_wrong_token_of_the_right_shape_is_unknown(app_db, world):
    new = api_keys.create_organization_key(app_db, "admin-1", world.id, "Key")
    forged = new.token[:-1] + ("A" if new.token[-1] != "A" else "B")  # same prefix, another secret
    with pytest.raises(Unauthenticated, match="This API key is not valid: it is unknown or revoked."):
        api_keys.authorize(app_db, forged, "read")


def test_an_org_key_stops_working_when_its_creator_loses_admin(db, app_db, world):
    organizations.create_user(db, None, "admin-2", "admin-2@example.com", "Second Admin")
    organizations.add_member(db, None, world.id, "admin-2", "admin")
    new = api_keys.create_organization_key(app_db, "admin-2", world.id, "Key")
    organizations.set_member_role(db, None, world.id, "admin-2", "member")
    with pytest.raises(PermissionDenied, match="no longer an admin of organization"):
        api_keys.authorize(app_db, new.token, "read")
    organizations.set_member_role(db, None, world.id, "admin-2", "admin")
    assert api_keys.authorize(app_db, new.token, "read").actor_id == "admin-2"


def test_a_service_key_stops_working_when_its_creator_is_no_longer_a_system_admin(db, app_db, world):
    new = api_keys.create_service_key(app_db, "root", "Svc")
    database.call(db, "update users set is_system_admin = false where id = 'root'")
    with pytest.raises(PermissionDenied, match="no longer a system admin"):
        api_keys.authorize(app_db, new.token, "charge", user_id="user-1")


def test_a_platform_wide_service_key_charges_any_organizations_users(app_db, world):
    new = api_keys.create_service_key(app_db, "root", "Svc")
    assert api_keys.authorize(app_db, new.token, "charge", user_id="user-1").org_id == world.id
    assert api_keys.authorize(app_db, new.token, "charge", user_id="other-user").org_id == "other-org"
    grant = api_keys.authorize(app_db, new.token, "charge", org_id="other-org", user_id="other-user")
    assert (grant.actor_id, grant.kind, grant.org_id) == ("root", "service", "other-org")
    # without system scope or listed organizations it only charges
    for use in ("read", "write", "subscription", "system"):
        with pytest.raises(PermissionDenied):
            api_keys.authorize(app_db, new.token, use, org_id=world.id)
    with pytest.raises(NotFound):
        api_keys.authorize(app_db, new.token, "charge", user_id="ghost")
    with pytest.raises(NotFound):
        api_keys.authorize(app_db, new.token, "charge", org_id="no-such-org", user_id="user-1")


def test_a_listed_organizations_service_key_refuses_other_organizations(app_db, world):
    new = api_keys.create_service_key(app_db, "root", "Partner", org_ids=[world.id])
    assert api_keys.authorize(app_db, new.token, "charge", user_id="user-1").org_id == world.id
    assert api_keys.authorize(app_db, new.token, "write", org_id=world.id).actor_id == "root"
    with pytest.raises(PermissionDenied, match="only for its listed organizations, not for organization 'other-org'"):
        api_keys.authorize(app_db, new.token, "charge", user_id="other-user")
    with pytest.raises(PermissionDenied, match="listed organizations"):
        api_keys.authorize(app_db, new.token, "charge", org_id="other-org", user_id="other-user")
    with pytest.raises(PermissionDenied, match="listed organizations' endpoints"):
        api_keys.authorize(app_db, new.token, "read", org_id="other-org")
    with pytest.raises(PermissionDenied, match="naming no organization or user"):
        api_keys.authorize(app_db, new.token, "charge")
    with pytest.raises(PermissionDenied, match="no system scope"):
        api_keys.authorize(app_db, new.token, "system")


def test_a_system_scope_service_key_reads_the_system_endpoints_and_any_organization(app_db, world):
    new = api_keys.create_service_key(app_db, "root", "Ops", system_scope=True)
    assert api_keys.authorize(app_db, new.token, "system").actor_id == "root"
    assert api_keys.authorize(app_db, new.token, "subscription", org_id="other-org").org_id == "other-org"


def test_last_used_is_set_on_use_and_refreshed_at_most_once_a_minute(db, app_db, world):
    new = api_keys.create_organization_key(app_db, "admin-1", world.id, "Key")
    api_keys.authorize(app_db, new.token, "read")
    [first] = api_keys.keys(app_db, "admin-1", world.id)
    assert first.last_used_at is not None
    api_keys.authorize(app_db, new.token, "read")
    assert api_keys.keys(app_db, "admin-1", world.id)[0].last_used_at == first.last_used_at
    database.call(db, "update api_keys set last_used_at = last_used_at - interval '61 seconds'")
    api_keys.authorize(app_db, new.token, "read")
    assert api_keys.keys(app_db, "admin-1", world.id)[0].last_used_at > first.last_used_at - timedelta(seconds=61)


# -- rate limits ----------------------------------------------------------------------------------------


def test_the_limit_refuses_with_retry_after_and_refused_requests_use_nothing_up(db, app_db, world):
    new = api_keys.create_organization_key(app_db, "admin-1", world.id, "Key", limits={"writes_per_minute": 3})
    for _ in range(3):
        api_keys.authorize(app_db, new.token, "write")
    for _ in range(2):
        with pytest.raises(RateLimited, match="limit is 3 writes per minute") as refused:
            api_keys.authorize(app_db, new.token, "write")
        assert 1 <= refused.value.retry_after <= 60
    # reads count apart; the window ends a minute after its first request
    api_keys.authorize(app_db, new.token, "read")
    database.call(db, "update api_key_rate_windows set window_start = window_start - interval '60 seconds'"
                      " where class = 'write'")
    api_keys.authorize(app_db, new.token, "write")


def test_subscription_changes_default_to_five_an_hour(app_db, world):
    new = api_keys.create_organization_key(app_db, "admin-1", world.id, "Key")
    for _ in range(5):
        api_keys.authorize(app_db, new.token, "subscription")
    with pytest.raises(RateLimited, match="5 subscription changes per hour") as refused:
        api_keys.authorize(app_db, new.token, "subscription")
    assert 3500 < refused.value.retry_after <= 3600


def test_a_service_keys_charges_are_counted_per_second(app_db, world):
    new = api_keys.create_service_key(app_db, "root", "Svc", limits={"charges_per_second": 2})
    outcomes = []
    for _ in range(6):
        try:
            api_keys.authorize(app_db, new.token, "charge", user_id="user-1")
            outcomes.append("ok")
        except RateLimited as refused:
            assert refused.retry_after == 1
            outcomes.append("limited")
    # six calls within one or two seconds: at most two pass in each second
    assert 2 <= outcomes.count("ok") <= 4 and "limited" in outcomes


def test_thirty_writes_from_two_processes_connections_give_exactly_twenty(db_url, app_db, world):
    """Two separate engines (as two API worker processes would hold) share the count: exactly 20 of 30 pass."""
    new = api_keys.create_organization_key(app_db, "admin-1", world.id, "Key")
    engines = [sa.create_engine(database.sqlalchemy_url(db_url), pool_size=3) for _ in range(2)]
    results: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def worker(engine):
        start.wait()
        for _ in range(5):
            try:
                api_keys.authorize(engine, new.token, "write")
                outcome = "ok"
            except RateLimited:
                outcome = "limited"
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=worker, args=(engines[n % 2],)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for engine in engines:
        engine.dispose()
    assert (results.count("ok"), results.count("limited")) == (20, 10)
    with psycopg.connect(db_url) as conn:
        assert conn.execute("select requests from api_key_rate_windows where class = 'write'").fetchone() == (20,)


# -- attribution ----------------------------------------------------------------------------------------


def test_work_done_through_a_key_carries_its_id_in_metadata_and_audit(db, app_db, world):
    key = api_keys.create_service_key(app_db, "root", "Svc").key
    with acting_through_key(key.key_id):
        charging.charge_usage(db, "user-1", GPT4O, org_id=world.id, request_id="through-key")
        credits.allocate(app_db, "admin-1", world.id, "user-2", 10)
        charging.reserve(db, "user-1", 50, "held-through-key", "llm", "gpt-4o", org_id=world.id)
        charging.settle(db, world.id, "held-through-key", 20)
    charging.charge_usage(db, "user-1", GPT4O, org_id=world.id, request_id="no-key")
    credits.allocate(app_db, "admin-1", world.id, "user-3", 10)
    rows = {r.request_id: r.metadata for r in fetch(
        db, "select request_id, metadata from credit_usage_attribution where org_id = :o", {"o": world.id})}
    assert rows["through-key"]["api_key_id"] == key.key_id
    assert rows["held-through-key"]["api_key_id"] == key.key_id
    assert "api_key_id" not in rows["no-key"]
    allocations = fetch(db, "select target_id, details from audit_log where action like '%allocat%' and"
                            " target_id in ('user-2', 'user-3') order by id")
    assert [(r.target_id, r.details.get("api_key_id")) for r in allocations] == [("user-2", key.key_id),
                                                                                 ("user-3", None)]
    # the setting is transaction-local: a pooled connection does not carry it into the next transaction
    assert database.call(db, "select ledger_api_key_id()") is None
