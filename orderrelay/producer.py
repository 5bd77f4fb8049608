"""Sending jobs from Python checkout code.

    from orderrelay.producer import submit_order
    order_id = submit_order("extend", order, idempotency_key="cart-81723")

Card fields are sealed before the message leaves the process; Flower and logs see only the provider and the
key. The order id is known at once: it is derived from the idempotency key (the same key, the same id), or
is the message's own id when there is no key. Needs ORDERRELAY_BROKER_URL and ORDERRELAY_FERNET_KEYS only.
"""

from __future__ import annotations

import functools
import logging
import uuid
from typing import Any

from celery import Celery

from orderrelay import providers
from orderrelay.config.settings import get_producer_settings
from orderrelay.core import pending
from orderrelay.core.broker import reuse_redis_clients
from orderrelay.foundation.constants import QUEUE_ORDERS, TASK_SUBMIT
from orderrelay.foundation.ids import order_id_for
from orderrelay.foundation.logs import shown_job
from orderrelay.foundation.vault import Vault, seal_fields

log = logging.getLogger("orderrelay.producer")


@functools.cache
def producer() -> tuple[Celery, Vault]:
    """The process's sending app (a plain Celery app: no worker settings, no task-sent events) and its vault."""
    settings = get_producer_settings()
    reuse_redis_clients()
    app = Celery("orderrelay-producer", broker=settings.broker_url, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"], task_default_queue=QUEUE_ORDERS)
    return app, Vault(settings.fernet_keys)


def submit_order(
    provider: str,
    order: dict,
    idempotency_key: str | None = None,
    not_before: str | None = None,
    notify: dict | None = None,
) -> str:
    """Send a job to orderrelay and return the id its order has (or will have) at once. ``notify`` asks for the
    outcome: ``{"url": "https://..."}`` (a signed webhook) or ``{"task": "checkout.order_outcome"}`` (a Celery
    task the deployment lists in ORDERRELAY_NOTIFY_TASKS)."""
    app, vault = producer()
    return send(app, vault, provider, order, idempotency_key=idempotency_key, not_before=not_before, notify=notify)


def send(
    app: Any,
    vault: Vault,
    provider: str,
    order: Any,
    *,
    idempotency_key: str | None = None,
    not_before: str | None = None,
    notify: dict | None = None,
) -> str:
    """Publish an ``orders.submit`` message with sealed card fields; returns the order's id. Once the message is
    published this returns: the note beside it (``orderrelay.core.pending``) is a second write that may fail on its
    own (Redis going away between the two), and a caller told "failed" for a job that was sent could send it again."""
    if idempotency_key is not None and not isinstance(idempotency_key, str):  # its order id could not be told
        raise TypeError(f"idempotency_key must be a string, not {type(idempotency_key).__name__}; nothing was sent")
    if provider in providers.REGISTRY and isinstance(order, dict):
        order = seal_fields(vault, order, providers.get(provider).CARD_FIELDS)
    kwargs: dict[str, Any] = {"provider": provider, "order": order, "idempotency_key": idempotency_key}
    if not_before is not None:
        kwargs["not_before"] = not_before
    if notify is not None:
        kwargs["notify"] = notify
    message_id = str(uuid.uuid4())
    order_id = str(order_id_for(idempotency_key, message_id))  # before the publish: nothing after it may raise
    shown = shown_job(kwargs)
    with app.producer_or_acquire() as publisher:
        app.send_task(
            TASK_SUBMIT,
            kwargs=kwargs,
            task_id=message_id,
            queue=QUEUE_ORDERS,
            argsrepr="()",
            kwargsrepr=shown,
            producer=publisher,
        )
        if publisher.connection.transport.driver_type == "redis":  # see orderrelay.core.pending
            try:
                with publisher.channel.conn_or_acquire() as client:
                    pending.note(client, message_id, kwargs)
            except Exception as exc:  # the job is on its queue: a failed note must not make the caller send it again
                log.warning(
                    "job %s was sent, but its note could not be written (%s): it has kombu's own guarantee only",
                    message_id,
                    type(exc).__name__,
                )
    return order_id
