"""MLLP ingestion on the real stack: sources, resends and control-id reuse, metrics, and a listener killed
with SIGKILL in the middle of 10,000 messages."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import urllib.request
from collections import Counter

import pytest
import redis.asyncio as aioredis

from connectors.mllp.dedup import HASH_HEADER, DedupStore, Seen
from connectors.mllp.framing import Frame, FrameDecoder, frame
from connectors.mllp.recover import reconcile
from connectors.mllp.sender import read_ack, send_messages
from hub.kafka import DurableProducer
from hub.ops import local
from hub.settings import Settings
from hub.synthetic import Person, adt
from tests.conftest import TEST_ENV, hub_cli
from tests.integration.kafka_tools import read_until

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
