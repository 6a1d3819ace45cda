"""API keys on the screens: make one (its token shown once), list keys, revoke one after a question.

Shared by the organization admins' section (Billing periods screen) and the system admins' API keys
screen. Who may make, see and revoke which key is the database's rule (sql/routines/140_api_keys.sql);
the token is kept in the session only until the run that shows it.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from billing_core import api_keys
from billing_core.errors import BillingError
from pages import kit
from pages.kit.session import Screen
from pages.sections.system_reads import moments_as_text

_NEW_TOKEN = "api_key_new_token"  # {form key: (name, token)}, popped by the run that shows it


def scope_text(key: api_keys.ApiKey) -> str:
    """Where a key may act, in words."""
    if key.kind == "organization":
        return f"Organization {key.org_id}"
    scope = f"Charges for {', '.join(key.org_ids)}" if key.org_ids else "Charges for every organization"
    return scope + (", system scope" if key.system_scope else "")


_LIMIT_WORDS = {"reads_per_minute": "reads/min", "writes_per_minute": "writes/min",
                "subscription_changes_per_hour": "subscription changes/h", "charges_per_second": "charges/s"}


def limits_text(key: api_keys.ApiKey) -> str:
    """The limits in force, in words."""
    return ", ".join(f"{kit.fmt_count(value)} {_LIMIT_WORDS.get(name, name)}" for name, value in key.limits.items())


def keys_frame(keys: list[api_keys.ApiKey]) -> pd.DataFrame:
    """The keys as rows for a table (display only)."""
    frame = pd.DataFrame(
        [{"prefix": f"cbk_{key.prefix}_…", "name": key.name, "kind": kit.term(key.kind), "scope": scope_text(key),
          "limits": limits_text(key), "created_by": key.created_by, "created_at": key.created_at, "last_used_at": key.last_used_at,
          "status": "Revoked" if key.revoked_at else "Active", "key_id": key.key_id} for key in keys],
        columns=["prefix", "name", "kind", "scope", "limits", "created_by", "created_at", "last_used_at", "status", "key_id"],
    )
    return moments_as_text(frame, "created_at").pipe(moments_as_text, "last_used_at", missing="never")


def keys_table_section(keys: list[api_keys.ApiKey], *, key: str, empty: str) -> None:
    """A table of keys: prefix, name, scope, who made it and when, last use, status."""
    kit.table(
        keys_frame(keys),
        {
            "prefix": kit.text_column("Prefix", help="The start of the token, to recognize a key."),
            "name": kit.text_column("Name"),
            "kind": kit.text_column("Kind"),
            "scope": kit.text_column("Scope"),
            "limits": kit.text_column("Limits"),
            "created_by": kit.text_column("Created by", help="The key acts as this user."),
            "created_at": kit.text_column("Created (UTC)"),
            "last_used_at": kit.text_column("Last used (UTC)", help="Refreshed at most once a minute."),
            "status": kit.text_column("Status"),
        },
        key=key,
        empty=empty,
    )


def _keep_token(form: str, new: api_keys.NewKey) -> str:
    """After a key was made: keep its token for the next run only, and say what was made."""
    st.session_state.setdefault(_NEW_TOKEN, {})[form] = (new.key.name, new.token)
    return f"API key {new.key.name} created (prefix cbk_{new.key.prefix})."


def create(form: str, make: Callable[[str], api_keys.NewKey], clear: tuple[str, ...]) -> None:
    """A "Create key" form was sent: make the key from the name typed, or keep the database's refusal."""
    name = st.session_state.get(f"{form}_name") or ""
    kit.write(form, make, name, success=lambda new: _keep_token(form, new), clear=(f"{form}_name", *clear))


def new_token_section(form: str) -> None:
    """The token of the key just made, in this run only: it is gone from the session once shown."""
    shown = st.session_state.get(_NEW_TOKEN, {}).pop(form, None)
    if shown is None:
        return
    name, token = shown
    st.warning(kit.md_text(f"The token of {name}, shown only this once: copy it now and keep it secret. "
                           "It cannot be shown again (only its digest is kept); if it is lost, revoke the key "
                           "and make a new one."))
    st.code(token, language=None)


def revoke_section(screen: Screen, keys: list[api_keys.ApiKey], *, form: str) -> None:
    """Pick an active key and revoke it, after a question."""
    active = {key.key_id: key for key in keys if key.revoked_at is None}
    if active:
        choice, button = st.columns([3, 1], vertical_alignment="bottom")
        choice.selectbox("Key to revoke", list(active), key=f"{form}_key",
                         format_func=lambda key_id: f"{active[key_id].name} (cbk_{active[key_id].prefix}_…)")
        button.button("Revoke", key=f"{form}_ask", on_click=_ask_revoke, args=(screen, active, form))
    kit.confirmation(form)  # the question, or the outcome (also once the last active key is revoked)


def _ask_revoke(screen: Screen, active: dict[str, api_keys.ApiKey], form: str) -> None:
    key = active.get(st.session_state.get(f"{form}_key"))
    if key is None:
        kit.flash(form, "error", "Choose a key to revoke.")
        return
    kit.ask_confirmation(
        form,
        f"Revoke API key {key.name} (cbk_{key.prefix}_…)? Every request with it is refused from now on; "
        "this cannot be undone.",
        lambda: api_keys.revoke(screen.db, screen.actor_id, key.key_id),
        success=lambda revoked: f"API key {key.name} revoked." if revoked
        else f"API key {key.name} was already revoked: nothing changed.",
    )


def read_keys(screen: Screen, org_id: str | None) -> list[api_keys.ApiKey]:
    """The keys this admin may see (cached read); a refusal stops the page."""
    try:
        return kit.read(screen.db, api_keys.keys, screen.actor_id, org_id)
    except BillingError as exc:
        kit.refuse(exc)
