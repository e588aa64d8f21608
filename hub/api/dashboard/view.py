"""What ``GET /v1/ops/dashboard`` answers: the history turned into panels, as plain JSON.

Pure (history in, dict out), so unit tests check every panel without Kafka. Only names of the hub's own
making and counts leave here: consumer groups, catalogue topics, stages, DLQ reason codes, subscription names.
DLQ reason texts are left out on purpose: a reason may quote a field of the failed message.
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
SUBSCRIPTIONS_NOTE = "no subscriptions configured"
BEHIND = 1000  # a subscription this many changes behind shows as "behind" (it may just be catching up)


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


def subscription_health(item: dict[str, Any]) -> str:
    """One word per subscription, worst first: paused, dead letters, not started, behind, ok. A warehouse
    subscription is delivered by the warehouse role: its lag is that role's group (hssk-warehouse) on the lag
    panel, which the subscription status does not measure."""
    if item.get("paused"):
        return "paused"
    if item.get("dlq_records"):
        return "dead letters"
    if item.get("lag") is None:
        return "warehouse role" if item["delivery"]["kind"] == "warehouse" else "not started"
    return "behind" if item["lag"] >= BEHIND else "ok"


def subscriptions_panel(history: History) -> dict[str, Any]:
    """Each subscription's delivery, lag, dead letters and health word, as of the last reading.

    Only what the page shows leaves here: no webhook URL, description or filter."""
    read = history.subscriptions
    if read is None:
        message = history.subscriptions_error or "not read yet"
        return {"status": "unavailable" if history.subscriptions_error else "waiting", "message": message, "items": []}
    items = [{"name": i["name"], "delivery": i["delivery"]["kind"], "format": i["format"], "lag": i.get("lag"),
              "paused": i.get("paused"), "dlq_records": i.get("dlq_records"), "health": subscription_health(i)}
             for i in read]
    status = "stale" if history.subscriptions_error else "ok" if items else "not-configured"
    message = history.subscriptions_error or ("" if items else SUBSCRIPTIONS_NOTE)
    return {"status": status, "message": message, "items": items,
            "read_at": _iso(history.subscriptions_at) if history.subscriptions_at else None}


def review_queue_panel(history: History) -> dict[str, Any]:
    """Open identity review cases (pairs a data steward decides with ``hub review`` or the API)."""
    if history.review_queue is None:
        message = history.review_queue_error or "not read yet"
        return {"status": "unavailable" if history.review_queue_error else "waiting", "message": message, "size": None}
    return {"status": "stale" if history.review_queue_error else "ok", "message": history.review_queue_error or "",
            "size": history.review_queue,
            "read_at": _iso(history.review_queue_at) if history.review_queue_at else None}


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
        "subscriptions": subscriptions_panel(history),
        "review_queue": review_queue_panel(history),
    }
