"""The dashboard sampler against a stand-in probe: lag summed per group, DLQ entries counted once even when a
tick fails half way, Kafka failures kept as a state and retried with fresh clients, the review queue read
every tick and the subscriptions every SUBSCRIPTIONS_EVERY_S, their failures kept on their own panels, the
loop started and stopped with the aiohttp app."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest
from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError

from hub.api import dashboard
from hub.api.dashboard.history import GroupLag, History
from hub.api.dashboard.sampler import SUBSCRIPTIONS_EVERY_S, Sampler, group_totals, next_delay
from hub.ops.dlq import Entry
from hub.ops.lag import KafkaUnavailable, PartitionLag
from hub.settings import Settings


def entry(stage: str, code: str, offset: int) -> Entry:
    return Entry(partition=0, offset=offset, timestamp_ms=0, key=None, stage=stage, code=code, reason="r",
                 original=b"MSH|")


class FakeProbe:
    """Kafka as the sampler sees it: lag rows, topic ends, and a DLQ partition 0 read from a position."""

    def __init__(self, world: "World") -> None:
        self.world = world
        self.closed = False

    async def lag(self) -> list[PartitionLag]:
        if self.world.down:
            raise KafkaUnavailable("reading consumer lag: Kafka at 127.0.0.1:1 is not reachable (KafkaError)")
        return self.world.rows

    async def topic_ends(self, topics: Iterable[str]) -> dict[str, int]:
        return {t: n for t, n in self.world.ends.items() if t in topics}

    async def dead_letters(self, positions: dict[int, int]) -> tuple[list[Entry], bool]:
        start = positions.get(0, 0)
        found = self.world.dlq[start:start + self.world.per_read]
        positions[0] = start + len(found)
        if self.world.fail_after_dlq:
            raise KafkaUnavailable("reading hub.dlq: KafkaConnectionError")
        return found, positions[0] >= len(self.world.dlq)

    async def subscriptions(self) -> list[dict]:
        self.world.subscription_reads += 1
        if self.world.bad_subscriptions:
            raise ValueError('deploy/local/subscriptions.toml: subscription "healthbook": delivery.url: missing')
        if self.world.down:
            raise KafkaUnavailable("reading consumer lag: Kafka at 127.0.0.1:1 is not reachable (KafkaError)")
        return self.world.subscriptions

    async def review_queue(self) -> int:
        if self.world.redis_down:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        return self.world.review

    async def close(self) -> None:
        self.closed = True


class World:
    def __init__(self) -> None:
        self.down = False
        self.fail_after_dlq = False
        self.per_read = 100
        self.rows = [PartitionLag("hssk-record", "events.citizen", 0, 10, 7, 3, 1.25),
                     PartitionLag("hssk-record", "events.citizen", 1, 5, 5, 0, 0.0),
                     PartitionLag("hssk-fanout", "record.changes", 0, 4, None, 4, None)]
        self.ends = {"hl7v2.raw": 15, "record.changes": 4}
        self.dlq = [entry("translate", "translate", 0), entry("translate", "translate", 1),
                    entry("identity", "identity", 2)]
        self.probes: list[FakeProbe] = []
        self.subscriptions = [{"name": "healthbook", "delivery": {"kind": "webhook"}, "format": "health-book",
                               "lag": 0, "paused": False, "dlq_records": 0}]
        self.subscription_reads = 0
        self.bad_subscriptions = False
        self.review = 4
        self.redis_down = False

    def probe(self) -> FakeProbe:
        self.probes.append(FakeProbe(self))
        return self.probes[-1]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        self.now += 2
        return self.now


def sampler(world: World, history: History | None = None) -> Sampler:
    return Sampler(history or History(600, 2), world.probe, Clock())


class TestGroupTotals:
    def test_lag_is_summed_and_the_oldest_age_is_the_largest(self) -> None:
        assert group_totals(World().rows) == {"hssk-record": GroupLag(3, 1.25), "hssk-fanout": GroupLag(4, None)}

    def test_no_rows_no_groups(self) -> None:
        assert group_totals([]) == {}


class TestRetryDelay:
    @pytest.mark.parametrize("previous, failed, expected", [
        (2.0, False, 2.0), (2.0, True, 4.0), (4.0, True, 8.0), (8.0, True, 10.0), (10.0, True, 10.0),
        (10.0, False, 2.0), (0.5, True, 2.0)])
    def test_failures_space_the_tries_out_and_success_resets(self, previous: float, failed: bool,
                                                             expected: float) -> None:
        assert next_delay(previous, 2.0, failed) == expected


class TestTick:
    async def test_a_tick_records_lag_ends_and_the_dlq(self) -> None:
        world = World()
        s = sampler(world)
        await s.tick()
        latest = s.history.latest
        assert latest is not None and latest.groups["hssk-record"] == GroupLag(3, 1.25)
        assert latest.topic_ends == {"hl7v2.raw": 15, "record.changes": 4}
        assert s.history.dlq == {("translate", "translate"): 2, ("identity", "identity"): 1}
        assert s.history.dlq_complete

    async def test_each_dead_letter_is_counted_once_over_many_ticks(self) -> None:
        world = World()
        world.per_read = 2
        s = sampler(world)
        await s.tick()
        assert not s.history.dlq_complete and sum(s.history.dlq.values()) == 2
        await s.tick()
        world.dlq.append(entry("ingest", "frame", 3))
        await s.tick()
        await s.tick()
        assert s.history.dlq == {("translate", "translate"): 2, ("identity", "identity"): 1, ("ingest", "frame"): 1}
        assert len(world.probes) == 1  # the clients are kept between good ticks

    async def test_a_tick_that_fails_after_reading_the_dlq_counts_nothing(self) -> None:
        """Positions move only with a whole tick, so the retry reads and counts the same entries once."""
        world = World()
        s = sampler(world)
        world.fail_after_dlq = True
        await s.tick()
        assert s.history.dlq == {} and s.history.error == "reading hub.dlq: KafkaConnectionError"
        world.fail_after_dlq = False
        await s.tick()
        assert sum(s.history.dlq.values()) == 3

    async def test_kafka_down_is_a_state_with_fresh_clients_on_retry(self) -> None:
        world = World()
        s = sampler(world)
        await s.tick()
        world.down = True
        await s.tick()
        await s.tick()
        assert s.history.error.startswith("reading consumer lag: Kafka at 127.0.0.1:1 is not reachable")
        assert s.history.error_since == 1_800_000_004.0 and len(s.history.samples) == 1
        assert [p.closed for p in world.probes] == [True, True]
        world.down = False
        await s.tick()
        assert s.history.error is None and len(s.history.samples) == 2 and len(world.probes) == 3


class TestHealth:
    async def test_the_review_queue_every_tick_and_the_subscriptions_when_due(self) -> None:
        world = World()
        s = sampler(world)  # the clock moves 2 s a tick
        await s.tick()
        assert s.history.review_queue == 4 and s.history.subscriptions == world.subscriptions
        world.review = 5
        for _ in range(int(SUBSCRIPTIONS_EVERY_S / 2) - 1):
            await s.tick()
        assert s.history.review_queue == 5 and world.subscription_reads == 1
        await s.tick()
        assert world.subscription_reads == 2

    async def test_redis_down_is_the_review_panels_error_and_the_kafka_sample_still_lands(self) -> None:
        world = World()
        s = sampler(world)
        await s.tick()
        world.redis_down = True
        await s.tick()
        assert s.history.review_queue == 4 and s.history.review_queue_error == "Redis: ConnectionError"
        assert s.history.error is None and len(s.history.samples) == 2
        world.redis_down = False
        await s.tick()
        assert s.history.review_queue_error is None

    async def test_an_invalid_subscriptions_file_is_named_and_kafka_down_keeps_the_last_reading(self) -> None:
        world = World()
        world.bad_subscriptions = True
        s = sampler(world)
        await s.tick()
        assert s.history.subscriptions is None
        assert s.history.subscriptions_error.endswith('subscription "healthbook": delivery.url: missing')
        world.bad_subscriptions = False
        s._subscriptions_due = 0.0
        await s.tick()
        assert s.history.subscriptions == world.subscriptions and s.history.subscriptions_error is None
        world.down = True
        s._subscriptions_due = 0.0
        await s.tick()
        assert s.history.subscriptions == world.subscriptions
        assert s.history.subscriptions_error.startswith("subscription status not read: reading consumer lag")


class TestLoop:
    async def test_the_sampler_runs_while_the_app_runs(self) -> None:
        world = World()
        history = History(600, 0.05)
        app = web.Application()
        app.cleanup_ctx.append(Sampler(history, world.probe).context())
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            for _ in range(100):
                if len(history.samples) >= 3:
                    break
                await asyncio.sleep(0.02)
            assert len(history.samples) >= 3
        finally:
            await runner.cleanup()
        count = len(history.samples)
        await asyncio.sleep(0.15)
        assert len(history.samples) == count and world.probes[-1].closed

    async def test_an_unexpected_error_does_not_end_the_sampling(self) -> None:
        world = World()
        world.rows = None  # type: ignore[assignment]  # group_totals fails on it: a bug, not Kafka
        history = History(600, 0.02)
        task = asyncio.create_task(Sampler(history, world.probe).run())
        try:
            for _ in range(100):
                if len(world.probes) >= 2:
                    break
                await asyncio.sleep(0.01)
            assert history.error == "internal error (TypeError)" and len(world.probes) >= 2
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def test_clients_that_fail_to_close_do_not_end_the_sampling(self) -> None:
        world = World()
        world.down = True
        history = History(600, 0.02)

        async def broken_close() -> None:
            raise RuntimeError("closing failed")

        def probe() -> FakeProbe:
            made = world.probe()
            made.close = broken_close  # type: ignore[method-assign]
            return made

        task = asyncio.create_task(Sampler(history, probe).run())
        try:
            for _ in range(100):
                if len(world.probes) >= 3:
                    break
                await asyncio.sleep(0.01)
            assert not task.done() and len(world.probes) >= 3
        finally:
            task.cancel()
            assert (await asyncio.gather(task, return_exceptions=True))[0].__class__ is asyncio.CancelledError

    async def test_the_app_stops_even_when_a_call_swallows_the_cancellation(self) -> None:
        """Python 3.11's asyncio.wait_for (the sampler used it) can return normally when a cancel lands as its inner
        call finishes; the sampler then went on sampling and the API's cleanup waited for ever."""
        world = World()
        history = History(600, 0.05)
        swallowed: list[bool] = []

        def probe() -> FakeProbe:
            made = world.probe()

            async def lag_swallowing_cancel() -> list[PartitionLag]:
                try:
                    await asyncio.sleep(0.2)
                except asyncio.CancelledError:
                    swallowed.append(True)  # returns normally, as wait_for's race does
                return world.rows

            made.lag = lag_swallowing_cancel  # type: ignore[method-assign]
            return made

        app = web.Application()
        app.cleanup_ctx.append(Sampler(history, probe).context())
        runner = web.AppRunner(app)
        await runner.setup()
        await asyncio.sleep(0.05)  # inside the first tick's lag()
        cleanup = asyncio.create_task(runner.cleanup())
        done, _ = await asyncio.wait([cleanup], timeout=5)
        assert done, "the app's cleanup is still waiting for the sampler"
        assert swallowed == [True]
        assert world.probes[-1].closed

    def test_mount_gives_the_app_a_history(self) -> None:
        app = web.Application()
        history = dashboard.mount(app, Settings())
        assert app[dashboard.HISTORY] is history and len(app.cleanup_ctx) == 1
        assert (history.interval_s, history.window_s) == (dashboard.INTERVAL_S, dashboard.WINDOW_S)
