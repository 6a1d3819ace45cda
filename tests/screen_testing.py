"""Helpers for testing pages with streamlit.testing.v1.AppTest.

A page runs on its own, with the session state app.py would set after a login
(`actor_id`, `org_id`) and DATABASE_URL pointing at the test's database.
Plotly charts come back as UnknownElement: `chart_specs` reads their JSON.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
from streamlit.testing.v1 import AppTest
from streamlit.util import calc_hash

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the screens (pages/) import from the repository root


def open_page(name: str, actor_id: str | None, org_id: str | None = None, **state: Any) -> AppTest:
    """The screen pages/<name>.py, run once as `actor_id` with `org_id` chosen (as app.py's navigation runs it)."""
    at = AppTest.from_string(f"import pages\npages.show({name!r})\n", default_timeout=60)
    if actor_id is not None:
        at.session_state["actor_id"] = actor_id
    at.session_state["org_id"] = org_id
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def plain(text: str) -> str:
    """Markdown text with its backslash escapes and invisible word joiners (kit.md_text's guard against
    autolinks) removed: what a reader sees."""
    return re.sub(r"\\(.)", r"\1", text).replace("\u2060", "")


def metrics(at: AppTest) -> list[tuple[str, str]]:
    """Every metric as (label as shown, value)."""
    return [(plain(m.label), m.value) for m in at.metric]


def metric_values(at: AppTest, label: str) -> list[str]:
    """The values of every metric with this label, in page order."""
    return [value for shown, value in metrics(at) if shown == label]


def chart_specs(at: AppTest) -> list[dict[str, Any]]:
    """The Plotly figures on the page, as the JSON the browser gets."""
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def chart_titled(at: AppTest, title: str) -> dict[str, Any]:
    """The Plotly figure with this title."""
    for spec in chart_specs(at):
        if spec.get("layout", {}).get("title", {}).get("text") == title:
            return spec
    raise AssertionError(f"no chart titled {title!r}: {[s.get('layout', {}).get('title') for s in chart_specs(at)]}")


def trace_values(trace: dict[str, Any], axis: str) -> list[Any]:
    """A trace's x / y / values as a list, typed arrays (Plotly's {"dtype", "bdata"}) decoded."""
    data = trace.get(axis, [])
    if isinstance(data, dict) and "bdata" in data:
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=np.dtype(data["dtype"])).tolist()
    return list(data)


def dataframe(at: AppTest, *columns: str):
    """The first table on the page that has all these columns (its data, as the page passed it)."""
    for frame in at.dataframe:
        if set(columns) <= set(frame.value.columns):
            return frame.value
    raise AssertionError(f"no table with columns {columns}: {[list(f.value.columns) for f in at.dataframe]}")


def tables(at: AppTest) -> list:
    """Every table's data on the page, in page order."""
    return [frame.value for frame in at.dataframe]


def texts(at: AppTest) -> list[str]:
    """The bodies of every markdown-like element (markdown, caption, alerts), as sent."""
    bodies = []
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "title", "subheader", "header"):
        bodies.extend(el.value for el in at.get(kind))
    return bodies


def errors(at: AppTest) -> list[str]:
    """The texts of the page's error boxes, as a reader sees them."""
    return [plain(el.value) for el in at.error]


def no_html_allowed(at: AppTest) -> bool:
    """True when no markdown element on the page lets raw HTML through."""
    return not any(getattr(el.proto, "allow_html", False) for el in at.get("markdown"))


def registered_screens(at: AppTest) -> list[str]:
    """The screens (URL paths) app.py's navigation offered in the last run; the login's pages are not screens."""
    import pages

    # by title: the landing screen is registered twice (at "/" and, hidden, at its own path)
    names = {entry.title: entry.name for entry in pages.SCREENS}
    return sorted({names[info["page_name"]] for info in at._registered_pages.values()
                   if info.get("page_name") in names})


def switch_screen(at: AppTest, name: str) -> AppTest:
    """Open the screen `name` on the next run, as a click in the navigation would (AppTest.switch_page only
    knows file pages; a screen is a callable page, registered under its URL path)."""
    at._page_hash = calc_hash(name)  # what st.Page hashes for its URL path
    return at


def open_tab(at: AppTest, label: str, key: str) -> AppTest:
    """Choose the tab `label` of the tabs `key` (kit.tabbed draws only the chosen one) and run the screen."""
    at.session_state[key] = label
    return at.run()
