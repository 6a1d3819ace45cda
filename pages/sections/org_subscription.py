"""The organization's subscription: its plan and state, and the forms to subscribe, change plan or cancel."""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st

from billing_core import plans, subscriptions
from billing_core.usage import OrgOverview
from pages import kit
from pages.kit.session import Screen
from pages.sections.org_forms import Organization, ask_checked, credits_words

PLAN_CHANGE_WHEN = {"now": "Now (prorated)", "period_end": "At the period end"}
CANCEL_WHEN = {"period_end": "At the period end", "now": "Now"}


def subscription_section(screen: Screen, org: Organization, overview: OrgOverview) -> None:
    """The plan, its state and price, what is scheduled; the forms that change it, each with its question."""
    catalogue = {entry.code: entry for entry in kit.read(screen.db, plans.catalogue) if not entry.retired}
    with st.container(border=True):
        st.markdown("**Subscription**")
        subscription_state(overview)
        if overview.is_live:
            change_col, cancel_col = st.columns(2)
            with change_col:
                plan_change_form(screen, org, overview, catalogue)
            with cancel_col:
                cancel_form(screen, org, overview)
        else:
            subscribe_form(screen, org, catalogue)


def subscription_state(overview: OrgOverview) -> None:
    """Plan, status, price and period end as cards; past due, a pending cancel or change, a trial in words."""
    if not overview.has_subscription:
        st.caption("No subscription yet.")
        return
    cycle = "year" if overview.billing_cycle == "yearly" else "month"
    plan_col, status_col, price_col, period_col = st.columns(4)
    with plan_col:
        kit.metric_card("Plan", overview.plan_name or overview.plan, "text")
    with status_col:
        kit.metric_card("Status", kit.term(overview.subscription_status), "text")
    with price_col:
        kit.metric_card(f"Price per {cycle}", overview.price_amount, "money")
    with period_col:
        period_end = overview.current_period_end
        kit.metric_card("Current period ends", f"{period_end:%Y-%m-%d}" if period_end else None, "text")
    if overview.subscription_status == "past_due":
        st.warning("The last invoice is unpaid: the subscription is past due.")
    if overview.cancel_at_period_end:
        st.info("The subscription ends with the current period.")
    if overview.scheduled_plan:
        st.info(kit.md_text(f"Moves to {overview.scheduled_plan_name} when the current period ends."))
    if overview.subscription_status == "trialing" and overview.trial_ends_at:
        st.info(f"Trial until {overview.trial_ends_at:%Y-%m-%d}.")
    if overview.subscription_status == "canceled" and overview.canceled_at:
        st.caption(f"Canceled on {overview.canceled_at:%Y-%m-%d}.")


def plan_label(entry: plans.CatalogueEntry) -> str:
    """A plan as the pickers show it: "Hybrid ($99.00/month)"."""
    return f"{entry.name} ({kit.fmt_money(entry.monthly_price)}/month)"


def included_change(current: plans.CatalogueEntry | None, new: plans.CatalogueEntry) -> str:
    """What a move to `new` does to the included credits, in the catalogue's figures."""
    before = current.included_credits if current else 0
    if before == new.included_credits:
        return f"Included credits stay at {credits_words(new.included_credits)} each billing period."
    return (f"Included credits change from {kit.fmt_credits(before)} to {credits_words(new.included_credits)} "
            "each billing period.")


def plan_change_form(screen: Screen, org: Organization, overview: OrgOverview,
                     catalogue: Mapping[str, plans.CatalogueEntry]) -> None:
    """Change plan, now (prorated) or at the period end; the question says the price and included credits."""
    others = [code for code in catalogue if code != overview.plan]
    with st.form("plan_change_form"):
        st.markdown("**Change plan**")
        st.selectbox("New plan", others, format_func=lambda code: plan_label(catalogue[code]), key="plan_change_plan")
        st.radio("When", list(PLAN_CHANGE_WHEN), horizontal=True, key="plan_change_when",
                 format_func=PLAN_CHANGE_WHEN.get)
        st.form_submit_button("Change plan", key="plan_change_submit", on_click=ask_plan_change,
                              args=(screen, org, overview, catalogue))
    kit.confirmation("plan_change")


def ask_plan_change(screen: Screen, org: Organization, overview: OrgOverview,
                    catalogue: Mapping[str, plans.CatalogueEntry]) -> None:
    """The "Change plan" form was sent: rehearse the change, then ask with its proration (or its date)."""
    code = st.session_state.get("plan_change_plan")
    if code not in catalogue:
        kit.flash("plan_change", "error", "Choose the plan to move to.")
        return
    new, name = catalogue[code], catalogue[code].name
    credits_line = included_change(catalogue.get(overview.plan), new)
    db, actor_id, org_id = screen.db, screen.actor_id, org.org_id
    if st.session_state.get("plan_change_when") == "now":
        ask_checked(
            screen, org, "plan_change",
            lambda: subscriptions.change_plan(db, actor_id, org_id, code),
            lambda change: (
                f"Move {org.name} to {name} now? For the rest of this period "
                f"({change.seconds_left / change.seconds_full:.1%} of it) the billing history records a credit of "
                f"{kit.fmt_money(change.credit)} for the current plan and a charge of {kit.fmt_money(change.charge)} "
                f"for {name}: {kit.fmt_money(abs(change.amount))} "
                f"{'owed by the organization' if change.amount >= 0 else 'owed to the organization'}. "
                f"{credits_line} Included credits are earned by the time on a plan: the current plan's not earned "
                f"yet are taken back, {name}'s are granted for the rest of the period, and included credits "
                "already used above the share earned reduce the credit."),
            success=lambda change: f"Now on {name}: {kit.fmt_money(change.amount)} recorded in the billing history.",
        )
    else:
        ask_checked(
            screen, org, "plan_change",
            lambda: subscriptions.schedule_change(db, actor_id, org_id, code),
            lambda at: f"Move {org.name} to {name} when the current period ends, on {at:%Y-%m-%d %H:%M %Z}? "
                       f"{kit.fmt_money(new.monthly_price)} a month from then. {credits_line}",
            success=lambda at: f"Scheduled: {name} from {at:%Y-%m-%d %H:%M %Z}.",
        )


def cancel_form(screen: Screen, org: Organization, overview: OrgOverview) -> None:
    """Cancel now or at the period end; a pending cancel or plan change can be dropped."""
    with st.form("cancel_form"):
        st.markdown("**Cancel subscription**")
        st.radio("When", list(CANCEL_WHEN), horizontal=True, key="cancel_when", format_func=CANCEL_WHEN.get)
        st.form_submit_button("Cancel subscription", key="cancel_submit", on_click=ask_cancel, args=(screen, org))
    kit.confirmation("cancel")
    if overview.cancel_at_period_end or overview.scheduled_plan:
        st.button(
            "Keep the subscription as it is" if overview.cancel_at_period_end else "Drop the scheduled change",
            key="reactivate",
            on_click=kit.write,
            args=("reactivate", subscriptions.reactivate, screen.db, screen.actor_id, org.org_id),
            kwargs={"success": "The subscription continues unchanged."},
        )
    kit.show_flash("reactivate")


def ask_cancel(screen: Screen, org: Organization) -> None:
    """The "Cancel subscription" form was sent: rehearse the cancel, then ask with what it credits."""
    at_end = st.session_state.get("cancel_when") != "now"
    db, actor_id, org_id = screen.db, screen.actor_id, org.org_id
    ask_checked(
        screen, org, "cancel",
        lambda: subscriptions.cancel(db, actor_id, org_id, at_period_end=at_end),
        lambda amount: cancel_question(org, at_end, amount),
        success="Canceled at the end of the period: nothing changes before then." if at_end
        else (lambda amount: f"Canceled: {kit.fmt_money(abs(amount))} credited in the billing history."),
    )


def cancel_question(org: Organization, at_end: bool, amount: object) -> str:
    """What canceling does, with the credit the rehearsal recorded when canceling now."""
    if at_end:
        return f"Cancel the subscription of {org.name} when the current period ends? It stays usable until then."
    return (f"Cancel the subscription of {org.name} now? The unused part of this period is credited in the billing "
            f"history ({kit.fmt_money(abs(amount or 0))}), less included credits used above the share earned so "
            "far; the included credits not earned yet are taken back.")


def subscribe_form(screen: Screen, org: Organization, catalogue: Mapping[str, plans.CatalogueEntry]) -> None:
    """Subscribe the organization to a plan of the catalogue."""
    with st.form("subscribe_form"):
        st.markdown("**Subscribe**")
        st.selectbox("Plan", list(catalogue), format_func=lambda code: plan_label(catalogue[code]),
                     key="subscribe_plan")
        st.form_submit_button("Subscribe", key="subscribe_submit", on_click=ask_subscribe,
                              args=(screen, org, catalogue))
    kit.confirmation("subscribe")


def ask_subscribe(screen: Screen, org: Organization, catalogue: Mapping[str, plans.CatalogueEntry]) -> None:
    """The "Subscribe" form was sent: rehearse the subscription, then ask."""
    code = st.session_state.get("subscribe_plan")
    if code not in catalogue:
        kit.flash("subscribe", "error", "Choose a plan to subscribe to.")
        return
    entry = catalogue[code]
    ask_checked(
        screen, org, "subscribe",
        lambda: subscriptions.create_subscription(screen.db, screen.actor_id, org.org_id, code),
        lambda _: f"Subscribe {org.name} to {entry.name} at {kit.fmt_money(entry.monthly_price)} a month, with "
                  f"{credits_words(entry.included_credits)} included each billing period?",
        success=f"Subscribed to {entry.name}.",
    )
