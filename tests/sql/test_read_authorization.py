"""Reads are authorized in SQL, like writes: each stored read function checks its acting user itself.

Each function is called directly on the app's connection (SET ROLE billing_app, what the screens and
`billing --as USER` use), with no check run before it from Python: a member, and an admin of another
organization, are refused by the function with the errors writes raise (CB008 -> PermissionDenied,
CB002 -> NotFound). The app reads no table or view itself any more; `test_every_read_the_app_may_call_is_listed_here` keeps
the lists below complete, so a new read that forgets to authorize its actor fails the refusals.
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


TODAY = "(now() at time zone 'UTC')::date"  # the organizations' zone: a range ending today is accepted
DAYS = f"{TODAY} - 1, {TODAY}"

# one organization's reads, for its admins: (statement, parameters :o the organization and :a the actor)
ORG_ADMIN_READS = {
    "organization_pool": "select * from organization_pool(:o, :a)",
    "org_billing_summary_of": "select * from org_billing_summary_of(:o, :a)",
    "org_billing_metrics_of": "select * from org_billing_metrics_of(:o, :a)",
    "org_billing_history_of": "select * from org_billing_history_of(:o, :a, 200)",
    "organization_members_of": "select * from organization_members_of(:o, :a)",
    "organization_pending_invitations": "select * from organization_pending_invitations(:o, :a)",
    "org_credit_requests": "select * from org_credit_requests(:o, :a, true)",
    "credit_orders_of": "select * from credit_orders_of(:o, :a)",
    "credit_holds_of": "select * from credit_holds_of(:o, :a, false)",
    "credit_lots_of": "select * from credit_lots_of(:o, :a)",
    "api_keys_of (the organization's keys)": "select * from api_keys_of(:a, :o)",
    "member_balance (another member)": "select * from member_balance(:a, :o, 'user-1')",
    "usage_groups (the organization)":
        "select * from usage_groups(:a, :o, null, current_date - 2, current_date - 1, 'user', 100, 0)",
    "usage_groups (another member)":
        "select * from usage_groups(:a, :o, 'user-1', current_date - 2, current_date - 1, 'model', 100, 0)",
    "org_overview": "select * from org_overview(:o, :a)",
    "org_allocations": "select * from org_allocations(:o, :a)",
    "org_billing_timeline": "select * from org_billing_timeline(:o, :a, 200)",
    "org_runway": "select * from org_runway(:o, :a, now())",
    "credit_alerts_of": "select * from credit_alerts_of(:o, :a, true)",
    "billing_past_periods": "select * from billing_past_periods(:o, :a)",
    "billing_period_last_run (one organization)": "select * from billing_period_last_run(:a, :o)",
    "analytics_credit_months (one organization)":
        "select * from analytics_credit_months(:a, null, null, now(), :o, 12)",
    "audit_entries (one organization)": "select * from audit_entries(:a, :o, null, '{}', null, null, 10, 0)",
    "audit_actions (one organization)": "select * from audit_actions(:a, :o)",
    "audit_actors (one organization)": "select * from audit_actors(:a, :o)",
    "usage_totals (the organization)": f"select * from usage_totals(:a, :o, null, {DAYS}, null)",
    "usage_totals (another member)": f"select * from usage_totals(:a, :o, 'user-1', {DAYS}, null)",
    "usage_days": f"select * from usage_days(:a, :o, null, {DAYS})",
    "usage_hours": f"select * from usage_hours(:a, :o, null, {DAYS})",
    "usage_services": f"select * from usage_services(:a, :o, null, {DAYS})",
    "usage_members": f"select * from usage_members(:a, :o, {DAYS})",
    "usage_charges": f"select * from usage_charges(:a, :o, null, {DAYS}, null, 50, 0)",
}
# one organization's reads for its members (what a member reads of it, or of their own there)
MEMBER_READS = {
    "billing_settings_of": "select * from billing_settings_of(:o, :a)",
    "billing_current_period": "select * from billing_current_period(:o, :a)",
    "my_credit_alerts": "select * from my_credit_alerts(:o, :a)",
    "my_credit_requests": "select * from my_credit_requests(:a, :o)",
    "usage_range": "select * from usage_range(:a, :o, 'last_30_days', null, null)",
    "usage_totals (my own)": f"select * from usage_totals(:a, :o, :a, {DAYS}, null)",
    "usage_charges (my own)": f"select * from usage_charges(:a, :o, :a, {DAYS}, null, 50, 0)",
}
# platform-wide reads, for system admins
SYSTEM_ADMIN_READS = {
    "org_billing_summaries": "select * from org_billing_summaries(:a)",
    "all_organizations": "select * from all_organizations(:a)",
    "credit_orders_awaiting_payment": "select * from credit_orders_awaiting_payment(:a)",
    "model_price_list": "select * from model_price_list(:a, null, true)",
    "service_price_list": "select * from service_price_list(:a, true)",
    "platform_rule_list": "select * from platform_rule_list(:a)",
    "org_pricing_override_list": "select * from org_pricing_override_list(:a, null)",
    "pricing_calculator_for": "select * from pricing_calculator_for(:a, null, 'llm', 'gpt-4o', 1000, 500)",
    "pricing_rule_reach": "select * from pricing_rule_reach(:a)",
    "pricing_price_reach": "select * from pricing_price_reach(null, 'gpt-4o', 30, :a)",
    "api_keys_of (every key)": "select * from api_keys_of(:a, null)",
    "system_overview": "select * from system_overview(:a, now())",
    "system_plan_mix": "select * from system_plan_mix(:a, now())",
    "system_organizations": "select * from system_organizations(:a, now())",
    "system_mrr_months": "select * from system_mrr_months(:a, null, null, now(), 12)",
    "analytics_credit_months (every organization)":
        "select * from analytics_credit_months(:a, null, null, now(), null, 12)",
    "audit_entries (every organization)": "select * from audit_entries(:a, null, null, '{}', null, null, 10, 0)",
    "audit_actions (every organization)": "select * from audit_actions(:a, null)",
    "audit_actors (every organization)": "select * from audit_actors(:a, null)",
    "billing_period_last_run (every organization)": "select * from billing_period_last_run(:a, null)",
}
# the acting user's own rows, in whichever organizations they belong to
OWN_READS = {
    "my_credits": "select * from my_credits(:a)",
    "member_cards": "select * from member_cards(:a, 30)",
    "my_pending_invitations": "select * from my_pending_invitations(:a)",
}
# reads granted to the app that read nothing of an organization's or a person's, or are the login's own
# steps (each checked by its own tests): no actor to authorize
NOT_AUTHORIZED_BY_ACTOR = {
    "app_setting", "check_user_session", "login_entry", "user_id_for_email", "user_account", "user_memberships",
    "credit_order_quote", "credit_list_price", "plan_catalogue", "plan_version_list", "credit_package_list",
    "pricing_platform_rule_at", "charging_org_for", "price_usage", "has_sufficient_credits",
}
# a write's rehearsal (what the form asks before its question): authorized as its write, tested with it
WRITE_REHEARSALS = {"preview_plan_edit", "subscription_payment_check", "grant_credits_check", "record_order_payment_check"}


def _function_name(label: str) -> str:
    return label.split(" (")[0]


def test_every_read_the_app_may_call_is_listed_here(two_orgs, db):
    """A new read granted to the app (a STABLE function) must join a list above, so that the tests below call it
    as a member, another organization's admin, an unknown and an absent user; a read that forgot to authorize
    its actor then fails them."""
    granted = {row.proname for row in fetch(
        db,
        "select distinct p.proname from pg_proc p"
        " where p.pronamespace = 'public'::regnamespace and p.provolatile in ('s', 'i')"
        "   and has_function_privilege('billing_app', p.oid, 'execute')",
    )}
    listed = {_function_name(label) for reads in (ORG_ADMIN_READS, MEMBER_READS, SYSTEM_ADMIN_READS, OWN_READS)
              for label in reads}
    assert granted - listed - NOT_AUTHORIZED_BY_ACTOR - WRITE_REHEARSALS == set(), "reads the app may call that no list names"
    assert listed - granted == set(), "listed reads the app may not call (renamed? a write?)"


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


@pytest.mark.parametrize("statement", MEMBER_READS.values(), ids=MEMBER_READS.keys())
def test_member_reads_refuse_another_organizations_admin_and_let_a_member_read(two_orgs, app_db, statement):
    with pytest.raises(PermissionDenied):
        fetch(app_db, statement, {"o": two_orgs.id, "a": "other-admin"})
    for actor in ("user-2", "admin-1", "root"):
        fetch(app_db, statement, {"o": two_orgs.id, "a": actor})
    with pytest.raises(NotFound, match="does not exist"):
        fetch(app_db, statement, {"o": "no-such-org", "a": "user-2"})
    with pytest.raises(NotFound, match="'ghost' does not exist"):
        fetch(app_db, statement, {"o": two_orgs.id, "a": "ghost"})
    with pytest.raises(PermissionDenied):  # the operator's (on the owner's connection only), or no one's
        fetch(app_db, statement, {"o": two_orgs.id, "a": None})
    with pytest.raises(PermissionDenied, match="log in first"):
        fetch(app_db, statement, {"o": two_orgs.id, "a": ""})


@pytest.mark.parametrize("statement", [*SYSTEM_ADMIN_READS.values(), *OWN_READS.values()],
                         ids=[*SYSTEM_ADMIN_READS.keys(), *OWN_READS.keys()])
def test_platform_and_own_reads_refuse_an_unknown_or_absent_actor(two_orgs, app_db, statement):
    with pytest.raises(NotFound, match="'ghost' does not exist"):
        fetch(app_db, statement, {"a": "ghost"})
    with pytest.raises((PermissionDenied, NotFound)):  # no actor: the operator's, on the owner's connection only
        fetch(app_db, statement, {"a": None})
    with pytest.raises(PermissionDenied, match="log in first"):
        fetch(app_db, statement, {"a": ""})


def test_own_reads_hold_only_the_actors_rows(two_orgs, app_db):
    for statement in OWN_READS.values():
        for row in fetch(app_db, statement, {"a": "other-admin"}):
            assert getattr(row, "org_id", "other-org") == "other-org"


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
    # read by the app itself before (the role checks, periods, alerts): now through functions that authorize
    "organizations", "organization_members", "credit_pools", "credit_lots", "credit_alerts", "billing_periods",
    "billing_period_runs",
])
def test_the_app_cannot_read_around_the_functions(two_orgs, app_db, relation):
    # the reads above used to be a SELECT on these, with the role check chosen in Python beside it
    with pytest.raises((PermissionDenied, sa.exc.ProgrammingError), match="permission denied"):
        fetch(app_db, f"select 1 from {relation} limit 1")


def test_the_app_reads_nothing_of_users_itself(two_orgs, app_db):
    for column in ("email", "id, is_system_admin"):
        with pytest.raises((PermissionDenied, sa.exc.ProgrammingError), match="permission denied"):
            fetch(app_db, f"select {column} from users limit 1")


def test_the_app_runs_no_role_check_helper_itself(two_orgs, app_db):
    # the checks run inside the read functions; from the app's connection the helpers are closed
    with pytest.raises((PermissionDenied, sa.exc.ProgrammingError), match="permission denied"):
        fetch(app_db, "select ledger_authorize('admin-1', :o, 'admin')", {"o": two_orgs.id})


def test_the_python_reads_pass_parameters_and_the_sql_refusal_reaches_the_caller(two_orgs, app_db):
    with pytest.raises(PermissionDenied):
        reports.pool(app_db, "other-admin", two_orgs.id)
    with pytest.raises(PermissionDenied):
        pricing.model_prices(app_db, "admin-1")
    assert reports.pool(app_db, "admin-1", two_orgs.id).total_credits == 10_000
