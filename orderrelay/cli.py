"""The ``orderrelay`` command line."""

from __future__ import annotations

import errno
import json
import sys
import uuid
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from orderrelay.core.views import ORDER_FIELDS, jsonable, order_view
from orderrelay.foundation.constants import ALL_STATUSES
from orderrelay.foundation.errors import ConfigError, OrderNotFound
from orderrelay.tools.tables import orders_table

console = Console(highlight=False)


def _settings():
    from orderrelay.config.settings import get_settings

    try:
        return get_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _provider(value: str | None) -> str | None:
    """A provider id this deployment knows (the built-in ones, and those ORDERRELAY_PROVIDERS adds)."""
    from orderrelay.config.settings import provider_entries
    from orderrelay.providers import REGISTRY

    if value is None:
        return None
    try:
        provider_entries()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if value not in REGISTRY:
        raise click.BadParameter(f"{value!r} is not one of {', '.join(REGISTRY)}", param_hint="PROVIDER")
    return value


def _database_url() -> str:
    from orderrelay.config.settings import get_database_url

    try:
        return get_database_url()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _connect():
    import psycopg
    from psycopg.rows import dict_row

    return psycopg.connect(_database_url(), row_factory=dict_row, connect_timeout=10)


def _away(exc: BaseException) -> str | None:
    """One line for a service that cannot be reached (PostgreSQL, the broker, a port taken), else None."""
    import kombu.exceptions
    import psycopg
    import redis

    if isinstance(exc, psycopg.OperationalError):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"PostgreSQL cannot be reached (ORDERRELAY_DATABASE_URL): {first}"
    if isinstance(exc, kombu.exceptions.OperationalError | redis.exceptions.ConnectionError):
        return f"the broker cannot be reached (ORDERRELAY_BROKER_URL): {str(exc).splitlines()[0]}"
    if isinstance(exc, OSError) and exc.errno in (errno.EADDRINUSE, errno.EACCES):
        return f"cannot listen there: {exc.strerror}"
    return None


class _Main(click.Group):
    """The orderrelay command: a service that is away is one line and exit status 1, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Exception as exc:
            line = _away(exc)
            if line is None:
                raise
            raise click.ClickException(line) from None


@click.group(cls=_Main)
@click.version_option(package_name="orderrelay")
def main() -> None:
    """orderrelay: places orders with third-party order APIs, exactly once, with every outcome in Postgres."""


@main.group()
def keygen() -> None:
    """Make new secrets: a Fernet key, an API key (with its ORDERRELAY_API_KEYS entry), a webhook secret."""


@keygen.command(name="fernet")
def keygen_fernet() -> None:
    """A key for ORDERRELAY_FERNET_KEYS (put the newest first; keep the old ones until rotate-keys ran)."""
    from cryptography.fernet import Fernet

    click.echo(Fernet.generate_key().decode())


@keygen.command(name="api-key")
@click.argument("name")
@click.option("--role", type=click.Choice(["producer", "operator", "metrics"]), default="producer", show_default=True)
def keygen_api_key(name: str, role: str) -> None:
    """An API key for NAME: the key (give it to NAME; it is shown only now) and the entry for ORDERRELAY_API_KEYS,
    which holds its hash, never the key."""
    import re
    import secrets

    from orderrelay.config.settings import key_entry

    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise click.BadParameter("letters, digits, '.', '_' and '-' only, at most 64", param_hint="NAME")
    key = secrets.token_urlsafe(32)
    click.echo(f"key (for {name}'s Authorization: Bearer header): {key}")
    click.echo(f"entry (add it to ORDERRELAY_API_KEYS, comma-separated): {key_entry(name, key, role)}")


@keygen.command(name="env")
@click.argument("name", default="checkout")
def keygen_env(name: str) -> None:
    """The secrets a new .env needs, as its lines: a Fernet key, an operator API key for NAME (the key itself in a
    comment: give it to NAME, it is shown only now) and a webhook secret. ``orderrelay keygen env >> .env``."""
    import secrets

    from cryptography.fernet import Fernet

    from orderrelay.config.settings import key_entry

    key = secrets.token_urlsafe(32)
    click.echo(f"ORDERRELAY_FERNET_KEYS={Fernet.generate_key().decode()}")
    click.echo(f"# {name}'s API key (Authorization: Bearer ...): {key}")
    click.echo(f"ORDERRELAY_API_KEYS={key_entry(name, key, 'operator')}")
    click.echo(f"ORDERRELAY_NOTIFY_SECRET={secrets.token_urlsafe(32)}")


@keygen.command(name="notify-secret")
def keygen_notify_secret() -> None:
    """A secret for ORDERRELAY_NOTIFY_SECRET, which signs webhooks (receivers verify with it)."""
    import secrets

    click.echo(secrets.token_urlsafe(32))


@main.command()
def migrate() -> None:
    """Apply database migrations (safe to run again)."""
    from orderrelay.store.db import migrate as run

    applied = run(_database_url())
    click.echo(f"applied {len(applied)} migration(s): {', '.join(applied)}" if applied else "schema up to date")


@main.command()
@click.argument("provider", callback=lambda ctx, param, value: _provider(value))
@click.argument("file", type=click.File("r"))
@click.option("--key", help="Idempotency key; the same key never makes a second order. A new one by default.")
@click.option("--not-before", help="ISO 8601 time with its offset before which the order is not placed.")
@click.option("--notify", "notify_url", metavar="URL", help="An https URL to POST the outcome to (signed).")
@click.option("--notify-task", metavar="TASK", help="A Celery task (one of ORDERRELAY_NOTIFY_TASKS) for the outcome.")
def submit(
    provider: str, file, key: str | None, not_before: str | None, notify_url: str | None, notify_task: str | None
) -> None:
    """Submit the order body in FILE ('-' for stdin) for PROVIDER, checked here first as a worker will check it:
    a bad body prints its field errors and sends nothing."""
    try:
        order = json.load(file)
    except ValueError as exc:
        raise click.ClickException(f"{file.name} is not JSON: {exc}") from None
    settings = _settings()
    from orderrelay.core.envelope import validate_job
    from orderrelay.core.pipeline import notify_options
    from orderrelay.foundation.errors import JobInvalid
    from orderrelay.foundation.vault import Vault
    from orderrelay.producer import send
    from orderrelay.worker.app import app

    if notify_url and notify_task:
        raise click.UsageError("give --notify or --notify-task, not both")
    notify = {"url": notify_url} if notify_url else {"task": notify_task} if notify_task else None
    key = key or str(uuid.uuid4())
    vault = Vault(settings.fernet_keys)
    job = {"provider": provider, "order": order, "idempotency_key": key, "not_before": not_before, "notify": notify}
    try:
        validate_job(job, enabled=frozenset(settings.providers), vault=vault, **notify_options(settings))
    except JobInvalid as exc:
        lines = [f"  {path}: {' '.join(messages)}" for path, messages in exc.errors.items()]
        raise click.ClickException("not sent, the job is invalid:\n" + "\n".join(lines)) from None
    send(app, vault, provider, order, idempotency_key=key, not_before=not_before, notify=notify)
    click.echo(f"submitted; idempotency key {key}\nfollow it with: orderrelay show --key {key}")


@main.command()
@click.argument("order_id", required=False)
@click.option("--key", help="Find the order by its idempotency key instead.")
@click.option("--json", "as_json", is_flag=True, help="Print stable JSON.")
def show(order_id: str | None, key: str | None, as_json: bool) -> None:
    """Show one order (by its id, or the start of it as ``list`` prints it) with its attempts and events."""
    from orderrelay.store.orders import get_order

    if bool(order_id) == bool(key):
        raise click.UsageError("give an ORDER_ID or --key, not both")
    with _connect() as conn:
        try:
            view = order_view(get_order(conn, _resolve(conn, order_id) if order_id else None, key=key))
        except OrderNotFound as exc:
            raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(view, indent=2, sort_keys=True))
        return
    table = Table(show_header=False, box=None)
    for name in ORDER_FIELDS:
        if view[name] not in (None, {}, []):
            table.add_row(
                f"[bold]{name}[/]",
                json.dumps(view[name]) if isinstance(view[name], dict) else str(view[name]),
            )
    console.print(table)
    attempts = Table("#", "started", "HTTP", "latency ms", "outcome", "error", title="attempts")
    for a in view["attempts"]:
        error = (a["error"] or {}).get("message", "")
        latency = f"{a['latency_ms']:.0f}" if a["latency_ms"] is not None else ""
        attempts.add_row(
            str(a["number"]), a["started_at"], str(a["http_status"] or ""), latency, a["outcome"] or "", error
        )
    console.print(attempts)
    events = Table("at", "from", "to", "reason", title="events")
    for e in view["events"]:
        events.add_row(e["at"], e["from_status"] or "", e["to_status"], e["reason"])
    console.print(events)


@main.command(name="list")
@click.option("--status", type=click.Choice(ALL_STATUSES))
@click.option("--provider", callback=lambda ctx, param, value: _provider(value), help="A provider id.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print stable JSON.")
def list_(status: str | None, provider: str | None, limit: int, as_json: bool) -> None:
    """List orders, newest first."""
    from orderrelay.store.orders import list_orders

    with _connect() as conn:
        rows = [jsonable(r) for r in list_orders(conn, status=status, provider=provider, limit=limit)]
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    console.print(orders_table(rows, width=console.width))


def _resolve(conn, given: str) -> uuid.UUID:
    """The order an id or a unique prefix of one names (``list`` prints the first eight digits)."""
    from orderrelay.store.orders import resolve_id

    try:
        return resolve_id(conn, given)
    except (ValueError, OrderNotFound) as exc:
        raise click.ClickException(str(exc)) from None


def _act(action, order_id: str, **kwargs) -> str:
    """Run an operator action in one transaction; refusals and unknown ids become clear errors."""
    from orderrelay.foundation.errors import ActionRefused

    with _connect() as conn:
        try:
            return action(conn, str(_resolve(conn, order_id)), **kwargs)
        except (ActionRefused, OrderNotFound) as exc:
            raise click.ClickException(str(exc)) from None


@main.command()
@click.argument("order_id")
@click.option("--reason", default="canceled by an operator", show_default=True)
def cancel(order_id: str, reason: str) -> None:
    """Cancel a waiting, queued, retrying or failed order; the provider is never called for it."""
    from orderrelay.core import operations

    click.echo(f"order {order_id}: {_act(operations.cancel, order_id, reason=reason)}")


@main.command()
@click.argument("order_id")
@click.option("--reason", default="retried by an operator", show_default=True)
@click.option(
    "--checked-by",
    metavar="NAME",
    help="Who checked with the provider that it holds no such order: needed to resend an in-doubt order of a "
    "provider with no lookup and no key (Chaiz, battleface), which would otherwise risk a second order.",
)
def retry(order_id: str, reason: str, checked_by: str | None) -> None:
    """Queue a failed or in-doubt order for a new round of attempts (same idempotency key)."""
    from orderrelay.core import operations

    provider = _act(operations.retry, order_id, reason=reason, checked_by=checked_by)
    from orderrelay.tasks.orders import send_place

    send_place(order_id, provider)
    click.echo(f"order {order_id}: queued")


@main.command()
@click.argument("order_id")
@click.option("--placed", "placed_ref", metavar="REF", help="The provider made it: its reference.")
@click.option("--failed", is_flag=True, help="The provider did not make it.")
@click.option("--reason", help="What the operator found out (kept in the order's events).")
def resolve(order_id: str, placed_ref: str | None, failed: bool, reason: str | None) -> None:
    """Settle an in-doubt order by hand: --placed REF or --failed."""
    from orderrelay.core import operations

    if bool(placed_ref) == failed:
        raise click.UsageError("give exactly one of --placed REF or --failed")
    why = reason or (
        f"resolved by an operator: placed as {placed_ref}" if placed_ref else "resolved by an operator: failed"
    )
    click.echo(f"order {order_id}: {_act(operations.resolve, order_id, placed_ref=placed_ref, reason=why)}")


@main.command()
@click.argument("order_id")
@click.option("--json", "as_json", is_flag=True, help="Print stable JSON.")
def notifications(order_id: str, as_json: bool) -> None:
    """The outcome notifications of an order and every delivery attempt."""
    from orderrelay.store import notifications as notes

    def read(conn, oid):
        from orderrelay.store.orders import get_order

        get_order(conn, oid)  # a clear error for an unknown order
        return notes.of_order(conn, uuid.UUID(oid))

    rows = jsonable(_act(read, order_id))
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    table = Table("event", "order status", "delivery", "tries", "target", "last try", title="notifications")
    for row in rows:
        last = row["attempt_log"][-1] if row["attempt_log"] else {}
        target = row["target"].get("url") or f"task {row['target'].get('task')}"
        table.add_row(
            row["event_id"],
            row["order_status"],
            row["status"],
            str(row["attempts"]),
            target,
            str(last.get("http_status") or last.get("error") or ""),
        )
    console.print(table)


@main.command()
@click.argument("order_id")
def redeliver(order_id: str) -> None:
    """Send an order's latest notification again (the same event id, so receivers can deduplicate)."""
    from orderrelay.store import notifications as notes
    from orderrelay.tasks.orders import deliver

    deadline = _settings().notify_deadline
    note = _act(lambda conn, oid: notes.redeliver_latest(conn, uuid.UUID(oid), deadline=deadline), order_id)
    if note is None:
        raise click.ClickException(f"order {order_id} has no notification")
    deliver.apply_async((note,), queue="notifications")
    click.echo(f"order {order_id}: notification {note} queued again")


@main.command(name="rotate-keys")
def rotate_keys() -> None:
    """Seal all stored card data again with the newest key (the first in ORDERRELAY_FERNET_KEYS).

    Then the old keys can be removed from ORDERRELAY_FERNET_KEYS.
    """
    from rich.progress import Progress

    from orderrelay.core import operations
    from orderrelay.foundation.vault import Vault

    vault = Vault(_settings().fernet_keys)
    with _connect() as conn, Progress(console=console, transient=True) as progress:
        task = progress.add_task("re-sealing", total=None)
        done = operations.rotate_keys(conn, vault, on_batch=lambda n: progress.advance(task, n))
    click.echo(f"re-sealed the card data of {done} order(s) with the newest key")


def _broker_view(timeout: float = 1.0) -> dict:
    """Queue depths and the workers that answer a ping; errors say the broker is away, not a traceback."""
    from orderrelay.core.broker import reserved
    from orderrelay.worker.app import app

    def depth(channel, queue: str) -> int:
        try:
            return channel.queue_declare(queue=queue, passive=True).message_count
        except app.connection().channel_errors:  # never declared yet: nothing in it
            return 0

    try:
        with app.connection_for_read() as conn:
            channel = conn.default_channel
            depths = {queue: depth(channel, queue) for queue in _settings().queues}
        workers = sorted(name for reply in app.control.ping(timeout=timeout) for name in reply)
        url = _settings().broker_url
        held = reserved(url) if url.startswith(("redis://", "rediss://")) else {}
    except Exception as exc:
        return {"error": f"broker unreachable: {type(exc).__name__}: {exc}", "queues": {}, "workers": []}
    return {"queues": depths, "workers": workers, "reserved": held}


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print stable JSON.")
def status(as_json: bool) -> None:
    """One screen: queue depths, workers, orders by status per provider, recent failures, circuit breakers."""
    from orderrelay.store.orders import circuits, counts, follow_up_troubles, recent_failures

    with _connect() as conn:
        view = {
            "orders": jsonable(counts(conn)),
            "follow_ups": follow_up_troubles(conn),
            "recent_failures": jsonable(recent_failures(conn)),
            "circuits": jsonable(circuits(conn)),
            **_broker_view(),
        }
    view["limits"] = _limits_view()
    if as_json:
        click.echo(json.dumps(view, indent=2, sort_keys=True))
        return
    if view.get("error"):
        console.print(f"[red]{view['error']}[/]")
    queues = Table("queue", "messages", title="queues")
    for name, depth in view["queues"].items():
        queues.add_row(name, str(depth))
    console.print(queues)
    held = view.get("reserved") or {}
    if held:
        oldest = f", the oldest for {held['oldest_seconds']} s" if held["oldest_seconds"] is not None else ""
        console.print(
            f"reserved by workers, not yet acknowledged: {held['reserved']} message(s), "
            f"{held['jobs_before_intake']} of them jobs not yet taken in{oldest}"
        )
        console.print(f"jobs the producer sent that are not yet orders: {held['jobs_noted_not_rows']}")
        if held["restore_locked_seconds"]:
            console.print(f"restoring reserved messages is locked for {held['restore_locked_seconds']} s more")
    console.print(f"workers answering: {', '.join(view['workers']) or 'none'}")
    table = Table("provider", "status", "orders", "oldest change", title="orders")
    for row in view["orders"]:
        table.add_row(row["provider"] or "-", row["status"], str(row["n"]), str(row["oldest"] or "-")[:19])
    console.print(table)
    troubles = view["follow_ups"]
    if troubles["follow_up_overdue"]:
        console.print(
            f"[red]{troubles['follow_up_overdue']} placed order(s) still pending at their provider past the "
            "follow-up deadline: check them there (orderrelay list --status placed shows their last_error)[/]"
        )
    if troubles["follow_up"]:
        console.print(f"[yellow]{troubles['follow_up']} placed order(s) whose last follow-up read failed[/]")
    failures = Table("id", "provider", "status", "when", "error", title="recent failures")
    for row in view["recent_failures"]:
        failures.add_row(
            row["id"][:8],
            row["provider"] or "-",
            row["status"],
            row["updated_at"][:19],
            (row["last_error"] or {}).get("message", ""),
        )
    console.print(failures)
    breakers = Table("provider", "worker", "state", "failures", "open until", "since", title="circuit breakers")
    for row in view["circuits"]:
        breakers.add_row(
            row["provider"],
            row["worker"],
            row["state"],
            str(row["failures"]),
            str(row["open_until"] or "")[:19],
            str(row["updated_at"])[:19],
        )
    console.print(breakers)
    _print_limits(view["limits"])


def _limits_view() -> dict:
    from orderrelay.core.limits import view as limits_view

    settings = _settings()
    return limits_view(settings.broker_url, list(settings.providers), settings.rate_limits, settings.concurrency_limits)


def _print_limits(shown: dict) -> None:
    if "_" in shown:
        console.print(f"[yellow]provider limits: {shown['_']['error']}[/]")
        return
    if not shown:
        return
    table = Table(
        "provider", "rate", "booked ahead s", "ceiling", "in flight", "waiting", "paused for s", title="limits"
    )
    for provider, entry in shown.items():
        paused = f"{entry['paused_for']} ({entry['pause_reason']})" if entry["paused_for"] else "-"
        table.add_row(
            provider,
            entry.get("rate", "-"),
            str(entry.get("booked_ahead_s", "-")),
            str(entry.get("ceiling", "-")),
            str(entry.get("in_flight", "-")),
            str(entry.get("waiting", "-")),
            paused,
        )
    console.print(table)


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the limits as JSON (stable keys).")
@click.pass_context
def limits(ctx: click.Context, as_json: bool) -> None:
    """The providers' shared limits: each one's rate, turns booked ahead, calls in flight against its ceiling,
    orders waiting for a seat, and any pause (a provider's Retry-After, a worker's open circuit, an operator's)."""
    if ctx.invoked_subcommand is not None:
        return
    shown = _limits_view()
    if as_json:
        click.echo(json.dumps(shown, indent=2, sort_keys=True))
    else:
        _print_limits(shown)


@limits.command("resume")
@click.argument("provider")
def limits_resume(provider: str) -> None:
    """Lift PROVIDER's pause for every worker: its held orders go out as they fall due."""
    from orderrelay.core.limits import resume

    provider = _provider(provider)
    lifted = resume(_settings().broker_url, provider)
    click.echo(f"{provider}: pause lifted" if lifted else f"{provider} was not paused")


@limits.command("pause")
@click.argument("provider")
@click.argument("seconds", type=click.FloatRange(min=1))
@click.option("--reason", default="paused by an operator", show_default=True)
def limits_pause(provider: str, seconds: float, reason: str) -> None:
    """Hold every worker's calls of PROVIDER for SECONDS (at most the longest pause a provider may ask for)."""
    from orderrelay.core.limits import pause

    provider = _provider(provider)
    held = pause(_settings().broker_url, provider, seconds, reason)
    click.echo(f"{provider}: paused for {held:.0f} s for every worker ({reason})")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
def api(host: str, port: int) -> None:
    """Serve the HTTP intake API (needs ORDERRELAY_API_KEYS)."""
    from orderrelay.api.app import serve

    _settings()
    serve(host, port, ready=lambda: click.echo(f"intake API on http://{host}:{port} (the API's page at /docs)"))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
@click.option("--examples", is_flag=True, help="Know the ids examples/*.json name (a plan, a customer, a cart...).")
def sandbox(host: str, port: int, examples: bool) -> None:
    """Serve the provider sandbox (all simulated provider APIs and /_sandbox/)."""
    from orderrelay.sandbox.app import serve

    ready = lambda: click.echo(f"sandbox on http://{host}:{port} (Extend at /extend)")  # noqa: E731
    serve(host, port, ready=ready, examples=examples)


@main.command()
@click.option("--orders", default=5000, show_default=True, type=click.IntRange(5, 100_000))
@click.option("--kills", default=20, show_default=True, type=click.IntRange(0, 1000), help="Workers to SIGKILL.")
@click.option("--freezes", default=3, show_default=True, type=click.IntRange(0, 100), help="Workers to SIGSTOP.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 16))
@click.option("--rate", default=100.0, show_default=True, help="Orders sent per second.")
@click.option("--timeout", default=1800.0, show_default=True, help="Seconds to wait for every order to end.")
@click.option("--seed", type=int, help="Seed for the faults and the damage, to repeat a run.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the figures as JSON here.")
def chaos(
    orders: int, kills: int, freezes: int, workers: int, rate: float, timeout: float, seed: int | None, out: Path | None
) -> None:
    """The fault drill, on a Redis and a PostgreSQL of its own: workers killed and frozen, Redis killed (always and
    everysec) and flushed, PostgreSQL restarted, providers failing after they made the order; then every job is
    checked against what its provider holds."""
    from orderrelay.tools.chaos import run

    code = run(
        orders=orders, kills=kills, freezes=freezes, workers=workers, rate=rate, timeout=timeout, seed=seed, out=out
    )
    sys.exit(code)


FLOWER_COLUMNS = "name,uuid,state,received,started,runtime,worker"  # no argument or result columns


@main.command()
@click.option("--port", default=5555, show_default=True, type=click.IntRange(1, 65535))
@click.option("--address", help="Where to listen: 0.0.0.0 with FLOWER_BASIC_AUTH set, else 127.0.0.1 only.")
def flower(port: int, address: str | None) -> None:
    """Flower, never open to the network without a password: FLOWER_BASIC_AUTH=user:password, or 127.0.0.1 only.

    Flower's credentials are an operator's: its API can send any task (an orders.submit, past the API keys),
    revoke tasks and shut workers down.
    """
    import ipaddress
    import os
    import re

    auth = os.environ.get("FLOWER_BASIC_AUTH", "")
    if auth and not re.fullmatch(r"[^:,]+:[^,]{12,}(,[^:,]+:[^,]{12,})*", auth):
        raise click.ClickException("FLOWER_BASIC_AUTH must be user:password, a password of 12 or more characters")
    address = address or ("0.0.0.0" if auth else "127.0.0.1")  # noqa: S104 - only with a password
    try:
        local = ipaddress.ip_address(address).is_loopback
    except ValueError:
        local = address == "localhost"
    if not auth and not local:
        raise click.ClickException(
            f"Flower without FLOWER_BASIC_AUTH listens on 127.0.0.1 only, not {address}: set user:password first"
        )
    if not auth:
        click.echo("Flower without FLOWER_BASIC_AUTH: listening on this machine only", err=True)
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "orderrelay.worker.app",
        "flower",
        f"--port={port}",
        f"--address={address}",
    ]
    os.execv(sys.executable, [*argv, f"--tasks_columns={FLOWER_COLUMNS}"])  # noqa: S606 - our own interpreter


@main.command()
@click.option("--cases", default=2000, show_default=True, type=click.IntRange(1, 10_000_000))
@click.option("--seed", default=0, show_default=True, help="Seed of the generated cases, to repeat a run.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the figures as JSON here.")
@click.option("--no-api", is_flag=True, help="Only the worker's intake, not the live HTTP API.")
def fuzz(cases: int, seed: int, out: Path | None, no_api: bool) -> None:
    """Hostile jobs through the worker's intake and the live API: each must end as a row, none crash, no 5xx."""
    try:
        import hypothesis  # noqa: F401
    except ImportError:
        raise click.ClickException("orderrelay fuzz needs hypothesis: pip install 'orderrelay[fuzz]'") from None
    from orderrelay.tools import fuzz as fuzzing

    sys.exit(fuzzing.run(cases=cases, seed=seed, out=out, api=not no_api))


@main.command()
@click.option("--orders", default=5000, show_default=True, type=click.IntRange(10, 1_000_000))
@click.option(
    "--naive-orders",
    default=300,
    show_default=True,
    type=click.IntRange(10, 100_000),
    help="Orders for the naive baseline (it is slow).",
)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--concurrency", default=256, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--out", "out_dir", default="bench-results", show_default=True, type=click.Path(path_type=Path))
@click.option(
    "--scale",
    type=click.IntRange(1000, 100_000_000),
    help="Instead: seed this many orders in a database of its own and print every query's time and plan.",
)
@click.option("--limit", metavar="RATE", help="Extend's calls through a shared rate limit (100000/second): its cost.")
def bench(
    orders: int, naive_orders: int, workers: int, concurrency: int, out_dir: Path, scale: int | None, limit: str | None
) -> None:
    """Measure throughput, latency, CPU and memory against bare Celery and the naive design (or, with --scale,
    every scheduled and per-call query against that many orders)."""
    if scale:
        from orderrelay.tools import scale as at_scale

        sys.exit(at_scale.run(orders=scale, out_dir=out_dir))
    try:
        from orderrelay.tools.bench import run
    except ModuleNotFoundError as exc:  # psutil, of the demo extra
        raise click.ClickException(f"orderrelay bench needs {exc.name}: pip install 'orderrelay[demo]'") from None
    sys.exit(
        run(
            orders=orders,
            naive_orders=naive_orders,
            workers=workers,
            concurrency=concurrency,
            out_dir=out_dir,
            limit=limit,
        )
    )


@main.command()
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for the orders to settle.")
@click.option("--keep", is_flag=True, help="Leave the stack up afterwards (Ctrl-C stops it), with how to look at it.")
def demo(timeout: float, keep: bool) -> None:
    """Run the main job end to end: sandbox, a real worker and beat, an order of every provider (Extend's waiting
    one among them, and one it rejects), live progress."""
    from orderrelay.tools.demo import run

    try:
        sys.exit(run(timeout=timeout, workdir=Path.cwd(), keep=keep))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


if __name__ == "__main__":
    main()
