"""After a crash: settle the dedup markers the dead listener left pending, using hl7v2.raw as the truth.

A pending marker means "the Kafka write was in flight". If the record is on hl7v2.raw (same facility,
application, control id and content hash in its headers) the marker is confirmed, so the sender's resend is
absorbed; otherwise it is released, so the resend is stored. Runs before the listener accepts connections.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors.mllp.dedup import HASH_HEADER, DedupStore, message_key
from hub.logging import get_logger
from hub.settings import Settings
from hub.topics import HL7V2_RAW

log = get_logger("mllp.recover")


async def reconcile(settings: Settings, dedup: DedupStore) -> tuple[int, int]:
    """Return (confirmed, released). Markers younger than the ACK timeout may belong to a live replica's
    write in flight, so this waits until every marker it settles is older than that."""
    grace_s = settings.ack_timeout_s + 1
    pending = await dedup.orphaned(older_than_s=0)
    if not pending:
        return 0, 0
    youngest_ms = max(ts for ts, _ in pending.values())
    wait_s = grace_s - (time.time() - youngest_ms / 1000)
    if wait_s > 0:
        await asyncio.sleep(wait_s)
    pending = await dedup.orphaned(older_than_s=grace_s)
    found = await _stored_keys(settings, dedup.secret, pending, min(ts for ts, _ in pending.values()))
    for key, (_, value) in pending.items():
        await dedup.resolve(key, value, reached_kafka=key in found)
    log.info("dedup markers settled after restart", confirmed=len(found), released=len(pending) - len(found))
    return len(found), len(pending) - len(found)


async def _stored_keys(settings: Settings, secret: bytes, pending: dict[str, tuple[int, str]], since_ms: int) -> set[str]:
    """Keys of pending markers whose message is on hl7v2.raw (scanned from shortly before ``since_ms``)."""
    # Subscribed at construction so start() loads this topic's metadata (``topics()`` fetches metadata into a
    # copy the consumer does not keep, leaving partitions_for_topic empty); then assigned by hand, no group.
    consumer = AIOKafkaConsumer(HL7V2_RAW.name, bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    found: set[str] = set()
    try:
        partitions = consumer.partitions_for_topic(HL7V2_RAW.name)
        if not partitions:
            raise OSError(f"no partition metadata for {HL7V2_RAW.name}")
        tps = [TopicPartition(HL7V2_RAW.name, p) for p in sorted(partitions)]
        consumer.unsubscribe()
        consumer.assign(tps)
        starts = await consumer.offsets_for_times({tp: max(0, since_ms - 60_000) for tp in tps})
        ends = await consumer.end_offsets(tps)
        todo = {tp for tp in tps if starts.get(tp) is not None and starts[tp].offset < ends[tp]}
        for tp in todo:
            consumer.seek(tp, starts[tp].offset)
        while todo:
            batches = await consumer.getmany(*todo, timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    headers = {k: v.decode(errors="replace") for k, v in record.headers}
                    key = message_key(secret, headers.get("hl7.sending_application", ""),
                                      headers.get("hl7.sending_facility", ""), headers.get("hl7.control_id", ""))
                    if key in pending and pending[key][1].endswith("|" + headers.get(HASH_HEADER, "-")):
                        found.add(key)
            todo = {tp for tp in todo if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return found
