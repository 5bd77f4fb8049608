"""Where a webhook may go: the outside only.

A producer names the webhook a notification is posted to, so it could name the inside of the deployment: the
cloud's metadata service, Redis, Flower, a neighbour on the private network. Refused, unless the deployment
admits the host or network by name (``ORDERRELAY_NOTIFY_ALLOW_HOSTS``):

- every address that is not publicly routable (``ipaddress``'s ``is_global``: loopback, private, link-local,
  shared, reserved, documentation, unspecified ...), and multicast, whichever way it is spelt: ``127.0.0.1``,
  ``127.1``, ``0x7f000001``, ``2130706433``, ``0177.0.0.1``, ``[::1]``, ``[::ffff:127.0.0.1]``;
- names that only mean something inside: single-label names (``redis``, ``vm``), ``localhost`` and anything
  under ``.localhost``, ``.local``, ``.internal``, ``.localdomain``, ``.lan``, ``.home.arpa``.

When the notification is delivered, the name is resolved once and every address it gives is checked; the
connection goes to those checked addresses (``SafeResolver``), so a name cannot resolve to the outside when
checked and to the inside when used. Redirects are not followed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver

INSIDE_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".lan", ".home.arpa")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class EgressRefused(OSError):
    """A webhook's host is, or resolves to, an address inside the deployment."""


def literal_address(host: str) -> Address | None:
    """The address ``host`` spells, in any of the spellings resolvers accept (``127.1``, ``0x7f000001``, ...)."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(ch in "0123456789abcdefxABCDEFX." for ch in host) and any(ch.isdigit() for ch in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _networks(allow: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    found = []
    for entry in allow:
        try:
            found.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            continue
    return found


def address_refusal(address: Address, allow: Iterable[str] = ()) -> str | None:
    """Why a webhook may not go to this address; None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if any(address in network for network in _networks(allow)):
        return None
    if address.is_multicast or not address.is_global:
        return f"{address} is not an address on the public internet"
    return None


def host_refusal(host: str, allow: Iterable[str] = ()) -> str | None:
    """Why a webhook may not name this host (before any DNS); None when it may, so far."""
    allow = tuple(allow)
    name = host.lower().rstrip(".")
    if name in allow:
        return None
    address = literal_address(name)
    if address is not None:
        return address_refusal(address, allow)
    if name == "localhost" or name.endswith(INSIDE_SUFFIXES) or "." not in name:
        return f"{host} names a host inside a network, not on the public internet"
    return None


class SafeResolver(AbstractResolver):
    """aiohttp's resolver for webhooks: resolves a name once, and hands the connector only addresses that pass
    ``address_refusal`` (or the name's own allowance); none passing refuses the connection."""

    def __init__(self, allow: Iterable[str] = ()):
        self.allow = tuple(allow)
        self.inner: Any = None  # made on first use, on the loop that uses it

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict[str, Any]]:
        refusal = host_refusal(host, self.allow)
        if refusal:
            raise EgressRefused(refusal)
        self.inner = self.inner or DefaultResolver()
        found = await self.inner.resolve(host, port, family)
        if host.lower().rstrip(".") in self.allow:
            return found
        kept = [entry for entry in found if address_refusal(ipaddress.ip_address(entry["host"]), self.allow) is None]
        if not kept:
            raise EgressRefused(f"{host} resolves only to addresses inside a network")
        return kept

    async def close(self) -> None:
        if self.inner is not None:
            await self.inner.close()
