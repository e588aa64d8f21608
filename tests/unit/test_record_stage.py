"""The record stage's batch step (hub.stream.record) over an in-memory stand-in for the Redis store:
idempotent, merges and redirects inside a batch, recomputed on a conflicting write, changes kept in the outbox
until published."""

from __future__ import annotations

import orjson

from hub.envelope import Envelope
from hub.errors import HubError
from hub.identity.events import merged_event, unmerged_event
from hub.record.apply import apply
from hub.record.merge import content
from hub.record.store import Writes, outbox_field
from hub.stream.app import Incoming
from hub.stream.record import RecordStage
from tests.unit.test_record_merge import CHO_RAY, HUNG, LAN, TU_DU, encounter, observation, patient


class MemoryTransaction:
    def __init__(self, store: "MemoryRecordStore") -> None:
        self.store, self.seen = store, {}

    async def __aenter__(self) -> "MemoryTransaction":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def load(self, cids):
        self.seen.update({c: self.store.revision.get(c, 0) for c in cids})
        if self.store.before_commit:  # another worker writes between our read and our commit, once
            hook, self.store.before_commit = self.store.before_commit, None
            hook(self.store)
            self.seen.update({c: self.store.revision.get(c, 0) for c in cids if c not in self.seen})
        return {c: orjson.loads(self.store.records[c]) if c in self.store.records else None for c in cids}

    async def lookups(self, applied, partitions):
        return ([e in self.store.applied.get(c, set()) for c, e in applied],
                {p: dict(self.store.outbox.get(p, {})) for p in partitions})

    async def commit(self, writes: Writes) -> bool:
        s = self.store
        if any(s.revision.get(c, 0) != r for c, r in self.seen.items()):
            s.conflicts += 1
            return False
        for cid, record in writes.records.items():
            s.write(cid, record)
        for cid, ids in writes.applied.items():
            s.applied.setdefault(cid, set()).update(ids)
        for into, source in writes.unions:
            s.applied.setdefault(into, set()).update(s.applied.get(source, set()))
        for p, entries in writes.outbox.items():
            s.outbox.setdefault(p, {})[outbox_field(entries)] = b"\n".join(c for _, c in entries)
        return True


class MemoryRecordStore:
    def __init__(self) -> None:
        self.records: dict[str, bytes] = {}
        self.revision: dict[str, int] = {}
        self.applied: dict[str, set[str]] = {}
        self.outbox: dict[int, dict[str, bytes]] = {}  # partition -> field -> changes as JSON lines
        self.before_commit = None
        self.conflicts = 0

    def write(self, cid: str, record: dict) -> None:
        self.records[cid] = orjson.dumps(record)
        self.revision[cid] = self.revision.get(cid, 0) + 1

    def get(self, cid: str) -> dict:
        return orjson.loads(self.records[cid])

    def transaction(self) -> MemoryTransaction:
        return MemoryTransaction(self)

    async def clear_outbox(self, entries) -> None:
        for p, ids in entries.items():
            for i in ids:
                self.outbox.get(p, {}).pop(i, None)


def incoming(events: list[Envelope]) -> list[Incoming]:
    return [Incoming(e.citizen_id.encode(), e.to_json(), {}, "events.citizen", 0, i, 0.0) for i, e in enumerate(events)]


async def run(stage: RecordStage, events: list[Envelope]) -> list:
    results = await stage.step(incoming(events))
    await stage.save_batch()
    return results


HUNG_PATIENT = patient(HUNG, "h1", "2026-01-05T08:00:00+07:00", "Nguyễn", "Văn Hùng", phone="0903111222", mrn=CHO_RAY)
HUNG_NEWER = patient(HUNG, "h2", "2026-02-05T08:00:00+07:00", "Nguyễn", "Văn Hùng", phone="0903999888", mrn=CHO_RAY)
LAN_PATIENT = patient(LAN, "l1", "2026-02-10T08:00:00+07:00", "Trần", "Thị Lan", phone="0988777666", mrn=TU_DU,
                      cccd="079185004321")
MERGE = merged_event(HUNG, LAN, "review-1", "2026-03-01T08:00:00+07:00", "2026-03-01T08:00:01+07:00")
UNMERGE = unmerged_event(HUNG, LAN, "review-2", "2026-03-02T08:00:00+07:00", "2026-03-02T08:00:01+07:00")


async def test_a_batch_is_applied_once_and_each_change_published_once() -> None:
    """A duplicate inside a batch, and the same batch redelivered, add no change and no version."""
    store = MemoryRecordStore()
    stage = RecordStage(store)
    results = await run(stage, [HUNG_PATIENT, HUNG_PATIENT, HUNG_NEWER])
    assert [len(r) for r in results] == [1, 0, 1]
    assert orjson.loads(results[2][0].value)["record_version"] == 2 and store.get(HUNG)["version"] == 2
    assert await run(stage, [HUNG_PATIENT, HUNG_PATIENT, HUNG_NEWER]) == [[], [], []]
    assert store.get(HUNG)["version"] == 2 and store.outbox == {0: {}}


async def test_what_is_not_an_event_or_names_no_citizen_is_dead_lettered() -> None:
    from hub.envelope import Source, Subject

    no_link = Envelope("m0", "citizen.merged", "2026-01-01", "2026-01-01", Source("urn:hssk:mpi", "", "c"),
                       Subject(), {"resourceType": "Patient", "id": HUNG}, citizen_id=HUNG)
    bad, merge_without_link = await RecordStage(MemoryRecordStore()).step(
        [Incoming(b"k", b"{not json", {}, "t", 0, 0, 0.0), *incoming([no_link])])
    assert isinstance(bad, HubError) and "not a canonical event" in bad.reason
    assert isinstance(merge_without_link, HubError) and merge_without_link.code == "record"


async def test_an_event_whose_payload_cannot_be_applied_fails_alone() -> None:
    """An Encounter without an id is that event's DLQ entry; the events around it in the batch are applied."""
    from dataclasses import replace

    store = MemoryRecordStore()
    broken = replace(encounter(HUNG, "e-x", "2026-01-06T08:00:00+07:00", mrn=CHO_RAY), event_id="broken")
    broken = replace(broken, payload={k: v for k, v in broken.payload.items() if k != "id"})
    first, failed, last = await run(RecordStage(store), [HUNG_PATIENT, broken, HUNG_NEWER])
    assert isinstance(failed, HubError) and failed.code == "record" and "encounter.recorded" in failed.reason
    assert len(first) == len(last) == 1 and store.get(HUNG)["version"] == 2
    assert "broken" not in store.applied[HUNG]


async def test_a_change_committed_before_a_crash_is_published_again_from_the_outbox() -> None:
    store = MemoryRecordStore()
    crashed = RecordStage(store)
    first = await crashed.step(incoming([HUNG_PATIENT]))  # committed, then the worker dies before publishing
    again = await run(RecordStage(store), [HUNG_PATIENT])  # the restarted worker gets the event again
    assert again == first and store.get(HUNG)["version"] == 1
    assert await run(RecordStage(store), [HUNG_PATIENT]) == [[]]  # published now: a later duplicate is silent


async def test_a_dead_workers_outbox_field_stays_until_the_partition_is_consumed_past_it() -> None:
    """Redelivered in smaller batches, each change is published again, and the field goes only after the last."""
    store = MemoryRecordStore()
    events = [HUNG_PATIENT, HUNG_NEWER, LAN_PATIENT]
    first = await RecordStage(store).step(incoming(events))  # committed (field "0-2"), never published
    restarted = RecordStage(store)
    again = await restarted.step(incoming(events)[:1])
    await restarted.save_batch()
    assert again == first[:1] and list(store.outbox[0]) == ["0-2"]
    rest = await restarted.step(incoming(events)[1:])
    await restarted.save_batch()
    assert rest == first[1:] and store.outbox[0] == {}


async def test_merge_redirects_later_events_and_unmerge_restores_both_in_one_batch() -> None:
    store = MemoryRecordStore()
    stage = RecordStage(store)
    await run(stage, [HUNG_PATIENT, LAN_PATIENT])
    hung, lan = store.get(HUNG), store.get(LAN)
    late = observation(LAN, "l5", "2026-03-01T09:00:00+07:00", mrn=TU_DU, value=5.5)
    results = await run(stage, [MERGE, late, MERGE])
    assert [len(r) for r in results] == [1, 1, 0]
    change = orjson.loads(results[1][0].value)
    assert results[1][0].key == HUNG.encode() and change["citizen_id"] == HUNG
    assert store.get(LAN)["merged_into"] == HUNG and "obs-l5" in store.get(HUNG)["observations"]
    results = await run(stage, [UNMERGE, encounter(HUNG, "h7", "2026-03-03T08:00:00+07:00", mrn=CHO_RAY)])
    assert [len(r) for r in results] == [1, 1]
    assert content(store.get(HUNG)) == content(stage_apply(hung, "h7"))
    assert content(store.get(LAN)) == content(apply(lan, late)[0])  # Lan's late result went back to her


async def test_an_event_resolved_before_an_unmerge_and_applied_after_it_goes_to_the_member() -> None:
    """The MPI filed the event's source record under Lan before the merge (member_id); the steward's unmerge is
    applied first. The event is Lan's: her record gets it, as the warehouse files it, not Hùng's."""
    store = MemoryRecordStore()
    stage = RecordStage(store)
    await run(stage, [HUNG_PATIENT, LAN_PATIENT])
    hung, lan = store.get(HUNG), store.get(LAN)
    await run(stage, [MERGE])
    late = observation(LAN, "l6", "2026-03-01T10:00:00+07:00", mrn=TU_DU, value=6.1).with_citizen(HUNG, LAN)
    await run(stage, [UNMERGE])
    [change] = await run(stage, [late])
    assert len(change) == 1 and change[0].key == LAN.encode()
    assert orjson.loads(change[0].value)["citizen_id"] == LAN
    assert content(store.get(LAN)) == content(apply(lan, late)[0]) and "obs-l6" in store.get(LAN)["observations"]
    assert content(store.get(HUNG)) == content(hung)


async def test_while_merged_an_event_of_a_member_is_applied_to_the_survivors_group() -> None:
    store = MemoryRecordStore()
    stage = RecordStage(store)
    await run(stage, [HUNG_PATIENT, LAN_PATIENT, MERGE])
    late = observation(LAN, "l7", "2026-03-01T11:00:00+07:00", mrn=TU_DU, value=7.2).with_citizen(HUNG, LAN)
    [change] = await run(stage, [late])
    assert change[0].key == HUNG.encode() and "obs-l7" in store.get(HUNG)["observations"]
    assert store.get(LAN)["merged_into"] == HUNG


def stage_apply(record: dict, eid: str) -> dict:
    return apply(record, encounter(HUNG, eid, "2026-03-03T08:00:00+07:00", mrn=CHO_RAY))[0]


async def test_a_write_by_another_worker_between_read_and_commit_is_absorbed_by_recomputing() -> None:
    """Lan's worker applies an event while Hùng's worker merges Lan away: the event lands on Hùng."""
    store = MemoryRecordStore()
    await run(RecordStage(store), [HUNG_PATIENT, LAN_PATIENT])
    late = observation(LAN, "l6", "2026-03-01T09:00:00+07:00", mrn=TU_DU, value=6.6)

    def merge_elsewhere(s: MemoryRecordStore) -> None:
        hung, lan = s.get(HUNG), s.get(LAN)
        from hub.record.merge import merge

        survivor, redirect = merge(hung, HUNG, lan, LAN, HUNG, MERGE)
        s.write(HUNG, survivor)
        s.write(LAN, redirect)

    store.before_commit = merge_elsewhere
    [result] = await run(RecordStage(store), [late])
    assert store.conflicts == 1 and result[0].key == HUNG.encode()
    assert "obs-l6" in store.get(HUNG)["observations"] and store.get(LAN)["merged_into"] == HUNG


def test_an_outbox_field_is_named_by_its_offset_range_and_holds_citizen_and_version_by_event_id() -> None:
    from hub.record.store import outbox_changes, outbox_last, outbox_line

    lines = [(12, outbox_line("e1", HUNG, 1)), (15, outbox_line("e2", LAN, 2))]
    name = outbox_field(lines)
    assert name == "12-15" and outbox_last(name) == 15
    assert outbox_changes(b"\n".join(c for _, c in lines)) == {"e1": (HUNG, 1), "e2": (LAN, 2)}


def test_an_outbox_line_written_as_a_whole_change_is_read_as_one() -> None:
    """Outboxes written before the outbox kept only citizen and version held each change whole."""
    from hub.record.store import outbox_changes

    change = b'{"event_id":"e1","citizen_id":"cz-hung","record_version":1}'
    assert outbox_changes(change) == {"e1": change}


async def test_a_change_published_again_from_the_outbox_is_the_bytes_first_returned() -> None:
    """Several events of two citizens committed, the worker dies; the restarted worker publishes the same bytes,
    and the outbox kept only their citizen and version, not the events."""
    store = MemoryRecordStore()
    events = [HUNG_PATIENT, LAN_PATIENT, HUNG_NEWER]
    first = await RecordStage(store).step(incoming(events))
    [blob] = store.outbox[0].values()
    assert len(blob) < 150 and "Nguyễn".encode() not in blob
    assert await run(RecordStage(store), events) == first


def test_rebuild_compares_records_without_version_and_update_time() -> None:
    from hub.ops.rebuild import comparable

    live = {"citizen_id": HUNG, "version": 9, "updated_at": "x", "identifiers": [], "_merge": {"parts": {}}}
    assert comparable(live) == comparable({**live, "version": 3, "updated_at": "y"})
    assert comparable(live) != comparable({**live, "_merge": {"parts": {LAN: {}}}})  # merge parts count
