"""Writes with feedback, confirmations, parsed form input, dialogs and refusals shown as text."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, time
from typing import Any

import streamlit as st

from billing_core.amounts import to_decimal
from billing_core.errors import BillingError
from pages.kit.formats import md_text
from pages.kit.session import clear_cached_reads

_FLASH = "_kit_flash"


def flash(key: str, kind: str, message: str) -> None:
    """Keep a message ('success', 'error', 'info' or 'warning') for `show_flash(key)` in the next render."""
    st.session_state.setdefault(_FLASH, {})[key] = (kind, message)


def show_flash(key: str) -> None:
    """Show (once) the message kept under `key`, as text."""
    kind, message = st.session_state.get(_FLASH, {}).pop(key, (None, None))
    if kind is not None:
        getattr(st, kind)(md_text(message))


def write(key: str, function: Callable[..., Any], *args: Any, success: str | Callable[[Any], str],
          clear: Iterable[str] = (), **kwargs: Any) -> bool:
    """Run a billing_core write; keep its outcome for `show_flash(key)`.

    On success every cached read is cleared (so the change shows at once), the form fields named in
    `clear` are emptied (so a second click cannot send the same form again) and `success` (a text, or a
    function of the result) is kept; a refusal keeps the database's message and the fields. Returns True
    on success.
    """
    try:
        result = function(*args, **kwargs)
    except BillingError as exc:
        flash(key, "error", str(exc))
        return False
    clear_cached_reads()
    clear_fields(clear)
    flash(key, "success", success(result) if callable(success) else success)
    return True


def clear_fields(keys: Iterable[str]) -> None:
    """Empty these widgets (call it before they render, e.g. in a button's callback).

    A text value is set to "" rather than forgotten: a forgotten widget keeps, in the browser, the value the
    browser sent, while a value set here is sent back to it (a text field shows empty; a picker given "", not
    one of its options, shows its first option). Other widgets are forgotten (back to their default).
    """
    for name in keys:
        if isinstance(st.session_state.get(name), str):
            st.session_state[name] = ""
        else:
            st.session_state.pop(name, None)


_PENDING = "_kit_pending"


def ask_confirmation(key: str, question: str, action: Callable[[], Any], success: str | Callable[[Any], str],
                     clear: Iterable[str] = ()) -> None:
    """Hold `action` until the person confirms `question` in `confirmation(key)`; on success the fields in
    `clear` are emptied. Ask only after the input was checked: the question is the last step."""
    st.session_state.setdefault(_PENDING, {})[key] = (question, action, success, tuple(clear))


def _confirm(key: str) -> None:
    pending = st.session_state.get(_PENDING, {}).pop(key, None)
    if pending is not None:
        _, action, success, clear = pending
        write(key, action, success=success, clear=clear)


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


def refusing(handler: Callable[..., None]) -> Callable[..., None]:
    """A form handler (given its widget's args) that stops quietly at Refused (its message is already kept)."""

    def run(*args: Any, **kwargs: Any) -> None:
        try:
            handler(*args, **kwargs)
        except Refused:
            pass

    return run


_DIALOG = "_kit_dialog"


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


def show_error(error: BillingError | str) -> None:
    """A refusal's message (written for people), shown as text, never a traceback."""
    st.error(md_text(str(error)))


def refuse(error: BillingError | str) -> None:
    """Show the refusal and stop the page: nothing after it renders."""
    show_error(error)
    st.stop()
