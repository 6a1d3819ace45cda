"""The Pricing screen's cost calculator: one event priced under every plan by the engine, and its arithmetic in
words (the engine's own figures: nothing is computed here)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from billing_core import pricing
from billing_core.errors import BillingError
from billing_core.pricing import Usage
from pages import kit
from pages.kit.session import Screen


def calculator_section(screen: Screen, fixed_services: list[str], model_names: list[str],
                       org_labels: dict[str, str]) -> None:
    """The event's inputs, what each plan charges for it, and the chosen plan's arithmetic."""
    left, middle, right = st.columns(3)
    service = left.selectbox("Service", ["llm", *fixed_services], key="calc_service", format_func=kit.term,
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
        quotes = kit.read(screen.db, pricing.calculator, screen.actor_id, event, org_id=org_id)
    except BillingError as exc:
        kit.show_error(exc)
        return
    quotes_section(quotes)


def quotes_section(quotes: pd.DataFrame) -> None:
    """What each plan charges for the event, then the arithmetic of one plan that allows it."""
    kit.table(
        quotes.assign(allowed=quotes.allowed.map(lambda ok: "allowed" if ok else "not allowed"),
                      credits=quotes.credits.map(kit.fmt_credits),  # "—" where the plan refuses the call
                      dollars=quotes.dollars.map(kit.fmt_exact_money)),
        {
            "plan_name": kit.text_column("Plan"),
            "pricing_mode": kit.text_column("Pricing mode"),
            "allowed": kit.text_column("Allowed"),
            "credits": kit.text_column("Credits"),
            "dollars": kit.text_column("Dollars"),
            "note": kit.text_column("Why not"),
        },
        key="calculator_table",
    )
    allowed = quotes[quotes.allowed]
    if allowed.empty:
        st.caption("No plan allows this call.")
        return
    plan_names = dict(zip(allowed.plan_code, allowed.plan_name, strict=True))
    chosen = st.selectbox("Explain the arithmetic for", list(plan_names), key="calc_explain",
                          format_func=lambda code: plan_names[code])
    quote = allowed.set_index("plan_code").loc[chosen]
    with st.container(border=True):
        for line in explanation_lines(quote.explanation):
            st.markdown(kit.md_text(line))


def explanation_lines(explained: dict[str, Any]) -> list[str]:
    """The engine's explanation of one price, as sentences (its own figures only: nothing is computed here)."""
    n, money, usage = kit.fmt_credits, kit.fmt_exact_money, explained["usage"]
    if explained["method"] == "fixed_price":
        return [
            (f"{kit.term(explained['service_type'])} is a fixed-price service: {n(explained['credits_per_call'])} credits per "
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
