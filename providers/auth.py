"""Provider authentication that every provider module may use: OAuth access tokens, cached per process.

Free of any HTTP client: ``http`` is the process's ``providers.http.Http`` (its ``send``, ``tokens`` and
``lock``), passed in by the caller, so a provider module (and whatever imports the provider table, the producer
among them) loads no aiohttp.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orderrelay.foundation.errors import AuthError, InDoubtError, RetryableError
from orderrelay.providers.base import Request, retry_after

# A token's lifetime as the provider states it (``expires_in``), bounded: none, or one that is no positive finite
# number, is the caller's default; it is never taken as shorter than a minute or longer than a day.
SHORTEST_TTL, LONGEST_TTL = 60.0, 86400.0
MAX_TOKEN = 16_384  # characters: a longer "token" is no token


@dataclass
class Token:
    """A provider's access token and when we stop using it (a little before it expires)."""

    value: str
    renew_at: float
    refresh: str | None = None  # a refresh token, where the provider grants one

    def fresh(self, margin: float = 0.0) -> bool:
        """Whether it is still to be used (for ``margin`` seconds more)."""
        return time.monotonic() + margin < self.renew_at


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
    """One token request. It makes no order, so whatever goes wrong with it (no answer, a 5xx, an answer that is not
    a token) is retryable: nothing was sent. A refusal of our credentials is an AuthError."""
    try:
        response = await http.send(base_url, request, provider=provider_id)
    except InDoubtError as exc:
        raise RetryableError(f"{provider_id} token endpoint: {exc.message}; no order was sent") from exc
    if response.status in (400, 401, 403):
        if refused_ok:
            return None
        raise AuthError(f"{provider_id} refused our credentials (HTTP {response.status})", status=response.status)
    if not 200 <= response.status < 300:
        wait = retry_after(response.headers) if response.status in (429, 503) else None
        raise RetryableError(
            f"{provider_id} token endpoint answered HTTP {response.status}", status=response.status, retry_after=wait
        )
    body = response.body if isinstance(response.body, dict) else {}
    value = body.get("access_token")
    if not _usable(value):
        raise RetryableError(f"{provider_id} token endpoint answered HTTP {response.status} without a usable token")
    ttl = _lifetime(body.get("expires_in"), default_ttl)
    refresh = body.get("refresh_token")
    return Token(value, time.monotonic() + max(ttl - 30.0, ttl / 2), refresh if _usable(refresh) else None)


TOKEN = re.compile(rf"[\x21-\x7e]{{1,{MAX_TOKEN}}}")  # what can travel in a header: visible ASCII, no space


def _usable(value: Any) -> bool:
    """Whether a token can be sent as it came (a control character or a space in it, and aiohttp refuses the header;
    cached, it would break every call until it expired)."""
    return isinstance(value, str) and TOKEN.fullmatch(value) is not None


def _lifetime(stated: Any, default: float) -> float:
    """Seconds a token lives, as stated, bounded (see SHORTEST_TTL)."""
    try:
        ttl = float(stated)
    except (TypeError, ValueError, OverflowError):
        ttl = default
    if not math.isfinite(ttl) or ttl <= 0:
        ttl = default
    return min(LONGEST_TTL, max(SHORTEST_TTL, ttl))
