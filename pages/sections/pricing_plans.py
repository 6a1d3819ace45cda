"""The Pricing screen's Plans tab: the catalogue and its versions; new plan, rename, retire, and a new version of a
plan's terms, which says whom it reaches (from SQL) before it is confirmed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from functools import partial
from typing import Any

import pandas as pd
import streamlit as st

from billing_core import plans
from billing_core.errors import BillingError
from pages import kit
from pages.kit.session import Screen
from pages.sections.pricing_forms import (
    chooser,
    effective_preset,
    moment_text,
    optional,
    typed,
    value,
    when_chosen,
    when_text,
)

Catalogue = dict[str, plans.CatalogueEntry]
REVIEW = "plan_edit_review"  # the edit the "Confirm" under the form would save, as reviewed by SQL


def plans_section(screen: Screen, catalogue: Catalogue) -> None:
    """The catalogue table, its picker and buttons, the retire confirmation and the chosen plan's versions."""
    for key in ("plan_edit", "plan_new", "plan_rename"):
        kit.show_flash(key)
    kit.table(
        catalogue_frame(list(catalogue.values())),
        {
            "code": kit.text_column("Code"),
            "name": kit.text_column("Plan"),
            "price_per_month": kit.text_column("Price per month"),
            "pricing_mode": kit.text_column("Pricing mode"),
            "included_credits": kit.credits_column("Included credits", help="Granted at each period start."),
            "trial": kit.text_column("Trial"),
            "in_force": kit.text_column("Version in force (UTC)"),
            "scheduled": kit.text_column("Next version (UTC)", help="Scheduled: not in force yet."),
            "status": kit.text_column("Status", help="Retired: no new subscriptions or changes to it."),
        },
        key="plans_table",
        empty="No plan yet.",
    )
    st.caption("A change of a plan's terms is a new version with an effective date, now or later, never earlier. "
               "Existing subscriptions move to a new version at their first period start on or after its effective "
               "date; new subscriptions pay the version in force when they start. Past invoices and billing history "
               "never change.")
    chooser("plan", "Plan", {e.code: f"{e.name} ({e.code})" for e in catalogue.values()},
            ("Edit plan", partial(open_plan_edit_dialog, screen)), ("New plan", open_plan_new_dialog),
            more=[("Rename", partial(open_plan_rename_dialog, catalogue), lambda code: True),
                  ("Retire", partial(ask_plan_retire, screen, catalogue), lambda code: not catalogue[code].retired)],
            editable=lambda code: not catalogue[code].retired)
    kit.confirmation("plan_retire")
    picked = value("plan_pick")
    if picked in catalogue and st.toggle("Show the versions of the chosen plan", key="plan_versions"):
        versions_section(screen, catalogue[picked])


def versions_section(screen: Screen, entry: plans.CatalogueEntry) -> None:
    """Every version of one plan, oldest first, each marked replaced, in force or scheduled."""
    kit.table(
        versions_frame(entry, kit.read(screen.db, plans.versions, entry.code)),
        {
            "version": kit.count_column("Version"),
            "price_per_month": kit.text_column("Price per month"),
            "pricing_mode": kit.text_column("Pricing mode"),
            "included_credits": kit.credits_column("Included credits"),
            "trial": kit.text_column("Trial"),
            "effective_at": kit.datetime_column("Effective from (UTC)"),
            "status": kit.text_column("Status"),
            "created_by": kit.text_column("By"),
        },
        key="plan_versions_table",
    )


def trial_text(days: Any) -> str:
    """'14 days', or 'none'."""
    return "none" if days is None or pd.isna(days) else kit.counted(int(days), "day")


def catalogue_frame(entries: Sequence[plans.CatalogueEntry]) -> pd.DataFrame:
    """The catalogue as a table: the version in force, the next one scheduled, whether retired (display only)."""
    frame = pd.DataFrame([asdict(entry) for entry in entries])
    return frame.assign(
        price_per_month=frame.monthly_price.map(kit.fmt_exact_money),
        trial=frame.trial_days.map(trial_text),
        in_force=[f"v{e.version} since {e.effective_at:%Y-%m-%d %H:%M}" for e in entries],
        scheduled=[f"v{e.next_version} from {e.next_effective_at:%Y-%m-%d %H:%M}" if e.next_version else ""
                   for e in entries],
        status=["retired" if e.retired else "offered" for e in entries],
    )


def versions_frame(entry: plans.CatalogueEntry, versions: Sequence[plans.PlanVersion]) -> pd.DataFrame:
    """The versions of `entry`'s plan as a table, each marked replaced, in force or scheduled (display only)."""
    frame = pd.DataFrame([asdict(v) for v in versions])
    return frame.assign(
        price_per_month=frame.monthly_price.map(kit.fmt_exact_money),
        trial=frame.trial_days.map(trial_text),
        created_by=frame.created_by.fillna("—"),  # the seed versions: made by a migration
        status=["in force" if v.version == entry.version else "scheduled" if v.version > entry.version
                else "replaced" for v in versions],
    )


def plan_name(catalogue: Catalogue, code: str | None) -> str:
    """'Platform (platform)'."""
    entry = catalogue.get(code)
    return f"{entry.name} ({code})" if entry else str(code)


def trial_days(key: str) -> int | None:
    """The trial field's whole days (None: left empty)."""
    days = value(key)
    return None if days is None else int(days)


def terms_inputs(key: str) -> None:
    """Price, pricing mode, included credits and trial length: the versioned terms of a plan."""
    left, right = st.columns(2)
    left.text_input("Price per month (USD)", key=f"{key}_price", placeholder="50.00")
    right.selectbox("Credit pricing mode", plans.PRICING_MODES, key=f"{key}_mode",
                    help="markup: managed keys at provider cost x markup; passthrough: own keys (BYOK) only, "
                         "platform fee per call; mixed: both.")
    left, right = st.columns(2)
    left.text_input("Included credits per month", key=f"{key}_credits", placeholder="25,000",
                    help="Granted to the pool at each period start; 0 for none.")
    right.number_input("Trial days", key=f"{key}_trial", min_value=0, max_value=9_999, step=1, value=None,
                       help="0: no trial.")


# ------------------------------------------------------------ a new version of a plan's terms


def open_plan_edit_dialog(screen: Screen, code: str | None) -> None:
    """"Edit plan": a new version of the chosen plan, its fields preset with the latest version's terms."""
    latest = kit.read(screen.db, plans.versions, code)[-1]
    values = {
        "plan_edit_price": typed(latest.monthly_price),
        "plan_edit_mode": latest.pricing_mode,
        "plan_edit_credits": typed(latest.included_credits),
        "plan_edit_trial": latest.trial_days or 0,
        **effective_preset("plan_edit"),
        REVIEW: None,
    }
    kit.open_dialog("plan_edit", {"code": code, "latest": latest}, values)


def plan_edit_body(screen: Screen, catalogue: Catalogue, context: dict[str, Any]) -> None:
    """The new version's terms and when; "Review" asks SQL what it would save and whom it reaches, "Confirm"
    saves exactly that."""
    code, latest = context["code"], context["latest"]
    st.markdown(kit.md_text(f"{plan_name(catalogue, code)}: the fields show the terms of its latest version, "
                            f"{latest.version} (effective {latest.effective_at:%Y-%m-%d %H:%M} UTC). "
                            f"Saving adds version {latest.version + 1}."))
    with st.form("plan_edit_form", border=False):
        terms_inputs("plan_edit")
        kit.effective_input("plan_edit")
        reviewed = st.form_submit_button("Review the change", type="primary")
    st.caption("An empty field keeps the latest version's term; trial days 0 removes the trial. Subscriptions on "
               "the plan move to the new version at their first period start on or after its effective date; "
               "what they paid before never changes.")
    if reviewed:
        st.session_state[REVIEW] = None
        if not when_chosen("plan_edit"):
            return
        terms = {"monthly_price": optional("plan_edit_price"), "pricing_mode": value("plan_edit_mode"),
                 "included_credits": optional("plan_edit_credits"), "trial_days": trial_days("plan_edit_trial"),
                 "effective_at": kit.effective_moment("plan_edit")}
        try:  # the same check as the save: nothing is asked that the database would refuse
            preview = plans.preview_edit(screen.db, screen.actor_id, code, **terms)
        except BillingError as exc:
            kit.show_error(exc)
            return
        st.session_state[REVIEW] = {"terms": terms, "preview": preview}
    review = value(REVIEW)
    if review is None:
        return
    st.warning(kit.md_text(edit_question(plan_name(catalogue, code), latest, review["preview"],
                                         review["terms"]["effective_at"])))
    if st.button("Confirm", key="plan_edit_confirm", type="primary"):
        at = review["terms"]["effective_at"]
        kit.save_from_dialog(
            "plan_edit", plans.edit_plan, screen.db, screen.actor_id, code, **review["terms"],
            success=lambda version: f"{plan_name(catalogue, code)}: version {version} takes effect {when_text(at)}.",
        )


def edit_question(name: str, latest: plans.PlanVersion, preview: plans.EditPreview, at: datetime | None) -> str:
    """"Add version 2 of Platform (platform) now: price $50.00 -> $55.50 a month? It reaches 3 organizations..."."""
    changes = [
        f"{what} {shown(before)} → {shown(after)}"
        for what, before, after, shown in (
            ("price a month", latest.monthly_price, preview.monthly_price, kit.fmt_exact_money),
            ("credit pricing", latest.pricing_mode, preview.pricing_mode, str),
            ("included credits a month", latest.included_credits, preview.included_credits, kit.fmt_credits),
            ("trial", latest.trial_days, preview.trial_days, trial_text),
        )
        if before != after
    ]
    question = f"Add version {preview.version} of {name} {when_text(at)}: {'; '.join(changes)}?"
    meets = "at its next period start" if at is None else f"at its first period start on or after {moment_text(at)}"
    if preview.subscriptions == 0:
        reach = "No organization is on this plan now: only subscriptions that start on it from then on pay it."
    else:
        reach = (f"It reaches {kit.counted(preview.subscriptions, 'organization')} subscribed to it now: each "
                 f"subscription moves to version {preview.version} {meets}")
        if preview.leaving:
            reach += f" ({preview.leaving:,} of them set to leave the plan at their period end)"
        reach += "."
    if preview.arriving:
        reach += (f" {kit.counted(preview.arriving, 'organization')} scheduled to change to this plan "
                  f"{'pays' if preview.arriving == 1 else 'pay'} it after the change.")
    return f"{question} {reach} Past invoices never change."


# ------------------------------------------------------------ new plan, rename, retire


def open_plan_new_dialog(_: None) -> None:
    """"New plan": empty fields."""
    values = {"plan_new_code": "", "plan_new_name": "", "plan_new_description": "", "plan_new_price": "",
              "plan_new_mode": "markup", "plan_new_credits": "0", "plan_new_trial": 0}
    kit.open_dialog("plan_new", {}, values)


def plan_new_body(screen: Screen, context: dict[str, Any]) -> None:
    """A plan's code, name, description and first terms, offered at once."""
    with st.form("plan_new_form", border=False):
        left, right = st.columns(2)
        left.text_input("Code", key="plan_new_code", placeholder="team", help="Lower-case letters, digits and _; "
                        "it never changes.")
        right.text_input("Name", key="plan_new_name", placeholder="Team", max_chars=100)
        st.text_input("Description (optional)", key="plan_new_description", max_chars=500)
        terms_inputs("plan_new")
        saved = st.form_submit_button("Create plan", type="primary")
    st.caption("The plan is offered at once, as its version 1.")
    if saved:
        code = (value("plan_new_code") or "").strip()
        kit.save_from_dialog(
            "plan_new", plans.create_plan, screen.db, screen.actor_id, code, value("plan_new_name") or "",
            value("plan_new_price") or "", value("plan_new_mode"), included_credits=value("plan_new_credits") or "",
            trial_days=trial_days("plan_new_trial") or None, description=value("plan_new_description") or "",
            success=lambda _: f"Created plan {code}.",
        )


def open_plan_rename_dialog(catalogue: Catalogue, code: str | None) -> None:
    """"Rename": the plan's name and description preset."""
    entry = catalogue[code]
    kit.open_dialog("plan_rename", {"code": code},
                    {"plan_rename_name": entry.name, "plan_rename_description": entry.description})


def plan_rename_body(screen: Screen, context: dict[str, Any]) -> None:
    """A plan's name and description, which are not versioned."""
    code = context["code"]
    with st.form("plan_rename_form", border=False):
        st.text_input("Name", key="plan_rename_name", max_chars=100)
        st.text_input("Description", key="plan_rename_description", max_chars=500)
        saved = st.form_submit_button("Save name", type="primary")
    st.caption("Name and description describe the plan; they are not versioned and change everywhere at once.")
    if saved:
        kit.save_from_dialog(
            "plan_rename", plans.rename_plan, screen.db, screen.actor_id, code, value("plan_rename_name") or "",
            description=value("plan_rename_description") or "",
            success=f"Renamed plan {code}.",
        )


def ask_plan_retire(screen: Screen, catalogue: Catalogue, code: str | None) -> None:
    """"Retire": held until confirmed under the table."""
    kit.ask_confirmation(
        "plan_retire",
        f"Retire {plan_name(catalogue, code)}? Nobody can subscribe or change to it any more, and its terms can no "
        f"longer change; organizations on it keep it. This cannot be undone.",
        lambda: plans.retire_plan(screen.db, screen.actor_id, code),
        success=f"Retired {plan_name(catalogue, code)}.",
    )


def plan_dialogs(screen: Screen, catalogue: Catalogue) -> None:
    """The Plans tab's dialogs (one open at a time)."""
    kit.dialog("plan_edit", "Edit plan: new version", partial(plan_edit_body, screen, catalogue))
    kit.dialog("plan_new", "New plan", partial(plan_new_body, screen))
    kit.dialog("plan_rename", "Rename plan", partial(plan_rename_body, screen))
