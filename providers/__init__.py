"""The provider table: one module per provider, the same names in each (``providers.base.Provider``).

Each module declares what the rest of orderrelay needs of it: its id, its settings variables (``SETTINGS``), its
card fields, its schema, the sandbox module that simulates it (``SANDBOX``) and a sample order (``sample``).
From this table come the registry, the settings, the Celery queues, the sandbox, the demo, the drill, the bench
and the tests. ``BUILT_IN`` lists the modules orderrelay ships; a deployment enables providers by id in
``ORDERRELAY_PROVIDERS`` and may name a module of its own there by its dotted path (``acme.orderrelay_provider``):
a sixth provider is its module, its schema and its sandbox, and that one entry.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from types import ModuleType

from marshmallow import ValidationError

from orderrelay.providers.base import NAMES, Provider

BUILT_IN = (
    "orderrelay.providers.extend",
    "orderrelay.providers.chaiz",
    "orderrelay.providers.adobe_vip",
    "orderrelay.providers.battleface",
    "orderrelay.providers.webroot",
)


def load(name: str) -> Provider:
    """The provider module ``name`` (a dotted path), checked to declare every name the table needs."""
    module: ModuleType = importlib.import_module(name)
    missing = [n for n in NAMES if not hasattr(module, n)]
    if missing:
        raise ImportError(f"{name} is not a provider module: it lacks {', '.join(missing)}")
    return module  # type: ignore[return-value]


REGISTRY: dict[str, Provider] = {module.ID: module for module in map(load, BUILT_IN)}
IDS = tuple(REGISTRY)  # the built-in providers' ids


def register(entries: Iterable[str]) -> list[str]:
    """The ids of ``entries`` (built-in ids, or dotted paths of provider modules, which join the registry)."""
    ids = []
    for entry in entries:
        if "." in entry:
            module = load(entry)
            if REGISTRY.setdefault(module.ID, module) is not module:
                raise ImportError(f"{entry} declares the id {module.ID!r}, which {REGISTRY[module.ID].__name__} has")
            entry = module.ID
        ids.append(entry)
    return ids


def entry(provider_id: str) -> str:
    """What ORDERRELAY_PROVIDERS says to enable a registered provider: its id if built in, else its module."""
    module = REGISTRY[provider_id]
    return provider_id if module.__name__ in BUILT_IN else module.__name__


def known(provider_id: str) -> None:
    """A marshmallow validator: the id of a provider in the table (a job's, an API query's)."""
    if provider_id not in REGISTRY:
        raise ValidationError(f"Must be one of: {', '.join(REGISTRY)}.")


def get(provider_id: str) -> Provider:
    """The provider module for an id; KeyError for one not registered."""
    return REGISTRY[provider_id]
