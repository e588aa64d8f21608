"""The retry schedule (exponential, capped, equal jitter) and what happens to a delivery that keeps failing,
is refused, or succeeds late — with a recorded sleep instead of waiting."""

from __future__ import annotations

import pytest

from hub.fanout.config import Retry
from hub.fanout.retry import backoff_s, schedule, with_retries
from hub.fanout.sinks import Rejected, Retryable

RETRY = Retry(max_attempts=6, first_s=0.5, max_s=4.0)


class TestSchedule:
    @pytest.mark.parametrize("attempt, low, high", [(1, 0.25, 0.5), (2, 0.5, 1.0), (3, 1.0, 2.0), (4, 2.0, 4.0),
                                                    (5, 2.0, 4.0), (30, 2.0, 4.0)])
    def test_doubles_up_to_the_cap_with_at_least_half_the_step(self, attempt: int, low: float, high: float) -> None:
        assert backoff_s(RETRY, attempt, lambda: 0.0) == low
        assert backoff_s(RETRY, attempt, lambda: 1.0) == high
        assert low <= backoff_s(RETRY, attempt) <= high

    def test_schedule_lists_one_wait_per_retry(self) -> None:
        assert schedule(RETRY) == [(0.25, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, 4.0), (2.0, 4.0)]


class Flaky:
    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def send(self) -> None:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class TestWithRetries:
    async def test_delivered_after_failures_with_growing_waits(self) -> None:
        flaky, sleeps, retried = Flaky(Retryable("500"), Retryable("500"), Retryable("timeout")), Sleeps(), []
        outcome = await with_retries(flaky.send, RETRY, lambda n, r: retried.append((n, r)), sleeps, lambda: 1.0)
        assert (outcome.delivered, outcome.attempts, flaky.calls) == (True, 4, 4)
        assert sleeps.waits == [0.5, 1.0, 2.0] and retried == [(1, "500"), (2, "500"), (3, "timeout")]

    async def test_gives_up_after_max_attempts(self) -> None:
        flaky, sleeps = Flaky(*[Retryable("503") for _ in range(10)]), Sleeps()
        outcome = await with_retries(flaky.send, RETRY, sleep=sleeps, rand=lambda: 0.0)
        assert (outcome.delivered, outcome.attempts, flaky.calls, len(sleeps.waits)) == (False, 6, 6, 5)
        assert outcome.reason == "gave up after 6 attempts: 503" and not outcome.rejected

    async def test_a_refusal_is_not_retried(self) -> None:
        flaky, sleeps = Flaky(Rejected("webhook answered 422")), Sleeps()
        outcome = await with_retries(flaky.send, RETRY, sleep=sleeps)
        assert (outcome.delivered, outcome.rejected, flaky.calls, sleeps.waits) == (False, True, 1, [])
        assert "422" in outcome.reason

    async def test_an_unexpected_error_is_not_swallowed(self) -> None:
        with pytest.raises(KeyError):
            await with_retries(Flaky(KeyError("bug")).send, RETRY, sleep=Sleeps())
