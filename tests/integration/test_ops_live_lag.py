"""Consumer lag on the real broker is exact: produce N, consume M and commit -> lag N-M on that partition, with
the age of the oldest unread message; 0 and 0 s once the group catches up. Also `hub lag` in its three formats."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata

from hub.ops import lag
from hub.settings import REPO_ROOT, Settings
from tests.conftest import TEST_ENV, hub_cli
from tests.integration.kafka_tools import wait_until_idle

pytestmark = pytest.mark.integration

HUB = (sys.executable, "-m", "hub.cli")


def ops_cli(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`hub lag|dlq ...` against the test stack."""
    return hub_cli(*args, check=check, timeout=timeout)


async def _topic(settings: Settings, partitions: int) -> str:
    name = f"ops-lag-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    return name


async def _produce(settings: Settings, topic: str, counts: dict[int, int]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for partition, n in counts.items():
            for i in range(n):
                await producer.send_and_wait(topic, f"Nguyễn Thị Mai {i}".encode(), partition=partition)
    finally:
        await producer.stop()


async def _consume_and_commit(settings: Settings, group: str, topic: str, counts: dict[int, int]) -> None:
    """Read exactly counts[p] records from each partition's start and commit there, as a group member would."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in counts]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
            for _ in range(counts[tp.partition]):
                await consumer.getone(tp)
        await consumer.commit({tp: OffsetAndMetadata(counts[tp.partition], "") for tp in tps})
    finally:
        await consumer.stop()


async def test_lag_is_exact_per_partition_in_messages_and_seconds(hub_stack: Settings) -> None:
    topic = await _topic(hub_stack, 2)
    group = f"ops-lag-group-{uuid.uuid4().hex[:6]}"
    await _produce(hub_stack, topic, {0: 10, 1: 3})
    produced_at = time.time()
    await _consume_and_commit(hub_stack, group, topic, {0: 4, 1: 3})
    await asyncio.sleep(1.2)

    rows = {(r.topic, r.partition): r for r in await lag.measure(hub_stack, [group])}
    assert set(rows) == {(topic, 0), (topic, 1)}
    behind, caught_up = rows[(topic, 0)], rows[(topic, 1)]
    assert (behind.log_end_offset, behind.committed_offset, behind.lag) == (10, 4, 6)
    assert (caught_up.log_end_offset, caught_up.committed_offset, caught_up.lag) == (3, 3, 0)
    # The oldest unread record (offset 4) was written before produced_at and read >= 1.2 s after it.
    assert 1.2 <= behind.lag_seconds <= time.time() - produced_at + 5
    assert caught_up.lag_seconds == 0.0

    await _consume_and_commit(hub_stack, group, topic, {0: 10})
    [row] = [r for r in await lag.measure(hub_stack, [group]) if r.partition == 0]
    assert (row.committed_offset, row.lag, row.lag_seconds) == (10, 0, 0.0)


async def test_every_group_is_listed_and_the_roles_even_before_they_commit(hub_stack: Settings) -> None:
    topic = await _topic(hub_stack, 1)
    group = f"ops-lag-all-{uuid.uuid4().hex[:6]}"
    await _produce(hub_stack, topic, {0: 2})
    await _consume_and_commit(hub_stack, group, topic, {0: 1})
    await wait_until_idle(hub_stack)
    rows = await lag.measure(hub_stack)
    groups = {r.group for r in rows}
    assert {group, "hssk-translator", "hssk-identity", "hssk-record", "hssk-fanout"} <= groups
    roles = [r for r in rows if r.group in lag.ROLE_GROUPS]
    assert {(r.group, r.topic) for r in roles} == set(lag.ROLE_GROUPS.items())
    assert {r.partition for r in roles if r.group == "hssk-translator"} == set(range(hub_stack.topic_partitions))
    assert all(r.lag == 0 and r.lag_seconds == 0.0 for r in roles)  # idle: caught up everywhere
    assert [(r.lag, r.committed_offset) for r in rows if r.group == group] == [(1, 1)]


async def test_hub_lag_prints_a_table_json_and_prometheus_text(hub_stack: Settings) -> None:
    topic = await _topic(hub_stack, 1)
    group = f"ops-lag-cli-{uuid.uuid4().hex[:6]}"
    await _produce(hub_stack, topic, {0: 5})
    await _consume_and_commit(hub_stack, group, topic, {0: 2})

    table = ops_cli("lag", "--group", group).stdout.splitlines()
    assert table[0].split() == ["GROUP", "TOPIC", "PARTITION", "LOG-END", "COMMITTED", "LAG", "LAG-SECONDS"]
    assert table[1].split()[:6] == [group, topic, "0", "5", "2", "3"]
    assert float(table[1].split()[6]) > 0

    [row] = json.loads(ops_cli("lag", "--json", "--group", group).stdout)
    assert {k: row[k] for k in ("group", "topic", "partition", "log_end_offset", "committed_offset", "lag")} == {
        "group": group, "topic": topic, "partition": 0, "log_end_offset": 5, "committed_offset": 2, "lag": 3}

    text = ops_cli("lag", "--prometheus", "--group", group).stdout.splitlines()
    assert f'kafka_consumergroup_group_lag{{group="{group}",partition="0",topic="{topic}"}} 3.0' in text
    assert f'kafka_consumergroup_group_max_lag{{group="{group}"}} 3.0' in text
    assert any(line.startswith(f'kafka_consumergroup_group_lag_seconds{{group="{group}",partition="0",topic="{topic}"}} ')
               and float(line.rsplit(" ", 1)[1]) > 0 for line in text)


async def test_metrics_text_reports_the_roles_caught_up_and_the_dlq_size(hub_stack: Settings) -> None:
    await wait_until_idle(hub_stack)
    text = (await lag.metrics_text(hub_stack)).splitlines()
    for p in range(hub_stack.topic_partitions):
        assert f'kafka_consumergroup_group_lag{{group="hssk-translator",partition="{p}",topic="hl7v2.raw"}} 0.0' in text
        assert (f'kafka_consumergroup_group_lag_seconds{{group="hssk-record",partition="{p}",topic="events.citizen"}} 0.0'
                in text)
    assert 'kafka_consumergroup_group_max_lag{group="hssk-fanout"} 0.0' in text
    assert any(line.startswith("hssk_dlq_records ") for line in text)


def test_hub_lag_watch_repeats_until_interrupted(hub_stack: Settings) -> None:
    proc = subprocess.Popen([*HUB, "lag", "--watch", "0.3", "--group", "hssk-translator"],
                            env={**os.environ, **TEST_ENV}, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        time.sleep(4)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert out.count("GROUP  ") >= 2  # the table was printed more than once


def test_the_lag_exporter_serves_metrics_over_http(hub_stack: Settings) -> None:
    """`hub lag --serve` answers GET /metrics with the roles' lag, measured at each scrape."""
    import urllib.request

    port = hub_stack.lag_exporter_port
    proc = subprocess.Popen([*HUB, "lag", "--serve"], env={**os.environ, **TEST_ENV},
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"lag exporter: http://{hub_stack.metrics_host}:{port}/metrics"
        deadline, text = time.monotonic() + 30, ""
        while time.monotonic() < deadline and not text:
            try:
                with urllib.request.urlopen(f"http://{hub_stack.metrics_host}:{port}/metrics", timeout=15) as resp:
                    assert resp.headers["Content-Type"].startswith("text/plain")
                    text = resp.read().decode()
            except OSError:
                time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    lines = text.splitlines()
    assert "# TYPE kafka_consumergroup_group_lag gauge" in lines
    for group, topic in lag.ROLE_GROUPS.items():
        assert any(line.startswith(f'kafka_consumergroup_group_lag{{group="{group}",partition="0",topic="{topic}"}} ')
                   for line in lines)
        assert any(line.startswith(f'kafka_consumergroup_group_max_lag{{group="{group}"}} ') for line in lines)


async def test_hub_status_lag_agrees_with_the_lag_module(hub_stack: Settings) -> None:
    """`hub status` still reports each role's total lag (now measured by hub.ops.lag)."""
    await wait_until_idle(hub_stack)
    status = json.loads(hub_cli("status", "--json").stdout)
    assert {(g["group"], g["topic"], g["lag"]) for g in status["lag"]} == {
        (group, topic, 0) for group, topic in lag.ROLE_GROUPS.items()}
    assert all(set(g["partitions"]) == {str(p) for p in range(hub_stack.topic_partitions)} for g in status["lag"])


async def test_groups_behind_at_different_points_of_one_partition_each_get_their_own_age(hub_stack: Settings) -> None:
    topic = await _topic(hub_stack, 1)
    await _produce(hub_stack, topic, {0: 10})
    groups = {f"ops-lag-multi-{uuid.uuid4().hex[:6]}": n for n in (2, 6, 9)}
    for group, n in groups.items():
        await _consume_and_commit(hub_stack, group, topic, {0: n})
    rows = {r.group: r for r in await lag.measure(hub_stack, list(groups))}
    assert [rows[g].lag for g in groups] == [8, 4, 1]
    ages = [rows[g].lag_seconds for g in groups]
    assert all(a is not None and a > 0 for a in ages) and ages == sorted(ages, reverse=True)  # older offset, older


async def test_offsets_left_on_a_deleted_topic_do_not_break_the_measurement(hub_stack: Settings) -> None:
    topic = await _topic(hub_stack, 1)
    group = f"ops-lag-gone-{uuid.uuid4().hex[:6]}"
    await _produce(hub_stack, topic, {0: 3})
    await _consume_and_commit(hub_stack, group, topic, {0: 1})
    admin = AIOKafkaAdminClient(bootstrap_servers=hub_stack.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = await lag.measure(hub_stack)
        if not [r for r in rows if r.group == group]:
            break
        await asyncio.sleep(0.5)
    assert not [r for r in rows if r.group == group]
    assert {r.group for r in rows} >= set(lag.ROLE_GROUPS)
