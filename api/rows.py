"""billing_core's tables and records as JSON values: Decimals as strings, times as ISO 8601, NaN as null."""

from __future__ import annotations

import dataclasses
import math
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pandas as pd

from api.amounts import decimal_text


def value(item: Any) -> Any:
    """One cell as a JSON value."""
    if item is None or item is pd.NaT:
        return None
    if isinstance(item, Decimal):
        return decimal_text(item) if item.is_finite() else None
    if isinstance(item, float):
        return None if math.isnan(item) else item
    if isinstance(item, pd.Timestamp):
        return item.isoformat()
    if isinstance(item, (datetime, date)):
        return item.isoformat()
    if isinstance(item, dict):
        return {key: value(inner) for key, inner in item.items()}
    if isinstance(item, (list, tuple)):
        return [value(inner) for inner in item]
    if hasattr(item, "item") and callable(item.item):  # numpy scalars
        return value(item.item())
    return item


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A table as a list of JSON objects keyed by its column names."""
    columns = list(frame.columns)
    return [{column: value(cell) for column, cell in zip(columns, row)} for row in frame.itertuples(index=False)]


def record(item: Any) -> dict[str, Any]:
    """A dataclass (or a table row) as one JSON object."""
    if isinstance(item, pd.Series):
        return {str(key): value(cell) for key, cell in item.items()}
    return {key: value(cell) for key, cell in dataclasses.asdict(item).items()}
