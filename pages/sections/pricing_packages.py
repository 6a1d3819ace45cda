"""The Pricing screen's credit packages: what an organization can buy, edited in a dialog."""

from __future__ import annotations

from functools import partial
from typing import Any

import pandas as pd
import streamlit as st

from billing_core import pricing
from pages import kit
from pages.kit.session import Screen
from pages.sections.pricing_forms import chooser, typed, value


def packages_section(screen: Screen, packages: pd.DataFrame) -> None:
    """The packages with their price per 1,000 credits, and the picker to edit or add one."""
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
    chooser("package", "Package", dict(zip(packages.code, packages.name + " (" + packages.code + ")", strict=True)),
            ("Edit package", partial(open_package_dialog, packages)),
            ("New package", partial(open_package_dialog, packages)))


def open_package_dialog(packages: pd.DataFrame, code: str | None) -> None:
    """"Edit package" (its figures preset) or "New package" (empty fields)."""
    row = packages.set_index("code").loc[code] if code else None
    values = {
        "package_code": code or "",
        "package_name": "" if row is None else row["name"],
        "package_credits": "" if row is None else typed(row.credits),
        "package_bonus": "0" if row is None else typed(row.bonus_credits),
        "package_price": "" if row is None else typed(row.price),
        "package_active": True if row is None else bool(row.is_active),
        "package_sort": 0 if row is None else int(row.sort_order),
    }
    kit.open_dialog("package", {"code": code}, values)


def package_body(screen: Screen, context: dict[str, Any]) -> None:
    """A package's code, name, credits, bonus, price, whether on sale and its place in the list."""
    with st.form("package_form", border=False):
        left, right = st.columns(2)
        left.text_input("Code", key="package_code", placeholder="growth_50k", disabled=bool(context["code"]))
        right.text_input("Name", key="package_name", placeholder="Growth 50K", max_chars=100)
        left, right = st.columns(2)
        left.text_input("Credits", key="package_credits", placeholder="50,000")
        right.text_input("Bonus credits", key="package_bonus", placeholder="0")
        left, right = st.columns(2)
        left.text_input("Price (USD)", key="package_price", placeholder="50.00")
        right.number_input("Sort order", key="package_sort", min_value=-2_147_483_648, max_value=2_147_483_647,
                           step=1)
        st.checkbox("On sale", key="package_active")
        saved = st.form_submit_button("Save package", type="primary")
    st.caption("Past purchases keep what they bought and paid (billing history); the audit log keeps "
               "the figures before and after each edit.")
    if saved:
        code = (value("package_code") or "").strip()
        kit.save_from_dialog(
            "package", pricing.save_package, screen.db, screen.actor_id, code, value("package_name") or "",
            value("package_credits"), value("package_bonus"), value("package_price"),
            active=bool(value("package_active")), sort_order=int(value("package_sort") or 0),
            success=lambda created: f"{'Created' if created else 'Saved'} package {code}.",
        )


def package_dialogs(screen: Screen) -> None:
    """The packages' dialog."""
    kit.dialog("package", "Credit package", partial(package_body, screen))
