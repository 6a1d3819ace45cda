"""The revenue sections of the system overview: period job, headline cards, plan mix, MRR movements."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import streamlit as st

from billing_core import analytics, periods
from pages import kit
from pages.kit.session import Screen
from pages.sections.system_reads import month_count, month_label, system_read


def period_job_section(screen: Screen) -> None:
    """When the period job last ran and what it did (or that it never ran)."""
    last_run = kit.read(screen.db, periods.last_run, screen.actor_id)
    if last_run is None:
        st.warning("The period job has never run: period resets, grants, expiries and hold releases wait for "
                   "`billing periods run` (an operator runs it from cron).")
        return
    st.caption(
        f"Period job last ran {last_run.finished_at or last_run.started_at:%Y-%m-%d %H:%M %Z}: "
        f"{kit.counted(last_run.orgs_processed, 'organization')}, "
        f"{kit.counted(last_run.periods_closed, 'period')} closed, {kit.counted(last_run.lots_expired, 'lot')} expired, "
        f"{kit.counted(last_run.holds_released, 'hold')} released"
        + (f", {last_run.orgs_failed} failed" if last_run.orgs_failed else "") + "."
    )


def _change_text(metric: analytics.Metric, fmt: Callable[[Decimal], str]) -> str:
    """A change with its sign first ("-$19.00 (-6.4%)"), so that st.metric colours it."""
    text = ("-" if metric.change < 0 else "") + fmt(abs(metric.change))
    if metric.change_percent is not None:
        text += f" ({'-' if metric.change_percent < 0 else '+'}{kit.fmt_percent(abs(metric.change_percent))})"
    return text


def headline_section(screen: Screen, overview: analytics.SystemOverview) -> None:
    """MRR, ARR, paying subscriptions and 30-day credits, each against 30 days earlier."""
    st.caption(f"Figures as of {overview.as_of:%Y-%m-%d %H:%M} UTC; changes against 30 days earlier, "
               "each organization on the plan and price it had then.")
    cards = [
        ("MRR", overview.mrr, "money", kit.fmt_money, "30 days ago"),
        ("ARR", overview.arr, "money", kit.fmt_money, "30 days ago"),
        ("Active subscriptions", overview.active_subscriptions, "count", kit.fmt_count, "30 days ago"),
        ("Credits used (30 days)", overview.credits_used_30d, "credits", kit.card_credits, "Previous 30 days"),
    ]
    for column, (label, metric, kind, fmt, earlier) in zip(st.columns(4), cards, strict=True):
        with column:
            kit.metric_card(label, metric.value, kind, delta=_change_text(metric, fmt), delta_kind="text",
                            delta_color="normal" if metric.change else "off",  # no change: no green arrow
                            help=f"{earlier}: {fmt(metric.previous)}")
    st.caption(
        f"Active subscriptions are the paying ones (active or past due), the ones MRR counts; "
        f"{overview.past_due_subscriptions} past due. {kit.counted(overview.organizations, 'organization')}; "
        f"{kit.counted(overview.requests_30d, 'charged request')} in the last 30 days."
    )


def plan_mix_section(screen: Screen) -> None:
    """Paying subscriptions and MRR per plan: two charts, the table and its export."""
    st.subheader("Plan mix")
    mix = system_read(screen, analytics.plan_mix)
    if mix.empty:
        st.caption("No paying subscription yet.")
        return
    left, right = st.columns(2)
    with left:
        kit.show_chart(kit.bar_chart(mix, "plan_name", "subscriptions", title="Paying subscriptions per plan",
                                     labels={"plan_name": "Plan", "subscriptions": "Subscriptions"}),
                       key="plan_mix_count")
    with right:
        kit.show_chart(kit.bar_chart(mix, "plan_name", "mrr", title="MRR per plan",
                                     labels={"plan_name": "Plan", "mrr": "MRR ($)"}), key="plan_mix_mrr")
    kit.table(mix, {
        "plan_name": kit.text_column("Plan"),
        "subscriptions": kit.count_column("Paying subscriptions"),
        "mrr": kit.money_column("MRR"),
        "mrr_share_percent": kit.percent_column("Share of MRR"),
    }, key="plan_mix_table")
    kit.csv_download(mix, "plan_mix.csv", "Download plan mix (CSV)", key="plan_mix_csv")


MRR_COLUMNS = {
    "month": kit.text_column("Month"),
    "mrr_end": kit.money_column("MRR at month end"),
    "new_mrr": kit.money_column("New"),
    "reactivation_mrr": kit.money_column("Reactivation"),
    "expansion_mrr": kit.money_column("Expansion"),
    "contraction_mrr": kit.money_column("Contraction"),
    "churned_mrr": kit.money_column("Churned"),
    "net_new_mrr": kit.money_column("Net new MRR"),
    "paying_orgs_start": kit.count_column("Paying at start"),
    "churned_orgs": kit.count_column("Churned organizations"),
    "logo_churn_percent": kit.percent_column("Logo churn"),
    "arr_end": kit.money_column("ARR at month end"),
}


def mrr_movements_section(screen: Screen) -> None:
    """MRR movements and logo churn per month: the chart oldest to newest, the table newest first."""
    st.subheader("MRR movements")
    months = system_read(screen, analytics.mrr_months, months=month_count())
    shown = analytics.newest_first(months, ["mrr_start", "mrr_end", *analytics.MOVEMENTS])
    if shown.empty:
        st.caption("No subscription paid in these months.")
        return
    chronological = shown.iloc[::-1]
    left, right = st.columns(2)
    with left:
        kit.show_chart(kit.bar_chart(
            analytics.movement_bars(chronological), "month", "mrr", color="movement", barmode="relative",
            title="MRR movements per month", labels={"month": "Month", "mrr": "MRR ($)", "movement": "Movement"},
        ), key="mrr_movements")
    with right:
        kit.show_chart(kit.line_chart(month_label(chronological), "month", "mrr_end", title="MRR at month end",
                                      labels={"month": "Month", "mrr_end": "MRR ($)"}), key="mrr_line")
    st.caption(
        "Calendar months (UTC), newest first; the current month runs to now. Plan changes count as expansion or "
        "contraction, an organization paying again after a cancellation as reactivation; past due still counts in "
        "MRR. Logo churn: organizations paying at the month's start that stopped during it, in percent of those "
        "paying at its start."
    )
    kit.table(month_label(shown), MRR_COLUMNS, key="mrr_months_table")
    kit.csv_download(shown, "mrr_months.csv", "Download MRR movements (CSV)", key="mrr_months_csv")
