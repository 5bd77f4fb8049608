"""One predicate classifies every HTTP outcome; the pipeline maps each class to the order's next status."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from types import SimpleNamespace

import pytest

from config.settings import Settings
from orderrelay import pipeline
from orderrelay.constants import Status
from orderrelay.errors import InDoubtError, PermanentError, RetryableError
from providers import extend
from providers.base import Placed, Response
from providers.http import check, retry_after

SETTINGS = Settings(
    broker_url="redis://",
    database_url="postgresql://",
    fernet_keys=("k",),
    providers={},
    max_attempts=3,
    backoff_base=1.0,
    backoff_max=60.0,
)


def classify(status: int, headers: dict | None = None, body=None):
    try:
        check(extend, Response(status, headers or {}, body if body is not None else {"message": "m", "code": "c"}))
    except (RetryableError, PermanentError) as exc:
        return exc
    return None


@pytest.mark.parametrize("status", [200, 201, 204])
def test_2xx_passes(status):
    assert classify(status) is None


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_5xx_and_429_are_retryable(status):
    assert isinstance(classify(status), RetryableError)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_other_4xx_are_permanent(status):
    error = classify(status)
    assert type(error) is PermanentError
    assert (error.status, error.code, error.message) == (status, "c", "m")


def test_429_and_503_honour_retry_after_seconds():
    assert classify(429, {"Retry-After": "7"}).retry_after == 7.0
    assert classify(503, {"retry-after": "2.5"}).retry_after == 2.5
    assert classify(500, {"Retry-After": "7"}).retry_after is None


def test_retry_after_as_an_http_date():
    when = datetime.now(UTC) + timedelta(seconds=30)
    assert 25 <= retry_after({"Retry-After": format_datetime(when, usegmt=True)}) <= 31
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({}) is None


def test_a_non_json_error_body_still_makes_a_message():
    error = classify(502, body="<html>bad gateway</html>")
    assert "bad gateway" in error.message


def test_backoff_has_full_jitter_and_a_cap_and_honours_retry_after():
    delays = [pipeline.backoff(SETTINGS, 3, None) for _ in range(200)]
    assert all(0 <= d <= 4 for d in delays) and max(delays) > 2 and min(delays) < 2
    assert all(pipeline.backoff(SETTINGS, 30, None) <= 60 for _ in range(50))
    assert pipeline.backoff(SETTINGS, 1, 9.0) >= 9.0


NON_IDEMPOTENT = SimpleNamespace(ID="nokey", IDEMPOTENT=False, LOOKUP=False)


def decide(error=None, placed=None, provider=extend, attempt=1):
    return pipeline._decide(SETTINGS, provider, attempt, placed, error)


def test_placed_goes_to_placed():
    status, reason, due = decide(placed=Placed("ref-1", "closed", {}))
    assert (status, due) == (Status.PLACED, None) and "ref-1" in reason


def test_permanent_fails_at_once():
    assert decide(PermanentError("no", status=400))[0] == Status.FAILED


def test_retryable_retries_until_the_last_attempt():
    status, _, due = decide(RetryableError("busy", status=503, retry_after=5))
    assert status == Status.RETRYING and due >= datetime.now(UTC) + timedelta(seconds=4.9)
    assert decide(RetryableError("busy"), attempt=SETTINGS.max_attempts)[0] == Status.FAILED


def test_in_doubt_resends_only_where_a_key_or_lookup_makes_it_safe():
    assert decide(InDoubtError("lost"))[0] == Status.RETRYING
    assert decide(InDoubtError("lost"), provider=NON_IDEMPOTENT)[0] == Status.IN_DOUBT
    looked_up = replace(SETTINGS)  # same settings; a provider with a lookup but no key
    assert (
        pipeline._decide(
            looked_up, SimpleNamespace(ID="l", IDEMPOTENT=False, LOOKUP=True), 1, None, InDoubtError("lost")
        )[0]
        == Status.RETRYING
    )


def test_extend_request_drops_the_consumed_wait_and_sends_the_key():
    order = {"transactionId": "t", "transactionDelay": 0.5, "currency": "USD"}
    request = extend.request(order, "key-1", None)
    assert request.json == {"transactionId": "t", "currency": "USD"}
    assert request.headers["X-Idempotency-Key"] == "key-1"
    assert request.headers["Accept"] == "application/json; version=2022-02-01"
