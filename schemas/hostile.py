"""What no job may carry anywhere in it, checked before any schema looks at it, and what is kept of a bad one.

Every value a producer sends is walked once, to a bounded depth, before validation: so no later step (a schema,
the vault's copy, ``json.dumps``, Postgres) meets a value it cannot handle. Refused, by field path:

- a string with a NUL character or a lone UTF-16 surrogate (neither can be stored, nor sent as UTF-8), in a
  value or in a key;
- nesting deeper than ``MAX_DEPTH`` levels (the job is level 0, its ``order`` level 1);
- a string longer than ``MAX_STRING`` characters, a key longer than ``MAX_KEY``, an object or list with more
  than ``MAX_ITEMS`` entries (the schemas bound their own fields far lower);
- an integer beyond +/- ``MAX_INT`` (a signed 64-bit integer); NaN and infinity;
- anything that is not a JSON value.

``storable`` makes the copy a rejected job is kept as: card fields redacted, every string and key cleaned of
what Postgres refuses, nesting and size cut at the same bounds.
"""

from __future__ import annotations

import json
import math
from typing import Any

from orderrelay.foundation.constants import SECRET_KEYS
from orderrelay.foundation.logs import scrub

MAX_DEPTH = 32
MAX_STRING = 10_000
MAX_KEY = 200
MAX_ITEMS = 10_000
MAX_INT = 2**63 - 1
MAX_PROBLEMS = 50  # a job with more problems than this is reported by its first ones
MAX_STORED_BYTES = 64_000
REPLACEMENT = "\ufffd"


def has_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone UTF-16 surrogate (JSON's ``"\\ud800"``): not Unicode text at all."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def clean_text(text: str) -> str:
    """``text`` with NUL characters and lone surrogates replaced by U+FFFD: safe to store, log and send."""
    if has_surrogate(text):  # one U+FFFD per lone surrogate; a pair spelt as two halves becomes its character
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text.replace("\x00", REPLACEMENT)


VALUE_PROBLEMS = (
    "Longer than {limit} characters.",
    "Must not contain NUL characters.",
    "Must not hold a lone UTF-16 surrogate (it is not valid Unicode).",
)
KEY_PROBLEMS = (
    "Keys must not be longer than {limit} characters.",
    "Keys must not contain NUL characters.",
    "Keys must not hold a lone UTF-16 surrogate (it is not valid Unicode).",
)


def _text_problem(text: str, limit: int, messages: tuple[str, str, str]) -> str | None:
    if len(text) > limit:
        return messages[0].format(limit=limit)
    if "\x00" in text:
        return messages[1]
    if has_surrogate(text):
        return messages[2]
    return None


def problems(value: Any, path: str = "", depth: int = 0) -> dict[str, list[str]]:
    """Every problem of the list above, by field path (``order.lineItems.0.plan``); {} when there is none.

    This runs on every job, so the common case is kept cheap: paths are joined only for a value with a problem,
    and an ASCII string is never encoded to look for surrogates."""
    found: dict[str, list[str]] = {}
    _walk(value, (path,) if path else (), depth, found)
    return found


def _note(found: dict[str, list[str]], path: tuple, problem: str) -> None:
    where = clean_text(".".join(map(str, path))[:300]) or "_schema"
    found.setdefault(where, []).append(problem)


def _text_fine(text: str, limit: int) -> bool:
    return len(text) <= limit and "\x00" not in text and (text.isascii() or not has_surrogate(text))


def _walk(value: Any, path: tuple, depth: int, found: dict[str, list[str]]) -> None:
    if len(found) >= MAX_PROBLEMS:
        return
    kind = type(value)
    if kind is str:
        if not _text_fine(value, MAX_STRING):
            _note(found, path, _text_problem(value, MAX_STRING, VALUE_PROBLEMS))
    elif value is None or kind is bool:
        return
    elif kind is int:
        if abs(value) > MAX_INT:
            _note(found, path, f"Integers beyond +/-{MAX_INT} are not accepted.")
    elif kind is float:
        if not math.isfinite(value):
            _note(found, path, "NaN and infinity are not numbers here.")
    elif kind is dict or kind is list:
        problem = _container_problem(value, depth)
        if problem:
            _note(found, path, problem)
            return
        for key, item in value.items() if kind is dict else enumerate(value):
            if kind is dict and not _text_fine(key, MAX_KEY):
                _note(found, (*path, key), _text_problem(key, MAX_KEY, KEY_PROBLEMS))
                continue
            _walk(item, (*path, key), depth + 1, found)
    else:  # a subclass of a JSON type (kombu never makes one; in-process callers may): walk it as its base type
        for base in (str, int, float, dict, list):
            if isinstance(value, base):
                _walk(base(value), path, depth, found)
                return
        _note(found, path, STRUCTURE_PROBLEMS[3])


STRUCTURE_PROBLEMS = (
    f"Nested deeper than {MAX_DEPTH} levels.",
    f"More than {MAX_ITEMS} entries.",
    "Object keys must be strings.",
    "Not a JSON value.",
)


def _container_problem(value: dict | list, depth: int) -> str | None:
    if depth >= MAX_DEPTH:
        return STRUCTURE_PROBLEMS[0]
    if len(value) > MAX_ITEMS:
        return STRUCTURE_PROBLEMS[1]
    if isinstance(value, dict) and not all(isinstance(key, str) for key in value):
        return STRUCTURE_PROBLEMS[2]
    return None


def structural(found: dict[str, list[str]]) -> bool:
    """Whether the problems include one of the job's shape (too deep, too wide, not JSON): no schema may see it."""
    return any(message in STRUCTURE_PROBLEMS for messages in found.values() for message in messages)


def storable(value: Any, depth: int = 0) -> Any:
    """A copy that Postgres's jsonb takes and shows nothing secret: card fields ``[redacted]``, text cleaned,
    NaN and huge integers as text, anything nested deeper than ``MAX_DEPTH`` replaced by a note."""
    if isinstance(value, str):
        cut = f"... [{len(value)} characters, cut]" if len(value) > MAX_STRING else ""
        return clean_text(value[:MAX_STRING]) + cut
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) <= MAX_INT else f"[an integer of {value.bit_length()} bits]"
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dict | list) and depth >= MAX_DEPTH:
        return f"[nested deeper than {MAX_DEPTH} levels]"
    if isinstance(value, dict):
        return {
            clean_text(str(k)[:MAX_KEY]): "[redacted]" if k in SECRET_KEYS else storable(v, depth + 1)
            for k, v in list(value.items())[:MAX_ITEMS]
        }
    if isinstance(value, list):
        return [storable(v, depth + 1) for v in value[:MAX_ITEMS]]
    return clean_text(repr(value)[:200])


def stored_job(job: Any) -> dict:
    """What is kept of an invalid job: ``storable``, and cut down when it is too large to keep whole."""
    kept = storable(job if isinstance(job, dict) else {"_job": job})
    text = json.dumps(kept)
    if len(text) > MAX_STORED_BYTES:
        return {"_truncated": True, "_size": len(text), "_head": text[:2000]}
    return kept


def redact_text(text: str, limit: int = 300) -> str:
    """An error's text fit to keep: its first line, cut to ``limit``, with anything shaped like a card number (spaced,
    dashed, escaped ...) or an e-mail address masked, and nothing Postgres cannot store. Masked before it is cut (and
    before its lines are split), so no cut can leave a card number's digits too few to be seen as one."""
    if not text:
        return ""
    masked = scrub(text[: limit + MASK_REACH])  # whatever starts before ``limit`` ends within this
    return clean_text((masked.splitlines() or [""])[0][:limit])


MASK_REACH = 400  # characters: a card number written with the widest separators (19 digits, "\\u0020" x 3 between)
