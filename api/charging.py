"""The charging routes (service keys): charges, batches, holds, balances and quotes, on the service role.

A charge is idempotent on its request id (the body's request_id or the Idempotency-Key header): a replay answers
what the first call answered, with `Idempotent-Replayed: true`. The request's X-Request-ID is stored with each
charge (attribution metadata "http_request_id"), and every call is attributed to the key.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from api import metrics, problems, rows
from api.amounts import Amount
from api.keys import KeyRoute, acting, grant_of, key
from billing_core import api_reads, charging, credits, pricing
from billing_core.api_keys import KeyGrant
from billing_core.charging_batch import MAX_EVENTS, Event, charge_batch
from billing_core.errors import InvalidInput
from billing_core.pricing import Usage

router = APIRouter(prefix="/api/v1", route_class=KeyRoute, tags=["charging"])

Id = Annotated[str, StringConstraints(min_length=1, max_length=200)]
REPLAYED = "Idempotent-Replayed"


class Strict(BaseModel):
    """A request body: unknown fields are refused, so a typo is not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Counts(Strict):
    """How much of a metered service one call used (decimal strings)."""

    input_tokens: Amount | None = None
    output_tokens: Amount | None = None
    images: Amount | None = None
    requests: Amount | None = None
    byok: bool = False

    def amounts(self) -> dict[str, Any]:
        """The counts as billing_core's keyword arguments (what is not given: 0, and 1 request)."""
        zero = Decimal(0)
        return {"input_tokens": self.input_tokens or zero, "output_tokens": self.output_tokens or zero,
                "images": self.images or zero, "requests": Decimal(1) if self.requests is None else self.requests,
                "byok": self.byok}

    def usage(self, service_type: str, service_name: str) -> Usage:
        """The counts as billing_core's Usage."""
        return Usage(service_type, service_name, **self.amounts())

    def counted(self) -> bool:
        """True when any count was given."""
        return any(v is not None for v in (self.input_tokens, self.output_tokens, self.images, self.requests))


class ChargeIn(Counts):
    """One charge: a metered event priced by the engine, or (credits) a fixed number of credits."""

    user_id: Id
    org_id: Id | None = Field(None, description="the organization to charge; default: the user's default, else first")
    service_type: Id
    service_name: Id
    credits: Amount | None = Field(None, description="a fixed number of credits instead of priced usage")
    request_id: Id | None = Field(None, description="idempotency key (or the Idempotency-Key header)")
    metadata: dict[str, Any] | None = None
    occurred_at: datetime | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ChargeIn:
        if self.credits is not None and (self.counted() or self.byok):
            raise ValueError("send either credits (a fixed amount) or usage counts (priced by the engine), not both")
        return self


class ChargeOut(BaseModel):
    """A charge made (or replayed)."""

    org_id: str
    user_id: str
    request_id: str | None
    credits: Amount
    remaining: Amount
    replayed: bool
    explanation: dict[str, Any] | None = None


class EventIn(Counts):
    """One metered event of a batch."""

    user_id: Id
    org_id: Id | None = None
    service_type: Id
    service_name: Id
    request_id: Id | None = None
    metadata: dict[str, Any] | None = None
    occurred_at: datetime | None = None


class BatchIn(Strict):
    """Up to 1,000 metered events, each charged on its own."""

    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS)


class EventOut(BaseModel):
    """What one event of a batch got: status 200 and its charge, or the status, CB code and detail of its refusal."""

    position: int
    status: int
    request_id: str | None
    org_id: str | None
    credits: Amount | None = None
    remaining: Amount | None = None
    replayed: bool | None = None
    code: str | None = None
    detail: str | None = None


class BatchOut(BaseModel):
    """One result per event, in the order sent."""

    charged: int
    refused: int
    results: list[EventOut]


class HoldIn(Strict):
    """Credits to hold for a call in progress."""

    user_id: Id
    org_id: Id | None = None
    credits: Amount
    service_type: Id
    service_name: Id
    request_id: Id | None = Field(None, description="the hold's id (or the Idempotency-Key header); required")
    ttl_seconds: int | None = Field(None, ge=1, le=86_400)


class HoldOut(BaseModel):
    """A hold: its credits, until when, and what the member can still spend beside it."""

    org_id: str
    request_id: str
    credits: Amount
    expires_at: datetime
    remaining: Amount
    replayed: bool


class SettleIn(Counts):
    """How a held call ended: its actual credits, or its usage priced by the engine."""

    org_id: Id
    credits: Amount | None = Field(None, description="the actual credits (0: nothing used)")
    metadata: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> SettleIn:
        if (self.credits is None) == (not self.counted()):
            raise ValueError("send either credits (the actual amount) or usage counts (priced by the engine)")
        return self


class ReleaseIn(Strict):
    """The hold's organization."""

    org_id: Id


class HoldEndOut(BaseModel):
    """A hold settled or released."""

    org_id: str
    request_id: str
    credits: Amount
    remaining: Amount
    replayed: bool
    explanation: dict[str, Any] | None = None


class CheckIn(Strict):
    """Could the member pay these credits now?"""

    user_id: Id
    org_id: Id | None = None
    credits: Amount


class CheckOut(BaseModel):
    """The answer: sufficient or not (not a reservation: hold credits for that)."""

    org_id: str
    user_id: str
    credits: Amount
    sufficient: bool


class BalanceOut(BaseModel):
    """A member's allocation in an organization."""

    org_id: str
    user_id: str
    allocated: Amount
    used: Amount
    held: Amount
    remaining: Amount


class QuoteIn(Counts):
    """An event to price (nothing is charged)."""

    org_id: Id | None = None
    service_type: Id
    service_name: Id


class QuoteOut(BaseModel):
    """What the event costs and the arithmetic."""

    org_id: str | None
    credits: Amount
    dollars: Amount
    explanation: dict[str, Any]


def _request_id(body_value: str | None, header_value: str | None) -> str | None:
    if body_value is not None and header_value is not None and body_value != header_value:
        raise InvalidInput("The body's request_id and the Idempotency-Key header differ: send one, or the same"
                           " in both.")
    return body_value if body_value is not None else header_value


def _metadata(request: Request, metadata: dict[str, Any] | None) -> dict[str, Any]:
    return {**(metadata or {}), "http_request_id": request.state.request_id}


def _replayed(response: Response, replayed: bool | None) -> None:
    if replayed:
        response.headers[REPLAYED] = "true"


IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]
Grant = Annotated[KeyGrant, Depends(grant_of)]
REFUSALS = problems.responses(401, 402, 403, 404, 409, 422, 429)


@router.post("/charges", response_model=ChargeOut, responses=REFUSALS, openapi_extra=key("charge", "fields"),
             summary="Charge one call: priced usage, or a fixed number of credits")
def charge(body: ChargeIn, request: Request, response: Response, grant: Grant,
           idempotency_key: IdempotencyKey = None) -> ChargeOut:
    """Charge a member for one call, once per request id."""
    request_id = _request_id(body.request_id, idempotency_key)
    db = request.app.state.engines.service
    with acting(grant):
        if body.credits is not None:
            made = charging.charge_credits(db, body.user_id, body.credits, body.service_type, body.service_name,
                                           org_id=grant.org_id, request_id=request_id,
                                           metadata=_metadata(request, body.metadata), occurred_at=body.occurred_at)
            out = ChargeOut(org_id=made.org_id, user_id=body.user_id, request_id=request_id, credits=made.credits,
                            remaining=made.remaining, replayed=made.replayed)
        else:
            priced = charging.charge_usage(db, body.user_id, body.usage(body.service_type, body.service_name),
                                           org_id=grant.org_id, request_id=request_id,
                                           metadata=_metadata(request, body.metadata), occurred_at=body.occurred_at)
            out = ChargeOut(org_id=priced.org_id, user_id=body.user_id, request_id=request_id, credits=priced.credits,
                            remaining=priced.remaining, replayed=priced.replayed,
                            explanation=rows.value(priced.explanation))
    metrics.charged("charge", out.credits, out.replayed)
    _replayed(response, out.replayed)
    return out


@router.post("/charges/batch", response_model=BatchOut, responses=REFUSALS, openapi_extra=key("charge", "batch"),
             summary="Charge up to 1,000 metered events in one request, each on its own")
def charge_many(body: BatchIn, request: Request, response: Response, grant: Grant) -> BatchOut:
    """Charge each event on its own (a refused one leaves the others charged); one result per event, in order."""
    events = [Event(e.user_id, e.usage(e.service_type, e.service_name), org_id=e.org_id, request_id=e.request_id,
                    metadata=_metadata(request, e.metadata), occurred_at=e.occurred_at) for e in body.events]
    with acting(grant):
        outcomes = charge_batch(request.app.state.engines.service, events,
                                allowed_orgs=getattr(request.state, "allowed_orgs", None))
    results = []
    for event, outcome in zip(body.events, outcomes):
        if outcome.refusal is None:
            metrics.charged("batch", outcome.credits or Decimal(0), bool(outcome.replayed))
            results.append(EventOut(position=outcome.position, status=200, request_id=event.request_id,
                                    org_id=outcome.org_id, credits=outcome.credits, remaining=outcome.remaining,
                                    replayed=outcome.replayed))
        else:
            metrics.refused(outcome.refusal.sqlstate)
            status, _ = problems.STATUS_BY_CODE.get(outcome.refusal.sqlstate or "", (422, ""))
            results.append(EventOut(position=outcome.position, status=status, request_id=event.request_id,
                                    org_id=outcome.org_id, code=outcome.refusal.sqlstate,
                                    detail=str(outcome.refusal)))
    charged = sum(1 for r in results if r.status == 200)
    _replayed(response, charged == len(results) and all(r.replayed for r in results))
    return BatchOut(charged=charged, refused=len(results) - charged, results=results)


@router.post("/holds", response_model=HoldOut, responses=REFUSALS, openapi_extra=key("charge", "fields"),
             summary="Hold credits for a call in progress")
def hold(body: HoldIn, request: Request, response: Response, grant: Grant,
         idempotency_key: IdempotencyKey = None) -> HoldOut:
    """Hold up to `credits` until the call is settled, released or the hold expires."""
    request_id = _request_id(body.request_id, idempotency_key)
    if request_id is None:
        raise InvalidInput("A hold needs a request id (request_id or the Idempotency-Key header): it names the hold.")
    with acting(grant):
        held = charging.reserve(request.app.state.engines.service, body.user_id, body.credits, request_id,
                                body.service_type, body.service_name, org_id=grant.org_id,
                                ttl_seconds=body.ttl_seconds)
    _replayed(response, held.replayed)
    return HoldOut(org_id=held.org_id, request_id=held.request_id, credits=held.credits, expires_at=held.expires_at,
                   remaining=held.remaining, replayed=held.replayed)


@router.post("/holds/{request_id}/settle", response_model=HoldEndOut, responses=REFUSALS,
             openapi_extra=key("charge", "fields"), summary="Settle a hold: charge what the call used")
def settle(request_id: Id, body: SettleIn, request: Request, response: Response, grant: Grant) -> HoldEndOut:
    """Charge the held call's actual credits (or its priced usage) and free the rest."""
    db = request.app.state.engines.service
    metadata = _metadata(request, body.metadata)
    with acting(grant):
        if body.credits is not None:
            ended = charging.settle(db, body.org_id, request_id, body.credits, metadata=metadata)
            out = HoldEndOut(org_id=body.org_id, request_id=request_id, credits=ended.credits,
                             remaining=ended.remaining, replayed=ended.replayed)
        else:
            priced = charging.settle_usage(db, body.org_id, request_id, **body.amounts(), metadata=metadata)
            out = HoldEndOut(org_id=body.org_id, request_id=request_id, credits=priced.credits,
                             remaining=priced.remaining, replayed=priced.replayed,
                             explanation=rows.value(priced.explanation))
    metrics.charged("settle", out.credits, out.replayed)
    _replayed(response, out.replayed)
    return out


@router.post("/holds/{request_id}/release", response_model=HoldEndOut, responses=REFUSALS,
             openapi_extra=key("charge", "fields"), summary="Release a hold without charging")
def release(request_id: Id, body: ReleaseIn, request: Request, response: Response, grant: Grant) -> HoldEndOut:
    """Free a hold's credits (the call failed or was not made)."""
    with acting(grant):
        ended = charging.release(request.app.state.engines.service, body.org_id, request_id)
    _replayed(response, ended.replayed)
    return HoldEndOut(org_id=body.org_id, request_id=request_id, credits=ended.credits, remaining=ended.remaining,
                      replayed=ended.replayed)


@router.post("/balance/check", response_model=CheckOut, responses=REFUSALS, openapi_extra=key("charge", "fields"),
             summary="Could the member pay these credits now?")
def check(body: CheckIn, request: Request, grant: Grant) -> CheckOut:
    """True when the member's allocation can pay `credits` now (nothing is held)."""
    org_id = grant.org_id or body.org_id
    with acting(grant):
        sufficient = credits.has_sufficient_credits(request.app.state.engines.service, org_id, body.user_id,
                                                    body.credits)
    return CheckOut(org_id=org_id, user_id=body.user_id, credits=body.credits, sufficient=sufficient)


@router.get("/balance", response_model=BalanceOut, responses=REFUSALS, openapi_extra=key("charge", "fields"),
            summary="A member's allocation: allocated, used, held, remaining")
def balance(user_id: Id, request: Request, grant: Grant, org_id: Id | None = None) -> BalanceOut:
    """The member's current allocation in the organization (default: the one their calls are charged to)."""
    with acting(grant):
        found = api_reads.member_balance(request.app.state.engines.app, grant.actor_id, grant.org_id or org_id,
                                         user_id)
    return BalanceOut(org_id=found.org_id, user_id=found.user_id, allocated=found.allocated, used=found.used,
                      held=found.held, remaining=found.remaining)


@router.post("/prices/quote", response_model=QuoteOut, responses=REFUSALS, openapi_extra=key("charge", "fields"),
             summary="Price one event without charging it")
def quote(body: QuoteIn, request: Request, grant: Grant) -> QuoteOut:
    """The event's credits and dollars for the organization (none: platform rules), with the arithmetic."""
    with acting(grant):
        priced = pricing.price_usage(request.app.state.engines.service, body.org_id,
                                     body.usage(body.service_type, body.service_name))
    return QuoteOut(org_id=body.org_id, credits=priced.credits, dollars=priced.dollars,
                    explanation=rows.value(priced.explanation))
