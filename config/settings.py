"""Settings, read once from the environment into a frozen object.

Every variable is read here and nowhere else. A missing or malformed variable is reported by name, all of them
at once, when the settings are first loaded (that is, at start-up of any orderrelay process).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from environs import Env, EnvValidationError
from marshmallow import ValidationError
from marshmallow.validate import OneOf, Range

from orderrelay import providers as table
from orderrelay.foundation.errors import ConfigError
from orderrelay.foundation.options import (
    DEFAULTS,
    MAX_CEILING,
    ApiKey,
    ProviderSettings,
    Settings,
    parse_rate,
)

PREFIX = "ORDERRELAY_"

BROKER_SCHEMES = {"redis", "rediss", "redis+socket", "amqp", "amqps", "pyamqp"}


ROLES = ("producer", "operator", "metrics")
_KEY_ENTRY = re.compile(r"([A-Za-z0-9_.-]{1,64})(?::([a-z]+))?=sha256:([0-9a-f]{64})")


def key_digest(key: str) -> str:
    """What ORDERRELAY_API_KEYS holds for a key: keys are long random strings, so one SHA-256 is enough."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_entry(name: str, key: str, role: str = "producer") -> str:
    """The ORDERRELAY_API_KEYS entry for a key: its name, its role, and its hash."""
    return f"{name}{'' if role == 'producer' else ':' + role}=sha256:{key_digest(key)}"


def find_key(keys: tuple[ApiKey, ...], offered: str) -> ApiKey | None:
    """The configured key an offered one is, compared in constant time against every entry."""
    digest = key_digest(offered)
    found = None
    for key in keys:
        if hmac.compare_digest(digest, key.digest):
            found = key
    return found


def _broker_url(value: str) -> None:
    if urlsplit(value).scheme not in BROKER_SCHEMES:
        raise ValidationError(f"Not a broker URL; the scheme must be one of {sorted(BROKER_SCHEMES)}.")


def _database_url(value: str) -> None:
    import psycopg  # here, not above: a producer reads its settings without a database driver

    try:
        psycopg.conninfo.conninfo_to_dict(value)
    except psycopg.ProgrammingError as exc:
        raise ValidationError(f"Not a PostgreSQL connection string: {exc}") from None


def _fernet_keys(values: list[str]) -> None:
    if not values:
        raise ValidationError("At least one Fernet key is needed.")
    for number, key in enumerate(values, 1):
        try:
            Fernet(key)
        except ValueError:
            raise ValidationError(f"Key {number} is not a Fernet key (32 url-safe base64-encoded bytes).") from None


DAY = 86400.0

# The variables with a default, ORDERRELAY_<FIELD> each, the default the field's (orderrelay.foundation.options):
# field -> (how it is read, its check). Every number has a floor and a ceiling (and marshmallow's Float refuses "inf",
# "nan" and "1e400"), so a value no code below expects is refused at start-up, by name, not met later as an overflow.
OPTIONAL: dict[str, tuple] = {
    "db_pool_size": ("int", Range(min=1, max=200)),
    "http_connect_timeout": ("float", Range(min=0.1, max=120)),
    "http_read_timeout": ("float", Range(min=0.1, max=600)),
    "http_max_connections": ("int", Range(min=1, max=10_000)),
    "max_attempts": ("int", Range(min=1, max=100)),
    "backoff_base": ("float", Range(min=0, max=3600)),
    "backoff_max": ("float", Range(min=0, max=DAY)),
    "countdown_horizon": ("float", Range(min=0, max=3600)),
    "lease_seconds": ("float", Range(min=3, max=3600)),
    "sweep_interval": ("float", Range(min=0.5, max=3600)),
    "follow_up_interval": ("float", Range(min=1, max=DAY)),
    "follow_up_deadline": ("float", Range(min=1, max=365 * DAY)),
    "requeue_grace": ("float", Range(min=1, max=DAY)),
    "retry_rounds": ("int", Range(min=0, max=100)),
    "retry_round_interval": ("float", Range(min=1, max=30 * DAY)),
    "max_in_flight": ("int", Range(min=1, max=100_000)),
    "breaker_failures": ("int", Range(min=1, max=10_000)),
    "breaker_cooldown": ("float", Range(min=0.1, max=3600)),
    "visibility_timeout": ("float", Range(min=10, max=DAY)),
    "log_level": ("str", OneOf(["DEBUG", "INFO", "WARNING", "ERROR"])),
    "log_format": ("str", OneOf(["text", "json"])),
    "api_max_body": ("int", Range(min=1_000, max=50_000_000)),
    "card_retention": ("float", Range(min=0, max=3650 * DAY)),
    "notify_allow_http": ("bool", None),
    "notify_deadline": ("float", Range(min=1, max=30 * DAY)),
    "notify_sweep_interval": ("float", Range(min=0.5, max=3600)),
    "notify_timeout": ("float", Range(min=0.5, max=60)),
}


def load_settings() -> Settings:
    """Read and check every variable; raise ConfigError naming all the bad ones."""
    env = Env(eager=False, expand_vars=False)
    with env.prefixed(PREFIX):
        enabled = env.list("PROVIDERS", validate=_known_providers)
        values = dict(
            broker_url=env.str("BROKER_URL", validate=_broker_url),
            database_url=env.str("DATABASE_URL", validate=_database_url),
            fernet_keys=env.list("FERNET_KEYS", validate=_fernet_keys),
            api_keys=env.list("API_KEYS", [], validate=_api_keys),
            metrics_port=env.int("METRICS_PORT", None, validate=Range(min=1, max=65535)),
            notify_secret=env.str("NOTIFY_SECRET", None, validate=lambda s: len(s) >= 16 or _fail("16+ characters")),
            notify_default=env.str("NOTIFY_DEFAULT_URL", None, validate=_http_url),
            notify_allow_hosts=env.list("NOTIFY_ALLOW_HOSTS", [], validate=_hosts),
            notify_tasks=env.list("NOTIFY_TASKS", [], validate=_tasks),
            rate_limits=env.list("RATE_LIMITS", [], validate=_rate_limits),
            concurrency_limits=env.list("CONCURRENCY_LIMITS", [], validate=_ceilings),
        )
        values.update(
            (name, getattr(env, kind)(name.upper(), DEFAULTS[name], validate=check))
            for name, (kind, check) in OPTIONAL.items()
        )
        providers = {}
        for provider in _enabled(enabled):
            upper = provider.upper()
            read: dict[str, str] = {}
            for name, default in table.get(provider).SETTINGS.items():
                check = _http_url if name.endswith("_URL") else _path if name.endswith("_PATH") else None
                args = (f"{upper}_{name}",) if default is None else (f"{upper}_{name}", default)
                read[name.lower()] = env.str(*args, **({"validate": check} if check else {}))
            providers[provider] = ProviderSettings(base_url=read.pop("base_url"), credentials=read)
    try:
        env.seal()
    except EnvValidationError as exc:
        lines = [f"  {name}: {' '.join(msgs)}" for name, msgs in sorted(exc.error_messages.items())]
        raise ConfigError("orderrelay cannot start; fix these environment variables:\n" + "\n".join(lines)) from None
    if values["countdown_horizon"] >= values["visibility_timeout"]:
        raise ConfigError(
            "orderrelay cannot start; fix these environment variables:\n"
            f"  {PREFIX}COUNTDOWN_HORIZON: must be below {PREFIX}VISIBILITY_TIMEOUT, "
            "or Redis redelivers countdown tasks early."
        )
    values["api_keys"] = tuple(_parse_key(entry) for entry in values["api_keys"])
    values["notify_allow_hosts"] = tuple(h.lower().rstrip(".") for h in values["notify_allow_hosts"])
    values["notify_tasks"] = dict(entry.split("=", 1) for entry in values["notify_tasks"])
    values["rate_limits"] = dict(entry.split("=", 1) for entry in values["rate_limits"])
    values["concurrency_limits"] = {k: int(v) for k, v in (e.split("=", 1) for e in values["concurrency_limits"])}
    return Settings(providers=providers, fernet_keys=tuple(values.pop("fernet_keys")), **values)


def _known_providers(values: list[str]) -> None:
    if not values:
        raise ValidationError(
            f"Name the providers this deployment uses, comma-separated: any of {list(table.IDS)}, "
            "or the dotted path of a provider module of your own."
        )
    try:
        ids = table.register(values)
    except ImportError as exc:
        raise ValidationError(str(exc)) from None
    unknown = [v for v in ids if v not in table.REGISTRY]
    if unknown:
        raise ValidationError(f"Unknown provider ids {unknown}; known: {list(table.REGISTRY)}.")


def _enabled(entries: list[str] | None) -> list[str]:
    """The ids of ORDERRELAY_PROVIDERS's entries that are known (the unknown ones are reported already)."""
    try:
        return [v for v in table.register(entries or ()) if v in table.REGISTRY]
    except ImportError:
        return []


def provider_entries() -> list[str]:
    """ORDERRELAY_PROVIDERS alone, its modules registered: for processes that read no other setting (the sandbox,
    which serves every registered provider). Empty when unset."""
    env = Env(eager=False, expand_vars=False)
    with env.prefixed(PREFIX):
        entries = env.list("PROVIDERS", [])
    try:
        env.seal()
        table.register(entries)
    except (EnvValidationError, ImportError) as exc:
        raise ConfigError(f"{PREFIX}PROVIDERS: {exc}") from None
    return entries


def _fail(message: str) -> bool:
    raise ValidationError(message)


def _api_keys(values: list[str]) -> None:
    bad = [entry.split("=", 1)[0][:20] for entry in values if not _valid_key(entry)]
    if bad:
        raise ValidationError(
            f"Entries {bad} are not NAME[:ROLE]=sha256:<64 hex digits> with ROLE one of {list(ROLES)}: keys are "
            "configured by their hash, never in clear (`orderrelay keygen api-key NAME` makes one)."
        )
    names = [entry.split("=", 1)[0].split(":")[0] for entry in values]
    if len(set(names)) != len(names):
        raise ValidationError("Each key needs a name of its own.")


def _valid_key(entry: str) -> bool:
    match = _KEY_ENTRY.fullmatch(entry)
    return bool(match) and (match[2] or "producer") in ROLES


def _parse_key(entry: str) -> ApiKey:
    match = _KEY_ENTRY.fullmatch(entry)
    return ApiKey(match[1], match[2] or "producer", match[3])


def _hosts(values: list[str]) -> None:
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", value):
                raise ValidationError(f"{value!r} is neither a host name nor an address or network.") from None


def _tasks(values: list[str]) -> None:
    for value in values:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]{0,199}=[A-Za-z0-9_.:-]{1,200}", value):
            raise ValidationError(f"{value!r} is not TASK=QUEUE (the task a notification may be, and its queue).")
        queue = value.split("=", 1)[1]
        if queue in ("orders", "notifications") or queue.startswith("orders."):  # orderrelay's queues
            # orderrelay's own workers would take the message and discard it as a task they do not know
            raise ValidationError(f"{value!r}: {queue} is orderrelay's own queue; name the producer's.")


def _rate_limits(values: list[str]) -> None:
    seen: set[str] = set()
    for value in values:
        provider, _, rate = value.partition("=")
        if provider not in table.REGISTRY:
            raise ValidationError(f"{value!r}: {provider!r} is not a provider: one of {list(table.REGISTRY)}.")
        try:
            parse_rate(rate)
        except ValueError as exc:
            raise ValidationError(
                f"{value!r} is not PROVIDER=RATE (a rate such as 20/second or 600/minute, :BURST after it if any): "
                f"{exc}."
            ) from None
        _once(provider, seen, value)


def _ceilings(values: list[str]) -> None:
    seen: set[str] = set()
    for value in values:
        provider, _, number = value.partition("=")
        if (
            provider not in table.REGISTRY
            or not re.fullmatch(r"[0-9]{1,6}", number)
            or not 1 <= int(number) <= MAX_CEILING
        ):
            raise ValidationError(
                f"{value!r} is not PROVIDER=N (a provider's ceiling of calls in flight, 1 to {MAX_CEILING}, in ASCII "
                "digits)."
            )
        _once(provider, seen, value)


def _once(provider: str, seen: set[str], value: str) -> None:
    if provider in seen:
        raise ValidationError(f"{value!r}: {provider} is named twice; give each provider one limit.")
    seen.add(provider)


def _path(value: str) -> None:
    if not value.startswith("/"):
        raise ValidationError("Must start with /.")


def _http_url(value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValidationError("Not an http(s) URL.")


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read on first use and never again."""
    return load_settings()


def _read_some(read, who: str):
    """``read(env)`` on ORDERRELAY_* variables, with every bad one named in one ConfigError (``who`` needs them)."""
    env = Env(eager=False, expand_vars=False)
    with env.prefixed(PREFIX):
        values = read(env)
    try:
        env.seal()
    except EnvValidationError as exc:
        lines = [f"  {name}: {' '.join(msgs)}" for name, msgs in sorted(exc.error_messages.items())]
        raise ConfigError(f"{who} needs these environment variables:\n" + "\n".join(lines)) from None
    return values


@functools.cache
def get_database_url() -> str:
    """ORDERRELAY_DATABASE_URL alone: what ``migrate``, ``show`` and ``list`` need, read and checked once."""
    return _read_some(lambda env: env.str("DATABASE_URL", validate=_database_url), "orderrelay")


@dataclass(frozen=True)
class ProducerSettings:
    """What a checkout process needs to send jobs: the broker and the card-sealing keys."""

    broker_url: str = field(repr=False)
    fernet_keys: tuple[str, ...] = field(repr=False)


@functools.cache
def get_producer_settings() -> ProducerSettings:
    """ORDERRELAY_BROKER_URL and ORDERRELAY_FERNET_KEYS, read once; ConfigError names what is wrong. The modules
    ORDERRELAY_PROVIDERS names join the provider table (their card fields are sealed like the built-in ones')."""
    provider_entries()
    broker_url, keys = _read_some(
        lambda env: (env.str("BROKER_URL", validate=_broker_url), env.list("FERNET_KEYS", validate=_fernet_keys)),
        "the orderrelay producer",
    )
    return ProducerSettings(broker_url, tuple(keys))
