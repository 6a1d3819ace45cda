"""Amounts in JSON: decimal strings both ways, parsed exactly by billing_core.amounts; a JSON number is refused."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

from billing_core.amounts import to_decimal
from billing_core.errors import InvalidAmount

_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$"


def _parse(value: Any) -> Decimal:
    if isinstance(value, Decimal):  # built in Python (an answer), not sent as JSON
        return value
    if not isinstance(value, str):
        raise ValueError(
            f"send amounts as decimal strings, like \"12.5\", not as a JSON {type(value).__name__} ({value!r}):"
            " a JSON number may lose digits on the way"
        )
    try:
        return to_decimal(value, "The amount")
    except InvalidAmount as exc:
        raise ValueError(str(exc)) from None


def decimal_text(value: Decimal) -> str:
    """A Decimal as the plain decimal string the API answers with: no exponent, no trailing zeros."""
    return f"{value.normalize():f}" if value else "0"


# what a request or answer field holding credits or money is: a Decimal inside, a decimal string on the wire
Amount = Annotated[
    Decimal,
    PlainValidator(_parse),
    PlainSerializer(decimal_text, return_type=str),
    WithJsonSchema({"type": "string", "pattern": _PATTERN, "examples": ["12.5"]}),
]
