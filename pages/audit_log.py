"""Audit log: who did what, when. System admins see every organization; org admins their own."""

from __future__ import annotations

import streamlit as st

import pages
from billing_core import access, audit, organizations
from billing_core.errors import BillingError
from pages import kit

if __name__ == "__main__":  # opened by its URL in Streamlit's old pages/ mode: the app with its login instead
    pages.run_app()
    st.stop()

LIMIT = 500

st.title("Audit log")

actor_id = kit.require_actor()
db = kit.engine()

try:
    is_system_admin = kit.read(db, access.role_in, actor_id, None) == "system_admin"
except BillingError as exc:
    kit.refuse(exc)

# ------------------------------------------------------------ scope: which organization
if is_system_admin:
    orgs = kit.read(db, organizations.organizations, actor_id)
    labels = dict(zip(orgs.org_id, orgs.name + " (" + orgs.org_id + ")", strict=True))
    scope = st.selectbox(
        "Organization", [None, *labels], key="audit_org",
        format_func=lambda org_id: "All organizations (and actions outside any)" if org_id is None else labels[org_id],
    )
else:
    scope = kit.chosen_org()
    if scope is None:
        kit.refuse("You belong to no organization: there is no audit log to show.")

try:
    choices = kit.read(db, audit.choices, actor_id, scope)  # org admins of `scope` only; others are refused here
except BillingError as exc:
    kit.refuse(exc)

if not is_system_admin:
    st.caption(kit.md_text(f"Entries of organization {scope} (change the organization in the sidebar)."))

# ------------------------------------------------------------ filters
actor_names = dict(zip(choices.actors.actor_id, choices.actors.actor_name + " (" + choices.actors.actor_id + ")",
                       strict=True))
left, middle, right = st.columns([2, 2, 2])
with left:
    by_actor = st.selectbox(
        "Who", [None, *actor_names], key="audit_actor",
        format_func=lambda user_id: "Anyone" if user_id is None else actor_names[user_id],
    )
with middle:
    actions = st.multiselect("Action", choices.actions, key="audit_actions", placeholder="All actions")
with right:
    dates = st.date_input("Between (UTC days)", value=(), key="audit_dates", format="YYYY-MM-DD")
since = dates[0] if len(dates) >= 1 else None
until = dates[1] if len(dates) == 2 else None

try:
    found = kit.read(
        db, audit.entries, actor_id, scope, by_actor=by_actor, actions=tuple(actions), since=since, until=until,
        limit=LIMIT,
    )
except BillingError as exc:
    kit.refuse(exc)

# ------------------------------------------------------------ entries
if found.total > len(found.entries):
    st.caption(f"The newest {len(found.entries):,} of {found.total:,} matching entries; narrow the filters to see older ones.")
else:
    st.caption(f"{found.total:,} matching entries, newest first.")
kit.table(
    found.entries,
    {
        "created_at": kit.datetime_column("When (UTC)"),
        "org_name": kit.text_column("Organization"),
        "org_id": kit.text_column("Organization id"),
        "actor_name": kit.text_column("Who"),
        "actor_id": kit.text_column("User id"),
        "action": kit.text_column("Action"),
        "target_type": kit.text_column("Target"),
        "target_id": kit.text_column("Target id"),
        "details": kit.text_column("Details"),
    },
    key="audit_entries",
    empty="No audit entry matches these filters.",
)
if not found.entries.empty:
    kit.csv_download(found.entries, "audit_log.csv", "Download these entries (CSV)", key="audit_csv")
