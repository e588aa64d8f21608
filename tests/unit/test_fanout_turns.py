"""TurnPipeline: the Redis calls of one event-loop turn go out as one pipeline; each caller gets its own answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from hub.fanout.turns import TurnPipeline


class Redis:
    def __init__(self, fail: Exception | None = None) -> None:
        self.values: dict[str, bytes] = {"hssk:record:cz-an": b"{}"}
        self.pipelines: list[list[str]] = []
        self.fail = fail

    def pipeline(self, transaction: bool = True) -> "Pipeline":
        assert transaction is False
        return Pipeline(self)

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        """A call alone in its turn is sent as it is."""
        self.pipelines.append(["mget (alone)"])
        if self.fail is not None:
            raise self.fail
        return [self.values.get(k) for k in keys]


class Pipeline:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.commands: list[tuple[str, tuple[Any, ...]]] = []

    async def __aenter__(self) -> "Pipeline":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None

    def mget(self, keys: list[str]) -> None:
        self.commands.append(("mget", (keys,)))

    def zadd(self, name: str, mapping: dict[str, int], nx: bool = False) -> None:
        self.commands.append(("zadd", (name, mapping)))

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        assert raise_on_error is False
        self.redis.pipelines.append([name for name, _ in self.commands])
        if self.redis.fail is not None:
            raise self.redis.fail
        out: list[Any] = []
        for name, args in self.commands:
            if name == "mget":
                out.append([self.redis.values.get(k) for k in args[0]])
            elif args[0] == "wrong-type":
                out.append(ResponseError("WRONGTYPE"))
            else:
                out.append(len(args[1]))
        return out


class TestTurnPipeline:
    async def test_calls_of_one_turn_are_one_pipeline_and_each_gets_its_answer(self) -> None:
        redis = Redis()
        turns = TurnPipeline(redis)
        got = await asyncio.gather(turns.mget(["hssk:record:cz-an", "hssk:record:cz-binh"]),
                                   turns.zadd("hssk:sub:x:unpushed", {"cz-an": 1, "cz-binh": 2}, nx=True),
                                   turns.mget(["hssk:record:cz-chau"]))
        assert got == [[b"{}", None], 2, [None]]
        assert redis.pipelines == [["mget", "zadd", "mget"]]

    async def test_calls_of_later_turns_go_in_later_pipelines(self) -> None:
        redis = Redis()
        turns = TurnPipeline(redis)
        assert await turns.mget(["hssk:record:cz-an"]) == [b"{}"]
        assert await turns.mget(["b"]) == [None]
        assert redis.pipelines == [["mget (alone)"], ["mget (alone)"]]

    async def test_a_command_error_goes_to_its_caller_only(self) -> None:
        turns = TurnPipeline(Redis())
        bad, good = await asyncio.gather(turns.zadd("wrong-type", {"cz-an": 1}), turns.mget(["hssk:record:cz-an"]),
                                         return_exceptions=True)
        assert isinstance(bad, ResponseError) and good == [b"{}"]

    async def test_a_connection_failure_goes_to_every_caller_of_the_pipeline(self) -> None:
        turns = TurnPipeline(Redis(fail=RedisConnectionError("down")))
        results = await asyncio.gather(turns.mget(["a"]), turns.mget(["b"]), return_exceptions=True)
        assert all(isinstance(r, RedisConnectionError) for r in results)
        with pytest.raises(RedisConnectionError):
            await turns.mget(["c"])
