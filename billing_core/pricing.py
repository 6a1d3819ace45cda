"""The pricing engine: price tables, their edits, pricing one event, the cost calculator, credit packages.

The arithmetic and every rule live in SQL (sql/routines/100-103: checks, price tables, packages, engine);
this module passes parameters and shapes answers for the Pricing page: lists
as DataFrames, edit functions that the database validates (each edit is a new
effective-dated row and an audit row), the calculator as one row per plan.
1 credit = $0.001; credits are rounded once, half away from zero, to 6 decimals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine

from billing_core.amounts import Amount, to_decimal
from billing_core.database import call, fetch, fetch_frame, record
from billing_core.moments import aware

CREDITS_PER_DOLLAR = Decimal(1000)


@dataclass(frozen=True)
class Usage:
    """One metered event: which service (and model), how much of it, on whose provider key."""

    service_type: str
    service_name: str  # the model for model calls; any label for fixed-price services
    input_tokens: Amount = 0
    output_tokens: Amount = 0
    images: Amount = 0
    requests: Amount = 1
    byok: bool = False  # True: the customer's own provider key

    def params(self) -> dict[str, Any]:
        """The event as the stored functions' parameters."""
        return {
            "service_type": self.service_type,
            "service_name": self.service_name,
            **usage_counts(self.input_tokens, self.output_tokens, self.images, self.requests, self.byok),
        }


def usage_counts(input_tokens: Amount, output_tokens: Amount, images: Amount, requests: Amount, byok: bool) -> dict[str, Any]:
    """An event's counts as the stored functions' parameters (exact numbers; floats refused)."""
    return {
        "input_tokens": to_decimal(input_tokens, "Input tokens"),
        "output_tokens": to_decimal(output_tokens, "Output tokens"),
        "images": to_decimal(images, "Images"),
        "requests": to_decimal(requests, "Requests"),
        "byok": bool(byok),
    }


@dataclass(frozen=True)
class Quote:
    """What an event costs in credits, with the arithmetic (provider cost, markup or fee, rounding)."""

    credits: Decimal
    explanation: dict[str, Any]

    @property
    def dollars(self) -> Decimal:
        """The credits in dollars (exact)."""
        return self.credits / CREDITS_PER_DOLLAR


def explanation(text: str | None) -> dict[str, Any] | None:
    """A stored explanation (jsonb as text) as a dict whose numbers are exact Decimals."""
    return json.loads(text, parse_float=Decimal) if text is not None else None


def price_usage(db: Engine, org_id: str | None, usage: Usage, *, at: datetime | None = None) -> Quote:
    """Price one event for an organization (None: platform rules, no plan) at `at` (default now)."""
    rows = fetch(
        db,
        "select credits, explanation::text as explanation from price_usage(:org_id, :service_type, :service_name,"
        " :input_tokens, :output_tokens, :images, :requests, :byok, cast(:at as timestamptz))",
        {"org_id": org_id, **usage.params(), "at": aware(at, "Pricing time")},
    )
    return Quote(rows[0].credits, explanation(rows[0].explanation))


def calculator(
    db: Engine, actor_id: str, usage: Usage, *, org_id: str | None = None, at: datetime | None = None
) -> pd.DataFrame:
    """The event priced under each plan: credits and dollars, or why the plan refuses it (system admins)."""
    table = fetch_frame(
        db,
        "select plan_code, plan_name, pricing_mode, monthly_price, allowed, credits, dollars, note,"
        " explanation::text as explanation from pricing_calculator_for(:actor_id, :org_id, :service_type,"
        " :service_name, :input_tokens, :output_tokens, :images, :requests, :byok, cast(:at as timestamptz))",
        {"actor_id": actor_id, "org_id": org_id, **usage.params(), "at": aware(at, "Pricing time")},
    )
    # the text column holds NaN where SQL said NULL: no explanation (a plan that refuses the event)
    return table.assign(explanation=[explanation(t) if isinstance(t, str) else None for t in table.explanation])


def model_prices(db: Engine, actor_id: str, *, at: datetime | None = None, history: bool = False) -> pd.DataFrame:
    """Model prices in force at `at` (default now), one row per model; `history`: every row, scheduled ones too."""
    return fetch_frame(
        db,
        "select * from model_price_list(:actor_id, cast(:at as timestamptz), :history)",
        {"actor_id": actor_id, "at": aware(at, "Time"), "history": history},
    )


def service_prices(db: Engine, actor_id: str, *, history: bool = False) -> pd.DataFrame:
    """Fixed-price services in force now, one row each; `history`: every row, scheduled ones too."""
    return fetch_frame(
        db, "select * from service_price_list(:actor_id, :history)", {"actor_id": actor_id, "history": history}
    )


def platform_rules(db: Engine, actor_id: str) -> pd.DataFrame:
    """Every platform rule (markup, BYOK fee, hold lifetime), newest first; `in_force` marks the current one."""
    return fetch_frame(db, "select * from platform_rule_list(:actor_id)", {"actor_id": actor_id})


@dataclass(frozen=True)
class RuleReach:
    """Whom a platform rule reaches: the organizations (not closed), less those with their own figure."""

    organizations: int
    own_markup: int
    own_fee: int


def rule_reach(db: Engine, actor_id: str, at: datetime | None = None) -> RuleReach:
    """How many organizations a platform rule in force at `at` (default now) prices, per figure (system admins)."""
    rows = fetch(db, "select * from pricing_rule_reach(:actor_id, cast(:at as timestamptz))",
                 {"actor_id": actor_id, "at": aware(at, "Moment")})
    return record(RuleReach, rows[0])


@dataclass(frozen=True)
class PriceReach:
    """Whom a new price of a model or fixed-price service reaches, by recent use: organizations and calls."""

    organizations: int
    calls: int


REACH_DAYS = 30


def price_reach(db: Engine, actor_id: str, *, service_type: str | None = None, model: str | None = None) -> PriceReach:
    """How many organizations were charged for calls to `model` (or of the fixed-price `service_type`) over the
    last REACH_DAYS days, and how many calls (system admins)."""
    rows = fetch(db, "select * from pricing_price_reach(:service_type, :model, :days, :actor_id)",
                 {"service_type": service_type, "model": model, "days": REACH_DAYS, "actor_id": actor_id})
    return record(PriceReach, rows[0])


def org_overrides(db: Engine, actor_id: str, org_id: str | None = None) -> pd.DataFrame:
    """Organizations' pricing overrides (all, or one org's), newest first."""
    return fetch_frame(
        db, "select * from org_pricing_override_list(:actor_id, :org_id)", {"actor_id": actor_id, "org_id": org_id}
    )


def credit_packages(db: Engine, *, active_only: bool = False) -> pd.DataFrame:
    """The credit packages (a public catalogue, like the plans), in display order; what 1,000 credits cost in each."""
    return fetch_frame(db, "select * from credit_package_list(:active_only)", {"active_only": active_only})


def set_model_price(
    db: Engine,
    actor_id: str | None,
    provider: str,
    model: str,
    usd_per_1k_input: Amount,
    usd_per_1k_output: Amount,
    *,
    usd_per_image: Amount = 0,
    usd_per_request: Amount = 0,
    effective_from: datetime | None = None,
    available: bool = True,
    note: str | None = None,
) -> int:
    """Record a model's provider prices from `effective_from` (default now) on; returns the row id (system admins)."""
    return call(
        db,
        "select set_model_price(:actor_id, :provider, :model, :input, :output, :image, :request,"
        " cast(:effective_from as timestamptz), :available, :note)",
        {
            "actor_id": actor_id,
            "provider": provider,
            "model": model,
            "input": to_decimal(usd_per_1k_input, "Price per 1,000 input tokens"),
            "output": to_decimal(usd_per_1k_output, "Price per 1,000 output tokens"),
            "image": to_decimal(usd_per_image, "Price per image"),
            "request": to_decimal(usd_per_request, "Price per request"),
            "effective_from": aware(effective_from, "Effective time"),
            "available": available,
            "note": note,
        },
    )


def set_service_price(
    db: Engine,
    actor_id: str | None,
    service_type: str,
    credits: Amount,
    *,
    effective_from: datetime | None = None,
    available: bool = True,
    note: str | None = None,
) -> int:
    """Record a fixed-price service's credits per call from `effective_from` on; returns the row id (system admins)."""
    return call(
        db,
        "select set_service_price(:actor_id, :service_type, :credits, cast(:effective_from as timestamptz),"
        " :available, :note)",
        {
            "actor_id": actor_id,
            "service_type": service_type,
            "credits": to_decimal(credits, "Credits per call"),
            "effective_from": aware(effective_from, "Effective time"),
            "available": available,
            "note": note,
        },
    )


def set_platform_rules(
    db: Engine,
    actor_id: str | None,
    *,
    markup: Amount | None = None,
    byok_fee_credits: Amount | None = None,
    hold_ttl_seconds: int | None = None,
    effective_from: datetime | None = None,
    note: str | None = None,
) -> int:
    """Change the platform's markup, BYOK fee or hold lifetime from `effective_from` on (None keeps a figure)."""
    return call(
        db,
        "select set_platform_pricing_rule(:actor_id, :markup, :fee, :ttl, cast(:effective_from as timestamptz), :note)",
        {
            "actor_id": actor_id,
            "markup": to_decimal(markup, "Markup"),
            "fee": to_decimal(byok_fee_credits, "BYOK platform fee per call"),
            "ttl": hold_ttl_seconds,
            "effective_from": aware(effective_from, "Effective time"),
            "note": note,
        },
    )


def set_org_override(
    db: Engine,
    actor_id: str | None,
    org_id: str,
    *,
    markup: Amount | None,
    byok_fee_credits: Amount | None = None,
    effective_from: datetime | None = None,
    note: str | None = None,
) -> int:
    """Give an organization its own markup and BYOK fee (None: the platform's) from `effective_from` on."""
    return call(
        db,
        "select set_org_pricing_override(:org_id, :actor_id, :markup, :fee, cast(:effective_from as timestamptz), :note)",
        {
            "org_id": org_id,
            "actor_id": actor_id,
            "markup": to_decimal(markup, "Markup"),
            "fee": to_decimal(byok_fee_credits, "BYOK platform fee per call"),
            "effective_from": aware(effective_from, "Effective time"),
            "note": note,
        },
    )


def save_package(
    db: Engine,
    actor_id: str | None,
    code: str,
    name: str,
    credits: Amount,
    bonus_credits: Amount,
    price: Amount,
    *,
    active: bool = True,
    sort_order: int = 0,
) -> bool:
    """Create or edit a credit package; True when it was created (system admins)."""
    return call(
        db,
        "select save_credit_package(:actor_id, :code, :name, :credits, :bonus, :price, :active, :sort_order)",
        {
            "actor_id": actor_id,
            "code": code,
            "name": name,
            "credits": to_decimal(credits, "Package credits"),
            "bonus": to_decimal(bonus_credits, "Bonus credits"),
            "price": to_decimal(price, "Package price"),
            "active": active,
            "sort_order": sort_order,
        },
    )


def buy_package(db: Engine, actor_id: str | None, org_id: str, code: str, *, external_ref: str | None = None) -> Decimal:
    """Enter a package sale paid outside an order (system admins, the operator); returns the pool's total.

    Customers order a package with `orders.create_order(..., package_code=...)`.
    """
    return call(
        db,
        "select buy_credit_package(:org_id, :code, :actor_id, :external_ref)",
        {"org_id": org_id, "code": code, "actor_id": actor_id, "external_ref": external_ref},
    )
