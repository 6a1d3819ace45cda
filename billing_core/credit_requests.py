"""A member's requests for more credits: asked by the member, answered by the organization's admins.

A member asks the admins of one of their organizations for a number of credits, with an optional
note; an admin approves it (the member's allocation grows by the credits asked, or an amount the
admin chooses, out of the pool's available credits: nothing is minted) or declines it with an
optional reason; the member may withdraw it while it is pending. Each function is one call of the
stored function of the same purpose (sql/routines/048_credit_requests.sql), which checks who acts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import pandas as pd
from sqlalchemy.engine import Engine

from billing_core.amounts import Amount, to_decimal
from billing_core.database import fetch, fetch_frame, record

# a request's columns (a constant SQL fragment, no input)
_SELECT = ("org_id, id, user_id, credits, note, status, approved_credits, decided_by, decided_at, decline_reason,"
           " created_at")


@dataclass(frozen=True)
class CreditRequest:
    """One request as the ledger holds it."""

    org_id: str
    id: str
    user_id: str
    credits: Decimal
    note: str | None
    status: str  # 'pending', 'approved', 'declined' or 'withdrawn'
    approved_credits: Decimal | None
    decided_by: str | None
    decided_at: datetime | None
    decline_reason: str | None
    created_at: datetime


@dataclass(frozen=True)
class Approval:
    """What approving a request would do: the credits allocated, the member's allocation and the pool after it."""

    credits: Decimal
    allocated_after: Decimal
    available_after: Decimal


def _request(db: Engine, statement: str, params: dict) -> CreditRequest:
    return record(CreditRequest, fetch(db, f"select {_SELECT} from {statement}", params)[0])


def _asked(credits: Amount | None) -> Decimal | None:
    return to_decimal(credits, "Credits to request")


def request(db: Engine, actor_id: str, org_id: str, credits: Amount, note: str | None = None) -> CreditRequest:
    """Ask the organization's admins for `credits` more credits (the acting member, for themself)."""
    return _request(db, "request_credits(:org_id, :credits, :note, :actor_id)",
                    {"org_id": org_id, "credits": _asked(credits), "note": note, "actor_id": actor_id})


def preview_request(db: Engine, actor_id: str, org_id: str, credits: Amount, note: str | None = None) -> CreditRequest:
    """What `request` would record, recording nothing: refuses as `request` would (check before asking to confirm)."""
    return _request(db, "preview_credit_request(:org_id, :credits, :note, :actor_id)",
                    {"org_id": org_id, "credits": _asked(credits), "note": note, "actor_id": actor_id})


def withdraw(db: Engine, actor_id: str, org_id: str, request_id: str) -> CreditRequest:
    """Withdraw my pending request (only the member who asked)."""
    return _request(db, "withdraw_credit_request(:org_id, :request_id, :actor_id)",
                    {"org_id": org_id, "request_id": request_id, "actor_id": actor_id})


def approve(db: Engine, actor_id: str | None, org_id: str, request_id: str,
            credits: Amount | None = None) -> CreditRequest:
    """Approve a pending request (org admins, system admins): the member's allocation grows by `credits`
    (None: what they asked for) out of the pool's available credits."""
    return _request(db, "approve_credit_request(:org_id, :request_id, :credits, :actor_id)",
                    {"org_id": org_id, "request_id": request_id, "actor_id": actor_id,
                     "credits": to_decimal(credits, "Credits to allocate")})


def preview_approval(db: Engine, actor_id: str | None, org_id: str, request_id: str,
                     credits: Amount | None = None) -> Approval:
    """What `approve` would do, changing nothing: refuses as `approve` would (a short pool among others)."""
    rows = fetch(db, "select credits, allocated_after, available_after"
                     " from preview_credit_request_approval(:org_id, :request_id, :credits, :actor_id)",
                 {"org_id": org_id, "request_id": request_id, "actor_id": actor_id,
                  "credits": to_decimal(credits, "Credits to allocate")})
    return record(Approval, rows[0])


def decline(db: Engine, actor_id: str | None, org_id: str, request_id: str, reason: str | None = None) -> CreditRequest:
    """Decline a pending request, with an optional reason the member reads (org admins, system admins)."""
    return _request(db, "decline_credit_request(:org_id, :request_id, :reason, :actor_id)",
                    {"org_id": org_id, "request_id": request_id, "reason": reason, "actor_id": actor_id})


def mine(db: Engine, actor_id: str, org_id: str | None = None) -> pd.DataFrame:
    """My requests in one organization (None: all of mine), newest first, with their answers."""
    return fetch_frame(db, "select * from my_credit_requests(:actor_id, :org_id)",
                       {"actor_id": actor_id, "org_id": org_id})


def of_organization(db: Engine, actor_id: str | None, org_id: str, *, include_decided: bool = True) -> pd.DataFrame:
    """The organization's requests (its admins): pending ones oldest first, then the latest answered ones,
    each with the member's current allocation."""
    return fetch_frame(db, "select * from org_credit_requests(:org_id, :actor_id, :include_decided)",
                       {"org_id": org_id, "actor_id": actor_id, "include_decided": include_decided})
