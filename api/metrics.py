"""Prometheus metrics computed from Postgres at scrape time, so they are right however many workers run."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import CollectorRegistry

BUCKETS_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
_buckets = ", ".join(f"count(*) FILTER (WHERE latency_ms <= {b}) AS le_{b}" for b in BUCKETS_MS)

ORDERS = "SELECT coalesce(provider, '') AS provider, status, count(*) AS n FROM orders GROUP BY 1, 2"
ATTEMPTS = """
SELECT o.provider, coalesce(a.outcome, 'running') AS outcome, count(*) AS n
FROM attempts a JOIN orders o ON o.id = a.order_id GROUP BY 1, 2
"""
LATENCY = f"""
SELECT o.provider, count(*) AS n, coalesce(sum(latency_ms), 0) AS total, {_buckets}
FROM attempts a JOIN orders o ON o.id = a.order_id WHERE latency_ms IS NOT NULL GROUP BY 1
"""  # noqa: S608 - the bucket bounds are constants
WAITING = """
SELECT count(*) AS n, extract(epoch FROM min(due_at)) AS oldest_due FROM orders WHERE status = 'waiting'
"""


class PostgresCollector:
    """Orders by provider and status, attempts by outcome, provider latency, orders waiting."""

    def __init__(self, pool):
        self.pool = pool

    def collect(self):
        with self.pool.connection() as conn:
            orders = conn.execute(ORDERS).fetchall()
            attempts = conn.execute(ATTEMPTS).fetchall()
            latency = conn.execute(LATENCY).fetchall()
            waiting = conn.execute(WAITING).fetchone()
        family = GaugeMetricFamily("orderrelay_orders", "Orders by provider and status", labels=["provider", "status"])
        for row in orders:
            family.add_metric([row["provider"], row["status"]], row["n"])
        yield family
        family = CounterMetricFamily("orderrelay_attempts", "Provider calls by outcome", labels=["provider", "outcome"])
        for row in attempts:
            family.add_metric([row["provider"], row["outcome"]], row["n"])
        yield family
        family = HistogramMetricFamily(
            "orderrelay_provider_latency_seconds", "Provider call latency", labels=["provider"]
        )
        for row in latency:
            buckets = [(str(b / 1000), row[f"le_{b}"]) for b in BUCKETS_MS] + [("+Inf", row["n"])]
            family.add_metric([row["provider"]], buckets, sum_value=float(row["total"]) / 1000)
        yield family
        yield GaugeMetricFamily("orderrelay_orders_waiting", "Orders waiting for their due time", value=waiting["n"])
        yield GaugeMetricFamily(
            "orderrelay_oldest_due_timestamp_seconds",
            "Due time of the oldest waiting order (Unix time; 0 when none waits)",
            value=float(waiting["oldest_due"] or 0),
        )


def registry(pool) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(PostgresCollector(pool))
    return reg
