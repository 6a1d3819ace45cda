"""The system overview and audit log screens, run with AppTest against the hand-computed dataset.

tests/system_dataset.py describes the dataset and the figures it must give.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1 import app_test as app_test_module

from billing_core import audit, auth, ledger, orders, organizations, subscriptions
from billing_core.database import fetch
from pages import audit_log as audit_screen
from pages.kit.session import Screen
from tests import system_dataset as data
from tests.ledger_state import snapshot
from tests.screen_testing import chart_titled, errors, metrics, no_html_allowed, open_page, plain


@pytest.fixture
def ds(db, db_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    return data.build(db)


_media_stores: list[MemoryMediaFileStorage] = []


class _RecordingStorage(MemoryMediaFileStorage):
    """AppTest's in-memory media storage, kept after the run so that downloads can be read."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _media_stores.append(self)


@pytest.fixture(autouse=True)
def _keep_downloads(monkeypatch):
    monkeypatch.setattr(app_test_module, "MemoryMediaFileStorage", _RecordingStorage)
    yield
    _media_stores.clear()


def _table(at: AppTest, column: str) -> pd.DataFrame:
    """The one table on the page that has this column."""
    found = [frame.value for frame in at.dataframe if column in frame.value.columns]
    assert len(found) == 1, f"{len(found)} tables with column {column!r}"
    return found[0]


def _numbers(values) -> list:
    """A Plotly data array (a list, or numpy's base64 form Plotly 6 sends)."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)


def _bars(spec: dict, horizontal: bool = False) -> list[tuple[str, float]]:
    """(category as Plotly gets it, value) per bar: the name in the hover data, else the axis position."""
    bars = []
    for trace in spec["data"]:
        at, values = (trace["y"], trace["x"]) if horizontal else (trace["x"], trace["y"])
        names = [row[0] for row in trace["customdata"]] if trace.get("customdata") else _numbers(at)
        bars += list(zip(names, _numbers(values), strict=True))
    return bars


def _download(at: AppTest, label: str) -> pd.DataFrame:
    """The CSV behind the download button with this label, as a DataFrame of text."""
    button = next(b for b in at.download_button if b.label == label)
    file_id = Path(button.proto.url).stem
    content = _media_stores[-1].get_file(file_id).content
    return pd.read_csv(io.BytesIO(content), dtype=str, keep_default_na=False)


def _nothing_shown(at: AppTest) -> bool:
    return not (at.metric or at.dataframe or at.get("plotly_chart") or at.button or at.download_button)


# ------------------------------------------------------------ system overview


SYSTEM_SCREENS = ("system_overview", "system_organizations", "system_credits", "system_past_due")


def test_overview_shows_the_datasets_figures(ds):
    at = open_page("system_overview", ds.sysadmin)
    assert not at.exception and not errors(at)

    assert metrics(at) == [
        ("MRR", "$278.00"), ("ARR", "$3,336.00"), ("Active subscriptions", "6"), ("Credits used (30 days)", "620"),
    ]
    assert [m.proto.delta for m in at.metric] == [
        "-$19.00 (-6.4%)", "-$228.00 (-6.4%)", "+1 (+20.0%)", "+414 (+201.0%)",
    ]
    assert [m.proto.help for m in at.metric] == [
        "30 days ago: $297.00", "30 days ago: $3,564.00", "30 days ago: 5", "Previous 30 days: 206",
    ]

    assert _bars(chart_titled(at, "Paying subscriptions per plan")) == [
        ("Platform", 2), ("Hybrid", 1), ("BYOK", 2), ("Starter", 1)]
    assert _bars(chart_titled(at, "MRR per plan")) == [("Platform", 100), ("Hybrid", 99), ("BYOK", 60), ("Starter", 19)]
    mix = _table(at, "mrr_share_percent")
    assert mix.mrr_share_percent.tolist() == [35.97, 35.61, 21.58, 6.83]
    assert _download(at, "Download plan mix (CSV)").plan.tolist() == ["platform", "hybrid", "byok", "starter"]
    assert not at.button and no_html_allowed(at)

    at = open_page("system_credits", ds.sysadmin)
    assert not at.exception and not errors(at)
    # names HTML-escaped for Plotly, which renders some tags
    assert _bars(chart_titled(at, "Credits used in the last 30 days"), horizontal=True) == [
        ("Alpha Corp", 500), ("Beta &amp; Sons", 120)]
    assert [b.label for b in at.button] == ["Grant credits"]

    at = open_page("system_organizations", ds.sysadmin)
    assert not at.exception and not errors(at)
    orgs = _table(at, "member_count")
    assert len(orgs) == len(data.ORG_NAMES)
    assert orgs.org_name.tolist()[:3] == ["Beta & Sons", "<script>alert(1)</script>", "Alpha Corp"]
    assert orgs.mrr.sum() == 278
    alpha = orgs.set_index("org_name").loc["Alpha Corp"]
    assert (alpha.member_count, alpha.total_credits, alpha.available_credits, alpha.credits_used_30d) == (
        2, 10_000, 8_500, 500)
    assert alpha.usage_change_percent == 150
    assert set(orgs.subscription_status) == {"active", "past due", "canceled", "never subscribed"}
    assert set(orgs.billing_cycle) == {"monthly", "yearly", "—"}
    assert [b.label for b in at.button] == ["Create organization"]
    exported = _download(at, "Download organizations (CSV)")
    assert sorted(exported.org_id) == sorted(data.ORG_NAMES)
    assert exported.set_index("org_id").loc["beta", "mrr"] == "99.0000"

    at = open_page("system_past_due", ds.sysadmin)
    assert not at.exception and not errors(at)
    due = _table(at, "status_changed_at")
    assert due.org_name.tolist() == ["Delta <b>bold</b>"] and due.mrr.tolist() == [19]
    row = next(m.value for m in at.markdown if "Delta" in m.value)
    assert "<b>" not in row and plain(row).startswith("**Delta <b>bold</b>** · delta · Starter")
    assert no_html_allowed(at)
    assert [b.label for b in at.button] == ["Mark active", "Cancel subscription"]
    assert _download(at, "Download past-due organizations (CSV)").org_id.tolist() == ["delta"]


def test_overview_of_a_system_without_organizations(db, db_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    organizations.create_user(db, None, "root", "root@example.com", "Root", is_system_admin=True)
    captions, buttons = set(), []
    for name in SYSTEM_SCREENS:
        at = open_page(name, "root")
        assert not at.exception and not errors(at)
        assert not at.dataframe and not at.get("plotly_chart")
        captions |= {plain(c.value) for c in at.caption}
        buttons += [b.label for b in at.button]
        if name == "system_overview":
            assert metrics(at) == [
                ("MRR", "$0.00"), ("ARR", "$0.00"), ("Active subscriptions", "0"), ("Credits used (30 days)", "0"),
            ]
    assert {"No paying subscription yet.", "No subscription paid in these months.", "No usage in the last 30 days.",
            "No organization yet.", "No subscription is past due."} <= captions
    assert buttons == ["Create organization"]


@pytest.mark.parametrize("who, org", [("alpha_admin", "alpha"), ("alpha_member", "alpha"), ("beta_admin", "beta")])
def test_overview_refuses_everyone_but_system_admins(ds, who, org):
    actor = getattr(ds, who)
    for name in SYSTEM_SCREENS:
        at = open_page(name, actor, org)
        assert not at.exception
        assert errors(at) == [f"User '{actor}' is not a system admin."], name
        assert _nothing_shown(at) and not at.text_input, name


def test_pages_ask_for_a_login_first(ds):
    for page in (*SYSTEM_SCREENS, "audit_log"):
        at = open_page(page, None)
        assert not at.exception
        assert [w.value for w in at.warning] == ["Please log in."]
        assert _nothing_shown(at)


def test_organization_filters_and_sorting(ds):
    at = open_page("system_organizations", ds.sysadmin)
    at.multiselect(key="orgs_plan").set_value(["platform"]).run()
    assert sorted(_table(at, "member_count").org_id) == ["alpha", "iota", "zeta"]

    at.multiselect(key="orgs_status").set_value(["canceled"]).run()
    assert _table(at, "member_count").org_id.tolist() == ["zeta"]

    at.multiselect(key="orgs_plan").set_value([]).run()
    at.multiselect(key="orgs_status").set_value(["none", "past_due"]).run()
    shown = _table(at, "member_count")
    assert sorted(shown.org_id) == ["delta", "theta"]
    assert set(shown.subscription_status) == {"past due", "never subscribed"}

    at.multiselect(key="orgs_status").set_value([]).run()
    at.selectbox(key="orgs_sort").set_value("org_name").run()
    assert _table(at, "member_count").org_name.tolist() == sorted(data.ORG_NAMES.values())
    at.selectbox(key="orgs_sort").set_value("credits_used_30d").run()
    assert _table(at, "member_count").org_id.tolist()[:2] == ["alpha", "beta"]

    at.multiselect(key="orgs_plan").set_value(["hybrid"]).run()
    at.multiselect(key="orgs_status").set_value(["canceled"]).run()
    assert "member_count" not in [c for frame in at.dataframe for c in frame.value.columns]
    assert "No organization matches these filters." in [c.value for c in at.caption]
    assert not at.exception


def test_organizations_are_found_by_name_or_id(ds):
    at = open_page("system_organizations", ds.sysadmin)
    at.text_input(key="orgs_search").set_value("sons").run()
    assert _table(at, "member_count").org_id.tolist() == ["beta"]
    at.text_input(key="orgs_search").set_value("ETA").run()  # any part of a name or an id, in any case
    assert sorted(_table(at, "member_count").org_id) == ["beta", "eta", "theta", "zeta"]
    at.text_input(key="orgs_search").set_value("<script>").run()  # typed text is matched as text
    assert _table(at, "member_count").org_id.tolist() == ["iota"]
    at.text_input(key="orgs_search").set_value("nobody").run()
    assert "No organization matches these filters." in [c.value for c in at.caption]
    assert not at.exception and not errors(at)


def test_clicking_an_organization_opens_its_billing_page(ds):
    # the app's entry registers the screens with st.navigation; this stand-in does the same with the two screens
    at = AppTest.from_string(
        "import streamlit as st\nimport pages\n"
        "st.navigation([st.Page(lambda: pages.show('system_organizations'), title='Organizations',"
        " url_path='system_organizations', default=True),"
        " st.Page(lambda: pages.show('org_billing'), title='Organization billing', url_path='org_billing')]).run()\n",
        default_timeout=60,
    )
    at.session_state["actor_id"] = ds.sysadmin
    at.session_state["org_id"] = None
    at.run()
    orgs = _table(at, "member_count")
    row = orgs.org_id.tolist().index("gamma")
    at.session_state["system_orgs"] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    at.run()
    assert not at.exception
    assert at.session_state["org_id"] == "gamma"
    assert [t.value for t in at.title] == ["Organization billing"]
    assert plain(at.subheader[0].value) == data.ORG_NAMES["gamma"]
    assert not errors(at)


def _row_children(at: AppTest, org_id: str) -> list:
    """What the past-due box of this organization holds (its question and outcome show there)."""
    for box in at.main.children.values():
        keys = [getattr(node, "key", None) for node in _walk(box)]
        if f"past_due_cancel_{org_id}" in keys:
            return list(_walk(box))
    raise AssertionError(f"no past-due box for {org_id}")


def _walk(node):
    for child in getattr(node, "children", {}).values():
        yield child
        yield from _walk(child)


def test_past_due_cancel_asks_in_its_row_first_then_cancels(ds, db):
    at = open_page("system_past_due", ds.sysadmin)
    at.button(key="past_due_cancel_delta").click().run()
    [question] = [plain(w.value) for w in at.warning if plain(w.value).startswith("Cancel the")]
    assert question.startswith("Cancel the Starter subscription of Delta <b>bold</b> (delta)?")
    # asked next to the button, in the organization's box, not at the top of the page
    assert question in [plain(node.value) for node in _row_children(at, "delta") if node.type == "warning"]
    assert _status(db, "delta") == "past_due"

    at.button(key="past_due_delta_cancel").click().run()  # "Cancel" the question
    assert "Cancelled: nothing changed." in [plain(i.value) for i in at.info]
    assert _status(db, "delta") == "past_due"

    at.button(key="past_due_cancel_delta").click().run()
    at.button(key="past_due_delta_confirm").click().run()
    assert not at.exception and not errors(at)
    assert _status(db, "delta") == "canceled"
    assert [plain(s.value) for s in at.success] == ["Delta <b>bold</b>: subscription canceled."]
    assert "No subscription is past due." in [plain(c.value) for c in at.caption]
    assert open_page("system_overview", ds.sysadmin) and metrics(open_page("system_overview", ds.sysadmin))[0] == (
        "MRR", "$259.00")  # 278 - 19: the change shows at once


def test_past_due_mark_active_asks_and_records_the_payment(ds, db):
    """Issue 9: "Mark active" acted in one click and recorded no payment."""
    at = open_page("system_past_due", ds.sysadmin)
    before = snapshot(db)
    at.button(key="past_due_activate_delta").click().run()  # no reference: refused before any question
    assert errors(at) == ["Payment reference is missing."]
    assert not [b for b in at.button if b.key == "past_due_delta_confirm"]
    assert snapshot(db) == before

    at.text_input(key="past_due_reference_delta").set_value("INV-77").run()
    at.button(key="past_due_activate_delta").click().run()
    [question] = [plain(w.value) for w in at.warning]
    assert question == ("Record payment INV-77 for the Starter subscription of Delta <b>bold</b> (delta) "
                        "($19.00 a month) and make it active again?")
    assert _status(db, "delta") == "past_due" and snapshot(db) == before
    at.button(key="past_due_delta_confirm").click().run()
    assert not at.exception and not errors(at)
    assert _status(db, "delta") == "active"
    assert [plain(s.value) for s in at.success] == ["Delta <b>bold</b>: payment INV-77 recorded, subscription active again."]
    assert "No subscription is past due." in [plain(c.value) for c in at.caption]
    paid = fetch(db, "select external_ref, amount from org_billing_history where org_id = 'delta'"
                     " and event_type = 'subscription_payment'")
    assert [tuple(row) for row in paid] == [("INV-77", 0)]
    actions = audit.entries(db, ds.sysadmin, "delta", actions=["subscription.status_changed"]).entries
    assert actions.details.iloc[0] == '{"to": "active", "from": "past_due", "plan": "starter"}'
    assert metrics(open_page("system_overview", ds.sysadmin))[0] == ("MRR", "$278.00")  # past due counted already
    assert ledger.verify(db) == []


def test_past_due_payment_reference_recorded_already_changes_nothing(ds, db):
    subscriptions.record_subscription_payment(db, ds.sysadmin, "delta", "INV-9")
    subscriptions.set_subscription_status(db, ds.sysadmin, "delta", "past_due")  # failed again later
    at = open_page("system_past_due", ds.sysadmin)
    before = snapshot(db)
    at.text_input(key="past_due_reference_delta").set_value("INV-9").run()
    at.button(key="past_due_activate_delta").click().run()
    [said] = [plain(i.value) for i in at.info]
    assert said.startswith("This payment (INV-9) was already recorded on") and said.endswith("nothing changed.")
    assert not at.success and not [b for b in at.button if b.key == "past_due_delta_confirm"]
    assert snapshot(db) == before and _status(db, "delta") == "past_due"
    # a reference that paid a credit order is another payment: refused before any question
    order = orders.create_order(db, ds.alpha_admin, "alpha", credits=1_000)
    orders.record_payment(db, ds.sysadmin, order.id, "PAY-ORDER-1")
    at.text_input(key="past_due_reference_delta").set_value("PAY-ORDER-1").run()
    at.button(key="past_due_activate_delta").click().run()
    assert [e for e in errors(at) if "already paid order" in e]
    assert not [b for b in at.button if b.key == "past_due_delta_confirm"]


def _status(db, org_id: str) -> str:
    return fetch(
        db,
        "select status from organization_subscriptions where org_id = :org_id order by created_at desc limit 1",
        {"org_id": org_id},
    )[0][0]


def _fill_create_form(at: AppTest, **fields: str) -> AppTest:
    values = {
        "Organization name": "", "Organization id": "", "First admin's email": "", "First admin's name": "",
        "First admin's user id (optional)": "",
    } | {key.replace("_", " "): value for key, value in fields.items()}
    for widget in at.text_input:
        if widget.label in values:
            widget.set_value(values[widget.label])
    return at


def test_create_organization_form_opens_it_and_shows_the_password_once(ds, db):
    at = open_page("system_organizations", ds.sysadmin)
    name = 'Acme "Quotes" <b>Inc</b>'
    for widget in at.text_input:
        widget.set_value({
            "Organization name": name, "Organization id": "acme", "First admin's email": "Boss@Acme.io",
            "First admin's name": "Bo <i>Boss</i>",
        }.get(widget.label, ""))
    at.selectbox[-1].set_value("hybrid")
    at.radio[0].set_value("yearly")
    at.button(key="FormSubmitter:create_org-Create organization").click().run()
    assert not at.exception and not errors(at)

    notice = [plain(s.value) for s in at.success]
    assert notice == [
        (f"Organization {name} (acme) created on the Hybrid plan, with Boss@Acme.io as its first admin. "
         "Their one-time password is below: it is shown only this once, pass it on now.")
    ]
    password = at.code[0].value
    assert len(password) == 16
    user = fetch(db, "select id, email, display_name, password_hash from users where id = 'boss@acme.io'")[0]
    assert (user.email, user.display_name) == ("boss@acme.io", "Bo <i>Boss</i>")
    assert auth.password_matches(password, user.password_hash)
    assert fetch(db, "select role from organization_members where org_id = 'acme'")[0][0] == "admin"
    sub = fetch(db, "select plan, status, billing_cycle, price_amount from organization_subscriptions"
                    " where org_id = 'acme'")[0]
    assert tuple(sub) == ("hybrid", "active", "yearly", 1188)
    # the new organization shows at once, the form is empty again
    assert name in _table(at, "member_count").org_name.tolist()
    assert [w.value for w in at.text_input if w.key and w.key.startswith("new_org_")] == [""] * 5
    assert metrics(open_page("system_overview", ds.sysadmin))[0] == ("MRR", "$377.00")

    at.run()
    assert not at.code and not at.success  # shown once only


def test_create_organization_bad_input_changes_nothing(ds, db):
    at = open_page("system_organizations", ds.sysadmin)
    cases = [
        ({"Organization_id": "new-org", "First_admin's_email": "new@example.com"}, "Organization name is missing."),
        ({"Organization_name": "New", "Organization_id": "new org", "First_admin's_email": "new@example.com"},
         "Organization id must be 1 to 128 characters without spaces (got 'new org')."),
        ({"Organization_name": "New", "Organization_id": "alpha", "First_admin's_email": "new@example.com"},
         "Organization id 'alpha' is already taken."),
        ({"Organization_name": "New", "Organization_id": "new-org", "First_admin's_email": "not-an-email"},
         "Email 'not-an-email' is not an email address (expected name@example.com)."),
        ({"Organization_name": "New", "Organization_id": "new-org", "First_admin's_email": "ALPHA-admin@example.com",
          "First_admin's_user_id_(optional)": "someone-new"},
         "Email 'ALPHA-admin@example.com' is already used by another user."),
        ({"Organization_name": "New", "Organization_id": "new-org"}, "Give the first admin's email."),
        ({"Organization_name": "<script>alert(1)</script>", "Organization_id": "new-org",
          "First_admin's_email": "new@example.com", "First_admin's_user_id_(optional)": ds.alpha_admin},
         f"User id '{ds.alpha_admin}' is already taken."),
    ]
    before = snapshot(db)
    for fields, message in cases:
        _fill_create_form(at, **fields)
        at.button(key="FormSubmitter:create_org-Create organization").click().run()
        assert not at.exception
        assert errors(at) == [message], fields
        assert not at.code
    assert snapshot(db) == before
    assert no_html_allowed(at)


# ------------------------------------------------------------ audit log


def test_audit_log_for_a_system_admin_with_filters(ds, db):
    at = open_page("audit_log", ds.sysadmin)
    assert not at.exception and not errors(at)
    everything = audit.entries(db, ds.sysadmin)
    table = _table(at, "action")
    assert len(table) == everything.total > 30
    assert f"Showing 1–{everything.total} of {everything.total} matching entries, newest first." in [
        c.value for c in at.caption]

    at.session_state["org_id"] = "alpha"  # chosen at the top of the page: its entries, unless all are asked for
    at.run()
    table = _table(at, "action")
    assert set(table.org_id) == {"alpha"} and len(table) == 9  # its order: created, then paid

    at.selectbox(key="audit_actor").set_value(ds.alpha_admin).run()
    table = _table(at, "action")
    assert len(table) == 3 and set(table.actor_name) == {"Alice <i>Admin</i>"}

    at.multiselect(key="audit_actions").set_value(["allocation.created"]).run()
    assert _table(at, "action").target_id.tolist() == [ds.alpha_admin, ds.alpha_member]

    today = fetch(db, "select (now() at time zone 'utc')::date")[0][0]
    at.date_input(key="audit_dates").set_value((today, today)).run()
    assert len(_table(at, "action")) == 2
    at.date_input(key="audit_dates").set_value((today.replace(year=today.year - 1),
                                                today.replace(year=today.year - 1))).run()
    assert "No audit entry matches these filters." in [plain(c.value) for c in at.caption]
    assert not at.exception and not errors(at)


def test_audit_log_names_the_operator_for_actions_without_a_user(ds, db):
    organizations.create_user(db, None, "cron-made", "cron-made@example.com", "Made By Cron")
    at = open_page("audit_log", ds.sysadmin)
    table = _table(at, "action")
    by_operator = table[table.actor_id == "—"]
    assert len(by_operator) >= 1
    assert set(by_operator.actor_name) == {audit.OPERATOR}
    assert "None" not in set(table.actor_name.astype(str))


def test_audit_log_for_an_org_admin_shows_only_their_organization(ds, db):
    at = open_page("audit_log", ds.alpha_admin, "alpha")
    assert not at.exception and not errors(at)
    assert "audit_org" not in [s.key for s in at.selectbox]
    table = _table(at, "action")
    assert set(table.org_id) == {"alpha"} and len(table) == 9  # its order: created, then paid
    assert {"Root Admin", "Alice <i>Admin</i>"} == set(table.actor_name)
    assert at.download_button[0].label == "Download all 9 entries (CSV)"  # its CSV is made on the click
    exported = pd.read_csv(io.BytesIO(audit_screen.export_csv(
        Screen(db, ds.alpha_admin, auth.user_roles(db, ds.alpha_admin), "alpha"),
        audit_screen.Filters("alpha", None, (), None, None))), dtype=str)
    assert exported["Organization id"].tolist() == ["alpha"] * 9
    assert no_html_allowed(at)

    at.multiselect(key="audit_actions").set_value(["credits.purchased"]).run()
    assert _table(at, "action").action.tolist() == ["credits: purchased"]


@pytest.mark.parametrize(
    "who, org, message",
    [
        ("alpha_admin", "beta", "User 'alpha-admin' is not an admin of organization 'beta'."),
        ("alpha_member", "alpha", "User 'alpha-member' is not an admin of organization 'alpha'."),
        ("alpha_admin", None, "You belong to no organization: there is no audit log to show."),
    ],
)
def test_audit_log_refuses_what_the_user_may_not_see(ds, who, org, message):
    at = open_page("audit_log", getattr(ds, who), org)
    assert not at.exception
    assert errors(at) == [message]
    assert _nothing_shown(at)


def test_a_user_in_no_organization_and_an_unknown_user(ds, db):
    organizations.create_user(db, None, "loner", "loner@example.com")
    for page in (*SYSTEM_SCREENS, "audit_log"):
        at = open_page(page, "loner")
        assert errors(at) and _nothing_shown(at)
        at = open_page(page, "ghost", "alpha")
        assert errors(at) == ["User 'ghost' does not exist."]  # the screen's context refuses first
        assert _nothing_shown(at)


# ------------------------------------------------------------ month by month, burn and runway


@pytest.fixture
def months(db, db_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    return data.build_months(db)


def _series(spec: dict) -> dict[str, dict[str, float]]:
    """Per trace name: category label (hover data, else x) -> value."""
    series = {}
    for trace in spec["data"]:
        labels = [row[0] for row in trace["customdata"]] if trace.get("customdata") else list(trace["x"])
        series[trace.get("name")] = dict(zip(labels, _numbers(trace["y"]), strict=True))
    return series


def _label(months_ago: int) -> str:
    return f"{data.month_start(months_ago):%Y-%m}"


def test_overview_shows_mrr_movements_churn_and_credits_per_month(months):
    at = open_page("system_overview", months.sysadmin)
    assert not at.exception and not errors(at)

    bars = _series(chart_titled(at, "MRR movements per month"))
    assert set(bars) == {"New", "Reactivation", "Expansion", "Contraction", "Churned"}
    for k, figures in data.MRR_MONTHS.items():
        new, reactivation, expansion, contraction, churned = figures[1:6]
        assert (bars["New"][_label(k)], bars["Reactivation"][_label(k)], bars["Expansion"][_label(k)],
                bars["Contraction"][_label(k)], bars["Churned"][_label(k)]) == (
            new, reactivation, expansion, -contraction, -churned), k
    line = _series(chart_titled(at, "MRR at month end"))[None]
    assert line == {_label(k): data.MRR_MONTHS[k][7] for k in range(11, -1, -1)}

    # the table: the current month first, then back to the first month with any figure
    table = _table(at, "logo_churn_percent")
    assert table.month.tolist() == [_label(k) for k in range(12)]
    assert table.logo_churn_percent.fillna(-1).tolist() == [
        -1 if data.MRR_MONTHS[k][13] is None else float(data.MRR_MONTHS[k][13]) for k in range(12)]
    assert table.net_new_mrr.tolist() == [data.MRR_MONTHS[k][6] for k in range(12)]
    assert table.arr_end.tolist()[0] == 12 * 317
    assert _download(at, "Download MRR movements (CSV)").churned_orgs.tolist() == [
        str(data.MRR_MONTHS[k][12]) for k in range(12)]
    # 24 months: the twelve before the first subscription are empty, and left out
    at.selectbox(key="analytics_months").set_value(24).run()
    assert _table(at, "logo_churn_percent").month.tolist() == [_label(k) for k in range(12)]

    at = open_page("system_credits", months.sysadmin)
    assert not at.exception and not errors(at)
    credit = _series(chart_titled(at, "Credits sold, granted, consumed and expired"))
    assert {kind: credit[kind][_label(1)] for kind in credit} == {
        "Sold": 7_000, "Granted": 0, "Consumed": 0, "Expired": 500}
    assert {kind: credit[kind][_label(0)] for kind in credit} == {
        "Sold": 0, "Granted": 0, "Consumed": 2_100, "Expired": 0}
    revenue = _table(at, "revenue").set_index("month").revenue
    assert (revenue[_label(3)], revenue[_label(1)]) == (10, 7)
    # newest first, from the first month that sold, granted, consumed or expired credits
    assert _table(at, "revenue").month.tolist() == [_label(k) for k in range(4)]

    at = open_page("system_overview", months.sysadmin)
    at.selectbox(key="analytics_months").set_value(6).run()
    assert not at.exception
    assert _table(at, "logo_churn_percent").month.tolist() == [_label(k) for k in range(6)]


def test_overview_shows_burn_rate_runway_and_who_runs_low(months):
    at = open_page("system_credits", months.sysadmin)
    low = _table(at, "burn_per_day")
    assert low.org_name.tolist() == ["Ember"]
    assert (low.remaining_credits[0], low.burn_per_day[0], low.runway_days[0]) == (500, 50, 10)

    at = open_page("system_organizations", months.sysadmin)
    at.selectbox(key="orgs_sort").set_value("runway_days").run()
    orgs = _table(at, "member_count")
    assert orgs.org_id.tolist()[:2] == ["ember", "anvil"]
    anvil = orgs.set_index("org_id").loc["anvil"]
    assert (anvil.remaining_credits, anvil.burn_per_day, anvil.runway_days) == (13_900, 20, 695)
    assert pd.isna(orgs.set_index("org_id").loc["jade", "runway_days"])
    assert not at.exception and not errors(at)
