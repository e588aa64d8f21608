"""Resend detection: a message seen before (same MSH-3, MSH-4, MSH-10 and the same bytes) is ACKed again and
not published twice. State lives in Redis with a TTL (default 7 days).

Each message key moves through two states, so a crash between the Kafka write and the Redis update cannot
let a resend through twice:

    (absent) --reserve--> "p|<ms>|<sha>"  (pending: the Kafka write is in flight)
             --confirm--> "c|<sha>"        (stored on hl7v2.raw)
             --release--> (absent)         (the write failed: the sender will resend)

Pending keys are also indexed in a sorted set by time. At start, before serving, ``reconcile`` reads
``hl7v2.raw`` from the oldest orphaned pending entry onwards and confirms the ones that did reach Kafka
(records carry their content hash in a header) and releases the rest. Kafka stays the source of truth.

Redis calls from concurrent connections are gathered into one pipeline per event-loop turn (Lua scripts,
one round trip for many messages). Confirms, which nobody waits for, ride with the next reserve, or go on their
own after ``CONFIRM_DELAY_S``: hospital engines send one message at a time per connection, so at a steady rate
nearly every message came in an event-loop turn of its own and its confirm cost a second round trip (a
redis-py asyncio round trip is ~0.2 ms of CPU here, the larger part of the listener's own cost per message). If Redis is unreachable the listener keeps ingesting without dedup: a
resend may then appear twice on hl7v2.raw, which downstream stages absorb (deterministic event ids); refusing
every hospital's messages because a cache is down would be worse.
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from hub.logging import get_logger
from hub.pseudonym import keyed_hash

log = get_logger("mllp.dedup")

SEEN_PREFIX = "hssk:mllp:seen:"
PENDING_INDEX = "hssk:mllp:pending"
HASH_HEADER = "hl7.sha256"
CONFIRM_DELAY_S = 0.005  # the longest a confirm waits for a reserve to share its pipeline

_RESERVE = """
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], KEYS[1])
return false
"""
_CONFIRM = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('ZREM', KEYS[2], KEYS[1])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('ZREM', KEYS[2], KEYS[1])
return 1
"""


class Seen(enum.Enum):
    NEW = "new"  # never seen: publish it (we hold the pending marker)
    DUPLICATE = "duplicate"  # same bytes already stored: ACK again, do not publish
    REUSED = "reused"  # same control id, different bytes: publish, and record the reuse
    UNCHECKED = "unchecked"  # Redis unavailable: publish without dedup


@dataclass(frozen=True, slots=True)
class Ticket:
    """What ``check`` decided for one message, and what ``stored``/``failed`` need to finish it."""

    seen: Seen
    key: str
    digest: str
    pending: str = ""


def message_key(secret: bytes, application: str, facility: str, control_id: str) -> str:
    return SEEN_PREFIX + keyed_hash(secret, "mllp-seen", application, facility, control_id)


class DedupStore:
    def __init__(self, client: aioredis.Redis, secret: bytes, ttl_s: int, in_flight_wait_s: float) -> None:
        self.redis = client
        self.secret = secret
        self.ttl_s = ttl_s
        self.in_flight_wait_s = in_flight_wait_s
        self._shas: dict[str, str] = {}
        self._queue: list[tuple[str, list[str], list[Any], asyncio.Future[Any] | None]] = []
        self._flush_scheduled = False
        self._confirm_timer: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[None]] = set()

    # --- batching: every call made in one event-loop turn goes out in one pipeline --------------------

    async def _load_scripts(self) -> None:
        for name, body in (("reserve", _RESERVE), ("confirm", _CONFIRM), ("release", _RELEASE)):
            self._shas[name] = await self.redis.script_load(body)

    def _enqueue(self, script: str, keys: list[str], args: list[Any], future: asyncio.Future[Any] | None) -> None:
        """Queue a call for the next pipeline: this event-loop turn's for an awaited call; for an unawaited one
        (a confirm), the next awaited call's, or at the latest ``CONFIRM_DELAY_S`` from now."""
        self._queue.append((script, keys, args, future))
        if self._flush_scheduled:
            return
        if future is None:
            if self._confirm_timer is None:
                self._confirm_timer = asyncio.get_running_loop().call_later(CONFIRM_DELAY_S, self._confirms_due)
            return
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._confirm_timer is not None:
            self._confirm_timer.cancel()
            self._confirm_timer = None
        self._flush_scheduled = True
        asyncio.get_running_loop().call_soon(self._start_flush)

    def _confirms_due(self) -> None:
        self._confirm_timer = None
        if not self._flush_scheduled and self._queue:
            self._schedule_flush()

    def _start_flush(self) -> None:
        task = asyncio.ensure_future(self._flush())
        self._flushing.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._flushing.discard)

    async def _call(self, script: str, keys: list[str], args: list[Any]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._enqueue(script, keys, args, future)
        return await future

    async def _flush(self) -> None:
        batch, self._queue, self._flush_scheduled = self._queue, [], False
        try:
            results = await self._run(batch)
        except (RedisError, OSError) as exc:
            if any(future is None for *_, future in batch):
                # Unawaited confirms: their pending markers stay, and the next start's reconcile settles them.
                log.warning("dedup confirm failed", error=type(exc).__name__)
            for *_, future in batch:
                if future is not None and not future.done():
                    future.set_exception(exc)
            return
        for (*_, future), result in zip(batch, results):
            if future is not None and not future.done():
                future.set_result(result)

    async def drain(self) -> None:
        """Wait until every queued call has reached Redis (graceful shutdown: no confirm left behind)."""
        while self._queue or self._flush_scheduled or self._flushing:
            if self._flushing:
                await asyncio.gather(*self._flushing, return_exceptions=True)
            else:
                if self._queue and not self._flush_scheduled:  # confirms waiting for company: send them now
                    self._schedule_flush()
                await asyncio.sleep(0)

    async def _run(self, batch: list[tuple[str, list[str], list[Any], asyncio.Future[Any] | None]]) -> list[Any]:
        for attempt in (1, 2):
            if not self._shas:
                await self._load_scripts()
            pipe = self.redis.pipeline(transaction=False)
            for script, keys, args, _ in batch:
                pipe.evalsha(self._shas[script], len(keys), *keys, *args)
            try:
                return await pipe.execute()
            except NoScriptError:  # Redis restarted and lost its script cache
                self._shas.clear()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    # --- the three steps -------------------------------------------------------------------------------

    async def check(self, application: str, facility: str, control_id: str, digest: str) -> Ticket:
        key = message_key(self.secret, application, facility, control_id)
        deadline = time.monotonic() + self.in_flight_wait_s
        while True:
            pending = f"p|{int(time.time() * 1000)}|{digest}"
            try:
                current = await self._call("reserve", [key, PENDING_INDEX], [pending, self.ttl_s, int(time.time() * 1000)])
            except (RedisError, OSError) as exc:
                log.warning("dedup unavailable, publishing without it", error=type(exc).__name__)
                return Ticket(Seen.UNCHECKED, key, digest)
            if current is None:
                return Ticket(Seen.NEW, key, digest, pending)
            state = current.decode() if isinstance(current, bytes) else str(current)
            if state.startswith("c|"):
                return Ticket(Seen.DUPLICATE if state[2:] == digest else Seen.REUSED, key, digest)
            if not state.endswith("|" + digest) or time.monotonic() > deadline:
                # Another message with this control id is in flight, or a marker outlived its writer:
                # publish (downstream absorbs a rare duplicate by event id) rather than keep the sender waiting.
                return Ticket(Seen.REUSED if not state.endswith("|" + digest) else Seen.UNCHECKED, key, digest)
            await asyncio.sleep(0.05)  # the same message is being stored right now (a fast resend): wait

    def stored(self, ticket: Ticket) -> None:
        """Mark the message stored, without waiting: the ACK depends on Kafka's confirmation, not on Redis.

        The confirm goes out with the next pipeline; a resend arriving before it sees the pending marker with
        its own digest and waits briefly. If the process dies first, reconcile confirms it from hl7v2.raw.
        """
        if ticket.seen is Seen.DUPLICATE:
            return
        self._enqueue("confirm", [ticket.key, PENDING_INDEX], [f"c|{ticket.digest}", self.ttl_s], None)

    async def failed(self, ticket: Ticket) -> None:
        if ticket.seen is not Seen.NEW:
            return
        try:
            await self._call("release", [ticket.key, PENDING_INDEX], [ticket.pending])
        except (RedisError, OSError) as exc:
            log.warning("dedup release failed", error=type(exc).__name__)

    # --- crash recovery ----------------------------------------------------------------------------------

    async def orphaned(self, older_than_s: float) -> dict[str, tuple[int, str]]:
        """Pending entries older than ``older_than_s``: {key: (reserved-at ms, pending value)}."""
        cutoff = int((time.time() - older_than_s) * 1000)
        entries = await self.redis.zrangebyscore(PENDING_INDEX, "-inf", cutoff, withscores=True)
        out: dict[str, tuple[int, str]] = {}
        for member, score in entries:
            key = member.decode()
            value = await self.redis.get(key)
            out[key] = (int(score), value.decode() if value else "")
        return out

    async def resolve(self, key: str, pending: str, reached_kafka: bool) -> None:
        digest = pending.rsplit("|", 1)[-1]
        if reached_kafka:
            await self.redis.eval(_CONFIRM, 2, key, PENDING_INDEX, f"c|{digest}", self.ttl_s)
        else:
            await self.redis.eval(_RELEASE, 2, key, PENDING_INDEX, pending)
