"""Usage over a chosen date range, for a member (their own) or an org admin (the organization's).

The screens put these under `kit.date_range_control`:

    date_range = kit.date_range_control(screen, key="my_usage_range")
    usage_summary_section(screen, "member", date_range)
    recent_charges_section(screen, "member", date_range)

Days and times are the organization's time zone's (the range says which); the database checks who may
read what (billing_core.usage), so a scope the actor may not read shows its refusal, nothing else.
"""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from math import ceil
from typing import Any, Literal

import pandas as pd
import streamlit as st

from billing_core import usage
from billing_core.errors import BillingError
from pages import kit
from pages.kit.ranges import range_text, zone_text
from pages.kit.session import Screen

Scope = Literal["member", "organization"]
PAGE_SIZES = (25, 50, 100, 200)
ALL = ""  # the service filter's "All services" (no service type is empty)
HOURLY_DAYS = 2  # a range of a day or two is charted per hour
HOUR_MS, DAY_MS = 3_600_000, 86_400_000  # an hour and a day on a Plotly date axis


def _user_of(screen: Screen, scope: Scope) -> str | None:
    """Whose usage the scope reads: the actor's own ("member"), or the whole organization's (None)."""
    if scope not in ("member", "organization"):
        raise ValueError(f"scope is 'member' or 'organization', not {scope!r}")
    return screen.actor_id if scope == "member" else None


def _span(screen: Screen, scope: Scope, date_range: usage.DateRange) -> tuple[Any, ...]:
    """The arguments every range read takes: actor, organization, user (None: all), from, to."""
    return (screen.actor_id, screen.require_org(), _user_of(screen, scope), date_range.date_from, date_range.date_to)


# ---------------------------------------------------------------- the summary


def usage_summary_section(screen: Screen, scope: Scope, date_range: usage.DateRange) -> None:
    """Totals over the range and credits per day by service; an organization's also by member and by service."""
    span = _span(screen, scope, date_range)
    st.subheader("My usage" if scope == "member" else "Usage")
    try:
        totals = kit.read(screen.db, usage.range_totals, *span)
        by_hour = date_range.days <= HOURLY_DAYS
        series = kit.read(screen.db, usage.hourly_usage if by_hour else usage.daily_usage, *span)
        services = kit.read(screen.db, usage.service_usage, *span)
        members = (kit.read(screen.db, usage.member_usage, screen.actor_id, span[1], date_range.date_from,
                            date_range.date_to) if scope == "organization" else None)
    except BillingError as exc:
        kit.show_error(exc)
        return
    totals_cards(totals, scope)
    if not totals.requests:
        st.caption(kit.md_text(f"No usage in {range_text(date_range)}."))
        return
    usage_chart(series, date_range, scope)
    if members is not None:
        breakdown(members, services)


def totals_cards(totals: usage.RangeTotals, scope: Scope) -> None:
    """Credits, dollars, requests, services (and, for an organization, members who used credits)."""
    cards = [
        ("Credits used", totals.credits_used, "credits", None),
        ("Dollars", totals.dollars, "money", "At the list price of $0.001 a credit."),
        ("Requests", totals.requests, "count", "Charged calls."),
        ("Services", totals.services, "count", "Distinct services used."),
    ]
    if scope == "organization":
        cards.append(("Members", totals.members, "count", "Members who used credits in the range."))
    for column, (label, value, kind, help) in zip(st.columns(len(cards)), cards):
        with column:
            kit.metric_card(label, value, kind, help=help)


def usage_chart(series: pd.DataFrame, date_range: usage.DateRange, scope: Scope) -> None:
    """Credits per day (per hour for a day or two) on the organization's clock, one colour per service."""
    by_hour = "hour" in series.columns
    x, step, unit = ("hour", HOUR_MS, "Hour") if by_hour else ("day", DAY_MS, "Day")
    shown = series.assign(service=series.service_type.map(kit.term))
    if by_hour:  # an hour's bar stands between its start and its end
        shown["hour"] = shown.hour + timedelta(minutes=30)
    figure = kit.bar_chart(
        shown, x, "credits_used", color="service", hover=["requests"], title=f"Credits per {unit.lower()}",
        labels={x: f"{unit} ({date_range.time_zone})", "credits_used": "Credits", "service": "Service",
                "requests": "Requests"},
    )
    # the axis spans the chosen range even where nothing was used; one day's bar is not the whole chart
    figure.update_traces(width=step * 0.8 * (1 if by_hour else min(1, date_range.days / 7)))
    if by_hour:
        span = [f"{date_range.date_from} 00:00", f"{date_range.date_to + timedelta(days=1)} 00:00"]
        figure.update_xaxes(type="date", tickformat="%H:%M\n%-d %b", hoverformat="%-d %b %H:00", range=span)
    else:
        span = [f"{date_range.date_from - timedelta(days=1)} 12:00", f"{date_range.date_to} 12:00"]
        figure.update_xaxes(type="date", tickformat="%-d %b", hoverformat="%-d %b %Y", range=span,
                            dtick=DAY_MS if date_range.days <= 14 else None)
    kit.show_chart(figure, key=f"{scope}_usage_chart")


def breakdown(members: pd.DataFrame, services: pd.DataFrame) -> None:
    """The organization's credits by member (bars and a table) and by service (a donut)."""
    by_member, by_service = st.columns(2)
    named = members.assign(email=members.email.map(_or_dash),
                           member=[name if current else f"{name} (former member)"
                                   for name, current in zip(members.display_name, members.is_member)])
    with by_member:
        kit.show_chart(
            kit.bar_chart(named, "member", "credits_used", key="user_id", horizontal=True, title="Credits by member",
                          labels={"member": "Member", "credits_used": "Credits"}),
            key="organization_usage_by_member",
        )
    with by_service:
        kit.show_chart(
            kit.pie_chart(services.assign(service=services.service_type.map(kit.term)), "service", "credits_used",
                          title="Credits by service"),
            key="organization_usage_by_service",
        )
    kit.table(
        named,
        {"member": kit.text_column("Member"), "email": kit.text_column("Email"),
         "credits_used": kit.credits_column("Credits"), "requests": kit.count_column("Requests")},
        key="organization_usage_members",
    )


# ---------------------------------------------------------------- the charges


def recent_charges_section(screen: Screen, scope: Scope, date_range: usage.DateRange) -> None:
    """The range's charges, newest first: paged, filtered by service, with request id and pricing; CSV of them all."""
    key = f"{scope}_charges"
    span = _span(screen, scope, date_range)
    st.subheader("My charges" if scope == "member" else "Charges")
    try:
        services = kit.read(screen.db, usage.service_usage, *span)
    except BillingError as exc:
        kit.show_error(exc)
        return
    if st.session_state.get(f"{key}_range") != span:  # another range or organization: back to the first page
        st.session_state[f"{key}_range"] = span
        st.session_state[f"{key}_page"] = 1
    service_column, size_column, page_column = st.columns(3)
    service = service_column.selectbox(
        "Service", [ALL, *services.service_type], key=f"{key}_service", on_change=_first_page, args=(key,),
        format_func=lambda code: "All services" if code == ALL else kit.term(code),
    ) or None
    size = size_column.selectbox("Rows per page", PAGE_SIZES, index=PAGE_SIZES.index(50), key=f"{key}_page_size",
                                 on_change=_first_page, args=(key,))
    matching = kit.read(screen.db, usage.range_totals, *span, service).requests
    pages = max(1, ceil(matching / size))
    st.session_state[f"{key}_page"] = min(st.session_state.get(f"{key}_page", 1), pages)
    page = page_column.number_input(f"Page (of {pages:,})", min_value=1, max_value=pages, step=1, key=f"{key}_page")
    rows = kit.read(screen.db, usage.charges, *span, service_type=service, limit=size, offset=(page - 1) * size)
    if rows.empty:
        st.caption(kit.md_text(f"No charges in {range_text(date_range)}."))
        return
    first = (page - 1) * size + 1
    st.caption(kit.md_text(f"{first:,}–{first + len(rows) - 1:,} of {kit.counted(matching, 'charge')}. "
                           f"{zone_text(date_range)}."))
    charges_table(rows, scope, date_range, key)
    exported = min(matching, usage.CHARGES_MAX)
    st.download_button(
        f"Download {'all ' if exported == matching else 'the newest '}{kit.counted(exported, 'charge')} (CSV)",
        data=lambda: charges_csv(screen, scope, date_range, service), mime="text/csv", key=f"{key}_csv",
        file_name=f"charges-{span[1]}-{date_range.date_from}-to-{date_range.date_to}.csv",
    )


def _or_dash(text: str | None) -> str:
    """Text as it is, or "—" where there is none (a grid would print None)."""
    return text if isinstance(text, str) and text else "—"


def _first_page(key: str) -> None:
    st.session_state[f"{key}_page"] = 1


def charges_table(rows: pd.DataFrame, scope: Scope, date_range: usage.DateRange, key: str) -> None:
    """One page of charges: when (in the organization's zone), who, service, credits, pricing, request id."""
    shown = rows.assign(service=rows.service_type.map(kit.term), request_id=rows.request_id.map(_or_dash),
                        explained=[pricing_text(p, h) for p, h in zip(rows.pricing, rows.hold)])
    columns = {"local_time": kit.datetime_column(f"When ({date_range.time_zone})")}
    if scope == "organization":
        columns["user_name"] = kit.text_column("Member")
    columns |= {
        "service": kit.text_column("Service"),
        "credits_used": kit.credits_column("Credits"),
        "explained": kit.text_column("Pricing", help="What the pricing engine recorded for the charge."),
        "request_id": kit.text_column("Request id"),
        "service_name": kit.text_column("Detail"),
        "dollars": st.column_config.NumberColumn("Dollars", format="$%.4f", help="At $0.001 a credit."),
    }
    kit.table(shown, columns, key=f"{key}_table")


def charges_csv(screen: Screen, scope: Scope, date_range: usage.DateRange, service_type: str | None) -> bytes:
    """Every charge of the range and service filter (up to usage.CHARGES_MAX) as formula-safe CSV."""
    rows = usage.charges(screen.db, *_span(screen, scope, date_range), service_type=service_type,
                         limit=usage.CHARGES_MAX)
    export = pd.DataFrame({
        f"Time ({date_range.time_zone})": rows.local_time.map(lambda t: f"{t:%Y-%m-%d %H:%M:%S}"),
        "Time (UTC)": rows.created_at.map(lambda t: t.astimezone(UTC).isoformat()),
        "Member": rows.user_name,
        "Email": rows.email,
        "Service": rows.service_type.map(kit.term),
        "Detail": rows.service_name,
        "Request id": rows.request_id,
        "Credits": rows.credits_used.map(kit.plain_number),
        "Dollars": rows.dollars.map(kit.plain_number),
        "Remaining after": rows.remaining_after.map(kit.plain_number),
        "Pricing": [pricing_text(p, h) for p, h in zip(rows.pricing, rows.hold)],
        "Pricing record": rows.pricing.map(lambda p: "" if p is None else json.dumps(p, default=str)),
    })
    return kit.csv_bytes(export)


# ---------------------------------------------------------------- the pricing explanation in words


def _units(counts: dict[str, Any]) -> str:
    """'1,000 input tokens, 500 output tokens': the usage counts that are not zero."""
    nouns = (("input_tokens", "input token"), ("output_tokens", "output token"), ("images", "image"),
             ("requests", "request"))
    return ", ".join(f"{kit.fmt_credits(counts[name])} {noun if counts[name] == 1 else noun + 's'}"
                     for name, noun in nouns if counts.get(name))


def _credits(value: Any) -> str:
    """'1 credit', '50 credits', '0.5 credits'."""
    return f"{kit.fmt_credits(value)} {'credit' if value == 1 else 'credits'}"


def pricing_text(pricing: dict[str, Any] | None, hold: dict[str, Any] | None = None) -> str:
    """The pricing engine's record of a charge as one line: the rule, the units and the price (its figures only)."""
    n, money = kit.fmt_credits, kit.fmt_exact_money
    held = f"settled from a hold of {_credits(hold['held_credits'])}" if hold else None
    if pricing is None:
        return f"Reported in credits by the service, {held}" if held else "Reported in credits by the service"
    units = _units(pricing.get("usage", {}))
    if pricing["method"] == "fixed_price":
        text = f"Fixed price: {_credits(pricing['credits_per_call'])} a call × {units}"
    elif pricing["method"] == "byok_fee":
        text = (f"{pricing['model']} on your own key ({units}): platform fee "
                f"{_credits(pricing['platform_fee_credits'])} a request")
    else:
        text = (f"{pricing['model']} ({units}): provider cost {money(pricing['provider_cost_usd'])} "
                f"× markup {n(pricing['markup'])}")
    return f"{text}, {held}" if held else text
