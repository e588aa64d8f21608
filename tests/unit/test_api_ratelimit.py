"""Rate limits: one token bucket per client id, with a whole-second Retry-After."""

from __future__ import annotations

import pytest

from hub.api.ratelimit import RateLimiter, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestTokenBucket:
    def test_a_full_bucket_serves_its_burst_then_says_how_long_to_wait(self) -> None:
        bucket = TokenBucket(rate=2.0, burst=3, tokens=3.0, stamp=0.0)
        assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
        assert bucket.take(0.0) == pytest.approx(0.5)

    def test_it_refills_at_the_rate_up_to_the_burst(self) -> None:
        bucket = TokenBucket(rate=2.0, burst=3, tokens=0.0, stamp=0.0)
        assert bucket.take(0.5) == 0.0  # one token back after 0.5 s
        assert bucket.take(0.5) == pytest.approx(0.5)
        bucket.take(100.0)  # a long pause refills only up to the burst
        assert bucket.tokens == pytest.approx(2.0)

    def test_a_refused_request_takes_nothing(self) -> None:
        bucket = TokenBucket(rate=1.0, burst=1, tokens=0.0, stamp=0.0)
        assert bucket.take(0.0) > 0 and bucket.take(0.0) > 0
        assert bucket.take(1.0) == 0.0


class TestRateLimiter:
    def test_retry_after_is_whole_seconds_at_least_one(self) -> None:
        clock = FakeClock()
        limiter = RateLimiter(rate_per_s=10.0, burst=1, clock=clock)
        assert limiter.check("bv-cho-ray") == 0
        assert limiter.check("bv-cho-ray") == 1  # 0.1 s rounds up to 1
        slow = RateLimiter(rate_per_s=0.25, burst=1, clock=clock)
        slow.check("a")
        assert slow.check("a") == 4

    def test_one_clients_limit_does_not_touch_another(self) -> None:
        clock = FakeClock()
        limiter = RateLimiter(rate_per_s=1.0, burst=2, clock=clock)
        assert [limiter.check("bv-115") for _ in range(3)] == [0, 0, 1]
        assert [limiter.check("bv-tu-du") for _ in range(2)] == [0, 0]

    def test_time_passing_lets_the_client_back_in(self) -> None:
        clock = FakeClock()
        limiter = RateLimiter(rate_per_s=1.0, burst=1, clock=clock)
        limiter.check("a")
        assert limiter.check("a") == 1
        clock.now += 1.0
        assert limiter.check("a") == 0

    @pytest.mark.parametrize("rate, burst", [(0.0, 1), (-1.0, 5), (1.0, 0)])
    def test_nonsense_limits_are_refused(self, rate: float, burst: int) -> None:
        with pytest.raises(ValueError):
            RateLimiter(rate, burst)
