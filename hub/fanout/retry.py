"""Retrying one delivery: exponential backoff with jitter, a maximum of attempts, then the dead-letter topic.

Wait before attempt n+1 (n = 1, 2, ...): ``min(max_s, first_s * 2**(n-1))`` scaled by a random factor in
[0.5, 1] ("equal jitter": never less than half the step, so a burst of failures spreads out without waits
collapsing to zero). The sleep and the random source are parameters, so the schedule is unit-tested exactly.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Awaitable, Callable

from hub.fanout.config import Retry
from hub.fanout.sinks import Rejected, Retryable

Send = Callable[[], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]
OnRetry = Callable[[int, str], None]


def backoff_s(retry: Retry, attempt: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    step = min(retry.max_s, retry.first_s * 2 ** (attempt - 1))
    return step * (0.5 + 0.5 * rand())


def schedule(retry: Retry) -> list[tuple[float, float]]:
    """(shortest, longest) wait before each retry: what ``hub subscriptions show`` prints."""
    return [(backoff_s(retry, n, lambda: 0.0), backoff_s(retry, n, lambda: 1.0)) for n in range(1, retry.max_attempts)]


@dataclass(frozen=True, slots=True)
class Outcome:
    delivered: bool
    attempts: int
    reason: str = ""  # why it was given up (for the DLQ entry)
    rejected: bool = False  # the subscriber refused it (4xx): not retried


async def with_retries(send: Send, retry: Retry, on_retry: OnRetry | None = None, sleep: Sleep = asyncio.sleep,
                       rand: Callable[[], float] = random.random) -> Outcome:
    """Attempt ``send`` until it succeeds, is rejected, or ``retry.max_attempts`` are spent."""
    attempt = 0
    while True:
        attempt += 1
        try:
            await send()
            return Outcome(True, attempt)
        except Rejected as exc:
            return Outcome(False, attempt, f"rejected by the subscriber: {exc.reason}", rejected=True)
        except Retryable as exc:
            if attempt >= retry.max_attempts:
                return Outcome(False, attempt, f"gave up after {attempt} attempts: {exc.reason}")
            if on_retry is not None:
                on_retry(attempt, exc.reason)
            await sleep(backoff_s(retry, attempt, rand))
