"""Tables as CSV that a spreadsheet opens safely: the one formula-safe rule of every export (screens and API)."""

from __future__ import annotations

from typing import Any

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what makes a spreadsheet run a cell as a formula


def formula_safe(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (it starts with = + - @ TAB or CR), quoted with ';
    anything else (numbers, dates, other text) unchanged."""
    if isinstance(value, str) and value[:1] in FORMULA_STARTS:
        return "'" + value
    return value


def formula_safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` with `formula_safe` applied to its text cells; numeric columns keep their type."""
    shown = frame.copy()
    for column in shown.columns:
        if shown[column].dtype == object or pd.api.types.is_string_dtype(shown[column]):
            shown[column] = shown[column].map(formula_safe)
    return shown


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """The table as UTF-8 CSV; text cells that a spreadsheet would run as formulas are quoted with '."""
    return formula_safe_frame(frame).to_csv(index=False).encode("utf-8")
