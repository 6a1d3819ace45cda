"""Reads are authorized in SQL, like writes: each stored read function checks its acting user itself.

Each function is called directly on the app's connection (SET ROLE billing_app, what the screens and
`billing --as USER` use), with no check run before it from Python: a member, and an admin of another
organization, are refused by the function with the errors writes raise (CB008 -> PermissionDenied,
CB002 -> NotFound). The app reads no table or view of these figures itself any more.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from billing_core import credits, database, organizations, pricing, reports
from billing_core.database import fetch
from billing_core.errors import NotFound, PermissionDenied


@pytest.fixture
def app_db(db_url: str) -> Engine:
    """The app's engine on this test's database (SET ROLE billing_app)."""
    return database.app_engine(db_url)


@pytest.fixture
def two_orgs(db, funded_org):
    """test-org-001 (admin-1; user-1 holding 1,000 credits, user-2) and other-org with its admin 'other-admin'."""
    credits.allocate(db, funded_org.admin, funded_org.id, "user-1", 1_000)
    organizations.create_organization(db, None, "other-org", "Other Org")
    organizations.create_user(db, None, "other-admin", "other@example.com", "Otto Other")
    organizations.add_member(db, None, "other-org", "other-admin", "admin")
    organizations.create_user(db, None, "root", "root@example.com", "Root", is_system_admin=True)
    return funded_org


# one organization's reads, for its admins: (statement, parameters besides :o and :a)
ORG_ADMIN_READS = {
    "organization_pool": "select * from organization_pool(:o, :a)",
    "org_billing_summary_of": "select * from org_billing_summary_of(:o, :a)",
    "org_billing_metrics_of": "select * from org_billing_metrics_of(:o, :a)",
    "org_billing_history_of": "select * from org_billing_history_of(:o, :a, 200)",
    "organization_members_of": "select * from organization_members_of(:o, :a)",
    "credit_holds_of": "select * from credit_holds_of(:o, :a, false)",
    "credit_lots_of": "select * from credit_lots_of(:o, :a)",
    "api_keys_of (the organization's keys)": "select * from api_keys_of(:a, :o)",
    "member_balance (another member)": "select * from member_balance(:a, :o, 'user-1')",
    "usage_groups (the organization)":
        "select * from usage_groups(:a, :o, null, current_date - 2, current_date - 1, 'user', 100, 0)",
    "usage_groups (another member)":
        "select * from usage_groups(:a, :o, 'user-1', current_date - 2, current_date - 1, 'model', 100, 0)",
}
# platform-wide reads, for system admins
SYSTEM_ADMIN_READS = {
    "org_billing_summaries": "select * from org_billing_summaries(:a)",
    "all_organizations": "select * from all_organizations(:a)",
    "model_price_list": "select * from model_price_list(:a, null, true)",
    "service_price_list": "select * from service_price_list(:a, true)",
    "platform_rule_list": "select * from platform_rule_list(:a)",
    "org_pricing_override_list": "select * from org_pricing_override_list(:a, null)",
    "pricing_calculator_for": "select * from pricing_calculator_for(:a, null, 'llm', 'gpt-4o', 1000, 500)",
    "pricing_rule_reach": "select * from pricing_rule_reach(:a)",
    "pricing_price_reach": "select * from pricing_price_reach(null, 'gpt-4o', 30, :a)",
    "api_keys_of (every key)": "select * from api_keys_of(:a, null)",
}


@pytest.mark.parametrize("statement", ORG_ADMIN_READS.values(), ids=ORG_ADMIN_READS.keys())
@pytest.mark.parametrize("actor", ["user-2", "other-admin"])
def test_a_member_or_another_orgs_admin_is_refused_by_the_read_function_itself(two_orgs, app_db, statement, actor):
    with pytest.raises(PermissionDenied):
        fetch(app_db, statement, {"o": two_orgs.id, "a": actor})


@pytest.mark.parametrize("statement", ORG_ADMIN_READS.values(), ids=ORG_ADMIN_READS.keys())
@pytest.mark.parametrize("actor", ["admin-1", "root"])
def test_the_organizations_admin_and_a_system_admin_may_read(two_orgs, app_db, statement, actor):
    fetch(app_db, statement, {"o": two_orgs.id, "a": actor})


@pytest.mark.parametrize("statement", ORG_ADMIN_READS.values(), ids=ORG_ADMIN_READS.keys())
def test_an_unknown_organization_or_actor_is_not_found_and_no_actor_is_refused_on_the_apps_connection(
    two_orgs, app_db, statement
):
    with pytest.raises(NotFound, match="does not exist"):
        fetch(app_db, statement, {"o": "no-such-org", "a": "admin-1"})
    with pytest.raises(NotFound, match="'ghost' does not exist"):
        fetch(app_db, statement, {"o": two_orgs.id, "a": "ghost"})
    # a null actor is the operator: accepted on the owner's connection only, as for writes
    with pytest.raises(PermissionDenied, match="operator action"):
        fetch(app_db, statement, {"o": two_orgs.id, "a": None})
    with pytest.raises(PermissionDenied, match="log in first"):  # no one logged in
        fetch(app_db, statement, {"o": two_orgs.id, "a": ""})


@pytest.mark.parametrize("statement", SYSTEM_ADMIN_READS.values(), ids=SYSTEM_ADMIN_READS.keys())
def test_platform_reads_refuse_an_org_admin_and_a_member(two_orgs, app_db, statement):
    for actor in ("admin-1", "user-1"):
        with pytest.raises(PermissionDenied):
            fetch(app_db, statement, {"a": actor})
    fetch(app_db, statement, {"a": "root"})


def test_a_member_reads_their_own_usage_and_credits_only(two_orgs, app_db, db):
    credits.deduct(db, two_orgs.id, "user-1", 5, "llm", "gpt-4o")
    own = fetch(app_db, "select * from usage_charges('user-1', :o, 'user-1', current_date - 1, current_date, null,"
                        " 100, 0)", {"o": two_orgs.id})
    assert [row.credits_used for row in own] == [5]
    assert [row.org_id for row in fetch(app_db, "select * from my_credits('user-1')")] == [two_orgs.id]
    [mine] = fetch(app_db, "select * from member_balance('user-1', null, 'user-1')")
    assert (mine.org_id, mine.allocated, mine.used) == (two_orgs.id, 1_000, 5)
    with pytest.raises(PermissionDenied):
        fetch(app_db, "select * from member_balance('user-2', :o, 'user-1')", {"o": two_orgs.id})
    with pytest.raises(NotFound):
        fetch(app_db, "select * from my_credits('ghost')")


@pytest.mark.parametrize("relation", [
    "organization_credit_pools", "org_billing_summary", "user_multi_org_credits", "top_credit_users_by_org",
    "org_billing_metrics", "org_billing_history", "credit_usage_attribution", "credit_holds", "credit_orders",
    "user_credit_allocations", "model_prices", "org_pricing_overrides", "audit_log",
    "api_keys", "api_key_organizations", "api_key_rate_windows",
])
def test_the_app_cannot_read_around_the_functions(two_orgs, app_db, relation):
    # the reads above used to be a SELECT on these, with the role check chosen in Python beside it
    with pytest.raises((PermissionDenied, sa.exc.ProgrammingError), match="permission denied"):
        fetch(app_db, f"select 1 from {relation} limit 1")


def test_the_app_reads_of_users_only_what_the_role_checks_need(two_orgs, app_db):
    with pytest.raises((PermissionDenied, sa.exc.ProgrammingError), match="permission denied"):
        fetch(app_db, "select email from users limit 1")


def test_the_python_reads_pass_parameters_and_the_sql_refusal_reaches_the_caller(two_orgs, app_db):
    with pytest.raises(PermissionDenied):
        reports.pool(app_db, "other-admin", two_orgs.id)
    with pytest.raises(PermissionDenied):
        pricing.model_prices(app_db, "admin-1")
    assert reports.pool(app_db, "admin-1", two_orgs.id).total_credits == 10_000
