"""API keys: made, listed and revoked by the admins who may, and checked on every request of the HTTP API.

A key acts as the user who created it. Its token, `cbk_<8-character prefix>_<secret>`, is made here
and shown once; the database keeps only the prefix (to recognize a key) and the sha256 digest of the
whole token, which `authorize` sends on each request. Who may make, see or use a key, its scope and
its rate limits are the stored functions' rules (sql/routines/140_api_keys.sql).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from billing_core.database import fetch, record
from billing_core.errors import InvalidInput, Unauthenticated

Use = Literal["charge", "read", "write", "subscription", "system"]
Kind = Literal["organization", "service"]

# the per-key limits a caller may set (None or left out: the kind's default)
LIMIT_NAMES = ("reads_per_minute", "writes_per_minute", "subscription_changes_per_hour", "charges_per_second")

TOKEN_PREFIX = "cbk_"
_PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_PREFIX_LENGTH = 8
_SECRET_BYTES = 32
# cbk_ + 8 lowercase letters or digits + _ + token_urlsafe(32): 43 URL-safe characters
_TOKEN_SHAPE = re.compile(r"cbk_([a-z0-9]{8})_[A-Za-z0-9_-]{43}")


@dataclass(frozen=True)
class ApiKey:
    """One API key as the admins see it (never its token or digest)."""

    key_id: str
    prefix: str
    name: str
    kind: str  # 'organization' or 'service'
    org_id: str | None  # an organization key's organization
    org_ids: tuple[str, ...]  # a service key's listed organizations (empty: platform-wide)
    system_scope: bool
    created_by: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    limits: dict[str, int]  # the limits in force (defaults filled in)


@dataclass(frozen=True)
class NewKey:
    """A key just made, with its token: shown once, never stored."""

    key: ApiKey
    token: str


@dataclass(frozen=True)
class KeyGrant:
    """What a request's key may do: the key, the user it acts as and the organization concerned."""

    key_id: str
    prefix: str
    kind: str
    actor_id: str
    org_id: str | None


def digest(token: str) -> bytes:
    """The sha256 digest of the whole token: what the database keeps and looks a key up by."""
    return hashlib.sha256(token.encode()).digest()


def _new_token() -> tuple[str, str]:
    """A fresh token and its public prefix."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(_PREFIX_LENGTH))
    return f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(_SECRET_BYTES)}", prefix


def _key(row: sa.Row) -> ApiKey:
    key = record(ApiKey, row)
    return dataclasses.replace(key, org_ids=tuple(key.org_ids or ()), limits=dict(key.limits))


def _limit_params(limits: Mapping[str, int] | None) -> dict[str, int | None]:
    """The limits as the stored function's parameters; the ranges are the database's rule."""
    given = dict(limits or {})
    unknown = sorted(set(given) - set(LIMIT_NAMES))
    if unknown:
        raise InvalidInput(f"Unknown API key limit {', '.join(unknown)}: the limits are {', '.join(LIMIT_NAMES)}.")
    for name, value in given.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidInput(f"{name.replace('_', ' ').capitalize()} must be a whole number (got {value!r}).")
    return {name: given.get(name) for name in LIMIT_NAMES}


_CREATE = (
    "select * from create_api_key(:actor_id, :kind, :name, :org_id, :org_ids, :system_scope, :prefix, :digest,"
    " :reads_per_minute, :writes_per_minute, :subscription_changes_per_hour, :charges_per_second)"
)


def _create(db: Engine, actor_id: str, kind: Kind, name: str, org_id: str | None, org_ids: Sequence[str],
            system_scope: bool, limits: Mapping[str, int] | None) -> NewKey:
    token, prefix = _new_token()
    params = {"actor_id": actor_id, "kind": kind, "name": name, "org_id": org_id, "org_ids": list(org_ids),
              "system_scope": system_scope, "prefix": prefix, "digest": digest(token), **_limit_params(limits)}
    return NewKey(_key(fetch(db, _CREATE, params)[0]), token)


def create_organization_key(db: Engine, actor_id: str, org_id: str, name: str, *,
                            limits: Mapping[str, int] | None = None) -> NewKey:
    """Make a key that acts as `actor_id` within organization `org_id` (its admins, system admins)."""
    return _create(db, actor_id, "organization", name, org_id, (), False, limits)


def create_service_key(db: Engine, actor_id: str, name: str, *, org_ids: Sequence[str] = (),
                       system_scope: bool = False, limits: Mapping[str, int] | None = None) -> NewKey:
    """Make a service key (system admins): charges for any organization's users, or only `org_ids`'."""
    if isinstance(org_ids, str):
        org_ids = (org_ids,)
    return _create(db, actor_id, "service", name, None, org_ids, system_scope, limits)


def keys(db: Engine, actor_id: str, org_id: str | None = None) -> list[ApiKey]:
    """The keys of organization `org_id` (its admins), or with None every key (system admins), newest first."""
    return [_key(row) for row in fetch(db, "select * from api_keys_of(:actor_id, :org_id)",
                                       {"actor_id": actor_id, "org_id": org_id})]


def revoke(db: Engine, actor_id: str, key_id: str) -> bool:
    """Revoke a key (whoever may make it); False when it was already revoked."""
    rows = fetch(db, "select revoke_api_key(:actor_id, :key_id) as revoked", {"actor_id": actor_id, "key_id": key_id})
    return bool(rows[0].revoked)


def prefix_of(token: str) -> str | None:
    """The public prefix of a well-formed token, or None when the token does not have a key's shape."""
    shape = _TOKEN_SHAPE.fullmatch(token or "") if isinstance(token, str) else None
    return shape[1] if shape else None


def authorize(db: Engine, token: str, use: Use, *, org_id: str | None = None,
              user_id: str | None = None) -> KeyGrant:
    """Who a request's token acts as, for `use` on `org_id` (or `user_id`'s organization); counts the request."""
    if prefix_of(token) is None:
        raise Unauthenticated("This API key is not valid: it does not have the shape of a key (cbk_...).")
    rows = fetch(db, "select key_id, prefix, kind, actor_id, org_id"
                     " from api_key_authorize(:digest, :org_id, :user_id, :use)",
                 {"digest": digest(token), "org_id": org_id, "user_id": user_id, "use": use})
    return record(KeyGrant, rows[0])
