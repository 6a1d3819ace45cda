"""Pricing (system admins): the plan catalogue and its versions, model prices, fixed-price services, platform rules
and per-organization overrides, BYOK rules, credit packages, each edited in a dialog; a cost calculator that prices
one event under every plan.

Every figure comes from billing_core.plans and billing_core.pricing (the rules live in SQL); each save is one stored
function call that validates its input and leaves an audit row. Reads are cached briefly and cleared by every save.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pandas as pd
import streamlit as st

import pages
from billing_core import organizations, plans, pricing
from billing_core.errors import BillingError
from billing_core.pricing import Usage
from pages import kit

if __name__ == "__main__":  # opened by its URL in Streamlit's old pages/ mode: the app with its login instead
    pages.run_app()
    st.stop()

st.title("Pricing")

actor_id = kit.require_actor()
db = kit.engine()

try:
    prices = kit.read(db, pricing.model_prices, actor_id)  # system admins only: everyone else stops here
except BillingError as exc:
    kit.refuse(exc)

services = kit.read(db, pricing.service_prices, actor_id)
rules = kit.read(db, pricing.platform_rules, actor_id)
overrides = kit.read(db, pricing.org_overrides, actor_id)
packages = kit.read(db, pricing.credit_packages)
orgs = kit.read(db, organizations.organizations, actor_id)
org_labels = dict(zip(orgs.org_id, orgs.name + " (" + orgs.org_id + ")", strict=True))
rule = rules[rules.in_force].iloc[0]  # the seed rule is in force from 2024 on: there always is one
catalogue = kit.read(db, plans.catalogue)
plan_by_code = {entry.code: entry for entry in catalogue}


def _tomorrow() -> dict[str, Any]:
    """A chosen effective time starts at tomorrow 00:00 UTC (the form still defaults to now)."""
    return {"day": (datetime.now(UTC) + timedelta(days=1)).date(), "moment": time(0, 0)}


def _text(value: Any) -> str:
    return kit.plain_number(value)


def _state(key: str) -> Any:
    return st.session_state.get(key)


def _optional(key: str) -> str | None:
    """A text field's content, None when left empty (the figure then follows its default)."""
    text = (_state(key) or "").strip()
    return text or None


def _available(flag: bool) -> str:
    return "yes" if flag else "withdrawn"


# ------------------------------------------------------------ pickers


Action = tuple[str, Callable[[Any], None]]


def chooser(key: str, label: str, options: dict[str, str], edit: Action, add: Action, *,
            more: Sequence[tuple[str, Callable[[Any], None], Callable[[Any], bool]]] = (),
            editable: Callable[[Any], bool] = lambda _: True) -> None:
    """A picker of `options` (value -> label) with an edit button for the picked one (when `editable`) and an add
    button; `more` adds buttons (label, action on the picked value, whether it applies to it) between them."""
    pick, *cols = st.columns([3, *[1] * (2 + len(more))], vertical_alignment="bottom")
    picked = pick.selectbox(label, list(options), key=f"{key}_pick", format_func=lambda value: options.get(value, value))
    actions = [(edit[0], edit[1], editable), *more]
    for n, (col, (text, action, applies)) in enumerate(zip(cols, actions, strict=False)):
        col.button(text, key=f"{key}_edit" if n == 0 else f"{key}_action{n}",
                   on_click=lambda act=action: act(_state(f"{key}_pick")),
                   disabled=picked is None or not applies(picked))
    cols[-1].button(add[0], key=f"{key}_add", on_click=add[1], args=(None,))


# ------------------------------------------------------------ plans


TRIAL_HELP = "0: no trial."


def _when(moment: datetime | None) -> str:
    return "now" if moment is None else f"on {moment:%Y-%m-%d %H:%M} UTC"


def _trial_text(days: Any) -> str:
    return "none" if days is None or pd.isna(days) else f"{int(days)} days"


def catalogue_frame(entries: Sequence[plans.CatalogueEntry]) -> pd.DataFrame:
    """The catalogue as a table: the version in force, the next one scheduled, whether retired (display only)."""
    frame = pd.DataFrame([asdict(entry) for entry in entries])
    return frame.assign(
        price_per_month=frame.monthly_price.map(kit.fmt_exact_money),
        trial=frame.trial_days.map(_trial_text),
        in_force=[f"v{e.version} since {e.effective_at:%Y-%m-%d %H:%M}" for e in entries],
        scheduled=[f"v{e.next_version} from {e.next_effective_at:%Y-%m-%d %H:%M}" if e.next_version else ""
                   for e in entries],
        status=["retired" if e.retired else "offered" for e in entries],
    )


def versions_frame(code: str) -> pd.DataFrame:
    """Every version of plan `code`, oldest first, each marked past, in force or scheduled (display only)."""
    entry = plan_by_code[code]
    rows = kit.read(db, plans.versions, code)
    frame = pd.DataFrame([asdict(v) for v in rows])
    return frame.assign(
        price_per_month=frame.monthly_price.map(kit.fmt_exact_money),
        trial=frame.trial_days.map(_trial_text),
        status=["in force" if v.version == entry.version else "scheduled" if v.version > entry.version else "replaced"
                for v in rows],
    )


def _plan_name(code: str | None) -> str:
    entry = plan_by_code.get(code)
    return f"{entry.name} ({code})" if entry else str(code)


def _trial(key: str) -> int | None:
    value = _state(key)
    return None if value is None else int(value)


def _terms_inputs(key: str) -> None:
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
                       help=TRIAL_HELP)


def open_plan_edit_dialog(code: str | None) -> None:
    """"Edit plan": a new version of the chosen plan, its fields preset with the latest version's terms."""
    latest = kit.read(db, plans.versions, code)[-1]
    values = {
        "pe_price": _text(latest.monthly_price),
        "pe_mode": latest.pricing_mode,
        "pe_credits": _text(latest.included_credits),
        "pe_trial": latest.trial_days or 0,
        **kit.preset_effective("pe", **_tomorrow()),
    }
    kit.open_dialog("plan_edit", {"code": code, "latest": latest.version, "since": latest.effective_at}, values)


def plan_edit_body(context: dict[str, Any]) -> None:
    code = context["code"]
    st.markdown(kit.md_text(f"{_plan_name(code)}: the fields show the terms of its latest version, "
                            f"{context['latest']} (effective {context['since']:%Y-%m-%d %H:%M} UTC). "
                            f"Saving adds version {context['latest'] + 1}."))
    with st.form("plan_edit_form", border=False):
        _terms_inputs("pe")
        kit.effective_input("pe")
        saved = st.form_submit_button("Save new version", type="primary")
    st.caption("An empty field keeps the latest version's term; trial days 0 removes the trial. Subscriptions on "
               "the plan move to the new version at their first period start on or after its effective date; "
               "what they paid before never changes.")
    if saved:
        at = kit.effective_moment("pe")
        kit.save_from_dialog(
            "plan_edit", plans.edit_plan, db, actor_id, code,
            monthly_price=_optional("pe_price"), pricing_mode=_state("pe_mode"),
            included_credits=_optional("pe_credits"), trial_days=_trial("pe_trial"), effective_at=at,
            success=lambda version: f"{_plan_name(code)}: version {version} takes effect {_when(at)}.",
        )


def open_plan_new_dialog(_: None) -> None:
    values = {"pn_code": "", "pn_name": "", "pn_description": "", "pn_price": "", "pn_mode": "markup",
              "pn_credits": "0", "pn_trial": 0}
    kit.open_dialog("plan_new", {}, values)


def plan_new_body(context: dict[str, Any]) -> None:
    with st.form("plan_new_form", border=False):
        left, right = st.columns(2)
        left.text_input("Code", key="pn_code", placeholder="team", help="Lower-case letters, digits and _; "
                        "it never changes.")
        right.text_input("Name", key="pn_name", placeholder="Team", max_chars=100)
        st.text_input("Description (optional)", key="pn_description", max_chars=500)
        _terms_inputs("pn")
        saved = st.form_submit_button("Create plan", type="primary")
    st.caption("The plan is offered at once, as its version 1.")
    if saved:
        code = (_state("pn_code") or "").strip()
        kit.save_from_dialog(
            "plan_new", plans.create_plan, db, actor_id, code, _state("pn_name") or "", _state("pn_price") or "",
            _state("pn_mode"), included_credits=_state("pn_credits") or "", trial_days=_trial("pn_trial") or None,
            description=_state("pn_description") or "",
            success=lambda _: f"Created plan {code}.",
        )


def open_plan_rename_dialog(code: str | None) -> None:
    entry = plan_by_code[code]
    kit.open_dialog("plan_rename", {"code": code}, {"prn_name": entry.name, "prn_description": entry.description})


def plan_rename_body(context: dict[str, Any]) -> None:
    code = context["code"]
    with st.form("plan_rename_form", border=False):
        st.text_input("Name", key="prn_name", max_chars=100)
        st.text_input("Description", key="prn_description", max_chars=500)
        saved = st.form_submit_button("Save name", type="primary")
    st.caption("Name and description describe the plan; they are not versioned and change everywhere at once.")
    if saved:
        kit.save_from_dialog(
            "plan_rename", plans.rename_plan, db, actor_id, code, _state("prn_name") or "",
            description=_state("prn_description") or "",
            success=f"Renamed plan {code}.",
        )


def ask_plan_retire(code: str | None) -> None:
    """"Retire": held until confirmed under the table."""
    kit.ask_confirmation(
        "plan_retire",
        f"Retire {_plan_name(code)}? Nobody can subscribe or change to it any more, and its terms can no longer "
        f"change; organizations on it keep it. This cannot be undone.",
        lambda: plans.retire_plan(db, actor_id, code),
        success=f"Retired {_plan_name(code)}.",
    )


# ------------------------------------------------------------ model prices


RATE_COLUMNS = ("usd_per_1k_input", "usd_per_1k_output", "usd_per_image", "usd_per_request")


def _rates_as_text(frame):
    """Rates as exact dollars (a provider's rate can have 8 decimals: $0.000075), display only."""
    return frame.assign(**{c: frame[c].map(kit.fmt_exact_money) for c in RATE_COLUMNS},
                        is_available=frame.is_available.map(_available))


def open_model_dialog(model: str | None) -> None:
    """"Edit price" (the chosen model's figures preset) or "Add model" (empty fields)."""
    row = prices.set_index("model").loc[model] if model else None
    values = {
        "mp_provider": "" if row is None else row.provider,
        "mp_model": model or "",
        **{f"mp_{c}": ("0" if c in ("usd_per_image", "usd_per_request") else "") if row is None else _text(row[c])
           for c in RATE_COLUMNS},
        "mp_available": True if row is None else bool(row.is_available),
        "mp_note": "",
        **kit.preset_effective("mp", **_tomorrow()),
    }
    kit.open_dialog("model_price", {"model": model}, values)


def model_price_body(context: dict[str, Any]) -> None:
    editing = context["model"]
    with st.form("model_price_form", border=False):
        left, right = st.columns(2)
        left.text_input("Provider", key="mp_provider", placeholder="openai", disabled=bool(editing))
        right.text_input("Model", key="mp_model", placeholder="gpt-4o", disabled=bool(editing))
        left, right = st.columns(2)
        left.text_input("$ per 1,000 input tokens", key="mp_usd_per_1k_input", placeholder="0.0025")
        right.text_input("$ per 1,000 output tokens", key="mp_usd_per_1k_output", placeholder="0.01")
        left, right = st.columns(2)
        left.text_input("$ per image", key="mp_usd_per_image")
        right.text_input("$ per request", key="mp_usd_per_request")
        st.checkbox("Available (unticked: the model is withdrawn from then on)", key="mp_available")
        kit.effective_input("mp")
        st.text_input("Note (optional)", key="mp_note", max_chars=500)
        saved = st.form_submit_button("Save price", type="primary")
    st.caption("What the provider charges us, in dollars. Prices already charged are never rewritten: "
               "a change is a new row from its effective time on.")
    if saved:
        provider, model = (_state("mp_provider") or "").strip(), (_state("mp_model") or "").strip()
        kit.save_from_dialog(
            "model_price", pricing.set_model_price, db, actor_id, provider, model,
            _state("mp_usd_per_1k_input"), _state("mp_usd_per_1k_output"),
            usd_per_image=_state("mp_usd_per_image"), usd_per_request=_state("mp_usd_per_request"),
            effective_from=kit.effective_moment("mp"), available=bool(_state("mp_available")),
            note=_optional("mp_note"),
            success=f"Saved the price of {model}.",
        )


# ------------------------------------------------------------ fixed-price services


def open_service_dialog(service: str | None) -> None:
    row = services.set_index("service_type").loc[service] if service else None
    values = {
        "sp_service": service or "",
        "sp_credits": "" if row is None else _text(row.credits),
        "sp_available": True if row is None else bool(row.is_available),
        "sp_note": "",
        **kit.preset_effective("sp", **_tomorrow()),
    }
    kit.open_dialog("service_price", {"service": service}, values)


def service_price_body(context: dict[str, Any]) -> None:
    with st.form("service_price_form", border=False):
        st.text_input("Service type", key="sp_service", placeholder="company_enrichment",
                      disabled=bool(context["service"]))
        st.text_input("Credits per call", key="sp_credits", placeholder="50",
                      help="1 credit = $0.001; 0 makes the service free.")
        st.checkbox("Available (unticked: the service is withdrawn from then on)", key="sp_available")
        kit.effective_input("sp")
        st.text_input("Note (optional)", key="sp_note", max_chars=500)
        saved = st.form_submit_button("Save service price", type="primary")
    if saved:
        service = (_state("sp_service") or "").strip()
        kit.save_from_dialog(
            "service_price", pricing.set_service_price, db, actor_id, service, _state("sp_credits"),
            effective_from=kit.effective_moment("sp"), available=bool(_state("sp_available")),
            note=_optional("sp_note"),
            success=f"Saved the price of {service}.",
        )


# ------------------------------------------------------------ platform rules and overrides


def open_rules_dialog() -> None:
    values = {
        "pr_markup": _text(rule.markup),
        "pr_fee": _text(rule.byok_fee_credits),
        "pr_ttl": int(rule.hold_ttl_seconds),
        "pr_note": "",
        **kit.preset_effective("pr", **_tomorrow()),
    }
    kit.open_dialog("platform_rules", {}, values)


def rules_body(context: dict[str, Any]) -> None:
    with st.form("platform_rules_form", border=False):
        st.text_input("Markup on provider cost (managed keys)", key="pr_markup",
                      help="1.5 charges provider cost x 1.5.")
        st.text_input("BYOK platform fee per call (credits)", key="pr_fee", help="1 credit = $0.001.")
        st.number_input("Hold lifetime (seconds)", key="pr_ttl", min_value=0, max_value=2_147_483_647, step=1,
                        help="How long reserved credits stay held when the caller names no time (at most 7 days).")
        kit.effective_input("pr")
        st.text_input("Note (optional)", key="pr_note", max_chars=500)
        saved = st.form_submit_button("Save platform rules", type="primary")
    if saved:
        kit.save_from_dialog(
            "platform_rules", pricing.set_platform_rules, db, actor_id,
            markup=_state("pr_markup"), byok_fee_credits=_state("pr_fee"), hold_ttl_seconds=_state("pr_ttl"),
            effective_from=kit.effective_moment("pr"), note=_optional("pr_note"),
            success="Saved the platform rules.",
        )


def open_override_dialog() -> None:
    values = {"ov_org": None, "ov_markup": "", "ov_fee": "", "ov_note": "", **kit.preset_effective("ov", **_tomorrow())}
    kit.open_dialog("org_override", {}, values)


def override_body(context: dict[str, Any]) -> None:
    with st.form("org_override_form", border=False):
        st.selectbox("Organization", list(org_labels), key="ov_org", index=None,
                     format_func=lambda org_id: org_labels.get(org_id, org_id), placeholder="Choose an organization")
        st.text_input("Markup (empty: the platform's)", key="ov_markup", placeholder=_text(rule.markup))
        st.text_input("BYOK fee per call in credits (empty: the platform's)", key="ov_fee",
                      placeholder=_text(rule.byok_fee_credits))
        kit.effective_input("ov")
        st.text_input("Note (optional)", key="ov_note", max_chars=500)
        saved = st.form_submit_button("Save override", type="primary")
    st.caption("Both empty: the organization follows the platform's rules again from the effective time on.")
    if saved:
        org_id = _state("ov_org")
        if org_id is None:
            kit.show_error("Choose an organization.")
            return
        kit.save_from_dialog(
            "org_override", pricing.set_org_override, db, actor_id, org_id,
            markup=_optional("ov_markup"), byok_fee_credits=_optional("ov_fee"),
            effective_from=kit.effective_moment("ov"), note=_optional("ov_note"),
            success=f"Saved the pricing override of {org_labels.get(org_id, org_id)}.",
        )


# ------------------------------------------------------------ credit packages


def open_package_dialog(code: str | None) -> None:
    row = packages.set_index("code").loc[code] if code else None
    values = {
        "pk_code": code or "",
        "pk_name": "" if row is None else row["name"],
        "pk_credits": "" if row is None else _text(row.credits),
        "pk_bonus": "0" if row is None else _text(row.bonus_credits),
        "pk_price": "" if row is None else _text(row.price),
        "pk_active": True if row is None else bool(row.is_active),
        "pk_sort": 0 if row is None else int(row.sort_order),
    }
    kit.open_dialog("package", {"code": code}, values)


def package_body(context: dict[str, Any]) -> None:
    with st.form("package_form", border=False):
        left, right = st.columns(2)
        left.text_input("Code", key="pk_code", placeholder="growth_50k", disabled=bool(context["code"]))
        right.text_input("Name", key="pk_name", placeholder="Growth 50K", max_chars=100)
        left, right = st.columns(2)
        left.text_input("Credits", key="pk_credits", placeholder="50,000")
        right.text_input("Bonus credits", key="pk_bonus", placeholder="0")
        left, right = st.columns(2)
        left.text_input("Price (USD)", key="pk_price", placeholder="50.00")
        right.number_input("Sort order", key="pk_sort", min_value=-2_147_483_648, max_value=2_147_483_647, step=1)
        st.checkbox("On sale", key="pk_active")
        saved = st.form_submit_button("Save package", type="primary")
    st.caption("Past purchases keep what they bought and paid (billing history); the audit log keeps "
               "the figures before and after each edit.")
    if saved:
        code = (_state("pk_code") or "").strip()
        kit.save_from_dialog(
            "package", pricing.save_package, db, actor_id, code, _state("pk_name") or "",
            _state("pk_credits"), _state("pk_bonus"), _state("pk_price"),
            active=bool(_state("pk_active")), sort_order=int(_state("pk_sort") or 0),
            success=lambda created: f"{'Created' if created else 'Saved'} package {code}.",
        )


# ------------------------------------------------------------ the calculator's explanation


def explanation_lines(explained: dict[str, Any]) -> list[str]:
    """The engine's explanation of one price, as sentences (its own figures only: nothing is computed here)."""
    n, money, usage = kit.fmt_credits, kit.fmt_exact_money, explained["usage"]
    if explained["method"] == "fixed_price":
        return [
            (f"{explained['service_type']} is a fixed-price service: {n(explained['credits_per_call'])} credits per "
             f"call × {n(usage['requests'])} requests = {n(explained['unrounded_credits'])} credits."),
            f"Rounded {explained['rounding']}: {n(explained['credits'])} credits = {money(explained['dollars'])}.",
        ]
    rates = explained["rates_usd"]
    parts = [
        f"{n(usage[count])} {what} × {money(rates[rate])}{per}"
        for count, what, rate, per in (
            ("input_tokens", "input tokens", "per_1k_input", " per 1,000"),
            ("output_tokens", "output tokens", "per_1k_output", " per 1,000"),
            ("images", "images", "per_image", ""),
            ("requests", "requests", "per_request", ""),
        )
        if usage[count] and rates[rate]
    ]
    since = str(explained["price_effective_from"])[:16].replace("T", " ")
    lines = [
        (f"{explained['model']} ({explained['provider']}), rates from {since} UTC: "
         f"{' + '.join(parts) or 'nothing billable'} = provider cost {money(explained['provider_cost_usd'])}.")
    ]
    if explained["method"] == "byok_fee":
        lines.append(
            f"Own key (BYOK): the provider bills that cost to the customer; the platform fee is "
            f"{n(explained['platform_fee_credits'])} credits per request ({explained['fee_source']}) × "
            f"{n(usage['requests'])} requests = {n(explained['unrounded_credits'])} credits."
        )
    else:
        lines.append(
            f"Managed keys: {money(explained['provider_cost_usd'])} × {n(explained['credits_per_usd'])} credits per "
            f"dollar = {n(explained['provider_cost_credits'])} credits, × markup {n(explained['markup'])} "
            f"({explained['markup_source']}) = {n(explained['unrounded_credits'])} credits."
        )
    lines.append(f"Rounded {explained['rounding']}: {n(explained['credits'])} credits = {money(explained['dollars'])}.")
    return lines


# ------------------------------------------------------------ the page
(plans_tab, model_tab, service_tab, rules_tab, byok_tab, package_tab, calculator_tab) = st.tabs(
    ["Plans", "Model prices", "Fixed-price services", "Platform rules", "BYOK rules", "Credit packages",
     "Cost calculator"]
)

with plans_tab:
    for key in ("plan_edit", "plan_new", "plan_rename"):
        kit.show_flash(key)
    kit.table(
        catalogue_frame(catalogue),
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
    chooser("plan", "Plan", {e.code: f"{e.name} ({e.code})" for e in catalogue},
            ("Edit plan", open_plan_edit_dialog), ("New plan", open_plan_new_dialog),
            more=[("Rename", open_plan_rename_dialog, lambda code: True),
                  ("Retire", ask_plan_retire, lambda code: not plan_by_code[code].retired)],
            editable=lambda code: not plan_by_code[code].retired)
    kit.confirmation("plan_retire")
    picked = _state("plan_pick")
    if picked in plan_by_code and st.toggle("Show the versions of the chosen plan", key="plan_versions"):
        kit.table(
            versions_frame(picked),
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

with model_tab:
    kit.show_flash("model_price")
    history = st.toggle("Show history (every price row, scheduled ones too)", key="mp_history")
    shown = kit.read(db, pricing.model_prices, actor_id, history=True) if history else prices
    kit.table(
        _rates_as_text(shown),
        {
            "provider": kit.text_column("Provider"),
            "model": kit.text_column("Model"),
            "usd_per_1k_input": kit.text_column("$ per 1K input"),
            "usd_per_1k_output": kit.text_column("$ per 1K output"),
            "usd_per_image": kit.text_column("$ per image"),
            "usd_per_request": kit.text_column("$ per request"),
            "effective_from": kit.datetime_column("Effective from (UTC)"),
            "is_available": kit.text_column("Available"),
            "note": kit.text_column("Note"),
        },
        key="model_prices_table",
        empty="No model has a price yet.",
    )
    chooser("mp", "Model", dict(zip(prices.model, prices.model, strict=True)),
            ("Edit model price", open_model_dialog), ("Add model", open_model_dialog))

with service_tab:
    kit.show_flash("service_price")
    service_history = st.toggle("Show history", key="sp_history")
    shown = kit.read(db, pricing.service_prices, actor_id, history=True) if service_history else services
    kit.table(
        shown.assign(is_available=shown.is_available.map(_available)),
        {
            "service_type": kit.text_column("Service"),
            "credits": kit.credits_column("Credits per call"),
            "effective_from": kit.datetime_column("Effective from (UTC)"),
            "is_available": kit.text_column("Available"),
            "note": kit.text_column("Note"),
        },
        key="service_prices_table",
        empty="No fixed-price service yet.",
    )
    st.caption("A fixed-price service costs its credits per call whatever model or key runs behind it; "
               "any other service type is priced from its model's provider cost.")
    chooser("sp", "Service", dict(zip(services.service_type, services.service_type, strict=True)),
            ("Edit service price", open_service_dialog), ("Add service", open_service_dialog))

with rules_tab:
    kit.show_flash("platform_rules")
    markup_col, fee_col, ttl_col = st.columns(3)
    with markup_col:
        kit.metric_card("Markup (managed keys)", f"× {_text(rule.markup)}", "text",
                        help="Provider cost x markup, in credits (1,000 credits per dollar).")
    with fee_col:
        kit.metric_card("BYOK fee per call (credits)", kit.fmt_credits(rule.byok_fee_credits), "text",
                        help="Charged per request on the customer's own key, instead of markup (1 credit = $0.001).")
    with ttl_col:
        kit.metric_card("Hold lifetime", f"{int(rule.hold_ttl_seconds):,} s", "text")
    st.button("Edit platform rules", key="pr_edit", on_click=open_rules_dialog)
    st.markdown("**History of platform rules**")
    kit.table(
        rules.assign(in_force=rules.in_force.map(lambda now: "in force" if now else "")),
        {
            "effective_from": kit.datetime_column("Effective from (UTC)"),
            "markup": kit.credits_column("Markup"),
            "byok_fee_credits": kit.credits_column("BYOK fee (credits)"),
            "hold_ttl_seconds": kit.count_column("Hold lifetime (s)"),
            "in_force": kit.text_column("Status"),
            "note": kit.text_column("Note"),
            "created_by": kit.text_column("By"),
        },
        key="platform_rules_table",
    )
    st.markdown("**Per-organization overrides**")
    kit.show_flash("org_override")
    kit.table(
        overrides,
        {
            "org_name": kit.text_column("Organization"),
            "org_id": kit.text_column("Id"),
            "effective_from": kit.datetime_column("Effective from (UTC)"),
            "markup": kit.credits_column("Markup", help="Empty: the platform's."),
            "byok_fee_credits": kit.credits_column("BYOK fee (credits)", help="Empty: the platform's."),
            "note": kit.text_column("Note"),
            "created_by": kit.text_column("By"),
        },
        key="org_overrides_table",
        empty="No organization has its own pricing: all follow the platform rules.",
    )
    st.button("Set an organization's override", key="ov_edit", on_click=open_override_dialog, disabled=not org_labels)

with byok_tab:
    st.markdown(kit.md_text(
        f"A call on the customer's own provider key (BYOK) is billed by the provider to the customer directly: "
        f"the platform charges no markup, only its fee of {kit.fmt_credits(rule.byok_fee_credits)} credits per "
        f"request (1 credit = $0.001). A call on managed keys costs the provider cost × {_text(rule.markup)} in "
        f"credits. Organizations with an override pay their own markup or fee (Platform rules tab). Which calls a "
        f"plan allows follows its pricing mode:"
    ))
    model_names = prices[prices.is_available].model.tolist()
    if not model_names:
        st.caption("No model is available: add one on the Model prices tab to see what each plan allows.")
    else:
        probe = model_names[0]
        managed = kit.read(db, pricing.calculator, actor_id, Usage("llm", probe))
        own_key = kit.read(db, pricing.calculator, actor_id, Usage("llm", probe, byok=True))
        modes = managed[["plan_name", "pricing_mode", "monthly_price"]].assign(
            managed=managed.allowed.map(lambda ok: "allowed" if ok else "refused"),
            byok=own_key.allowed.map(lambda ok: "allowed" if ok else "refused"),
            byok_credits=own_key.credits,
            byok_dollars=own_key.dollars.map(kit.fmt_exact_money),
        )
        kit.table(
            modes,
            {
                "plan_name": kit.text_column("Plan"),
                "pricing_mode": kit.text_column("Pricing mode"),
                "monthly_price": kit.money_column("Price per month"),
                "managed": kit.text_column("Managed keys (markup)"),
                "byok": kit.text_column("Own keys (BYOK)"),
                "byok_credits": kit.credits_column("BYOK call: credits"),
                "byok_dollars": kit.text_column("BYOK call: dollars"),
            },
            key="byok_modes_table",
        )
        st.caption(kit.md_text(f"As the engine answers now for one request to {probe} on each kind of key; "
                               f"an organization without a live subscription is priced like a markup plan."))

with package_tab:
    kit.show_flash("package")
    kit.table(
        packages.assign(is_active=packages.is_active.map(lambda on: "on sale" if on else "withdrawn")),
        {
            "name": kit.text_column("Package"),
            "code": kit.text_column("Code"),
            "credits": kit.credits_column("Credits"),
            "bonus_credits": kit.credits_column("Bonus"),
            "total_credits": kit.credits_column("Total credits"),
            "price": kit.money_column("Price"),
            "usd_per_1000_credits": kit.money_column("$ per 1,000 credits", help="Price / total credits x 1,000."),
            "is_active": kit.text_column("Status"),
            "sort_order": kit.count_column("Order"),
        },
        key="packages_table",
        empty="No credit package yet.",
    )
    chooser("pk", "Package", dict(zip(packages.code, packages.name + " (" + packages.code + ")", strict=True)),
            ("Edit package", open_package_dialog), ("New package", open_package_dialog))

with calculator_tab:
    fixed = services[services.is_available].service_type.tolist()
    left, middle, right = st.columns(3)
    service = left.selectbox("Service", ["llm", *fixed], key="calc_service",
                             help="llm: priced from the model's provider cost; the others cost fixed credits per call.")
    model = middle.selectbox("Model", model_names, key="calc_model")
    org_id = right.selectbox("Organization (optional: its overrides)", [None, *org_labels], key="calc_org",
                             format_func=lambda o: "None (platform rules)" if o is None else org_labels.get(o, o))
    cols = st.columns(5, vertical_alignment="bottom")
    input_tokens = cols[0].text_input("Input tokens", value="1000", key="calc_input")
    output_tokens = cols[1].text_input("Output tokens", value="500", key="calc_output")
    images = cols[2].text_input("Images", value="0", key="calc_images")
    requests = cols[3].text_input("Requests", value="1", key="calc_requests")
    byok = cols[4].toggle("Own key (BYOK)", key="calc_byok")
    event = Usage(service, model or "", input_tokens, output_tokens, images, requests, byok)
    try:
        quotes = kit.read(db, pricing.calculator, actor_id, event, org_id=org_id)
    except BillingError as exc:
        kit.show_error(exc)
        quotes = None
    if quotes is not None:
        kit.table(
            quotes.assign(allowed=quotes.allowed.map(lambda ok: "allowed" if ok else "not allowed"),
                          dollars=quotes.dollars.map(kit.fmt_exact_money)),
            {
                "plan_name": kit.text_column("Plan"),
                "pricing_mode": kit.text_column("Pricing mode"),
                "allowed": kit.text_column("Allowed"),
                "credits": kit.credits_column("Credits"),
                "dollars": kit.text_column("Dollars"),
                "note": kit.text_column("Why not"),
            },
            key="calculator_table",
        )
        allowed = quotes[quotes.allowed]
        if allowed.empty:
            st.caption("No plan allows this call.")
        else:
            plan_names = dict(zip(allowed.plan_code, allowed.plan_name, strict=True))
            chosen = st.selectbox("Explain the arithmetic for", list(plan_names), key="calc_explain",
                                  format_func=lambda code: plan_names[code])
            quote = allowed.set_index("plan_code").loc[chosen]
            with st.container(border=True):
                for line in explanation_lines(quote.explanation):
                    st.markdown(kit.md_text(line))
                with st.expander("The engine's explanation (JSON)"):
                    st.json(json.loads(json.dumps(quote.explanation, default=str)))

# ------------------------------------------------------------ dialogs (one open at a time)
kit.dialog("plan_edit", "Edit plan: new version", plan_edit_body)
kit.dialog("plan_new", "New plan", plan_new_body)
kit.dialog("plan_rename", "Rename plan", plan_rename_body)
kit.dialog("model_price", "Model price", model_price_body)
kit.dialog("service_price", "Fixed-price service", service_price_body)
kit.dialog("platform_rules", "Platform rules", rules_body)
kit.dialog("org_override", "Organization pricing override", override_body)
kit.dialog("package", "Credit package", package_body)
