"""The Celery app. Start a worker with ``celery -A orderrelay.worker.app worker --pool threads -c 64 -E``.

Settings are read when the configuration is first needed; bad variables stop start-up with every name listed.
"""

from __future__ import annotations

import os
import sys

from celery import Celery, signals

from orderrelay.config.settings import get_settings
from orderrelay.core.broker import reuse_redis_clients
from orderrelay.foundation import logs
from orderrelay.foundation.errors import ConfigError
from orderrelay.worker import runtime

try:
    get_settings()
except ConfigError as exc:
    if "celery" in sys.argv[0]:  # started as `celery -A orderrelay.worker.app ...`: say what is wrong, not a traceback
        sys.exit(str(exc))
    raise

reuse_redis_clients()
app = Celery("orderrelay", include=["orderrelay.tasks.orders"])  # the bench's workers add tasks.bench
app.config_from_object("orderrelay.config.celery_config")


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _log_format(logger=None, **kwargs) -> None:
    logs.apply(logger, get_settings().log_format)


@signals.worker_init.connect
def _services_answer(**kwargs) -> None:
    """A worker whose database or broker is wrong at start-up says so in one line and exits 1, before it takes a
    task (a database lost later is retried, as every task does)."""
    problem = runtime.unreachable(get_settings())
    if problem:
        print(f"orderrelay worker cannot start: {problem}", file=sys.stderr, flush=True)
        os._exit(1)  # Celery would catch a SystemExit raised in a signal handler and start anyway


@signals.beat_init.connect
def _beat_quiet(sender=None, **kwargs) -> None:
    """Beat sends only the scheduled housekeeping: no task-sent events for them, so Flower lists the orders."""
    if sender is not None:
        sender.app.conf.task_send_sent_event = False


@signals.worker_process_init.connect
def _start_child(**kwargs) -> None:
    runtime.current()  # prefork child: make the loop, session and pool now, not in the first task


@signals.worker_ready.connect
def _start_main(sender=None, **kwargs) -> None:
    if sender is not None and "prefork" not in type(sender.pool).__module__:
        runtime.current()  # threads/solo pools run tasks in this process
    print("orderrelay worker ready", flush=True)  # whatever the log level: process supervisors wait for it


@signals.worker_process_shutdown.connect
@signals.worker_shutdown.connect
def _stop(**kwargs) -> None:
    runtime.shutdown()
