"""Names other tools rely on: task names, queues, statuses. One place for all of them."""

TASK_SUBMIT = "orders.submit"
TASK_PLACE = "orders.place"
TASK_SWEEP = "orders.sweep"
TASK_FOLLOW_UP = "orders.follow_up"
TASK_RETRY_FAILED = "orders.retry_failed"
TASK_ERASE_CARD_DATA = "orders.erase_card_data"
TASK_DELIVER = "notifications.deliver"
TASK_NOTIFY_SWEEP = "notifications.sweep"

# Intake and the scheduled tasks use "orders"; each provider's placements have a queue of their own, so a
# provider that is slow or down holds up only its own messages. The queues of a deployment are those of the
# providers it enables (``Settings.queues``, declared in the Celery configuration).
QUEUE_ORDERS = "orders"
QUEUE_NOTIFICATIONS = "notifications"  # a receiver that is down delays nothing else
# The placing worker serves all but QUEUE_NOTIFICATIONS; the notifier serves QUEUE_NOTIFICATIONS alone, with threads
# of its own, so a receiver that hangs takes no placing capacity.


def provider_queue(provider_id: str) -> str:
    """The queue of one provider's placements."""
    return f"{QUEUE_ORDERS}.{provider_id}"


class Status:
    """Order statuses, as in the design's lifecycle."""

    RECEIVED = "received"
    WAITING = "waiting"
    QUEUED = "queued"
    PLACING = "placing"
    PLACED = "placed"
    RETRYING = "retrying"
    FAILED = "failed"
    IN_DOUBT = "in_doubt"
    REJECTED = "rejected"
    CANCELED = "canceled"


ALL_STATUSES = tuple(v for k, v in vars(Status).items() if k.isupper())
FINAL_STATUSES = (Status.PLACED, Status.FAILED, Status.IN_DOUBT, Status.REJECTED, Status.CANCELED)
# Statuses in which an order still has work due; the sweep looks at these (store.queries.DUE, the index orders_due).
DUE_STATUSES = (Status.WAITING, Status.QUEUED, Status.RETRYING)
# Statuses of an order still waiting for something (status's oldest open change, the index orders_open).
OPEN_STATUSES = (Status.RECEIVED, Status.WAITING, Status.QUEUED, Status.PLACING, Status.RETRYING, Status.IN_DOUBT)


class Outcome:
    """What one provider attempt came to."""

    PLACED = "placed"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"
    IN_DOUBT = "in_doubt"


# Keys whose values are card data; they never reach a log, an event, an error text or a task argument.
SECRET_KEYS = frozenset({"accountNumber", "cvc", "cardNumber", "pan", "cvv"})
