"""Who acts, on which organization, through which engine: the Screen every section is given; cached reads."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import streamlit as st
from sqlalchemy.engine import Engine

from billing_core import auth, database
from billing_core.errors import BillingError
from pages.kit.formats import md_text

ACTOR_KEY = "actor_id"  # set by the login (pages/kit/login.py) for this browser session
ORG_KEY = "org_id"  # the organization chosen at the top of the page (and in the URL's ?org=)


@dataclass(frozen=True)
class Screen:
    """The explicit inputs of a page's sections: the acting user, their roles, the chosen organization, the engine."""

    db: Engine
    actor_id: str
    roles: auth.UserRoles
    org_id: str | None

    @property
    def is_org_admin(self) -> bool:
        """The actor administers the chosen organization."""
        return self.org_id is not None and self.roles.is_admin_of(self.org_id)

    def require_org(self) -> str:
        """The chosen organization; without one, says how to choose it and stops the page."""
        if not self.org_id:
            st.info("You are not a member of any organization yet.")
            st.stop()
        return self.org_id


def current_screen(db: Engine | None = None) -> Screen:
    """This run's Screen from the session the login set; without a login, says "Please log in." and stops."""
    db = db or engine()
    actor_id = require_actor()
    try:
        roles = auth.user_roles(db, actor_id)
    except BillingError as exc:
        st.error(md_text(str(exc)))
        st.stop()
    return Screen(db=db, actor_id=actor_id, roles=roles, org_id=chosen_org())


READ_TTL_SECONDS = 30


def require_actor() -> str:
    """The logged-in user's id; without one, says "Please log in." and stops the page."""
    actor_id = st.session_state.get(ACTOR_KEY)
    if not actor_id:
        st.warning("Please log in.")
        st.stop()
    return actor_id


def chosen_org() -> str | None:
    """The organization chosen in the sidebar selector (None: the user has none)."""
    return st.session_state.get(ORG_KEY)


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
