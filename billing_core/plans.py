"""The plan catalogue: plans, their versions, and the system admin's edits.

A plan's terms (price, pricing mode, included credits, trial) are versioned:
an edit adds a version effective now or later (sql/routines/072_plans.sql);
what a subscription paid never changes retroactively.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.engine import Engine

from billing_core.amounts import Amount, to_decimal
from billing_core.database import call, fetch, records
from billing_core.moments import aware

PRICING_MODES = ("markup", "passthrough", "mixed")


@dataclass(frozen=True)
class PlanVersion:
    """One version of a plan's terms and when it takes effect."""

    plan: str
    version: int
    monthly_price: Decimal
    pricing_mode: str
    included_credits: Decimal
    trial_days: int | None
    effective_at: datetime
    created_by: str | None


@dataclass(frozen=True)
class CatalogueEntry:
    """A plan with the version in force at the moment asked, and the next one scheduled, if any."""

    code: str
    name: str
    description: str
    version: int
    monthly_price: Decimal
    pricing_mode: str
    included_credits: Decimal
    trial_days: int | None
    effective_at: datetime
    next_version: int | None
    next_effective_at: datetime | None
    retired_at: datetime | None

    @property
    def retired(self) -> bool:
        """True when nobody may subscribe or change to this plan any more."""
        return self.retired_at is not None


def catalogue(db: Engine, at: datetime | None = None) -> list[CatalogueEntry]:
    """Every plan with the version in force at `at` (default now), in catalogue order."""
    rows = fetch(
        db,
        "select code, name, description, version, monthly_price, pricing_mode, included_credits, trial_days,"
        " effective_at, next_version, next_effective_at, retired_at"
        " from plan_catalogue(coalesce(cast(:at as timestamptz), now()))",
        {"at": aware(at, "Catalogue time")},
    )
    return records(CatalogueEntry, rows)


def versions(db: Engine, code: str) -> list[PlanVersion]:
    """Every version of plan `code`, oldest first (empty for an unknown plan)."""
    rows = fetch(db, "select * from plan_version_list(:code)", {"code": code})
    return records(PlanVersion, rows)


def create_plan(
    db: Engine,
    actor_id: str | None,
    code: str,
    name: str,
    monthly_price: Amount,
    pricing_mode: str,
    *,
    included_credits: Amount = 0,
    trial_days: int | None = None,
    description: str = "",
) -> int:
    """Add a plan to the catalogue, its version 1 in force at once (system admins); returns 1."""
    return call(
        db,
        "select create_plan(:code, :name, :price, :mode, :credits, :trial, :actor_id, :description)",
        {
            "code": code,
            "name": name,
            "price": to_decimal(monthly_price, "Monthly price"),
            "mode": pricing_mode,
            "credits": to_decimal(included_credits, "Included credits"),
            "trial": trial_days,
            "actor_id": actor_id,
            "description": description,
        },
    )


def edit_plan(
    db: Engine,
    actor_id: str | None,
    code: str,
    *,
    monthly_price: Amount | None = None,
    pricing_mode: str | None = None,
    included_credits: Amount | None = None,
    trial_days: int | None = None,
    effective_at: datetime | None = None,
) -> int:
    """Add a version of the plan's terms, effective now or at `effective_at` (system admins); returns its number.

    A term left as None keeps the latest version's; `trial_days=0` removes the trial.
    """
    return call(
        db,
        "select edit_plan(:code, :actor_id, :price, :mode, :credits, :trial, cast(:effective_at as timestamptz))",
        _edit_params(code, actor_id, monthly_price, pricing_mode, included_credits, trial_days, effective_at),
    )


@dataclass(frozen=True)
class EditPreview:
    """The version an edit would add, and the subscriptions it reaches (from SQL: preview_plan_edit)."""

    version: int
    monthly_price: Decimal
    pricing_mode: str
    included_credits: Decimal
    trial_days: int | None
    effective_at: datetime
    previous_monthly_price: Decimal
    subscriptions: int  # live on the plan now, one per organization: each meets the version at a period start
    leaving: int  # of those, set to cancel or change plan at their period end
    arriving: int  # live subscriptions of other plans scheduled to move to this one


def preview_edit(
    db: Engine,
    actor_id: str | None,
    code: str,
    *,
    monthly_price: Amount | None = None,
    pricing_mode: str | None = None,
    included_credits: Amount | None = None,
    trial_days: int | None = None,
    effective_at: datetime | None = None,
) -> EditPreview:
    """What `edit_plan` with these arguments would add and whom it reaches; refuses exactly what it refuses,
    changing nothing (system admins)."""
    rows = fetch(
        db,
        "select version, monthly_price, pricing_mode, included_credits, trial_days, effective_at,"
        " previous_monthly_price, subscriptions, leaving, arriving"
        " from preview_plan_edit(:code, :actor_id, :price, :mode, :credits, :trial,"
        " cast(:effective_at as timestamptz))",
        _edit_params(code, actor_id, monthly_price, pricing_mode, included_credits, trial_days, effective_at),
    )
    return records(EditPreview, rows)[0]


def _edit_params(code: str, actor_id: str | None, monthly_price: Amount | None, pricing_mode: str | None,
                 included_credits: Amount | None, trial_days: int | None,
                 effective_at: datetime | None) -> dict[str, object]:
    return {
        "code": code,
        "actor_id": actor_id,
        "price": to_decimal(monthly_price, "Monthly price"),
        "mode": pricing_mode,
        "credits": to_decimal(included_credits, "Included credits"),
        "trial": trial_days,
        "effective_at": aware(effective_at, "Effective date"),
    }


def rename_plan(db: Engine, actor_id: str | None, code: str, name: str, *, description: str | None = None) -> None:
    """Rename a plan (and change its description when given) (system admins)."""
    call(
        db,
        "select rename_plan(:code, :name, :actor_id, :description)",
        {"code": code, "name": name, "actor_id": actor_id, "description": description},
    )


def retire_plan(db: Engine, actor_id: str | None, code: str) -> None:
    """Retire a plan: no new subscriptions or changes to it; current ones keep it (system admins)."""
    call(db, "select retire_plan(:code, :actor_id)", {"code": code, "actor_id": actor_id})
