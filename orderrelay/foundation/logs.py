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

_CARD_LIKE = re.compile(r"(?<![0-9.])(?:[0-9][ -]?){12,18}[0-9](?![0-9])")  # not a decimal fraction
# A UUID (an order's, a task's, a provider's reference) is 32 hex digits, 8-4-4-4-12: never a card number, though
# enough of its groups are all digits in one random id of 45 (2.2 %; "4b52d5fd-5758-4783-8863-00a8e763a713").
# Whole, and not glued to digits: a card number written up against one (its 16 digits, then "-1111-…") is masked
# whole.
_UUID_LIKE = re.compile(
    r"(?<![0-9a-fA-F])(?<![0-9][ -])"
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"(?![0-9a-fA-F])(?![ -][0-9])"
)
_EMAIL_LIKE = re.compile(r"[^\s@\"'<>(),;:]{1,64}@[^\s@\"'<>(),;:.]{1,63}(?:\.[^\s@\"'<>(),;:.]{1,63})+")
_QUOTING = re.compile(r"^\s*(DETAIL|CONTEXT|LINE \d+):.*$", re.MULTILINE)


def mask_cards(text: str) -> str:
    """``text`` with anything shaped like a card number (13 to 19 digits, spaces or dashes between) masked, UUIDs
    left whole: an id a log line names can be searched for."""
    if not _CARD_LIKE.search(text):  # most lines: nothing card-shaped, nothing to split
        return text
    kept, start = [], 0
    for uuid_like in _UUID_LIKE.finditer(text):
        kept += [_masked(text[start : uuid_like.start()]), uuid_like[0]]
        start = uuid_like.end()
    return "".join([*kept, _masked(text[start:])])


def _masked(text: str) -> str:
    return _CARD_LIKE.sub(lambda m: "*" * max(0, len(m[0]) - 4) + m[0][-4:], text)


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
    """JSON lines, scrubbed as the text format is (the traceback before it is escaped into the line)."""

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
