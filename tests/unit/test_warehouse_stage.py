"""The warehouse stage's shell around the pure plan: what goes to the DLQ, and how it waits out an outage."""

from __future__ import annotations

import asyncpg
import pytest

from hub.stream import warehouse as stage_mod
from hub.stream.app import Incoming
from hub.stream.warehouse import WarehouseStage
from hub.warehouse.errors import MappingError, WarehouseError
from hub.warehouse.plan import Plan
from tests.unit.test_warehouse_plan import encounter


def incoming(value: bytes, offset: int = 0) -> Incoming:
    return Incoming(b"c", value, {}, "events.citizen", 0, offset, 0.0)


class FakeWarehouse:
    """Stands in for hub.warehouse.writer.Warehouse: records plans, fails as told."""

    def __init__(self, failures: list[BaseException | None]) -> None:
        self.failures = failures
        self.written: list[Plan] = []

    async def write(self, plan: Plan) -> None:
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        self.written.append(plan)


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stage_mod, "RETRY_FIRST_S", 0.001)


def make_stage(fake: FakeWarehouse) -> WarehouseStage:
    stage = WarehouseStage("postgresql://unused")

    async def connected() -> FakeWarehouse:
        return fake

    stage._connected = connected  # type: ignore[method-assign]
    return stage


class TestStep:
    async def test_mapped_events_are_written_and_unmappable_ones_answered_with_their_error(self) -> None:
        fake = FakeWarehouse([])
        results = await make_stage(fake).step([
            incoming(encounter("ev-1", "2026-11-22T08:25:00+07:00", "in-progress")), incoming(b"garbage", 1)])
        assert results[0] == [] and isinstance(results[1], MappingError)
        assert len(fake.written) == 1 and fake.written[0].fact_count == 1

    async def test_an_outage_is_waited_out_not_dead_lettered(self, fast_retries: None) -> None:
        """Connection failures are retried until the write succeeds; no event is failed."""
        fake = FakeWarehouse([ConnectionRefusedError(), asyncpg.CannotConnectNowError("starting"), None])
        results = await make_stage(fake).step([incoming(encounter("ev-1", "2026-11-22T08:25:00+07:00", "planned"))])
        assert results == [[]] and len(fake.written) == 1 and fake.failures == []

    async def test_refused_data_falls_back_to_one_event_at_a_time(self, fast_retries: None) -> None:
        """Only the event PostgreSQL still refuses on its own goes to the DLQ."""
        fake = FakeWarehouse([asyncpg.DataError("batch"), None, asyncpg.DataError("this one")])
        results = await make_stage(fake).step([
            incoming(encounter("ev-1", "2026-11-22T08:25:00+07:00", "planned"), 0),
            incoming(encounter("ev-2", "2026-11-22T09:25:00+07:00", "planned", citizen_id="c-2"), 1)])
        assert results[0] == []
        assert isinstance(results[1], WarehouseError) and results[1].code == "warehouse"
        assert "this one" not in results[1].reason  # the server's message may quote data: only its type is kept


def test_the_warehouse_holds_only_what_its_subscription_entitles(tmp_path) -> None:
    from dataclasses import replace

    from hub.settings import Settings

    path = tmp_path / "subscriptions.toml"
    path.write_text(
        '[[subscription]]\nname = "warehouse"\nformat = "event"\nentitled = ["hiv"]\n'
        '[subscription.delivery]\nkind = "warehouse"\n\n'
        '[[subscription]]\nname = "nguoi-cao-tuoi"\nformat = "event"\nentitled = ["mental-health"]\n'
        '[subscription.delivery]\nkind = "kafka"\n', encoding="utf-8")
    settings = replace(Settings(), subscriptions_file=path)
    assert stage_mod.warehouse_entitlement(settings) == frozenset({"hiv"})  # not the Kafka one's entitlement
    path.write_text('[[subscription]]\nname = "warehouse"\n', encoding="utf-8")
    with pytest.raises(Exception, match="warehouse"):
        stage_mod.warehouse_entitlement(settings)
