"""Card data sealed with Fernet (MultiFernet: several keys, newest first, so keys can be rotated).

A sealed value is ``{"$sealed": "<Fernet token>"}``, with ``"last4"`` for card numbers. Producers seal card
fields before a message leaves their process; intake opens them to validate, and seals them again before the
order is stored. The worker opens them only to build the provider request.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from orderrelay.foundation.walk import DESCEND, remap

SEALED = "$sealed"
ERASED = "$erased"


class Vault:
    """Seals and opens strings with the configured keys (the first one seals; any one opens)."""

    def __init__(self, keys: Iterable[str]):
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    def seal(self, value: str, *, last4: bool = False) -> dict:
        sealed = {SEALED: self._fernet.encrypt(value.encode()).decode()}
        if last4:
            sealed["last4"] = value[-4:]
        return sealed

    def open(self, sealed: Mapping) -> str:
        return self._fernet.decrypt(sealed[SEALED].encode()).decode()

    def reseal(self, sealed: Mapping) -> dict:
        """The same value sealed with the newest key (for key rotation)."""
        return {**sealed, SEALED: self._fernet.rotate(sealed[SEALED].encode()).decode()}


def is_sealed(value: Any) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get(SEALED), str)


def _walk(order: dict, path: str) -> tuple[dict | None, str]:
    """The dict holding the field at a dotted path, and the field's name; None when the path is absent."""
    *parents, name = path.split(".")
    node: Any = order
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    return (node if isinstance(node, dict) and name in node else None), name


def open_fields(vault: Vault, order: dict, paths: Iterable[str]) -> tuple[dict, dict[str, list[str]]]:
    """A copy with the sealed fields at ``paths`` opened; errors by path for tokens the keys cannot open.

    With no paths (a provider without card data) the order itself comes back: there is nothing to copy for.
    """
    if not paths:
        return order, {}
    order = copy.deepcopy(order)
    errors: dict[str, list[str]] = {}
    for path in paths:
        holder, name = _walk(order, path)
        if holder is not None and is_sealed(holder[name]):
            try:
                holder[name] = vault.open(holder[name])
            except (InvalidToken, ValueError, TypeError):
                errors[path] = ["Sealed value cannot be opened with the configured keys."]
    return order, errors


def seal_fields(vault: Vault, order: dict, fields: Mapping[str, bool]) -> dict:
    """A copy with each plain string at a path in ``fields`` sealed (``True``: keep its last four digits)."""
    if not fields:
        return order
    order = copy.deepcopy(order)
    for path, last4 in fields.items():
        holder, name = _walk(order, path)
        if holder is not None and isinstance(holder[name], str):
            holder[name] = vault.seal(holder[name], last4=last4)
    return order


def erase_fields(order: dict, paths: Iterable[str]) -> dict:
    """A copy without the fields at ``paths`` (the CVC, once the order is placed or finally failed)."""
    if not paths:
        return order
    order = copy.deepcopy(order)
    for path in paths:
        holder, name = _walk(order, path)
        if holder is not None:
            del holder[name]
    return order


def reseal_all(vault: Vault, value: Any) -> Any:
    """A copy with every sealed value sealed again with the newest key (``orderrelay rotate-keys``)."""
    return remap(value, lambda v, key: vault.reseal(v) if is_sealed(v) else DESCEND)


def erase_sealed(value: Any) -> Any:
    """A copy with every sealed value gone for good; a card number keeps only its last four digits."""

    def erase(v: Any, key: Any) -> Any:
        return {ERASED: True, **({"last4": v["last4"]} if "last4" in v else {})} if is_sealed(v) else DESCEND

    return remap(value, erase)


def mask(value: Any, secret_keys: frozenset[str]) -> Any:
    """A copy for display: sealed values as ``**** 1234`` (or ``[sealed]``), secret keys ``[redacted]``."""

    def shown(v: Any, key: Any) -> Any:
        if is_sealed(v) or (key not in secret_keys and isinstance(v, Mapping) and v.get(ERASED)):
            return f"**** {v['last4']}" if "last4" in v else "[sealed]"
        return "[redacted]" if key in secret_keys else DESCEND

    return remap(value, shown)
