"""Account: who I am, my roles, change my password; system admins reset another user's password."""

from __future__ import annotations

import streamlit as st

import pages
from billing_core import auth
from billing_core.errors import BillingError, NotFound
from pages import kit
from pages.kit.session import Screen


def render(screen: Screen) -> None:
    """The Account screen."""
    st.title("Account")
    identity_section(screen)
    change_password_section(screen)
    if screen.roles.is_system_admin:
        reset_password_section(screen)


def identity_section(screen: Screen) -> None:
    """Name, login email and roles."""
    roles = screen.roles
    left, right = st.columns(2)
    with left:
        st.markdown("**Name**")
        st.text(roles.name)
        st.markdown("**Email** (your login)")
        st.text(roles.email)
    with right:
        st.markdown("**Roles**")
        st.text("\n".join(roles.labels) if roles.labels else "No organization yet")
    st.caption("Log out with the button in the sidebar.")


def change_password_section(screen: Screen) -> None:
    """Change my password; my other logins end, this one stays."""
    st.subheader("Change my password")
    with st.form("change_password", clear_on_submit=True):
        old = st.text_input("Current password", type="password")
        new = st.text_input("New password", type="password", help=auth.PASSWORD_RULES)
        repeat = st.text_input("New password again", type="password")
        submitted = st.form_submit_button("Change password")
    if not submitted:
        return
    try:
        ended = auth.change_password(screen.db, screen.actor_id, old, new, repeat=repeat,
                                     keep_session_id=st.session_state.get("billing_session_id"))
    except BillingError as exc:
        kit.show_error(exc)
    else:
        elsewhere = f"{kit.counted(ended, 'other login')} ended" if ended else "no other login was open"
        st.success(f"Password changed. This login stays open; {elsewhere}.")


def reset_password_section(screen: Screen) -> None:
    """A system admin gives a user a new password (shown once); every login of that user ends."""
    st.subheader("Reset a user's password")
    st.caption("For a user who forgot their password or is locked out: every login of that user ends.")
    with st.form("reset_password", clear_on_submit=True):
        email = st.text_input("User's email")
        reset = st.form_submit_button("Reset password")
    if not reset:
        return
    try:
        user_id = auth.user_id_for_email(screen.db, email)
        if user_id is None:
            raise NotFound(f"No user has the email {email.strip()!r}.")
        password = auth.generate_password()
        ended = auth.reset_password(screen.db, screen.actor_id, user_id, password)
    except BillingError as exc:
        kit.show_error(exc)
    else:
        st.success(kit.md_text(f"New password for {email.strip().lower()} ({kit.counted(ended, 'login')} ended). "
                               "It is shown only once:"))
        st.code(password, language=None)


if __name__ == "__main__":
    pages.run_app()  # Streamlit's old pages/ mode opened this file by its URL: the app, with its login, instead
