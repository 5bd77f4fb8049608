"""Celery configuration, loaded lazily by the app (``app.config_from_object``) from the settings.

At-least-once work: a message is acknowledged only after its task ran (late acks), goes back to the queue
when the worker process running it dies, and each worker reserves one message per execution slot.
Postgres, not Redis, holds the truth, so the sweep finds any work whose message was lost.
"""

from urllib.parse import urlsplit

from kombu import Queue

from orderrelay.config.settings import get_settings
from orderrelay.foundation.constants import (
    QUEUE_NOTIFICATIONS,
    QUEUE_ORDERS,
    TASK_DELIVER,
    TASK_ERASE_CARD_DATA,
    TASK_FOLLOW_UP,
    TASK_NOTIFY_SWEEP,
    TASK_RETRY_FAILED,
    TASK_SUBMIT,
    TASK_SWEEP,
)

_settings = get_settings()

broker_url = _settings.broker_url
broker_connection_retry_on_startup = True
# Messages a killed worker had reserved come back after the visibility timeout (30 s); look every 5 s. The look
# holds a Redis lock that a worker killed during it leaves behind for its expiry: kombu's 300 s default stopped
# every restore for five minutes in the fault drill; a restore takes milliseconds, and two at once are safe.
broker_transport_options = {
    "visibility_timeout": _settings.visibility_timeout,
    "unacked_restore_interval": 5,
    "unacked_restore_throttle": 1,
    "unacked_mutex_expire": 10,
}

task_serializer = "json"
accept_content = ["json"]
result_serializer = "json"
task_ignore_result = True  # outcomes live in Postgres
result_backend = None

task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1

worker_consumer = "orderrelay.worker.consumer:Consumer"  # an undecodable job is kept as a rejected order, not dropped
worker_send_task_events = True  # Flower sees every task
task_send_sent_event = True

task_default_queue = QUEUE_ORDERS
# Every queue of the deployment: intake's, each enabled provider's, the notifications'. A worker started without -Q
# serves them all; the placing worker leaves the notifications to the notifier (-X notifications).
task_queues = [Queue(name) for name in _settings.queues]
task_routes = {
    name: {"queue": QUEUE_ORDERS}
    for name in (TASK_SUBMIT, TASK_SWEEP, TASK_FOLLOW_UP, TASK_RETRY_FAILED, TASK_ERASE_CARD_DATA)
}
task_routes[TASK_DELIVER] = {"queue": QUEUE_NOTIFICATIONS}
task_routes[TASK_NOTIFY_SWEEP] = {"queue": QUEUE_NOTIFICATIONS}
# orders.place goes to the order's provider queue (orders.<provider>), chosen when it is sent.

beat_schedule = {
    "sweep-due-orders": {
        "task": TASK_SWEEP,
        "schedule": _settings.sweep_interval,
        "options": {"expires": 60},
    },
    "retry-failed-orders": {
        "task": TASK_RETRY_FAILED,
        "schedule": min(60.0, _settings.retry_round_interval),
        "options": {"expires": 60},
    },
    "deliver-due-notifications": {
        "task": TASK_NOTIFY_SWEEP,
        "schedule": _settings.notify_sweep_interval,
        "options": {"expires": 60},
    },
    "erase-old-card-data": {"task": TASK_ERASE_CARD_DATA, "schedule": 3600.0, "options": {"expires": 3600}},
    "follow-up-placed-orders": {
        "task": TASK_FOLLOW_UP,
        "schedule": _settings.follow_up_interval,
        "options": {"expires": _settings.follow_up_interval},
    },
}
timezone = "UTC"
enable_utc = True

# One beat schedules at a time (orderrelay.worker.beat): a second one stands by instead of sending every scheduled
# task a second time, and takes over when the first stops or dies.
if urlsplit(broker_url).scheme in ("redis", "rediss"):
    beat_scheduler = "orderrelay.worker.beat:LockedScheduler"
