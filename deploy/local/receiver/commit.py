"""Group commit: the pushes that arrive while one transaction is on its way to disk go in the next one.

SQLite work runs on one thread of its own, so the event loop keeps reading requests during an fsync; each
request waits for the commit that holds its row and only then is answered (nothing is acknowledged before
it is on disk). Reads go through the same thread, so the connection is never used by two threads at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from deploy.local.receiver.store import DeliveryStore, Push, Stored

T = TypeVar("T")


class GroupCommit:
    def __init__(self, store: DeliveryStore) -> None:
        self.store = store
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="receiver-db")
        self._pending: list[tuple[Push, asyncio.Future[Stored]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def add(self, push: Push) -> Stored:
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._pending.append((push, future))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    results = await loop.run_in_executor(self._thread, self.store.add_many, [p for p, _ in batch])
                except Exception as exc:  # e.g. disk full: every push of the batch is answered 503 and resent
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), stored in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(stored)
        finally:
            self._flushing = None

    async def read(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Run a read of the store on its thread (after every write already handed to it)."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, lambda: fn(*args, **kwargs))

    async def close(self) -> None:
        if self._flushing is not None:
            await self._flushing
        self._thread.shutdown(wait=True)
        self.store.close()
