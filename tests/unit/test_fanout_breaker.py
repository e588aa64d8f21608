"""The circuit breaker of a subscription endpoint: opens after failures in a row, fails fast while open, lets one
probe through when due, closes on an answer, and waits longer after each failed probe — on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from hub.fanout.breaker import Breaker
from hub.fanout.config import Retry
from hub.fanout.retry import with_retries
from hub.fanout.sinks import Rejected, Retryable


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Endpoint:
    """Answers as told; counts the calls that really reached it."""

    def __init__(self) -> None:
        self.down = True
        self.calls = 0

    async def send(self) -> None:
        self.calls += 1
        await asyncio.sleep(0)
        if self.down:
            raise Retryable("webhook not reached (ClientConnectorError)")


async def fail(breaker: Breaker, endpoint: Endpoint) -> str:
    with pytest.raises(Retryable) as caught:
        await breaker.call(endpoint.send)
    return caught.value.reason


class TestBreaker:
    async def test_opens_after_the_threshold_and_then_fails_fast_without_calling(self) -> None:
        clock, endpoint = Clock(), Endpoint()
        breaker = Breaker(first_s=1.0, max_s=8.0, threshold=3, clock=clock)
        for _ in range(3):
            await fail(breaker, endpoint)
        assert breaker.is_open and breaker.parked() and endpoint.calls == 3
        reason = await fail(breaker, endpoint)
        assert endpoint.calls == 3 and reason == "circuit open: webhook not reached (ClientConnectorError)"

    async def test_a_success_between_failures_keeps_it_closed(self) -> None:
        clock, endpoint = Clock(), Endpoint()
        breaker = Breaker(first_s=1.0, max_s=8.0, threshold=3, clock=clock)
        for _ in range(2):
            await fail(breaker, endpoint)
        endpoint.down = False
        await breaker.call(endpoint.send)
        endpoint.down = True
        for _ in range(2):
            await fail(breaker, endpoint)
        assert not breaker.is_open and endpoint.calls == 5

    async def test_a_failed_probe_doubles_the_wait_up_to_the_cap_and_a_good_one_closes(self) -> None:
        clock, endpoint = Clock(), Endpoint()
        breaker = Breaker(first_s=1.0, max_s=3.0, threshold=1, clock=clock)
        await fail(breaker, endpoint)
        assert breaker.open_until == 101.0
        for expected_wait in (2.0, 3.0, 3.0):
            clock.now = breaker.open_until  # due: one probe goes to the endpoint
            await fail(breaker, endpoint)
            assert breaker.open_until == clock.now + expected_wait
        assert endpoint.calls == 4
        clock.now = breaker.open_until
        endpoint.down = False
        await breaker.call(endpoint.send)
        assert not breaker.is_open and endpoint.calls == 5

    async def test_only_one_probe_at_a_time(self) -> None:
        clock, endpoint = Clock(), Endpoint()
        breaker = Breaker(first_s=1.0, max_s=8.0, threshold=1, clock=clock)
        await fail(breaker, endpoint)
        clock.now += 1.0
        outcomes = await asyncio.gather(*(breaker.call(endpoint.send) for _ in range(5)), return_exceptions=True)
        assert endpoint.calls == 2 and all(isinstance(o, Retryable) for o in outcomes)
        assert sum(o.reason.startswith("circuit open") for o in outcomes) == 4  # type: ignore[union-attr]

    async def test_a_refusal_means_the_endpoint_answered_and_closes_it(self) -> None:
        clock = Clock()
        breaker = Breaker(first_s=1.0, max_s=8.0, threshold=1, clock=clock)
        await fail(breaker, Endpoint())
        clock.now += 1.0

        async def refuse() -> None:
            raise Rejected("webhook answered 400")

        with pytest.raises(Rejected):
            await breaker.call(refuse)
        assert not breaker.is_open

    async def test_until_the_endpoint_answers_one_attempt_goes_at_a_time(self) -> None:
        clock, endpoint = Clock(), Endpoint()
        breaker = Breaker(first_s=1.0, max_s=30.0, threshold=3, clock=clock)
        outcomes = await asyncio.gather(*(breaker.call(endpoint.send) for _ in range(50)), return_exceptions=True)
        assert endpoint.calls == 3 and breaker.is_open and not breaker.trusted  # then the rest failed fast
        assert sum(o.reason.startswith("circuit open") for o in outcomes) == 47  # type: ignore[union-attr]

    async def test_an_answer_lets_the_waiting_attempts_go_side_by_side(self) -> None:
        endpoint = Endpoint()
        endpoint.down = False
        breaker = Breaker(first_s=1.0, max_s=30.0, threshold=3)
        await asyncio.gather(*(breaker.call(endpoint.send) for _ in range(20)))
        assert endpoint.calls == 20 and breaker.trusted

    async def test_attempts_in_flight_when_it_opens_do_not_stretch_the_wait(self) -> None:
        clock, endpoint = Clock(), Endpoint()
        breaker = Breaker(first_s=1.0, max_s=30.0, threshold=2, clock=clock)
        endpoint.down = False
        await breaker.call(endpoint.send)  # proven: attempts go side by side
        endpoint.down = True
        await asyncio.gather(*(breaker.call(endpoint.send) for _ in range(10)), return_exceptions=True)
        assert endpoint.calls == 11 and breaker.open_until == 101.0

    async def test_ready_waits_until_the_probe_is_due_or_the_circuit_closes(self) -> None:
        breaker = Breaker(first_s=0.05, max_s=1.0, threshold=1)
        await fail(breaker, Endpoint())
        loop = asyncio.get_running_loop()
        started = loop.time()
        await breaker.ready()
        assert loop.time() - started >= 0.04 and not breaker.parked()


async def test_a_delivery_refused_by_the_open_circuit_still_goes_to_the_dlq_after_its_attempts() -> None:
    """Semantics unchanged: fail-fast attempts count, so the delivery gives up after max_attempts."""
    endpoint = Endpoint()
    breaker = Breaker(first_s=60.0, max_s=60.0, threshold=2)

    async def no_sleep(_: float) -> None:
        return None

    outcome = await with_retries(lambda: breaker.call(endpoint.send), Retry(max_attempts=6, first_s=0.1, max_s=1.0),
                                 sleep=no_sleep)
    assert not outcome.delivered and outcome.attempts == 6 and endpoint.calls == 2
    assert outcome.reason == "gave up after 6 attempts: circuit open: webhook not reached (ClientConnectorError)"
