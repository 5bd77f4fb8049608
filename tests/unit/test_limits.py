"""The shared limits' own rules, without a Redis: a Redis that cannot answer never blocks a call (the worker falls
back to its per-process caps and says so once); the settings name a bad limit."""

from __future__ import annotations

import logging

import pytest

from orderrelay.core.limits import SharedLimits, view


def test_a_redis_that_cannot_answer_lets_calls_go_and_says_so_once(caplog):
    limits = SharedLimits("redis://127.0.0.1:1/0", {"extend": "20/second"}, {"extend": 4})
    with caplog.at_level(logging.WARNING, logger="orderrelay.limits"):
        first, second = limits.enter("extend"), limits.enter("extend")
        limits.pause("extend", 3)
    assert first.allowed and second.allowed
    assert "per-process caps only" in (limits.degraded or "")
    assert sum("per-process caps only" in r.message for r in caplog.records) == 1


def test_status_says_the_limits_cannot_be_read():
    shown = view("redis://127.0.0.1:1/0", {"extend": "20/second"}, {})
    assert "cannot answer" in shown["_"]["error"]
    assert view("redis://127.0.0.1:1/0", {}, {}) == {}


def test_another_broker_means_per_process_caps_only():
    limits = SharedLimits("amqp://guest@127.0.0.1//", {"extend": "20/second"}, {})
    assert limits.enter("extend").allowed and "not Redis" in limits.degraded


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("ORDERRELAY_RATE_LIMITS", "extend=fast", "PROVIDER=RATE"),
        ("ORDERRELAY_RATE_LIMITS", "acme=20/second", "not a provider"),
        ("ORDERRELAY_CONCURRENCY_LIMITS", "extend=0", "PROVIDER=N"),
    ],
)
def test_a_bad_limit_is_named(monkeypatch, variable, value, says):
    from orderrelay.config.settings import load_settings
    from orderrelay.foundation.errors import ConfigError
    from tests.unit.test_settings import GOOD

    for name, good in GOOD.items():
        monkeypatch.setenv(name, good)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=says):
        load_settings()


def test_limits_are_read(monkeypatch):
    from orderrelay.config.settings import load_settings
    from tests.unit.test_settings import GOOD

    for name, good in GOOD.items():
        monkeypatch.setenv(name, good)
    monkeypatch.setenv("ORDERRELAY_RATE_LIMITS", "extend=20/second,chaiz=600/minute")
    monkeypatch.setenv("ORDERRELAY_CONCURRENCY_LIMITS", "chaiz=16")
    settings = load_settings()
    assert settings.rate_limits == {"extend": "20/second", "chaiz": "600/minute"}
    assert settings.concurrency_limits == {"chaiz": 16}
