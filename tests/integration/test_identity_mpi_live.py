"""The streaming MPI on the real stack (Kafka, Redis, the identity role as its own process).

Canonical events are written to events.canonical as the translator would; the A40 goes through MLLP and
the translator. What the identity role decided is read back from events.citizen, hub.dlq, audit.access
and the review cases in Redis.
"""

from __future__ import annotations

import random

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from connectors.mllp.sender import send_messages
from hub.envelope import SYSTEM_CCCD, DeadLetter, Envelope, Identifier, Source, Subject, mrn_system
from hub.identity.events import MERGED, UNMERGED, MergeLink, merge_link
from hub.identity.review import Mpi
from hub.settings import Settings
from hub.synthetic import Person, adt
from hub.topics import AUDIT_ACCESS, DLQ, EVENTS_CANONICAL, EVENTS_CITIZEN
from tests.conftest import hub_cli
from tests.integration.kafka_tools import read_until

pytestmark = pytest.mark.integration
RNG = random.Random()


def tag() -> str:
    return f"{RNG.randint(0, 999_999):06d}"


def patient(facility: str, mrn: str, family: str, given: tuple[str, ...], dob: str, sex: str, *, cccd: str = "",
            phone: str = "", address: str = "", occurred: str = "2026-11-20T09:00:00+07:00") -> Envelope:
    idents = [Identifier(mrn_system(facility), mrn)] + ([Identifier(SYSTEM_CCCD, cccd)] if cccd else [])
    payload = {"resourceType": "Patient", "identifier": [{"system": i.system, "value": i.value} for i in idents],
               "name": [{"family": family, "given": list(given)}], "gender": sex, "birthDate": dob,
               "telecom": [{"system": "phone", "value": phone}] if phone else [],
               "address": [{"text": address}] if address else []}
    eid = f"mpi-live-{facility}-{mrn}-{tag()}"
    return Envelope(eid, "patient.updated", occurred, occurred, Source("hl7v2", facility, eid),
                    Subject(tuple(idents), family, given, dob, sex), payload)


async def publish(settings: Settings, events: list[Envelope], raw: list[bytes] = ()) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for e in events:
            await producer.send_and_wait(EVENTS_CANONICAL.name, e.to_json(), key=b"mpi-live")
        for value in raw:
            await producer.send_and_wait(EVENTS_CANONICAL.name, value, key=b"mpi-live")
    finally:
        await producer.stop()


async def resolved(settings: Settings, events: list[Envelope], timeout_s: float = 60) -> dict[str, str]:
    """event id -> citizen id, as the identity role wrote them to events.citizen."""
    return {eid: e.citizen_id for eid, e in (await resolved_events(settings, events, timeout_s)).items()}


async def resolved_events(settings: Settings, events: list[Envelope], timeout_s: float = 60) -> dict[str, Envelope]:
    """event id -> the event as the identity role wrote it to events.citizen."""
    wanted = {e.event_id for e in events}

    def found(records) -> dict[str, Envelope]:
        out = {}
        for r in records:
            e = Envelope.from_json(r.value)
            if e.event_id in wanted:
                out[e.event_id] = e
        return out

    records = await read_until(settings, EVENTS_CITIZEN.name, lambda rs: len(found(rs)) == len(wanted), timeout_s)
    got = found(records)
    assert set(got) == wanted, f"not resolved: {wanted - set(got)}"
    return got


async def citizen_events(settings: Settings, kind: str, pred, timeout_s: float = 60) -> list[Envelope]:
    def match(records) -> list[Envelope]:
        return [e for e in (Envelope.from_json(r.value) for r in records) if e.type == kind and pred(e)]

    records = await read_until(settings, EVENTS_CITIZEN.name, lambda rs: bool(match(rs)), timeout_s)
    return match(records)


async def cases_between(settings: Settings, a: str, b: str) -> list[dict]:
    client = aioredis.from_url(settings.redis_url)
    try:
        docs = await Mpi(client, settings.pseudonym_key).cases("all", 10_000)
    finally:
        await client.aclose()
    return [d for d in docs if set(d["citizens"].values()) == {a, b}]


async def test_one_person_at_two_hospitals_without_a_shared_cccd_is_one_citizen(hub_stack: Settings) -> None:
    """Different MRNs, no CCCD, the name once without diacritics: the match model links them."""
    phone = f"09{RNG.randint(10_000_000, 99_999_999)}"
    a = patient("79048", f"A{tag()}", "Trương", ("Thị", "Mỹ", "Duyên"), "1987-04-23", "female", phone=phone,
                address="45 Nguyễn Trãi, Phường Bến Thành, TP.HCM")
    b = patient("79100", f"B{tag()}", "TRUONG", ("THI", "MY", "DUYEN"), "1987-04-23", "female", phone=phone,
                address="45 Nguyen Trai, P. Ben Thanh, TP HCM")
    await publish(hub_stack, [a])
    first = await resolved(hub_stack, [a])
    await publish(hub_stack, [b])
    second = await resolved(hub_stack, [b])
    assert first[a.event_id] == second[b.event_id]


async def test_a_newborn_under_the_mothers_name_stays_apart_from_the_mother(hub_stack: Settings) -> None:
    cccd = f"079195{RNG.randint(0, 999_999):06d}"  # a woman born in 1995
    home, phone = "18 Hai Bà Trưng, Phường Sài Gòn, TP.HCM", f"09{RNG.randint(10_000_000, 99_999_999)}"
    mother = patient("79048", f"M{tag()}", "Nguyễn", ("Thị", "Hoa"), "1995-06-02", "female", cccd=cccd,
                     phone=phone, address=home)
    newborn = patient("79048", f"S{tag()}", "Con của Nguyễn", ("Thị", "Hoa"), "2026-11-19", "male", cccd=cccd,
                      phone=phone, address=home, occurred="2026-11-19T10:00:00+07:00")
    await publish(hub_stack, [mother, newborn])
    got = await resolved(hub_stack, [mother, newborn])
    assert got[mother.event_id] != got[newborn.event_id]


async def test_one_cccd_claimed_by_two_people_is_reviewed_then_accepted_and_unmerged(hub_stack: Settings) -> None:
    cccd = f"079070{RNG.randint(0, 999_999):06d}"  # a man born in 1970
    tam = patient("79001", f"X{tag()}", "Lê", ("Văn", "Tâm"), "1970-05-01", "male", cccd=cccd)
    hung = patient("79002", f"Y{tag()}", "Phạm", ("Văn", "Hùng"), "1970-11-20", "male", cccd=cccd)
    await publish(hub_stack, [tam])
    await resolved(hub_stack, [tam])
    await publish(hub_stack, [hung])
    got = await resolved(hub_stack, [hung])
    tam_id, hung_id = (await resolved(hub_stack, [tam]))[tam.event_id], got[hung.event_id]
    assert tam_id != hung_id  # not merged on the shared CCCD
    [case] = await cases_between(hub_stack, tam_id, hung_id)
    assert case["status"] == "open" and case["reason"] == "identifier claimed by two people"
    assert {"given_name_differs", "birth_date_differs"} <= set(case["flags"])
    assert {c["comparison"] for c in case["comparisons"]} >= {"given_name", "birth_date", "cccd"}

    listed = hub_cli("review", "list", "--limit", "100000").stdout  # other tests' cases may come first
    assert case["id"] in listed and "Tâm" not in listed and cccd not in listed  # list shows no personal data
    shown = hub_cli("review", "show", case["id"]).stdout
    assert "Lê Văn Tâm" in shown and "Phạm Văn Hùng" in shown
    audits = await read_until(hub_stack, AUDIT_ACCESS.name, lambda rs: sum(
        orjson.loads(r.value).get("purpose") == "identity-review" and orjson.loads(r.value)["citizen_id"]
        in (tam_id, hung_id) for r in rs) >= 2)
    assert {orjson.loads(r.value)["citizen_id"] for r in audits
            if orjson.loads(r.value).get("purpose") == "identity-review"} >= {tam_id, hung_id}

    hub_cli("review", "accept", case["id"])
    [merged] = await citizen_events(hub_stack, MERGED, lambda e: e.source.message_id == case["id"])
    assert merge_link(merged) == MergeLink(tam_id, hung_id)
    again = patient("79002", hung.subject.identifiers[0].value, "Phạm", ("Văn", "Hùng"), "1970-11-20", "male",
                    cccd=cccd)
    await publish(hub_stack, [again])
    linked = (await resolved_events(hub_stack, [again]))[again.event_id]
    assert linked.citizen_id == tam_id  # the retired MRN links to the survivor
    assert linked.member_id == hung_id  # ... from a source record filed under Hùng: the record keeps it his

    hub_cli("unmerge", tam_id, hung_id)
    [unmerged] = await citizen_events(hub_stack, UNMERGED, lambda e: merge_link(e).other == hung_id)
    assert unmerged.citizen_id == tam_id
    later = patient("79002", hung.subject.identifiers[0].value, "Phạm", ("Văn", "Hùng"), "1970-11-20", "male")
    await publish(hub_stack, [later])
    back = (await resolved_events(hub_stack, [later]))[later.event_id]
    assert (back.citizen_id, back.member_id) == (hung_id, None)  # the MRN is Hùng's again, his own record


async def test_a_rejected_pair_is_never_proposed_again(hub_stack: Settings) -> None:
    cccd = f"079082{RNG.randint(0, 999_999):06d}"  # a man born in 1982
    first = patient("79003", f"P{tag()}", "Đỗ", ("Minh", "Quân"), "1982-02-14", "male", cccd=cccd)
    other = patient("79004", f"Q{tag()}", "Hồ", ("Văn", "Lực"), "1982-09-30", "male", cccd=cccd)
    await publish(hub_stack, [first])
    await resolved(hub_stack, [first])
    await publish(hub_stack, [other])
    a, b = (await resolved(hub_stack, [first]))[first.event_id], (await resolved(hub_stack, [other]))[other.event_id]
    [case] = await cases_between(hub_stack, a, b)
    hub_cli("review", "reject", case["id"])
    assert hub_cli("review", "accept", case["id"], check=False).returncode == 1  # decided already
    third = patient("79005", f"R{tag()}", "Hồ", ("Văn", "Lực"), "1982-09-30", "male", cccd=cccd)
    await publish(hub_stack, [third])
    assert (await resolved(hub_stack, [third]))[third.event_id] == b  # the same Lực, at a third hospital
    [still] = await cases_between(hub_stack, a, b)
    assert still["status"] == "rejected"


async def test_an_hl7_a40_merge_emits_citizen_merged(hub_stack: Settings) -> None:
    old_mrn, new_mrn = f"OLD{tag()}", f"NEW{tag()}"
    first = Person(cccd="", family="Võ", middle="Thị", given="Thu", birth_date="19600101", sex="F", mrn=old_mrn,
                   facility="79048", phone="")
    second = Person(cccd="", family="Võ", middle="Thị", given="Thu", birth_date="19610715", sex="F", mrn=new_mrn,
                    facility="79048", phone="")
    when = "20261122090000"
    a40 = ("\r".join([
        f"MSH|^~\\&|HIS|79048|HSSK|SYT_HCM|{when}||ADT^A40^ADT_A39|A40-{new_mrn}|P|2.5",
        f"EVN|A40|{when}",
        f"PID|1||{new_mrn}^^^79048^MR||Võ^Thu^Thị||19610715|F",
        f"MRG|{old_mrn}^^^79048^MR",
    ]) + "\r").encode()
    results = await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, [
        adt(first, "A04", f"C1-{old_mrn}", when="20261120080000"),
        adt(second, "A04", f"C2-{new_mrn}", when="20261121080000")])
    assert [r.code for r in results] == ["AA", "AA"]

    def patient_of(mrn: str):
        return lambda e: e.type == "patient.updated" and any(i.value == mrn for i in e.subject.identifiers)

    [old] = (await citizen_events(hub_stack, "patient.updated", patient_of(old_mrn)))[:1]
    [new] = (await citizen_events(hub_stack, "patient.updated", patient_of(new_mrn)))[:1]
    assert old.citizen_id != new.citizen_id  # two birth dates: two citizens until the hospital merges them
    assert [r.code for r in await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, [a40])] == ["AA"]
    [forwarded] = await citizen_events(hub_stack, "patient.merged",
                                       lambda e: any(i.value == new_mrn for i in e.subject.identifiers))
    assert forwarded.citizen_id == new.citizen_id
    [merged] = await citizen_events(hub_stack, MERGED, lambda e: e.source.message_id == forwarded.event_id)
    assert (merge_link(merged).survivor, merge_link(merged).other) == (new.citizen_id, old.citizen_id)


async def test_an_event_without_identifiers_or_demographics_goes_to_the_dlq(hub_stack: Settings) -> None:
    eid = f"mpi-live-nobody-{tag()}"
    nobody = Envelope(eid, "observation.recorded", "2026-11-20T09:00:00+07:00", "2026-11-20T09:00:00+07:00",
                      Source("hl7v2", "79048", eid), Subject(), {"resourceType": "Observation", "status": "final"})
    await publish(hub_stack, [nobody])

    def letters(records) -> list[DeadLetter]:
        out = [DeadLetter.from_json(r.value) for r in records]
        return [d for d in out if d.stage == "identity" and eid.encode() in d.original]

    [letter] = letters(await read_until(hub_stack, DLQ.name, lambda rs: bool(letters(rs))))
    assert letter.code == "identity" and "no identifiers and no demographics" in letter.reason
    assert letter.source_topic == EVENTS_CANONICAL.name
