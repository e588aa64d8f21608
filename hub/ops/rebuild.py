"""``hub rebuild [--compare] [--replace]``: the records again, from events.citizen, through the live code.

Kafka is the source of truth (ARCHITECTURE invariant 2): this replays events.citizen from the beginning of
every partition up to the end offsets read at the start, through the record stage's own step
(hub.stream.record.RecordStage, without an outbox and without publishing record.changes), into the key prefix
``rebuild:`` of the same Redis, so the live records are untouched while it runs. The partitions are interleaved
by record time (each in offset order): the order a caught-up record role applied them in.

Why the interleaving matters: a record's content is a function of the set of its events, except that an event
applied to a survivor goes to the part of the group its identifiers name *at that moment*
(hub.record.merge.attribute). Live, the retired citizen's events were applied before the merge (the MPI merges
citizens it has already written events for); a replay reading each partition at its own pace could apply the
merge, on the survivor's partition, before them, and an event the survivor got afterwards with the retired
citizen's MRN then stayed with the survivor through an unmerge: both records differed from the live ones.
A live record role catching up a backlog also reads partitions at its own pace and could make that choice;
the rebuild's is the order the events were written in.

``--compare`` counts the citizens whose record differs between the live view and the rebuild (exit 1 if any).
Equality is the record without ``version`` and ``updated_at`` (content, redirects and merge parts included):
its version counts visible changes, and that count depends on how a merge on one partition interleaved with
events on another within the same instant, which a replay need not reproduce. Version differences are reported
separately and do not fail the comparison. Compare while the record role is caught up (its lag is printed),
or live records are simply behind.

``--replace`` moves the rebuilt keys over the live ones. It refuses unless the record role is stopped and its
committed offsets are exactly the rebuild's end offsets: otherwise the live role would skip events the rebuild
lacks, or never publish changes for events it has not processed.

Exit codes: 0 done (and no difference); 1 differences found; 2 refused, or Kafka/Redis not reachable.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from hub.errors import DeliveryError
from hub.ops import lag
from hub.record.store import RedisRecordStore
from hub.settings import Settings
from hub.topics import EVENTS_CITIZEN

if TYPE_CHECKING:
    from hub.stream.app import Incoming

PREFIX = "rebuild:"
RECORD_GROUP = lag.group_of("record")
FETCH_RECORDS = 2000
IGNORED = frozenset({"version", "updated_at"})


@dataclass
class Rebuilt:
    events: int = 0
    failed: int = 0  # events the live stage also sends to hub.dlq
    end_offsets: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Comparison:
    records: int = 0
    differ: list[str] = field(default_factory=list)  # citizen ids (pseudonymous)
    only_live: list[str] = field(default_factory=list)
    only_rebuilt: list[str] = field(default_factory=list)
    versions_differ: int = 0

    @property
    def differences(self) -> int:
        return len(self.differ) + len(self.only_live) + len(self.only_rebuilt)


def comparable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in IGNORED}


async def _delete_prefix(client: aioredis.Redis, pattern: str) -> None:
    batch = []
    async for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            await client.unlink(*batch)
            batch = []
    if batch:
        await client.unlink(*batch)


async def _in_written_order(consumer: AIOKafkaConsumer,
                            ends: dict[TopicPartition, int]) -> AsyncIterator[list[Incoming]]:
    """Batches of events.citizen up to ``ends``, all partitions interleaved by record time (each in offset order).

    Live, the record role applies events about when they are written, so a merge comes after the retired
    citizen's earlier events even when those sit on another partition; what a survivor's later event is
    attributed to depends on it (hub.record.merge.attribute). Read partition by partition, a replay could apply
    the merge first. So the next event is always the oldest head among the partitions, and a batch ends where a
    partition's fetched events run out before the end: its next event may be older than any other head.
    """
    from hub.stream.app import Incoming  # faust: imported only when a rebuild runs, not for every hub command

    waiting: dict[TopicPartition, deque] = {tp: deque() for tp in ends}
    unread = {tp for tp, end in ends.items() if end > 0}  # not yet fetched up to the end offset
    while unread or any(waiting.values()):
        dry = [tp for tp in unread if not waiting[tp]]
        if dry:
            fetched = await consumer.getmany(*dry, timeout_ms=500, max_records=FETCH_RECORDS)
            for tp, records in fetched.items():
                waiting[tp].extend(r for r in records if r.offset < ends[tp])
            for tp in dry:
                if await consumer.position(tp) >= ends[tp]:
                    unread.discard(tp)
            continue
        heads = [(q[0].timestamp, tp.partition, tp) for tp, q in waiting.items() if q]
        heapq.heapify(heads)
        batch = []
        while heads and len(batch) < FETCH_RECORDS:
            _, partition, tp = heapq.heappop(heads)
            r = waiting[tp].popleft()
            batch.append(Incoming(r.key, r.value, dict(r.headers or ()), r.topic, r.partition, r.offset,
                                  r.timestamp / 1000))
            if waiting[tp]:
                heapq.heappush(heads, (waiting[tp][0].timestamp, partition, tp))
            elif tp in unread:
                break  # fetch this partition's next events before going on
        yield batch


async def rebuild(settings: Settings, client: aioredis.Redis) -> Rebuilt:
    """Replay events.citizen into the ``rebuild:`` prefix (cleared first), in the order the events were written."""
    from hub.stream.record import RecordStage

    started = time.perf_counter()
    await _delete_prefix(client, f"{PREFIX}*")
    stage = RecordStage(RedisRecordStore(client, prefix=PREFIX), publish=False)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    result = Rebuilt()
    try:
        tps = [TopicPartition(EVENTS_CITIZEN.name, p) for p in sorted(await lag.partitions_of(consumer, EVENTS_CITIZEN.name))]
        ends = await consumer.end_offsets(tps)
        result.end_offsets = {tp.partition: ends[tp] for tp in tps}
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        async for batch in _in_written_order(consumer, ends):
            outcomes = await stage.step(batch)
            result.events += len(batch)
            result.failed += sum(isinstance(o, Exception) for o in outcomes)
    finally:
        await consumer.stop()
    result.seconds = time.perf_counter() - started
    return result


async def _records(client: aioredis.Redis, prefix: str) -> dict[str, bytes]:
    start = f"{prefix}record:"
    keys = [k async for k in client.scan_iter(match=f"{start}*", count=1000) if not k.endswith(b":events")]
    found: dict[str, bytes] = {}
    for i in range(0, len(keys), 1000):
        chunk = keys[i:i + 1000]
        for key, raw in zip(chunk, await client.mget(chunk), strict=True):
            if raw is not None:
                found[key.decode()[len(start):]] = raw
    return found


async def compare(client: aioredis.Redis) -> Comparison:
    live, rebuilt = await _records(client, ""), await _records(client, PREFIX)
    result = Comparison(records=len(live.keys() | rebuilt.keys()))
    result.only_live = sorted(live.keys() - rebuilt.keys())
    result.only_rebuilt = sorted(rebuilt.keys() - live.keys())
    for cid in sorted(live.keys() & rebuilt.keys()):
        if live[cid] == rebuilt[cid]:
            continue
        a, b = orjson.loads(live[cid]), orjson.loads(rebuilt[cid])
        if comparable(a) != comparable(b):
            result.differ.append(cid)
        elif a.get("version") != b.get("version"):
            result.versions_differ += 1
    return result


async def role_running(settings: Settings) -> bool:
    """Has the record role's consumer group any member (a worker that could write records meanwhile)?"""
    admin = await lag.admin_client(settings)
    try:
        return any(described[5] for response in await admin.describe_consumer_groups([RECORD_GROUP])
                   for described in response.groups)
    finally:
        await admin.close()


async def replace_refusal(settings: Settings, rebuilt: Rebuilt) -> str | None:
    """Why the rebuilt records may not replace the live ones now, or None."""
    if await role_running(settings):
        return "the record role is running; stop it first (hub down, or stop the record role)"
    rows = await lag.measure(settings, [RECORD_GROUP], seconds=False)
    committed = {r.partition: r.committed_offset or 0 for r in rows if r.topic == EVENTS_CITIZEN.name}
    behind = [p for p, end in rebuilt.end_offsets.items() if committed.get(p, 0) != end]
    if behind:
        return (f"the record role's committed offsets differ from the rebuild's end on partitions {behind} "
                "(events arrived, or the role was not caught up): start it, let it catch up, stop it, rebuild again")
    return None


async def replace(client: aioredis.Redis) -> int:
    """Move every ``rebuild:`` record key over its live key; delete live records the rebuild does not have."""
    rebuilt = [k async for k in client.scan_iter(match=f"{PREFIX}record:*", count=1000)]
    names = {k[len(PREFIX):] for k in rebuilt}
    stale = [k async for k in client.scan_iter(match="record:*", count=1000) if k not in names]
    async with client.pipeline(transaction=False) as pipe:
        for key in stale:
            pipe.unlink(key)
        for key in rebuilt:
            pipe.rename(key, key[len(PREFIX):])
        await pipe.execute()
    return len([k for k in rebuilt if not k.endswith(b":events")])


async def run(settings: Settings, *, check: bool, swap: bool, as_json: bool = False, out=sys.stdout) -> int:
    if swap and await role_running(settings):  # refused before the work, and checked again after it
        print("hub rebuild: not replaced: the record role is running; stop it first", file=sys.stderr)
        return 2
    client = aioredis.from_url(settings.redis_url)
    try:
        rebuilt = await rebuild(settings, client)
        print(f"rebuilt from {EVENTS_CITIZEN.name}: {rebuilt.events} events in {rebuilt.seconds:.1f} s "
              f"({rebuilt.failed} the record stage refuses, as live); keys under {PREFIX!r}",
              file=sys.stderr if as_json else out)
        code = 0
        if check:
            rows = await lag.measure(settings, [RECORD_GROUP], seconds=False)
            behind = sum(r.lag for r in rows if r.topic == EVENTS_CITIZEN.name)
            if behind:
                print(f"note: the live record role is {behind} events behind; its records lag accordingly", file=out)
            result = await compare(client)
            if as_json:
                out.write(orjson.dumps({"records": result.records, "differ": result.differ,
                                        "only_live": result.only_live, "only_rebuilt": result.only_rebuilt,
                                        "versions_differ": result.versions_differ, "live_lag": behind}).decode() + "\n")
            print(f"compared {result.records} records: {result.differences} differ "
                  f"({len(result.differ)} in content, {len(result.only_live)} only live, "
                  f"{len(result.only_rebuilt)} only rebuilt); {result.versions_differ} differ in version only",
                  file=sys.stderr if as_json else out)
            for cid in [] if as_json else (result.differ + result.only_live + result.only_rebuilt)[:20]:
                print(f"  differs: {cid}", file=out)
            code = 1 if result.differences else 0
        if swap:
            refusal = await replace_refusal(settings, rebuilt)
            if refusal:
                print(f"hub rebuild: not replaced: {refusal}", file=sys.stderr)
                return 2
            print(f"replaced {await replace(client)} live records with the rebuilt ones", file=out)
        return code
    finally:
        await client.aclose()


def cmd_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return asyncio.run(run(settings, check=args.compare, swap=args.replace, as_json=args.json))
    except (KafkaError, RedisError, OSError, DeliveryError) as exc:
        print(f"hub rebuild: Kafka or Redis not reachable: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 2


def add_rebuild_commands(sub: argparse._SubParsersAction) -> None:
    rb = sub.add_parser("rebuild", help="replay events.citizen into fresh records (prefix rebuild:); "
                                        "--compare with the live ones, --replace them (record role stopped)")
    rb.add_argument("--compare", action="store_true",
                    help="count records that differ from the live ones (exit 1 if any)")
    rb.add_argument("--replace", action="store_true",
                    help="swap the rebuilt records in (refused while the record role runs or is behind)")
    rb.add_argument("--json", action="store_true",
                    help="with --compare: print the comparison as JSON (pseudonymous citizen ids that differ)")
    rb.set_defaults(func=cmd_rebuild)
