"""Prometheus metrics of the stream roles (translator, identity, record, fanout), served per role.

Labels are the stage, the DLQ reason code (the stable codes of ``hub.errors``) and catalogue topic names:
bounded sets that name no person. Counts are taken once a batch is done (outputs durable, ``after_batch``
run), so a batch that fails and is redelivered is not counted twice.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from hub.errors import HubError
from hub.logging import get_logger
from hub.settings import Settings

log = get_logger("metrics")

EVENTS = Counter("hssk_stage_events", "Events a stage has finished (dead-lettered ones included), by stage",
                 ["stage"])
FAILURES = Counter("hssk_stage_failures", "Events a stage sent to hub.dlq, by stage and DLQ reason code",
                   ["stage", "code"])
OUTPUTS = Counter("hssk_stage_outputs", "Records a stage wrote, by stage and topic", ["stage", "topic"])
BATCH_SECONDS = Histogram(
    "hssk_stage_batch_seconds", "Time to process one batch: the step, every send durable, after_batch",
    ["stage"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
BATCH_EVENTS = Histogram("hssk_stage_batch_events", "Events per batch", ["stage"],
                         buckets=(1, 5, 10, 25, 50, 100, 250, 500))
IDENTITY_OUTCOMES = Counter("hssk_identity_outcomes", "Events the identity stage resolved, by outcome "
                            "(link, review, new, dlq)", ["outcome"])
REVIEW_QUEUE = Gauge("hssk_identity_review_queue", "Open identity review cases waiting for a data steward")


def identity_outcomes(counts: Mapping[str, int]) -> None:
    """Count a finished batch's identity outcomes (a bounded label set: link, review, new, dlq)."""
    for outcome, n in counts.items():
        IDENTITY_OUTCOMES.labels(outcome=outcome).inc(n)


def failure_code(exc: BaseException) -> str:
    """The DLQ reason code of a failure: the stage code of a HubError, ``internal`` for anything else."""
    return exc.code if isinstance(exc, HubError) else "internal"


class StageMetrics:
    """One stage's metric children, looked up once: ``labels()`` per batch would take a lock and build keys."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._events = EVENTS.labels(stage=stage)
        self._seconds = BATCH_SECONDS.labels(stage=stage)
        self._sizes = BATCH_EVENTS.labels(stage=stage)
        self._failures: dict[str, Any] = {}
        self._outputs: dict[str, Any] = {}

    def batch_done(self, size: int, failure_codes: list[str], topics: list[str], seconds: float) -> None:
        """Count a finished batch: its events, its dead letters by code, its outputs by topic, its time."""
        self._events.inc(size)
        self._sizes.observe(size)
        self._seconds.observe(seconds)
        for code, n in Tally(failure_codes).items():
            child = self._failures.get(code)
            if child is None:
                child = self._failures[code] = FAILURES.labels(stage=self.stage, code=code)
            child.inc(n)
        for topic, n in Tally(topics).items():
            child = self._outputs.get(topic)
            if child is None:
                child = self._outputs[topic] = OUTPUTS.labels(stage=self.stage, topic=topic)
            child.inc(n)


def serve(role: str, settings: Settings) -> int:
    """Serve /metrics of this process on the role's port; return the port (0: off or not possible).

    A port already taken is logged and the role keeps processing: losing metrics must not stop the data.
    """
    port = settings.metrics_port(role)
    if not port:
        return 0
    try:
        start_http_server(port, addr=settings.metrics_host)
    except OSError as exc:
        log.error("metrics port not available; serving no metrics", role=role, port=port, error=str(exc))
        return 0
    log.info("metrics served", role=role, port=port)
    return port
