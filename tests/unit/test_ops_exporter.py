"""The lag exporter's HTTP face: /metrics answers the measurement as Prometheus text, 503 when Kafka is down."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hub.errors import DeliveryError
from hub.ops.exporter import build_app
from hub.ops.lag import KafkaUnavailable, PartitionLag, render_prometheus
from hub.ops.replay import RedisLedger
from hub.settings import Settings
from tests.unit.test_ops_commands import closed_port


async def _get(measure, path: str = "/metrics") -> tuple[int, str, str]:  # noqa: ANN001
    async with TestClient(TestServer(build_app(Settings(), measure))) as client:
        response = await client.get(path)
        return response.status, response.headers.get("Content-Type", ""), await response.text()


async def test_metrics_is_the_measurement_in_prometheus_text() -> None:
    rows = [PartitionLag("hssk-identity", "events.canonical", 2, 9, 5, 4, 1.5)]

    async def measure(_: Settings) -> str:
        return render_prometheus(rows)

    status, content_type, text = await _get(measure)
    assert (status, content_type.split(";")[0]) == (200, "text/plain")
    assert 'kafka_consumergroup_group_lag{group="hssk-identity",partition="2",topic="events.canonical"} 4.0' in text


async def test_kafka_down_is_a_503_with_the_reason() -> None:
    async def measure(_: Settings) -> str:
        raise KafkaUnavailable("reading consumer lag: Kafka at 127.0.0.1:1 is not reachable (KafkaConnectionError)")

    status, _, text = await _get(measure)
    assert status == 503 and "Kafka at 127.0.0.1:1 is not reachable" in text


async def test_other_paths_are_404() -> None:
    async def measure(_: Settings) -> str:
        return ""

    assert (await _get(measure, "/"))[0] == 404


async def test_the_replay_ledger_refuses_to_work_without_redis() -> None:
    """Without its ledger a replay could run twice, so it does not run: a DeliveryError naming Redis."""
    ledger = RedisLedger(f"redis://127.0.0.1:{closed_port()}/0")
    try:
        with pytest.raises(DeliveryError, match="replay ledger .Redis at redis://127.0.0.1"):
            await ledger.claim("0/1", "pending")
    finally:
        await ledger.close()
