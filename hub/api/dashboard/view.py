"""What ``GET /v1/ops/dashboard`` answers: the history turned into panels, as plain JSON.

Pure (history in, dict out), so unit tests check every panel without Kafka. Only names of the hub's own
making and counts leave here: consumer groups, catalogue topics, stages, DLQ reason codes. DLQ reason texts
are left out on purpose: a reason may quote a field of the failed message.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from hub.api.dashboard.history import History, Sample, rate
from hub.topics import (AUDIT_ACCESS, DLQ, EMR_RAW, EVENTS_CANONICAL, EVENTS_CITIZEN, HL7V2_RAW, OUT_ALL,
                        RECORD_CHANGES, Topic)

# Each stage's throughput is the growth of the topic it writes (its output topic's end offsets).
STAGE_OUTPUTS: tuple[tuple[str, Topic], ...] = (
    ("ingest", HL7V2_RAW), ("import", EMR_RAW), ("translate", EVENTS_CANONICAL), ("identity", EVENTS_CITIZEN),
    ("record", RECORD_CHANGES), ("fanout", OUT_ALL), ("dead letters", DLQ), ("audit", AUDIT_ACCESS),
)
OUTPUT_TOPICS = tuple(topic.name for _, topic in STAGE_OUTPUTS)
RATE_SPAN_S = 10.0  # the "now" rate is averaged over about this long, so one slow sample does not make it jump
SUBSCRIPTIONS_NOTE = "no subscriptions configured"  # until fan-out subscriptions exist (issue 7)
REVIEW_QUEUE_NOTE = "not built yet"  # until identity's review queue exists (issue 5)


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="seconds")


def _reference(samples: list[Sample], span_s: float) -> Sample | None:
    """The sample about ``span_s`` before the newest (the oldest one if the history is shorter)."""
    if len(samples) < 2:
        return None
    newest = samples[-1]
    for sample in reversed(samples[:-1]):
        if newest.at - sample.at >= span_s:
            return sample
    return samples[0]


def lag_panel(samples: list[Sample]) -> dict[str, Any]:
    """A line per consumer group (points ``[t, lag, lag_seconds]``) and each group's latest value."""
    groups = sorted({g for s in samples for g in s.groups})
    series = [{"group": g, "points": [[round(s.at, 3), s.groups[g].lag, s.groups[g].lag_seconds]
                                      for s in samples if g in s.groups]} for g in groups]
    latest = samples[-1].groups if samples else {}
    current = [{"group": g, "lag": latest[g].lag, "lag_seconds": latest[g].lag_seconds}
               for g in groups if g in latest]
    return {"groups": groups, "series": series, "current": current}


def throughput_panel(samples: list[Sample], span_s: float = RATE_SPAN_S) -> list[dict[str, Any]]:
    """Per stage: records per second now (over ``span_s``), a rate series, and the topic's end offset."""
    reference = _reference(samples, span_s)
    rows = []
    for stage, topic in STAGE_OUTPUTS:
        newest = samples[-1] if samples else None
        per_s = rate(reference, newest, topic.name) if reference and newest else None
        series = [[round(b.at, 3), r] for a, b in zip(samples, samples[1:])
                  if (r := rate(a, b, topic.name)) is not None]
        rows.append({"stage": stage, "topic": topic.name, "per_s": None if per_s is None else round(per_s, 3),
                     "total": newest.topic_ends.get(topic.name) if newest else None, "series": series})
    return rows


def dlq_panel(history: History) -> dict[str, Any]:
    """Entries by stage and reason code, most first; ``complete`` is False until hub.dlq was read to its end."""
    rows = sorted(history.dlq.items(), key=lambda item: (-item[1], item[0]))
    return {"total": sum(history.dlq.values()), "complete": history.dlq_complete,
            "by_reason": [{"stage": stage, "code": code, "entries": n} for (stage, code), n in rows]}


def render(history: History, now: float | None = None) -> dict[str, Any]:
    """Every panel of the dashboard, from what this replica has sampled."""
    now = time.time() if now is None else now
    samples = list(history.samples)
    latest = history.latest
    return {
        "generated_at": _iso(now),
        "sampler": {"interval_s": history.interval_s, "window_s": history.window_s, "samples": len(samples),
                    "last_sample_at": _iso(latest.at) if latest else None, "error": history.error,
                    "error_since": _iso(history.error_since) if history.error_since else None},
        "lag": lag_panel(samples),
        "throughput": throughput_panel(samples),
        "dlq": dlq_panel(history),
        "subscriptions": {"status": "not-configured", "message": SUBSCRIPTIONS_NOTE, "items": []},
        "review_queue": {"status": "not-built", "message": REVIEW_QUEUE_NOTE, "size": None},
    }
