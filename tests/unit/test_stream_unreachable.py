"""A stage whose store is unreachable (Redis restarting) runs its batch again instead of dead-lettering it,
and a batch run again gives the answers a first clean run would have given (hub.stream.app, hub.stream.record)."""

from __future__ import annotations

import pytest
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError

from hub.errors import TranslateError
from hub.stream import app
from hub.stream.record import RecordStage
from tests.unit.test_record_stage import HUNG_PATIENT, LAN_PATIENT, MERGE, MemoryRecordStore, incoming


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app, "RETRY_FIRST_S", 0.0)


class TestUntilReachable:
    async def test_a_raised_connection_error_runs_the_batch_again(self) -> None:
        calls = []

        async def step() -> list:
            calls.append(1)
            if len(calls) < 3:
                raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
            return [["ok"], ["ok"]]

        assert await app._until_reachable("identity", step, 2) == [["ok"], ["ok"]] and len(calls) == 3

    async def test_one_event_answered_with_an_unreachable_error_runs_the_whole_batch_again(self) -> None:
        answers = iter([[["ok"], BusyLoadingError("Redis is loading the dataset in memory")], [["ok"], ["ok"]]])

        async def step() -> list:
            return next(answers)

        assert await app._until_reachable("record", step, 2) == [["ok"], ["ok"]]

    async def test_any_other_failure_is_every_events_answer_and_an_event_error_stays_its_own(self) -> None:
        async def broken() -> list:
            raise ValueError("a bug")

        [a, b] = await app._until_reachable("identity", broken, 2)
        assert isinstance(a, ValueError) and a is b
        bad_event = TranslateError("PID-3 missing")

        async def one_bad() -> list:
            return [["ok"], bad_event]

        assert await app._until_reachable("translate", one_bad, 2) == [["ok"], bad_event]

    async def test_an_after_batch_hook_is_retried_when_unreachable_and_otherwise_raises(self) -> None:
        calls = []

        async def hook() -> None:
            calls.append(1)
            if len(calls) == 1:
                raise ConnectionResetError("reset by peer")

        assert await app._until_reachable("record", hook, None) is None and len(calls) == 2

        async def bug() -> None:
            raise KeyError("x")

        with pytest.raises(KeyError):
            await app._until_reachable("record", bug, None)


class FlakyStore(MemoryRecordStore):
    """The second segment's commit finds Redis gone, once."""

    def __init__(self) -> None:
        super().__init__()
        self.commits = 0

    def transaction(self):
        tx = super().transaction()
        commit = tx.commit

        async def flaky(writes):
            self.commits += 1
            if self.commits == 2:
                raise RedisConnectionError("Connection closed by server.")
            return await commit(writes)

        tx.commit = flaky
        return tx


async def test_a_record_batch_run_again_after_redis_failed_mid_batch_publishes_every_change_once() -> None:
    """Segment one committed before Redis went away; run again, its changes come from the outbox, so the
    published changes are those of a clean run (none lost, none twice) and every record version is right."""
    batch = incoming([HUNG_PATIENT, LAN_PATIENT, MERGE])  # the merge is a segment of its own
    clean_store = MemoryRecordStore()
    clean = await RecordStage(clean_store).step(batch)

    store = FlakyStore()
    stage = RecordStage(store)
    again = await app._until_reachable("record", lambda: stage.step(batch), len(batch))
    assert store.commits > 2  # the failed commit, then the batch again
    assert [[o.value for o in r] for r in again] == [[o.value for o in r] for r in clean]
    assert store.records == clean_store.records
    await stage.save_batch()
    assert store.outbox == {0: {}}
