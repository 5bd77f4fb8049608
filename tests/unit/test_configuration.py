"""Celery is set up for at-least-once work; the deployment files are valid and run the right processes."""

from __future__ import annotations

import json
import shlex
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
import yaml

from orderrelay.foundation.constants import QUEUE_NOTIFICATIONS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def conf(request):
    import os

    from cryptography.fernet import Fernet

    from orderrelay.config.settings import get_settings

    saved = dict(os.environ)
    os.environ.update(
        ORDERRELAY_BROKER_URL="redis://127.0.0.1:6379/0",
        ORDERRELAY_DATABASE_URL="postgresql://postgres@127.0.0.1/x",
        ORDERRELAY_FERNET_KEYS=Fernet.generate_key().decode(),
        ORDERRELAY_EXTEND_CLIENT_ID="i",
        ORDERRELAY_EXTEND_CLIENT_SECRET="s",
        ORDERRELAY_PROVIDERS="extend",
    )
    get_settings.cache_clear()
    import contextlib
    import importlib

    from orderrelay.config import celery_config
    from orderrelay.foundation.errors import ConfigError
    from orderrelay.worker.app import app

    importlib.reload(celery_config)  # make sure it reads this environment, whatever read it before
    app.loader.config_from_object("orderrelay.config.celery_config")
    yield app.conf, app
    os.environ.clear()
    os.environ.update(saved)
    get_settings.cache_clear()
    with contextlib.suppress(ConfigError):  # without services configured there is nothing to restore
        importlib.reload(celery_config)
        app.loader.config_from_object("orderrelay.config.celery_config")


def test_celery_is_configured_for_at_least_once_work(conf):
    c, _ = conf
    assert c.task_acks_late is True
    assert c.task_reject_on_worker_lost is True
    assert c.worker_prefetch_multiplier == 1
    assert c.task_serializer == "json" and c.accept_content == ["json"] and c.result_serializer == "json"
    assert c.worker_send_task_events is True and c.task_send_sent_event is True


def test_task_names_are_registered(conf):
    _, app = conf
    app.loader.import_default_modules()
    assert {"orders.submit", "orders.place", "orders.sweep", "orders.follow_up"} <= set(app.tasks)
    assert not [name for name in app.tasks if name.startswith("bench.")]  # the bench's workers load those


def test_beat_runs_the_sweep(conf):
    c, _ = conf
    tasks = sorted(entry["task"] for entry in c.beat_schedule.values())
    assert tasks == [
        "notifications.sweep",
        "orders.erase_card_data",
        "orders.follow_up",
        "orders.retry_failed",
        "orders.sweep",
    ]


def served(argv: list[str], conf) -> set[str]:
    """The queues a worker command serves: its -Q list, else every queue the configuration declares less -X's."""
    if "-Q" in argv:
        return set(argv[argv.index("-Q") + 1].split(","))
    excluded = set(argv[argv.index("-X") + 1].split(",")) if "-X" in argv else set()
    return {queue.name for queue in conf[0].task_queues} - excluded


def test_the_configuration_declares_the_enabled_providers_queues(conf):
    from orderrelay.config.settings import get_settings

    settings = get_settings()
    assert {q.name for q in conf[0].task_queues} == {"orders", "orders.extend", "notifications"}  # extend alone
    assert set(settings.placing_queues) == {"orders", "orders.extend"}


def test_docker_compose_matches_the_compose_specification(conf):
    from orderrelay.config.settings import get_settings

    placing = get_settings().placing_queues
    schema = json.loads(files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    jsonschema.validate(compose, schema)
    services = compose["services"]
    assert {"redis", "postgres", "migrate", "worker", "beat", "flower", "sandbox", "api"} <= set(services)
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command and "--appendfsync always" in redis_command  # jobs before intake
    command = services["worker"]["command"]
    assert "-E" in command
    assert "-Q" not in command  # the queues come from the providers enabled
    assert served(command, conf) == set(placing)  # deliveries apart
    notifier = services["notifier"]["command"]
    assert notifier[notifier.index("-Q") + 1] == QUEUE_NOTIFICATIONS and "-E" in notifier
    for name in ("worker", "notifier", "beat", "flower"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["flower"]["command"][:2] == ["orderrelay", "flower"]
    assert ":?" in services["flower"]["environment"]["FLOWER_BASIC_AUTH"]  # compose refuses to start without it


def test_procfile_runs_each_process_with_the_celery_app(conf):
    from orderrelay.config.settings import get_settings

    placing = get_settings().placing_queues
    lines = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    assert {"worker", "notifier", "beat", "flower", "sandbox", "api"} <= set(lines)
    assert "release" not in lines  # honcho and foreman run every line: a release that exits stops them all
    for name in ("worker", "beat"):
        argv = shlex.split(lines[name])
        assert argv[:3] == ["celery", "-A", "orderrelay.worker.app"]
    assert shlex.split(lines["flower"].split("#")[0])[:2] == ["orderrelay", "flower"]  # guarded: no open Flower
    worker = shlex.split(lines["worker"])
    assert "-E" in worker
    assert "-Q" not in worker
    assert served(worker, conf) == set(placing)
    notifier = shlex.split(lines["notifier"].split("#")[0])
    assert notifier[notifier.index("-Q") + 1] == QUEUE_NOTIFICATIONS


def _check_command(argv: list[str]) -> None:
    """A command is `celery -A orderrelay.worker.app <command>` or `orderrelay <a real subcommand>`."""
    from orderrelay.cli import main

    if argv[0] == "celery":
        assert argv[1:3] == ["-A", "orderrelay.worker.app"], argv
        assert argv[3] in {"worker", "beat", "flower", "inspect"}, argv
    else:
        assert argv[0] == "orderrelay", argv
        assert argv[1] in main.commands, argv


def test_every_service_runs_a_command_the_project_has():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    ours = {name: s for name, s in compose["services"].items() if "build" in s}
    assert set(ours) == {"migrate", "worker", "notifier", "beat", "flower", "api", "sandbox"}
    for service in ours.values():
        _check_command(service["command"])
    for line in (ROOT / "Procfile").read_text().splitlines():
        _check_command(shlex.split(line.split(":", 1)[1].split("#")[0]))
    assert "noeviction" in compose["services"]["redis"]["command"]
