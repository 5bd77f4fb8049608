"""The status lists are written once (orderrelay.foundation.constants); the statements spell them out from there,
and the partial indexes the migrations made carry the same lists, so each statement still matches its index."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orderrelay.foundation.constants import DUE_STATUSES, OPEN_STATUSES
from orderrelay.store import queries

MIGRATIONS = Path(queries.__file__).with_name("migrations")


def index_statuses(name: str) -> tuple[str, ...]:
    text = " ".join(p.read_text() for p in sorted(MIGRATIONS.glob("*.sql")) if "rollback" not in p.name)
    found = re.search(rf"CREATE INDEX {name} ON .*? WHERE status IN \(([^)]*)\)", text, re.S)
    assert found, name
    return tuple(s.strip().strip("'") for s in found[1].split(","))


@pytest.mark.parametrize(("index", "statuses"), [("orders_due", DUE_STATUSES), ("orders_open", OPEN_STATUSES)])
def test_the_partial_indexes_hold_the_constants_lists(index, statuses):
    assert index_statuses(index) == statuses


@pytest.mark.parametrize(
    ("statement", "predicate"),
    [("CLAIM", queries.DUE), ("SWEEP_DUE", queries.DUE), ("OLDEST_OPEN", f"status IN {queries.OPEN}")],
)
def test_the_statements_spell_the_lists_as_their_indexes_do(statement, predicate):
    assert predicate in getattr(queries, statement)
    assert "{" not in getattr(queries, statement)  # every placeholder filled
