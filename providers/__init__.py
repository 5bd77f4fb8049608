"""One module per provider, the same names in each (``providers.base.Provider``), and the shared HTTP layer."""

from __future__ import annotations

from orderrelay.providers import adobe_vip, battleface, chaiz, extend, webroot
from orderrelay.providers.base import Provider

REGISTRY: dict[str, Provider] = {module.ID: module for module in (extend, chaiz, adobe_vip, battleface, webroot)}  # type: ignore[misc]


def get(provider_id: str) -> Provider:
    """The provider module for an id; KeyError for one not implemented."""
    return REGISTRY[provider_id]
