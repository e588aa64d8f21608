"""The thin path end to end on the real stack: MLLP over TCP -> Kafka -> translate -> identity -> record in
Redis -> record.changes -> out.all. Every role runs as its own process, as ``hub up`` starts them."""

from __future__ import annotations

import random

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from connectors.mllp.sender import send_messages
from hub.envelope import SYSTEM_CCCD, Identifier
from hub.identity.resolve import RedisLinkStore, identity_key
from hub.settings import Settings
from hub.synthetic import Person, adt
from hub.topics import OUT_ALL, RECORD_CHANGES
from tests.integration.kafka_tools import read_until, wait_until_idle

pytestmark = pytest.mark.integration

AN = Person(cccd="079090001234", family="Nguyễn", middle="Văn", given="An", birth_date="19900512", sex="M",
            mrn="BN240001", facility="79048", phone="0903123456")
NGOC = Person(cccd="079185004321", family="Trần", middle="Thị Bích", given="Ngọc", birth_date="19850220", sex="F",
              mrn="TD55012", facility="79033", phone="0918765432")


async def citizen_of(settings: Settings, cccd: str) -> str | None:
    client = aioredis.from_url(settings.redis_url)
    try:
        return await RedisLinkStore(client).lookup(identity_key(settings.pseudonym_key, Identifier(SYSTEM_CCCD, cccd)))
    finally:
        await client.aclose()


async def load_record(settings: Settings, citizen_id: str) -> dict | None:
    client = aioredis.from_url(settings.redis_url)
    try:
        raw = await client.get(f"record:{citizen_id}")
        return orjson.loads(raw) if raw else None
    finally:
        await client.aclose()


async def test_three_adt_messages_for_two_patients_reach_the_records(hub_stack: Settings) -> None:
    messages = [
        adt(AN, "A01", "TP-0001", visit="VV240001", when="20261122082500"),
        adt(NGOC, "A04", "TP-0002", visit="TD2411220007", when="20261122085500", patient_class="O"),
        adt(AN, "A08", "TP-0003", visit="VV240001", when="20261122165500", discharge="20261122163000",
            phone="0903999888"),
    ]
    results = await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, messages)
    assert [(r.code, r.acked_control_id) for r in results] == [("AA", "TP-0001"), ("AA", "TP-0002"), ("AA", "TP-0003")]

    await wait_until_idle(hub_stack, timeout_s=90)
    an_id, ngoc_id = await citizen_of(hub_stack, AN.cccd), await citizen_of(hub_stack, NGOC.cccd)
    assert an_id and ngoc_id and an_id != ngoc_id
    ours = (an_id.encode(), ngoc_id.encode())
    # A01: patient + encounter; A04: patient + encounter; A08: new phone + discharged encounter.
    changes = [r for r in await read_until(hub_stack, RECORD_CHANGES.name, lambda recs: sum(
        r.key in ours for r in recs) >= 6, timeout_s=30) if r.key in ours]
    assert len(changes) == 6

    an = await load_record(hub_stack, an_id)
    assert an["demographics"]["name"]["text"] == "Nguyễn Văn An"
    assert an["demographics"]["name"]["family"] == "Nguyễn"
    assert an["demographics"]["birth_date"] == "1990-05-12" and an["demographics"]["gender"] == "male"
    assert an["demographics"]["telecom"][0]["value"] == "0903999888"  # the A08 update won
    assert {"system": SYSTEM_CCCD, "value": AN.cccd} in an["identifiers"]
    [encounter] = an["encounters"].values()
    assert encounter["class"] == "IMP" and encounter["status"] == "finished"
    assert encounter["period"]["end"].startswith("2026-11-22T16:30:00+07:00")

    ngoc = await load_record(hub_stack, ngoc_id)
    assert ngoc["demographics"]["name"]["text"] == "Trần Thị Bích Ngọc"
    assert ngoc["demographics"]["gender"] == "female"
    assert [e["class"] for e in ngoc["encounters"].values()] == ["AMB"]

    by_citizen: dict[str, list[dict]] = {}
    for rec in changes:
        change = orjson.loads(rec.value)
        by_citizen.setdefault(rec.key.decode(), []).append(change)
    assert all(AN.cccd.encode() not in r.key for r in changes)  # keys are pseudonymous citizen ids
    assert {c["type"] for c in by_citizen[an_id]} == {"patient.updated", "encounter.recorded"}
    assert all(c["citizen_id"] == an_id for c in by_citizen[an_id])
    assert sorted(c["record_version"] for c in by_citizen[an_id]) == list(range(1, len(by_citizen[an_id]) + 1))

    out = await read_until(hub_stack, OUT_ALL.name, lambda recs: sum(r.key in ours for r in recs) >= 6, timeout_s=60)
    assert {orjson.loads(r.value)["event_id"] for r in out} >= {c["event_id"] for cs in by_citizen.values() for c in cs}


async def test_a_resent_message_changes_nothing(hub_stack: Settings) -> None:
    """A resend is ACKed AA and not stored twice; a duplicate that slips onto hl7v2.raw anyway (dedup is
    skipped while Redis is down) yields the same events, applied once."""
    rng = random.Random(7)
    # a CCCD consistent with a man born in 2001 (0792 01 ...): the MPI links on no CCCD that contradicts its record
    person = Person(cccd=f"079201{rng.randint(0, 999999):06d}", family="Lê", middle="Hoàng",
                    given="Phúc", birth_date="20010304", sex="M", mrn="BN777", facility="79001", phone="0911000111")
    message = adt(person, "A01", "RESEND-1", visit="V-RS-1")
    first = await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, [message])
    assert first[0].code == "AA"
    await wait_until_idle(hub_stack)
    cid = await citizen_of(hub_stack, person.cccd)
    before = await load_record(hub_stack, cid)
    second = await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, [message])
    assert second[0].code == "AA"
    raw = await read_until(hub_stack, "hl7v2.raw", lambda recs: False, timeout_s=3)
    assert sum(r.value == message for r in raw) == 1
    producer = AIOKafkaProducer(bootstrap_servers=hub_stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        original = next(r for r in raw if r.value == message)
        await producer.send_and_wait("hl7v2.raw", message, key=original.key, headers=list(original.headers))
    finally:
        await producer.stop()
    await wait_until_idle(hub_stack)
    after = await load_record(hub_stack, cid)
    assert after == before and after["version"] == 2
