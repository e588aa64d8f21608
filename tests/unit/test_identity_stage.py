"""The identity stage's step: events.citizen outputs keyed by citizen, failures for the DLQ, citizen.merged
after an A40, and the outcome metrics once the batch is done (no personal data in any label)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from hub.envelope import Envelope, Identifier, Source, Subject, mrn_system
from hub.errors import HubError, IdentityError
from hub.identity.events import MERGED, merge_link
from hub.identity.mpi_store import MemoryMpiStore
from hub.identity.resolve import Resolver
from hub.stream.app import Incoming
from hub.stream.identity import IdentityStage
from hub.topics import EVENTS_CITIZEN

SECRET = b"stage-secret"


class Steward:
    """The stage's narrow view of the review side: cases opened, merges applied, the queue's size."""

    def __init__(self) -> None:
        self.proposals: list = []

    async def open_cases(self, proposals: list) -> int:
        self.proposals += proposals
        return len(proposals)

    async def apply_merges(self, merges: list) -> list:
        return merges

    async def queue_size(self) -> int:
        return len(self.proposals)


def patient(mrn: str, family: str, given: tuple[str, ...], dob: str, *, kind: str = "patient.updated",
            old: tuple[str, ...] = (), eid: str = "") -> Envelope:
    ident = Identifier(mrn_system("79048"), mrn)
    payload = {"resourceType": "Patient", "identifier": [{"system": ident.system, "value": mrn}]
               + [{"use": "old", "system": ident.system, "value": o} for o in old]}
    eid = eid or f"ev-{mrn}-{kind}"
    return Envelope(eid, kind, "2026-11-20T09:00:00+07:00", "2026-11-20T09:00:05+07:00",
                    Source("hl7v2", "79048", eid), Subject((ident,), family, given, dob, "female"), payload)


def incoming(value: bytes, offset: int) -> Incoming:
    return Incoming(b"k", value, {}, "events.canonical", 0, offset, 0.0)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_batch_resolves_dead_letters_and_counts_outcomes() -> None:
    stage = IdentityStage(Resolver(MemoryMpiStore(), SECRET), Steward())
    nobody = Envelope("n1", "observation.recorded", "x", "x", Source("hl7v2", "79048", "n1"), Subject(), {})
    before = {o: sample("hssk_identity_outcomes_total", outcome=o) for o in ("new", "dlq")}
    ok, garbage, unresolvable = await stage.step([
        incoming(patient("BN1", "Võ", ("Thị", "Thu"), "1960-01-01").to_json(), 0),
        incoming(b"not json", 1), incoming(nobody.to_json(), 2)])
    [out] = ok
    assert out.topic == EVENTS_CITIZEN and out.key == Envelope.from_json(out.value).citizen_id.encode()
    assert isinstance(garbage, HubError) and isinstance(unresolvable, IdentityError)
    assert sample("hssk_identity_outcomes_total", outcome="new") == before["new"]  # counted after the batch
    await stage.after_batch()
    assert sample("hssk_identity_outcomes_total", outcome="new") == before["new"] + 1
    assert sample("hssk_identity_outcomes_total", outcome="dlq") == before["dlq"] + 1
    assert sample("hssk_identity_review_queue") == 0


async def test_an_a40_is_forwarded_to_the_survivor_and_followed_by_citizen_merged() -> None:
    stage = IdentityStage(Resolver(MemoryMpiStore(), SECRET), Steward())
    [[old]] = await stage.step([incoming(patient("OLD1", "Võ", ("Thị", "Thu"), "1960-01-01").to_json(), 0)])
    [[new]] = await stage.step([incoming(patient("NEW1", "Võ", ("Thị", "Thu"), "1961-07-15").to_json(), 1)])
    a40 = patient("NEW1", "Võ", ("Thị", "Thu"), "1961-07-15", kind="patient.merged", old=("OLD1",), eid="a40")
    [[forwarded, merged]] = await stage.step([incoming(a40.to_json(), 2)])
    survivor, retired = Envelope.from_json(new.value).citizen_id, Envelope.from_json(old.value).citizen_id
    assert Envelope.from_json(forwarded.value).citizen_id == survivor and forwarded.key == survivor.encode()
    event = Envelope.from_json(merged.value)
    assert event.type == MERGED and merged.key == survivor.encode() and event.source.message_id == "a40"
    assert (merge_link(event).survivor, merge_link(event).other) == (survivor, retired)


async def test_a_batch_run_again_counts_its_outcomes_once() -> None:
    """The stage loop runs a batch again when a store or a Kafka write failed: the metrics count the kept run."""
    stage = IdentityStage(Resolver(MemoryMpiStore(), SECRET), Steward())
    batch = [incoming(patient("BN-RERUN-1", "Huỳnh", ("Ngọc", "Ánh"), "1988-04-12").to_json(), 0)]

    def counted() -> float:
        return sum(sample("hssk_identity_outcomes_total", outcome=o) for o in ("new", "link", "review", "dlq"))

    before = counted()
    first, = await stage.step(batch)
    again, = await stage.step(batch)
    assert [o.value for o in first] == [o.value for o in again]  # the same answer the second time
    await stage.after_batch()
    assert counted() == before + 1  # one event, one outcome
    await stage.after_batch()  # the next batch's hook: nothing left over to count
    assert counted() == before + 1
