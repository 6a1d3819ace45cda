"""Account: who I am, my roles, change my password; system admins reset another user's password."""

from __future__ import annotations

import streamlit as st

import screen_kit as kit
from billing_core import auth, database
from billing_core.errors import BillingError, NotFound

actor_id = st.session_state.get("actor_id")
if not actor_id:
    st.info("Please log in.")
    st.stop()

db = database.app_engine()
try:
    roles = auth.user_roles(db, actor_id)
except BillingError as exc:
    kit.refuse(exc)

st.title("Account")
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

st.subheader("Change my password")
with st.form("change_password", clear_on_submit=True):
    old = st.text_input("Current password", type="password")
    new = st.text_input("New password", type="password", help=auth.PASSWORD_RULES)
    repeat = st.text_input("New password again", type="password")
    submitted = st.form_submit_button("Change password")
if submitted:
    try:
        ended = auth.change_password(
            db, actor_id, old, new, repeat=repeat, keep_session_id=st.session_state.get("billing_session_id")
        )
    except BillingError as exc:
        kit.show_error(exc)
    else:
        elsewhere = f"{ended} other login{'s' if ended != 1 else ''}" if ended else "no other login"
        st.success(f"Password changed. This login stays open; {elsewhere} ended.")

if roles.is_system_admin:
    st.subheader("Reset a user's password")
    st.caption("For a user who forgot their password or is locked out: every login of that user ends.")
    with st.form("reset_password", clear_on_submit=True):
        email = st.text_input("User's email")
        reset = st.form_submit_button("Reset password")
    if reset:
        try:
            user_id = auth.user_id_for_email(db, email)
            if user_id is None:
                raise NotFound(f"No user has the email {email.strip()!r}.")
            password = auth.generate_password()
            ended = auth.reset_password(db, actor_id, user_id, password)
        except BillingError as exc:
            kit.show_error(exc)
        else:
            st.success(kit.md_text(f"New password for {email.strip().lower()} ({ended} login(s) ended). "
                                   "It is shown only once:"))
            st.code(password, language=None)
