"""The organization routes (organization keys, or service keys within their scope), acting as the key's user on
the app's role: pool and subscription, plan changes, allocations, members, usage (JSON or formula-safe CSV),
billing history and orders. Every rule (who may read or change what) is the stored functions'."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, StringConstraints

from api import problems, rows
from api.amounts import Amount
from api.keys import KeyRoute, acting, grant_of, key
from api.pages import Limit, Offset, Page, page_of
from billing_core import api_reads, credits, orders, organizations, reports, subscriptions, usage
from billing_core.api_keys import KeyGrant
from billing_core.exports import csv_bytes

router = APIRouter(prefix="/api/v1/organizations/{org_id}", route_class=KeyRoute, tags=["organizations"])

Id = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Grant = Annotated[KeyGrant, Depends(grant_of)]
READS = problems.responses(401, 403, 404, 422, 429)
WRITES = problems.responses(401, 402, 403, 404, 409, 422, 429)


class Strict(BaseModel):
    """A request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class PlanChangeIn(Strict):
    """The plan to move to, now (prorated) or at the end of the current period."""

    plan: Id
    when: Literal["now", "period_end"] = "now"


class AllocateIn(Strict):
    """Credits to allocate to a member from the pool."""

    user_id: Id
    credits: Amount


class AllocationOut(BaseModel):
    """What the member has remaining after the allocation."""

    org_id: str
    user_id: str
    remaining: Amount


class TakeBackIn(Strict):
    """Credits to take back (none: everything unused)."""

    credits: Amount | None = None


class TakenBackOut(BaseModel):
    """The credits taken back to the pool."""

    org_id: str
    user_id: str
    credits: Amount


def _app(request: Request) -> Any:
    return request.app.state.engines.app


@router.get("/pool", response_model=dict[str, Any], responses=READS, openapi_extra=key("read"),
            summary="The credit pool: total, allocated, used, available")
def pool(org_id: Id, request: Request, grant: Grant) -> dict[str, Any]:
    """The organization's pool."""
    with acting(grant):
        return rows.record(reports.pool(_app(request), grant.actor_id, org_id))


@router.get("/subscription", response_model=dict[str, Any], responses=READS, openapi_extra=key("read"),
            summary="The subscription: plan, status, price, current period")
def subscription(org_id: Id, request: Request, grant: Grant) -> dict[str, Any]:
    """The organization's live (else latest) subscription."""
    with acting(grant):
        overview = usage.org_overview(_app(request), grant.actor_id, org_id)
    fields = ("org_id", "plan", "plan_name", "subscription_status", "price_amount", "currency", "billing_cycle",
              "current_period_start", "current_period_end", "trial_ends_at", "cancel_at_period_end", "canceled_at",
              "scheduled_plan", "scheduled_plan_name")
    return {name: rows.value(getattr(overview, name)) for name in fields}


@router.post("/subscription", response_model=dict[str, Any], responses=WRITES, openapi_extra=key("subscription"),
             summary="Change the plan, now (prorated) or at the period end")
def change_plan(org_id: Id, body: PlanChangeIn, request: Request, grant: Grant) -> dict[str, Any]:
    """Move the subscription to another plan (counted in the key's subscription-change limit)."""
    with acting(grant):
        if body.when == "period_end":
            applies_at = subscriptions.schedule_change(_app(request), grant.actor_id, org_id, body.plan)
            return {"org_id": org_id, "plan": body.plan, "applies_at": rows.value(applies_at)}
        return {"org_id": org_id, **rows.record(subscriptions.change_plan(_app(request), grant.actor_id, org_id,
                                                                          body.plan))}


@router.get("/allocations", response_model=Page, responses=READS, openapi_extra=key("read"),
            summary="Members' allocations, most used first")
def allocations(org_id: Id, request: Request, grant: Grant, limit: Limit = 100, offset: Offset = 0) -> Page:
    """Every member with their role and current allocation."""
    with acting(grant):
        return page_of(usage.allocations(_app(request), grant.actor_id, org_id), limit, offset)


@router.post("/allocations", response_model=AllocationOut, responses=WRITES, openapi_extra=key("write"),
             summary="Allocate pool credits to a member")
def allocate(org_id: Id, body: AllocateIn, request: Request, grant: Grant) -> AllocationOut:
    """Allocate credits from the pool to a member; answers what they have remaining."""
    with acting(grant):
        remaining = credits.allocate(_app(request), grant.actor_id, org_id, body.user_id, body.credits)
    return AllocationOut(org_id=org_id, user_id=body.user_id, remaining=remaining)


@router.post("/allocations/{user_id}/take-back", response_model=TakenBackOut, responses=WRITES,
             openapi_extra=key("write"), summary="Take unused credits back from a member")
def take_back(org_id: Id, user_id: Id, body: TakeBackIn, request: Request, grant: Grant) -> TakenBackOut:
    """Take unused credits back to the pool (all unused when no credits are given)."""
    with acting(grant):
        taken = credits.reclaim(_app(request), grant.actor_id, org_id, user_id, body.credits)
    return TakenBackOut(org_id=org_id, user_id=user_id, credits=taken)


@router.get("/members", response_model=Page, responses=READS, openapi_extra=key("read"),
            summary="Members with their role and allocation")
def members(org_id: Id, request: Request, grant: Grant, limit: Limit = 100, offset: Offset = 0) -> Page:
    """The organization's members."""
    with acting(grant):
        return page_of(organizations.members(_app(request), grant.actor_id, org_id), limit, offset)


CSV = {200: {"content": {"text/csv": {"schema": {"type": "string"}}},
             "description": "The groups as JSON (a page), or with format=csv as formula-safe CSV"}}


@router.get("/usage", response_model=Page, responses={**CSV, **READS}, openapi_extra=key("read"),
            summary="Usage over days, grouped by day, user, service or model; JSON or CSV")
def usage_groups(
    org_id: Id,
    request: Request,
    grant: Grant,
    date_from: Annotated[date, Query(alias="from", description="first day, in the organization's time zone")],
    date_to: Annotated[date, Query(alias="to", description="last day (included)")],
    group_by: Annotated[Literal["day", "user", "service", "model"], Query()] = "day",
    user_id: Annotated[Id | None, Query(description="one member's usage (default: the organization's)")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Page | Response:
    """Credits and requests per group over the days (both included), one page; CSV cells are formula-safe."""
    with acting(grant):
        found = api_reads.usage_groups(_app(request), grant.actor_id, org_id, user_id, date_from, date_to, group_by,
                                       limit=limit, offset=offset)
    if format == "csv":
        return Response(csv_bytes(found.groups.rename(columns={"key": group_by})), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="usage-by-{group_by}.csv"'})
    return Page(items=rows.records(found.groups), limit=limit, offset=offset, total=found.total)


@router.get("/billing-history", response_model=Page, responses=READS, openapi_extra=key("read"),
            summary="Purchases, grants, plan changes and invoices, newest first")
def billing_history(org_id: Id, request: Request, grant: Grant, limit: Limit = 100, offset: Offset = 0) -> Page:
    """The organization's billing history."""
    with acting(grant):
        history = reports.billing_history(_app(request), grant.actor_id, org_id, limit=min(offset + limit, 5000))
    return page_of(history, limit, offset).model_copy(update={"total": None})


@router.get("/orders", response_model=Page, responses=READS, openapi_extra=key("read"),
            summary="Credit orders, newest first")
def orders_of(org_id: Id, request: Request, grant: Grant, limit: Limit = 100, offset: Offset = 0) -> Page:
    """The organization's credit orders."""
    with acting(grant):
        return page_of(orders.orders_of(_app(request), grant.actor_id, org_id), limit, offset)

