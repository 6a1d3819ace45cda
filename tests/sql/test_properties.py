"""Property-based: random sequences of credit operations against a plain Python model.

A hypothesis state machine runs add credits / allocate / reclaim / deduct
(with and without request ids, retries included) / remove member / re-add
member over two organizations and four users, with amounts that must be
refused mixed in. A small Decimal model says what every figure should be;
after every step the pools (reports.pool), every membership's allocation
(user_multi_org_credits) and ledger.verify are checked against it. A refused
operation must raise the exact domain error the model predicts and leave every
ledger table exactly as it was.

The database is per test function, not per hypothesis example: each example
uses its own id prefix, so examples never see each other's rows.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from billing_core import credits, invitations, ledger, organizations, reports
from billing_core.database import fetch
from billing_core.errors import (
    AllocationInactive,
    AlreadyExists,
    InsufficientCredits,
    InsufficientPoolCredits,
    InvalidAmount,
    NotAMember,
    PermissionDenied,
    RequestConflict,
    RuleViolation,
)
from tests.ledger_state import snapshot

Q = Decimal("0.000001")  # the ledger's smallest credit
MAX_PER_OPERATION = Decimal(10**12)
MAX_POOL = Decimal(10**13)
ZERO = Decimal(0)

USERS = ("u0", "u1", "u2", "u3")
# u1 and u2 belong to both organizations; u0 only to o0, u3 only to o1
INITIAL_MEMBERS = ({"u0", "u1", "u2"}, {"u1", "u2", "u3"})
SERVICES = (("llm", "gpt-4o"), ("company_enrichment", "Company enrichment"))

_example_numbers = itertools.count()


# --------------------------------------------------------------------------- the model


@dataclass
class Allocation:
    allocated: Decimal
    used: Decimal = ZERO

    @property
    def remaining(self) -> Decimal:
        return self.allocated - self.used


@dataclass(frozen=True)
class Charge:
    """A successful deduction carrying a request id: what a retry must match and get back."""

    user: str
    credits: Decimal
    service: tuple[str, str]
    remaining_after: Decimal


@dataclass
class OrgModel:
    total: Decimal = ZERO
    closed_used: Decimal = ZERO
    members: set[str] = field(default_factory=set)
    active: dict[str, Allocation] = field(default_factory=dict)
    had_allocation: set[str] = field(default_factory=set)  # users with a closed allocation here
    charges: dict[str, Charge] = field(default_factory=dict)  # request id -> first charge

    @property
    def allocated(self) -> Decimal:
        return sum((a.allocated for a in self.active.values()), ZERO)

    @property
    def used(self) -> Decimal:
        return self.closed_used + sum((a.used for a in self.active.values()), ZERO)

    @property
    def available(self) -> Decimal:
        return self.total - self.allocated


def amount_error(value) -> type[Exception] | None:
    """InvalidAmount when the ledger must refuse `value` as a number of credits, else None."""
    if isinstance(value, float):
        return InvalidAmount
    number = as_decimal(value)
    if number is None or not number.is_finite() or number <= 0 or number > MAX_PER_OPERATION:
        return InvalidAmount
    if number != number.quantize(Q):
        return InvalidAmount
    return None


def as_decimal(value) -> Decimal | None:
    """The model's reading of an amount given as Decimal, int or text (None when not a number)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    try:
        return Decimal(str(value).replace(",", ""))
    except ArithmeticError:
        return None


# --------------------------------------------------------------------------- amounts

valid_small = st.decimals(min_value=Q, max_value=Decimal(5_000), places=6)


def present(data: st.DataObject, number: Decimal):
    """The same valid number as Decimal, int, plain text, or text with thousands separators."""
    forms = [number, str(number), f"{number:,f}"]
    if number == number.to_integral_value():
        forms.append(int(number))
    return data.draw(st.sampled_from(forms), label="form")


def draw_amount(data: st.DataObject, reference: Decimal | None):
    """A credit amount, often valid, sometimes one the ledger must refuse.

    `reference` is what the operation can take at most (available, remaining):
    amounts at it, just within it and just over it are drawn on purpose.
    """
    # hypothesis leans towards the first choice of a list: a valid amount comes first
    kinds = ["small", "small", "zero", "negative", "too_precise", "not_a_number", "too_large"]
    if reference is not None and reference > 0:
        kinds = ["within", "within", "within", "within", "exactly", "over", "over"] + kinds
    kind = data.draw(st.sampled_from(kinds), label="amount kind")
    if kind == "small":
        return present(data, data.draw(valid_small))
    if kind == "within":
        return present(data, data.draw(st.decimals(min_value=Q, max_value=reference, places=6)))
    if kind == "exactly":
        return present(data, reference)
    if kind == "over":
        return present(data, reference + data.draw(st.decimals(min_value=Q, max_value=Decimal(100), places=6)))
    if kind == "zero":
        return data.draw(st.sampled_from([0, "0", Decimal("0.000000"), Decimal("-0"), "0.0"]))
    if kind == "negative":
        return -data.draw(valid_small)
    if kind == "too_precise":
        # a seventh decimal: 1.0000001, 5.0000009...
        return data.draw(valid_small) + Decimal("0.0000001") * data.draw(st.integers(1, 9))
    if kind == "not_a_number":
        return data.draw(st.sampled_from([Decimal("NaN"), "NaN", "Infinity", "-Infinity", "abc", "", 1.5]))
    return data.draw(st.sampled_from([MAX_PER_OPERATION + Q, Decimal("1e13"), "1e400", 10**15]))


def snapshot_but_allocation_times(db) -> dict:
    """The ledger snapshot, with allocations compared on their figures only (not updated_at)."""
    state = snapshot(db)
    state["user_credit_allocations"] = [
        tuple(row) for row in fetch(
            db,
            "select org_id, id, user_id, allocated_credits, used_credits, is_active, closed_at"
            " from user_credit_allocations order by org_id, id",
        )
    ]
    return state


# --------------------------------------------------------------------------- the machine


class LedgerMachine(RuleBasedStateMachine):
    """Two organizations, four users, one admin per organization, all ids fresh per example."""

    db = None  # set by the test: the engine on this test's database

    def __init__(self) -> None:
        super().__init__()
        db = self.db
        prefix = f"p{next(_example_numbers)}-{uuid.uuid4().hex[:6]}"
        self.orgs = [f"{prefix}-o0", f"{prefix}-o1"]
        self.users = {name: f"{prefix}-{name}" for name in USERS}
        self.admins = [f"{prefix}-a0", f"{prefix}-a1"]
        self.model = {org: OrgModel() for org in self.orgs}
        for index, org in enumerate(self.orgs):
            organizations.create_organization(db, None, org, f"Org {index} of {prefix}")
            organizations.create_user(db, None, self.admins[index], f"{self.admins[index]}@example.com")
            organizations.add_member(db, None, org, self.admins[index], "admin")
        for name, user in self.users.items():
            organizations.create_user(db, None, user, f"{user}@example.com", f"User {name}")
        for index, org in enumerate(self.orgs):
            for name in sorted(INITIAL_MEMBERS[index]):
                organizations.add_member(db, None, org, self.users[name])
                self.model[org].members.add(self.users[name])
        self.next_request = itertools.count()

    # ------------------------------------------------------------------ helpers

    def refused(self, error: type[Exception], action) -> None:
        """`action` raises exactly `error` and leaves every ledger table as it was."""
        before = snapshot(self.db)
        with pytest.raises(Exception) as caught:
            action()
        assert type(caught.value) is error, f"expected {error.__name__}, got {caught.value!r}"
        assert str(caught.value).strip(), "a refusal must say why"
        assert snapshot(self.db) == before, "a refused operation changed the ledger"

    def steer(self, data: st.DataObject, user: str, candidates: set[str]) -> str:
        """Usually `user`'s id; sometimes one of `candidates` (members who hold or used credits,
        users who left), so that the interesting transitions happen often enough."""
        if candidates and data.draw(st.booleans(), label="steer"):
            return data.draw(st.sampled_from(sorted(candidates)), label="steered user")
        return self.users[user]

    def draw_actor(self, data: st.DataObject, org_index: int) -> tuple[str | None, bool]:
        """(actor, allowed): the trusted operator, the org's admin, or someone without the role."""
        kind = data.draw(
            st.sampled_from(["operator", "admin", "admin", "admin", "admin", "other_admin", "member"]), label="actor"
        )
        if kind == "operator":
            return None, True
        if kind == "admin":
            return self.admins[org_index], True
        if kind == "other_admin":
            return self.admins[1 - org_index], False
        return self.users[data.draw(st.sampled_from(USERS), label="acting user")], False

    # ------------------------------------------------------------------ rules

    @initialize(data=st.data())
    def fund_and_allocate(self, data: st.DataObject) -> None:
        """Start most examples with money in the pools and some members holding credits."""
        for org in self.orgs:
            model = self.model[org]
            bought = data.draw(st.sampled_from([10_000, 100, Decimal("12345.678901"), 0]), label="bought")
            if bought:
                assert credits.add_credits(self.db, None, org, bought, "0.1") == bought
                model.total += bought
            for user_id in sorted(model.members):
                share = data.draw(st.sampled_from([Decimal("250.5"), 10, 1, 0]), label="share")
                if 0 < share <= model.available:
                    assert credits.allocate(self.db, None, org, user_id, share) == share
                    model.active[user_id] = Allocation(Decimal(share))

    def add_credits(self, org_index: int, user: str, data: st.DataObject) -> None:
        org = self.orgs[org_index]
        model = self.model[org]
        kind = data.draw(st.sampled_from(["amount", "amount", "amount", "max"]), label="add kind")
        amount = MAX_PER_OPERATION if kind == "max" else draw_amount(data, None)
        paid = data.draw(st.sampled_from([0, Decimal("0.0001"), Decimal("9.99"), "10", Decimal("1234.5678")]),
                         label="paid")
        actor, _ = self.draw_actor(data, org_index)

        error = amount_error(amount)
        if error is None and actor is not None:
            error = PermissionDenied  # only the operator (or a system admin) enters a purchase directly
        if error is None:
            list_price = max((as_decimal(amount) * 10).to_integral_value(ROUND_CEILING) / 10000, Decimal("0.0001"))
            if Decimal(paid) == 0 or Decimal(paid) > list_price:
                error = InvalidAmount  # free credits are a grant; no price above the list price
        if error is None and model.total + as_decimal(amount) > MAX_POOL:
            error = InvalidAmount
        if error is not None:
            self.refused(error, lambda: credits.add_credits(self.db, actor, org, amount, paid))
            return
        total = credits.add_credits(self.db, actor, org, amount, paid)
        model.total += as_decimal(amount)
        assert total == model.total

    def allocate(self, org_index: int, user: str, data: st.DataObject) -> None:
        org, user_id = self.orgs[org_index], self.users[user]
        model = self.model[org]
        amount = draw_amount(data, model.available)
        actor, allowed = self.draw_actor(data, org_index)

        error = amount_error(amount)
        if error is None and not allowed:
            error = PermissionDenied
        if error is None and user_id not in model.members:
            error = NotAMember
        if error is None and as_decimal(amount) > model.available:
            error = InsufficientPoolCredits
        if error is not None:
            self.refused(error, lambda: credits.allocate(self.db, actor, org, user_id, amount))
            return
        remaining = credits.allocate(self.db, actor, org, user_id, amount)
        allocation = model.active.setdefault(user_id, Allocation(ZERO))
        allocation.allocated += as_decimal(amount)
        assert remaining == allocation.remaining

    def reclaim(self, org_index: int, user: str, data: st.DataObject) -> None:
        org = self.orgs[org_index]
        model = self.model[org]
        user_id = self.steer(data, user, {u for u, a in model.active.items() if a.remaining > 0})
        allocation = model.active.get(user_id)
        everything = data.draw(st.booleans(), label="reclaim everything unused")
        amount = None if everything else draw_amount(data, allocation.remaining if allocation else None)
        actor, allowed = self.draw_actor(data, org_index)

        error = amount_error(amount) if amount is not None else None
        if error is None and not allowed:
            error = PermissionDenied
        if error is None and user_id not in model.members:
            error = NotAMember
        if error is None and allocation is None:
            error = AllocationInactive
        if error is None and amount is not None and as_decimal(amount) > allocation.remaining:
            error = InsufficientCredits
        if error is not None:
            self.refused(error, lambda: credits.reclaim(self.db, actor, org, user_id, amount))
            return
        expected = allocation.remaining if amount is None else as_decimal(amount)
        if expected == 0:
            # nothing unused to take back: answers 0 and writes nothing
            before = snapshot(self.db)
            assert credits.reclaim(self.db, actor, org, user_id, amount) == 0
            assert snapshot(self.db) == before
            return
        taken = credits.reclaim(self.db, actor, org, user_id, amount)
        allocation.allocated -= expected
        assert taken == expected

    def deduct(self, org_index: int, user: str, data: st.DataObject) -> None:
        org = self.orgs[org_index]
        model = self.model[org]
        user_id = self.steer(data, user, {u for u, a in model.active.items() if a.remaining > 0})
        service = data.draw(st.sampled_from(SERVICES), label="service")
        allocation = model.active.get(user_id)
        amount = draw_amount(data, allocation.remaining if allocation else None)

        modes = ["none", "none", "fresh", "fresh"]
        if model.charges:
            modes += ["retry", "retry", "retry_changed"]
        other = self.model[self.orgs[1 - org_index]]
        if other.charges:
            modes.append("other_orgs_id")  # request ids are per organization
        mode = data.draw(st.sampled_from(modes), label="request id mode")
        request_id = None
        if mode == "fresh":
            request_id = f"req-{next(self.next_request)}"
        elif mode == "other_orgs_id":
            request_id = data.draw(st.sampled_from(sorted(other.charges)), label="request id")
        elif mode in ("retry", "retry_changed"):
            request_id = data.draw(st.sampled_from(sorted(model.charges)), label="request id")
            first = model.charges[request_id]
            user_id, service = first.user, first.service
            amount = present(data, first.credits)  # the same number, maybe written differently
            if mode == "retry_changed":
                change = data.draw(st.sampled_from(["user", "amount", "service"]), label="change")
                if change == "user":
                    user_id = self.users[data.draw(st.sampled_from([u for u in USERS if self.users[u] != user_id]))]
                elif change == "amount":
                    amount = first.credits + data.draw(st.sampled_from([Q, Decimal(1), -Q]))
                    if amount <= 0:
                        amount = first.credits + Q
                else:
                    service = next(s for s in SERVICES if s != first.service)

        def action():
            return credits.deduct(self.db, org, user_id, amount, *service, request_id=request_id)

        error = amount_error(amount)
        first = model.charges.get(request_id) if request_id is not None else None
        if error is None and first is not None:
            if (first.user, first.credits, first.service) != (user_id, as_decimal(amount), service):
                error = RequestConflict
            else:
                # a retry: charges nothing more, answers as the first call did. Compared
                # without the allocations' updated_at, which a retry moves since 3ecd2e4
                # (see test_a_retry_rewrites_nothing below)
                before = snapshot_but_allocation_times(self.db)
                assert action() == first.remaining_after
                assert snapshot_but_allocation_times(self.db) == before
                return
        allocation = model.active.get(user_id)
        if error is None and user_id not in model.members:
            error = NotAMember
        if error is None and allocation is None:
            error = AllocationInactive if user_id in model.had_allocation else InsufficientCredits
        if error is None and as_decimal(amount) > allocation.remaining:
            error = InsufficientCredits
        if error is not None:
            self.refused(error, action)
            return
        remaining = action()
        allocation.used += as_decimal(amount)
        assert remaining == allocation.remaining
        if request_id is not None:
            model.charges[request_id] = Charge(user_id, as_decimal(amount), service, remaining)

    def remove_member(self, org_index: int, user: str, data: st.DataObject) -> None:
        org = self.orgs[org_index]
        model = self.model[org]
        the_only_admin = data.draw(st.integers(0, 9), label="target the only admin") == 0
        if the_only_admin:
            user_id = self.admins[org_index]
        else:
            user_id = self.steer(data, user, {u for u, a in model.active.items() if a.used > 0})
        actor, allowed = self.draw_actor(data, org_index)
        error = None if allowed else PermissionDenied
        if error is None and the_only_admin:
            error = RuleViolation
        if error is None and user_id not in model.members:
            error = NotAMember
        if error is not None:
            self.refused(error, lambda: organizations.remove_member(self.db, actor, org, user_id))
            return
        returned = organizations.remove_member(self.db, actor, org, user_id)
        model.members.discard(user_id)
        allocation = model.active.pop(user_id, None)
        expected = ZERO
        if allocation is not None:
            # unused credits go back to the pool; what was used leaves the total but stays "used"
            expected = allocation.remaining
            model.total -= allocation.used
            model.closed_used += allocation.used
            model.had_allocation.add(user_id)
        assert returned == expected

    def add_member(self, org_index: int, user: str, data: st.DataObject) -> None:
        org = self.orgs[org_index]
        model = self.model[org]
        user_id = self.steer(data, user, set(self.users.values()) - model.members)
        actor, allowed = self.draw_actor(data, org_index)
        error = None if allowed else PermissionDenied
        if error is None and user_id in model.members:
            error = AlreadyExists
        if error is not None:
            self.refused(error, lambda: organizations.add_member(self.db, actor, org, user_id))
            return
        organizations.add_member(self.db, actor, org, user_id)
        if actor is not None:  # an org admin's add is an invitation: the user joins when they accept
            mine = invitations.mine(self.db, user_id)
            invitations.accept(self.db, user_id, mine[mine.org_id == org].invitation_id.iloc[0])
        model.members.add(user_id)

    # the credit flow is what matters most: it gets most of the steps (and comes first,
    # as hypothesis leans towards the first choice)
    OPERATIONS = (
        ["deduct"] * 6 + ["allocate"] * 4 + ["remove_member"] * 2 + ["reclaim"] * 2
        + ["add_member"] * 2 + ["add_credits"] * 2
    )

    @rule(
        operation=st.sampled_from(OPERATIONS),
        org_index=st.integers(0, 1),
        user=st.sampled_from(USERS),
        data=st.data(),
    )
    def step(self, operation: str, org_index: int, user: str, data: st.DataObject) -> None:
        getattr(self, operation)(org_index, user, data)

    # ------------------------------------------------------------------ the check after every step

    @invariant()
    def figures_match_the_model(self) -> None:
        for index, org in enumerate(self.orgs):
            model = self.model[org]
            pool = reports.pool(self.db, self.admins[index], org)
            assert (pool.total_credits, pool.allocated_credits, pool.used_credits, pool.available_credits) == (
                model.total, model.allocated, model.used, model.available,
            ), f"pool of {org}"
            assert pool.available_credits >= 0

        rows = fetch(
            self.db,
            "select org_id, user_id, allocated_credits, used_credits, remaining_credits"
            " from user_multi_org_credits where org_id = any(:orgs) and user_id <> all(:admins)",
            {"orgs": self.orgs, "admins": self.admins},
        )
        actual = {(r.org_id, r.user_id): (r.allocated_credits, r.used_credits, r.remaining_credits) for r in rows}
        expected = {}
        for org, model in self.model.items():
            for user_id in model.members:
                allocation = model.active.get(user_id, Allocation(ZERO))
                expected[(org, user_id)] = (allocation.allocated, allocation.used, allocation.remaining)
        assert actual == expected

        assert ledger.verify(self.db) == []


def test_random_operation_sequences_match_the_model(db):
    """Random add/allocate/reclaim/deduct/retry/remove/re-add sequences: every figure matches the model."""
    machine = type("BoundLedgerMachine", (LedgerMachine,), {"db": db})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=30,
            stateful_step_count=35,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )


def test_a_retry_rewrites_nothing(db, funded_org):
    org = funded_org
    credits.allocate(db, org.admin, org.id, "user-1", 100)
    assert credits.deduct(db, org.id, "user-1", 10, "llm", "gpt-4o", request_id="r-1") == 90
    before = snapshot(db)
    assert credits.deduct(db, org.id, "user-1", 10, "llm", "gpt-4o", request_id="r-1") == 90
    assert snapshot(db) == before
