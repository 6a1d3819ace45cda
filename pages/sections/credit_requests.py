"""Requests for more credits, both sides: a member asks on My credits (`my_request_section`, per organization
card); the organization's admins answer on Organization billing (`credit_requests_section`).

Every form is checked by the database's own rule before any question (a preview that writes nothing), the
database's refusal stays the last word, and a form is emptied once it succeeded. Notes, reasons and emails
are people's words: shown with st.text or in table cells, never as markdown (which would make a URL or an
email address in them a live link, escaped or not).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import streamlit as st

from billing_core import credit_requests, orders
from billing_core.errors import BillingError
from billing_core.usage import MemberCard
from pages import kit
from pages.kit.session import Screen


def _when(moment: Any) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def state_text(request: Any, *, mine: bool, reason: bool = False) -> str:
    """Where a request stands, in words, for the member who asked (`mine`) or for the admins; with the decline
    `reason` only where it is shown as text (a table cell)."""
    asked = f"{kit.fmt_credits(request.credits)} credits"
    if request.status == "pending":
        return f"{'You asked' if mine else 'Asked'} for {asked} on {_when(request.created_at)}: waiting for an answer."
    if request.status == "approved":
        whose = "your" if mine else "the member's"
        edited = "" if request.approved_credits == request.credits else f" ({asked} asked)"
        return (f"Approved by {request.decided_by} on {_when(request.decided_at)}: "
                f"{kit.fmt_credits(request.approved_credits)} credits added to {whose} allocation{edited}.")
    if request.status == "declined":
        why = ""
        if reason:
            why = f" Reason: {request.decline_reason}" if request.decline_reason else " No reason given."
        return f"The request for {asked} was declined by {request.decided_by} on {_when(request.decided_at)}.{why}"
    who = "you" if mine else "the member"
    return f"The request for {asked} was withdrawn by {who} on {_when(request.decided_at)}."


def _worth(screen: Screen, credits: Any) -> str:
    price = kit.read(screen.db, orders.credit_list_price)
    return f"{kit.fmt_worth(credits, price)} at the list price of {kit.fmt_exact_money(price)} a credit"


# ---------------------------------------------------------------- the member's side (My credits)


def _field(org_id: str, name: str) -> str:
    return f"request_credits_{org_id}_{name}"


def _ask_request(screen: Screen, card: MemberCard) -> None:
    """The request form was sent: check it with the database's rule, then ask to confirm."""
    form = _field(card.org_id, "form")
    amount = kit.entered(form, _field(card.org_id, "amount"), "Credits to request", optional=True)
    note = (st.session_state.get(_field(card.org_id, "note")) or "").strip() or None
    if amount is None:
        kit.flash(form, "error", "Credits to request is missing: type a number of credits greater than 0.")
        return
    try:
        credit_requests.preview_request(screen.db, screen.actor_id, card.org_id, amount, note)
    except BillingError as exc:
        kit.flash(form, "error", str(exc))
        return
    kit.ask_confirmation(
        form,
        f"Ask the admins of {card.org_name} for {kit.fmt_credits(amount)} more credits (worth {_worth(screen, amount)})?"
        + (" Your note goes with it." if note else ""),
        lambda: credit_requests.request(screen.db, screen.actor_id, card.org_id, amount, note),
        success=lambda asked: f"Request sent: the admins of {card.org_name} see it now; their answer shows here.",
        clear=[_field(card.org_id, "amount"), _field(card.org_id, "note")],
    )


def my_request_section(screen: Screen, card: MemberCard) -> None:
    """On my card of one organization: my latest request's state (withdraw it while pending), or the form to ask."""
    form = _field(card.org_id, "form")
    try:
        mine = kit.read(screen.db, credit_requests.mine, screen.actor_id, card.org_id)
    except BillingError as exc:
        kit.show_error(exc)
        return
    latest = next(mine.itertuples(), None)
    if latest is not None:
        (st.info if latest.status == "pending" else st.caption)(kit.md_text(state_text(latest, mine=True)))
        if latest.status == "declined":
            st.text(f"Reason: {latest.decline_reason}" if latest.decline_reason else "No reason given.")
        if latest.note:
            st.text(f"Your note: {latest.note}")
    if latest is not None and latest.status == "pending":
        st.button("Withdraw my request", key=_field(card.org_id, "withdraw"), on_click=kit.write,
                  args=(form, credit_requests.withdraw, screen.db, screen.actor_id, card.org_id, latest.request_id),
                  kwargs={"success": "Request withdrawn: nothing was allocated."})
    else:
        with st.expander("Request more credits", expanded=False):
            with st.form(form):
                st.text_input("Credits to request", key=_field(card.org_id, "amount"), placeholder="a number of credits")
                st.text_input("Note for the admins (optional)", key=_field(card.org_id, "note"), max_chars=500,
                              placeholder="What the credits are for")
                st.form_submit_button("Request more credits", key=_field(card.org_id, "submit"),
                                      on_click=kit.refusing(partial(_ask_request, screen, card)))
    kit.confirmation(form)


# ---------------------------------------------------------------- the admins' side (Organization billing)


def _answer_field(request_id: str, name: str) -> str:
    return f"credit_request_{request_id}_{name}"


def _ask_approval(screen: Screen, request: Any) -> None:
    """"Approve" was pressed: check the amount and the pool with the database's rule, then ask to confirm."""
    form = _answer_field(request.request_id, "answer")
    amount = kit.entered(form, _answer_field(request.request_id, "credits"), "Credits to allocate", optional=True)
    try:
        preview = credit_requests.preview_approval(screen.db, screen.actor_id, screen.org_id, request.request_id,
                                                   amount)
    except BillingError as exc:
        kit.flash(form, "error", str(exc))
        return
    kit.ask_confirmation(
        form,
        f"Approve {kit.fmt_credits(preview.credits)} credits for {request.member}? Their allocation becomes "
        f"{kit.fmt_credits(preview.allocated_after)} credits; the pool keeps "
        f"{kit.fmt_credits(preview.available_after)} credits available.",
        lambda: credit_requests.approve(screen.db, screen.actor_id, screen.org_id, request.request_id, amount),
        success=lambda done: f"Approved: {kit.fmt_credits(done.approved_credits)} credits allocated to "
                             f"{request.member}.",
        clear=[_answer_field(request.request_id, "credits"), _answer_field(request.request_id, "reason")],
    )


def _decline(screen: Screen, request: Any) -> None:
    """"Decline" was pressed: decline with the reason typed (the database checks it)."""
    reason = (st.session_state.get(_answer_field(request.request_id, "reason")) or "").strip() or None
    kit.write(_answer_field(request.request_id, "answer"), credit_requests.decline, screen.db, screen.actor_id,
              screen.org_id, request.request_id, reason,
              success=f"Declined: {request.member} sees it" + (" with your reason." if reason else "."),
              clear=[_answer_field(request.request_id, "credits"), _answer_field(request.request_id, "reason")])


def pending_request_section(screen: Screen, request: Any) -> None:
    """One waiting request: who asks for what and why, what they hold now, and the answer (approve or decline)."""
    form = _answer_field(request.request_id, "answer")
    with st.container(border=True):
        st.markdown(kit.md_text(f"{request.member} asks for {kit.fmt_credits(request.credits)} credits, worth "
                                f"{_worth(screen, request.credits)}"))
        st.text(f"Email: {request.email}")
        st.caption(kit.md_text(
            f"Sent {_when(request.created_at)}. Holds {kit.fmt_credits(request.allocated_credits)} allocated, "
            f"{kit.fmt_credits(request.used_credits)} used, {kit.fmt_credits(request.remaining_credits)} remaining."))
        if request.note:
            st.text(f"Note: “{request.note}”")
        with st.form(form):
            st.text_input("Credits to allocate", key=_answer_field(request.request_id, "credits"),
                          value=kit.plain_number(request.credits),
                          help="What they asked for; change it to allocate more or less.")
            st.text_input("Reason, if you decline (optional)", key=_answer_field(request.request_id, "reason"),
                          max_chars=500)
            approve, decline = st.columns(2)
            approve.form_submit_button("Approve", key=_answer_field(request.request_id, "approve"), type="primary",
                                       on_click=kit.refusing(partial(_ask_approval, screen, request)))
            decline.form_submit_button("Decline", key=_answer_field(request.request_id, "decline"),
                                       on_click=_decline, args=(screen, request))
        kit.confirmation(form)


def credit_requests_section(screen: Screen) -> None:
    """The organization's requests for more credits: the waiting ones to answer, the answered ones as a list."""
    org_id = screen.require_org()
    st.subheader("Credit requests")
    try:
        requests = kit.read(screen.db, credit_requests.of_organization, screen.actor_id, org_id)
    except BillingError as exc:
        kit.show_error(exc)
        return
    waiting = requests[requests.status == "pending"]
    answered = requests[requests.status != "pending"]
    st.caption(f"{kit.counted(len(waiting), 'request')} waiting for an answer. Approving allocates the credits "
               "from the pool's available credits." if len(waiting) else "No request is waiting for an answer.")
    for request in waiting.itertuples():
        pending_request_section(screen, request)
    for request in answered.itertuples():  # an answer just given: its outcome shows once, under the list
        kit.show_flash(_answer_field(request.request_id, "answer"))
    if not answered.empty:
        with st.expander(f"Answered requests ({len(answered)})"):
            shown = answered.assign(outcome=[state_text(r, mine=False, reason=True) for r in answered.itertuples()],
                                    note=answered.note.fillna("—"))
            kit.table(shown, {
                "member": kit.text_column("Member"),
                "outcome": kit.text_column("Outcome"),
                "note": kit.text_column("Note"),
            }, key="credit_requests_answered")
