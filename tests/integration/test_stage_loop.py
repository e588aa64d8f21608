"""The stage loop on the real broker: an output Kafka refuses for good sends its event to hub.dlq, and the
stage goes on (before, the batch was run again forever and the stage stalled)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from hub.ops import dlq
from hub.settings import Settings
from hub.stream.app import Incoming, Outgoing, Result, StageLoop
from hub.topics import DLQ, Topic
from tests.integration.kafka_tools import read_until

pytestmark = pytest.mark.integration

OUT_LIMIT = 200_000  # the output topic's max.message.bytes: a 300 kB output is refused by the broker


def _topic(name: str) -> Topic:
    return Topic(name, "test key", 3_600_000, "stage loop test topic")


async def _create(settings: Settings, *topics: NewTopic) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(list(topics))
    finally:
        await admin.close()


async def test_an_output_kafka_refuses_for_good_dead_letters_its_event_and_the_stage_goes_on(
        hub_stack: Settings) -> None:
    run = uuid.uuid4().hex[:8]
    source, out = _topic(f"test.stage-in.{run}"), _topic(f"test.stage-out.{run}")
    await _create(hub_stack, NewTopic(source.name, 1, 1),
                  NewTopic(out.name, 1, 1, topic_configs={"max.message.bytes": str(OUT_LIMIT)}))
    stage = f"stage-loop-test-{run}"

    async def step(batch: list[Incoming]) -> list[Result]:
        answers: list[Result] = []
        for incoming in batch:
            name = incoming.value.decode()
            if name.startswith("broker-refuses"):  # within the producer's limit, over the topic's
                answers.append([Outgoing(out, b"k", b"small " + incoming.value),
                                Outgoing(out, b"k", b"x" * (OUT_LIMIT + 100_000))])
            elif name.startswith("client-refuses"):  # over the producer's own 10 MiB limit
                answers.append([Outgoing(out, b"k", b"y" * (11 * 1024 * 1024))])
            else:
                answers.append([Outgoing(out, b"k", f"copy of {name}".encode())])
        return answers

    loop = StageLoop(f"hssk-test-{run}", stage, source, step, None, hub_stack)
    task = asyncio.create_task(loop.run())
    producer = AIOKafkaProducer(bootstrap_servers=hub_stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for value in ["Nguyễn Văn An", "broker-refuses 1", "Trần Thị Bình", "client-refuses 1", "Lê Hoàng Cường"]:
            await producer.send_and_wait(source.name, value.encode(), key=b"k")
        copies = await read_until(hub_stack, out.name,
                                  lambda rs: any(r.value == "copy of Lê Hoàng Cường".encode() for r in rs))
        letters = await read_until(
            hub_stack, DLQ.name,
            lambda rs: sum(1 for r in rs if dict(r.headers).get("stage") == stage.encode()) >= 2)
        # The stage commits past everything while it runs (its input is idle now): nothing is replayed forever.
        # Checked before it is stopped: seeing the outputs does not mean the last batch has finished.
        check = AIOKafkaAdminClient(bootstrap_servers=hub_stack.kafka_bootstrap)
        await check.start()
        try:
            tp = TopicPartition(source.name, 0)
            for _ in range(50):
                committed = await check.list_consumer_group_offsets(f"hssk-test-{run}")
                if tp in committed and committed[tp].offset == 5:
                    break
                await asyncio.sleep(0.2)
            assert committed[tp].offset == 5
        finally:
            await check.close()
    finally:
        await producer.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    values = [r.value for r in copies]
    for name in ["Nguyễn Văn An", "Trần Thị Bình", "Lê Hoàng Cường"]:
        assert f"copy of {name}".encode() in values, "the healthy events around the refused ones still flow"
    assert not any(len(v) > OUT_LIMIT for v in values)
    entries = [dlq.parse_entry(r) for r in letters if dict(r.headers).get("stage") == stage.encode()]
    by_original = {e.original: e for e in entries}
    assert set(by_original) == {b"broker-refuses 1", b"client-refuses 1"}
    for entry in entries:
        assert entry.code == "output-refused"
        assert "MessageSizeTooLargeError" in entry.reason
        assert entry.source_topic == source.name
