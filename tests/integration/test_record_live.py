"""The record role on the real stack (Kafka, Redis, every hub role): citizen events produced straight onto
events.citizen, the records read back from Redis and the changes from record.changes.

Equality after an unmerge or a rebuild is content equality (hub.record.merge.content; hub rebuild's
comparison also covers redirects and merge parts): versions keep growing and depend on interleaving."""

from __future__ import annotations

import asyncio
import random
import signal
import uuid

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from hub.envelope import DeadLetter, Envelope
from hub.identity.events import merged_event, unmerged_event
from hub.ops import local
from hub.record.merge import content
from hub.record.store import RedisRecordStore, record_key
from hub.settings import Settings
from hub.topics import DLQ, EVENTS_CITIZEN, RECORD_CHANGES
from tests.conftest import hub_cli
from tests.integration.kafka_tools import wait_until_idle
from tests.unit.test_record_merge import CHO_RAY, TU_DU, encounter, observation, patient

pytestmark = pytest.mark.integration


def citizen(name: str) -> str:
    return f"cz-live-{uuid.uuid4().hex[:10]}-{name}"


async def produce(settings: Settings, events: list[Envelope]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sent = [await producer.send(EVENTS_CITIZEN.name, e.to_json(), key=e.citizen_id.encode()) for e in events]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def records(settings: Settings, cids: list[str]) -> dict[str, dict | None]:
    client = aioredis.from_url(settings.redis_url)
    try:
        raws = await client.mget([record_key(c) for c in cids])
        return {c: orjson.loads(r) if r else None for c, r in zip(cids, raws, strict=True)}
    finally:
        await client.aclose()


async def read_as_reader(settings: Settings, cid: str) -> dict | None:
    client = aioredis.from_url(settings.redis_url)
    try:
        return await RedisRecordStore(client).load(cid)
    finally:
        await client.aclose()


async def settled(settings: Settings) -> None:
    await wait_until_idle(settings, timeout_s=90)


async def read_to_end(settings: Settings, topic: str) -> list:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or await _parts(consumer, topic)]
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found = []
        todo = {tp for tp in tps if ends[tp] > 0}
        while todo:
            for batch in (await consumer.getmany(*todo, timeout_ms=500)).values():
                found.extend(r for r in batch if r.offset < ends[TopicPartition(r.topic, r.partition)])
            todo = {tp for tp in todo if await consumer.position(tp) < ends[tp]}
        return found
    finally:
        await consumer.stop()


async def _parts(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    from hub.ops.lag import partitions_of

    return await partitions_of(consumer, topic)


async def test_the_same_event_twice_changes_nothing_and_publishes_one_change(hub_stack: Settings) -> None:
    hung = citizen("hung")
    event = patient(hung, f"{hung}-p1", "2026-01-05T08:00:00+07:00", "Nguyễn", "Văn Hùng", phone="0903111222",
                    mrn=CHO_RAY)
    await produce(hub_stack, [event])
    await settled(hub_stack)
    once = (await records(hub_stack, [hung]))[hung]
    await produce(hub_stack, [event, event])
    await settled(hub_stack)
    assert (await records(hub_stack, [hung]))[hung] == once and once["version"] == 1
    changes = [r for r in await read_to_end(hub_stack, RECORD_CHANGES.name) if r.key == hung.encode()]
    assert [orjson.loads(r.value)["event_id"] for r in changes] == [event.event_id]


def history(cid: str, name: str) -> list[Envelope]:
    """A citizen's events: two patient updates (the later one wins), visits and results."""
    family, given = name.split(" ", 1)
    return [patient(cid, f"{cid}-p1", "2026-01-05T08:00:00+07:00", family, given, phone="0903111222", mrn=CHO_RAY),
            encounter(cid, f"{cid}-e1", "2026-01-05T09:00:00+07:00", mrn=CHO_RAY),
            observation(cid, f"{cid}-o1", "2026-01-05T10:00:00+07:00", mrn=CHO_RAY, value=5.2),
            patient(cid, f"{cid}-p2", "2026-02-01T08:00:00+07:00", family, given, phone="0988777666", mrn=CHO_RAY),
            encounter(cid, f"{cid}-e2", "2026-02-01T09:00:00+07:00", mrn=CHO_RAY)]


def renamed(record: dict) -> dict:
    """Content with the citizen id left out, to compare two citizens given the same history."""
    found = content(record)
    found.pop("citizen_id")
    return orjson.loads(orjson.dumps(found).replace(record["citizen_id"].encode(), b"X"))


async def test_events_out_of_order_give_the_same_record_as_in_order(hub_stack: Settings) -> None:
    forward, backward = citizen("lan"), citizen("lan")
    await produce(hub_stack, history(forward, "Trần Thị Lan") + history(backward, "Trần Thị Lan")[::-1])
    await settled(hub_stack)
    got = await records(hub_stack, [forward, backward])
    assert got[forward]["demographics"]["telecom"] == [{"system": "phone", "value": "0988777666"}]
    assert renamed(got[forward]) == renamed(got[backward])


async def test_events_for_a_retired_id_after_a_merge_land_on_the_survivor(hub_stack: Settings) -> None:
    hung, lan = citizen("hung"), citizen("lan")
    await produce(hub_stack, history(hung, "Nguyễn Văn Hùng") + [
        patient(lan, f"{lan}-p1", "2026-01-07T08:00:00+07:00", "Nguyễn", "Văn Hùng", phone="0912000111", mrn=TU_DU)])
    await settled(hub_stack)
    merge = merged_event(hung, lan, f"{hung}-review", "2026-03-01T08:00:00+07:00", "2026-03-01T08:00:00+07:00")
    late = observation(lan, f"{lan}-o9", "2026-03-02T08:00:00+07:00", mrn=TU_DU, value=7.7)
    await produce(hub_stack, [merge])
    await settled(hub_stack)
    await produce(hub_stack, [late])
    await settled(hub_stack)
    got = await records(hub_stack, [hung, lan])
    assert got[lan]["merged_into"] == hung and f"obs-{late.event_id}" in got[hung]["observations"]
    shown = await read_as_reader(hub_stack, lan)  # what the API and `hub record` show for the retired id
    assert shown["citizen_id"] == hung and "_merge" not in shown
    changes = {orjson.loads(r.value)["event_id"]: r for r in await read_to_end(hub_stack, RECORD_CHANGES.name)
               if orjson.loads(r.value)["event_id"] in (merge.event_id, late.event_id)}
    assert {r.key for r in changes.values()} == {hung.encode()} and len(changes) == 2


async def test_merge_then_unmerge_restores_both_records(hub_stack: Settings) -> None:
    hung, lan = citizen("hung"), citizen("lan")
    await produce(hub_stack, history(hung, "Nguyễn Văn Hùng") + [
        patient(lan, f"{lan}-p1", "2026-03-07T08:00:00+07:00", "Nguyễn", "Văn Hùng", phone="0912000111", mrn=TU_DU),
        encounter(lan, f"{lan}-e1", "2026-03-07T09:00:00+07:00", mrn=TU_DU, sensitivity=("hiv",))])
    await settled(hub_stack)
    before = await records(hub_stack, [hung, lan])
    merge = merged_event(hung, lan, f"{hung}-a40", "2026-04-01T08:00:00+07:00", "2026-04-01T08:00:00+07:00")
    await produce(hub_stack, [merge])
    await settled(hub_stack)
    merged = (await records(hub_stack, [hung]))[hung]
    assert merged["demographics"]["telecom"] == [{"system": "phone", "value": "0912000111"}]  # Lan's is newer
    unmerge = unmerged_event(hung, lan, f"{hung}-review", "2026-04-02T08:00:00+07:00", "2026-04-02T08:00:00+07:00")
    await produce(hub_stack, [unmerge, unmerge])
    await settled(hub_stack)
    after = await records(hub_stack, [hung, lan])
    assert content(after[hung]) == content(before[hung]) and content(after[lan]) == content(before[lan])
    assert after[hung]["version"] == merged["version"] + 1 and "_merge" not in after[hung]


async def test_a_merge_that_names_no_citizen_goes_to_the_dlq_with_the_record_code(hub_stack: Settings) -> None:
    hung = citizen("hung")
    bad = merged_event(hung, "someone", f"{hung}-bad", "2026-04-01T08:00:00+07:00", "2026-04-01T08:00:00+07:00")
    bad = Envelope(**{**{f: getattr(bad, f) for f in bad.__dataclass_fields__}, "payload": {"resourceType": "Patient"}})
    await produce(hub_stack, [bad])
    await settled(hub_stack)
    letters = [DeadLetter.from_json(r.value) for r in await read_to_end(hub_stack, DLQ.name)]
    ours = [d for d in letters if d.stage == "record" and orjson.loads(d.original)["event_id"] == bad.event_id]
    assert len(ours) == 1 and ours[0].code == "record" and "names no other citizen" in ours[0].reason


async def test_a_write_by_another_worker_between_read_and_commit_fails_the_commit_and_writes_nothing(
        hub_stack: Settings) -> None:
    """The store's optimistic transaction on real Redis: WATCH sees the other writer, EXEC writes nothing."""
    from hub.record.store import Writes, applied_key

    hung = citizen("hung")
    prefix = f"{hung}-test:"  # apart from the live records, which hub rebuild --compare checks against events
    key = record_key(hung, prefix)
    client = aioredis.from_url(hub_stack.redis_url)
    try:
        store = RedisRecordStore(client, prefix=prefix)
        async with store.transaction() as tx:
            assert await tx.load([hung]) == {hung: None}
            await client.set(key, orjson.dumps({"citizen_id": hung, "version": 7}))  # the other worker
            writes = Writes(records={hung: {"citizen_id": hung, "version": 1}}, applied={hung: ["e1"]},
                            outbox={0: [(5, b'{"event_id": "e1"}')]})
            assert not await tx.commit(writes)
        assert orjson.loads(await client.get(key))["version"] == 7
        assert not await client.exists(applied_key(hung, prefix))
        async with store.transaction() as tx:  # computed again from the new state, it commits
            assert (await tx.load([hung]))[hung]["version"] == 7
            assert await tx.commit(Writes(records={hung: {"citizen_id": hung, "version": 8}}, applied={hung: ["e1"]}))
        assert orjson.loads(await client.get(key))["version"] == 8
    finally:
        await client.delete(key, applied_key(hung, prefix))
        await client.aclose()


async def test_applied_sets_are_read_and_written_per_event_for_one_or_thousands_of_ids(hub_stack: Settings) -> None:
    """The applied-set scripts on real Redis: one id for a citizen, a few, and more than one call of Lua's
    unpack takes (2,500), answered per (citizen, event id) in the order asked."""
    from hub.record.store import Writes, applied_key

    hung, lan, mai = citizen("hung"), citizen("lan"), citizen("mai")
    prefix = f"{hung}-sets:"
    many = [f"e{i}" for i in range(2500)]
    client = aioredis.from_url(hub_stack.redis_url)
    try:
        store = RedisRecordStore(client, prefix=prefix)
        async with store.transaction() as tx:
            await tx.load([hung, lan, mai])
            writes = Writes(records={c: {"citizen_id": c, "version": 1} for c in (hung, lan, mai)},
                            applied={hung: ["h1"], lan: ["l1", "l2", "l3"], mai: many})
            assert await tx.commit(writes)
        assert await client.scard(applied_key(mai, prefix)) == 2500
        asked = [(hung, "h1"), (hung, "l1"), (lan, "l3"), (mai, "e0"), (mai, "e2499"), (mai, "e2500"),
                 (lan, "l2"), *[(mai, e) for e in many[1000:1003]], (lan, "l9")]
        async with store.transaction() as tx:
            found, outbox = await tx.lookups(asked, {0})
        assert found == [True, False, True, True, True, False, True, True, True, True, False] and outbox == {0: {}}
    finally:
        await client.delete(*[k for c in (hung, lan, mai) for k in (record_key(c, prefix), applied_key(c, prefix))])
        await client.aclose()


def stream(pairs: int, singles: int, rng: random.Random) -> tuple[list[Envelope], list[str]]:
    """Thousands of events: histories (shuffled, some duplicated), merges (some undone), events for retired ids."""
    people = [citizen(f"p{i}") for i in range(singles + 2 * pairs)]
    events = [e for cid in people for e in history(cid, "Lê Thị Mai")]
    events += rng.sample(events, len(events) // 10)  # redeliveries
    rng.shuffle(events)
    tail: list[Envelope] = []
    for n in range(pairs):
        survivor, retired = people[2 * n], people[2 * n + 1]
        tail.append(merged_event(survivor, retired, f"m{n}", "2026-05-01T08:00:00+07:00", "2026-05-01T08:00:00+07:00"))
        tail.append(observation(retired, f"{retired}-late", "2026-05-02T08:00:00+07:00", mrn=TU_DU, value=n))
        if n % 3 == 0:
            tail.append(unmerged_event(survivor, retired, f"u{n}", "2026-05-03T08:00:00+07:00",
                                       "2026-05-03T08:00:00+07:00"))
    return events + tail, people


async def until_some_applied(settings: Settings, people: list[str], timeout_s: float = 60) -> int:
    """Wait until the record role is writing this stream (so the kill lands mid-stream); how many records exist."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        written = sum(r is not None for r in (await records(settings, people)).values())
        if written:
            return written
        await asyncio.sleep(0.1)
    raise AssertionError("the record role applied nothing of the stream")


@pytest.mark.disruptive
async def test_record_worker_killed_mid_stream_ends_equal_to_a_clean_rebuild(hub_stack: Settings) -> None:
    events, people = stream(pairs=30, singles=600, rng=random.Random(5))
    assert len(events) > 3000
    chunks = [events[i:i + 250] for i in range(0, len(events), 250)]
    for n, chunk in enumerate(chunks):
        await produce(hub_stack, chunk)
        if n == len(chunks) // 3:
            applied = await until_some_applied(hub_stack, people)
            assert await asyncio.to_thread(local.stop_role, hub_stack, "record", 5.0, signal.SIGKILL)
            restart = asyncio.create_task(asyncio.to_thread(hub_cli, "up", "--timeout", "90"))
        await asyncio.sleep(0.2)
    await restart
    await wait_until_idle(hub_stack, timeout_s=180)
    got = await records(hub_stack, people)
    assert all(got.values()), "every citizen has a record (or a redirect)"
    compared = await asyncio.to_thread(hub_cli, "rebuild", "--compare", "--json", check=False)
    print(f"killed with {applied}/{len(people)} citizens' records written, {len(events)} events in all; "
          f"{compared.stderr.strip()}")
    result = orjson.loads(compared.stdout)
    # No content differences at all, this stream's citizens' or other tests' (the MPI merges and unmerges of
    # test_identity_mpi_live included: hub rebuild interleaves partitions by record time, and events of a moved
    # source record name their member). Other tests of the session wrote records into Redis by hand: only live.
    ours = set(people)
    assert result["only_rebuilt"] == [] and result["differ"] == [], result
    assert not ours & set(result["only_live"]), result
    assert compared.returncode == (1 if result["only_live"] or result["differ"] else 0)
    refused = await asyncio.to_thread(hub_cli, "rebuild", "--replace", check=False)
    assert refused.returncode == 2 and "record role is running" in refused.stderr
    assert "rebuilt from" not in refused.stdout + refused.stderr  # refused before replaying anything
    before = await records(hub_stack, people)
    assert await asyncio.to_thread(local.stop_role, hub_stack, "record")  # SIGTERM: offsets committed
    try:
        swapped = await asyncio.to_thread(hub_cli, "rebuild", "--replace", check=False)
        assert swapped.returncode == 0 and "replaced" in swapped.stdout, swapped.stdout + swapped.stderr
        after = await records(hub_stack, people)
        assert {c: content(r) for c, r in after.items()} == {c: content(r) for c, r in before.items()}
    finally:
        await asyncio.to_thread(hub_cli, "up", "--timeout", "90")
