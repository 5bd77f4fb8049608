"""Logging: readable text by default, JSON lines with ORDERRELAY_LOG_FORMAT=json.

Every line about an order carries ``order_id``, ``provider``, ``attempt``, ``outcome`` and ``status`` as
fields (``extra=``), so JSON logs can be filtered by them; the text format appends them as key=value.
"""

from __future__ import annotations

import logging

from pythonjsonlogger.json import JsonFormatter

ORDER_FIELDS = ("order_id", "provider", "attempt", "outcome", "status")


class TextFormatter(logging.Formatter):
    """The usual line, then the order's fields as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{name}={getattr(record, name)}" for name in ORDER_FIELDS if hasattr(record, name))
        return f"{line} {fields}" if fields else line


def formatter(kind: str) -> logging.Formatter:
    if kind == "json":
        return JsonFormatter("%(asctime)s %(levelname)s %(name)s %(processName)s %(message)s", timestamp=False)
    return TextFormatter("[%(asctime)s: %(levelname)s/%(processName)s] %(name)s: %(message)s")


def apply(logger: logging.Logger, kind: str) -> None:
    """Give every handler of ``logger`` the configured format."""
    for handler in logger.handlers:
        handler.setFormatter(formatter(kind))


def order_fields(order_id, provider=None, attempt=None, outcome=None, status=None) -> dict:
    """``extra=`` for a log line about an order."""
    fields = {"order_id": str(order_id), "provider": provider, "attempt": attempt, "outcome": outcome, "status": status}
    return {k: v for k, v in fields.items() if v is not None}
