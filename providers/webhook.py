"""Signed webhook deliveries, to the public internet only (``orderrelay.providers.egress``), following no redirect.

Signature: ``OrderRelay-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``;
``OrderRelay-Event-Id`` repeats on every redelivery of the same event, so receivers can deduplicate.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import urlsplit

import aiohttp

from orderrelay.providers.egress import EgressRefused, host_refusal
from orderrelay.providers.http import Http


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, *, tolerance: float = 300.0) -> bool:
    """What a receiver does: check the signature and that the timestamp is recent."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return abs(time.time() - timestamp) <= tolerance and hmac.compare_digest(expected, parts.get("v1", ""))


async def post(http: Http, url: str, body: dict, *, secret: str, event_id: str, timeout: float = 10.0) -> int:
    """POST one signed notification; the HTTP status (a redirect is an answer, not followed), or an exception when
    there was no answer; EgressRefused when the URL's host is, or resolves to, one inside a network."""
    refusal = host_refusal(urlsplit(url).hostname or "", http.allow_hosts)
    if refusal:  # an address literal: aiohttp connects to it without asking the resolver
        raise EgressRefused(refusal)
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "OrderRelay-Event-Id": event_id,
        "OrderRelay-Signature": sign(secret, int(time.time()), raw),
    }
    limit = aiohttp.ClientTimeout(total=timeout)
    try:
        async with http.webhooks.post(url, data=raw, headers=headers, timeout=limit, allow_redirects=False) as resp:
            await resp.read()
            return resp.status
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, EgressRefused):
            raise exc.os_error from None
        raise
