"""A small world for the API tests, made through billing_core: two organizations, their people, and API keys."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from billing_core import api_keys, credits, orders, organizations

GPT4O = {"service_type": "llm", "service_name": "gpt-4o", "input_tokens": "1000", "output_tokens": "500"}
GPT4O_CREDITS = "11.25"  # on the default price list


@dataclass(frozen=True)
class World:
    """Who is who, and the tokens of their keys."""

    platform: str  # a service key (root): any organization, system scope
    listed: str  # a service key limited to globex
    acme_key: str  # acme's organization key (ada)
    revoked: str  # a revoked service key
    revoked_prefix: str


def auth(token: str) -> dict[str, str]:
    """The header that sends `token`."""
    return {"Authorization": f"Bearer {token}"}


def _person(db: Engine, user_id: str, org_id: str | None, role: str = "member", *, system_admin: bool = False) -> None:
    organizations.create_user(db, None, user_id, f"{user_id}@example.com", user_id.title(),
                              is_system_admin=system_admin)
    if org_id:
        organizations.add_member(db, None, org_id, user_id, role)


def _fund(db: Engine, org_id: str, admin: str, amount: int) -> None:
    order = orders.create_order(db, admin, org_id, credits=amount)
    orders.record_payment(db, None, order.id, f"PAY-{org_id}")


def make_world(db: Engine) -> World:
    """acme (ada admin; mia holds 1,000 credits, max 30) and globex (gus admin; gina holds 500); root, a system
    admin, owns the service keys; ada owns acme's organization key."""
    organizations.create_organization(db, None, "acme", "Acme <b>Inc</b> \"quoted\"")
    organizations.create_organization(db, None, "globex", "Globex")
    _person(db, "ada", "acme", "admin")
    _person(db, "mia", "acme")
    _person(db, "max", "acme")
    _person(db, "gus", "globex", "admin")
    _person(db, "gina", "globex")
    _person(db, "root", None, system_admin=True)
    _fund(db, "acme", "ada", 10_000)
    _fund(db, "globex", "gus", 5_000)
    credits.allocate(db, "ada", "acme", "mia", 1_000)
    credits.allocate(db, "ada", "acme", "max", 30)
    credits.allocate(db, "gus", "globex", "gina", 500)
    platform = api_keys.create_service_key(db, "root", "gateway", system_scope=True)
    listed = api_keys.create_service_key(db, "root", "globex only", org_ids=["globex"])
    acme_key = api_keys.create_organization_key(db, "ada", "acme", "acme automation")
    revoked = api_keys.create_service_key(db, "root", "old gateway")
    api_keys.revoke(db, "root", revoked.key.key_id)
    return World(platform.token, listed.token, acme_key.token, revoked.token, revoked.key.prefix)
