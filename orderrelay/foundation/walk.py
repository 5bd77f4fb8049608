"""One walk over JSON-like values, for every copy that changes some of their leaves or objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

DESCEND = object()  # what a visit returns to keep a value: a dict or list is copied, and the walk goes inside


def remap(
    value: Any, visit: Callable[[Any, Any], Any], key: Any = None, *, rekey: Callable[[Any], Any] | None = None
) -> Any:
    """A copy of ``value`` in which each value is ``visit(value, key)`` (``key`` is the dict key that holds it,
    None at the top and in lists), or, where the visit returns DESCEND, the value itself with its dicts, lists
    and tuples (as lists) copied and walked in turn; with ``rekey``, each dict key of the copy is ``rekey(key)``."""
    replaced = visit(value, key)
    if replaced is not DESCEND:
        return replaced
    if isinstance(value, dict):
        if rekey is None:
            return {k: remap(v, visit, k) for k, v in value.items()}
        return {rekey(k): remap(v, visit, k, rekey=rekey) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [remap(v, visit, key, rekey=rekey) for v in value]
    return value
