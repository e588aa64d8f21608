"""End-to-end ADT: MLLP send -> ACK -> translate -> identity -> record in Redis -> record.changes.

Senders run concurrently, each on its own connection, one message in flight per connection (as hospital
engines do). ACK latency is measured per message at the sender; end-to-end latency is from the send to the
moment the citizen's change appears on record.changes (the record stage publishes the change and saves the
record in the same batch). The baseline row is the bare transport: the same bytes produced to a topic
with aiokafka (acks=all) and read back by a consumer, no processing: the ceiling the hub's stages sit under.
"""

from __future__ import annotations

import asyncio
import random
import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.table import Row, percentile
from connectors.hl7v2.parse import decode, parse, read_header
from connectors.mllp.framing import Frame, FrameDecoder, frame
from hub.settings import Settings
from hub.synthetic import adt, person
from hub.topics import RECORD_CHANGES


def make_messages(n: int, run_tag: str) -> list[bytes]:
    """About three messages per citizen (A01 then A08s), each later in time and with a new phone number,
    so every message changes the record and shows up on record.changes."""
    rng = random.Random(run_tag)
    people = [person(rng) for _ in range(max(1, n // 3))]
    messages = []
    for i in range(n):
        nth = i // len(people)  # how many messages this person had before
        p = people[i % len(people)]
        messages.append(adt(p, "A01" if nth == 0 else "A08", f"{run_tag}-{i:06d}", visit=f"V{i % len(people)}",
                            when=f"2026112{2 + nth}083000", phone=f"09{i:08d}"))
    return messages


async def _sender(host: str, port: int, messages: list[bytes], sent_at: dict[str, float], ack_ms: list[float],
                  codes: dict[str, int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    decoder = FrameDecoder(1 << 20)
    try:
        for raw in messages:
            control_id = read_header(parse(decode(raw))).control_id
            t0 = time.perf_counter()
            sent_at[control_id] = t0
            writer.write(frame(raw))
            await writer.drain()
            frames: list[Frame] = []
            while not frames:
                frames = [f for f in decoder.feed(await reader.read(65536)) if isinstance(f, Frame)]
            ack_ms.append((time.perf_counter() - t0) * 1000)
            code = parse(decode(frames[0].payload)).first("MSA")[1]
            codes[code] = codes.get(code, 0) + 1
    finally:
        writer.close()


async def _watch_changes(settings: Settings, expected: set[str], seen_at: dict[str, float], timeout_s: float) -> None:
    """Record when the first change caused by each control id shows up on record.changes."""
    consumer = AIOKafkaConsumer(RECORD_CHANGES.name, bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                auto_offset_reset="latest", enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.seek_to_end()
        deadline = time.perf_counter() + timeout_s
        while expected - seen_at.keys() and time.perf_counter() < deadline:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                now = time.perf_counter()
                for rec in records:
                    mid = orjson.loads(rec.value)["source"]["message_id"]
                    seen_at.setdefault(mid, now)
    finally:
        await consumer.stop()


async def hub_e2e(settings: Settings, n: int, connections: int) -> Row:
    tag = f"E2E{int(time.time())}"
    messages = make_messages(n, tag)
    sent_at: dict[str, float] = {}
    seen_at: dict[str, float] = {}
    ack_ms: list[float] = []
    codes: dict[str, int] = {}
    ids = {read_header(parse(decode(m))).control_id for m in messages}
    watcher = asyncio.create_task(_watch_changes(settings, ids, seen_at, timeout_s=300))
    await asyncio.sleep(1.0)  # let the watcher's consumer reach the end of the topic first
    chunks = [messages[i::connections] for i in range(connections)]
    t0 = time.perf_counter()
    await asyncio.gather(*(_sender(settings.mllp_host, settings.mllp_port, c, sent_at, ack_ms, codes) for c in chunks))
    acked_s = time.perf_counter() - t0
    await watcher
    done_s = max(seen_at.values()) - t0 if seen_at else float("nan")
    e2e = [(seen_at[c] - sent_at[c]) * 1000 for c in seen_at if c in sent_at]
    note = f"{connections} connections; ACKs {codes}; {len(seen_at)}/{n} reached record.changes; " \
           f"ACK phase {n / acked_s:,.0f} msg/s"
    return Row("hub: MLLP -> record", n, done_s,
               {"ack p50": percentile(ack_ms, 50), "ack p99": percentile(ack_ms, 99),
                "e2e p50": percentile(e2e, 50), "e2e p99": percentile(e2e, 99)}, note)


BASELINE_TOPIC = "bench.baseline"  # the bench's own scratch topic, so the hub's roles never see these bytes


async def kafka_round_trip(settings: Settings, n: int) -> Row:
    """Baseline: produce the same bytes with acks=all and consume them back, nothing else."""
    messages = make_messages(n, "BASE")
    topic = BASELINE_TOPIC
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            await admin.create_topics([NewTopic(topic, settings.topic_partitions, settings.topic_replication)])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                auto_offset_reset="latest", enable_auto_commit=False)
    await consumer.start()
    await consumer.seek_to_end()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=1)
    await producer.start()
    received = 0
    t0 = time.perf_counter()
    try:
        futures = [await producer.send(topic, m) for m in messages]
        await asyncio.gather(*futures)
        while received < n and time.perf_counter() - t0 < 120:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                received += len(records)
    finally:
        await producer.stop()
        await consumer.stop()
    return Row("baseline: aiokafka produce+consume", n, time.perf_counter() - t0, {},
               f"{received}/{n} read back; no processing")
