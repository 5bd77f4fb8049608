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


PAN = "4111111111111111"
# Issue 24's spellings of one card number, and more: each is masked whole but for its last four digits.
SPELLINGS = {
    "dots": "4111.1111.1111.1111",
    "tabs": "4111\t1111\t1111\t1111",
    "NBSP": "4111\u00a01111\u00a01111\u00a01111",
    "narrow NBSP": "4111\u202f1111\u202f1111\u202f1111",
    "ideographic space": "4111\u30001111\u30001111\u30001111",
    "slashes": "4111/1111/1111/1111",
    "pluses (a URL's spaces)": "4111+1111+1111+1111",
    "%20": "4111%201111%201111%201111",
    "%2D": "4111%2D1111%2d1111%2D1111",
    "JSON's \\u0020": "4111\\u00201111\\u00201111\\u00201111",
    "JSON's \\t": "4111\\t1111\\t1111\\t1111",
    "&nbsp;": "4111&nbsp;1111&nbsp;1111&nbsp;1111",
    "spaced dashes": "4111 - 1111 - 1111 - 1111",
    "en dashes": "4111\u20131111\u20131111\u20131111",
    "line breaks": "4111\n1111\n1111\n1111",
    "fullwidth digits": "\uff14\uff11\uff11\uff11" * 1 + "\uff11" * 12,
    "Arabic-Indic digits": "\u0664" + "\u0661" * 15,
    "right after a dot": "card.4111111111111111",
    "after a version": "v1.4111111111111111",
    "a group before it": "1234 4111 1111 1111 1111",
    "a spaced one after a UUID": f"{TASK} 4111 1111 1111 1111",
    "glued to a word": "pan4111111111111111end",
}
OTHER_CARDS = ["5555555555554444", "378282246310005", "6011111111111117", "4222222222222", "4000000000000000006"]


def ascii_digits(text: str) -> str:
    return "".join(str(int(c)) for c in text if c.isdigit())


@pytest.mark.parametrize("name", list(SPELLINGS))
def test_every_spelling_of_a_card_number_is_masked_whole(name):
    text = SPELLINGS[name]
    masked = scrub(f"answer: {text} (declined)")
    digits = ascii_digits(masked)
    assert PAN[:12] not in digits and "41111111" not in digits, masked  # nothing of it but its last four
    assert digits.endswith("1111"), masked
    if name == "a spaced one after a UUID":
        assert TASK in masked
    if name == "a group before it":
        assert masked.startswith("answer: 1234 ")  # the group before it neither shows the number nor shifts the mask


@pytest.mark.parametrize("card", OTHER_CARDS)
def test_card_numbers_of_13_to_19_digits_are_masked(card):
    assert scrub(f"pan {card}") == f"pan {'*' * (len(card) - 4)}{card[-4:]}"


@pytest.mark.parametrize(
    "text",
    [
        "idempotency_key=1234567890123456",  # 16 digits that fail the Luhn check: an id, kept searchable
        "provider ref 2026120400012345 placed",
        "cart 9876543210987654321 converted",  # 19 digits
        "at 1733337357.123456",  # a timestamp with its microseconds
        "order 12345678901234567890123456 (26 digits: no card)",
    ],
)
def test_numbers_that_are_no_card_number_stay_searchable(text):
    assert scrub(text) == text


@pytest.mark.parametrize("offset", range(270, 301, 3))
def test_an_error_text_is_masked_before_it_is_cut(offset):
    from orderrelay.schemas.hostile import redact_text

    kept = redact_text("x" * offset + " 4111 1111 1111 1111 was refused")
    assert len(kept) <= 300 and len(ascii_digits(kept)) <= 4, kept


def test_an_error_text_split_over_lines_is_masked_before_its_first_line_is_kept():
    from orderrelay.schemas.hostile import redact_text

    assert ascii_digits(redact_text("card 4111 1111\n1111 1111 refused")) == "1111"


@pytest.mark.parametrize(
    "text",
    [
        "card \uff14\uff11\uff11\uff11" + "\uff11" * 12,  # fullwidth digits, which JSON writes as \uff11 ...
        "card 4111\u20091111\u20091111\u20091111",  # thin spaces, the same
        "card 4111\u200b1111\u200b1111\u200b1111",  # zero-width spaces
        "card 4111    1111    1111    1111",  # spaces as a table pads them
    ],
)
@pytest.mark.parametrize("kind", ["text", "json"])
def test_every_format_masks_every_spelling(kind, text):
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(formatter(kind))
    logger = logging.getLogger(f"orderrelay.test.spelling.{kind}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.info(text)
    logger.removeHandler(handler)
    line = buffer.getvalue()
    shown = json.loads(line)["message"] if kind == "json" else line
    assert len(ascii_digits(shown.split("card", 1)[1])) == 4, line
