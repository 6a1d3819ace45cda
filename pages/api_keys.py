"""API keys (system admins): service keys for metered services, and every organization's keys.

A service key charges for users of every organization, or only of the organizations listed; with system
scope it also reads the System endpoints and acts on any organization. It acts as the system admin who
made it and stops working when they are no longer one. Every read and write checks the role again in SQL.
"""

from __future__ import annotations

from functools import partial

import streamlit as st

import pages
from billing_core import api_keys, organizations
from pages import kit
from pages.kit.session import Screen
from pages.sections import api_keys as key_sections
from pages.sections.system_reads import system_read

_SERVICE_FIELDS = ("service_key_orgs", "service_key_system")


def render(screen: Screen) -> None:
    """The API keys screen."""
    st.title("API keys")
    keys = system_read(screen, api_keys.keys)  # system admins only, first
    orgs = system_read(screen, organizations.organizations)
    names = dict(zip(orgs.org_id, orgs.name, strict=True))
    service_keys_section(screen, [key for key in keys if key.kind == "service"], names)
    organization_keys_section(screen, [key for key in keys if key.kind == "organization"])


def service_keys_section(screen: Screen, keys: list[api_keys.ApiKey], names: dict[str, str]) -> None:
    """Make a service key (its token shown once), list them, revoke one."""
    st.subheader("Service keys")
    st.caption("For metered services: they charge, hold, settle and check balances for users of every "
               "organization, or only of the organizations listed. A key acts as the system admin who made it.")
    with st.form("service_key"):
        st.text_input("Key name", key="service_key_name", max_chars=100, placeholder="what the key is for")
        st.multiselect("Only for these organizations", list(names), key="service_key_orgs",
                       format_func=lambda org_id: f"{names[org_id]} ({org_id})",
                       help="Empty: every organization (platform-wide).")
        st.checkbox("System scope", key="service_key_system",
                    help="Also read the System endpoints and act on any organization's endpoints.")
        st.form_submit_button("Create service key", key="service_key_submit", on_click=key_sections.create,
                              args=("service_key", partial(_make_service_key, screen), _SERVICE_FIELDS))
    kit.show_flash("service_key")
    key_sections.new_token_section("service_key")
    key_sections.keys_table_section(keys, key="service_keys_table", empty="No service keys yet.")
    key_sections.revoke_section(screen, keys, form="service_key_revoke")


def _make_service_key(screen: Screen, name: str) -> api_keys.NewKey:
    state = st.session_state
    return api_keys.create_service_key(screen.db, screen.actor_id, name, org_ids=state.get("service_key_orgs") or (),
                                       system_scope=bool(state.get("service_key_system")))


def organization_keys_section(screen: Screen, keys: list[api_keys.ApiKey]) -> None:
    """Every organization's keys (their admins make them on Billing periods); a system admin may revoke one."""
    st.subheader("Organization keys")
    st.caption("Made by each organization's admins on its Billing periods screen; each acts in its own "
               "organization only.")
    key_sections.keys_table_section(keys, key="organization_keys_table", empty="No organization keys yet.")
    key_sections.revoke_section(screen, keys, form="organization_key_revoke")


if __name__ == "__main__":
    pages.run_app()  # Streamlit's old pages/ mode opened this file by its URL: the app, with its login, instead
