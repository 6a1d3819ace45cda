"""The Pricing screen's platform rules (markup, BYOK fee, hold lifetime), per-organization overrides, and what each
plan's pricing mode allows on each kind of key (BYOK rules)."""

from __future__ import annotations

from functools import partial
from typing import Any

import pandas as pd
import streamlit as st

from billing_core import pricing
from billing_core.pricing import Usage
from pages import kit
from pages.kit.session import Screen
from pages.sections.pricing_forms import effective_preset, optional, typed, value, when_chosen


def rules_section(screen: Screen, rules: pd.DataFrame, overrides: pd.DataFrame, org_labels: dict[str, str]) -> None:
    """The rule in force as cards, the history of rules, and the organizations' overrides."""
    rule = rule_in_force(rules)
    kit.show_flash("platform_rules")
    markup_col, fee_col, ttl_col = st.columns(3)
    with markup_col:
        kit.metric_card("Markup (managed keys)", f"× {typed(rule.markup)}", "text",
                        help="Provider cost x markup, in credits (1,000 credits per dollar).")
    with fee_col:
        kit.metric_card("BYOK fee per call (credits)", kit.fmt_credits(rule.byok_fee_credits), "text",
                        help="Charged per request on the customer's own key, instead of markup (1 credit = $0.001).")
    with ttl_col:
        kit.metric_card("Hold lifetime", f"{int(rule.hold_ttl_seconds):,} s", "text")
    st.button("Edit platform rules", key="rules_edit", on_click=open_rules_dialog, args=(rule,))
    st.markdown("**History of platform rules**")
    kit.table(
        rules.assign(in_force=rules.in_force.map(lambda now: "in force" if now else ""),
                     note=rules.note.fillna(""), created_by=rules.created_by.fillna("—")),
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
        overrides.assign(note=overrides.note.fillna(""), created_by=overrides.created_by.fillna("—"),
                         markup=overrides.markup.map(platforms), byok_fee_credits=overrides.byok_fee_credits.map(platforms)),
        {
            "org_name": kit.text_column("Organization"),
            "org_id": kit.text_column("Id"),
            "effective_from": kit.datetime_column("Effective from (UTC)"),
            "markup": kit.text_column("Markup"),
            "byok_fee_credits": kit.text_column("BYOK fee (credits)"),
            "note": kit.text_column("Note"),
            "created_by": kit.text_column("By"),
        },
        key="org_overrides_table",
        empty="No organization has its own pricing: all follow the platform rules.",
    )
    st.button("Set an organization's override", key="override_edit", on_click=open_override_dialog,
              disabled=not org_labels)


def platforms(figure: Any) -> str:
    """An override's figure, or "the platform's" where it has none."""
    return "the platform's" if figure is None or pd.isna(figure) else kit.fmt_credits(figure)


def rule_in_force(rules: pd.DataFrame) -> Any:
    """The platform rule in force now (the seed rule is in force from 2024 on: there always is one)."""
    return rules[rules.in_force].iloc[0]


def byok_section(screen: Screen, rule: Any, model_names: list[str]) -> None:
    """Which calls each plan allows on managed keys and on the customer's own, as the engine answers now."""
    st.markdown(kit.md_text(
        f"A call on the customer's own provider key (BYOK) is billed by the provider to the customer directly: "
        f"the platform charges no markup, only its fee of {kit.fmt_credits(rule.byok_fee_credits)} credits per "
        f"request (1 credit = $0.001). A call on managed keys costs the provider cost × {typed(rule.markup)} in "
        f"credits. Organizations with an override pay their own markup or fee (Platform rules tab). Which calls a "
        f"plan allows follows its pricing mode:"
    ))
    if not model_names:
        st.caption("No model is available: add one on the Model prices tab to see what each plan allows.")
        return
    probe = model_names[0]
    managed = kit.read(screen.db, pricing.calculator, screen.actor_id, Usage("llm", probe))
    own_key = kit.read(screen.db, pricing.calculator, screen.actor_id, Usage("llm", probe, byok=True))
    modes = managed[["plan_name", "pricing_mode", "monthly_price"]].assign(
        managed=managed.allowed.map(lambda ok: "allowed" if ok else "refused"),
        byok=own_key.allowed.map(lambda ok: "allowed" if ok else "refused"),
        byok_credits=own_key.credits.map(kit.fmt_credits),  # "—" where the plan refuses own keys
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
            "byok_credits": kit.text_column("BYOK call: credits"),
            "byok_dollars": kit.text_column("BYOK call: dollars"),
        },
        key="byok_modes_table",
    )
    st.caption(kit.md_text(f"As the engine answers now for one request to {probe} on each kind of key; "
                           f"an organization without a live subscription is priced like a markup plan."))


def open_rules_dialog(rule: Any) -> None:
    """"Edit platform rules": the rule in force preset."""
    values = {
        "rules_markup": typed(rule.markup),
        "rules_fee": typed(rule.byok_fee_credits),
        "rules_ttl": int(rule.hold_ttl_seconds),
        "rules_note": "",
        **effective_preset("rules"),
    }
    kit.open_dialog("platform_rules", {}, values)


def rules_body(screen: Screen, context: dict[str, Any]) -> None:
    """Markup, BYOK fee and hold lifetime from a chosen moment on."""
    with st.form("platform_rules_form", border=False):
        st.text_input("Markup on provider cost (managed keys)", key="rules_markup",
                      help="1.5 charges provider cost x 1.5.")
        st.text_input("BYOK platform fee per call (credits)", key="rules_fee", help="1 credit = $0.001.")
        st.number_input("Hold lifetime (seconds)", key="rules_ttl", min_value=0, max_value=2_147_483_647, step=1,
                        help="How long reserved credits stay held when the caller names no time (at most 7 days).")
        kit.effective_input("rules")
        st.text_input("Note (optional)", key="rules_note", max_chars=500)
        saved = st.form_submit_button("Save platform rules", type="primary")
    st.caption(kit.md_text(reach_text(kit.read(screen.db, pricing.rule_reach, screen.actor_id))))
    if saved and when_chosen("rules"):
        kit.save_from_dialog(
            "platform_rules", pricing.set_platform_rules, screen.db, screen.actor_id,
            markup=value("rules_markup"), byok_fee_credits=value("rules_fee"), hold_ttl_seconds=value("rules_ttl"),
            effective_from=kit.effective_moment("rules"), note=optional("rules_note"),
            success="Saved the platform rules.",
        )


def reach_text(reach: pricing.RuleReach) -> str:
    """"...(12 organizations now): the markup prices 11 of 12 (1 has its own); the BYOK fee charges every one."."""
    if reach.organizations == 0:
        return "No organization yet: the rules will price every organization without its own override."

    def part(what: str, verb: str, own: int) -> str:
        if own == 0:
            return f"the {what} {verb} every one"
        return (f"the {what} {verb} {reach.organizations - own:,} of {reach.organizations:,} "
                f"({own:,} {'has its' if own == 1 else 'have their'} own)")

    every = kit.counted(reach.organizations, "organization")
    return (f"These rules reach every organization without its own override ({every} now): "
            f"{part('markup', 'prices', reach.own_markup)}; {part('BYOK fee', 'charges', reach.own_fee)}.")


def open_override_dialog() -> None:
    """"Set an organization's override": empty fields."""
    values = {"override_org": None, "override_markup": "", "override_fee": "", "override_note": "",
              **effective_preset("override")}
    kit.open_dialog("org_override", {}, values)


def override_body(screen: Screen, rule: Any, org_labels: dict[str, str], context: dict[str, Any]) -> None:
    """One organization's own markup and BYOK fee from a chosen moment on."""
    with st.form("org_override_form", border=False):
        st.selectbox("Organization", list(org_labels), key="override_org", index=None,
                     format_func=lambda org_id: org_labels.get(org_id, org_id), placeholder="Choose an organization")
        st.text_input("Markup (empty: the platform's)", key="override_markup", placeholder=typed(rule.markup))
        st.text_input("BYOK fee per call in credits (empty: the platform's)", key="override_fee",
                      placeholder=typed(rule.byok_fee_credits))
        kit.effective_input("override")
        st.text_input("Note (optional)", key="override_note", max_chars=500)
        saved = st.form_submit_button("Save override", type="primary")
    st.caption("Both empty: the organization follows the platform's rules again from the effective time on.")
    if not saved:
        return
    org_id = value("override_org")
    if org_id is None:
        kit.show_error("Choose an organization.")
        return
    if when_chosen("override"):
        kit.save_from_dialog(
            "org_override", pricing.set_org_override, screen.db, screen.actor_id, org_id,
            markup=optional("override_markup"), byok_fee_credits=optional("override_fee"),
            effective_from=kit.effective_moment("override"), note=optional("override_note"),
            success=f"Saved the pricing override of {org_labels.get(org_id, org_id)}.",
        )


def rule_dialogs(screen: Screen, rule: Any, org_labels: dict[str, str]) -> None:
    """The rules' dialogs (one open at a time)."""
    kit.dialog("platform_rules", "Platform rules", partial(rules_body, screen))
    kit.dialog("org_override", "Organization pricing override", partial(override_body, screen, rule, org_labels))
