"""The bulk producer (librdkafka) on the real broker: offsets it reports are where the records are, keys land
on the partition aiokafka (the listener, the stream roles) picks for them, and records sent without a
confirmation each are all acknowledged by ``confirm_queued``."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner

from hub.kafka import BulkProducer
from hub.settings import Settings
from hub.topics import EMR_RAW
from tests.integration.kafka_tools import read_until

pytestmark = pytest.mark.integration


async def test_offsets_partitions_and_unconfirmed_sends(hub_stack: Settings) -> None:
    producer = BulkProducer(hub_stack, "hssk-test-bulk")
    quiet = producer.sibling(report_successes=False)
    await producer.connect()
    await quiet.connect()
    try:
        keys = [f"bệnh-nhân-{i}".encode() for i in range(12)]
        where = await producer.write_many([(EMR_RAW.name, b"bulk-" + k, k, [("file", b"t.csv")]) for k in keys])
        partitions = sorted(range(hub_stack.topic_partitions))
        assert [p for p, _o in where] == [DefaultPartitioner()(k, partitions, partitions) for k in keys]
        quiet.queue_many([(EMR_RAW.name, b"quiet-" + k, k, ()) for k in keys])
        await quiet.confirm_queued()
    finally:
        await quiet.stop()
        await producer.stop()
    records = await read_until(hub_stack, EMR_RAW.name, lambda recs: (
        {(r.partition, r.offset) for r in recs} >= set(where)
        and sum(r.value.startswith(b"quiet-") for r in recs) >= len(keys)))
    by_position = {(r.partition, r.offset): r for r in records}
    for key, position in zip(keys, where):
        record = by_position[position]
        assert record.key == key and record.value == b"bulk-" + key and dict(record.headers)["file"] == b"t.csv"
    assert sum(r.value.startswith(b"quiet-") for r in records) == len(keys)
