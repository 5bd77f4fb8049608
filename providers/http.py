"""The shared HTTP layer: one aiohttp session per process, one predicate that classifies every outcome.

Timeouts before the request went out and refused connections are retryable; 429 and 503 are retryable and
honour ``Retry-After`` (the provider turned the request away unprocessed); any other 5xx is *in doubt* (a
gateway or a crash can answer 500, 502 or 504 after the provider made the order), and so are a read timeout
and a dropped connection after the request went out; other 4xx are permanent. aiohttp's exceptions are
translated here, once, into the error tree. What the pipeline does with each class is ``orderrelay.providers.policy``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from orderrelay import __version__
from orderrelay.foundation.errors import (
    AuthError,
    ClaimLost,
    InDoubtError,
    PermanentError,
    ProviderError,
    RetryableError,
)
from orderrelay.foundation.logs import mask_cards
from orderrelay.foundation.options import ProviderSettings, Settings
from orderrelay.foundation.walk import DESCEND, remap
from orderrelay.providers.auth import Token
from orderrelay.providers.base import Key, Placed, Provider, Request, Response
from orderrelay.providers.egress import SafeResolver
from orderrelay.providers.policy import Call

USER_AGENT = f"orderrelay/{__version__}"


class Http:
    """The process's one aiohttp session, and each provider's token with a lock against refresh stampedes."""

    def __init__(self, settings: Settings):
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(
                total=settings.http_connect_timeout + 2 * settings.http_read_timeout,
                connect=settings.http_connect_timeout,
                sock_read=settings.http_read_timeout,
            ),
            connector=aiohttp.TCPConnector(limit=settings.http_max_connections, limit_per_host=0),
            headers={"User-Agent": USER_AGENT},
            raise_for_status=False,
        )
        # Webhooks go out on a session of their own: to the public internet only (providers.egress), no redirects.
        self.webhooks = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=SafeResolver(settings.notify_allow_hosts), limit=64),
            headers={"User-Agent": USER_AGENT},
        )
        self.allow_hosts = settings.notify_allow_hosts
        self.tokens: dict[str, Token] = {}
        self.locks: dict[str, asyncio.Lock] = {}

    def lock(self, provider_id: str) -> asyncio.Lock:
        return self.locks.setdefault(provider_id, asyncio.Lock())

    async def send(self, base_url: str, request: Request, headers: dict[str, str] | None = None) -> Response:
        """Send one request; aiohttp's failures come out as RetryableError or InDoubtError."""
        url = base_url.rstrip("/") + request.path
        try:
            async with self.session.request(
                request.method,
                url,
                json=request.json if request.form is None else None,
                data=request.form,
                params=request.params,
                headers={**request.headers, **(headers or {})},
            ) as resp:
                raw = await resp.read()
                return Response(resp.status, dict(resp.headers), _parse(raw, resp.content_type))
        except aiohttp.ConnectionTimeoutError as exc:
            raise RetryableError(f"timed out connecting to {request.method} {request.path}") from exc
        except aiohttp.ClientConnectorError as exc:
            raise RetryableError(f"could not connect for {request.method} {request.path}: {exc.os_error}") from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise InDoubtError(
                f"no answer to {request.method} {request.path} after it was sent: {type(exc).__name__}"
            ) from exc

    async def close(self) -> None:
        await self.session.close()
        await self.webhooks.close()


def _parse(raw: bytes, content_type: str) -> Any:
    if "json" in content_type:
        try:
            return json.loads(raw)
        except ValueError:
            pass
    return raw.decode("utf-8", "replace")


def retry_after(headers: dict[str, str]) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), or None."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


UNPROCESSED = (429, 503)  # turned away before processing: nothing was made


def may_have_made(status: int) -> bool:
    """Whether an answer with this status may follow an order the provider made (a 5xx other than 503)."""
    return status >= 500 and status not in UNPROCESSED


def check(provider: Provider, response: Response) -> None:
    """The one predicate: 2xx passes; 429 and 503 are retryable; other 5xx in doubt; any other status permanent."""
    if 200 <= response.status < 300:
        return
    info = provider.error(response)
    kwargs = {"status": response.status, "code": info.code, "details": scrub(info.details)}
    if response.status in UNPROCESSED:
        raise RetryableError(scrub(info.message), retry_after=retry_after(response.headers), **kwargs)
    if may_have_made(response.status):
        raise InDoubtError(scrub(info.message), **kwargs)
    raise PermanentError(scrub(info.message), **kwargs)


def scrub(value: Any) -> Any:
    """A provider's answer (its error text, or the order it returns) with anything shaped like a card number
    masked, spaces and dashes included, before it is stored or logged."""
    return remap(value, lambda v, key: mask_cards(v) if isinstance(v, str) else DESCEND)


def _fresh(provider: Provider) -> dict[str, str]:
    """A new value for each header that must differ on every request (Adobe's X-Request-Id)."""
    return {name: str(uuid.uuid4()) for name in provider.FRESH_HEADERS}


async def call(provider: Provider, http: Http, cfg: ProviderSettings, request: Request) -> Response:
    """Send an authenticated request that makes nothing (a lookup, a follow-up); on a 401 a fresh token, once."""
    for fresh in (False, True):
        headers = await provider.authenticate(http, cfg, fresh=fresh)
        response = await http.send(cfg.base_url, request, {**headers, **_fresh(provider)})
        if response.status != 401:
            return response
    raise _fresh_token_refused(provider, response)


def _fresh_token_refused(provider: Provider, response: Response) -> AuthError:
    info = provider.error(response)
    return AuthError(f"{provider.ID} refused a fresh token: {info.message}", status=401, code=info.code)


@dataclass
class Sending:
    """The create requests of one attempt: the key they carry, and whether one may have made the order."""

    key: str
    kind: str  # the provider's ``Key`` kind
    uncertain: bool  # a request (of this attempt or an earlier one) may have made the order
    sent: bool = False  # a create request went out in this attempt
    in_flight: bool = False  # one is out now, unanswered
    sent_key: str | None = None  # the key the last create request carried

    def going(self) -> None:
        self.sent, self.in_flight, self.sent_key = True, True, self.key

    def not_sent(self) -> None:
        self.in_flight = False

    def unanswered(self) -> None:
        self.in_flight, self.uncertain = False, True

    def answered(self, status: int) -> None:
        """An answer came: renew a per-answer key, unless some request may have made the order (then only the
        same key can find out what the provider holds)."""
        self.in_flight = False
        if may_have_made(status):
            self.uncertain = True
        elif self.kind == Key.PER_ANSWER and not self.uncertain:
            self.key = str(uuid.uuid4())


Fence = Callable[[], Awaitable[None]]


async def place(
    provider: Provider, http: Http, cfg: ProviderSettings, order: dict, sending: Sending, fence: Fence
) -> Placed:
    """Create the order at the provider; raises a ProviderError when it was not (or may not have been) made.

    ``fence`` runs right before each create request goes out and raises ClaimLost if this worker lost its claim.
    """
    for fresh in (False, True):
        headers = await provider.authenticate(http, cfg, fresh=fresh)
        await fence()
        request = provider.request(order, sending.key, cfg)
        sending.going()
        try:
            response = await http.send(cfg.base_url, request, {**headers, **_fresh(provider)})
        except InDoubtError:
            sending.unanswered()
            raise
        except RetryableError:
            sending.not_sent()
            raise
        if 200 <= response.status < 300:
            try:
                placed = provider.response(response.body)
            except InDoubtError:  # a success that does not say what was made: as an answer lost (the key stays)
                sending.unanswered()
                raise
        sending.answered(response.status)
        if response.status != 401:
            check(provider, response)
            return dataclasses.replace(placed, http_status=response.status)
    raise _fresh_token_refused(provider, response)


async def follow_up(provider: Provider, http: Http, cfg: ProviderSettings, order: dict, ref: str) -> Placed | None:
    """The placed order as the provider sees it now; None where the provider offers no way to read it."""
    request = provider.follow_up(order, ref)
    if request is None:
        return None
    response = await call(provider, http, cfg, request)
    check(provider, response)
    return provider.response(response.body)


async def lookup(provider: Provider, http: Http, cfg: ProviderSettings, order: dict) -> list[Placed]:
    """The orders the provider holds that are provably this one ([] if none, or no lookup exists).

    A lookup sends no order, so whatever goes wrong with it is retryable.
    """
    request = provider.lookup(order)
    if request is None:
        return []
    try:
        response = await call(provider, http, cfg, request)
        check(provider, response)
    except (InDoubtError, PermanentError) as exc:
        raise RetryableError(f"the lookup failed: {exc.message}", status=exc.status, code=exc.code) from exc
    return [dataclasses.replace(p, http_status=response.status) for p in provider.found(response.body, order)]


Owners = Callable[[list[Placed]], Awaitable[list[Placed]]]


async def attempt(
    provider: Provider,
    http: Http,
    cfg: ProviderSettings,
    order: dict,
    sending: Sending,
    *,
    fence: Fence,
    ours: Owners,
    deadline: float,
) -> Call:
    """One attempt, as the policy asks: when the order is uncertain and the provider has a lookup, look first;
    otherwise (or if it finds nothing) send the create request; if that is refused while the order is uncertain,
    look once more. ``ours`` keeps the found orders no other order of ours has recorded. Never longer than
    ``deadline`` seconds: a deadline that passes during a create request leaves it in doubt."""
    look = provider.LOOKUP and sending.uncertain
    try:
        async with asyncio.timeout(deadline):
            if look and (found := await ours(await lookup(provider, http, cfg, order))):
                return Call(placed=found[0], found=True)
            try:
                return Call(placed=await place(provider, http, cfg, order, sending, fence))
            except PermanentError as refused:
                if not look:
                    raise
                try:
                    found = await ours(await lookup(provider, http, cfg, order))
                except RetryableError:  # the lookup that would settle it failed: the refusal alone stands
                    return Call(error=refused)
                if found:
                    return Call(placed=found[0], found=True)
                return Call(error=refused, refusal_confirmed=True)
    except ClaimLost:
        return Call(claim_lost=True)
    except ProviderError as exc:
        return Call(error=exc)
    except TimeoutError:
        if sending.in_flight:
            sending.unanswered()
            return Call(error=InDoubtError(f"no answer within the attempt's deadline ({deadline:.0f} s)"))
        return Call(error=RetryableError(f"the attempt's deadline ({deadline:.0f} s) passed before sending"))
