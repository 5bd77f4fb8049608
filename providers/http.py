"""The shared HTTP layer: one aiohttp session per process, one predicate that classifies every outcome.

Timeouts before the request went out and refused connections are retryable; 5xx and 429 are retryable
(429 and 503 honour ``Retry-After``); other 4xx are permanent; a read timeout or a dropped connection after
the request went out is *in doubt*. aiohttp's exceptions are translated here, once, into the error tree.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from config.settings import ProviderSettings, Settings
from orderrelay import __version__
from orderrelay.errors import AuthError, InDoubtError, PermanentError, RetryableError
from providers.base import Placed, Provider, Request, Response

USER_AGENT = f"orderrelay/{__version__}"


@dataclass
class Token:
    """A provider's access token and when we stop using it (a little before it expires)."""

    value: str
    renew_at: float
    refresh: str | None = None  # a refresh token, where the provider grants one

    def fresh(self) -> bool:
        return time.monotonic() < self.renew_at


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


def check(provider: Provider, response: Response) -> None:
    """The one predicate: 2xx passes; 429 and 5xx are retryable; any other status is permanent."""
    if 200 <= response.status < 300:
        return
    info = provider.error(response)
    kwargs = {"status": response.status, "code": info.code, "details": scrub(info.details)}
    if response.status == 429 or response.status >= 500:
        wait = retry_after(response.headers) if response.status in (429, 503) else None
        raise RetryableError(scrub(info.message), retry_after=wait, **kwargs)
    raise PermanentError(scrub(info.message), **kwargs)


_CARD_LIKE = re.compile(r"(?<!\d)\d{12,19}(?!\d)")


def scrub(value: Any) -> Any:
    """A provider's error text with anything shaped like a card number masked, before it is stored or logged."""
    if isinstance(value, str):
        return _CARD_LIKE.sub(lambda m: "*" * (len(m[0]) - 4) + m[0][-4:], value)
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


async def call(provider: Provider, http: Http, cfg: ProviderSettings, request: Request) -> Response:
    """Send an authenticated request; on a 401 get a fresh token and send once more."""
    for fresh in (False, True):
        headers = await provider.authenticate(http, cfg, fresh=fresh)
        response = await http.send(cfg.base_url, request, headers)
        if response.status != 401:
            return response
    info = provider.error(response)
    raise AuthError(f"{provider.ID} refused a fresh token: {info.message}", status=401, code=info.code)


async def place(provider: Provider, http: Http, cfg: ProviderSettings, order: dict, key: str) -> Placed:
    """Create the order at the provider; raises a ProviderError when it was not (or may not have been) made."""
    response = await call(provider, http, cfg, provider.request(order, key, cfg))
    check(provider, response)
    return dataclasses.replace(provider.response(response.body), http_status=response.status)


async def follow_up(provider: Provider, http: Http, cfg: ProviderSettings, order: dict, ref: str) -> Placed | None:
    """The placed order as the provider sees it now; None where the provider offers no way to read it."""
    request = provider.follow_up(order, ref)
    if request is None:
        return None
    response = await call(provider, http, cfg, request)
    check(provider, response)
    return provider.response(response.body)


async def lookup(provider: Provider, http: Http, cfg: ProviderSettings, order: dict) -> Placed | None:
    """Find the order the provider already made for this one; None if it has none (or no lookup exists)."""
    request = provider.lookup(order)
    if request is None:
        return None
    response = await call(provider, http, cfg, request)
    check(provider, response)
    placed = provider.found(response.body)
    return placed and dataclasses.replace(placed, http_status=response.status)


async def oauth_token(
    http: Http,
    provider_id: str,
    base_url: str,
    grant: Callable[[str | None], Request],
    *,
    fresh: bool,
    default_ttl: float = 300.0,
) -> str:
    """An OAuth access token, cached per process and renewed shortly before it expires (or when ``fresh``).

    ``grant(refresh_token)`` makes the token request: with the refresh token the provider gave last time, or
    with ``None`` for a first grant (and when a refresh is refused). Concurrent callers share one renewal.
    """
    token = http.tokens.get(provider_id)
    if token and token.fresh() and not fresh:
        return token.value
    async with http.lock(provider_id):
        current = http.tokens.get(provider_id)
        if current and current.fresh() and current is not token:
            return current.value  # another call renewed it while we waited
        new = None
        if current and current.refresh:
            new = await _grant(http, provider_id, base_url, grant(current.refresh), default_ttl, refused_ok=True)
        if new is None:
            new = await _grant(http, provider_id, base_url, grant(None), default_ttl)
        http.tokens[provider_id] = new
        return new.value


async def _grant(
    http: Http, provider_id: str, base_url: str, request: Request, default_ttl: float, *, refused_ok: bool = False
) -> Token | None:
    response = await http.send(base_url, request)
    if response.status in (400, 401, 403):
        if refused_ok:
            return None
        raise AuthError(f"{provider_id} refused our credentials (HTTP {response.status})", status=response.status)
    if not 200 <= response.status < 300 or not isinstance(response.body, dict):
        raise RetryableError(f"{provider_id} token endpoint answered HTTP {response.status}", status=response.status)
    ttl = float(response.body.get("expires_in") or default_ttl)
    return Token(
        str(response.body["access_token"]),
        time.monotonic() + max(ttl - 30.0, ttl / 2),
        response.body.get("refresh_token"),
    )
