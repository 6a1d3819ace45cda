"""Domain errors: one exception type per refusal the ledger can raise.

The stored functions raise SQLSTATEs of class CB (see sql/routines/010_checks.sql);
`translate` turns a database error into the matching exception, carrying the
database's message, which is written for a person to act on.
"""

from __future__ import annotations

import re
from decimal import Decimal


class BillingError(Exception):
    """Base of every refusal billing_core raises; str() is the person-readable message."""

    sqlstate: str | None = None


class InvalidAmount(BillingError):
    """An amount that is zero, negative, not a number, too large or too precise."""

    sqlstate = "CB001"


class NotFound(BillingError):
    """An unknown organization, user or record."""

    sqlstate = "CB002"


class NotAMember(BillingError):
    """The user does not belong to the organization."""

    sqlstate = "CB003"


class InsufficientPoolCredits(BillingError):
    """The organization's pool has fewer available credits than asked for."""

    sqlstate = "CB004"


class InsufficientCredits(BillingError):
    """The member's allocation has fewer remaining credits than asked for; remaining and needed when known."""

    sqlstate = "CB005"

    def __init__(self, message: str, remaining: Decimal | None = None, needed: Decimal | None = None) -> None:
        super().__init__(message)
        self.remaining = remaining
        self.needed = needed


class AllocationInactive(BillingError):
    """The member's allocation is closed."""

    sqlstate = "CB006"


class RequestConflict(BillingError):
    """A request id or payment reference was reused for a different operation."""

    sqlstate = "CB007"


class PermissionDenied(BillingError):
    """The acting user lacks the role the action needs."""

    sqlstate = "CB008"


class InvalidInput(BillingError):
    """Malformed text, ids or metadata."""

    sqlstate = "CB009"


class AlreadyExists(BillingError):
    """The id, email or membership is already taken."""

    sqlstate = "CB010"


class OrganizationInactive(BillingError):
    """The organization is suspended or closed."""

    sqlstate = "CB011"


class RuleViolation(BillingError):
    """The action would break a business rule (removing the last admin, say)."""

    sqlstate = "CB012"


class RateLimited(BillingError):
    """Too many changes or requests in a window; the message says when to retry, retry_after in seconds if known."""

    sqlstate = "CB013"

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
class HoldNotOpen(BillingError):
    """The credit hold expired, or was already settled or released."""

    sqlstate = "CB014"


class Unauthenticated(BillingError):
    """An API key that is malformed, unknown or revoked."""

    sqlstate = "CB015"


class DatabaseUnavailable(BillingError):
    """The database could not be reached or set up."""


class MigrationError(BillingError):
    """A migration could not be applied (or an applied one was edited)."""


_BY_SQLSTATE: dict[str, type[BillingError]] = {
    cls.sqlstate: cls
    for cls in (
        InvalidAmount,
        NotFound,
        NotAMember,
        InsufficientPoolCredits,
        InsufficientCredits,
        AllocationInactive,
        RequestConflict,
        PermissionDenied,
        InvalidInput,
        AlreadyExists,
        OrganizationInactive,
        RuleViolation,
        RateLimited,
        HoldNotOpen,
        Unauthenticated,
    )
}

# Errors PostgreSQL itself raises for values a caller can get wrong.
_POSTGRES_INPUT_ERRORS: dict[str, type[BillingError]] = {
    "22P02": InvalidInput,  # invalid text representation ("abc" as a number)
    "22003": InvalidAmount,  # numeric value out of range
    "22001": InvalidInput,  # value too long
    "22021": InvalidInput,  # invalid byte sequence (NUL characters)
    "22P05": InvalidInput,  # untranslatable character
}


# a rate refusal's DETAIL, when the database knows the wait (sql/routines/140_api_keys.sql)
_RETRY_AFTER = re.compile(r"retry_after=(\d+)")
# a refused charge's DETAIL: what the member has and what the charge needed (sql/routines/032_credit_deductions.sql)
_SHORTFALL = re.compile(r"remaining=(-?[0-9.]+) needed=(-?[0-9.]+)")


def translate(sqlstate: str | None, message: str, detail: str | None = None) -> BillingError | None:
    """The domain exception for a database error, or None when it is not a refusal."""
    if sqlstate is None:
        return None
    cls = _BY_SQLSTATE.get(sqlstate) or _POSTGRES_INPUT_ERRORS.get(sqlstate)
    if cls is InsufficientCredits:
        figures = _SHORTFALL.search(detail or "")
        return InsufficientCredits(message, *(Decimal(figures[n]) for n in (1, 2))) if figures else cls(message)
    if cls is RateLimited:
        wait = _RETRY_AFTER.search(detail or "")
        return RateLimited(message, int(wait[1]) if wait else None)
    return cls(message) if cls else None
