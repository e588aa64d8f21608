"""The listener's decisions, with an in-memory writer standing in for Kafka (the real broker is in
tests/integration): AA only after the write, AR when the write fails, AE plus a DLQ entry for bad input."""

from __future__ import annotations

import orjson
import pytest

from connectors.hl7v2.parse import decode, parse
from connectors.mllp.framing import Frame, Oversized
from connectors.mllp.listener import MllpListener
from hub.errors import DeliveryError
from hub.settings import Settings
from hub.topics import DLQ, HL7V2_RAW

GOOD = ("MSH|^~\\&|HIS|79048|HSSK|SYT|20261122||ADT^A01|CTRL-1|P|2.5\r"
        "PID|1||BN1^^^79048^MR~079090001234^^^BCA^NNVNM||Nguyễn^An^Văn\r").encode()


class MemoryWriter:
    def __init__(self, fail: set[str] = frozenset()) -> None:
        self.fail = fail
        self.written: list[tuple[str, bytes, bytes | None, list]] = []

    async def write(self, topic, value, key=None, headers=()):
        if topic in self.fail:
            raise DeliveryError(f"writing to {topic}: broker down")
        self.written.append((topic, value, key, list(headers)))
        return 0, len(self.written) - 1


def msa(ack: bytes) -> tuple[str, str]:
    seg = parse(decode(ack)).first("MSA")
    return seg[1], seg[2]


@pytest.fixture
def settings() -> Settings:
    return Settings(mllp_max_frame_bytes=4096)


async def test_accepted_message_is_stored_exactly_then_acked(settings: Settings) -> None:
    writer = MemoryWriter()
    ack = await MllpListener(settings, writer).handle_frame(Frame(GOOD), "127.0.0.1:5000", "c1")
    assert msa(ack) == ("AA", "CTRL-1")
    topic, value, key, headers = writer.written[0]
    assert (topic, value) == (HL7V2_RAW.name, GOOD)
    assert b"079090001234" not in key and b"BN1" not in key  # no identifiers in Kafka keys
    assert ("hl7.control_id", b"CTRL-1") in headers


async def test_same_patient_gets_the_same_key(settings: Settings) -> None:
    writer = MemoryWriter()
    listener = MllpListener(settings, writer)
    await listener.handle_frame(Frame(GOOD), "p", "c1")
    await listener.handle_frame(Frame(GOOD.replace(b"CTRL-1", b"CTRL-2")), "p", "c1")
    assert writer.written[0][2] == writer.written[1][2]


async def test_storage_failure_answers_ar_never_aa(settings: Settings) -> None:
    ack = await MllpListener(settings, MemoryWriter(fail={HL7V2_RAW.name})).handle_frame(Frame(GOOD), "p", "c1")
    assert msa(ack) == ("AR", "CTRL-1")
    assert parse(decode(ack)).first("ERR").component(3, 1) == "207"


async def test_undecodable_bytes_get_ae_and_a_dlq_entry_with_the_raw_bytes(settings: Settings) -> None:
    writer = MemoryWriter()
    bad = GOOD.replace("Nguyễn".encode(), b"Nguy\xff\xfen")
    ack = await MllpListener(settings, writer).handle_frame(Frame(bad), "p", "c1")
    assert msa(ack)[0] == "AE"
    topic, value, _, _ = writer.written[0]
    entry = orjson.loads(value)
    assert topic == DLQ.name and entry["stage"] == "ingest" and entry["code"] == "parse"
    import base64
    assert base64.b64decode(entry["original"]) == bad


async def test_missing_control_id_gets_ae(settings: Settings) -> None:
    ack = await MllpListener(settings, MemoryWriter()).handle_frame(Frame(GOOD.replace(b"CTRL-1", b"")), "p", "c1")
    assert msa(ack) == ("AE", "")


async def test_oversized_frame_gets_ar_naming_its_control_id(settings: Settings) -> None:
    writer = MemoryWriter()
    ack = await MllpListener(settings, writer).handle_frame(Oversized(9000, GOOD[:200]), "p", "c1")
    assert msa(ack) == ("AR", "CTRL-1")
    assert "exceeds" in parse(decode(ack)).first("MSA").component(3, 1)
    assert [w[0] for w in writer.written] == [DLQ.name]


async def test_not_hl7_at_all_gets_ae_without_a_control_id(settings: Settings) -> None:
    ack = await MllpListener(settings, MemoryWriter()).handle_frame(Frame(b"GET / HTTP/1.1\r\n"), "p", "c1")
    assert msa(ack) == ("AE", "")


async def test_dlq_also_down_means_ar(settings: Settings) -> None:
    writer = MemoryWriter(fail={DLQ.name, HL7V2_RAW.name})
    ack = await MllpListener(settings, writer).handle_frame(Frame(b"not hl7"), "p", "c1")
    assert msa(ack)[0] == "AR"
