"""The job envelope every producer sends (``orders.submit`` keyword arguments), and its validation."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validates_schema

from orderrelay.foundation.constants import SECRET_KEYS
from orderrelay.foundation.errors import JobInvalid
from orderrelay.foundation.vault import Vault, mask, open_fields, seal_fields
from orderrelay.providers import REGISTRY, known
from orderrelay.providers.egress import host_refusal
from orderrelay.schemas.fields import AwareDateTime, Pattern, Text, WebUrl, flatten_errors
from orderrelay.schemas.hostile import problems, structural

MAX_ORDER_BYTES = 1_000_000
LATEST_DUE = datetime(9000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class NotifyRules:
    """What a deployment lets a job's ``notify`` name: plain http or not, internal hosts it admits after all
    (``ORDERRELAY_NOTIFY_ALLOW_HOSTS``), and the Celery tasks it lists, each with its queue (``_NOTIFY_TASKS``)."""

    allow_http: bool = False
    allow_hosts: tuple[str, ...] = ()
    tasks: tuple[tuple[str, str], ...] = ()


class NotifySchema(Schema):
    """Where the order's outcome goes: an HTTPS callback ``url`` on the public internet, or one of the Celery
    ``task`` names the deployment lists (its ``queue`` is the listed one)."""

    class Meta:
        unknown = RAISE

    url = WebUrl()
    task = Text(max_length=200, validate=[Pattern(r"[A-Za-z_][A-Za-z0-9_.]*", "Not a task name.")])
    queue = Text(max_length=200)

    @validates_schema
    def one_target(self, data, **kwargs):
        """Exactly one of url and task; queue only with task; plain http only where allowed; the url's host on the
        outside (or admitted by name); the task one the deployment lists, on its queue."""
        if ("url" in data) == ("task" in data):
            raise ValidationError("Give exactly one of url or task.")
        if "queue" in data and "task" not in data:
            raise ValidationError("queue goes with task.", "queue")
        rules = self.rules
        if "url" in data:
            if data["url"].startswith("http:") and not rules.allow_http:
                raise ValidationError("Must be an https URL.", "url")
            refusal = host_refusal(urlsplit(data["url"]).hostname or "", rules.allow_hosts)
            if refusal:
                raise ValidationError(f"Webhooks go to the public internet only: {refusal}.", "url")
        if "task" in data:
            listed = dict(rules.tasks)
            if data["task"] not in listed:
                raise ValidationError("Not a task this deployment delivers to (ORDERRELAY_NOTIFY_TASKS).", "task")
            if data.get("queue", listed[data["task"]]) != listed[data["task"]]:
                raise ValidationError(f"This task goes to queue {listed[data['task']]!r}.", "queue")

    @post_load
    def listed_queue(self, data, **kwargs):
        """A task target always names its queue: the one the deployment lists for it."""
        if "task" in data:
            data["queue"] = dict(self.rules.tasks)[data["task"]]
        return data

    rules = NotifyRules()


class JobSchema(Schema):
    """``provider``, ``order`` (the provider's create-order body), optional ``idempotency_key``, ``not_before``."""

    class Meta:
        unknown = RAISE

    provider = fields.String(required=True, validate=known)
    order = fields.Dict(keys=fields.String(), required=True)
    idempotency_key = Text(max_length=200, allow_none=True)
    not_before = AwareDateTime(allow_none=True)
    notify = fields.Nested(NotifySchema, allow_none=True)


@dataclass(frozen=True)
class Job:
    """A valid job: the provider id, the loaded order (card fields sealed), a fingerprint, when it is due."""

    provider: str
    order: dict
    fingerprint: str
    idempotency_key: str | None
    due_at: datetime
    notify: dict | None = None


def validate_job(
    job: Any,
    *,
    enabled: set[str] | frozenset[str],
    vault: Vault,
    now: datetime | None = None,
    notify_rules: NotifyRules = NotifyRules(),
    default_notify: dict | None = None,
    can_sign: bool = True,
) -> Job:
    """Load and check a job; raise JobInvalid with every problem by field path (``order.lineItems.0.plan``).

    What no job may carry anywhere (``schemas.hostile``) is found first. Nesting too deep or too wide is refused
    before any schema sees the job; other such values (NUL, a lone surrogate, an overlong string, a huge integer,
    NaN) are safe for the schemas, whose errors are given with them. Card fields a producer sealed are opened to
    be checked; the order returned has them sealed again.
    """
    if not isinstance(job, dict):
        raise JobInvalid({"_schema": ["A job is an object of keyword arguments."]})
    hostile = problems(job)
    if hostile and structural(hostile):
        raise JobInvalid(hostile)
    try:
        valid = _validated(job, enabled, vault, now or datetime.now(UTC), notify_rules, default_notify, can_sign)
    except JobInvalid as exc:
        raise JobInvalid({**exc.errors, **hostile}) from None
    except Exception:
        if hostile:  # a value the schemas could not digest: its own error says enough
            raise JobInvalid(hostile) from None
        raise
    if hostile:
        raise JobInvalid(hostile)
    return valid


def _validated(
    job: dict,
    enabled: set[str] | frozenset[str],
    vault: Vault,
    now: datetime,
    notify_rules: NotifyRules,
    default_notify: dict | None,
    can_sign: bool,
) -> Job:
    schema = _job_schema(notify_rules)
    try:
        envelope = schema.load(job)
    except ValidationError as exc:
        raise JobInvalid(flatten_errors(exc.messages)) from None
    notify = _signable(envelope.get("notify") or default_notify, can_sign)
    provider_id = envelope["provider"]
    if provider_id not in REGISTRY or provider_id not in enabled:
        raise JobInvalid({"provider": [f"Provider {provider_id!r} is not enabled on this deployment."]})
    if len(json.dumps(envelope["order"], default=str)) > MAX_ORDER_BYTES:
        raise JobInvalid({"order": [f"Larger than {MAX_ORDER_BYTES} bytes."]})
    provider = REGISTRY[provider_id]
    opened, sealed_errors = open_fields(vault, envelope["order"], provider.CARD_FIELDS)
    if sealed_errors:
        raise JobInvalid({f"order.{path}": msgs for path, msgs in sealed_errors.items()})
    try:
        loaded = _order_schema(provider_id).load(opened)
    except ValidationError as exc:
        raise JobInvalid(flatten_errors(exc.messages, "order")) from None
    order = opened  # forward what the producer sent (as JSON), now that it is known to be valid
    due_at = max(now, envelope.get("not_before") or now)
    try:
        wait = provider.wait(loaded) or timedelta(0)
        due_at = max(due_at, now + wait)
        if due_at > LATEST_DUE:
            raise OverflowError
    except OverflowError:
        raise JobInvalid({"order": ["The wait it asks for ends too far in the future to schedule."]}) from None
    fingerprint = fingerprint_of(provider_id, mask(order, SECRET_KEYS))
    return Job(
        provider_id,
        seal_fields(vault, order, provider.CARD_FIELDS),
        fingerprint,
        envelope.get("idempotency_key"),
        due_at,
        notify,
    )


def fingerprint_of(provider: Any, order: Any) -> str:
    """A stable hash of what was asked (card numbers only by their last four), to tell a reused key's bodies apart."""
    text = json.dumps({"provider": provider, "order": order}, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def _signable(notify: dict | None, can_sign: bool) -> dict | None:
    """A webhook target needs the deployment's signing secret."""
    if notify and "url" in notify and not can_sign:
        raise JobInvalid({"notify.url": ["Webhooks need ORDERRELAY_NOTIFY_SECRET on this deployment."]})
    return notify


def rejected_target(
    job: Any, *, notify_rules: NotifyRules = NotifyRules(), default_notify: dict | None = None, can_sign: bool = True
) -> dict | None:
    """Where a rejected job's outcome goes: its own target if that part of it is valid, else the default; None
    when neither can be used."""
    given = job.get("notify") if isinstance(job, dict) else None
    if given is not None and problems(given):
        return None
    try:
        schema = _job_schema(notify_rules).fields["notify"].schema
        notify = schema.load(given) if given is not None else default_notify
        return _signable(notify, can_sign)
    except (ValidationError, JobInvalid, TypeError):
        return None


@functools.cache
def _job_schema(notify_rules: NotifyRules) -> JobSchema:
    """One envelope schema per deployment's rules, made once (schemas are reusable across threads for loading)."""
    schema = JobSchema()
    schema.fields["notify"].schema.rules = notify_rules
    return schema


@functools.cache
def _order_schema(provider_id: str) -> Schema:
    return REGISTRY[provider_id].OrderSchema()
