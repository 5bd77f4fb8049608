"""The one error tree. Foreign exceptions are translated once, where they enter: aiohttp's in
``providers/http.py`` (into the provider errors below); a database or broker that is away (psycopg's and kombu's
operational errors, ``worker.runtime.TRANSIENT_ERRORS``) at the task boundary, ``tasks/orders.py``, into
``ServiceUnavailable``, which Celery retries. Below the tasks they pass through unchanged, so the core's
functions stay plain.

The provider errors say by their class what a call came to; the provider's outcome policy
(``providers/policy.py``) says what the pipeline does next:
``RetryableError`` -> nothing was made: try again later,
``PermanentError`` -> the provider refused the order,
``InDoubtError``   -> the request went out and what came back cannot prove nothing was made (no answer, or a
                      500, 502 or 504 that may come from a gateway or a crash after the provider's commit).
"""

from __future__ import annotations

from typing import Any


class OrderRelayError(Exception):
    """Base of every error orderrelay raises on purpose."""


class ConfigError(OrderRelayError):
    """The environment is missing variables or holds malformed ones; the message names each of them."""


class JobInvalid(OrderRelayError):
    """A job failed validation; ``errors`` maps field paths to marshmallow's messages."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("invalid job: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


class OrderNotFound(OrderRelayError):
    """No order has the id or key asked for."""


class ActionRefused(OrderRelayError):
    """An operator's action does not fit the order's status; the message says why."""


class ProviderError(OrderRelayError):
    """A provider call did not place the order. Subclasses say what to do next."""

    outcome = "permanent"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        details: Any = None,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.details = details

    def as_record(self) -> dict[str, Any]:
        """The error as stored on the order and the attempt (callers redact card data before raising)."""
        record = {"kind": self.outcome, "message": self.message}
        for name in ("status", "code", "retry_after", "details"):
            value = getattr(self, name)
            if value is not None:
                record[name] = value
        return record


class RetryableError(ProviderError):
    """Nothing was created: a 429, a 503, a refused connection, a timeout before the request went out, or a
    failed lookup (which sends no order)."""

    outcome = "retryable"


class HeldBack(RetryableError):
    """The provider's shared limits hold the call back (it is paused, or its next turn is too far away): nothing was
    sent, and the order is deferred for ``retry_after`` seconds without an attempt counted."""

    outcome = "retryable"


class PermanentError(ProviderError):
    """The provider refused the order (a 4xx other than 429); sending it again would change nothing."""

    outcome = "permanent"


class InDoubtError(ProviderError):
    """The request went out and the provider may have made the order: no answer came back (a dropped connection,
    a read timeout), or a 500, 502 or 504 did, which a gateway or a crash can give after the commit."""

    outcome = "in_doubt"


class AuthError(PermanentError):
    """The provider refused our credentials, even after getting a fresh token."""


class ServiceUnavailable(OrderRelayError):
    """Postgres or the broker failed under a task: it is retried later. Its text is redacted (no job data)."""


class TaskFailed(OrderRelayError):
    """A task failed on an error of ours; logged with its traceback, shown (in Flower's events) redacted."""


class ClaimLost(OrderRelayError):
    """This worker's claim on an order ran out and was taken (it was frozen, or cut off): it must not send."""
