"""``orders.submit``, ``orders.place`` and ``orders.sweep``. Results are order ids and states, never order data."""

from __future__ import annotations

from orderrelay import pipeline
from orderrelay.constants import TASK_FOLLOW_UP, TASK_PLACE, TASK_SUBMIT, TASK_SWEEP
from worker import runtime
from worker.app import app

RETRY = {"autoretry_for": runtime.TRANSIENT_ERRORS, "retry_backoff": 2, "retry_backoff_max": 60, "max_retries": None}


def _follow(step: pipeline.Next) -> dict:
    """Carry out what the pipeline asked for: place now, or send a message that arrives when the order is due."""
    rt = runtime.current()
    while step.place_now:
        step = pipeline.place(rt, step.order_id)
    if step.countdown is not None:
        place.apply_async((str(step.order_id),), countdown=step.countdown)
    return {"order_id": str(step.order_id), "status": step.status}


@app.task(name=TASK_SUBMIT, bind=True, **RETRY)
def submit(self, *args, **job) -> dict:
    """Validate and record a job (``provider``, ``order``, ``idempotency_key``, ``not_before``), then place it."""
    if args:
        job = {"_positional_arguments": len(args), **job}
    return _follow(pipeline.intake(runtime.current(), job, message_id=self.request.id))


@app.task(name=TASK_PLACE, **RETRY)
def place(order_id: str) -> dict:
    """Claim and place one order by id; a message for an order not due or already taken does nothing."""
    return _follow(pipeline.place(runtime.current(), order_id))


@app.task(name=TASK_SWEEP, **RETRY)
def sweep() -> dict:
    """Recover lost work from Postgres and send a message for each due order."""
    ids = pipeline.sweep(runtime.current())
    for order_id in ids:
        place.apply_async((str(order_id),))
    return {"enqueued": len(ids)}


@app.task(name=TASK_FOLLOW_UP, **RETRY)
def follow_up() -> dict:
    """Read placed orders whose provider status may still change (Adobe's 1002) and record what changed."""
    return {"changed": pipeline.follow_up(runtime.current())}
