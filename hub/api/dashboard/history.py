"""The dashboard's memory: samples of lag and topic end offsets in a bounded ring buffer, plus the latest
subscription states and review-queue size.

Pure data, no I/O: the sampler appends, the view reads. The buffer holds ``window_s / interval_s`` samples
(10 minutes at one sample per 2 s), so memory stays fixed however long the API runs. Every name kept here is
of the hub's own making (consumer groups, catalogue topics, stages, DLQ reason codes): no personal data.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class GroupLag:
    """One consumer group at one moment: messages behind over all its partitions, and the oldest unread's age."""

    lag: int
    lag_seconds: float | None  # None: some partition's age could not be read


@dataclass(frozen=True)
class Sample:
    """What the sampler saw at ``at`` (seconds since the epoch)."""

    at: float
    groups: dict[str, GroupLag] = field(default_factory=dict)
    topic_ends: dict[str, int] = field(default_factory=dict)  # sum of log end offsets over the topic's partitions


class History:
    """The last ``window_s`` seconds of samples, oldest first, plus the DLQ tally and the last error."""

    def __init__(self, window_s: float = 600.0, interval_s: float = 2.0) -> None:
        if interval_s <= 0 or window_s < interval_s:
            raise ValueError("the window must hold at least one sampling interval")
        self.window_s = window_s
        self.interval_s = interval_s
        self.samples: deque[Sample] = deque(maxlen=max(2, int(window_s / interval_s) + 1))
        self.dlq: dict[tuple[str, str], int] = {}  # (stage, code) -> entries read so far
        self.dlq_complete = False  # True once the tally has read hub.dlq up to its end at least once
        self.error: str | None = None  # why the last sampling failed; None when it worked
        self.error_since: float | None = None
        # The latest reading of the subscriptions (hub.fanout.admin.status) and of the review queue (the MPI's
        # open cases): current values only, no history. None until read; the *_error says why it failed.
        self.subscriptions: list[dict] | None = None
        self.subscriptions_at: float | None = None
        self.subscriptions_error: str | None = None
        self.review_queue: int | None = None
        self.review_queue_at: float | None = None
        self.review_queue_error: str | None = None

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)
        self.error = self.error_since = None

    def failed(self, reason: str, at: float) -> None:
        """Note a failed sampling; the samples already kept stay (a gap shows on the charts)."""
        if self.error_since is None:
            self.error_since = at
        self.error = reason

    def read_subscriptions(self, items: list[dict], at: float) -> None:
        self.subscriptions, self.subscriptions_at, self.subscriptions_error = items, at, None

    def read_review_queue(self, size: int, at: float) -> None:
        self.review_queue, self.review_queue_at, self.review_queue_error = size, at, None

    def subscriptions_failed(self, reason: str) -> None:
        """The last good reading stays (shown as of its time) with the reason it is not fresher."""
        self.subscriptions_error = reason

    def review_queue_failed(self, reason: str) -> None:
        self.review_queue_error = reason

    def count_dlq(self, stage: str, code: str, n: int = 1) -> None:
        self.dlq[(stage, code)] = self.dlq.get((stage, code), 0) + n

    @property
    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None


def rate(older: Sample, newer: Sample, topic: str) -> float | None:
    """Records per second written to ``topic`` between two samples; None when either did not see it."""
    if topic not in older.topic_ends or topic not in newer.topic_ends or newer.at <= older.at:
        return None
    return max(0, newer.topic_ends[topic] - older.topic_ends[topic]) / (newer.at - older.at)
