"""The shared limits' own rules, without a Redis: a Redis that cannot answer never blocks a call (the worker falls
back to its per-process caps and says so once); the settings name a bad limit."""

from __future__ import annotations

import logging

import pytest

from orderrelay.core.limits import SharedLimits, view


def test_a_redis_that_cannot_answer_lets_calls_go_and_says_so_once(caplog):
    import asyncio

    limits = SharedLimits("redis://127.0.0.1:1/0", {"extend": "20/second"}, {"extend": 4})
    with caplog.at_level(logging.WARNING, logger="orderrelay.limits"):
        first, second = limits.enter("extend", "a"), limits.enter("extend", "b")
        limits.pause("extend", 3)
        asyncio.run(limits.pace("extend"))  # a token grant or a lookup is not held back either
        assert limits.leave("extend", "seat") == []
    assert first.allowed and second.allowed and first.seat is None
    assert "per-process caps only" in (limits.degraded or "")
    assert sum("per-process caps only" in r.message for r in caplog.records) == 1


def test_status_says_the_limits_cannot_be_read():
    shown = view("redis://127.0.0.1:1/0", ["extend"], {"extend": "20/second"}, {})
    assert "cannot answer" in shown["_"]["error"]
    assert "cannot answer" in view("redis://127.0.0.1:1/0", ["extend"], {}, {})["_"]["error"]  # a pause: any provider
    assert view("amqp://guest@127.0.0.1//", ["extend"], {}, {}) == {}


def test_another_broker_means_per_process_caps_only():
    limits = SharedLimits("amqp://guest@127.0.0.1//", {"extend": "20/second"}, {})
    assert limits.enter("extend").allowed and "not Redis" in limits.degraded


# Issue 24's nonsense, and more: each value is refused at start-up in one line that names its variable.
NONSENSE = [
    ("ORDERRELAY_RATE_LIMITS", "extend=fast", "PROVIDER=RATE"),
    ("ORDERRELAY_RATE_LIMITS", "acme=20/second", "not a provider"),
    ("ORDERRELAY_RATE_LIMITS", "chaiz=20/second:0", "a burst must be 1"),  # no call would ever go
    ("ORDERRELAY_RATE_LIMITS", "chaiz=20/second:99999999", "a burst must be 1"),
    ("ORDERRELAY_RATE_LIMITS", "chaiz=0/second", "at least one call a day"),
    ("ORDERRELAY_RATE_LIMITS", "chaiz=0.000001/hour", "at least one call a day"),  # one call in 114 years
    ("ORDERRELAY_RATE_LIMITS", "chaiz=200000/second", "at most 100000/second"),  # float spacing then limits nothing
    ("ORDERRELAY_RATE_LIMITS", "chaiz=1e400/second", "not a rate"),
    ("ORDERRELAY_RATE_LIMITS", "chaiz=\u0662\u0660/second", "not a rate"),  # Arabic-Indic digits
    ("ORDERRELAY_RATE_LIMITS", "chaiz=20/second,chaiz=5/second", "named twice"),
    ("ORDERRELAY_CONCURRENCY_LIMITS", "extend=0", "PROVIDER=N"),
    ("ORDERRELAY_CONCURRENCY_LIMITS", "chaiz=\u00b2", "PROVIDER=N"),  # a superscript two: isdigit(), not a number
    ("ORDERRELAY_CONCURRENCY_LIMITS", "chaiz=1000000", "PROVIDER=N"),
    ("ORDERRELAY_CONCURRENCY_LIMITS", "chaiz=2,chaiz=3", "named twice"),
    ("ORDERRELAY_LEASE_SECONDS", "inf", "nan or infinity"),
    ("ORDERRELAY_LEASE_SECONDS", "nan", "nan or infinity"),
    ("ORDERRELAY_LEASE_SECONDS", "1e9", "less than or equal"),
    ("ORDERRELAY_BACKOFF_MAX", "1e400", "nan or infinity"),
    ("ORDERRELAY_NOTIFY_DEADLINE", "-1", "greater than or equal"),
    ("ORDERRELAY_SWEEP_INTERVAL", "1e300", "less than or equal"),
]


@pytest.mark.parametrize(("variable", "value", "says"), NONSENSE, ids=[f"{v[11:]}={x}" for v, x, _ in NONSENSE])
def test_a_bad_limit_is_refused_in_one_line_naming_it(monkeypatch, variable, value, says):
    from orderrelay.config.settings import load_settings
    from orderrelay.foundation.errors import ConfigError
    from tests.unit.test_settings import GOOD

    for name, good in GOOD.items():
        monkeypatch.setenv(name, good)
    monkeypatch.setenv(variable, value.encode().decode("unicode_escape"))
    with pytest.raises(ConfigError) as refused:
        load_settings()
    lines = [line for line in str(refused.value).splitlines() if variable in line]
    assert len(lines) == 1 and says in lines[0], str(refused.value)


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
