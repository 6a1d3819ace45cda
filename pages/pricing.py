"""Pricing (system admins): the plan catalogue and its versions, model prices, fixed-price services, platform rules
and per-organization overrides, BYOK rules, credit packages, each edited in a dialog; a cost calculator that prices
one event under every plan.

Every figure comes from billing_core.plans and billing_core.pricing (the rules live in SQL); each save is one stored
function call that validates its input and leaves an audit row. The tabs' sections live in pages/sections/pricing_*.
"""

from __future__ import annotations

import streamlit as st

import pages
from billing_core import organizations, plans, pricing
from billing_core.errors import BillingError
from pages import kit
from pages.kit.session import Screen
from pages.sections.pricing_packages import package_dialogs, packages_section
from pages.sections.pricing_plans import plan_dialogs, plans_section
from pages.sections.pricing_prices import model_prices_section, price_dialogs, service_prices_section
from pages.sections.pricing_quote import calculator_section
from pages.sections.pricing_rules import byok_section, rule_dialogs, rule_in_force, rules_section

TABS = ["Plans", "Model prices", "Fixed-price services", "Platform rules", "BYOK rules", "Credit packages",
        "Cost calculator"]


def render(screen: Screen) -> None:
    """The Pricing screen: one tab per subject, then the dialog that is open, if any."""
    st.title("Pricing")
    db, actor_id = screen.db, screen.actor_id
    try:
        prices = kit.read(db, pricing.model_prices, actor_id)  # system admins only: everyone else stops here
    except BillingError as exc:
        kit.refuse(exc)
    services = kit.read(db, pricing.service_prices, actor_id)
    rules = kit.read(db, pricing.platform_rules, actor_id)
    overrides = kit.read(db, pricing.org_overrides, actor_id)
    packages = kit.read(db, pricing.credit_packages)
    org_labels = organization_labels(screen)
    catalogue = {entry.code: entry for entry in kit.read(db, plans.catalogue)}
    rule = rule_in_force(rules)
    model_names = prices[prices.is_available].model.tolist()

    plans_tab, model_tab, service_tab, rules_tab, byok_tab, package_tab, calculator_tab = st.tabs(TABS)
    with plans_tab:
        plans_section(screen, catalogue)
    with model_tab:
        model_prices_section(screen, prices)
    with service_tab:
        service_prices_section(screen, services)
    with rules_tab:
        rules_section(screen, rules, overrides, org_labels)
    with byok_tab:
        byok_section(screen, rule, model_names)
    with package_tab:
        packages_section(screen, packages)
    with calculator_tab:
        calculator_section(screen, services[services.is_available].service_type.tolist(), model_names, org_labels)

    plan_dialogs(screen, catalogue)
    price_dialogs(screen)
    rule_dialogs(screen, rule, org_labels)
    package_dialogs(screen)


def organization_labels(screen: Screen) -> dict[str, str]:
    """Every organization's id -> "Name (id)", for the override and calculator pickers."""
    orgs = kit.read(screen.db, organizations.organizations, screen.actor_id)
    return dict(zip(orgs.org_id, orgs.name + " (" + orgs.org_id + ")", strict=True))


if __name__ == "__main__":
    pages.run_app()  # Streamlit's old pages/ mode opened this file by its URL: the app, with its login, instead
