"""API keys on the screens: the org admins' section on Billing periods, the system admins' API keys screen.

The token shows once (the run after the key is made) and is gone from the session after; revoking asks
first; a bad name is refused with the database's message and writes nothing.

Dataset: 'acme' (admin ada, member bob), 'other' (admin olga); root is the system admin.
"""

from __future__ import annotations

import pytest
import streamlit as st
from screen_testing import errors, open_page, plain, tables

from billing_core import api_keys, database, organizations
from billing_core.database import fetch


@pytest.fixture
def acme(db, db_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    organizations.create_user(db, None, "root", "root@example.com", "Root", is_system_admin=True)
    for org_id, name, admin in (("acme", "Acme Analytics", "ada"), ("other", "Other Org", "olga")):
        organizations.create_organization(db, None, org_id, name)
        organizations.create_user(db, None, admin, f"{admin}@example.com", admin.title())
        organizations.add_member(db, None, org_id, admin, "admin")
    organizations.create_user(db, None, "bob", "bob@example.com", "Bob")
    organizations.add_member(db, None, "acme", "bob")
    st.cache_data.clear()
    return db


def codes(at) -> list[str]:
    return [el.value for el in at.code]


def key_count(db) -> int:
    return fetch(db, "select count(*) as n from api_keys")[0].n


def test_an_org_admin_makes_a_key_whose_token_shows_once(acme):
    at = open_page("billing_settings", "ada", "acme")
    assert not at.exception and not errors(at)
    at.text_input(key="org_key_name").set_value("CI <b>pipeline</b>")
    at.button(key="org_key_submit").click().run()
    assert not at.exception and not errors(at)
    [token] = codes(at)
    assert token.startswith("cbk_")
    assert any("shown only this once" in plain(w.value) for w in at.warning)
    assert "API key CI <b>pipeline</b> created" in plain(at.success[0].value)
    # the token works, acts as ada, and is nowhere in the session any more
    app_db = database.app_engine()
    assert api_keys.authorize(app_db, token, "read").actor_id == "ada"
    assert "_kit_flash" in repr(at.session_state) and token not in repr(at.session_state)
    assert at.text_input(key="org_key_name").value == ""  # the name is cleared: a second click makes no second key
    listed = next(t for t in tables(at) if "prefix" in t.columns)
    assert list(listed.name) == ["CI <b>pipeline</b>"] and list(listed.status) == ["Active"]
    at.run()  # any next run: the token is gone from the page
    assert codes(at) == []


# (the field takes at most 100 characters, as the database does: a longer name cannot be typed)
@pytest.mark.parametrize("name, message", [("", "Key name is missing"), ("   ", "Key name is missing"),
                                           ("tab\there", "control characters")])
def test_a_bad_name_is_refused_and_makes_no_key(acme, name, message):
    at = open_page("billing_settings", "ada", "acme")
    at.text_input(key="org_key_name").set_value(name)
    at.button(key="org_key_submit").click().run()
    assert not at.exception
    assert any(message in e for e in errors(at)), errors(at)
    assert codes(at) == [] and key_count(acme) == 0


def test_revoking_asks_first_and_cancel_changes_nothing(acme):
    made = api_keys.create_organization_key(acme, "ada", "acme", "Reports")
    at = open_page("billing_settings", "ada", "acme")
    at.selectbox(key="org_key_revoke_key").set_value(made.key.key_id)
    at.button(key="org_key_revoke_ask").click().run()
    assert any("Revoke API key Reports" in plain(w.value) for w in at.warning)
    assert api_keys.keys(acme, "ada", "acme")[0].revoked_at is None  # only asked
    at.button(key="org_key_revoke_cancel").click().run()
    assert api_keys.keys(acme, "ada", "acme")[0].revoked_at is None
    at.button(key="org_key_revoke_ask").click().run()
    at.button(key="org_key_revoke_confirm").click().run()
    assert not at.exception and not errors(at)
    assert "API key Reports revoked." in [plain(s.value) for s in at.success]
    assert api_keys.keys(acme, "ada", "acme")[0].revoked_at is not None
    assert list(next(t for t in tables(at) if "prefix" in t.columns).status) == ["Revoked"]


def test_a_member_sees_no_keys_section(acme):
    at = open_page("billing_settings", "bob", "acme")
    assert errors(at)
    assert not [b for b in at.button if b.key == "org_key_submit"]


def test_a_system_admin_makes_a_listed_service_key_and_sees_every_key(acme):
    api_keys.create_organization_key(acme, "olga", "other", "Other's key")
    at = open_page("api_keys", "root")
    assert not at.exception and not errors(at)
    at.text_input(key="service_key_name").set_value("Metering")
    at.multiselect(key="service_key_orgs").set_value(["acme"])
    at.button(key="service_key_submit").click().run()
    assert not at.exception and not errors(at)
    [token] = codes(at)
    grant = api_keys.authorize(database.app_engine(), token, "charge", org_id="acme")
    assert (grant.kind, grant.actor_id) == ("service", "root")
    shown = {row.name: row.scope for t in tables(at) if "scope" in t.columns for row in t.itertuples()}
    assert shown == {"Metering": "Charges for acme", "Other's key": "Organization other"}
    at.run()
    assert codes(at) == []


def test_the_api_keys_screen_refuses_an_org_admin(acme):
    at = open_page("api_keys", "ada", "acme")
    assert any("not a system admin" in e for e in errors(at))
    assert not [b for b in at.button if b.key == "service_key_submit"]
