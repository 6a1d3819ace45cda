"""Every organization (search, filters, sort, click through to its billing) and opening a new one."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import pages
from billing_core import analytics, organizations, subscriptions
from billing_core.errors import BillingError
from pages import kit
from pages.kit.session import Screen
from pages.sections.system_reads import moments_as_text

SORT_WORDS = {"mrr": "MRR", "credits_used_30d": "Credits used (30 days)", "org_name": "Name",
              "member_count": "Members", "available_credits": "Available credits",
              "created_at": "Newest", "runway_days": "Runway (shortest first)"}

ORG_COLUMNS = {
    "org_name": kit.text_column("Organization"),
    "org_id": kit.text_column("Id"),
    "plan_name": kit.text_column("Plan"),
    "subscription_status": kit.text_column("Status"),
    "billing_cycle": kit.text_column("Billing"),
    "mrr": kit.money_column("MRR"),
    "member_count": kit.count_column("Members"),
    "total_credits": kit.credits_column("Pool total"),
    "allocated_credits": kit.credits_column("Allocated"),
    "used_credits": kit.credits_column("Used"),
    "available_credits": kit.credits_column("Available"),
    "allocated_percent": kit.percent_column("Allocated %"),
    "credits_used_30d": kit.credits_column("Used (30 days)"),
    "usage_change_percent": kit.percent_column("Change vs previous 30 days"),
    "remaining_credits": kit.credits_column("Credits left"),
    "burn_per_day": kit.credits_column("Burn per day"),
    "runway_days": kit.count_column("Runway (days)", help="Credits left / burn per day; empty: nothing used in 30 days"),
    "last_usage_at": kit.text_column("Last usage (UTC)"),
    "org_status": kit.text_column("Organization status"),
}


def organizations_section(screen: Screen, all_orgs: pd.DataFrame, plan_names: dict[str, str]) -> None:
    """Every organization: search by name or id, filter by plan and status, sort; a click opens its billing."""
    st.text_input("Search organizations", key="orgs_search", placeholder="a name or an id, or part of one")
    filters = st.columns([2, 2, 1])
    chosen_plans = filters[0].multiselect(
        "Plan", list(plan_names), format_func=lambda code: plan_names.get(code, code), key="orgs_plan",
        placeholder="All plans")
    chosen_statuses = filters[1].multiselect(
        "Subscription status", list(analytics.SUBSCRIPTION_STATUSES), format_func=kit.term, key="orgs_status",
        placeholder="All statuses")
    sort_by = filters[2].selectbox("Sort by", list(analytics.SORT_KEYS), key="orgs_sort", format_func=SORT_WORDS.get)
    query = st.session_state.get("orgs_search")
    orgs = kit.filter_rows(
        analytics.select_organizations(all_orgs, plans=tuple(chosen_plans), statuses=tuple(chosen_statuses),
                                       sort_by=sort_by),
        query, ["org_name", "org_id"]).reset_index(drop=True)
    if orgs.empty:
        narrowed = chosen_plans or chosen_statuses or (query or "").strip()
        st.caption("No organization matches these filters." if narrowed else "No organization yet.")
        return
    st.caption(f"{kit.counted(len(orgs), 'organization')}. Click a row to open its billing page.")
    shown = orgs.assign(**{column: orgs[column].map(_words) for column in ("subscription_status", "billing_cycle",
                                                                          "org_status")})
    event = kit.table(moments_as_text(shown, "last_usage_at"), ORG_COLUMNS, key="system_orgs", on_select="rerun",
                      selection_mode="single-row")
    kit.csv_download(orgs, "organizations.csv", "Download organizations (CSV)", key="orgs_csv")
    picked = event.selection.rows if event is not None else []
    if picked:
        pages.open_screen("org_billing", str(orgs.iloc[picked[0]].org_id))


def _words(code: object) -> str:
    """A status or cycle as words; "—" where the organization has none (never subscribed)."""
    return kit.term(None if pd.isna(code) else code)


_NOTICE = "system_new_org_notice"
CREATE_FIELDS = ("new_org_name", "new_org_id", "new_org_admin_email", "new_org_admin_name", "new_org_admin_user_id")


def _create(screen: Screen, plan_names: dict[str, str]) -> None:
    """The "Create organization" form was sent: open it (billing_core makes the one-time password) or say why not."""
    state = st.session_state
    try:
        opened = organizations.open_organization(
            screen.db, screen.actor_id, state.get("new_org_id", ""), state.get("new_org_name", ""),
            state.get("new_org_plan"), state.get("new_org_admin_email", ""), state.get("new_org_admin_name"),
            state.get("new_org_admin_user_id"), billing_cycle=state.get("new_org_cycle", "monthly"))
    except BillingError as exc:
        kit.flash("create_org", "error", str(exc))
        return
    state[_NOTICE] = {"name": state.get("new_org_name", "").strip(), "org_id": opened.org_id,
                      "plan": plan_names.get(state.get("new_org_plan"), ""), "email": opened.admin_email,
                      "password": opened.one_time_password}
    kit.clear_cached_reads()
    kit.clear_fields(CREATE_FIELDS)


def create_organization_section(screen: Screen, plans: list[subscriptions.Plan]) -> None:
    """Open an organization on a plan with its first admin; their one-time password shows once."""
    st.subheader("Create an organization")
    plan_names = {plan.code: plan.name for plan in plans}
    prices = {plan.code: plan.monthly_price for plan in plans}
    notice = st.session_state.pop(_NOTICE, None)
    if notice:
        st.success(kit.md_text(
            f"Organization {notice['name']} ({notice['org_id']}) created on the {notice['plan']} plan, "
            f"with {notice['email']} as its first admin. Their one-time password is below: it is shown only "
            "this once, pass it on now."))
        st.code(notice["password"], language=None)
    codes = list(plan_names)
    with st.form("create_org"):
        st.text_input("Organization name", max_chars=200, key="new_org_name")
        st.text_input("Organization id", max_chars=128, key="new_org_id", help="1-128 characters, no spaces: acme-inc")
        st.selectbox("Plan", codes, key="new_org_plan",
                     format_func=lambda code: f"{plan_names[code]} ({kit.fmt_money(prices[code])} a month)",
                     index=codes.index("platform") if "platform" in codes else 0)
        st.radio("Billing", list(subscriptions.BILLING_CYCLES), horizontal=True, key="new_org_cycle",
                 format_func=str.capitalize)
        left, right = st.columns(2)
        left.text_input("First admin's email", max_chars=254, key="new_org_admin_email")
        right.text_input("First admin's name", max_chars=200, key="new_org_admin_name")
        st.text_input("First admin's user id (optional)", max_chars=128, key="new_org_admin_user_id",
                      help="Defaults to the email address.")
        st.form_submit_button("Create organization", type="primary", on_click=_create, args=(screen, plan_names))
    kit.show_flash("create_org")
