"""Rate limits per client id: one token bucket each, so a busy client never slows another.

Buckets live in the API process. With N replicas behind a balancer a client gets up to N times the rate;
size ``api_rate_per_s`` for one replica's share (a shared Redis bucket is the next step if that matters).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second refill up to ``burst``; each request takes one."""

    rate: float
    burst: int
    tokens: float
    stamp: float

    def take(self, now: float) -> float:
        """0.0 if a request may go now; else the seconds until one token is back (nothing is taken)."""
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a rate limit needs rate_per_s > 0 and burst >= 1")
        self._rate = rate_per_s
        self._burst = burst
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, client_id: str) -> int:
        """0 if ``client_id`` may proceed; else the whole seconds to put in ``Retry-After`` (at least 1)."""
        now = self._clock()
        bucket = self._buckets.get(client_id)
        if bucket is None:
            bucket = self._buckets[client_id] = TokenBucket(self._rate, self._burst, float(self._burst), now)
        wait = bucket.take(now)
        return 0 if wait == 0.0 else max(1, math.ceil(wait))
