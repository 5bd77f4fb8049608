"""Every scheduled and per-call query, against a seeded deployment (``orderrelay bench --scale``'s seed at 20,000
orders): each reads through an index or a maintained total, never a sequential scan of orders, attempts, events
or notifications. Plans, never times."""

from __future__ import annotations

import pytest

from orderrelay.tools import scale

pytestmark = pytest.mark.integration


def test_no_query_scans_a_large_table(db):
    rows = scale.seed(db, 20_000)
    assert rows["orders"] == 20_000 and rows["attempts"] > 20_000 and rows["order_events"] == 60_000
    measured = scale.measure(db)
    assert len(measured) == len(scale.cases(db))
    assert {m.query: m.scans for m in measured if m.scans} == {}
    plans = {m.query: m.plan for m in measured}
    assert "orders_follow_ups" in plans["follow-ups (Adobe 1002)"]
    assert "orders_sealed_card" in plans["card data due for erasure"]
    assert "orders" not in plans["status: order totals"].replace("order_total", "")  # totals, not the orders


def test_the_seeded_totals_are_what_a_count_says(db):
    from tests.integration.test_totals import counted, maintained

    scale.seed(db, 5_000)
    assert maintained(db) == counted(db)
