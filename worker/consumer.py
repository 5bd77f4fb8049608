"""The worker's message consumer: a job whose message Celery cannot make a task of is kept as a rejected order.

Celery logs a message whose body does not decode (the body included) and acknowledges it, so a job would vanish
without a row; and a body that decodes to the wrong shape (``[1, 2]``) raises where Celery expects nothing to,
which stops the worker - and the next one, when the message comes back. For ``orders.submit`` this consumer
records such a message (the head of its body, as a rejected order) and only then acknowledges it; if Postgres
cannot take it now, the message is left unacknowledged and comes back later. Any other malformed message is
logged and dropped; the worker goes on.
"""

from __future__ import annotations

import logging

from celery.worker.consumer import Consumer as CeleryConsumer
from vine import promise

from orderrelay.foundation.constants import TASK_SUBMIT
from orderrelay.foundation.logs import shown_job

log = logging.getLogger("orderrelay.consumer")


class Consumer(CeleryConsumer):
    def create_task_handler(self, promise=promise):
        handle = super().create_task_handler(promise)

        def on_task_received(message):
            try:
                shape = _misshapen(message)
                if shape:  # Celery would fail on it only in the pool, after taking it: keep it now
                    _keep(message, shape)
                    return None
                _shown_safely(message)
            except self.connection_errors:
                raise
            except Exception:  # never let a look at a message stop the worker: Celery's own handling follows
                log.exception("could not look at a task message before Celery; handing it on as it is")
            try:
                return handle(message)
            except self.connection_errors:
                raise
            except Exception as exc:  # Celery could not make a task of it: keep it if it is a job, and go on
                if not _keep(message, f"Celery cannot make a task of it ({type(exc).__name__})"):
                    log.error("dropped a malformed task message (%s)", type(exc).__name__)
                    message.ack()

        return on_task_received

    def on_decode_error(self, message, exc):
        if not _keep(message, f"its body does not decode ({type(exc).__name__})"):
            super().on_decode_error(message, exc)

    def on_invalid_task(self, body, message, exc):
        if not _keep(message, f"it is not a valid task message ({type(exc).__name__})"):
            super().on_invalid_task(body, message, exc)


def _task_of(message) -> str | None:
    headers = message.headers if isinstance(message.headers, dict) else {}
    if "task" in headers:
        return headers["task"]
    try:
        payload = message.payload  # protocol 1: the task's name is in the body
    except Exception:
        return None
    return payload.get("task") if isinstance(payload, dict) else None


def _misshapen(message) -> str | None:
    """Why a job message's body is not [args, kwargs, options] (protocol 2) or a mapping with a list of args and
    a mapping of kwargs (protocol 1); None when it is, or is no job, or does not decode (Celery reports that)."""
    if _task_of(message) != TASK_SUBMIT:
        return None
    try:
        body = message.payload
    except Exception:
        return None
    if isinstance(message.headers, dict) and "task" in message.headers:
        ok = (
            isinstance(body, list | tuple)
            and len(body) == 3
            and isinstance(body[0], list | tuple)
            and isinstance(body[1], dict)
            and isinstance(body[2], dict | None)
        )
    else:
        ok = isinstance(body.get("args", []), list | tuple) and isinstance(body.get("kwargs", {}), dict)
    return None if ok else "its body is not [args, kwargs, options]"


def _shown_safely(message) -> None:
    """A job's message headers as this worker's events and logs show them: its provider and key, whatever the
    producer put there (Celery's own producer puts the repr of every argument, card fields included)."""
    if _task_of(message) != TASK_SUBMIT or not isinstance(message.headers, dict) or "task" not in message.headers:
        return
    try:
        body = message.payload  # decoded once; kombu keeps it for Celery
    except Exception:  # Celery reports (and this consumer keeps) a body that does not decode
        body = None
    message.headers["argsrepr"] = "()"
    message.headers["kwargsrepr"] = shown_job(body[1] if isinstance(body, list | tuple) and len(body) == 3 else None)


def _keep(message, why: str) -> bool:
    """Record an unreadable job message and acknowledge it; False when it is not a job (Celery handles it)."""
    from orderrelay.core import pipeline
    from orderrelay.worker import runtime

    if _task_of(message) != TASK_SUBMIT:
        return False
    headers = message.headers if isinstance(message.headers, dict) else {}
    try:
        pipeline.record_unreadable(runtime.current(), message.body, why, message_id=headers.get("id"))
    except Exception:
        log.exception("could not keep an unreadable job message; it is left unacknowledged and comes back")
        return True
    log.warning("an orders.submit message was unreadable (%s): kept as a rejected order", why)
    message.ack()
    return True
