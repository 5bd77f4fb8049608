"""The orders.* tasks. Results are order ids and states, never order data.

Nothing a task raises carries job data into Flower's events or the logs: a service error becomes
``ServiceUnavailable`` (retried), any other error ``TaskFailed``, each with a redacted text, and raised
without its cause; the original is logged (scrubbed) with its traceback. A job retried by the worker is sent
again showing its provider and key only, whatever the producer sent.
"""

from __future__ import annotations

import functools
import logging
import uuid

from celery._state import _task_stack  # the stack Celery's own Task.__call__ keeps (see AnyArguments)

from orderrelay.core import notify, operations, pending, pipeline
from orderrelay.foundation.constants import (
    QUEUE_NOTIFICATIONS,
    QUEUE_ORDERS,
    TASK_DELIVER,
    TASK_ERASE_CARD_DATA,
    TASK_FOLLOW_UP,
    TASK_NOTIFY_SWEEP,
    TASK_PLACE,
    TASK_RETRY_FAILED,
    TASK_SUBMIT,
    TASK_SWEEP,
    provider_queue,
)
from orderrelay.foundation.errors import OrderRelayError, ServiceUnavailable, TaskFailed
from orderrelay.foundation.logs import shown_job
from orderrelay.schemas.hostile import redact_text
from orderrelay.worker import runtime
from orderrelay.worker.app import app

log = logging.getLogger("orderrelay.tasks")
RETRY = {"autoretry_for": (ServiceUnavailable,), "retry_backoff": 2, "retry_backoff_max": 60, "max_retries": None}
# The scheduled tasks send no events (nor does beat, which sends only them: worker/app.py), so Flower's task list
# is the orders and their notifications, not a sweep every few seconds.
HOUSEKEEPING = {**RETRY, "send_events": False}


def clean_errors(fn):
    """Errors out of a task as orderrelay's own, with redacted texts and no cause (see the module's docstring)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except runtime.TRANSIENT_ERRORS as exc:
            raise ServiceUnavailable(redact_text(f"{type(exc).__name__}: {exc}")) from None
        except OrderRelayError:
            raise
        except Exception as exc:
            log.exception("task %s failed", fn.__name__)
            raise TaskFailed(redact_text(f"{type(exc).__name__}: {exc}")) from None

    return run


def send_place(order_id: uuid.UUID | str, provider: str, countdown: float | None = None) -> None:
    """A message to place one order, on its provider's queue; it carries nothing but the order's id and provider."""
    place.apply_async((str(order_id), provider), queue=provider_queue(provider), countdown=countdown)


def _follow(step: pipeline.Next) -> dict:
    """Do what the pipeline asked for: place now, or send a message that arrives when the order is due."""
    rt = runtime.current()
    woken: list[tuple[uuid.UUID, str]] = []
    while True:
        woken += [(order_id, step.provider) for order_id in step.wake]
        if not (step.claim or step.place_now):
            break
        step = (
            pipeline.attempt(rt, step.claim)
            if step.claim
            else pipeline.place(rt, step.order_id, provider=step.provider)
        )
    if step.notification:
        deliver.apply_async((step.notification,), queue=QUEUE_NOTIFICATIONS)
    if step.countdown is not None and step.provider:
        send_place(step.order_id, step.provider, step.countdown)
    for order_id, provider in woken:  # orders that waited for a seat this call gave back
        send_place(order_id, provider)
    return {"order_id": str(step.order_id), "status": step.status}


POISON_RETRIES = 8  # a job that met a service error this many times (about 5 minutes) is recorded, not retried


class AnyArguments(app.Task):
    """A task run with whatever arguments its message carries, a keyword named ``self`` included: Celery's own
    ``Task.__call__(self, *args, **kwargs)`` cannot take that one, and the job would fail before intake. When
    the worker sends it again (a retry), the message shows the job's provider and key only."""

    def apply_async(self, args=None, kwargs=None, **options):
        options.update(argsrepr="()", kwargsrepr=shown_job(kwargs))
        return super().apply_async(args, kwargs, **options)

    def __call__(*args, **kwargs):
        task, *args = args
        _task_stack.push(task)
        task.push_request(args=args, kwargs=kwargs)
        try:
            return task.run(*args, **kwargs)
        finally:
            task.pop_request()
            _task_stack.pop()


@app.task(name=TASK_SUBMIT, base=AnyArguments, **RETRY)
@clean_errors
def submit(*args, **job) -> dict:
    """Validate and record a job (``provider``, ``order``, ``idempotency_key``, ``not_before``), then place it.

    The task takes any arguments at all (no name of its own can clash with a producer's keyword), so that every
    job reaches intake, which keeps even a malformed one as a rejected order.
    """
    if args:
        job = {"_positional_arguments": len(args), **job}
    request, rt = submit.request, runtime.current()
    step = pipeline.intake(rt, job, message_id=request.id, claim=True, give_up=request.retries >= POISON_RETRIES)
    pending.taken_in(rt.notes, request.id)
    return _follow(step)


@app.task(name=TASK_PLACE, **RETRY)
@clean_errors
def place(order_id: str, provider: str | None = None) -> dict:
    """Claim and place one order by id (``provider``: its provider, as its queue says; read from the row when a
    message of an older orderrelay has none); a message for an order not due or already taken does nothing."""
    return _follow(pipeline.place(runtime.current(), order_id, provider=provider))


@app.task(name=TASK_SWEEP, **HOUSEKEEPING)
@clean_errors
def sweep() -> dict:
    """Recover lost work from Postgres and send a message for each due order."""
    rt = runtime.current()
    due = pipeline.sweep(rt)
    for order_id, provider in due:
        send_place(order_id, provider)
    lost = pipeline.jobs_lost(rt)
    for message_id, job in lost:  # lost in kombu's hand-over: sent again, the same message id (deduplicated)
        log.warning("job %s was lost before intake; sending it again", message_id)
        submit.apply_async(kwargs=job, task_id=message_id, queue=QUEUE_ORDERS)
    return {"enqueued": len(due), "jobs_sent_again": len(lost)}


@app.task(name=TASK_FOLLOW_UP, **HOUSEKEEPING)
@clean_errors
def follow_up() -> dict:
    """Read placed orders whose provider status may still change (Adobe's 1002) and record what changed."""
    return {"changed": pipeline.follow_up(runtime.current())}


@app.task(name=TASK_RETRY_FAILED, **HOUSEKEEPING)
@clean_errors
def retry_failed() -> dict:
    """Give failed orders whose last error was retryable their next scheduled round."""
    rt = runtime.current()
    with rt.db.connection() as conn:
        due = operations.retry_failed_rounds(
            conn, rounds=rt.settings.retry_rounds, interval=rt.settings.retry_round_interval
        )
    for order_id, provider in due:
        send_place(order_id, provider)
    return {"requeued": len(due)}


@app.task(name=TASK_ERASE_CARD_DATA, **HOUSEKEEPING)
@clean_errors
def erase_card_data() -> dict:
    """Erase the sealed card numbers of orders that ended ORDERRELAY_CARD_RETENTION seconds ago."""
    rt = runtime.current()
    with rt.db.connection() as conn:
        return {"erased": operations.erase_card_data(conn, retention=rt.settings.card_retention)}


@app.task(name=TASK_DELIVER, **RETRY)
@clean_errors
def deliver(notification_id: int) -> dict:
    """Deliver one outcome notification (a signed webhook or the producer's own Celery task)."""
    return {
        "notification": notification_id,
        "outcome": notify.deliver(runtime.current(), notification_id, app.send_task),
    }


@app.task(name=TASK_NOTIFY_SWEEP, **HOUSEKEEPING)
@clean_errors
def notify_sweep() -> dict:
    """Send a delivery message for every notification that is due (new, or due for another try)."""
    due = notify.due(runtime.current())
    for notification_id in due:
        deliver.apply_async((notification_id,), queue=QUEUE_NOTIFICATIONS)
    return {"due": len(due)}
