"""The job envelope every producer sends (``orders.submit`` keyword arguments), and its validation."""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from orderrelay.constants import PROVIDER_IDS, SECRET_KEYS
from orderrelay.errors import JobInvalid
from orderrelay.vault import Vault, mask, open_fields, seal_fields
from providers import REGISTRY
from schemas.fields import Text, flatten_errors

MAX_ORDER_BYTES = 1_000_000
MAX_STORED_BYTES = 64_000
LATEST_DUE = datetime(9000, 1, 1, tzinfo=UTC)


class NotifySchema(Schema):
    """Where the order's outcome goes: an HTTPS callback ``url``, or a Celery ``task`` (and its ``queue``)."""

    class Meta:
        unknown = RAISE

    url = fields.Url(schemes={"https", "http"}, require_tld=False, validate=validate.Length(max=2000))
    task = Text(max_length=200, validate=[validate.Regexp(r"^[A-Za-z_][\w.]*$", error="Not a task name.")])
    queue = Text(max_length=200)

    @validates_schema
    def one_target(self, data, **kwargs):
        """Exactly one of url and task; queue only with task; plain http only where allowed."""
        if ("url" in data) == ("task" in data):
            raise ValidationError("Give exactly one of url or task.")
        if "queue" in data and "task" not in data:
            raise ValidationError("queue goes with task.", "queue")
        if data.get("url", "").startswith("http:") and not self.context_allow_http:
            raise ValidationError("Must be an https URL.", "url")

    context_allow_http = False


class JobSchema(Schema):
    """``provider``, ``order`` (the provider's create-order body), optional ``idempotency_key``, ``not_before``."""

    class Meta:
        unknown = RAISE

    provider = fields.String(required=True, validate=validate.OneOf(PROVIDER_IDS))
    order = fields.Dict(keys=fields.String(), required=True)
    idempotency_key = Text(max_length=200, allow_none=True)
    not_before = fields.AwareDateTime(allow_none=True)
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
    allow_http: bool = False,
    default_notify: dict | None = None,
    can_sign: bool = True,
) -> Job:
    """Load and check a job; raise JobInvalid with every problem by field path (``order.lineItems.0.plan``).

    Card fields a producer sealed are opened to be checked; the order returned has them sealed again.
    """
    now = now or datetime.now(UTC)
    if not isinstance(job, dict):
        raise JobInvalid({"_schema": ["A job is an object of keyword arguments."]})
    schema = _job_schema(allow_http)
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
    unstorable = _unstorable(order, "order")
    if unstorable:
        raise JobInvalid(unstorable)
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
    job: Any, *, allow_http: bool = False, default_notify: dict | None = None, can_sign: bool = True
) -> dict | None:
    """Where a rejected job's outcome goes: its own target if that part of it is valid, else the default; None
    when neither can be used."""
    given = job.get("notify") if isinstance(job, dict) else None
    try:
        notify = _job_schema(allow_http).fields["notify"].schema.load(given) if given is not None else default_notify
        return _signable(notify, can_sign)
    except (ValidationError, JobInvalid, TypeError):
        return None


@functools.cache
def _job_schema(allow_http: bool) -> JobSchema:
    """One envelope schema per setting, made once (schemas are reusable across threads for loading)."""
    schema = JobSchema()
    schema.fields["notify"].schema.context_allow_http = allow_http
    return schema


@functools.cache
def _order_schema(provider_id: str) -> Schema:
    return REGISTRY[provider_id].OrderSchema()


def _unstorable(value: Any, path: str) -> dict[str, list[str]]:
    """Values JSON allows but Postgres's jsonb refuses (NUL characters, NaN, infinity), by field path."""
    if isinstance(value, dict):
        found: dict[str, list[str]] = {}
        for key, item in value.items():
            if "\x00" in key:
                found[path] = ["Keys must not contain NUL characters."]
            found.update(_unstorable(item, f"{path}.{key}"))
        return found
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _unstorable(item, f"{path}.{i}").items()}
    if isinstance(value, str) and "\x00" in value:
        return {path: ["Must not contain NUL characters."]}
    if isinstance(value, float) and not math.isfinite(value):
        return {path: ["NaN and infinity are not numbers here."]}
    return {}


def redact(value: Any) -> Any:
    """A copy with card data masked, for storing and showing what an invalid job held."""
    if isinstance(value, dict):
        return {k: "[redacted]" if k in SECRET_KEYS else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # jsonb has no NaN or infinity
    return value


def stored_job(job: Any) -> dict:
    """What is kept of an invalid job: redacted, and cut down when it is too large to keep whole."""
    try:
        kept = redact(job if isinstance(job, dict) else {"_job": job})
        # Postgres jsonb holds no NUL character; keep a visible stand-in instead.
        text = json.dumps(kept, default=repr).replace("\\u0000", "\\ufffd")
    except (TypeError, ValueError, RecursionError):
        return {"_unreadable": True}
    if len(text) > MAX_STORED_BYTES:
        return {"_truncated": True, "_size": len(text), "_head": text[:2000]}
    return json.loads(text)
