"""The members' allocations: who has how much left, and the forms to allocate or take back credits."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from billing_core import credits
from billing_core.usage import OrgOverview
from pages import kit
from pages.kit.session import Screen
from pages.sections.org_forms import Organization, ask_checked, credits_words


def allocations_section(screen: Screen, org: Organization, overview: OrgOverview, members: pd.DataFrame) -> None:
    """The allocations table (searchable; name and remaining first, so a phone shows them) and the two forms."""
    search = st.text_input("Search by name or email", key="allocation_search", placeholder="name or email")
    shown = kit.filter_rows(members, search, ["display_name", "email"])
    kit.table(
        shown.assign(role=shown.role.map(kit.term)) if not shown.empty else shown,
        {
            "display_name": kit.text_column("Name"),
            "remaining_credits": kit.credits_column("Remaining"),
            "usage_percent": kit.percent_bar_column("Used %"),
            "allocated_credits": kit.credits_column("Allocated"),
            "used_credits": kit.credits_column("Used"),
            "email": kit.text_column("Email"),
            "role": kit.text_column("Role"),
        },
        key="allocations_table",
        empty="No member matches." if search else "No members yet.",
    )
    st.caption(f"{len(shown)} of {kit.counted(len(members), 'member')} · click a column header to sort")
    allocate_col, reclaim_col = st.columns(2)
    with allocate_col:
        allocate_form(screen, org, overview)
    with reclaim_col:
        reclaim_form(screen, org)


def allocate_form(screen: Screen, org: Organization, overview: OrgOverview) -> None:
    """Allocate pool credits to a member; its question (or refusal) right below it."""
    with st.form("allocate_form"):
        st.markdown("**Allocate credits**")
        st.caption(f"Available in the pool: {kit.md_text(credits_words(overview.available_credits))}")
        st.selectbox("Member", list(org.people), format_func=org.person, key="allocate_user")
        st.text_input("Credits to allocate", key="allocate_credits", placeholder="a number of credits")
        st.form_submit_button("Allocate credits", key="allocate_submit", type="primary", on_click=ask_allocate,
                              args=(screen, org))
    kit.confirmation("allocate")


@kit.refusing
def ask_allocate(screen: Screen, org: Organization) -> None:
    """The "Allocate credits" form was sent: rehearse the allocation (amount, member, pool), then ask."""
    amount = kit.entered("allocate", "allocate_credits", "Credits to allocate")
    user_id = kit.chosen_member("allocate", "allocate_user", "Choose a member to allocate to.")
    name = org.people.get(user_id, user_id)
    ask_checked(
        screen, org, "allocate",
        lambda: credits.allocate(screen.db, screen.actor_id, org.org_id, user_id, amount),
        lambda remaining: f"Allocate {credits_words(amount)} to {name}? "
                          f"{name} then has {credits_words(remaining)} remaining.",
        success=lambda remaining: f"Allocated {credits_words(amount)}: {name} now has "
                                  f"{credits_words(remaining)} remaining.",
        clear=("allocate_credits",),
    )


def reclaim_form(screen: Screen, org: Organization) -> None:
    """Take unused credits back from a member (all unused when the amount is empty)."""
    with st.form("reclaim_form"):
        st.markdown("**Take back credits**")
        st.caption("Only unused credits can be taken back.")
        st.selectbox("Member", list(org.people), format_func=org.person, key="reclaim_user")
        st.text_input("Credits to take back (empty: all unused)", key="reclaim_credits", placeholder="all unused")
        st.form_submit_button("Take back credits", key="reclaim_submit", on_click=ask_reclaim, args=(screen, org))
    kit.confirmation("reclaim")


@kit.refusing
def ask_reclaim(screen: Screen, org: Organization) -> None:
    """The "Take back credits" form was sent: rehearse the take-back, then ask with the credits it returns."""
    amount = kit.entered("reclaim", "reclaim_credits", "Credits to take back", optional=True)
    user_id = kit.chosen_member("reclaim", "reclaim_user", "Choose a member to take credits back from.")
    name = org.people.get(user_id, user_id)
    ask_checked(
        screen, org, "reclaim",
        lambda: credits.reclaim(screen.db, screen.actor_id, org.org_id, user_id, amount),
        lambda taken: (f"Take back {'all ' if amount is None else ''}{credits_words(taken, 'unused')} from "
                       f"{name}? They return to the pool's available credits."),
        success=lambda taken: f"Took back {credits_words(taken)} from {name}: they are available in the pool again.",
        clear=("reclaim_credits",),
        nothing=lambda taken: None if taken else f"{name} has no unused credits: nothing to take back.",
    )
