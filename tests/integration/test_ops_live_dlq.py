"""`hub dlq list|show|replay` on the real stack: real failures are listed with filters and shown with their
bytes; a replay re-injects an entry into the failed stage's source topic once, and a second replay of the same
entry is skipped and reported, so downstream sees the message once."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from datetime import datetime, timezone

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from connectors.mllp.sender import send_messages
from hub.errors import TranslateError
from hub.ops import dlq, replay
from hub.ops.lag import partitions_of
from hub.pseudonym import keyed_hash
from hub.settings import REPO_ROOT, Settings
from hub.stream.app import Incoming, dead_letter
from hub.synthetic import Person, adt
from hub.topics import DLQ, EVENTS_CANONICAL, HL7V2_RAW, RECORD_CHANGES
from tests.conftest import TEST_ENV
from tests.integration.kafka_tools import wait_until_idle
from tests.integration.test_ops_live_lag import HUB, ops_cli
from tests.integration.test_thin_path import citizen_of, load_record

pytestmark = pytest.mark.integration

HOA = Person(cccd="079193006677", family="Lý", middle="Thị", given="Hoa", birth_date="19930405", sex="F",
             mrn="BN-DLQ-HOA", facility="79033", phone="0987654321")
BINH = Person(cccd="079088003344", family="Đoàn", middle="Văn", given="Bình", birth_date="19880919", sex="M",
              mrn="BN-DLQ-BINH", facility="79001", phone="0911222333")


def dft(p: Person, control_id: str) -> bytes:
    """DFT^P03 (billing): stored by the listener, not mapped by the translator, so dead-lettered."""
    return (f"MSH|^~\\&|HIS|{p.facility}|HSSK|SYT|20261122||DFT^P03^DFT_P03|{control_id}|P|2.5\r"
            f"EVN|P03|20261122\rPID|1||{p.mrn}^^^{p.facility}^MR||{p.family}^{p.given}^{p.middle}\r"
            "FT1|1|||20261122||CG|KB01^Khám bệnh\r").encode()


async def read_all(settings: Settings, topic: str) -> list[ConsumerRecord]:
    """Every record of ``topic`` up to its end now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(await partitions_of(consumer, topic))]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[ConsumerRecord] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for part in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(part)
        return records
    finally:
        await consumer.stop()


async def wait_entry(settings: Settings, match, timeout_s: float = 60) -> dlq.Entry:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [e for e in await dlq.entries(settings) if match(e)]
        if found:
            return found[-1]
        await asyncio.sleep(0.5)
    raise AssertionError("no such DLQ entry appeared")


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds")


async def test_a_translation_failure_is_listed_with_filters_and_shown_with_its_bytes(hub_stack: Settings) -> None:
    since_ms = int(time.time() * 1000) - 1000
    message = dft(HOA, "DLQ-INT-1")
    assert [r.code for r in await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, [message])] == ["AA"]
    entry = await wait_entry(hub_stack, lambda e: e.original == message)

    def ids(*filters: str) -> set[str]:
        return {e["id"] for e in json.loads(ops_cli("dlq", "list", "--json", *filters).stdout)}

    [listed] = [e for e in json.loads(ops_cli("dlq", "list", "--json", "--stage", "translate").stdout)
                if e["id"] == entry.id]
    assert (listed["stage"], listed["code"], listed["facility"], listed["replayed"]) == (
        "translate", "translate", "79033", None)
    assert listed["source"] == f"hl7v2.raw/{entry.source_partition}/{entry.source_offset}"
    assert "DFT^P03" in listed["reason"] and "original" not in listed
    assert entry.id in ids("--facility", "79033", "--code", "translate", "--reason", "dft^p03", "--since", iso(since_ms))
    for other in (["--stage", "identity"], ["--facility", "79048"], ["--code", "parse"], ["--reason", "CCCD"],
                  ["--until", iso(since_ms)], ["--since", "2099-01-01"]):
        assert entry.id not in ids(*other), other

    summary = json.loads(ops_cli("dlq", "list", "--summary", "--json", "--facility", "79033").stdout)
    assert {"stage": "translate", "code": "translate", "entries": len(ids("--facility", "79033", "--stage", "translate",
                                                                           "--code", "translate"))} in summary
    table = ops_cli("dlq", "list", "--stage", "translate", "--facility", "79033").stdout.splitlines()
    [line] = [row for row in table if row.startswith(entry.id + " ")]
    assert line.split()[2:7] == ["translate", "translate", "79033", listed["source"], "no"]

    shown = ops_cli("dlq", "show", entry.id).stdout.splitlines()
    assert f"stage:      translate" in shown and f"source:     {listed['source']}" in shown
    assert "target:     hl7v2.raw (where a replay writes)" in shown and "header:     hl7.control_id=DLQ-INT-1" in shown
    assert "PID|1||BN-DLQ-HOA^^^79033^MR||Lý^Hoa^Thị" in shown  # the original, decoded, one segment a line
    raw = subprocess.run([*HUB, "dlq", "show", entry.id, "--raw"],
                         env={**os.environ, **TEST_ENV}, cwd=REPO_ROOT, capture_output=True, timeout=60)
    assert raw.returncode == 0 and raw.stdout == message
    as_json = json.loads(ops_cli("dlq", "show", entry.id, "--json").stdout)
    assert as_json["headers"]["hl7.sending_facility"] == "79033" and "Khám bệnh" in as_json["original_text"]


def test_unknown_entries_are_a_clear_not_found(hub_stack: Settings) -> None:
    for command in ("show", "replay"):
        missing = ops_cli("dlq", command, "0/999999", check=False)
        assert missing.returncode == 1 and "no DLQ entry 0/999999: partition 0 holds" in missing.stderr
        nowhere = ops_cli("dlq", command, "99/0", check=False)
        assert nowhere.returncode == 1 and "hub.dlq has partitions [0, 1, 2, 3]" in nowhere.stderr
    nothing = ops_cli("dlq", "replay", "--since", "2099-01-01", check=False)
    assert nothing.returncode == 1 and "nothing to replay" in nothing.stdout
    bad = ops_cli("dlq", "replay", "--stage", "translator", check=False)
    assert bad.returncode == 2 and "unknown stage 'translator'" in bad.stderr


async def _dead_letter_of_a_since_fixed_bug(settings: Settings, message: bytes, p: Person, control_id: str = "DLQ-FIX-1",
                                           source_offset: int = 987654, reason: str = "PV1-44 mapping bug"
                                           ) -> tuple[str, bytes, dict]:
    """A translate-stage entry for a message that translates now, as if a mapping bug had since been fixed."""
    key = keyed_hash(settings.pseudonym_key, p.facility, p.mrn).encode()
    headers = {"hl7.message_type": b"ADT", "hl7.trigger": b"A01", "hl7.control_id": control_id.encode(),
               "hl7.sending_facility": p.facility.encode(), "charset": b"utf-8",
               "received_at": b"2026-11-22T08:30:00.000+07:00"}
    out = dead_letter("translate", Incoming(key, message, headers, HL7V2_RAW.name, 0, source_offset, time.time()),
                      TranslateError(f"simulated: {reason}, since fixed"))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        meta = await producer.send_and_wait(DLQ.name, out.value, key=out.key, headers=list(out.headers))
    finally:
        await producer.stop()
    return f"{meta.partition}/{meta.offset}", key, headers


async def test_replaying_a_fixed_failure_twice_reaches_the_record_once(hub_stack: Settings) -> None:
    message = adt(BINH, "A01", "DLQ-FIX-1", visit="V-DLQ")
    entry_id, key, headers = await _dead_letter_of_a_since_fixed_bug(hub_stack, message, BINH)

    dry = ops_cli("dlq", "replay", entry_id, "--dry-run").stdout.splitlines()
    assert dry[0].split() == ["would-replay", entry_id, "hl7v2.raw"]
    first = ops_cli("dlq", "replay", entry_id).stdout.splitlines()
    status, replayed_id, target = first[0].split()[:3]
    assert (status, replayed_id) == ("replayed", entry_id) and target.startswith("hl7v2.raw/")
    second = ops_cli("dlq", "replay", entry_id)
    assert second.stdout.splitlines()[0].split()[:2] == ["skipped", entry_id]
    assert f"already replayed to {target}" in second.stdout and second.stdout.splitlines()[-1] == "1 skipped"
    await wait_until_idle(hub_stack)

    raw = [r for r in await read_all(hub_stack, HL7V2_RAW.name) if r.value == message]
    assert len(raw) == 1 and f"hl7v2.raw/{raw[0].partition}/{raw[0].offset}" == target
    assert raw[0].key == key
    assert dict(raw[0].headers) == {**headers, "hssk.replay_of": entry_id.encode()}
    events = [r for r in await read_all(hub_stack, EVENTS_CANONICAL.name)
              if orjson.loads(r.value)["source"]["message_id"] == "DLQ-FIX-1"]
    assert sorted(orjson.loads(r.value)["type"] for r in events) == ["encounter.recorded", "patient.updated"]
    citizen = await citizen_of(hub_stack, BINH.cccd)
    record = await load_record(hub_stack, citizen)
    assert record is not None and record["demographics"]["name"]["text"] == "Đoàn Văn Bình"
    changes = [r for r in await read_all(hub_stack, RECORD_CHANGES.name) if r.key == citizen.encode()]
    assert len(changes) == 2
    [listed] = [e for e in json.loads(ops_cli("dlq", "list", "--json", "--stage", "translate").stdout)
                if e["id"] == entry_id]
    assert listed["replayed"].startswith(target + " ")

    # Forced, the same bytes go in again: the events repeat with the same ids and the record absorbs them.
    forced = ops_cli("dlq", "replay", entry_id, "--force").stdout.splitlines()[0].split()
    assert forced[0] == "replayed" and forced[-1] == "forced"
    await wait_until_idle(hub_stack)
    again = [r for r in await read_all(hub_stack, EVENTS_CANONICAL.name)
             if orjson.loads(r.value)["source"]["message_id"] == "DLQ-FIX-1"]
    def ids(records: list[ConsumerRecord]) -> list[str]:
        return sorted(orjson.loads(r.value)["event_id"] for r in records)

    assert ids(again) == sorted(ids(events) * 2)  # same event ids (only the raw coordinates differ)
    assert len([r for r in await read_all(hub_stack, RECORD_CHANGES.name) if r.key == citizen.encode()]) == 2
    assert await load_record(hub_stack, citizen) == record


async def test_a_replay_that_fails_again_is_dead_lettered_as_a_replay_of_its_entry(hub_stack: Settings) -> None:
    message = dft(HOA, "DLQ-INT-2")
    assert [r.code for r in await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, [message])] == ["AA"]
    entry = await wait_entry(hub_stack, lambda e: e.original == message and e.replay_of is None)
    selected = ops_cli("dlq", "replay", "--stage", "translate", "--facility", "79033", "--reason", "DFT^P03",
                       "--dry-run", "--json")
    assert {"entry": entry.id, "status": "would-replay", "target": "hl7v2.raw", "detail": ""} in json.loads(
        selected.stdout)

    [outcome] = json.loads(ops_cli("dlq", "replay", entry.id, "--json").stdout)
    assert outcome["status"] == "replayed"
    again = await wait_entry(hub_stack, lambda e: e.original == message and e.replay_of == entry.id)
    assert (again.stage, again.code) == ("translate", "translate") and again.id != entry.id
    assert again.source == outcome["target"]  # the new failure points at the replayed raw record
    [listed] = [e for e in json.loads(ops_cli("dlq", "list", "--json", "--facility", "79033").stdout)
                if e["id"] == again.id]
    assert listed["replay_of"] == entry.id
    [skipped] = json.loads(ops_cli("dlq", "replay", entry.id, "--json").stdout)
    assert skipped["status"] == "skipped"
    await wait_until_idle(hub_stack)
    assert len([e for e in await dlq.entries(hub_stack, dlq.Filter(stage="translate"))
                if e.original == message]) == 2  # the first failure and the replay's: no third


async def test_an_identity_failure_replays_into_events_canonical(hub_stack: Settings) -> None:
    no_cccd = Person(cccd="", family="Mạc", middle="Đăng", given="Khoa", birth_date="19790101", sex="M",
                     mrn="BN-DLQ-NOID", facility="79015", phone="0900000001")
    message = adt(no_cccd, "A04", "DLQ-NOID-1")  # only a malformed CCCD, no name or birth date: unresolvable
    pid = next(s for s in message.split(b"\r") if s.startswith(b"PID|"))
    message = message.replace(pid, b"PID|1||123456^^^BCA^NNVNM")
    assert [r.code for r in await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, [message])] == ["AA"]
    entry = await wait_entry(hub_stack, lambda e: e.stage == "identity" and b"DLQ-NOID-1" in e.original)
    assert entry.facility == "79015" and entry.source_topic == "events.canonical"
    [outcome] = json.loads(ops_cli("dlq", "replay", entry.id, "--json").stdout)
    assert outcome["status"] == "replayed" and outcome["target"].startswith("events.canonical/")
    again = await wait_entry(hub_stack, lambda e: e.stage == "identity" and e.replay_of == entry.id)
    assert again.original == entry.original and again.key == entry.key


async def test_the_replay_ledger_is_rebuilt_from_kafka_after_redis_loses_it(hub_stack: Settings) -> None:
    """The ledger is derived state: with its entry gone, rebuild-ledger finds the replay by its header on
    hl7v2.raw, and a further replay is skipped again."""
    import redis.asyncio as aioredis

    message = dft(BINH, "DLQ-LEDGER-1")
    assert [r.code for r in await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, [message])] == ["AA"]
    entry = await wait_entry(hub_stack, lambda e: e.original == message and e.replay_of is None)
    [outcome] = json.loads(ops_cli("dlq", "replay", entry.id, "--json").stdout)
    assert outcome["status"] == "replayed"

    client = aioredis.from_url(hub_stack.redis_url)
    try:
        assert await client.hdel(replay.LEDGER_KEY, *replay.ledger_keys(entry)) == 2  # its id and its source record
    finally:
        await client.aclose()
    [dry] = json.loads(ops_cli("dlq", "replay", entry.id, "--dry-run", "--json").stdout)
    assert dry["status"] == "would-replay"  # without the ledger entry the hub would replay it again

    rebuilt = ops_cli("dlq", "rebuild-ledger").stdout.strip()
    found, restored = int(rebuilt.split()[0]), int(rebuilt.split(", ")[1].split()[0])
    assert found >= 1 and restored == 1, rebuilt
    [skipped] = json.loads(ops_cli("dlq", "replay", entry.id, "--json").stdout)
    assert skipped["status"] == "skipped" and f"already replayed to {outcome['target']} rebuilt" == skipped["detail"]
    assert ops_cli("dlq", "rebuild-ledger").stdout.strip().endswith(", 0 restored to the ledger")


async def test_two_entries_for_one_source_record_are_replayed_once(hub_stack: Settings) -> None:
    """A stage that crashed after dead-lettering and before committing dead-letters the record again: both
    entries name the same source record, and a replay of both writes it once."""
    chau = Person(cccd="079196008899", family="Châu", middle="Ngọc", given="Trâm", birth_date="19960606", sex="F",
                  mrn="BN-DLQ-TRAM", facility="79012", phone="0977888999")
    message = adt(chau, "A01", "DLQ-TWICE-1")
    first, _, _ = await _dead_letter_of_a_since_fixed_bug(hub_stack, message, chau, "DLQ-TWICE-1", 987700,
                                                          "OBX mapping bug twice")
    second, _, _ = await _dead_letter_of_a_since_fixed_bug(hub_stack, message, chau, "DLQ-TWICE-1", 987700,
                                                           "OBX mapping bug twice")
    outcomes = json.loads(ops_cli("dlq", "replay", "--reason", "OBX mapping bug twice", "--json").stdout)
    assert {o["entry"]: o["status"] for o in outcomes} == {first: "replayed", second: "skipped"}
    assert "its source record hl7v2.raw/0/987700 was already replayed" in outcomes[1]["detail"]
    await wait_until_idle(hub_stack)
    assert len([r for r in await read_all(hub_stack, HL7V2_RAW.name) if r.value == message]) == 1
