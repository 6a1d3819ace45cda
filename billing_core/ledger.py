"""The ledger's invariants, checked over the whole database."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from billing_core.database import fetch, records


@dataclass(frozen=True)
class Violation:
    """One broken invariant: which, where, and the figures that disagree."""

    invariant: str
    org_id: str | None
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.invariant}: org {self.org_id} {self.subject}: {self.detail}"


def verify(db: Engine, org_id: str | None = None) -> list[Violation]:
    """Every violation of the ledger's invariants (all organizations, or one: NotFound when unknown); empty when sound."""
    rows = fetch(
        db,
        "select invariant, org_id, subject, detail from ledger_violations(:org_id) order by invariant, org_id, subject",
        {"org_id": org_id},
    )
    return records(Violation, rows)
