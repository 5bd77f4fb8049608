"""One predicate classifies every HTTP outcome; the provider's policy maps each class to the order's next status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from types import SimpleNamespace

import pytest

from orderrelay.config.settings import Settings
from orderrelay.foundation.constants import Status
from orderrelay.foundation.errors import AuthError, InDoubtError, PermanentError, RetryableError
from orderrelay.providers import adobe_vip, chaiz, extend, webroot
from orderrelay.providers.base import Key, Placed, Response
from orderrelay.providers.http import Sending, check, retry_after
from orderrelay.providers.policy import Call, backoff, decide

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
    except (RetryableError, PermanentError, InDoubtError) as exc:
        return exc
    return None


@pytest.mark.parametrize("status", [200, 201, 204])
def test_2xx_passes(status):
    assert classify(status) is None


@pytest.mark.parametrize("status", [429, 503])
def test_429_and_503_are_retryable_nothing_was_made(status):
    assert type(classify(status)) is RetryableError


@pytest.mark.parametrize("status", [500, 502, 504, 507])
def test_other_5xx_are_in_doubt_they_may_follow_a_made_order(status):
    assert type(classify(status)) is InDoubtError


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
    delays = [backoff(SETTINGS, 3, None) for _ in range(200)]
    assert all(0 <= d <= 4 for d in delays) and max(delays) > 2 and min(delays) < 2
    assert all(backoff(SETTINGS, 30, None) <= 60 for _ in range(50))
    assert backoff(SETTINGS, 1, 9.0) >= 9.0


NOW = datetime(2026, 12, 1, tzinfo=UTC)
NO_KEY_NO_LOOKUP = SimpleNamespace(ID="nokey", KEY=Key.NONE, KEY_TTL=None, LOOKUP=False, FAILED_STATUSES=frozenset())


def decision_of(error=None, placed=None, provider=extend, attempt=1, uncertain=False, key_age=0.0, **call):
    return decide(
        SETTINGS,
        provider,
        Call(placed=placed, error=error, **call),
        attempt=attempt,
        uncertain_before=uncertain,
        key_sent_at=NOW - timedelta(seconds=key_age),
        now=NOW,
    )


def status_of(*args, **kwargs) -> str:
    return decision_of(*args, **kwargs).status


def test_placed_goes_to_placed():
    result = decision_of(placed=Placed("ref-1", "closed", {}))
    assert (result.status, result.due_at) == (Status.PLACED, None) and "ref-1" in result.reason


def test_an_order_the_provider_made_in_a_failed_status_is_failed_with_that_status_as_its_error():
    result = decision_of(placed=Placed("8001", "1008", {}), provider=adobe_vip)
    assert (result.status, result.error["code"]) == (Status.FAILED, "1008")


def test_permanent_fails_at_once():
    assert status_of(PermanentError("no", status=400)) == Status.FAILED


def test_retryable_retries_until_the_last_attempt_then_fails():
    result = decision_of(RetryableError("busy", status=503, retry_after=5))
    assert result.status == Status.RETRYING and result.due_at >= NOW + timedelta(seconds=4.9)
    assert status_of(RetryableError("busy"), attempt=SETTINGS.max_attempts) == Status.FAILED


@pytest.mark.parametrize(
    ("provider", "expected"),
    [(extend, Status.RETRYING), (adobe_vip, Status.RETRYING), (webroot, Status.RETRYING), (chaiz, Status.IN_DOUBT)],
)
def test_in_doubt_resends_only_where_a_key_or_a_lookup_makes_it_safe(provider, expected):
    assert status_of(InDoubtError("lost"), provider=provider) == expected
    assert status_of(InDoubtError("a 502", status=502), provider=provider) == expected


def test_an_uncertain_order_never_ends_failed_when_its_attempts_run_out():
    last = SETTINGS.max_attempts
    assert status_of(RetryableError("503"), attempt=last, uncertain=True) == Status.IN_DOUBT
    assert status_of(InDoubtError("lost"), attempt=last) == Status.IN_DOUBT
    assert status_of(RetryableError("the lookup failed"), uncertain=True) == Status.RETRYING


def test_an_uncertain_order_is_not_resent_under_a_key_the_provider_has_forgotten():
    ten_days = 10 * 86400
    assert status_of(InDoubtError("lost"), provider=adobe_vip, key_age=ten_days - 60) == Status.RETRYING
    assert status_of(InDoubtError("lost"), provider=adobe_vip, key_age=ten_days + 60) == Status.IN_DOUBT
    assert status_of(InDoubtError("lost"), provider=extend, key_age=ten_days) == Status.RETRYING  # a lookup first
    assert status_of(RetryableError("429"), provider=NO_KEY_NO_LOOKUP, uncertain=True) == Status.IN_DOUBT


def test_a_refusal_after_an_uncertain_attempt_is_failed_only_when_it_proves_nothing_was_made():
    refused = PermanentError("already converted", status=400)
    assert status_of(refused, provider=webroot, uncertain=True) == Status.IN_DOUBT  # no key, no confirmation
    assert status_of(refused, provider=webroot, uncertain=True, refusal_confirmed=True) == Status.FAILED
    assert status_of(refused, provider=adobe_vip, uncertain=True) == Status.FAILED  # the same id would replay
    assert status_of(refused, provider=adobe_vip, uncertain=True, key_age=11 * 86400) == Status.IN_DOUBT
    assert status_of(AuthError("bad token", status=401), provider=adobe_vip, uncertain=True) == Status.IN_DOUBT


def test_a_per_answer_key_is_renewed_after_an_answer_unless_a_request_may_have_made_the_order():
    clean = Sending("k1", Key.PER_ANSWER, uncertain=False)
    clean.answered(429)
    assert clean.key != "k1" and not clean.uncertain
    made = Sending("k1", Key.PER_ANSWER, uncertain=False)
    made.answered(502)
    assert (made.key, made.uncertain) == ("k1", True)
    lost = Sending("k1", Key.PER_ANSWER, uncertain=True)
    lost.answered(429)
    assert lost.key == "k1"  # an earlier request with k1 may have made it: only k1 can tell
    stable = Sending("k1", Key.STABLE, uncertain=False)
    stable.answered(429)
    assert stable.key == "k1"


def test_extend_request_drops_the_consumed_wait_and_sends_the_key():
    order = {"transactionId": "t", "transactionDelay": 0.5, "currency": "USD"}
    request = extend.request(order, "key-1", None)
    assert request.json == {"transactionId": "t", "currency": "USD"}
    assert request.headers["X-Idempotency-Key"] == "key-1"
    assert request.headers["Accept"] == "application/json; version=2022-02-01"


@pytest.mark.parametrize("body", [{"pricing": {"total": 10}}, {"orderId": ""}, "<html>maintenance</html>", None])
def test_an_adobe_success_naming_no_order_is_in_doubt_and_keeps_its_correlation_id(body):
    """A 2xx that says nothing of what was made (a preview's pricing, an empty id, a maintenance page): the
    order may exist, so the attempt is uncertain and a resend carries the same correlation id."""
    import asyncio

    from orderrelay.providers.http import place

    class Gateway:
        authenticated: set[str] = set()  # noqa: RUF012 - the Http's record of providers authenticated to

        async def send(self, base_url, request, headers, hooks=None):
            await hooks.connected()  # its connection is open
            return Response(200, {}, body)

    async def no_auth(http, cfg, *, fresh):
        return {}

    async def nothing():
        return None

    fence = SimpleNamespace(before=nothing, connecting=nothing, connected=nothing, pace=nothing, nothing_made=nothing)

    provider = SimpleNamespace(**{k: getattr(adobe_vip, k) for k in dir(adobe_vip) if not k.startswith("_")})
    provider.authenticate = no_auth
    sending = Sending("corr-1", Key.PER_ANSWER, uncertain=False)
    cfg = SimpleNamespace(base_url="http://adobe.invalid")
    with pytest.raises(InDoubtError, match="without an orderId"):
        asyncio.run(place(provider, Gateway(), cfg, adobe_order_for_test(), sending, fence))
    assert (sending.uncertain, sending.key) == (True, "corr-1")


def adobe_order_for_test() -> dict:
    from orderrelay.sandbox.samples import adobe_order

    return adobe_order("9876543210", "65304470CA01A12")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("inf", 900.0),
        ("1e400", 900.0),
        ("nan", 900.0),
        ("1e12", 900.0),
        ("-5", 0.0),
        ("-inf", 0.0),
        ("-1e400", 0.0),
        ("Fri, 31 Dec 9999 23:59:59 GMT", 900.0),
        ("Mon, 01 Jan 0001 00:00:00 GMT", 0.0),
        ("\uff17", 7.0),  # a fullwidth 7: Python reads it, and it is bounded like any other
    ],
)
def test_every_retry_after_is_bounded(value, seconds):
    from orderrelay.providers.base import LONGEST_RETRY_AFTER

    assert LONGEST_RETRY_AFTER == 900.0
    assert retry_after({"Retry-After": value}) == seconds


def test_a_card_number_in_a_providers_answer_is_masked_wherever_it_stands():
    from orderrelay.providers.http import scrub

    answer = {
        "payment": {"accountNumber": 4111111111111111, "last4": 1111, "amount": 54297},
        "4111111111111111": "echoed as a key",
        "text": "card 4111 1111 1111 1111",
        "list": [5555555555554444, True, None, 1.5],
        "id": 2026120400012345,  # no card number: kept as it is
    }
    assert scrub(answer) == {
        "payment": {"accountNumber": "************1111", "last4": 1111, "amount": 54297},
        "************1111": "echoed as a key",
        "text": "card ***************1111",
        "list": ["************4444", True, None, 1.5],
        "id": 2026120400012345,
    }
    error = classify(400, body={"code": "4111111111111111", "message": "bad card 4111111111111111"})
    assert "4111111111111111" not in f"{error.code} {error.message}"
