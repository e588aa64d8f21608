"""Prometheus metrics per subscription, served on the fanout role's /metrics port.

Labels are subscription names (configuration, never personal data), fixed result words and partition
numbers. Result words of ``hssk_subscription_deliveries_total``:

    delivered      the subscriber has it (2xx, or Kafka confirmed)
    dead_lettered  refused or out of retries: in dlq.<name>
    filtered       the filter did not select the change
    withheld       a sensitive category the subscription is not entitled to
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELIVERIES = Counter("hssk_subscription_deliveries", "Changes handled by a subscription, by result",
                     ["subscription", "result"])
RETRIES = Counter("hssk_subscription_retries", "Delivery attempts that failed and were retried", ["subscription"])
DLQ = Counter("hssk_subscription_dlq", "Deliveries written to the subscription's dead-letter topic", ["subscription"])
LAG = Gauge("hssk_subscription_lag", "record.changes messages the subscription has still to deliver, by partition",
            ["subscription", "partition"])
PAUSED = Gauge("hssk_subscription_paused", "1 while the subscription is paused", ["subscription"])
DELIVERY_SECONDS = Histogram(
    "hssk_subscription_delivery_seconds", "Time of one delivery, retries included", ["subscription"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
PUSH_LATENCY = Histogram(
    "hssk_healthbook_push_latency_seconds",
    "From a change on record.changes (its Kafka time) to the successful health-book push that carries it",
    ["subscription"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400))
UNPUSHED = Gauge("hssk_healthbook_unpushed_citizens", "Citizens with a change their health book does not show yet",
                 ["subscription"])
STALE = Gauge("hssk_healthbook_stale_citizens",
              "Citizens whose oldest unpushed change is older than the 24-hour freshness target", ["subscription"])


class SubscriptionMetrics:
    """One subscription's metric children, looked up once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._results = {r: DELIVERIES.labels(subscription=name, result=r)
                         for r in ("delivered", "dead_lettered", "filtered", "withheld")}
        self.retries = RETRIES.labels(subscription=name)
        self.dlq = DLQ.labels(subscription=name)
        self.paused = PAUSED.labels(subscription=name)
        self.seconds = DELIVERY_SECONDS.labels(subscription=name)
        self.push_latency = PUSH_LATENCY.labels(subscription=name)
        self.unpushed = UNPUSHED.labels(subscription=name)
        self.stale = STALE.labels(subscription=name)

    def result(self, result: str, n: int = 1) -> None:
        if n:
            self._results[result].inc(n)

    def lag(self, partition: int, value: int) -> None:
        LAG.labels(subscription=self.name, partition=str(partition)).set(value)
