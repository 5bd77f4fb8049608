"""Logging: readable text by default, JSON lines with ORDERRELAY_LOG_FORMAT=json.

Every line about an order carries ``order_id``, ``provider``, ``attempt``, ``outcome`` and ``status`` as
fields (``extra=``), so JSON logs can be filtered by them; the text format appends them as key=value.

No line carries card or personal data: messages and tracebacks are scrubbed as they are formatted (anything
shaped like a card number or an e-mail address masked; Postgres's DETAIL and CONTEXT lines, which quote the
rows and JSON a statement held, left out). What a log line or an event shows of a job is ``shown_job``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from pythonjsonlogger.json import JsonFormatter
from stdnum import luhn

# A card number as people and programs write it: 13 to 19 digits of any script (``\d`` is every Unicode decimal
# digit: fullwidth and Arabic-Indic digits count), up to five separators between two digits: a space of any kind
# (tab, NBSP, thin space, a line break, a zero-width one), a dash of any kind, a dot, a slash, a plus, an underscore,
# or one of these escaped (``%20``, ``%2D``, ``\u0020``, ``\t``, ``&nbsp;``). A run of digits and separators with 13
# digits or more is a candidate; inside it, each stretch of whole digit groups holding 13 to 19 digits that passes the
# Luhn check is masked but for its last four digits, so a digit group in front that is no part of the number cannot
# shift the mask. Nothing else is masked: an id of 13 to 19 digits that fails the check (nine in ten do) stays
# searchable, and so does a run of more than 19 digits with no separator (a card number glued to other digits, with
# nothing between, is not told from a long id).
_SEPARATOR = (
    r"(?:[\s\u200b-\u200d\u2060\ufeff\u2010-\u2015\u2212._/+\-]|%(?:2[0dDeEfF]|[aA]0)|\\(?:u00[aA]0|u0020|[tn])"
    r"|&(?:nbsp|#160|#32);)"
)
_CANDIDATE = re.compile(rf"\d(?:{_SEPARATOR}{{0,5}}\d){{12,}}")
_TOKEN = re.compile(rf"(\d+)|{_SEPARATOR}")  # a run, read as digit groups and separators (%20's digits are none)
# A UUID (an order's, a task's, a provider's reference) is 32 hex digits, 8-4-4-4-12: never a card number, though
# enough of its groups are all digits in one random id of 45 (2.2 %; "4b52d5fd-5758-4783-8863-00a8e763a713"), so
# it is kept whole. Not when digits stand right before it: a card number written 8 + 8 with a UUID's tail after it
# ("41111111 11111111-1111-…") is masked whole.
_UUID_LIKE = re.compile(
    r"(?<![0-9a-fA-F])[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![0-9a-fA-F])"
)
_GLUED = re.compile(rf"\d{_SEPARATOR}{{1,5}}\Z")
_EMAIL_LIKE = re.compile(r"[^\s@\"'<>(),;:]{1,64}@[^\s@\"'<>(),;:.]{1,63}(?:\.[^\s@\"'<>(),;:.]{1,63})+")
_QUOTING = re.compile(r"^\s*(DETAIL|CONTEXT|LINE \d+):.*$", re.MULTILINE)


def mask_cards(text: str) -> str:
    """``text`` with every card number in it (see above) masked but for its last four digits; UUIDs left whole, so
    an id a log line names can be searched for."""
    if not _CANDIDATE.search(text):  # most lines: nothing card-shaped, nothing to split
        return text
    kept, start = [], 0
    for uuid_like in _UUID_LIKE.finditer(text):
        if _GLUED.search(text, max(0, uuid_like.start() - 20), uuid_like.start()):
            continue
        kept += [_masked(text[start : uuid_like.start()]), uuid_like[0]]
        start = uuid_like.end()
    return "".join([*kept, _masked(text[start:])])


def _masked(text: str) -> str:
    return _CANDIDATE.sub(_mask_run, text)


def _mask_run(run: re.Match) -> str:
    """One candidate run with each card number in it masked (each stretch of its digit groups that is one)."""
    text = run[0]
    groups = [(t.start(), t.end(), _ascii(t[1])) for t in _TOKEN.finditer(text) if t[1]]
    hidden = bytearray(len(text))  # 1 for each character to mask
    for first in range(len(groups)):
        digits = ""
        for last in range(first, len(groups)):
            digits += groups[last][2]
            if len(digits) > 19:
                break
            if len(digits) >= 13 and luhn.checksum(digits) == 0:
                shown = _last_four(groups, last)
                hidden[groups[first][0] : shown] = b"\x01" * (shown - groups[first][0])
    if not any(hidden):
        return text
    return "".join("*" if flag else char for char, flag in zip(text, hidden, strict=True))


def _ascii(digits: str) -> str:
    return digits if digits.isascii() else "".join(str(int(c)) for c in digits)


def _last_four(groups: list[tuple[int, int, str]], last: int) -> int:
    """Where the last four digits of a stretch of groups ending with group ``last`` begin."""
    need = 4
    while len(groups[last][2]) < need:
        need -= len(groups[last][2])
        last -= 1
    return groups[last][1] - need


def scrub(text: str) -> str:
    """``text`` fit for a log: card numbers and e-mail addresses masked, Postgres's quoting lines left out."""
    return _EMAIL_LIKE.sub("[e-mail]", mask_cards(_QUOTING.sub(r"\1: [left out]", text)))


def shown_job(kwargs: Any) -> str:
    """All a log line, a Flower event or a message header shows of a job: its provider and its key."""
    if not isinstance(kwargs, dict):
        return "{}"
    shown = {k: kwargs.get(k) for k in ("provider", "idempotency_key")}
    return scrub(repr({k: v if isinstance(v, str) else type(v).__name__ for k, v in shown.items()})[:300])


class Scrubbed(logging.Formatter):
    """A formatter whose every line, traceback included, is scrubbed."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


ORDER_FIELDS = ("order_id", "provider", "attempt", "outcome", "status")


class TextFormatter(Scrubbed):
    """The usual line, then the order's fields as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{name}={getattr(record, name)}" for name in ORDER_FIELDS if hasattr(record, name))
        return f"{line} {fields}" if fields else line


class ScrubbedJson(JsonFormatter):
    """JSON lines, scrubbed as the text format is: every field before it is encoded (JSON escapes characters such as
    fullwidth digits or a thin space as \\uXXXX, which a scrub of the line would no longer read), and the line."""

    def process_log_record(self, log_data: dict) -> dict:
        return {name: scrub(value) if isinstance(value, str) else value for name, value in log_data.items()}

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info:
            record = logging.makeLogRecord(record.__dict__)
            record.exc_text = scrub(self.formatException(record.exc_info))
            record.exc_info = None
        return scrub(super().format(record))


def formatter(kind: str) -> logging.Formatter:
    if kind == "json":
        return ScrubbedJson("%(asctime)s %(levelname)s %(name)s %(processName)s %(message)s", timestamp=False)
    return TextFormatter("[%(asctime)s: %(levelname)s/%(processName)s] %(name)s: %(message)s")


def apply(logger: logging.Logger, kind: str) -> None:
    """Give every handler of ``logger`` the configured format."""
    for handler in logger.handlers:
        handler.setFormatter(formatter(kind))


def order_fields(order_id, provider=None, attempt=None, outcome=None, status=None) -> dict:
    """``extra=`` for a log line about an order."""
    fields = {"order_id": str(order_id), "provider": provider, "attempt": attempt, "outcome": outcome, "status": status}
    return {k: v for k, v in fields.items() if v is not None}
