"""Delivering outcome notifications: signed webhooks (retried with backoff until a 2xx or the deadline) or
Celery tasks of the producer's own. One order's notifications go out in order; a receiver that is down
holds up only its own deliveries (they have their own queue)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from orderrelay.foundation.logs import order_fields
from orderrelay.providers import webhook
from orderrelay.providers.egress import EgressRefused
from orderrelay.schemas.hostile import redact_text
from orderrelay.store import notifications

log = logging.getLogger("orderrelay.core.notify")
NEVER = 10.0**9  # seconds: past any deadline, so the delivery is expired at once


def lease(settings: Any) -> float:
    """How long a try holds its delivery: longer than the longest try (the receiver's whole timeout), so that a second
    try never starts while the first is still waiting for its answer."""
    return settings.notify_timeout + 30.0


def retry_in(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed ones: 1, 2, 4 ... up to 10 minutes."""
    return min(600.0, 2.0 ** max(0, attempts - 1))


def deliver(rt: Any, notification_id: int, send_task: Any) -> str:
    """Try one delivery; returns delivered, retry, refused, skipped (not due, or an earlier one pending) or stale (the
    try outlived its lease and another took the delivery: its result is not counted)."""
    with rt.db.connection() as conn:
        note = notifications.claim(conn, notification_id, lease=lease(rt.settings))
    if note is None:
        return "skipped"
    target, body, event_id = note["target"], note["body"], str(note["event_id"])
    status, error, started, final = None, None, time.perf_counter(), False
    try:
        if "task" in target:
            queue = rt.settings.notify_tasks.get(target["task"])
            if queue is None:  # no longer listed by this deployment: never published to a queue it did not name
                raise EgressRefused(f"task {target['task']!r} is not in ORDERRELAY_NOTIFY_TASKS")
            send_task(
                target["task"],
                kwargs={"notification": body},
                queue=queue,
                kwargsrepr=json.dumps({"event_id": event_id, "status": body["status"]}),
            )
            delivered = True
        else:
            status = rt.run(
                webhook.post(
                    rt.http,
                    target["url"],
                    body,
                    secret=rt.settings.notify_secret,
                    event_id=event_id,
                    timeout=rt.settings.notify_timeout,
                ),
                timeout=rt.settings.notify_timeout + 5.0,  # a try never outlives its lease waiting on the loop
            )
            delivered = 200 <= status < 300
            error = None if delivered else f"HTTP {status}" + (" (a redirect: not followed)" if status < 400 else "")
    except EgressRefused as exc:  # not a receiver's hiccup: it would be refused on every try
        delivered, error, final = False, f"refused: {exc}"[:500], True
    except Exception as exc:  # the receiver is down, slow or unreachable: try again later
        delivered, error = False, redact_text(f"{type(exc).__name__}: {exc}", 500)
    latency_ms = (time.perf_counter() - started) * 1000
    wait = NEVER if final else retry_in(note["attempts"] + 1)
    with rt.db.connection() as conn:
        recorded = notifications.record(
            conn,
            notification_id,
            claim_token=note["claim_token"],
            delivered=delivered,
            retry_in=0 if delivered else wait,
            http_status=status,
            latency_ms=latency_ms,
            error=error,
        )
    outcome = "delivered" if delivered else "refused" if final else "retry"
    if not recorded:
        log.warning("notification %s: a try that outlived its lease (%s); its result is not counted", event_id, outcome)
        return "stale"
    log.info(
        "notification %s (%s) %s%s",
        event_id,
        body["status"],
        outcome,
        f": {error}" if error else "",
        extra=order_fields(note["order_id"], body.get("provider"), status=body["status"]),
    )
    return outcome


RESEND_AFTER = 60.0  # seconds: a delivery message sent but not yet taken is sent again only after this


def due(rt: Any) -> list[int]:
    """Notifications due now that no delivery message is on its way for (marked as sent for RESEND_AFTER s)."""
    with rt.db.connection() as conn:
        return notifications.due(conn, resend_after=RESEND_AFTER)
