"""Helpers shared by the tests: schema mutations, and valid orders for every provider from the sandbox."""

from __future__ import annotations

import copy

import pytest
from marshmallow import Schema, ValidationError

from orderrelay.schemas.fields import flatten_errors

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


def provider_order(sandbox, provider: str) -> dict:
    """A valid order for ``provider``: its module's sample, with the plan, customer, offer, quote and cart ids it
    needs made through the sandbox's admin API."""
    import uuid

    from orderrelay.providers import get

    return get(provider).sample(f"t-{uuid.uuid4().hex[:10]}", sandbox.admin)


def ref_field(provider: str) -> str:
    """The field of the sandbox's record that holds the reference orderrelay records."""
    from orderrelay.sandbox.app import modules

    return modules()[provider].REF_FIELD


def run_cli(env, *args, stdin: str | None = None, timeout: float = 300, cwd=None):
    """``orderrelay ARGS`` in a child process with ``env``; its CompletedProcess (text), whatever its exit status."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "orderrelay.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )
