"""Exact amounts: credits and dollars as Decimal, never float."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from billing_core.errors import InvalidAmount

Amount = Decimal | int | str

# "12,500" and "-1,000.5" are thousands separators; "1,5" is not (a decimal comma)
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(,\d{3})+(\.\d*)?")


def to_decimal(value: Amount | None, what: str) -> Decimal | None:
    """`value` as a Decimal; None stays None. Raises InvalidAmount for floats and non-numbers."""
    if value is None:
        return None
    if isinstance(value, (bool, float)):
        raise InvalidAmount(f"{what} must be exact: pass a whole or decimal number as text or Decimal, not {value!r}.")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    text = str(value).strip().replace("_", "")
    if "," in text:
        if not _THOUSANDS.fullmatch(text):
            raise InvalidAmount(
                f"{what} has a comma out of place (got {str(value)[:40]!r}): use a dot for decimals, "
                "commas only between groups of three digits."
            )
        text = text.replace(",", "")
    try:
        parsed = Decimal(text)
    except InvalidOperation:
        raise InvalidAmount(f"{what} is not a number (got {str(value)[:40]!r}).") from None
    if not parsed.is_finite():
        raise InvalidAmount(f"{what} is not a finite number (got {str(value)[:40]!r}).")
    return parsed
