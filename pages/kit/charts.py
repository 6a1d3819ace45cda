"""Plotly figures for the screens: one colour-blind-safe palette, the same colour for the same thing."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages.kit.formats import md_text
from pages.kit.tables import display_frame

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
    shown = display_frame(frame)
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


def _values(trace: Any) -> list[Any]:
    """What a trace measures: a pie's values, a horizontal bar's x, anything else's y."""
    if isinstance(trace, go.Pie):
        data = trace.values
    elif getattr(trace, "orientation", None) == "h":
        data = trace.x
    else:
        data = trace.y
    return [] if data is None else list(data)


def has_data(fig: go.Figure) -> bool:
    """True when some trace has a figure other than nothing or zero (else Plotly draws an empty -1..1 axis)."""
    return any(value is not None and not pd.isna(value) and value != 0
               for trace in fig.data for value in _values(trace))


def show_chart(fig: go.Figure, *, key: str | None = None, height: int = 340, empty: str = "Nothing yet.") -> None:
    """Render a Plotly figure with the house layout (the app's theme, legend below, compact margins); a figure
    without data (no points, or only zeros) is its title and `empty` instead of an axis around nothing."""
    if not has_data(fig):
        title = fig.layout.title.text
        st.caption(md_text(f"{title}: {empty}" if title else empty))
        return
    legend = fig.layout.showlegend if fig.layout.showlegend is not None else len(fig.data) > 1
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": (44 if fig.layout.title.text else 10) + (36 if legend else 0), "b": 10},
        title={"y": 0.98, "yanchor": "top", "x": 0, "xanchor": "left", "xref": "paper"},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0, "xanchor": "left"},
        hoverlabel={"namelength": -1},
    )
    st.plotly_chart(fig, key=key, config={"displaylogo": False})
