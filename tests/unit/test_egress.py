"""Webhooks reach only the outside: every spelling of an inside address is refused when the job is taken in,
a name that resolves inside is refused when the notification is delivered, and only listed tasks are targets."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.fernet import Fernet

from orderrelay.core.envelope import NotifyRules, validate_job
from orderrelay.foundation.errors import JobInvalid
from orderrelay.foundation.vault import Vault
from orderrelay.providers import REGISTRY
from orderrelay.providers.egress import EgressRefused, SafeResolver
from orderrelay.sandbox.samples import extend_order

VAULT = Vault([Fernet.generate_key().decode()])
RULES = NotifyRules(allow_http=True, tasks=(("checkout.order_outcome", "checkout"),))


def job_with(notify: dict, rules: NotifyRules = RULES):
    return validate_job(
        {"provider": "extend", "order": extend_order("t-e"), "notify": notify},
        enabled=frozenset(REGISTRY),
        vault=VAULT,
        notify_rules=rules,
    )


def refused(notify: dict, rules: NotifyRules = RULES) -> dict:
    with pytest.raises(JobInvalid) as info:
        job_with(notify, rules)
    return info.value.errors


INSIDE = [
    "https://169.254.169.254/latest/meta-data/",
    "http://127.0.0.1:6379/",
    "https://10.0.0.5/hook",
    "https://[::1]/hook",
    "http://localhost:5555/",
    "https://0x7f000001/",
    "https://2130706433/",
    "https://127.1/",
    "https://0177.0.0.1/",
    "https://[::ffff:127.0.0.1]/",
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://100.64.0.1/",
    "https://224.0.0.1/",
    "https://redis/",
    "https://printer.local/",
    "https://LOCALHOST./",
    "https://user:pass@127.0.0.1/",
]


@pytest.mark.parametrize("url", INSIDE)
def test_a_webhook_inside_the_network_is_refused_however_it_is_spelt(url):
    errors = refused({"url": url})
    assert any("public internet only" in message for message in errors["notify.url"]), errors


@pytest.mark.parametrize(
    "url", ["https://checkout.example.com/hooks", "https://93.184.216.34/h", "https://[2606:4700::1]/h"]
)
def test_a_webhook_on_the_public_internet_is_taken(url):
    assert job_with({"url": url}).notify == {"url": url}


def test_an_internal_receiver_is_admitted_by_name_or_network():
    rules = NotifyRules(allow_http=True, allow_hosts=("hooks.internal", "10.1.0.0/16"))
    assert job_with({"url": "https://hooks.internal/x"}, rules).notify
    assert job_with({"url": "https://10.1.2.3/x"}, rules).notify
    assert "notify.url" in refused({"url": "https://10.2.0.1/x"}, rules)


def test_only_listed_tasks_are_targets_and_always_on_their_own_queue():
    assert job_with({"task": "checkout.order_outcome"}).notify == {
        "task": "checkout.order_outcome",
        "queue": "checkout",
    }
    assert "notify.task" in refused({"task": "orders.submit"})
    assert "notify.task" in refused({"task": "celery.backend_cleanup", "queue": "orders"})
    assert "notify.queue" in refused({"task": "checkout.order_outcome", "queue": "orders"})


class FakeDns:
    """A name server that answers what the test says (the thing under test is the filter, not DNS)."""

    def __init__(self, answers: dict[str, list[str]]):
        self.answers = answers

    async def resolve(self, host, port=0, family=0):
        return [
            {"hostname": host, "host": a, "port": port, "family": family, "proto": 0, "flags": 0}
            for a in self.answers[host]
        ]

    async def close(self):
        pass


def resolve(host: str, answers: list[str], allow=()) -> list[str]:
    resolver = SafeResolver(allow)
    resolver.inner = FakeDns({host: answers})
    return [entry["host"] for entry in asyncio.run(resolver.resolve(host, 443))]


def test_a_name_that_resolves_inside_is_refused_and_only_checked_addresses_are_connected_to():
    with pytest.raises(EgressRefused):
        resolve("rebind.example.com", ["169.254.169.254"])
    with pytest.raises(EgressRefused):
        resolve("rebind.example.com", ["10.0.0.5", "::1"])
    assert resolve("mixed.example.com", ["10.0.0.5", "93.184.216.34"]) == ["93.184.216.34"]
    assert resolve("hooks.corp.example", ["10.0.0.5"], allow=("hooks.corp.example",)) == ["10.0.0.5"]
