"""The resend detector's Redis traffic: calls of one event-loop turn share a pipeline, and confirms (which nobody
waits for) ride with the next reserve instead of costing a round trip of their own."""

from __future__ import annotations

import asyncio
from typing import Any

from connectors.mllp import dedup
from connectors.mllp.dedup import DedupStore, Seen


class Redis:
    """The three dedup scripts over a dict; counts the pipelines that reach it."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.pipelines: list[list[str]] = []  # the script of each call, per pipeline

    async def script_load(self, body: str) -> str:
        return {dedup._RESERVE: "reserve", dedup._CONFIRM: "confirm", dedup._RELEASE: "release"}[body]

    def pipeline(self, transaction: bool = True) -> "Pipeline":
        return Pipeline(self)


class Pipeline:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.calls: list[tuple[str, list[Any]]] = []

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> None:
        self.calls.append((sha, list(keys_and_args)))

    async def execute(self) -> list[Any]:
        self.redis.pipelines.append([sha for sha, _ in self.calls])
        values, results = self.redis.values, []
        for sha, (key, _index, *args) in self.calls:
            if sha == "reserve":
                results.append(values.get(key))
                values.setdefault(key, args[0])
            elif sha == "confirm":
                values[key] = args[0]
                results.append(1)
            else:
                if values.get(key) == args[0]:
                    del values[key]
                results.append(1)
        return results


def store(redis: Redis) -> DedupStore:
    return DedupStore(redis, b"k", ttl_s=600, in_flight_wait_s=1)  # type: ignore[arg-type]


class TestPipelines:
    async def test_a_confirm_rides_with_the_next_reserve(self) -> None:
        """Messages one after another (each in a turn of its own, as one-in-flight senders send them): one round
        trip per message, the previous message's confirm in the next one's pipeline."""
        redis = Redis()
        d = store(redis)
        for n in range(3):
            ticket = await d.check("HIS", "79001", f"MSG-{n}", f"sha-{n}")
            assert ticket.seen is Seen.NEW
            d.stored(ticket)
        await d.drain()
        assert redis.pipelines == [["reserve"], ["confirm", "reserve"], ["confirm", "reserve"], ["confirm"]]

    async def test_a_lone_confirm_goes_out_after_the_delay(self) -> None:
        redis = Redis()
        d = store(redis)
        d.stored(await d.check("HIS", "79001", "MSG-1", "sha-1"))
        await asyncio.sleep(dedup.CONFIRM_DELAY_S * 4)
        assert redis.pipelines == [["reserve"], ["confirm"]]
        assert any(v == "c|sha-1" for v in redis.values.values())

    async def test_a_resend_after_a_queued_confirm_is_a_duplicate(self) -> None:
        """The confirm is ahead of the resend's reserve in the same pipeline, so the resend is seen as stored."""
        redis = Redis()
        d = store(redis)
        d.stored(await d.check("HIS", "79001", "MSG-1", "sha-1"))
        again = await d.check("HIS", "79001", "MSG-1", "sha-1")
        assert again.seen is Seen.DUPLICATE and redis.pipelines == [["reserve"], ["confirm", "reserve"]]

    async def test_calls_of_one_turn_share_a_pipeline(self) -> None:
        redis = Redis()
        d = store(redis)
        tickets = await asyncio.gather(*(d.check("HIS", "79001", f"MSG-{n}", f"sha-{n}") for n in range(5)))
        assert [t.seen for t in tickets] == [Seen.NEW] * 5 and redis.pipelines == [["reserve"] * 5]
