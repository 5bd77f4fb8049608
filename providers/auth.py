"""Provider authentication that every provider module may use: OAuth access tokens, cached per process.

Free of any HTTP client: ``http`` is the process's ``providers.http.Http`` (its ``send``, ``tokens`` and
``lock``), passed in by the caller, so a provider module (and whatever imports the provider table, the producer
among them) loads no aiohttp.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orderrelay.foundation.errors import AuthError, RetryableError
from orderrelay.providers.base import Request


@dataclass
class Token:
    """A provider's access token and when we stop using it (a little before it expires)."""

    value: str
    renew_at: float
    refresh: str | None = None  # a refresh token, where the provider grants one

    def fresh(self) -> bool:
        return time.monotonic() < self.renew_at


async def oauth_token(
    http: Any,
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
    http: Any, provider_id: str, base_url: str, request: Request, default_ttl: float, *, refused_ok: bool = False
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
