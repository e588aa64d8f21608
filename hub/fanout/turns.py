"""Redis reads and writes of one event-loop turn, sent to Redis as one pipeline.

The engine's partition workers are woken together, by the same fetch, and each starts its batch with the same
calls (the batch's records in one MGET, then the freshness ZADD): sent one by one, every partition paid a
round trip of its own, and a redis-py asyncio round trip costs ~0.2-0.3 ms of CPU here (measured: GET, MGET of 5,
a two-command pipeline), which at small batches was a large part of the fan-out's CPU per delivery. Each call
still gets its own answer, or its own error: the pipeline runs with ``raise_on_error=False`` and a command's
error goes to its caller alone; a connection failure goes to every caller of that pipeline, as it would have
one by one.
"""

from __future__ import annotations

import asyncio
from typing import Any


class TurnPipeline:
    def __init__(self, redis: Any) -> None:  # redis.asyncio.Redis
        self.redis = redis
        self._queue: list[tuple[str, tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._flushing: set[asyncio.Task[None]] = set()

    def call(self, command: str, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """``redis.<command>(*args, **kwargs)``, sent with the other calls of this event-loop turn."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((command, args, kwargs, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._start)
        return future

    async def mget(self, keys: list[str]) -> list[Any]:
        return await self.call("mget", keys)

    async def zadd(self, name: str, mapping: dict[str, int], **kwargs: Any) -> Any:
        return await self.call("zadd", name, mapping, **kwargs)

    def _start(self) -> None:
        task = asyncio.ensure_future(self._flush())
        self._flushing.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._flushing.discard)

    async def _flush(self) -> None:
        batch, self._queue, self._scheduled = self._queue, [], False
        if len(batch) == 1:  # alone in its turn: the plain command, without a pipeline's cost
            command, args, kwargs, future = batch[0]
            try:
                result = await getattr(self.redis, command)(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - the caller gets it
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else ConnectionError("call cancelled"))
                if not isinstance(exc, Exception):
                    raise
                return
            if not future.done():
                future.set_result(result)
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for command, args, kwargs, _ in batch:
                    getattr(pipe, command)(*args, **kwargs)
                results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # noqa: BLE001 - every caller gets the failure (CancelledError included)
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else ConnectionError("pipeline cancelled"))
            if not isinstance(exc, Exception):
                raise
            return
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
