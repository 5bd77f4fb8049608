"""The shared HTTP layer: one aiohttp session per process, one predicate that classifies every outcome.

Timeouts before the request went out and refused connections are retryable; 429 and 503 are retryable and
honour ``Retry-After`` (the provider turned the request away unprocessed); any other 5xx is *in doubt* (a
gateway or a crash can answer 500, 502 or 504 after the provider made the order), and so are a read timeout
and a dropped connection after the request went out; other 4xx are permanent. aiohttp's exceptions are
translated here, once, into the error tree. What the pipeline does with each class is ``orderrelay.providers.policy``.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

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
from orderrelay.providers.base import Key, Placed, Provider, Request, Response, retry_after
from orderrelay.providers.egress import SafeResolver
from orderrelay.providers.policy import Call
from orderrelay.schemas.hostile import clean_text

USER_AGENT = f"orderrelay/{__version__}"
# Every time a provider gives us is bounded: a Retry-After (in seconds or as a date) of more than this, or one that is
# no number at all ("inf", "1e400", a date in year 9999), is taken as this, and the provider is asked again then.
LONGEST_RETRY_AFTER = 900.0
MAX_ANSWER = 4_000_000  # bytes of an answer read at most; a longer one is read as unreadable
MAX_REF = 500  # characters of a provider's reference kept (an absurd one is cut, and cleaned of what cannot be stored)
# Before each request other than a create (a token grant, a lookup, a follow-up read): wait for the provider's turn
# under its shared limits, or raise HeldBack (the worker's runtime sets it to orderrelay.core.limits' ``pace``).
# Within an attempt, the attempt's own fence paces them instead (its first request uses the turn the order was
# given), set for the attempt's coroutine in ``ATTEMPT``.
Pace = Callable[[str], Awaitable[None]]
ATTEMPT: contextvars.ContextVar[Fence | None] = contextvars.ContextVar("orderrelay_attempt", default=None)


class Http:
    """The process's one aiohttp session, and each provider's token with a lock against refresh stampedes."""

    def __init__(self, settings: Settings, pace: Pace | None = None):
        self.pace = pace
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(
                total=settings.http_connect_timeout + 2 * settings.http_read_timeout,
                connect=settings.http_connect_timeout,
                sock_read=settings.http_read_timeout,
            ),
            connector=aiohttp.TCPConnector(limit=settings.http_max_connections, limit_per_host=0),
            headers={"User-Agent": USER_AGENT},
            raise_for_status=False,
            trace_configs=[_connection_hooks()],
        )
        # Webhooks go out on a session of their own: to the public internet only (providers.egress), no redirects.
        self.webhooks = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=SafeResolver(settings.notify_allow_hosts), limit=64),
            headers={"User-Agent": USER_AGENT},
        )
        self.allow_hosts = settings.notify_allow_hosts
        self.tokens: dict[str, Token] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.authenticated: set[str] = set()  # providers this process has authenticated to (see ``ready``)

    def lock(self, provider_id: str) -> asyncio.Lock:
        return self.locks.setdefault(provider_id, asyncio.Lock())

    def ready(self, provider_id: str) -> bool:
        """Whether authenticating to the provider sends no request now: it was done before in this process, and its
        token (if it grants one) is good for a minute more."""
        token = self.tokens.get(provider_id)
        return provider_id in self.authenticated and (token is None or token.fresh(margin=60.0))

    async def send(
        self,
        base_url: str,
        request: Request,
        headers: dict[str, str] | None = None,
        *,
        provider: str | None = None,
        hooks: ConnectionHooks | None = None,
    ) -> Response:
        """Send one request; aiohttp's failures come out as RetryableError or InDoubtError. With ``provider``, the
        request first waits for that provider's turn (``pace``; a create request's turn is taken before). With
        ``hooks``, ``connecting`` runs when the request must wait for a connection (one to be made, or a free slot)
        and ``connected`` once it has one, before a byte of it is written: what either raises, it is not sent."""
        if provider is not None:
            fence = ATTEMPT.get()
            if fence is not None:
                await fence.pace()
            elif self.pace is not None:
                await self.pace(provider)
        url = base_url.rstrip("/") + request.path
        try:
            async with self.session.request(
                request.method,
                url,
                json=request.json if request.form is None else None,
                data=request.form,
                params=request.params,
                headers={**request.headers, **(headers or {})},
                trace_request_ctx=hooks,
            ) as resp:
                return Response(resp.status, dict(resp.headers), await _body(resp))
        except (ValueError, TypeError) as exc:  # aiohttp refused to build it (a header with a control character ...)
            raise RetryableError(f"{request.method} {request.path} could not be sent: {type(exc).__name__}") from exc
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


@dataclass(frozen=True)
class ConnectionHooks:
    """What a create request runs as aiohttp gets its connection (see ``_connection_hooks``)."""

    connecting: Callable[[], Awaitable[None]]
    connected: Callable[[], Awaitable[None]]


def _connection_hooks() -> aiohttp.TraceConfig:
    """aiohttp's own signals of a request's connection, awaited before the request is written: that it must wait for
    one (a connection to be made, a free slot), and that it has one (made, or taken from the pool). Where a create
    request's durable "sending" mark is taken back and written, so that a worker killed while it connects (a
    provider slow to accept, a TLS handshake) has sent nothing it could be in doubt about."""

    def hook(name: str) -> Callable[..., Awaitable[None]]:
        async def run(session: Any, context: Any, params: Any) -> None:
            hooks = context.trace_request_ctx
            if isinstance(hooks, ConnectionHooks):
                await getattr(hooks, name)()

        return run

    signals = aiohttp.TraceConfig()
    signals.on_connection_queued_start.append(hook("connecting"))
    signals.on_connection_create_start.append(hook("connecting"))
    signals.on_connection_create_end.append(hook("connected"))
    signals.on_connection_reuseconn.append(hook("connected"))
    return signals


async def _body(resp: aiohttp.ClientResponse) -> Any:
    """The answer's body, parsed from JSON when it is JSON; one longer than MAX_ANSWER is not read whole."""
    if (resp.content_length or 0) > MAX_ANSWER:
        return f"[an answer of {resp.content_length} bytes, not read]"
    raw = bytearray()
    async for chunk in resp.content.iter_chunked(1 << 16):
        raw += chunk
        if len(raw) > MAX_ANSWER:
            return f"[an answer of more than {MAX_ANSWER} bytes, not read]"
    if "json" in resp.content_type:
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            pass
    return raw.decode("utf-8", "replace")


UNPROCESSED = (429, 503)  # turned away before processing: nothing was made


def may_have_made(status: int) -> bool:
    """Whether an answer with this status may follow an order the provider made (a 5xx other than 503)."""
    return status >= 500 and status not in UNPROCESSED


def check(provider: Provider, response: Response) -> None:
    """The one predicate: 2xx passes; 429 and 503 are retryable; other 5xx in doubt; any other status permanent."""
    if 200 <= response.status < 300:
        return
    info = provider.error(response)
    kwargs = {"status": response.status, "code": scrub(info.code), "details": scrub(info.details)}
    if response.status in UNPROCESSED:
        raise RetryableError(scrub(info.message), retry_after=retry_after(response.headers), **kwargs)
    if may_have_made(response.status):
        raise InDoubtError(scrub(info.message), **kwargs)
    raise PermanentError(scrub(info.message), **kwargs)


def scrub(value: Any) -> Any:
    """A provider's answer (its error text, or the order it returns) with every card number in it masked before it
    is stored or logged: in its text (spaced, dashed, escaped ...), as a JSON number, and as an object's key."""
    return remap(value, _masked, rekey=lambda k: mask_cards(k) if isinstance(k, str) else k)


def _masked(value: Any, key: Any) -> Any:
    if isinstance(value, str):
        return mask_cards(value)
    if isinstance(value, int) and not isinstance(value, bool) and 13 <= len(str(abs(value))) <= 19:
        masked = mask_cards(str(value))  # a card number sent as a JSON number: kept as its masked text
        return value if masked == str(value) else masked
    return DESCEND


def _fresh(provider: Provider) -> dict[str, str]:
    """A new value for each header that must differ on every request (Adobe's X-Request-Id)."""
    return {name: str(uuid.uuid4()) for name in provider.FRESH_HEADERS}


async def call(provider: Provider, http: Http, cfg: ProviderSettings, request: Request) -> Response:
    """Send an authenticated request that makes nothing (a lookup, a follow-up); on a 401 a fresh token, once."""
    for fresh in (False, True):
        headers = await provider.authenticate(http, cfg, fresh=fresh)
        response = await http.send(cfg.base_url, request, {**headers, **_fresh(provider)}, provider=provider.ID)
        if response.status != 401:
            return response
    raise _fresh_token_refused(provider, response)


def _fresh_token_refused(provider: Provider, response: Response) -> AuthError:
    info = provider.error(response)
    return AuthError(f"{provider.ID} refused a fresh token: {info.message}", status=401, code=info.code)


@dataclass
class Sending:
    """The create requests of one attempt: the key they carry, and whether one may have made the order.

    ``marked``: the attempt's durable mark that a create request is going out now is written (by the claim's own
    statement where nothing stood between them; see the pipeline's fence); ``sent``: the request went on to be
    written.
    """

    key: str
    kind: str  # the provider's ``Key`` kind
    uncertain: bool  # a request (of this attempt or an earlier one) may have made the order
    marked: bool = False
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


class Fence(Protocol):
    """What runs around an attempt's requests: ``before`` a create request (the provider's turn: HeldBack when it is
    far), ``connecting`` when it must wait for a connection (a mark the claim wrote is taken back), ``connected``
    once it has one (the durable mark that it goes out now, fenced by the claim: ClaimLost when it must not),
    ``pace`` before any other request (a token grant, a lookup: its turn, or HeldBack), and ``nothing_made`` after an
    answer that proves the create made nothing and another follows (a 401: the mark is taken back)."""

    async def before(self) -> None: ...

    async def connecting(self) -> None: ...

    async def connected(self) -> None: ...

    async def pace(self) -> None: ...

    async def nothing_made(self) -> None: ...


async def place(
    provider: Provider, http: Http, cfg: ProviderSettings, order: dict, sending: Sending, fence: Fence
) -> Placed:
    """Create the order at the provider; raises a ProviderError when it was not (or may not have been) made."""
    for fresh in (False, True):
        headers = await provider.authenticate(http, cfg, fresh=fresh)
        http.authenticated.add(provider.ID)
        await fence.before()
        request = provider.request(order, sending.key, cfg)

        async def connected() -> None:  # the connection is open: marked as sending (unless it is), then written
            await fence.connected()
            sending.going()

        hooks = ConnectionHooks(fence.connecting, connected)
        try:
            response = await http.send(cfg.base_url, request, {**headers, **_fresh(provider)}, hooks=hooks)
        except InDoubtError:
            sending.unanswered()
            raise
        except RetryableError:
            sending.not_sent()
            raise
        if 200 <= response.status < 300:
            try:
                placed = _kept(provider.response(response.body))
            except InDoubtError:  # a success that does not say what was made: as an answer lost (the key stays)
                sending.unanswered()
                raise
        sending.answered(response.status)
        if response.status != 401:
            check(provider, response)
            return dataclasses.replace(placed, http_status=response.status)
        if not fresh:
            await fence.nothing_made()
    raise _fresh_token_refused(provider, response)


def _kept(placed: Placed) -> Placed:
    """A placed order as it can be stored and compared: its reference and its status as text (a provider may answer a
    number, an object, NaN), cleaned of what Postgres refuses (NUL, a lone surrogate), cut to MAX_REF characters."""
    ref, status = _text(placed.ref), None if placed.status is None else _text(placed.status)
    return (
        placed if (ref, status) == (placed.ref, placed.status) else dataclasses.replace(placed, ref=ref, status=status)
    )


def _text(value: Any) -> str:
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value, default=repr)
        if isinstance(value, dict | list)
        else str(value)
    )
    return text if text.isascii() and len(text) <= MAX_REF and "\x00" not in text else clean_text(text[:MAX_REF])


async def follow_up(provider: Provider, http: Http, cfg: ProviderSettings, order: dict, ref: str) -> Placed | None:
    """The placed order as the provider sees it now; None where the provider offers no way to read it."""
    request = provider.follow_up(order, ref)
    if request is None:
        return None
    response = await call(provider, http, cfg, request)
    check(provider, response)
    return _kept(provider.response(response.body))


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
    return [dataclasses.replace(_kept(p), http_status=response.status) for p in provider.found(response.body, order)]


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
    ATTEMPT.set(fence)  # this coroutine's token grants and lookups are paced by the attempt's fence
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
        if isinstance(exc, InDoubtError) and not sending.sent:  # no create request went out: nothing can be made
            exc = RetryableError(f"nothing was sent: {exc.message}", status=exc.status, code=exc.code)
        return Call(error=exc)
    except TimeoutError:
        if sending.in_flight:
            sending.unanswered()
            return Call(error=InDoubtError(f"no answer within the attempt's deadline ({deadline:.0f} s)"))
        return Call(error=RetryableError(f"the attempt's deadline ({deadline:.0f} s) passed before sending"))
