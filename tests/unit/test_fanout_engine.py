"""One subscription's batch delivery with stand-ins for the sink, Kafka and Redis: order per citizen while a
delivery retries, citizens side by side, refusals and exhausted retries to dlq.<name>, health-book freshness."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from hub.envelope import DeadLetter, Envelope, Source, Subject
from hub.fanout import config
from hub.fanout.engine import SubscriptionRunner
from hub.fanout.formats import Outbound
from hub.fanout.sinks import Rejected, Retryable
from hub.record.apply import empty_record
from hub.record.store import record_key
from hub.settings import Settings


def subscription(fmt: str = "event", attempts: int = 5) -> config.Subscription:
    return config.loads(f'[[subscription]]\nname = "donvi"\nformat = "{fmt}"\n[subscription.delivery]\nkind = "kafka"\n'
                        f"[subscription.retry]\nmax_attempts = {attempts}\nfirst_s = 0.01\nmax_s = 0.02\n", env={})[0]


def change(citizen: str, n: int) -> Any:
    event = Envelope(event_id=f"00000000-0000-5000-8000-{n:012d}", type="encounter.recorded",
                     occurred_at="2026-11-30T08:00:00+07:00", recorded_at="2026-11-30T08:00:01+07:00",
                     source=Source("hl7v2", "79048", f"M{n}"), subject=Subject(),
                     payload={"resourceType": "Encounter", "id": f"E{n}"}, citizen_id=citizen, record_version=n)

    class Record:
        key, value, offset, timestamp, partition = citizen.encode(), event.to_json(), n, 1_000 + n, 0

    return Record()


class Sink:
    """Fails as scripted per event id (a list of exceptions to raise first), records the order of successes."""

    def __init__(self, script: dict[str, list[Exception]] | None = None) -> None:
        self.script = script or {}
        self.delivered: list[str] = []
        self.attempts: list[str] = []

    async def send(self, item: Outbound) -> None:
        doc = orjson.loads(item.body)
        ident = doc.get("event_id") or f"book:{doc['citizen_id']}"
        self.attempts.append(ident)
        await asyncio.sleep(0)
        failures = self.script.get(ident)
        if failures:
            raise failures.pop(0)
        self.delivered.append(ident)

    async def close(self) -> None:
        pass


class Producer:
    def __init__(self) -> None:
        self.written: list[tuple[str, bytes]] = []

    async def write(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = ()) -> tuple[int, int]:
        self.written.append((topic, value))
        return 0, len(self.written)


class Store:
    """The record store's surface the engine reads: ``redis.mget`` of record keys, ``load`` for redirects."""

    prefix = ""

    def __init__(self, records: dict[str, dict[str, Any]]) -> None:
        self.records = records
        self.redis = self
        self.loads: list[str] = []

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        by_key = {record_key(c): orjson.dumps(r) for c, r in self.records.items()}
        return [by_key.get(k) for k in keys]

    async def load(self, citizen_id: str) -> dict[str, Any] | None:
        self.loads.append(citizen_id)
        record = self.records.get(citizen_id)
        return self.records.get(record["merged_into"]) if record and "merged_into" in record else record


class State:
    def __init__(self) -> None:
        self.changed_calls: list[dict[str, int]] = []
        self.pushed_calls: list[list[str]] = []

    async def changed(self, name: str, changes: dict[str, int]) -> None:
        self.changed_calls.append(dict(changes))

    async def pushed(self, name: str, citizen_ids: list[str], at_ms: int) -> None:
        self.pushed_calls.append(citizen_ids)


def runner(sub: config.Subscription, sink: Sink, records: dict[str, dict[str, Any]] | None = None
           ) -> tuple[SubscriptionRunner, Producer, State]:
    producer, state = Producer(), State()
    return SubscriptionRunner(Settings(), sub, sink, producer, Store(records or {}), state), producer, state  # type: ignore[arg-type]


def event_id(n: int) -> str:
    return f"00000000-0000-5000-8000-{n:012d}"


class TestBatchDelivery:
    async def test_a_retrying_change_holds_back_only_its_own_citizen(self) -> None:
        sink = Sink({event_id(0): [Retryable("500"), Retryable("500")]})
        r, producer, _ = runner(subscription(), sink)
        await r._deliver_batch([change("cz-a", 0), change("cz-b", 1), change("cz-a", 2)], asyncio.Semaphore(16))
        assert sink.delivered.index(event_id(1)) < sink.delivered.index(event_id(0))  # cz-b did not wait
        assert [i for i in sink.delivered if i != event_id(1)] == [event_id(0), event_id(2)]  # cz-a in order
        assert sink.attempts.count(event_id(0)) == 3 and producer.written == []

    async def test_a_refusal_goes_to_the_dlq_and_the_next_change_is_delivered(self) -> None:
        sink = Sink({event_id(0): [Rejected("webhook answered 400")]})
        r, producer, _ = runner(subscription(), sink)
        await r._deliver_batch([change("cz-a", 0), change("cz-a", 1)], asyncio.Semaphore(16))
        assert sink.delivered == [event_id(1)] and sink.attempts.count(event_id(0)) == 1
        ((topic, value),) = producer.written
        letter = DeadLetter.from_json(value)
        assert topic == "dlq.donvi" and letter.stage == "fanout" and letter.code == "deliver"
        assert "400" in letter.reason and letter.source_offset == 0 and letter.headers["subscription"] == "donvi"
        assert Envelope.from_json(letter.original).event_id == event_id(0)

    async def test_exhausted_retries_go_to_the_dlq_with_the_count(self) -> None:
        sink = Sink({event_id(0): [Retryable("timeout")] * 10})
        r, producer, _ = runner(subscription(attempts=3), sink)
        await r._deliver_batch([change("cz-a", 0)], asyncio.Semaphore(16))
        assert sink.attempts == [event_id(0)] * 3
        assert DeadLetter.from_json(producer.written[0][1]).reason == "gave up after 3 attempts: timeout"

    async def test_health_book_freshness_is_marked_before_and_cleared_after_the_push(self) -> None:
        record = empty_record("cz-a")
        record["version"] = 4
        sink = Sink()
        r, _, state = runner(subscription("health-book"), sink, {"cz-a": record})
        await r._deliver_batch([change("cz-a", 0), change("cz-a", 1)], asyncio.Semaphore(16))
        assert sink.delivered == ["book:cz-a"]
        assert state.changed_calls == [{"cz-a": 1_000}] and state.pushed_calls == [["cz-a"]]

    async def test_records_are_read_in_one_go_and_a_merged_citizens_redirect_is_followed(self) -> None:
        survivor = empty_record("cz-song")
        survivor["version"] = 7
        records = {"cz-song": survivor, "cz-cu": {"citizen_id": "cz-cu", "merged_into": "cz-song"}}
        r, _, _ = runner(subscription("health-book"), Sink(), records)
        store = r.store
        loaded = await r._load(["cz-cu", "cz-song", "cz-khong"])
        assert loaded == {"cz-cu": survivor, "cz-song": survivor, "cz-khong": None}
        assert store.loads == ["cz-cu"]  # type: ignore[attr-defined]  # only the redirect costs a read of its own

    async def test_health_book_pushes_of_a_batch_are_marked_fresh_in_one_write(self) -> None:
        records = {c: empty_record(c) for c in ("cz-an", "cz-binh", "cz-chau")}
        r, _, state = runner(subscription("health-book"), Sink(), records)
        await r._deliver_batch([change("cz-an", 0), change("cz-binh", 1), change("cz-chau", 2)],
                               asyncio.Semaphore(16))
        (pushed,) = state.pushed_calls
        assert sorted(pushed) == ["cz-an", "cz-binh", "cz-chau"]

    async def test_a_failing_batch_is_retried_change_by_change(self) -> None:
        r, producer, _ = runner(subscription(), Sink())

        class Broken:
            key, value, offset, timestamp, partition = b"cz-x", b'{"event_id": 1}', 7, 0, 0

        await r._one_by_one([Broken(), change("cz-a", 1)], asyncio.Semaphore(16))
        (letter,) = [DeadLetter.from_json(v) for _, v in producer.written]
        assert letter.source_offset == 7 and letter.reason.startswith("not a canonical event")


class TestPartitionPosition:
    def test_a_never_committed_partition_starts_at_its_first_fetched_change_not_past_it(self) -> None:
        """Only delivered changes may be committed: feeding records never moves ``done`` past them."""
        from aiokafka import TopicPartition

        from hub.fanout.engine import _Partition

        part = _Partition(TopicPartition("record.changes", 0))
        part.feed([change("cz-a", 5), change("cz-a", 6)])
        assert part.done == 5
        part.feed([change("cz-a", 7)])
        assert part.done == 5 and [r.offset for r in part.take(10)] == [5, 6, 7]
        part.reset(2)  # a replay
        assert (part.done, part.generation, list(part.queue)) == (2, 1, [])


def test_a_stuck_partition_stops_fetching_after_one_batch() -> None:
    """A dead subscriber's partition keeps one batch queued, not HIGH_WATER: it costs the others nothing more."""
    from aiokafka import TopicPartition

    from hub.fanout.engine import BATCH, HIGH_WATER, STUCK_S, _Partition

    part = _Partition(TopicPartition("record.changes", 0))
    part.queue.extend(range(BATCH))
    assert not part.full(now=100.0)  # idle: prefetch up to HIGH_WATER
    part.busy_since = 100.0
    assert not part.full(now=100.0 + STUCK_S / 2)  # a batch in flight, not yet stuck
    assert part.full(now=100.0 + STUCK_S)
    part.busy_since = None
    part.queue.extend(range(HIGH_WATER - BATCH))
    assert part.full(now=200.0)
