"""Helpers shared by the schema tests."""

from __future__ import annotations

import copy

import pytest
from marshmallow import Schema, ValidationError

from schemas.fields import flatten_errors

DELETE = object()


def mutated(order: dict, path: str, value) -> dict:
    """A copy of ``order`` with the field at a dotted path set to ``value`` (or deleted with DELETE)."""
    order = copy.deepcopy(order)
    *parents, last = path.split(".")
    node = order
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    key = int(last) if last.isdigit() else last
    if value is DELETE:
        del node[key]
    else:
        node[key] = value
    return order


def errors_of(schema: type[Schema], order: dict) -> dict[str, list[str]]:
    """The field errors loading ``order`` gives, by path; fails the test if it loads."""
    with pytest.raises(ValidationError) as info:
        schema().load(order)
    return flatten_errors(info.value.messages)


def case_ids(cases) -> list[str]:
    return [f"{c[0]}={c[1]!r:.24}" for c in cases]
