"""When a stage commits its offsets (hub.stream.app._Offsets): at most once an interval while batches keep
coming, at once when the input pauses or its partitions are revoked, and never an offset of an unfinished
batch. The consumer is a recorder of ``commit`` calls: the cadence is pure logic (the live loop is covered by
tests/integration/test_stage_loop.py against a real broker)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError

from hub.stream.app import _Offsets

P0, P1 = TopicPartition("events.citizen", 0), TopicPartition("events.citizen", 1)


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.fail = fail

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))
        if self.fail:
            raise CommitFailedError("the group rebalanced")


def offsets(consumer: Any, interval_s: float = 60.0) -> _Offsets:
    return _Offsets("record", consumer, interval_s)


async def test_a_busy_stage_commits_once_an_interval_with_the_newest_offset_of_each_partition() -> None:
    consumer = Recorder()
    o = offsets(consumer)
    o.done({P0: 5})
    await o.commit(due_only=True)
    o.done({P0: 9, P1: 3})
    await o.commit(due_only=True)
    assert consumer.commits == []  # batches keep coming and the interval has not passed
    o.last -= 61
    await o.commit(due_only=True)
    assert consumer.commits == [{P0: 9, P1: 3}]
    await o.commit(due_only=True)
    assert consumer.commits == [{P0: 9, P1: 3}]  # nothing new finished: no second request


async def test_an_idle_input_commits_what_finished_at_once() -> None:
    consumer = Recorder()
    o = offsets(consumer)
    await o.commit(due_only=False)
    assert consumer.commits == []  # nothing finished, nothing to commit
    o.done({P1: 12})
    await o.commit(due_only=False)
    assert consumer.commits == [{P1: 12}]


async def test_revoked_partitions_get_their_finished_offsets_before_another_worker_takes_them() -> None:
    consumer = Recorder()
    o = offsets(consumer)
    o.done({P0: 40})
    await o.on_partitions_revoked([P0])
    assert consumer.commits == [{P0: 40}]


async def test_zero_interval_commits_after_every_batch() -> None:
    consumer = Recorder()
    o = offsets(consumer, interval_s=0.0)
    for end in (1, 2, 3):
        o.done({P0: end})
        await o.commit(due_only=True)
    assert consumer.commits == [{P0: 1}, {P0: 2}, {P0: 3}]


async def test_a_refused_commit_is_not_raised_and_later_batches_are_committed() -> None:
    consumer = Recorder(fail=True)
    o = offsets(consumer)
    o.done({P0: 7})
    await o.commit(due_only=False)  # logged; those batches are replayed by the partition's next owner
    consumer.fail = False
    o.done({P0: 8})
    await o.commit(due_only=False)
    assert consumer.commits == [{P0: 7}, {P0: 8}]


async def test_a_commit_cut_short_keeps_its_offsets_for_the_last_commit_at_stop() -> None:
    """The stage is stopped (cancelled) while a commit is on its way: the final commit must still send them."""
    consumer = Recorder()
    o = offsets(consumer)
    o.done({P0: 5})

    async def cut_short(offsets: dict[TopicPartition, int]) -> None:
        raise asyncio.CancelledError

    consumer.commit = cut_short  # type: ignore[method-assign]
    with pytest.raises(asyncio.CancelledError):
        await o.commit(due_only=False)
    del consumer.commit  # the recorder again
    await o.commit(due_only=False)
    assert consumer.commits == [{P0: 5}]


async def test_offsets_that_finished_during_a_commit_stay_for_the_next_one() -> None:
    consumer = Recorder()
    o = offsets(consumer)
    o.done({P0: 5})
    recorded = consumer.commit

    async def slow(offsets: dict[TopicPartition, int]) -> None:
        o.done({P0: 9, P1: 2})  # a batch finished meanwhile (the revoke listener can commit mid-batch)
        await recorded(offsets)

    consumer.commit = slow  # type: ignore[method-assign]
    await o.commit(due_only=False)
    assert o.pending == {P0: 9, P1: 2}
