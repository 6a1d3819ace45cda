"""The organization billing screen's forms: checked by the database before the question, refusals in words.

A form's handler builds its write as an action (a call of billing_core); `ask_checked` rehearses it
(billing_core.database.rehearse: the stored function runs and is rolled back), so a refusal shows before any
"Confirm?" is asked, by the same rule that refuses it for real; the question can then say what the write
will do (the credits a take-back returns, the date a change applies). Confirming runs the action again, and
the database stays the last word.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pandas as pd

from billing_core import database
from billing_core.errors import BillingError
from pages import kit
from pages.kit.session import Screen


@dataclass(frozen=True)
class Organization:
    """The organization a screen shows and the people it names: what turns a refusal's ids into words."""

    org_id: str
    name: str
    people: Mapping[str, str] = field(default_factory=dict)  # user id -> display name
    emails: Mapping[str, str] = field(default_factory=dict)  # user id -> email

    def person(self, user_id: str | None) -> str:
        """A member as pickers and questions name them: "Bob Builder (bob@example.com)"."""
        if user_id not in self.people:
            return str(user_id)
        return f"{self.people[user_id]} ({self.emails.get(user_id, '')})" if self.emails.get(user_id) \
            else self.people[user_id]

    def in_words(self, message: str) -> str:
        """A database message with "organization 'acme'" and "User 'bob'" said as the names a person knows."""
        message = re.sub(r"\b[Oo]rganization '([^']*)'", self._org_name, message)
        return re.sub(r"\b[Uu]ser '([^']*)'", self._user_name, message)

    def _org_name(self, match: re.Match[str]) -> str:
        return self.name if match.group(1) == self.org_id else match.group(0)

    def _user_name(self, match: re.Match[str]) -> str:
        return self.people.get(match.group(1), match.group(0))


def credits_words(amount: Any, adjective: str = "") -> str:
    """An amount of credits with its noun in the right number: "1 credit", "2,500 credits", "760 unused credits"."""
    noun = "credit" if Decimal(str(amount)) == 1 else "credits"
    return f"{kit.fmt_credits(amount)} {adjective + ' ' if adjective else ''}{noun}"


def dashed(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """`frame` with empty cells of these text columns as "—" (the grid draws a missing value as "None")."""
    return frame.assign(**{column: frame[column].map(lambda v: "—" if v is None or pd.isna(v) else v)
                           for column in columns})


def moment(at: Any, missing: str = "—") -> str:
    """A time that may be missing, as text to the minute (UTC), `missing` when there is none."""
    return missing if at is None or pd.isna(at) else f"{at:%Y-%m-%d %H:%M} UTC"


def worded(org: Organization, action: Callable[[], Any]) -> Callable[[], Any]:
    """`action`, its refusal (a BillingError) said in `org`'s words."""

    def run() -> Any:
        try:
            return action()
        except BillingError as exc:
            raise _reworded(exc, org.in_words(str(exc))) from exc

    return run


def _reworded(exc: BillingError, message: str) -> BillingError:
    try:
        return type(exc)(message)
    except TypeError:  # a refusal type with its own constructor: the message matters, not the type
        return BillingError(message)


def ask_checked(screen: Screen, org: Organization, key: str, action: Callable[[], Any],
                question: Callable[[Any], str], success: str | Callable[[Any], str],
                clear: Iterable[str] = (), nothing: Callable[[Any], str | None] | None = None) -> None:
    """Rehearse `action`; refused: keep the refusal (in words) for `kit.confirmation(key)`. Else ask
    `question(what the action would return)`; confirmed, the action runs and `clear` is emptied on success.
    `nothing(answer)`, when given, says why there is nothing to ask (the write would change nothing)."""
    action = worded(org, action)
    try:
        rehearsed = database.rehearse(screen.db, action)
    except BillingError as exc:
        kit.flash(key, "error", str(exc))
        return
    idle = nothing(rehearsed) if nothing else None
    if idle:
        kit.flash(key, "info", idle)
        return
    kit.ask_confirmation(key, question(rehearsed), action, success=success, clear=clear)


def write_worded(org: Organization, key: str, action: Callable[[], Any],
                 success: str | Callable[[Any], str], clear: Iterable[str] = ()) -> bool:
    """A write that asks no question (an invitation, a resolved alert): run it, its refusal in words."""
    return kit.write(key, worded(org, action), success=success, clear=clear)
