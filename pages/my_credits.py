"""My credits: what I hold and used in each of my organizations, what it is worth, and how to get more."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd
import streamlit as st

import pages
from billing_core import alerts, invitations, orders, periods, usage
from billing_core.errors import BillingError
from billing_core.usage import MemberCard
from pages import kit
from pages.kit.session import Screen
from pages.sections.credit_requests import my_request_section
from pages.sections.individual_balance import personal_order_section
from pages.sections.usage import recent_charges_section, usage_summary_section


def render(screen: Screen) -> None:
    """The My credits screen."""
    st.title("My credits")
    try:
        cards = kit.read(screen.db, usage.member_cards, screen.actor_id)
        invited = kit.read(screen.db, invitations.mine, screen.actor_id)
    except BillingError as exc:
        kit.refuse(exc)
    invitations_section(screen, invited)
    if not cards:
        st.info("You belong to no organization yet: an organization admin can invite you; "
                "their invitation shows here for you to accept.")
        personal_order_section(screen, None)
        return
    scope = screen.org_id if screen.org_id in {card.org_id for card in cards} else None
    st.subheader("My organizations")
    for card in sorted(cards, key=lambda c: c.org_id != scope):  # the chosen organization first
        card_section(screen, card, card.org_id == scope)
    usage_section(screen, cards, scope)
    if len(cards) > 1:
        comparison_section(cards)


def invitations_section(screen: Screen, invited: pd.DataFrame) -> None:
    """Invitations to an organization waiting for my answer: accept or decline each."""
    for invitation in invited.itertuples():
        with st.container(border=True):
            st.markdown(kit.md_text(f"{invitation.invited_by} invites you to {invitation.org_name} as "
                                    f"{kit.term(invitation.role)} (since {invitation.created_at:%Y-%m-%d})."))
            accept, decline = st.columns(2)
            accept.button("Accept", key=f"accept_invitation_{invitation.invitation_id}", type="primary",
                          on_click=kit.write,
                          args=("invitations", invitations.accept, screen.db, screen.actor_id, invitation.invitation_id),
                          kwargs={"success": f"You joined {invitation.org_name}."})
            decline.button("Decline", key=f"decline_invitation_{invitation.invitation_id}", on_click=kit.write,
                           args=("invitations", invitations.decline, screen.db, screen.actor_id,
                                 invitation.invitation_id),
                           kwargs={"success": f"You declined the invitation to {invitation.org_name}."})
    kit.show_flash("invitations")


def _day(moment: datetime | None, zone: str) -> str:
    return "—" if moment is None else f"{moment.astimezone(ZoneInfo(zone)):%Y-%m-%d}"


def _worth(screen: Screen, credits) -> str:
    return kit.fmt_worth(credits, kit.read(screen.db, orders.credit_list_price))


def card_section(screen: Screen, card: MemberCard, chosen: bool) -> None:
    """One organization: what I hold, since when Used counts, its worth in dollars, my alert, how to get more."""
    zone = kit.read(screen.db, periods.settings, screen.actor_id, card.org_id).timezone
    name = card.org_name
    with st.container(border=True):
        marks = [m for m, on in (("default", card.is_default), ("chosen above", chosen)) if on]
        st.markdown(f"**{kit.md_text(name)}**" + (f" · {' · '.join(marks)}" if marks else ""))
        plan = "Individual balance" if card.is_personal else (
            f"Plan: {card.plan_name or card.plan}" if card.plan else "No plan")
        status = f" ({kit.term(card.subscription_status)})" if card.subscription_status else ""
        inactive = "" if card.org_status == "active" else f" · organization {kit.term(card.org_status)}"
        role = {"admin": "an admin", "member": "a member"}.get(card.role, kit.term(card.role))
        st.caption(kit.md_text(f"{plan}{status} · you are {role}{inactive}"))
        alerts_section(screen, card)  # first: what needs doing
        kit.metric_card("Remaining", kit.card_credits(card.remaining_credits), "text",
                        help=f"{kit.fmt_credits(card.remaining_credits)} credits you can still spend here until the "
                             "next reset (credits held for calls in progress are not counted).")
        allocated, used = st.columns(2)
        with allocated:
            kit.metric_card("Allocated", kit.card_credits(card.allocated_credits), "text",
                            help=f"{kit.fmt_credits(card.allocated_credits)} credits given to you for this period.")
        with used:
            kit.metric_card("Used", kit.card_credits(card.used_credits), "text",
                            help=f"{kit.fmt_credits(card.used_credits)} credits spent since "
                                 f"{_day(card.used_since, zone)}.")
        since = _day(card.used_since, zone)
        st.progress(min(float(card.usage_percent) / 100, 1.0),
                    text=f"{kit.fmt_percent(card.usage_percent)} used since {since}")
        st.caption(kit.md_text(
            f"Worth {_worth(screen, card.remaining_credits)} remaining of {_worth(screen, card.allocated_credits)} allocated, at the "
            f"list price of {kit.fmt_exact_money(kit.read(screen.db, orders.credit_list_price))} a credit (what credits cost when ordered). "
            f"Used counts from {since}, the start of this period; "
            + (f"the next reset is {_day(card.next_reset, zone)}" if card.next_reset else "no reset is scheduled")
            + f" (dates in {zone})."))
        if card.is_personal:
            personal_order_section(screen, card)
        else:
            if card.usage_percent >= 75:
                st.caption(kit.md_text(f"Running low? Ask the admins of {name} for more credits: "
                                       "their answer shows on this card."))
            my_request_section(screen, card)


def alerts_section(screen: Screen, card: MemberCard) -> None:
    """My 90% alert in this organization, in my words, with what to do and a way to dismiss it."""
    try:
        mine = kit.read(screen.db, alerts.my_alerts, screen.actor_id, card.org_id)
    except BillingError as exc:
        kit.show_error(exc)
        return
    ask = "buy credits below" if card.is_personal else "request more credits below"
    for alert in mine.itertuples():
        st.warning(kit.md_text(
            f"You have used {kit.fmt_percent(card.usage_percent)} of your credits in {card.org_name} "
            f"({kit.fmt_credits(card.used_credits)} of {kit.fmt_credits(card.allocated_credits)}): {ask} before "
            "they run out; at 0 remaining, charges are refused."))
        st.button("Dismiss", key=f"dismiss_alert_{alert.id}", on_click=kit.write,
                  args=(f"my_alerts_{card.org_id}", alerts.resolve, screen.db, screen.actor_id, card.org_id,
                        int(alert.id)),
                  kwargs={"success": "Alert dismissed."})
    kit.show_flash(f"my_alerts_{card.org_id}")


def usage_section(screen: Screen, cards: list[MemberCard], scope: str | None) -> None:
    """My usage over a chosen date range in one of my organizations: the chosen one, else my default one.

    A range's days are an organization's (its time zone), so the range views show one organization at a time;
    the comparison below puts all of mine side by side.
    """
    shown = next((card for card in cards if card.org_id == scope), cards[0])  # cards come default first
    st.subheader(kit.md_text(f"My usage in {shown.org_name}"))
    st.caption("Choose the organization at the top." if scope else
               "Your default organization; choose another at the top.")
    in_org = replace(screen, org_id=shown.org_id)
    date_range = kit.date_range_control(in_org, key="my_usage_range")
    usage_summary_section(in_org, "member", date_range)
    recent_charges_section(in_org, "member", date_range)


def comparison_section(cards: list[MemberCard]) -> None:
    """My organizations side by side: allocation, use and what remains."""
    st.subheader("My organizations compared")
    compared = usage.comparison_frame(cards)
    bars = compared.melt(id_vars=["org_id", "org_name"], value_vars=["allocated_credits", "used_credits",
                                                                     "remaining_credits"],
                         var_name="figure", value_name="credits")
    bars["figure"] = bars["figure"].str.replace("_credits", "", regex=False)
    kit.show_chart(kit.bar_chart(bars, "org_name", "credits", color="figure", barmode="group", key="org_id",
                                 title="Allocation per organization",
                                 labels={"org_name": "Organization", "credits": "Credits", "figure": ""}),
                   key="my_org_comparison")
    shown = compared.assign(plan_name=compared.plan_name.fillna("—"), role=compared.role.map(kit.term))
    kit.table(shown, {
        "org_name": kit.text_column("Organization"),
        "remaining_credits": kit.credits_column("Remaining"),
        "usage_percent": kit.percent_bar_column("Used %"),
        "allocated_credits": kit.credits_column("Allocated"),
        "used_credits": kit.credits_column("Used"),
        "credits_used_30d": kit.credits_column("Used (30 days)"),
        "requests_30d": kit.count_column("Requests (30 days)"),
        "plan_name": kit.text_column("Plan"),
        "role": kit.text_column("Role"),
    }, key="my_org_table")


if __name__ == "__main__":
    pages.run_app()  # Streamlit's old pages/ mode opened this file by its URL: the app, with its login, instead
