"""Order ids: known to a producer before any worker has run."""

from __future__ import annotations

import uuid

ORDER_IDS = uuid.UUID("6f1c1d3e-4a51-4c83-9d0e-0b7a3c5e2f10")  # namespace of ids derived from producers' keys


def order_id_for(idempotency_key: str | None, message_id: str | None, producer: str | None = None) -> uuid.UUID:
    """The id an order gets: derived from the producer's key (so a producer knows it before any worker has
    run; an API key's keys are its own), else the message's id when that is a UUID (Celery's are), else new."""
    if idempotency_key:
        return uuid.uuid5(ORDER_IDS, idempotency_key if producer is None else f"{producer}/{idempotency_key}")
    try:
        return uuid.UUID(str(message_id))
    except ValueError:
        return uuid.uuid4()
