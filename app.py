"""The billing app: the login, the organization choice, then the screens this user's roles allow.

The screens and who may open them are listed once, in pages/__init__.py; the login and the browser
session live in pages/kit/login.py; this script composes them for one run.
"""

from __future__ import annotations

import functools

import streamlit as st

import pages
from billing_core import auth, database, invitations
from billing_core.errors import BillingError
from pages import kit
from pages.kit import login
from pages.kit.session import ORG_KEY, Screen

ORG_PARAM = "org"  # the URL's ?org=<id>: the choice survives a reload and a copied link


def _organization(choices: list[auth.OrgChoice]) -> str | None:
    """The organization this run shows: the session's choice, else the URL's, else the first one the user has."""
    state = st.session_state
    ids = [choice.org_id for choice in choices]
    for wanted in (state.get(ORG_KEY), st.query_params.get(ORG_PARAM)):
        if wanted in ids:
            return wanted
    return ids[0] if ids else None


def _choose_organization(choices: list[auth.OrgChoice], org_id: str | None) -> None:
    """At the top of an organization's screen: which organization it shows, and the choice among the user's."""
    if org_id is None:
        return
    if len(choices) == 1:
        only = choices[0]
        st.caption(kit.md_text(f"{only.name}" + (f" · you are {only.role}" if only.role else "")))
        return
    labels = {c.org_id: f"{c.name} · {c.role}" if c.role else c.name for c in choices}
    st.session_state["organization_choice"] = org_id  # follows a click-through that set org_id

    def chosen() -> None:
        st.session_state[ORG_KEY] = st.session_state["organization_choice"]

    st.selectbox("Organization", list(labels), format_func=labels.__getitem__, key="organization_choice",
                 on_change=chosen, help="Every screen shows this organization; the link keeps it.")


def _sidebar(url: str, roles: auth.UserRoles) -> None:
    """Who is logged in, and the logout button."""
    with st.sidebar:
        st.markdown("**Logged in as**")
        st.text(f"{roles.name}\n{roles.email}")
        st.caption(kit.md_text(" · ".join(roles.labels)) if roles.labels else "No organization yet")
        login.logout_button(url)


def _invitation_notice(db, user_id: str) -> None:
    """A notice while invitations wait for this user's answer (on My credits)."""
    waiting = len(kit.read(db, invitations.mine, user_id))
    if waiting:
        st.sidebar.info(f"{kit.counted(waiting, 'invitation')} to an organization waiting for your answer: "
                        "accept or decline on My credits.")


def _navigate(screen: Screen, choices: list[auth.OrgChoice]) -> None:
    """The navigation of the screens this user may open; the chosen one runs under the organization choice."""
    entries = pages.allowed_screens(screen)
    default = pages.landing(entries)
    sections: dict[str, list[st.Page]] = {}
    by_name: dict[str, st.Page] = {}
    org_scoped: set[str] = set()
    for entry in entries:
        run = functools.partial(pages.render, entry.name, screen)
        if entry.name == default:
            # Streamlit serves its default page at "/" only: a hidden twin keeps the landing screen's own
            # path (a link or bookmark to "/system_overview" opens it instead of "page not found")
            sections.setdefault(entry.section, []).append(
                st.Page(run, title=entry.title, icon=entry.icon, url_path="start", default=True))
            twin = st.Page(run, title=entry.title, url_path=entry.name, visibility="hidden")
            sections[entry.section].append(twin)
        else:
            twin = st.Page(run, title=entry.title, icon=entry.icon, url_path=entry.name)
            sections.setdefault(entry.section, []).append(twin)
        by_name[entry.name] = twin
        if entry.org_scoped:
            org_scoped.update({entry.name, "" if entry.name == default else entry.name})
    wanted = login.wanted_page()
    current = st.navigation(sections)
    if wanted in by_name and wanted != default and by_name[wanted].url_path != current.url_path:
        st.switch_page(by_name[wanted])
    if current.url_path in org_scoped:
        _choose_organization(choices, screen.org_id)
    current.run()


def main() -> None:
    """One run of the app."""
    login.begin_run()
    st.set_page_config(page_title="Organization billing", page_icon="💳", layout="wide")
    try:
        url = login.prepared_database()
        db = database.app_engine(url)  # the app's role: what 990_access.sql grants billing_app
    except BillingError as exc:
        kit.refuse(exc)
    user_id = login.logged_in_user(db, url, [entry.name for entry in pages.SCREENS])
    if user_id is None:
        pages.warm_up()  # the login form is on screen: the first login need not pay the first imports
        return
    roles = auth.user_roles(db, user_id)
    choices = auth.organization_choices(db, roles)
    org_id = _organization(choices)
    st.session_state[ORG_KEY] = org_id
    if org_id:
        st.query_params[ORG_PARAM] = org_id
    _sidebar(url, roles)
    _invitation_notice(db, user_id)
    _navigate(Screen(db=db, actor_id=user_id, roles=roles, org_id=org_id), choices)


main()
