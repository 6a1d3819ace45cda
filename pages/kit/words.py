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
    # ---------------------------------------------------------------- organization admin screen
    # ---------------------------------------------------------------- system screens
    # ---------------------------------------------------------------- pricing, periods and audit screens
    "llm": "LLM",  # a service type: calls priced from their model's provider cost
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
