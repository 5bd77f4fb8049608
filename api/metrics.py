"""Prometheus metrics read from Postgres at scrape time, so they are right however many workers run.

They come from the totals Postgres maintains (migration 0007), never from a scan of orders or attempts: a scrape
costs the same at ten orders or ten million.
"""

from __future__ import annotations

from collections import defaultdict

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import CollectorRegistry

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


def registry(pool) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(PostgresCollector(pool))
    return reg
