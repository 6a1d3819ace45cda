"""The system routes (service keys with system scope), acting as the key's user (a system admin): the overview's
headline figures and every organization, filtered, sorted and paged."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from api import problems, rows
from api.keys import KeyRoute, acting, grant_of, key
from api.pages import Limit, Offset, Page, page_of
from billing_core import analytics
from billing_core.api_keys import KeyGrant

router = APIRouter(prefix="/api/v1/system", route_class=KeyRoute, tags=["system"])
Grant = Annotated[KeyGrant, Depends(grant_of)]
READS = problems.responses(401, 403, 422, 429)


@router.get("/overview", response_model=dict[str, Any], responses=READS, openapi_extra=key("system", "none"),
            summary="MRR, ARR, paying subscriptions, 30-day credits, each with its value 30 days before")
def overview(request: Request, grant: Grant) -> dict[str, Any]:
    """The system overview's headline figures now."""
    with acting(grant):
        return rows.record(analytics.overview(request.app.state.engines.app, grant.actor_id))


@router.get("/organizations", response_model=Page, responses=READS, openapi_extra=key("system", "none"),
            summary="Every organization: plan, status, MRR, members, pool, 30-day usage; filtered, sorted, paged")
def organizations(
    request: Request,
    grant: Grant,
    plan: Annotated[list[str] | None, Query(description="keep these plans (repeat the parameter)")] = None,
    status: Annotated[list[str] | None, Query(description="keep these subscription statuses ('none': never)")] = None,
    sort_by: Annotated[str, Query(description=f"one of {', '.join(analytics.SORT_KEYS)}")] = "mrr",
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page:
    """The organizations on the listed plans and statuses, sorted (largest first), one page."""
    with acting(grant):
        table = analytics.organizations(request.app.state.engines.app, grant.actor_id, plans=plan, statuses=status,
                                        sort_by=sort_by)
    return page_of(table, limit, offset)
