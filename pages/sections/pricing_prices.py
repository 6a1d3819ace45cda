"""The Pricing screen's price tables: what each model costs us (provider rates) and the fixed-price services, each
with its history and a dialog that adds or schedules a price from an explicitly chosen moment."""

from __future__ import annotations

from functools import partial
from typing import Any

import pandas as pd
import streamlit as st

from billing_core import pricing
from pages import kit
from pages.kit.session import Screen
from pages.sections.pricing_forms import available_text, chooser, effective_preset, optional, typed, value, when_chosen

RATE_COLUMNS = ("usd_per_1k_input", "usd_per_1k_output", "usd_per_image", "usd_per_request")


def model_prices_section(screen: Screen, prices: pd.DataFrame) -> None:
    """The model prices in force (or their whole history), and the picker to edit or add one."""
    kit.show_flash("model_price")
    history = st.toggle("Show history (every price row, scheduled ones too)", key="model_price_history")
    shown = kit.read(screen.db, pricing.model_prices, screen.actor_id, history=True) if history else prices
    kit.table(
        rates_as_text(shown),
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
    chooser("model", "Model", dict(zip(prices.model, prices.model, strict=True)),
            ("Edit model price", partial(open_model_dialog, prices)), ("Add model", partial(open_model_dialog, prices)))


def rates_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Rates as exact dollars (a provider's rate can have 8 decimals: $0.000075), display only."""
    return frame.assign(**{c: frame[c].map(kit.fmt_exact_money) for c in RATE_COLUMNS},
                        is_available=frame.is_available.map(available_text), note=frame.note.fillna(""))


def open_model_dialog(prices: pd.DataFrame, model: str | None) -> None:
    """"Edit model price" (the chosen model's figures preset) or "Add model" (empty fields)."""
    row = prices.set_index("model").loc[model] if model else None
    values = {
        "model_price_provider": "" if row is None else row.provider,
        "model_price_model": model or "",
        **{f"model_price_{c}": ("0" if c in ("usd_per_image", "usd_per_request") else "") if row is None
           else typed(row[c]) for c in RATE_COLUMNS},
        "model_price_available": True if row is None else bool(row.is_available),
        "model_price_note": "",
        **effective_preset("model_price"),
    }
    kit.open_dialog("model_price", {"model": model}, values)


def model_price_body(screen: Screen, context: dict[str, Any]) -> None:
    """A model's provider rates from a chosen moment on."""
    editing = context["model"]
    with st.form("model_price_form", border=False):
        left, right = st.columns(2)
        left.text_input("Provider", key="model_price_provider", placeholder="openai", disabled=bool(editing))
        right.text_input("Model", key="model_price_model", placeholder="gpt-4o", disabled=bool(editing))
        left, right = st.columns(2)
        left.text_input("$ per 1,000 input tokens", key="model_price_usd_per_1k_input", placeholder="0.0025")
        right.text_input("$ per 1,000 output tokens", key="model_price_usd_per_1k_output", placeholder="0.01")
        left, right = st.columns(2)
        left.text_input("$ per image", key="model_price_usd_per_image")
        right.text_input("$ per request", key="model_price_usd_per_request")
        st.checkbox("Available (unticked: the model is withdrawn from then on)", key="model_price_available")
        kit.effective_input("model_price")
        st.text_input("Note (optional)", key="model_price_note", max_chars=500)
        saved = st.form_submit_button("Save price", type="primary")
    st.caption("What the provider charges us, in dollars. Prices already charged are never rewritten: "
               "a change is a new row from its effective time on.")
    if editing:
        reach_caption(kit.read(screen.db, pricing.price_reach, screen.actor_id, model=editing), editing)
    if saved and when_chosen("model_price"):
        provider, model = (value("model_price_provider") or "").strip(), (value("model_price_model") or "").strip()
        kit.save_from_dialog(
            "model_price", pricing.set_model_price, screen.db, screen.actor_id, provider, model,
            value("model_price_usd_per_1k_input"), value("model_price_usd_per_1k_output"),
            usd_per_image=value("model_price_usd_per_image"), usd_per_request=value("model_price_usd_per_request"),
            effective_from=kit.effective_moment("model_price"), available=bool(value("model_price_available")),
            note=optional("model_price_note"),
            success=f"Saved the price of {model}.",
        )


def reach_caption(reach: pricing.PriceReach, what: str) -> None:
    """Whom a new price reaches, going by the last 30 days' calls."""
    if reach.calls == 0:
        text = f"No organization was charged for {what} in the last {pricing.REACH_DAYS} days."
    else:
        text = (f"A new price reaches the organizations that call {what}: "
                f"{kit.counted(reach.organizations, 'organization')} {'was' if reach.organizations == 1 else 'were'} "
                f"charged for "
                f"{kit.counted(reach.calls, 'call')} in the last {pricing.REACH_DAYS} days.")
    st.caption(kit.md_text(text))


def service_prices_section(screen: Screen, services: pd.DataFrame) -> None:
    """The fixed-price services in force (or their whole history), and the picker to edit or add one."""
    kit.show_flash("service_price")
    history = st.toggle("Show history", key="service_price_history")
    shown = kit.read(screen.db, pricing.service_prices, screen.actor_id, history=True) if history else services
    kit.table(
        shown.assign(service=shown.service_type.map(kit.term), is_available=shown.is_available.map(available_text),
                     note=shown.note.fillna("")),
        {
            "service": kit.text_column("Service"),
            "service_type": kit.text_column("Code", help="What a metered call names as its service type."),
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
    chooser("service", "Service", {code: f"{kit.term(code)} ({code})" for code in services.service_type},
            ("Edit service price", partial(open_service_dialog, services)),
            ("Add service", partial(open_service_dialog, services)))


def open_service_dialog(services: pd.DataFrame, service: str | None) -> None:
    """"Edit service price" (its credits preset) or "Add service" (empty fields)."""
    row = services.set_index("service_type").loc[service] if service else None
    values = {
        "service_price_service": service or "",
        "service_price_credits": "" if row is None else typed(row.credits),
        "service_price_available": True if row is None else bool(row.is_available),
        "service_price_note": "",
        **effective_preset("service_price"),
    }
    kit.open_dialog("service_price", {"service": service}, values)


def service_price_body(screen: Screen, context: dict[str, Any]) -> None:
    """A fixed-price service's credits per call from a chosen moment on."""
    with st.form("service_price_form", border=False):
        st.text_input("Service type", key="service_price_service", placeholder="company_enrichment",
                      disabled=bool(context["service"]))
        st.text_input("Credits per call", key="service_price_credits", placeholder="50",
                      help="1 credit = $0.001; 0 makes the service free.")
        st.checkbox("Available (unticked: the service is withdrawn from then on)", key="service_price_available")
        kit.effective_input("service_price")
        st.text_input("Note (optional)", key="service_price_note", max_chars=500)
        saved = st.form_submit_button("Save service price", type="primary")
    if context["service"]:
        reach_caption(kit.read(screen.db, pricing.price_reach, screen.actor_id, service_type=context["service"]),
                      kit.term(context["service"]))
    if saved and when_chosen("service_price"):
        service = (value("service_price_service") or "").strip()
        kit.save_from_dialog(
            "service_price", pricing.set_service_price, screen.db, screen.actor_id, service,
            value("service_price_credits"), effective_from=kit.effective_moment("service_price"),
            available=bool(value("service_price_available")), note=optional("service_price_note"),
            success=f"Saved the price of {service}.",
        )


def price_dialogs(screen: Screen) -> None:
    """The price tables' dialogs (one open at a time)."""
    kit.dialog("model_price", "Model price", partial(model_price_body, screen))
    kit.dialog("service_price", "Fixed-price service", partial(service_price_body, screen))
