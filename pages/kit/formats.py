"""Numbers and text as a person reads them: credits, money, percentages, counts, escaped markdown."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$:&])")


# Streamlit's markdown (GitHub-flavoured) turns a bare "https://x" or "www.x" into a live link after the escapes
# are read, so escaping cannot stop it: an invisible word joiner (U+2060) breaks each pattern instead.
_WORD_JOINER = "\u2060"
_AUTOLINKS = re.compile(r"(?i)(?<=:)(?=//)|(?<=\bwww)(?=\.)")


def md_text(text: Any) -> str:
    """`text` escaped for st.markdown and friends: quotes, HTML, links, bare URLs and markup show as typed."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", _AUTOLINKS.sub(_WORD_JOINER, str(text)))


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """'1 organization', '3 organizations': a count with its noun in the right number."""
    return f"{count:,} {noun if count == 1 else (plural or noun + 's')}"


def fmt_credits(value: Any, places: int | None = None) -> str:
    """Credits with thousands separators and no trailing zeros: 12,500 or 0.375 (rounded to `places` if given)."""
    if value is None:
        return "—"
    number = _decimal(value)
    if places is not None and number.is_finite():
        number = number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    text = f"{number.normalize():,f}"
    return "0" if text in ("-0", "0") else text


def card_credits(value: Any) -> str:
    """Credits short enough for a card: whole credits from 10,000 up, else at most 2 decimals."""
    if value is None:
        return "—"
    return fmt_credits(value, 0 if abs(_decimal(value)) >= 10_000 else 2)


def fmt_money(value: Any, currency: str | None = "USD") -> str:
    """Dollars with cents: $1,234.50 (other currencies get their code)."""
    if value is None:
        return "—"
    amount = f"{_decimal(value):,.2f}"
    return f"${amount}" if (currency or "USD") == "USD" else f"{amount} {currency}"


def fmt_exact_money(value: Any) -> str:
    """Dollars exactly, for rates and small prices: $0.000075, $0.01125, $1,000.00 (at least cents)."""
    if value is None:
        return "—"
    number = _decimal(value)
    exponent = number.normalize().as_tuple().exponent
    places = max(2, -exponent if isinstance(exponent, int) else 0)
    amount = f"{abs(number):,.{places}f}"
    return f"-${amount}" if number < 0 else f"${amount}"


def plain_number(value: Any) -> str:
    """A figure as a person would type it back into a field: 0.0025, 1500 (no separators, no trailing zeros)."""
    return "" if value is None else f"{_decimal(value).normalize():f}"


def fmt_percent(value: Any) -> str:
    """A 0-100 figure as a percentage with one decimal: 37.5%."""
    if value is None:
        return "—"
    return f"{_decimal(value):.1f}%"


def fmt_count(value: Any) -> str:
    """A whole number with thousands separators."""
    return "—" if value is None else f"{int(value):,}"


def fmt_worth(credits: Any, price_per_credit: Any) -> str:
    """What `credits` are worth in dollars at `price_per_credit` ("$0.82")."""
    return fmt_money(_decimal(credits) * _decimal(price_per_credit))
