"""What the Pricing screen's dialogs share: a picker with its buttons, the field values they read, and the
"takes effect" choice, which a price change must make explicitly (no silent "now")."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

import streamlit as st

from pages import kit

Action = tuple[str, Callable[[Any], None]]


def chooser(key: str, label: str, options: dict[str, str], edit: Action, add: Action, *,
            more: Sequence[tuple[str, Callable[[Any], None], Callable[[Any], bool]]] = (),
            editable: Callable[[Any], bool] = lambda _: True) -> None:
    """A picker of `options` (value -> label) with an edit button for the picked one (when `editable`) and an add
    button; `more` adds buttons (label, action on the picked value, whether it applies to it) between them."""
    pick, *cols = st.columns([3, *[1] * (2 + len(more))], vertical_alignment="bottom")
    picked = pick.selectbox(label, list(options), key=f"{key}_pick", format_func=lambda value: options.get(value, value))
    actions = [(edit[0], edit[1], editable), *more]
    for n, (col, (text, action, applies)) in enumerate(zip(cols, actions, strict=False)):
        col.button(text, key=f"{key}_edit" if n == 0 else f"{key}_action{n}",
                   on_click=lambda act=action: act(value(f"{key}_pick")),
                   disabled=picked is None or not applies(picked))
    cols[-1].button(add[0], key=f"{key}_add", on_click=add[1], args=(None,))


def value(key: str) -> Any:
    """A widget's value in this session (None before it rendered)."""
    return st.session_state.get(key)


def optional(key: str) -> str | None:
    """A text field's content, None when left empty (the figure then follows its default)."""
    text = (value(key) or "").strip()
    return text or None


def typed(figure: Any) -> str:
    """A stored figure as it is typed back into a field: 0.0025, 1500."""
    return kit.plain_number(figure)


def effective_preset(key: str) -> dict[str, Any]:
    """Widget values for `kit.effective_input(key)`: no choice made yet (a price change must say when), the date
    and time ready at tomorrow 00:00 UTC."""
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date()
    return {**kit.preset_effective(key, tomorrow, time(0, 0)), f"{key}_when": None}


WHEN_MISSING = "Choose when the change takes effect: now, or at the date and time below."


def when_chosen(key: str) -> bool:
    """True when `kit.effective_input(key)` has a choice; else says what to choose, in the open dialog."""
    if value(f"{key}_when") is None:
        kit.show_error(WHEN_MISSING)
        return False
    return True


def moment_text(moment: datetime) -> str:
    """'2026-12-03 00:00 UTC'."""
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def when_text(moment: datetime | None) -> str:
    """'now', or 'on 2026-12-03 00:00 UTC'."""
    return "now" if moment is None else f"on {moment_text(moment)}"


def available_text(flag: bool) -> str:
    """'yes' or 'withdrawn'."""
    return "yes" if flag else "withdrawn"
