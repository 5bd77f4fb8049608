"""Prometheus metrics read from Postgres at scrape time, so they are right however many workers run.

They come from the totals Postgres maintains (migration 0007), never from a scan of orders or attempts: a scrape
costs the same at ten orders or ten million.
"""

from __future__ import annotations

from collections import defaultdict

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import CollectorRegistry

from orderrelay.core.limits import view as limits_view
from orderrelay.store import orders as store


class PostgresCollector:
    """Orders by provider and status, attempts by outcome, provider latency, orders waiting."""

    def __init__(self, pool):
        self.pool = pool

    def collect(self):
        with self.pool.connection() as conn:
            orders = store.counts(conn)
            bounds, attempts = store.attempt_totals(conn)
            oldest_due = store.oldest_due(conn)
        family = GaugeMetricFamily("orderrelay_orders", "Orders by provider and status", labels=["provider", "status"])
        for row in orders:
            family.add_metric([row["provider"] or "", row["status"]], row["n"])
        yield family
        by_outcome: dict[tuple[str, str], int] = defaultdict(int)
        by_bucket: dict[str, dict[float, int]] = defaultdict(lambda: defaultdict(int))
        total_ms: dict[str, float] = defaultdict(float)
        for row in attempts:
            by_outcome[row["provider"], row["outcome"]] += row["n"]
            if row["le"] >= 0:  # a latency was recorded
                by_bucket[row["provider"]][row["le"]] += row["n"]
                total_ms[row["provider"]] += row["total_ms"]
        family = CounterMetricFamily("orderrelay_attempts", "Provider calls by outcome", labels=["provider", "outcome"])
        for (provider, outcome), n in sorted(by_outcome.items()):
            family.add_metric([provider, outcome], n)
        yield family
        family = HistogramMetricFamily(
            "orderrelay_provider_latency_seconds", "Provider call latency", labels=["provider"]
        )
        for provider, counts in sorted(by_bucket.items()):
            buckets, below = [], 0
            for bound in bounds:
                below += counts.get(bound, 0)
                buckets.append((str(bound / 1000), below))
            buckets.append(("+Inf", sum(counts.values())))
            family.add_metric([provider], buckets, sum_value=total_ms[provider] / 1000)
        yield family
        waiting = sum(row["n"] for row in orders if row["status"] == "waiting")
        yield GaugeMetricFamily("orderrelay_orders_waiting", "Orders waiting for their due time", value=waiting)
        yield GaugeMetricFamily(
            "orderrelay_oldest_due_timestamp_seconds",
            "Due time of the oldest waiting order (Unix time; 0 when none waits)",
            value=oldest_due.timestamp() if oldest_due else 0.0,
        )


class LimitsCollector:
    """Each provider's shared limits (orderrelay.core.limits): the rate's booking ahead, calls in flight against the
    ceiling and the orders waiting for a seat, any pause (every provider's); and whether Redis answers for them."""

    def __init__(self, settings):
        self.settings = settings

    def collect(self):
        settings = self.settings
        shown = limits_view(
            settings.broker_url, list(settings.providers), settings.rate_limits, settings.concurrency_limits
        )
        readable = GaugeMetricFamily("orderrelay_limits_readable", "1 when Redis answers for the providers' limits")
        readable.add_metric([], 0 if "_" in shown else 1)
        yield readable
        families = {
            "booked_ahead_s": ("orderrelay_limit_booked_ahead_seconds", "How far ahead the rate's turns are taken"),
            "in_flight": ("orderrelay_limit_in_flight", "Calls in flight, every worker's, against the ceiling"),
            "ceiling": ("orderrelay_limit_ceiling", "The ceiling of calls in flight"),
            "paused_for": (
                "orderrelay_limit_paused_seconds",
                "Seconds left of a pause (a provider's, a circuit's, an operator's)",
            ),
            "waiting": ("orderrelay_limit_waiting", "Orders waiting for a seat of the ceiling"),
            "orders_booked": ("orderrelay_limit_orders_booked", "Deferred orders holding a booked turn of the rate"),
        }
        for field, (name, text) in families.items():
            family = GaugeMetricFamily(name, text, labels=["provider"])
            for provider, entry in shown.items():
                if field in entry:
                    family.add_metric([provider], float(entry[field]))
            yield family


def registry(pool, settings=None) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(PostgresCollector(pool))
    if settings is not None:  # every provider may be paused, limited or not
        reg.register(LimitsCollector(settings))
    return reg
