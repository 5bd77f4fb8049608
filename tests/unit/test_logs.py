"""Log lines about an order carry its id, provider, attempt, outcome and status, as text or as JSON."""

from __future__ import annotations

import io
import json
import logging

import pytest

from orderrelay.foundation.logs import formatter, order_fields, scrub


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


TASK = "4b52d5fd-5758-4783-8863-00a8e763a713"  # a task id CI once saw masked, so its log line could not be found


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        # UUIDs whose digit groups are card-shaped stay whole
        (f"Task orders.submit[{TASK}] succeeded", f"Task orders.submit[{TASK}] succeeded"),
        ("order 12345678-1234-1234-1234-123456789012 placed", "order 12345678-1234-1234-1234-123456789012 placed"),
        ("ref=90210000-0000-4000-8000-000000000000", "ref=90210000-0000-4000-8000-000000000000"),
        # card numbers are masked still: beside a UUID, up against one, or alone
        (f"card 4111 1111 1111 1111 for {TASK}", f"card ***************1111 for {TASK}"),
        (f"{TASK}:4111111111111111", f"{TASK}:************1111"),
        ("card 4111-1111-1111-1111.", "card ***************1111."),
        ("pan 5555555555554444 and 378282246310005", "pan ************4444 and ***********0005"),
    ],
)
def test_card_numbers_are_masked_and_ids_kept_whole(text, shown):
    assert scrub(text) == shown


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111111-1111-1111-1111-111111111111",  # a UUID's shape with a card number as its first group
        "41111111 11111111-1111-1111-1111-111111111111",  # a card number written 8 + 8, a UUID's tail after it
        "4111111111111111-2222-3333-4444-555555555555",
    ],
)
def test_a_card_number_up_against_a_uuid_shape_is_masked(text):
    masked = scrub(text)
    assert "41111111" not in masked and "11111111" not in masked.split("-")[0], masked
