"""The screens: one registry of what the app shows, to whom, and how each screen is run.

A screen is a module in this folder with `render(screen: Screen) -> None`: a short composition of
named sections, each a function of the Screen (actor, roles, organization, engine). Importing a
screen module renders nothing; app.py's navigation runs `show(name)` after the login.
"""

from __future__ import annotations

import importlib
import runpy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from pages.kit.session import ORG_KEY, Screen, current_screen

FOLDER = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ScreenEntry:
    """One screen: its module (also its URL path), title, icon, navigation section, who may open it, and
    whether it shows one organization (the organization choice then heads it)."""

    name: str
    title: str
    icon: str
    section: str
    allowed: Callable[[Screen], bool]
    org_scoped: bool


def _everyone(screen: Screen) -> bool:
    return True


def _org_admin(screen: Screen) -> bool:
    return screen.is_org_admin


def _system_admin(screen: Screen) -> bool:
    return screen.roles.is_system_admin


def _any_admin(screen: Screen) -> bool:
    return screen.roles.is_system_admin or screen.is_org_admin


SCREENS = [
    ScreenEntry("my_credits", "My credits", ":material/toll:", "Billing", _everyone, True),
    ScreenEntry("org_billing", "Organization billing", ":material/account_balance:", "Billing", _org_admin, True),
    ScreenEntry("billing_settings", "Billing periods", ":material/event_repeat:", "Billing", _org_admin, True),
    ScreenEntry("system_overview", "System overview", ":material/monitoring:", "Administration", _system_admin, False),
    ScreenEntry("system_organizations", "Organizations", ":material/corporate_fare:", "Administration", _system_admin,
                False),
    ScreenEntry("system_credits", "Credits", ":material/toll:", "Administration", _system_admin, False),
    ScreenEntry("system_past_due", "Past due", ":material/credit_card_off:", "Administration", _system_admin, False),
    ScreenEntry("pricing", "Pricing", ":material/sell:", "Administration", _system_admin, False),
    ScreenEntry("api_keys", "API keys", ":material/key:", "Administration", _system_admin, False),
    ScreenEntry("audit_log", "Audit log", ":material/history:", "Administration", _any_admin, True),
    ScreenEntry("account", "Account", ":material/person:", "Account", _everyone, False),
]

# the screen a login lands on: the first of these the user may open
LANDING = ["system_overview", "my_credits", "org_billing", "account"]


def allowed_screens(screen: Screen) -> list[ScreenEntry]:
    """The screens this actor may open with this organization chosen, in the registry's order."""
    return [entry for entry in SCREENS if entry.allowed(screen)]


def landing(entries: list[ScreenEntry]) -> str | None:
    """The name of the screen a login opens first, among `entries`."""
    names = {entry.name for entry in entries}
    return next((name for name in LANDING if name in names), None)


def _is_script(name: str) -> bool:
    """True while the screen `name` is still a script (no `render(screen)`): it runs as Streamlit would run it."""
    return "\ndef render(" not in (FOLDER / f"{name}.py").read_text()


def render(name: str, screen: Screen) -> None:
    """Run the screen `name` for `screen`."""
    if _is_script(name):
        runpy.run_path(str(FOLDER / f"{name}.py"), run_name="__page__")
        return
    importlib.import_module(f"pages.{name}").render(screen)


@st.cache_resource(show_spinner=False)
def warm_up() -> None:
    """Once per process, while its first login form waits for a person: pay the first-use costs the first
    login paid (the screens' modules imported, Plotly's validators of each trace kind loaded)."""
    import plotly.graph_objects as go

    for entry in SCREENS:
        if not _is_script(entry.name):
            importlib.import_module(f"pages.{entry.name}")
    for module in ("analytics", "alerts", "api_keys", "audit", "credits", "invitations", "orders", "organizations", "periods",
                   "plans", "pricing", "subscriptions", "usage"):
        importlib.import_module(f"billing_core.{module}")
    figure = go.Figure([go.Bar(x=["a"], y=[1]), go.Scatter(x=["a"], y=[1]), go.Pie(labels=["a"], values=[1])])
    figure.update_layout(title={"text": "warm-up"}, barmode="stack")
    figure.to_json()


def show(name: str) -> None:
    """Run the screen `name` for this session's login and organization (what a test or the navigation calls)."""
    render(name, current_screen())


def open_screen(name: str, org_id: str | None = None) -> None:
    """Switch to the screen `name` (a click through), showing the organization `org_id` when given."""
    if org_id is not None:
        st.session_state[ORG_KEY] = org_id
    # st.switch_page finds a registered page by its URL path; the navigation registered the real one
    st.switch_page(st.Page(_registered, title=name, url_path=name))


def _registered() -> None:
    """Stands for a screen app.py's navigation registered (st.switch_page matches it by URL path)."""


def run_app() -> None:
    """Run app.py (its login, then the screen the URL names): for a screen file that Streamlit's old pages/
    mode ran on its own by its URL, which can happen on the first run of a server process."""
    runpy.run_path(str(FOLDER.parent / "app.py"), run_name="__main__")
