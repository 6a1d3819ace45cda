"""The words a person reads for the codes the database stores (statuses, kinds, roles, actions).

One place for every screen: a code without an entry still reads as words ("usage_settlement" ->
"usage settlement"), never as a code. Add an entry where the plain reading is not what a person says.
"""

from __future__ import annotations

from typing import Any

WORDS: dict[str, str] = {
    # ---------------------------------------------------------------- subscription statuses
    "trialing": "trialing",
    "active": "active",
    "past_due": "past due",
    "canceled": "canceled",
    "none": "never subscribed",
    # ---------------------------------------------------------------- credit movements
    "credit_purchase": "credits bought",
    "credit_grant": "credits granted",
    "usage_settlement": "usage",
    "opening_balance": "opening balance",
    # ---------------------------------------------------------------- orders
    "awaiting_payment": "awaiting payment",
    # ---------------------------------------------------------------- member screen (credit requests)
    "credit_request.created": "credits requested",
    "credit_request.approved": "credit request approved",
    "credit_request.declined": "credit request declined",
    "credit_request.withdrawn": "credit request withdrawn",
    "credit_request": "credit request",
    # ---------------------------------------------------------------- organization admin screen
    "subscription_created": "subscribed",
    "subscription_plan_changed": "plan changed",
    "subscription_plan_version_changed": "plan terms changed",
    "subscription_change_scheduled": "plan change scheduled",
    "subscription_cancel_scheduled": "cancel scheduled",
    "subscription_canceled": "subscription canceled",
    "subscription_reactivated": "subscription kept",
    "subscription_activated": "subscription active again",
    "subscription_past_due": "payment overdue",
    "subscription_trial_ended": "trial ended",
    "credit_expiry": "credits expired",
    "plan_included": "included with the plan",
    # ---------------------------------------------------------------- API keys
    "api_key_created": "API key created",
    "api_key_revoked": "API key revoked",
    "api_key": "API key",
    # ---------------------------------------------------------------- system screens
    "subscription_payment": "subscription payment",
    # ---------------------------------------------------------------- pricing, periods and audit screens
    "llm": "LLM calls",  # a service type: calls priced from their model's provider cost
    "platform_rule": "platform rule",
    "byok_fee_credits": "BYOK fee (credits)",
    "usd_per_1k_input": "$ per 1,000 input tokens",
    "usd_per_1k_output": "$ per 1,000 output tokens",
}


def term(code: Any) -> str:
    """The words for `code`; "—" for nothing."""
    if code is None or code == "":
        return "—"
    text = str(code)
    return WORDS.get(text, text.replace("_", " "))
