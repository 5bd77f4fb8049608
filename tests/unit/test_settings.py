"""Settings are read once; every missing or malformed variable is named at once."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from orderrelay.config.settings import load_settings
from orderrelay.foundation.errors import ConfigError

GOOD = {
    "ORDERRELAY_BROKER_URL": "redis://127.0.0.1:6379/0",
    "ORDERRELAY_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/orderrelay",
    "ORDERRELAY_FERNET_KEYS": Fernet.generate_key().decode(),
    "ORDERRELAY_PROVIDERS": "extend,chaiz,adobe_vip,battleface,webroot",
    "ORDERRELAY_EXTEND_CLIENT_ID": "id",
    "ORDERRELAY_EXTEND_CLIENT_SECRET": "secret",
    "ORDERRELAY_CHAIZ_TOKEN": "chaiz-token",
    "ORDERRELAY_ADOBE_VIP_CLIENT_ID": "adobe-id",
    "ORDERRELAY_ADOBE_VIP_CLIENT_SECRET": "adobe-secret",
    "ORDERRELAY_ADOBE_VIP_API_KEY": "adobe-key",
    "ORDERRELAY_BATTLEFACE_CLIENT_ID": "bf-id",
    "ORDERRELAY_BATTLEFACE_CLIENT_SECRET": "bf-secret",
    "ORDERRELAY_WEBROOT_CLIENT_ID": "wr-id",
    "ORDERRELAY_WEBROOT_CLIENT_SECRET": "wr-secret",
    "ORDERRELAY_WEBROOT_USERNAME": "wr-user",
    "ORDERRELAY_WEBROOT_PASSWORD": "wr-password",
}


@pytest.fixture
def environ(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("ORDERRELAY_"):
            monkeypatch.delenv(name)
    for name, value in GOOD.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_good_environment_loads(environ):
    settings = load_settings()
    assert settings.providers["extend"].base_url == "https://api-demo.helloextend.com"
    assert settings.providers["extend"].credentials == {"client_id": "id", "client_secret": "secret"}
    assert settings.max_attempts == 5


def test_secrets_stay_out_of_the_repr(environ):
    text = repr(load_settings())
    for value in ("secret", "chaiz-token", "adobe-key", GOOD["ORDERRELAY_FERNET_KEYS"], "postgres@"):
        assert value not in text


def test_every_bad_variable_is_named_at_once(environ):
    environ.delenv("ORDERRELAY_DATABASE_URL")
    environ.delenv("ORDERRELAY_EXTEND_CLIENT_SECRET")
    environ.setenv("ORDERRELAY_BROKER_URL", "http://example")
    environ.setenv("ORDERRELAY_FERNET_KEYS", "not-a-key")
    environ.setenv("ORDERRELAY_MAX_ATTEMPTS", "0")
    environ.setenv("ORDERRELAY_EXTEND_BASE_URL", "ftp://x")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    for name in (
        "ORDERRELAY_DATABASE_URL",
        "ORDERRELAY_EXTEND_CLIENT_SECRET",
        "ORDERRELAY_BROKER_URL",
        "ORDERRELAY_FERNET_KEYS",
        "ORDERRELAY_MAX_ATTEMPTS",
        "ORDERRELAY_EXTEND_BASE_URL",
    ):
        assert name in message
    assert "not-a-key" not in message


def test_unknown_and_unimplemented_providers_are_refused(environ):
    environ.setenv("ORDERRELAY_PROVIDERS", "extend,acme")
    with pytest.raises(ConfigError, match="ORDERRELAY_PROVIDERS"):
        load_settings()


def test_countdown_horizon_must_stay_under_the_visibility_timeout(environ):
    environ.setenv("ORDERRELAY_COUNTDOWN_HORIZON", "4000")
    with pytest.raises(ConfigError, match="COUNTDOWN_HORIZON"):
        load_settings()


def test_a_deployment_without_a_provider_needs_none_of_its_credentials(environ):
    environ.delenv("ORDERRELAY_EXTEND_CLIENT_ID")
    environ.delenv("ORDERRELAY_CHAIZ_TOKEN")
    environ.delenv("ORDERRELAY_WEBROOT_PASSWORD")
    environ.setenv("ORDERRELAY_PROVIDERS", "adobe_vip")
    assert list(load_settings().providers) == ["adobe_vip"]


def test_provider_specific_variables(environ):
    environ.setenv("ORDERRELAY_CHAIZ_ORDER_PATH", "no-slash")
    environ.delenv("ORDERRELAY_ADOBE_VIP_API_KEY")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "ORDERRELAY_CHAIZ_ORDER_PATH: Must start with /." in str(info.value)
    assert "ORDERRELAY_ADOBE_VIP_API_KEY" in str(info.value)


def test_api_keys_are_configured_by_hash_with_a_name_and_a_role(environ):
    from orderrelay.config.settings import find_key, key_entry

    entries = [
        key_entry("shop", "k" * 32),
        key_entry("ops", "o" * 32, "operator"),
        key_entry("prom", "m" * 32, "metrics"),
    ]
    environ.setenv("ORDERRELAY_API_KEYS", ",".join(entries))
    keys = load_settings().api_keys
    assert [(k.name, k.role) for k in keys] == [("shop", "producer"), ("ops", "operator"), ("prom", "metrics")]
    assert find_key(keys, "o" * 32).name == "ops"
    assert find_key(keys, "x" * 32) is None
    assert "k" * 32 not in ",".join(entries)  # only the hash is in the environment


@pytest.mark.parametrize(
    "entry",
    ["a-plain-key-of-32-characters-0000", "shop=sha256:abc", "shop:admin=sha256:" + "0" * 64, "=sha256:" + "0" * 64],
)
def test_an_api_key_in_clear_or_malformed_is_refused_with_how_to_make_one(environ, entry):
    environ.setenv("ORDERRELAY_API_KEYS", entry)
    with pytest.raises(ConfigError, match="orderrelay keygen api-key NAME"):
        load_settings()


def test_two_keys_may_not_share_a_name(environ):
    from orderrelay.config.settings import key_entry

    environ.setenv("ORDERRELAY_API_KEYS", f"{key_entry('shop', 'a' * 32)},{key_entry('shop', 'b' * 32, 'operator')}")
    with pytest.raises(ConfigError, match="name of its own"):
        load_settings()


@pytest.mark.parametrize("queue", ["orders", "orders.chaiz", "notifications"])
def test_a_task_target_may_not_name_a_queue_orderrelay_consumes(environ, queue):
    """orderrelay's own workers would take the message and discard it as a task they do not know: a notification
    recorded delivered that nobody got."""
    environ.setenv("ORDERRELAY_NOTIFY_TASKS", f"checkout.outcome={queue}")
    with pytest.raises(ConfigError, match="orderrelay's own queue"):
        load_settings()
    environ.setenv("ORDERRELAY_NOTIFY_TASKS", "checkout.outcome=checkout")
    assert load_settings().notify_tasks == {"checkout.outcome": "checkout"}
