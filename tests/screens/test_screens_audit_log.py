"""The Audit log screen under AppTest: paged (page size, page number, where the page sits among all matches), every
matching entry exported as CSV (not only the page, formula-safe), actions and details in words.

Dataset: root (system admin), 'acme' with its admin ada; 1,234 entries written by ada on acme (1,000 of
'plan.version_created', 234 of 'member.role_changed', one of them with a formula as its target id), plus the few
the set-up wrote.
"""

from __future__ import annotations

import io

import pandas as pd
import pytest
import streamlit as st
from screen_testing import errors, open_page, plain

from billing_core import audit, auth, organizations
from billing_core.database import fetch
from pages import audit_log as screen_module
from pages.kit.session import Screen

FORMULA = '=HYPERLINK("https://evil.example","x")'


@pytest.fixture
def log(db, db_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    organizations.create_user(db, None, "root", "root@example.com", "Root", is_system_admin=True)
    organizations.create_organization(db, None, "acme", "Acme")
    organizations.create_user(db, None, "ada", "ada@example.com", "Ada")
    organizations.add_member(db, None, "acme", "ada", "admin")
    # the owner's connection writes audit rows as the stored functions do (ledger_audit): no screen makes 1,234
    fetch(db, "select count(ledger_audit('acme', 'ada', case when n <= 1000 then 'plan.version_created'"
              " else 'member.role_changed' end, 'plan', case when n = 1234 then :formula else 'p' || n end,"
              " jsonb_build_object('version', n, 'effective_at', null, 'previous', jsonb_build_array(1, 2))))"
              " from generate_series(1, 1234) n", {"formula": FORMULA})
    st.cache_data.clear()
    return db


def captions(at) -> list[str]:
    return [plain(c.value) for c in at.caption]


def shown_rows(at) -> pd.DataFrame:
    [frame] = [f.value for f in at.dataframe if "action" in f.value.columns]
    return frame


def test_the_log_pages_through_every_matching_entry(log):
    total = audit.entries(log, "ada", "acme").total
    assert total >= 1234
    at = open_page("audit_log", "ada", "acme")
    assert not at.exception and not errors(at)
    assert f"Showing 1–50 of {total:,} matching entries, newest first." in captions(at)
    assert len(shown_rows(at)) == 50
    at.selectbox(key="audit_page_size").set_value(500).run()
    at.number_input(key="audit_page").set_value(2).run()
    assert f"Showing 501–1,000 of {total:,} matching entries, newest first." in captions(at)
    expected = audit.entries(log, "ada", "acme", limit=500, offset=500).entries
    assert shown_rows(at).target_id.tolist() == expected.target_id.tolist()  # the second 500, newest first
    at.number_input(key="audit_page").set_value(3).run()
    assert f"Showing 1,001–{total:,} of {total:,} matching entries, newest first." in captions(at)
    assert at.number_input(key="audit_page").max == 3
    # other filters start again at their first page
    at.multiselect(key="audit_actions").set_value(["member.role_changed"]).run()
    assert "Showing 1–234 of 234 matching entries, newest first." in captions(at)
    assert at.number_input(key="audit_page").value == 1
    assert not at.exception and not errors(at)


def test_actions_and_details_are_words(log):
    at = open_page("audit_log", "ada", "acme")
    rows = shown_rows(at)
    assert set(rows.action) == {"member: role changed"}  # the newest 50 are the last written
    assert rows.details.iloc[0] == "version: 1234; previous: [1, 2]; effective at: —"
    assert not any(text.startswith("{") for text in rows.details)  # no raw JSON
    assert at.multiselect(key="audit_actions").options == [
        "member: added", "member: role changed", "organization: created", "plan: version created"]


def test_the_export_holds_every_matching_entry_formula_safe(log):
    at = open_page("audit_log", "ada", "acme")
    total = audit.entries(log, "ada", "acme").total
    assert [b.label for b in at.download_button] == [f"Download all {total:,} entries (CSV)"]
    screen = Screen(log, "ada", auth.user_roles(log, "ada"), "acme")
    exported = pd.read_csv(io.BytesIO(screen_module.export_csv(
        screen, screen_module.Filters("acme", None, (), None, None))), dtype=str, keep_default_na=False)
    assert len(exported) == total > 50  # all of them, not the page
    assert list(exported.columns)[:6] == ["When (UTC)", "Organization", "Organization id", "Who", "User id", "Action"]
    assert exported["Target id"].iloc[0] == "'" + FORMULA  # a spreadsheet shows it as text, never runs it
    only_roles = pd.read_csv(io.BytesIO(screen_module.export_csv(
        screen, screen_module.Filters("acme", None, ("member.role_changed",), None, None))), dtype=str)
    assert len(only_roles) == 234 and set(only_roles.Action) == {"member: role changed"}


def test_another_organization_s_export_is_refused(log):
    organizations.create_organization(log, None, "other", "Other")
    screen = Screen(log, "ada", auth.user_roles(log, "ada"), "other")
    with pytest.raises(Exception, match="not an admin of organization 'other'"):
        screen_module.export_csv(screen, screen_module.Filters("other", None, (), None, None))


def test_a_system_admin_reads_the_chosen_organization_or_every_one(log):
    at = open_page("audit_log", "root", "acme")
    assert not at.exception and not errors(at)
    assert "Entries of Acme (choose another organization at the top of the page)." in captions(at)
    total = audit.entries(log, "root", "acme").total
    assert f"Showing 1–50 of {total:,} matching entries, newest first." in captions(at)
    at.toggle(key="audit_all").set_value(True).run()
    everything = audit.entries(log, "root").total
    assert everything > total  # the users' creation belongs to no organization
    assert f"Showing 1–50 of {everything:,} matching entries, newest first." in captions(at)
