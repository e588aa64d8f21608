"""MLLP ingestion on the real stack: sources, resends and control-id reuse, metrics, and a listener killed
with SIGKILL in the middle of 10,000 messages."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import signal
import urllib.request
from collections import Counter

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import ConsumerRecord

from connectors.mllp.dedup import HASH_HEADER, DedupStore, Seen, message_key
from connectors.mllp.framing import Frame, FrameDecoder, frame
from connectors.mllp.recover import reconcile
from connectors.mllp.sender import read_ack, send_messages
from hub.kafka import DurableProducer
from hub.ops import local
from hub.settings import Settings
from hub.synthetic import Person, adt
from tests.conftest import TEST_ENV, hub_cli
from tests.integration.kafka_tools import read_until
from tests.unit.test_mllp_listener import to_cp1258

pytestmark = pytest.mark.integration

HOA = Person(cccd="079186002468", family="Huỳnh", middle="Thị Bích", given="Hoa", birth_date="19860214", sex="F",
             mrn="BN2468", facility="79033", phone="0903246810")


async def test_unknown_facility_gets_ar_over_the_wire(hub_stack: Settings) -> None:
    stranger = adt(HOA, "A01", "STRANGER-1").replace(b"|79033|", b"|79999|", 1)
    [result] = await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, [stranger])
    assert result.code == "AR" and "79999" in result.text


async def test_control_id_reused_with_new_content_is_stored_and_marked(hub_stack: Settings) -> None:
    first = adt(HOA, "A01", "REUSE-1", phone="0903000001")
    second = adt(HOA, "A08", "REUSE-1", phone="0903000002")
    results = await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, [first, second, second])
    assert [r.code for r in results] == ["AA", "AA", "AA"]
    raw = await read_until(hub_stack, "hl7v2.raw", lambda recs: any(r.value == second for r in recs))
    mine = [r for r in raw if r.value in (first, second)]
    assert [r.value for r in mine] == [first, second]  # the third (a resend of the second) is absorbed
    assert ("hl7.control_id_reused", b"true") in mine[1].headers
    assert ("hl7.control_id_reused", b"true") not in mine[0].headers


def test_metrics_endpoint_counts_acks_without_personal_data(hub_stack: Settings) -> None:
    port = TEST_ENV["HSSK_MLLP_METRICS_PORT"]
    asyncio.run(send_messages(hub_stack.mllp_host, hub_stack.mllp_port, [adt(HOA, "A08", "METRICS-1")]))
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'hssk_mllp_messages_total{code="AA",facility="79033"}' in body
    for name in ("hssk_mllp_ack_latency_seconds_bucket", "hssk_mllp_open_connections", "hssk_mllp_received_bytes_total",
                 "hssk_mllp_duplicates_total", "hssk_mllp_skipped_bytes_total"):
        assert name in body
    assert HOA.cccd not in body and "Huỳnh" not in body and HOA.mrn not in body


def _cp1258(p: Person, control_id: str) -> bytes:
    """A legacy feed (facility 79012 is configured windows-1258): tone marks as combining characters."""
    return to_cp1258(adt(p, "A04", control_id).decode("utf-8"))


async def test_raw_record_keeps_the_exact_bytes_with_headers_and_a_patient_key(hub_stack: Settings) -> None:
    legacy = Person(cccd="079070123123", family="Trương", middle="Thị", given="Hường", birth_date="19700303",
                    sex="F", mrn="BN9911", facility="79012", phone="0908777666")
    first, second = _cp1258(legacy, "RAW-1"), _cp1258(legacy, "RAW-2")
    results = await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, [first, second])
    assert [r.code for r in results] == ["AA", "AA"]
    raw = await read_until(hub_stack, "hl7v2.raw", lambda recs: sum(r.value in (first, second) for r in recs) == 2)
    one, two = [r for r in raw if r.value in (first, second)]
    assert (one.value, two.value) == (first, second)  # byte for byte, still windows-1258
    headers = dict(one.headers)
    assert {k: headers[k] for k in ("hl7.message_type", "hl7.trigger", "hl7.version", "hl7.control_id",
                                    "hl7.sending_application", "hl7.sending_facility", "charset")} == {
        "hl7.message_type": b"ADT", "hl7.trigger": b"A04", "hl7.version": b"2.5", "hl7.control_id": b"RAW-1",
        "hl7.sending_application": b"HIS", "hl7.sending_facility": b"79012", "charset": b"windows-1258"}
    assert headers["received_at"].endswith(b"+07:00")
    assert headers["peer"].startswith(b"127.0.0.1:") and headers["connection_id"]
    assert one.key == two.key and one.partition == two.partition  # one patient, one ordered partition
    assert legacy.mrn.encode() not in one.key and legacy.cccd.encode() not in one.key


async def test_resend_marker_lives_for_the_configured_ttl(hub_stack: Settings) -> None:
    message = adt(HOA, "A08", "TTL-1")
    assert [r.code for r in await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, [message])] == ["AA"]
    client = aioredis.from_url(hub_stack.redis_url)
    try:
        ttl = await client.ttl(message_key(hub_stack.pseudonym_key, "HIS", HOA.facility, "TTL-1"))
    finally:
        await client.aclose()
    assert hub_stack.dedup_ttl_s - 60 < ttl <= hub_stack.dedup_ttl_s == 7 * 24 * 3600


async def test_enhanced_mode_commit_ack_after_the_durable_write(hub_stack: Settings) -> None:
    always = adt(HOA, "A08", "ENH-AL").replace(b"|P|2.5", b"|P|2.5|||AL|NE", 1)
    never = adt(HOA, "A08", "ENH-NE").replace(b"|P|2.5", b"|P|2.5|||NE|NE", 1)
    reader, writer = await asyncio.open_connection(hub_stack.mllp_host, hub_stack.mllp_port)
    try:
        writer.write(frame(never) + frame(always))  # no answer is owed for the first: the next ACK is the second's
        data = await asyncio.wait_for(reader.readuntil(b"\x1c\x0d"), 10)
    finally:
        writer.close()
    code, control_id, _ = read_ack(data[1:-2])
    assert (code, control_id) == ("CA", "ENH-AL")
    raw = await read_until(hub_stack, "hl7v2.raw", lambda recs: sum(r.value in (always, never) for r in recs) == 2)
    assert sum(r.value in (always, never) for r in raw) == 2  # NE means no ACK, not "not stored"


async def test_undecodable_bytes_get_ae_and_the_dlq_keeps_them(hub_stack: Settings) -> None:
    broken = adt(HOA, "A08", "BADUTF8-1").replace("Huỳnh".encode(), b"Hu\xff\xfenh", 1)
    [result] = await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, [broken])
    assert result.code == "AE" and "utf-8" in result.text
    dlq = await read_until(hub_stack, "hub.dlq", lambda recs: any(b"BADUTF8-1" in _original(r) for r in recs))
    [letter] = [orjson.loads(r.value) for r in dlq if b"BADUTF8-1" in _original(r)]
    assert base64.b64decode(letter["original"]) == broken
    assert (letter["stage"], letter["code"]) == ("ingest", "parse") and "not valid utf-8" in letter["reason"]


def _original(record: ConsumerRecord) -> bytes:
    return base64.b64decode(orjson.loads(record.value).get("original", ""))


async def test_batch_over_the_wire_accounts_for_every_message(hub_stack: Settings) -> None:
    good1, good2 = adt(HOA, "A08", "BATCH-W1"), adt(HOA, "A08", "BATCH-W2")
    no_id = adt(HOA, "A08", "")
    batch = (b"FHS|^~\\&|HIS|79033\rBHS|^~\\&|HIS|79033\r" + good1 + no_id + good2 + b"BTS|3\rFTS|1\r")
    reader, writer = await asyncio.open_connection(hub_stack.mllp_host, hub_stack.mllp_port)
    try:
        writer.write(frame(batch))
        data = await asyncio.wait_for(reader.readuntil(b"\x1c\x0d"), 10)
    finally:
        writer.close()
    answer = data[1:-2].decode()
    assert [line.split("|")[1:3] for line in answer.split("\r") if line.startswith("MSA")] == [
        ["AA", "BATCH-W1"], ["AE", ""], ["AA", "BATCH-W2"]]
    assert "BTS|3|3 messages received" in answer
    raw = await read_until(hub_stack, "hl7v2.raw", lambda recs: sum(r.value in (good1, good2) for r in recs) == 2)
    assert [r.value for r in raw if r.value in (good1, good2)] == [good1, good2]


async def test_sources_reload_on_sighup_admits_a_new_facility(hub_stack: Settings) -> None:
    newcomer = adt(HOA, "A04", "RELOAD-1").replace(b"|79033|", b"|79777|", 1)
    [before] = await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, [newcomer])
    assert before.code == "AR"
    with open(hub_stack.sources_file, "a", encoding="utf-8") as f:
        f.write('\n[[facility]]\ncode = "79777"\nname = "Trạm Y tế phường Bến Nghé (test)"\n')
    os.kill(local.role_pid(hub_stack, "mllp"), signal.SIGHUP)
    after = before
    for _ in range(50):
        [after] = await send_messages(hub_stack.mllp_host, hub_stack.mllp_port, [newcomer])
        if after.code == "AA":
            break
        await asyncio.sleep(0.1)
    assert after.code == "AA"


async def _stream(host: str, port: int, messages: list[bytes], acked: set[str], give_up_s: float = 120) -> None:
    """One hospital engine: send each message, wait for its ACK, resend it after any connection failure."""
    loop = asyncio.get_running_loop()
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    decoder = FrameDecoder(1 << 20)
    for raw in messages:
        control_id = raw.split(b"|", 10)[9].decode()
        deadline = loop.time() + give_up_s
        while True:
            try:
                if conn is None:
                    conn = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
                    decoder = FrameDecoder(1 << 20)
                reader, writer = conn
                writer.write(frame(raw))
                answer: list[Frame] = []
                while not answer:
                    data = await asyncio.wait_for(reader.read(65536), 10)
                    if not data:
                        raise ConnectionError("closed")
                    answer = [f for f in decoder.feed(data) if isinstance(f, Frame)]
                code, acked_id, _ = read_ack(answer[0].payload)
                if acked_id != control_id:
                    raise AssertionError(f"ACK for {acked_id!r} answered {control_id!r}")
                if code == "AA":
                    acked.add(control_id)
                    break
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                if conn is not None:
                    conn[1].close()
                conn = None
            if loop.time() > deadline:
                raise AssertionError(f"{control_id} never got AA")
            await asyncio.sleep(0.1)  # AR or a dead listener: resend, like an engine's retry
    if conn is not None:
        conn[1].close()


@pytest.mark.disruptive
async def test_listener_killed_mid_stream_loses_nothing_and_publishes_each_control_id_once(
        hub_stack: Settings) -> None:
    people = [Person(cccd=f"0792{i % 100:02d}{i:06d}", family="Nguyễn", middle="Văn", given="Tâm",
                     birth_date="19920101", sex="M", mrn=f"BNK{i}", facility="79048", phone="0900000000")
              for i in range(200)]
    streams = [[adt(people[(s * 1000 + i) % 200], "A08", f"KILL-{s}-{i:04d}") for i in range(1000)] for s in range(10)]
    acked: set[str] = set()
    senders = asyncio.gather(*(_stream(hub_stack.mllp_host, hub_stack.mllp_port, msgs, acked) for msgs in streams))
    while len(acked) < 3000 and not senders.done():
        await asyncio.sleep(0.05)
    assert not senders.done(), senders.exception() if not senders.cancelled() else "senders cancelled"
    pid = local.role_pid(hub_stack, "mllp")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(1.0)  # senders see the dead listener and keep retrying
    await asyncio.to_thread(hub_cli, "up")  # restarts only the dead role; the senders keep retrying meanwhile
    await asyncio.wait_for(senders, 300)
    assert len(acked) == 10_000
    raw = await read_until(hub_stack, "hl7v2.raw", lambda recs: len(
        {r.value.split(b"|", 10)[9] for r in recs if b"|KILL-" in r.value}) >= 10_000, timeout_s=120)
    counts = Counter(r.value.split(b"|", 10)[9].decode() for r in raw if b"|KILL-" in r.value)
    assert set(counts) == acked
    assert [cid for cid, n in counts.items() if n != 1] == []


async def test_restart_settles_pending_markers_from_what_reached_kafka(hub_stack: Settings) -> None:
    """A marker whose message is on hl7v2.raw is confirmed (its resend is absorbed); one whose write never
    happened is released (its resend is stored)."""
    client = aioredis.from_url(hub_stack.redis_url)
    dedup = DedupStore(client, hub_stack.pseudonym_key, ttl_s=600, in_flight_wait_s=1)
    producer = DurableProducer(hub_stack, client_id="test-reconcile")
    await producer.connect()
    stored, lost = adt(HOA, "A08", "RECON-STORED"), adt(HOA, "A08", "RECON-LOST")
    try:
        tickets = {}
        for raw, control_id in ((stored, "RECON-STORED"), (lost, "RECON-LOST")):
            tickets[control_id] = await dedup.check("HIS", HOA.facility, control_id, hashlib.sha256(raw).hexdigest())
            assert tickets[control_id].seen is Seen.NEW
        await producer.write("hl7v2.raw", stored, b"k", [
            ("hl7.sending_application", b"HIS"), ("hl7.sending_facility", HOA.facility.encode()),
            ("hl7.control_id", b"RECON-STORED"), (HASH_HEADER, tickets["RECON-STORED"].digest.encode())])
        confirmed, released = await reconcile(hub_stack, dedup)
        assert confirmed >= 1 and released >= 1  # other tests' markers may be settled too
        again = await dedup.check("HIS", HOA.facility, "RECON-STORED", tickets["RECON-STORED"].digest)
        assert again.seen is Seen.DUPLICATE
        retry = await dedup.check("HIS", HOA.facility, "RECON-LOST", tickets["RECON-LOST"].digest)
        assert retry.seen is Seen.NEW
    finally:
        await producer.stop()
        await client.aclose()


@pytest.mark.disruptive
async def test_sigterm_answers_what_was_received_then_closes(hub_stack: Settings) -> None:
    """Graceful shutdown: each connection gets answers for an in-order prefix of what it pipelined, then EOF;
    every message answered AA is on hl7v2.raw. Nothing is left hanging and nothing acknowledged is lost."""
    streams = [[adt(HOA, "A08", f"TERM-{c}-{i:04d}") for i in range(2000)] for c in range(5)]
    conns = [await asyncio.open_connection(hub_stack.mllp_host, hub_stack.mllp_port) for _ in streams]
    for (_, writer), messages in zip(conns, streams):
        writer.write(b"".join(frame(m) for m in messages))
    await asyncio.sleep(0.05)
    pid = local.role_pid(hub_stack, "mllp")
    os.kill(pid, signal.SIGTERM)

    async def answers(reader: asyncio.StreamReader) -> list[tuple[str, str]]:
        decoder, out = FrameDecoder(1 << 20), []
        while data := await asyncio.wait_for(reader.read(65536), 15):
            out += [read_ack(f.payload)[:2] for f in decoder.feed(data) if isinstance(f, Frame)]
        return out

    try:
        results = [await answers(reader) for reader, _ in conns]
    finally:
        for _, writer in conns:
            writer.close()
        for _ in range(300):  # it answers, lingers, then exits; `hub up` must not see the old process still there
            if local.role_pid(hub_stack, "mllp") != pid:
                break
            await asyncio.sleep(0.05)
        await asyncio.to_thread(hub_cli, "up")
    accepted: set[str] = set()
    for messages, got in zip(streams, results):
        sent_ids = [m.split(b"|", 10)[9].decode() for m in messages]
        assert [cid for _, cid in got] == sent_ids[:len(got)]  # in order, no gaps, no stray ACKs
        assert {code for code, _ in got} <= {"AA", "AR"}
        accepted |= {cid for code, cid in got if code == "AA"}
    assert any(len(got) < len(messages) for messages, got in zip(streams, results)), "stopped after the stream ended"
    assert accepted, "the listener answered nothing before stopping"
    raw = await read_until(hub_stack, "hl7v2.raw", lambda recs: accepted <= {
        dict(r.headers)["hl7.control_id"].decode() for r in recs}, timeout_s=30)
    assert accepted <= {dict(r.headers)["hl7.control_id"].decode() for r in raw}
