"""Log lines about an order carry its id, provider, attempt, outcome and status, as text or as JSON."""

from __future__ import annotations

import io
import json
import logging

import pytest

from orderrelay.foundation.logs import formatter, order_fields


@pytest.mark.parametrize("kind", ["text", "json"])
def test_order_fields_are_on_the_line(kind):
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(formatter(kind))
    logger = logging.getLogger(f"orderrelay.test.{kind}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.info("placed (12 ms)", extra=order_fields("o-1", "extend", 2, "placed", "placed"))
    line = buffer.getvalue().strip()
    if kind == "json":
        record = json.loads(line)
        assert (record["order_id"], record["provider"], record["attempt"], record["outcome"], record["status"]) == (
            "o-1",
            "extend",
            2,
            "placed",
            "placed",
        )
        assert record["message"] == "placed (12 ms)"
    else:
        assert line.endswith("placed (12 ms) order_id=o-1 provider=extend attempt=2 outcome=placed status=placed")


def test_fields_not_given_are_left_out():
    assert order_fields("o-2", "chaiz") == {"order_id": "o-2", "provider": "chaiz"}
