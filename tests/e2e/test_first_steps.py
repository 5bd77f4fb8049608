"""The README's first steps after the Quickstart, as written: ``.env.example`` is a working environment for the
sandbox once ``orderrelay keygen env`` adds its secrets, and ``orderrelay submit <provider> examples/<provider>.json``
places each example at the sandbox the Procfile starts (``--examples``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orderrelay.providers import REGISTRY
from orderrelay.providers.base import TEST_CARD
from orderrelay.sandbox.app import provider_environment
from orderrelay.tools import embedded, processes
from tests.conftest import started, wait_until
from tests.helpers import run_cli

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def dotenv(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))


def cli(env, *args):
    return run_cli(env, *args, timeout=120, cwd=ROOT)


def test_env_example_is_the_sandbox_environment_and_loads_with_keygen_env():
    example = dotenv((ROOT / ".env.example").read_text())
    sandbox = provider_environment(8765)
    assert {k: example.get(k) for k in sandbox} == sandbox  # every provider's URL and credentials, as the sandbox's
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERRELAY_")}
    made = cli(env, "keygen", "env")
    assert made.returncode == 0, made.stderr
    env |= example | dotenv(made.stdout)
    code = "from orderrelay.config.settings import load_settings; s = load_settings(); print(sorted(s.providers))"
    loaded = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == str(sorted(REGISTRY))


def test_each_example_order_is_placed_at_the_examples_sandbox(service_env, logs, db):
    port = embedded.free_port()
    env = {**service_env, **provider_environment(port)}
    sandbox = processes.Process(
        "examples-sandbox",
        [sys.executable, "-m", "orderrelay.cli", "sandbox", "--port", str(port), "--examples"],
        env,
        logs / "examples-sandbox.log",
    )
    with started(sandbox), started(processes.worker(env, logs, name="examples-worker", concurrency=8)) as worker:
        processes._answering(sandbox, f"http://127.0.0.1:{port}/_sandbox/health")
        keys = {}
        for provider in REGISTRY:
            path = ROOT / "examples" / f"{provider}.json"
            sent = cli(env, "submit", provider, str(path), "--key", f"example-{provider}")
            assert sent.returncode == 0, (provider, sent.stdout, sent.stderr)
            assert TEST_CARD not in sent.stdout + sent.stderr
            keys[provider] = f"example-{provider}"

        def settled():
            rows = db.execute(
                "SELECT provider, status, last_error FROM orders WHERE idempotency_key = ANY(%s)", [list(keys.values())]
            ).fetchall()
            done = [r for r in rows if r["status"] in ("placed", "failed", "in_doubt", "rejected")]
            return rows if len(done) == len(keys) else None

        rows = wait_until(settled, 90, message="every example order to settle")
        assert {r["provider"]: r["status"] for r in rows} == dict.fromkeys(REGISTRY, "placed"), rows
        # examples/chaiz.json carries the seeds' test card: sealed by the CLI before it is sent, it is in no row,
        # no event, no attempt and no log line of ours
        stored = db.execute(
            "SELECT o::text AS o, (SELECT string_agg(e::text, '') FROM order_events e WHERE e.order_id = o.id) AS e,"
            " (SELECT string_agg(a::text, '') FROM attempts a WHERE a.order_id = o.id) AS a"
            " FROM orders o WHERE idempotency_key = ANY(%s)",
            [list(keys.values())],
        ).fetchall()
        assert TEST_CARD in (ROOT / "examples" / "chaiz.json").read_text()
        assert not [r for r in stored if TEST_CARD in f"{r['o']}{r['e']}{r['a']}"]
        assert TEST_CARD not in worker.log() and TEST_CARD not in sandbox.log()
