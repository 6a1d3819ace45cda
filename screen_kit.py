"""Shared pieces of the screens: session, cached reads, writes with feedback, formats, tables, charts.

Pages stay thin: they gather inputs, call billing_core through `read` / `write`,
and render with the helpers below. Nothing here holds SQL or invents a figure;
formatting only changes how a number from billing_core is shown.
"""

from __future__ import annotations

import html
import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from sqlalchemy.engine import Engine

from billing_core import database
from billing_core.amounts import to_decimal
from billing_core.errors import BillingError

READ_TTL_SECONDS = 30

# ---------------------------------------------------------------- session


def require_actor() -> str:
    """The logged-in user's id; without one, says "Please log in." and stops the page."""
    actor_id = st.session_state.get("actor_id")
    if not actor_id:
        st.warning("Please log in.")
        st.stop()
    return actor_id


def chosen_org() -> str | None:
    """The organization chosen in the sidebar selector (None: the user has none)."""
    return st.session_state.get("org_id")


def require_chosen_org() -> str:
    """The organization chosen in the sidebar; without one, says how to choose it and stops the page."""
    org_id = chosen_org()
    if not org_id:
        st.info("Choose an organization in the sidebar.")
        st.stop()
    return org_id


def engine() -> Engine:
    """The app's database engine (DATABASE_URL's, or the embedded server's, as the billing_app role)."""
    return database.app_engine()


# ---------------------------------------------------------------- reads and writes


def _db_key(db: Engine) -> str:
    return db.url.render_as_string(hide_password=True)


@st.cache_data(ttl=READ_TTL_SECONDS, show_spinner=False)
def _cached_read(_db: Engine, db_key: str, module: str, name: str, args: tuple, kwargs: tuple) -> Any:
    function = getattr(importlib.import_module(module), name)
    return function(_db, *args, **dict(kwargs))


def read(db: Engine, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`function(db, *args, **kwargs)` for a billing_core read, cached for 30 s.

    The cache key is the database, the function and every argument (the acting
    user and the organization among them), so one user never gets another's
    answer; refusals (exceptions) are never cached. `write` clears the cache.
    """
    module = getattr(function, "__module__", "") or ""
    if not module.startswith("billing_core."):
        raise ValueError(f"read() caches billing_core reads only, not {module}.{function.__qualname__}")
    return _cached_read(db, _db_key(db), module, function.__qualname__, tuple(args), tuple(sorted(kwargs.items())))


def clear_cached_reads() -> None:
    """Forget every cached read, so the next run shows the database as it is now."""
    st.cache_data.clear()


_FLASH = "_screen_kit_flash"


def flash(key: str, kind: str, message: str) -> None:
    """Keep a message ('success', 'error', 'info' or 'warning') for `show_flash(key)` in the next render."""
    st.session_state.setdefault(_FLASH, {})[key] = (kind, message)


def show_flash(key: str) -> None:
    """Show (once) the message kept under `key`, as text."""
    kind, message = st.session_state.get(_FLASH, {}).pop(key, (None, None))
    if kind is not None:
        getattr(st, kind)(md_text(message))


def write(key: str, function: Callable[..., Any], *args: Any, success: str | Callable[[Any], str], **kwargs: Any) -> bool:
    """Run a billing_core write; keep its outcome for `show_flash(key)`.

    On success every cached read is cleared (so the change shows at once) and
    `success` (a text, or a function of the result) is kept; a refusal keeps
    the database's message. Returns True on success.
    """
    try:
        result = function(*args, **kwargs)
    except BillingError as exc:
        flash(key, "error", str(exc))
        return False
    clear_cached_reads()
    flash(key, "success", success(result) if callable(success) else success)
    return True


_PENDING = "_screen_kit_pending"


def ask_confirmation(key: str, question: str, action: Callable[[], Any], success: str | Callable[[Any], str]) -> None:
    """Hold `action` until the person confirms `question` in `confirmation(key)`."""
    st.session_state.setdefault(_PENDING, {})[key] = (question, action, success)


def _confirm(key: str) -> None:
    pending = st.session_state.get(_PENDING, {}).pop(key, None)
    if pending is not None:
        _, action, success = pending
        write(key, action, success=success)


def _cancel(key: str) -> None:
    st.session_state.get(_PENDING, {}).pop(key, None)
    flash(key, "info", "Cancelled: nothing changed.")


def confirmation(key: str) -> None:
    """The pending question under `key` with Confirm / Cancel buttons, then the outcome (if any)."""
    pending = st.session_state.get(_PENDING, {}).get(key)
    if pending is not None:
        with st.container(border=True):
            st.warning(md_text(pending[0]))
            left, right = st.columns(2)
            left.button("Confirm", key=f"{key}_confirm", type="primary", on_click=_confirm, args=(key,))
            right.button("Cancel", key=f"{key}_cancel", on_click=_cancel, args=(key,))
    show_flash(key)


# ---------------------------------------------------------------- form input


class Refused(Exception):
    """A form's input was refused; the reason is already kept for its flash."""


def entered(form: str, key: str, what: str, *, optional: bool = False) -> Any:
    """The amount typed in the field `key`, parsed by billing_core (None when optional and empty).

    A refusal is kept for `form`'s flash and raised as Refused.
    """
    text = (st.session_state.get(key) or "").strip()
    if optional and not text:
        return None
    try:
        return to_decimal(text, what)
    except BillingError as exc:
        flash(form, "error", str(exc))
        raise Refused from exc


def chosen_member(form: str, key: str, missing: str) -> str:
    """The member picked in the field `key`; when none is, `missing` is kept for `form` and Refused raised."""
    user_id = st.session_state.get(key)
    if user_id is None:
        flash(form, "error", missing)
        raise Refused
    return user_id


def refusing(handler: Callable[[], None]) -> Callable[[], None]:
    """A form handler that stops quietly at Refused (its message is already kept)."""

    def run() -> None:
        try:
            handler()
        except Refused:
            pass

    return run
# ---------------------------------------------------------------- dialogs

_DIALOG = "_screen_kit_dialog"


def open_dialog(key: str, context: Mapping[str, Any] | None = None, values: Mapping[str, Any] | None = None) -> None:
    """Open the dialog `key` (a button's on_click): `context` goes to its body, `values` preset its widgets by key."""
    st.session_state[_DIALOG] = (key, dict(context or {}))
    for name, value in (values or {}).items():
        st.session_state[name] = value


def close_dialog() -> None:
    """Close whichever dialog is open."""
    st.session_state.pop(_DIALOG, None)


def dialog(key: str, title: str, body: Callable[[dict[str, Any]], None], *, width: str = "medium") -> None:
    """While `key` is the open dialog: a modal titled `title` with `body(context)` in it, on every run until
    it is saved or dismissed (one dialog at a time)."""
    opened = st.session_state.get(_DIALOG)
    if not opened or opened[0] != key:
        return

    def content() -> None:
        body(opened[1])

    st.dialog(title, width=width, on_dismiss=close_dialog)(content)()


def save_from_dialog(key: str, function: Callable[..., Any], *args: Any, success: str | Callable[[Any], str],
                     **kwargs: Any) -> None:
    """Run a billing_core write from the open dialog `key`. Saved: the dialog closes, the page reruns with fresh
    reads and `show_flash(key)` says `success`. Refused: the database's message shows in the dialog, which stays open
    (the refused call changed nothing)."""
    if write(key, function, *args, success=success, **kwargs):
        close_dialog()
        st.rerun()
    show_flash(key)


def effective_input(key: str, label: str = "Takes effect") -> None:
    """Inputs for when a change takes effect: now, or at a chosen date and time (UTC); read with `effective_moment`."""
    st.radio(label, ["now", "at"], key=f"{key}_when", horizontal=True,
             format_func=lambda when: "Now" if when == "now" else "At the date and time below (UTC)")
    day, moment = st.columns(2)
    day.date_input("Date (UTC)", key=f"{key}_date", format="YYYY-MM-DD")
    moment.time_input("Time (UTC)", key=f"{key}_time", step=60)


def preset_effective(key: str, day: date, moment: time) -> dict[str, Any]:
    """Widget values for `effective_input(key)`: now, with `day` and `moment` ready for a chosen time."""
    return {f"{key}_when": "now", f"{key}_date": day, f"{key}_time": moment}


def effective_moment(key: str) -> datetime | None:
    """What `effective_input(key)` says: None for now, else the chosen date and time in UTC."""
    state = st.session_state
    if state.get(f"{key}_when") != "at":
        return None
    return datetime.combine(state[f"{key}_date"], state[f"{key}_time"], tzinfo=UTC)


# ---------------------------------------------------------------- errors and text


def show_error(error: BillingError | str) -> None:
    """A refusal's message (written for people), shown as text, never a traceback."""
    st.error(md_text(str(error)))


def refuse(error: BillingError | str) -> None:
    """Show the refusal and stop the page: nothing after it renders."""
    show_error(error)
    st.stop()


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$:&])")


def md_text(text: Any) -> str:
    """`text` escaped for st.markdown and friends: quotes, HTML, links and markup show as typed."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


def filter_rows(frame: pd.DataFrame, query: str | None, columns: Iterable[str]) -> pd.DataFrame:
    """Rows where any of `columns` contains `query` (case-insensitive, plain text); all rows for no query."""
    query = (query or "").strip().lower()
    if not query or frame.empty:
        return frame
    mask = pd.Series(False, index=frame.index)
    for column in columns:
        mask |= frame[column].fillna("").astype(str).str.lower().str.contains(query, regex=False)
    return frame[mask]


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what makes a spreadsheet run a cell as a formula


def formula_safe(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (it starts with = + - @ TAB or CR), quoted with ';
    anything else (numbers, dates, other text) unchanged. The one rule of every export: download buttons
    and the grids' own "Download as CSV" and copy."""
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


def csv_download(frame: pd.DataFrame, file_name: str, label: str = "Download CSV", key: str | None = None) -> None:
    """A download button for the table as CSV."""
    st.download_button(label, csv_bytes(frame), file_name=file_name, mime="text/csv", key=key)


# ---------------------------------------------------------------- numbers


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


# ---------------------------------------------------------------- tables


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


def _display(frame: pd.DataFrame) -> pd.DataFrame:
    """Decimal columns as numbers the grid can format (display only; the ledger stays Decimal)."""
    shown = frame.copy()
    for column in shown.columns:
        if shown[column].dtype == object and shown[column].map(lambda v: isinstance(v, Decimal)).any():
            shown[column] = pd.to_numeric(shown[column].map(lambda v: None if v is None else float(v)))
    return shown


def grid_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """What a grid shows of `frame`: Decimals as numbers (they sort as numbers), text formula-safe, because the
    grid's toolbar "Download as CSV" and its copy export the cells exactly as shown."""
    return formula_safe_frame(_display(frame))


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


# ---------------------------------------------------------------- charts

# Okabe-Ito: distinguishable with colour blindness
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000", "#999999"]

# the same thing has the same colour on every screen
KNOWN_COLORS = {
    "llm": "#0072B2",
    "company_enrichment": "#E69F00",
    "contact_lookup": "#009E73",
    "intelligence_cache_lookup": "#CC79A7",
    "total": "#0072B2",
    "allocated": "#E69F00",
    "used": "#D55E00",
    "available": "#009E73",
    "remaining": "#009E73",
    "active": "#009E73",
    "trialing": "#56B4E9",
    "past_due": "#D55E00",
    "canceled": "#999999",
}


def color_map(values: Iterable[Any]) -> dict[str, str]:
    """A colour per category: fixed ones for known names, the rest of the palette in sorted order."""
    names = sorted({str(v) for v in values if v is not None})
    colors = {name: KNOWN_COLORS[name] for name in names if name in KNOWN_COLORS}
    free = [c for c in PALETTE if c not in colors.values()] or PALETTE
    for index, name in enumerate(n for n in names if n not in colors):
        colors[name] = free[index % len(free)]
    return colors


def chart_frame(frame: pd.DataFrame, text_columns: Iterable[str | None] = ()) -> pd.DataFrame:
    """A copy ready for Plotly: Decimals as floats; text HTML-escaped (Plotly renders some HTML tags)."""
    shown = _display(frame)
    for column in {c for c in text_columns if c and c in shown.columns}:
        shown[column] = shown[column].map(lambda v: html.escape(v, quote=False) if isinstance(v, str) else v)
    return shown


def _categories(data: pd.DataFrame, color: str | None) -> list[tuple[str | None, pd.DataFrame]]:
    """(category, its rows) in order of first appearance; one unnamed group without `color`."""
    if not color:
        return [(None, data)]
    return [(str(name), rows) for name, rows in data.groupby(color, sort=False, dropna=False)]


def _hover(data: pd.DataFrame, columns: list[str], labels: Mapping[str, str], first: int = 0) -> tuple[Any, str]:
    """customdata holding `columns`, and hovertemplate lines "label: value" for columns[first:]."""
    if not columns:
        return None, ""
    lines = "".join(
        f"<br>{html.escape(labels.get(c, c))}: %{{customdata[{i}]}}" for i, c in enumerate(columns) if i >= first
    )
    return data[columns].to_numpy(), lines


def _figure(traces: list[Any], *, title: str | None, x_title: str | None, y_title: str | None, **layout: Any) -> go.Figure:
    return go.Figure(
        traces,
        layout={
            "title": {"text": title},
            "xaxis": {"title": {"text": x_title}},
            "yaxis": {"title": {"text": y_title}},
            "showlegend": len(traces) > 1,
            **layout,
        },
    )


LABEL_CHARACTERS = 28  # category labels on an axis are cut here ("…"); the hover shows them whole


def _short(text: Any) -> str:
    text = str(text)
    return text if len(text) <= LABEL_CHARACTERS else text[: LABEL_CHARACTERS - 1] + "…"


def bar_chart(
    frame: pd.DataFrame,
    x: str,
    y: str,
    *,
    color: str | None = None,
    title: str | None = None,
    labels: Mapping[str, str] | None = None,
    horizontal: bool = False,
    barmode: str = "stack",
    hover: Iterable[str] = (),
    key: str | None = None,
) -> go.Figure:
    """Bars of `y` per `x` (one series per `color` category); `horizontal` puts `x` on the vertical axis.

    Text categories (names) are placed by `key` (default: `x` itself), so two people with the
    same name keep two bars; long names are cut on the axis and shown whole on hover.
    `color=x` colours each bar by its own category, without a legend.
    """
    labels, hover = dict(labels or {}), list(hover)
    raw = frame.reset_index(drop=True)
    data = chart_frame(raw, [color, *hover])
    data["_label"] = raw[x].map(lambda v: html.escape(str(v), quote=False))
    data["_tick"] = raw[x].map(lambda v: html.escape(_short(v), quote=False))
    categorical = not pd.api.types.is_numeric_dtype(raw[x]) and raw[x].map(lambda v: isinstance(v, str)).all()
    if categorical:
        identity = raw[key or x]
        position = {k: i for i, k in enumerate(dict.fromkeys(identity))}
        data["_at"] = identity.map(position)
    else:
        data["_at"] = data[x]
    colors = color_map(data[color]) if color else {}
    groups = [(None, data)] if color == x else _categories(data, color)
    traces = []
    for name, rows in groups:
        customdata, extra = _hover(rows, ["_label", *hover], labels, first=1)
        value = rows[y].tolist()
        point = f"%{{customdata[0]}}<br>{html.escape(labels.get(y, y))}: " + ("%{x}" if horizontal else "%{y}")
        traces.append(go.Bar(
            x=value if horizontal else rows["_at"].tolist(),
            y=rows["_at"].tolist() if horizontal else value,
            orientation="h" if horizontal else "v",
            name=name,
            marker_color=[colors[str(c)] for c in rows[color]] if color == x else colors.get(name, PALETTE[0]),
            customdata=customdata,
            hovertemplate=point + extra + ("<extra>%{fullData.name}</extra>" if name else "<extra></extra>"),
        ))
    fig = _figure(
        traces, title=title, barmode=barmode,
        x_title=labels.get(y if horizontal else x, y if horizontal else x),
        y_title=labels.get(x if horizontal else y, x if horizontal else y),
    )
    if categorical:
        ticks = data.drop_duplicates("_at").sort_values("_at")
        axis = {"tickmode": "array", "tickvals": ticks["_at"].tolist(), "ticktext": ticks["_tick"].tolist()}
        if horizontal:
            fig.update_yaxes(autorange="reversed", **axis)
        else:
            fig.update_xaxes(**axis)
    return fig


def line_chart(
    frame: pd.DataFrame,
    x: str,
    y: str,
    *,
    color: str | None = None,
    title: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> go.Figure:
    """Lines with markers of `y` over `x` (one line per `color` category)."""
    labels = dict(labels or {})
    data = chart_frame(frame, [color])
    colors = color_map(data[color]) if color else {}
    traces = [
        go.Scatter(
            x=rows[x].tolist(), y=rows[y].tolist(), mode="lines+markers", name=name,
            line={"color": colors.get(name, PALETTE[0])},
        )
        for name, rows in _categories(data, color)
    ]
    return _figure(traces, title=title, x_title=labels.get(x, x), y_title=labels.get(y, y))


def pie_chart(frame: pd.DataFrame, names: str, values: str, *, title: str | None = None) -> go.Figure:
    """A donut of `values` per `names`."""
    data = chart_frame(frame, [names])
    colors = color_map(data[names])
    labels = [str(v) for v in data[names]]
    trace = go.Pie(
        labels=labels, values=data[values].tolist(), hole=0.45, sort=False,
        marker={"colors": [colors[label] for label in labels]},
    )
    return go.Figure([trace], layout={"title": {"text": title}, "showlegend": True})


def timeline_chart(
    frame: pd.DataFrame, x: str, y: str, *, color: str | None = None, title: str | None = None,
    hover: Iterable[str] = (), labels: Mapping[str, str] | None = None,
) -> go.Figure:
    """Events as points on a time axis `x`, one row per `y` category."""
    labels, hover = dict(labels or {}), list(hover)
    data = chart_frame(frame, [y, color, *hover])
    colors = color_map(data[color]) if color else {}
    traces = []
    for name, rows in _categories(data, color):
        customdata, extra = _hover(rows, hover, labels)
        traces.append(go.Scatter(
            x=rows[x].tolist(), y=rows[y].tolist(), mode="markers", name=name,
            marker={"size": 11, "color": colors.get(name, PALETTE[0]), "line": {"width": 1, "color": "white"}},
            customdata=customdata, hovertemplate="%{x}" + extra + "<extra>%{y}</extra>",
        ))
    return _figure(traces, title=title, x_title=labels.get(x, x), y_title=labels.get(y, y))


def show_chart(fig: go.Figure, *, key: str | None = None, height: int = 340) -> None:
    """Render a Plotly figure with the house layout (the app's theme, legend below, compact margins)."""
    legend = fig.layout.showlegend if fig.layout.showlegend is not None else len(fig.data) > 1
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": (44 if fig.layout.title.text else 10) + (36 if legend else 0), "b": 10},
        title={"y": 0.98, "yanchor": "top", "x": 0, "xanchor": "left", "xref": "paper"},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0, "xanchor": "left"},
        hoverlabel={"namelength": -1},
    )
    st.plotly_chart(fig, key=key, config={"displaylogo": False})
