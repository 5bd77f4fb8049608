"""What every setting is, with its default: the shape the settings are read into (``orderrelay.config.settings``
reads the environment, once, and nothing else does). Plain data, so every layer may be handed it."""

from __future__ import annotations

import re
from dataclasses import MISSING, dataclass, field, fields

from orderrelay.foundation.constants import QUEUE_NOTIFICATIONS, QUEUE_ORDERS, provider_queue


@dataclass(frozen=True)
class ApiKey:
    """One API key as configured: whose it is, what it may do, and the SHA-256 of the key (never the key).

    A producer reads and acts on its own orders only; an operator on every order (and may resend an in-doubt
    order blindly, saying who checked with the provider); a metrics key reads ``/metrics`` and nothing else.
    """

    name: str
    role: str
    digest: str = field(repr=False)


@dataclass(frozen=True)
class ProviderSettings:
    """Where one provider lives and how we authenticate to it: its variables by lower-case name."""

    base_url: str
    credentials: dict[str, str] = field(repr=False)


@dataclass(frozen=True)
class Settings:
    """Everything orderrelay reads from the environment."""

    broker_url: str = field(repr=False)
    database_url: str = field(repr=False)
    fernet_keys: tuple[str, ...] = field(repr=False)
    providers: dict[str, ProviderSettings]
    db_pool_size: int = 8
    http_connect_timeout: float = 5.0
    http_read_timeout: float = 30.0
    http_max_connections: int = 256
    max_attempts: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    countdown_horizon: float = 20.0
    lease_seconds: float = 60.0
    sweep_interval: float = 15.0
    follow_up_interval: float = 300.0
    follow_up_deadline: float = 14 * 86400.0
    requeue_grace: float = 60.0
    retry_rounds: int = 3
    retry_round_interval: float = 1800.0
    max_in_flight: int = 256
    breaker_failures: int = 5
    breaker_cooldown: float = 30.0
    visibility_timeout: float = 30.0
    log_level: str = "INFO"
    log_format: str = "text"
    api_keys: tuple[ApiKey, ...] = field(default=(), repr=False)
    metrics_port: int | None = None  # /metrics on a listener of its own (127.0.0.1), without a key
    api_max_body: int = 1_000_000
    card_retention: float = 30 * 86400.0
    notify_secret: str | None = field(default=None, repr=False)
    notify_default: str | None = None
    notify_allow_http: bool = False
    notify_deadline: float = 86400.0
    notify_sweep_interval: float = 5.0
    notify_timeout: float = 5.0  # seconds a receiver has to answer, in all
    notify_allow_hosts: tuple[str, ...] = ()  # internal hosts and networks webhooks may reach after all
    notify_tasks: dict[str, str] = field(default_factory=dict)  # Celery-task targets allowed: task -> queue
    # Providers' limits, shared by every worker (orderrelay.core.limits): provider -> "20/second", provider -> calls
    rate_limits: dict[str, str] = field(default_factory=dict)
    concurrency_limits: dict[str, int] = field(default_factory=dict)

    @property
    def placing_queues(self) -> tuple[str, ...]:
        """The queues the placing worker serves: intake and the scheduled tasks, and each enabled provider's."""
        return (QUEUE_ORDERS, *map(provider_queue, self.providers))

    @property
    def queues(self) -> tuple[str, ...]:
        """Every queue of this deployment (the Celery configuration declares them all)."""
        return (*self.placing_queues, QUEUE_NOTIFICATIONS)

    @property
    def longest_attempt(self) -> float:
        """Seconds one attempt may take at most, and where it is cut: a lookup, the create request and a lookup
        after a refusal, each after a token grant and again after a 401 with a fresh grant (12 requests), each
        within connect + 2 x read. The claim is renewed all along (every third of the lease), so the lease need
        not be this long; it bounds how long a frozen or cut-off worker keeps an order from the others."""
        return 12 * (self.http_connect_timeout + 2 * self.http_read_timeout)


# The defaults, written once (above): the settings reader takes them from here.
DEFAULTS = {f.name: f.default for f in fields(Settings) if f.default is not MISSING}


UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}
RATE = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,6})?)\s*/\s*(second|minute|hour)(?::([0-9]{1,9}))?")
# Beyond these a limit limits nothing a provider could notice, or would let everything through at once: refused.
MAX_RATE = 100_000.0  # calls per second
MIN_RATE = 1 / 86400  # one call a day: a slower "limit" would hold orders for years
MAX_BURST = 10_000
MAX_CEILING = 100_000  # calls in flight


def parse_rate(text: str) -> tuple[float, int]:
    """``20/second`` or ``600/minute:10`` as (seconds between calls, burst); ValueError, saying why, for anything
    else: a rate below one call a day or above MAX_RATE a second, a burst of 0 (no call would ever go) or above
    MAX_BURST."""
    found = RATE.fullmatch(text.strip())
    if not found:
        raise ValueError(f"{text!r} is not a rate such as 20/second, 600/minute or 20/second:5 (with a burst)")
    per_second = float(found[1]) / UNITS[found[2]]
    burst = int(found[3] or 1)
    if not MIN_RATE <= per_second <= MAX_RATE:
        raise ValueError(f"{text!r}: a rate must be at least one call a day and at most {MAX_RATE:.0f}/second")
    if not 1 <= burst <= MAX_BURST:
        raise ValueError(f"{text!r}: a burst must be 1 to {MAX_BURST} (0 would never let a call go)")
    return 1.0 / per_second, burst
