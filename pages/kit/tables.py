"""Grids, their columns, metric cards and CSV exports; every export is formula-safe (billing_core.exports' rule)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

import pandas as pd
import streamlit as st

from billing_core.exports import csv_bytes, formula_safe_frame
from pages.kit.formats import card_credits, fmt_count, fmt_credits, fmt_money, fmt_percent, md_text


def filter_rows(frame: pd.DataFrame, query: str | None, columns: Iterable[str]) -> pd.DataFrame:
    """Rows where any of `columns` contains `query` (case-insensitive, plain text); all rows for no query."""
    query = (query or "").strip().lower()
    if not query or frame.empty:
        return frame
    mask = pd.Series(False, index=frame.index)
    for column in columns:
        mask |= frame[column].fillna("").astype(str).str.lower().str.contains(query, regex=False)
    return frame[mask]


def csv_download(frame: pd.DataFrame, file_name: str, label: str = "Download CSV", key: str | None = None) -> None:
    """A download button for the table as CSV."""
    st.download_button(label, csv_bytes(frame), file_name=file_name, mime="text/csv", key=key)


_FORMATS: dict[str, Callable[[Any], str]] = {
    "credits": card_credits,
    "money": fmt_money,
    "percent": fmt_percent,
    "count": fmt_count,
    "text": lambda value: "—" if value is None else str(value),
}


def metric_card(
    label: str,
    value: Any,
    kind: str = "credits",
    *,
    delta: Any = None,
    delta_kind: str | None = None,
    delta_color: str = "normal",
    help: str | None = None,
) -> None:
    """One figure as st.metric, formatted by kind: 'credits', 'money', 'percent', 'count' or 'text'.

    Credits are rounded for the card (see `card_credits`); the exact figure is in the tooltip then.
    """
    shown = _FORMATS[kind](value)
    if kind == "credits" and value is not None and shown != fmt_credits(value):
        help = f"Exactly {fmt_credits(value)} credits." + (f" {help}" if help else "")
    shown_delta = None
    if delta is not None:
        formatted = _FORMATS[delta_kind or kind](delta)
        shown_delta = formatted if formatted.startswith("-") else f"+{formatted}"
    st.metric(md_text(label), shown, shown_delta, delta_color=delta_color, help=help, border=True)


def credits_column(label: str, help: str | None = None) -> Any:
    """A credits column: thousands separators, decimals only where there are some."""
    return st.column_config.NumberColumn(label, help=help, format="localized")


def money_column(label: str, help: str | None = None) -> Any:
    """A money column shown as dollars: $1,234.50."""
    return st.column_config.NumberColumn(label, help=help, format="dollar")


def percent_column(label: str, help: str | None = None) -> Any:
    """A 0-100 figure shown as a percentage: 37.5%."""
    return st.column_config.NumberColumn(label, help=help, format="%.1f%%")


def percent_bar_column(label: str, help: str | None = None) -> Any:
    """A 0-100 figure as a bar with its percentage."""
    return st.column_config.ProgressColumn(label, help=help, format="%.1f%%", min_value=0, max_value=100)


def count_column(label: str, help: str | None = None) -> Any:
    """A whole number with thousands separators."""
    return st.column_config.NumberColumn(label, help=help, format="localized")


def datetime_column(label: str, help: str | None = None) -> Any:
    """A timestamp to the minute."""
    return st.column_config.DatetimeColumn(label, help=help, format="YYYY-MM-DD HH:mm")


def date_column(label: str, help: str | None = None) -> Any:
    """A calendar day."""
    return st.column_config.DateColumn(label, help=help, format="YYYY-MM-DD")


def text_column(label: str, help: str | None = None) -> Any:
    """Plain text (names, emails: shown as typed, never as HTML)."""
    return st.column_config.TextColumn(label, help=help)


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Decimal columns as numbers the grid can format (display only; the ledger stays Decimal)."""
    shown = frame.copy()
    for column in shown.columns:
        if shown[column].dtype == object and shown[column].map(lambda v: isinstance(v, Decimal)).any():
            shown[column] = pd.to_numeric(shown[column].map(lambda v: None if v is None else float(v)))
    return shown


def grid_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """What a grid shows of `frame`: Decimals as numbers (they sort as numbers), text formula-safe, because the
    grid's toolbar "Download as CSV" and its copy export the cells exactly as shown."""
    return formula_safe_frame(display_frame(frame))


def table(
    frame: pd.DataFrame,
    columns: Mapping[str, Any],
    *,
    key: str | None = None,
    height: int | str = "auto",
    empty: str = "Nothing to show yet.",
    on_select: str = "ignore",
    selection_mode: str = "multi-row",
) -> Any:
    """A sortable table of `columns` (name -> column_config), in that order, without the index; every grid of
    the app goes through here (see `grid_frame`). With on_select="rerun", returns the selection event (row
    positions are those of `frame`); None for an empty frame."""
    if frame.empty:
        st.caption(md_text(empty))
        return None
    return st.dataframe(
        grid_frame(frame[list(columns)]),
        column_config=dict(columns),
        column_order=list(columns),
        hide_index=True,
        key=key,
        height=height,
        on_select=on_select,
        selection_mode=selection_mode,
    )
