"""The listener's decisions, with an in-memory writer standing in for Kafka (the real broker is in
tests/integration): AA only after the write, AR when the write fails, AE plus a DLQ entry for bad input."""

from __future__ import annotations

import unicodedata

import orjson
import pytest

from connectors.hl7v2.parse import decode, parse
from connectors.mllp.framing import Frame, Oversized
from connectors.mllp.listener import MllpListener, Peer, split_batch
from connectors.mllp.sources import ClientCertificate, SourcesFile, parse_sources
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


SOURCES = {
    "facility": [
        {"code": "79048", "applications": ["HIS", "LIS"]},
        {"code": "79012", "charset": "windows-1258"},
        {"code": "79005", "honour_msh18": True, "charset": "latin-1"},
        {"code": "79033", "tls_client_cn": "his.tudu.example"},
    ],
}
P = Peer("127.0.0.1:5000", "c1")


def sources(data: dict | None = None) -> SourcesFile:
    file = SourcesFile(None)
    file.current = parse_sources(SOURCES if data is None else data)
    return file


def make(settings: Settings, writer: "MemoryWriter", data: dict | None = None) -> MllpListener:
    return MllpListener(settings, writer, sources(data))


async def test_accepted_message_is_stored_exactly_then_acked(settings: Settings) -> None:
    writer = MemoryWriter()
    ack = await make(settings, writer).handle_frame(Frame(GOOD), P)
    assert msa(ack) == ("AA", "CTRL-1")
    topic, value, key, headers = writer.written[0]
    assert (topic, value) == (HL7V2_RAW.name, GOOD)
    assert b"079090001234" not in key and b"BN1" not in key  # no identifiers in Kafka keys
    assert ("hl7.control_id", b"CTRL-1") in headers


async def test_same_patient_gets_the_same_key(settings: Settings) -> None:
    writer = MemoryWriter()
    listener = make(settings, writer)
    await listener.handle_frame(Frame(GOOD), P)
    await listener.handle_frame(Frame(GOOD.replace(b"CTRL-1", b"CTRL-2")), P)
    assert writer.written[0][2] == writer.written[1][2]


async def test_storage_failure_answers_ar_never_aa(settings: Settings) -> None:
    ack = await make(settings, MemoryWriter(fail={HL7V2_RAW.name})).handle_frame(Frame(GOOD), P)
    assert msa(ack) == ("AR", "CTRL-1")
    assert parse(decode(ack)).first("ERR").component(3, 1) == "207"


async def test_undecodable_bytes_get_ae_and_a_dlq_entry_with_the_raw_bytes(settings: Settings) -> None:
    writer = MemoryWriter()
    bad = GOOD.replace("Nguyễn".encode(), b"Nguy\xff\xfen")
    ack = await make(settings, writer).handle_frame(Frame(bad), P)
    assert msa(ack)[0] == "AE"
    topic, value, _, _ = writer.written[0]
    entry = orjson.loads(value)
    assert topic == DLQ.name and entry["stage"] == "ingest" and entry["code"] == "parse"
    import base64
    assert base64.b64decode(entry["original"]) == bad


async def test_missing_control_id_gets_ae(settings: Settings) -> None:
    ack = await make(settings, MemoryWriter()).handle_frame(Frame(GOOD.replace(b"CTRL-1", b"")), P)
    assert msa(ack) == ("AE", "")


async def test_oversized_frame_gets_ar_naming_its_control_id(settings: Settings) -> None:
    writer = MemoryWriter()
    ack = await make(settings, writer).handle_frame(Oversized(9000, GOOD[:200]), P)
    assert msa(ack) == ("AR", "CTRL-1")
    assert "exceeds" in parse(decode(ack)).first("MSA").component(3, 1)
    assert [w[0] for w in writer.written] == [DLQ.name]


async def test_not_hl7_at_all_gets_ae_without_a_control_id(settings: Settings) -> None:
    ack = await make(settings, MemoryWriter()).handle_frame(Frame(b"GET / HTTP/1.1\r\n"), P)
    assert msa(ack) == ("AE", "")


async def test_dlq_also_down_means_ar(settings: Settings) -> None:
    writer = MemoryWriter(fail={DLQ.name, HL7V2_RAW.name})
    ack = await make(settings, writer).handle_frame(Frame(b"not hl7"), P)
    assert msa(ack)[0] == "AR"


def err_code(ack: bytes) -> str:
    return parse(decode(ack)).first("ERR").component(3, 1)


async def test_unknown_facility_gets_ar_and_nothing_is_stored(settings: Settings) -> None:
    writer = MemoryWriter()
    ack = await make(settings, writer).handle_frame(Frame(GOOD.replace(b"|79048|", b"|79999|")), P)
    assert msa(ack) == ("AR", "CTRL-1")
    assert err_code(ack) == "204" and "79999" in parse(decode(ack)).first("MSA").component(3, 1)
    assert writer.written == []


async def test_application_not_allowed_for_the_facility_gets_ar(settings: Settings) -> None:
    writer = MemoryWriter()
    ack = await make(settings, writer).handle_frame(Frame(GOOD.replace(b"|HIS|", b"|PACS|")), P)
    assert msa(ack)[0] == "AR" and "MSH-3" in parse(decode(ack)).first("MSA").component(3, 1)
    assert writer.written == []


async def test_open_mode_accepts_any_facility(settings: Settings) -> None:
    writer = MemoryWriter()
    ack = await make(settings, writer, {"open_mode": True}).handle_frame(Frame(GOOD.replace(b"|79048|", b"|79999|")), P)
    assert msa(ack)[0] == "AA" and len(writer.written) == 1


async def test_facility_bound_to_a_certificate_refuses_plain_tcp_and_other_certificates(settings: Settings) -> None:
    msg = GOOD.replace(b"|79048|", b"|79033|")
    writer = MemoryWriter()
    listener = make(settings, writer)
    assert msa(await listener.handle_frame(Frame(msg), P))[0] == "AR"
    other = Peer("p", "c2", ClientCertificate("00" * 32, "his.choray.example"))
    assert msa(await listener.handle_frame(Frame(msg), other))[0] == "AR"
    right = Peer("p", "c3", ClientCertificate("11" * 32, "his.tudu.example"))
    assert msa(await listener.handle_frame(Frame(msg), right))[0] == "AA"
    assert len(writer.written) == 1


def to_cp1258(text: str) -> bytes:
    """Vietnamese in windows-1258: base letters precomposed (â, ơ, ư ...), the tone mark as a combining byte."""
    out = b""
    for ch in text:
        try:
            out += ch.encode("cp1258")
        except UnicodeEncodeError:
            parts = unicodedata.normalize("NFD", ch)
            out += unicodedata.normalize("NFC", parts[:-1]).encode("cp1258") + parts[-1].encode("cp1258")
    return out


async def test_windows_1258_source_is_decoded_with_its_charset_and_the_header_says_so(settings: Settings) -> None:
    text = GOOD.decode().replace("|79048|", "|79012|").replace("Nguyễn^An^Văn", "Trần^Đức^Văn")
    raw = to_cp1258(text)
    assert raw != text.encode()  # the bytes really differ from UTF-8
    writer = MemoryWriter()
    ack = await make(settings, writer).handle_frame(Frame(raw), P)
    assert msa(ack)[0] == "AA"
    _, value, _, headers = writer.written[0]
    assert value == raw and ("charset", b"windows-1258") in headers
    assert decode(value, "windows-1258") == text.strip("\r")  # NFC again after decoding


async def test_utf8_bytes_from_a_latin1_source_that_honours_msh18(settings: Settings) -> None:
    text = GOOD.decode().replace("|79048|", "|79005|").replace("|P|2.5", "|P|2.5|||||VN|UNICODE UTF-8")
    writer = MemoryWriter()
    ack = await make(settings, writer).handle_frame(Frame(text.encode()), P)
    assert msa(ack)[0] == "AA"
    assert ("charset", b"utf-8") in writer.written[0][3]


async def test_msh18_is_ignored_when_the_source_does_not_trust_it(settings: Settings) -> None:
    text = GOOD.decode().replace("|79048|", "|79012|").replace("|P|2.5", "|P|2.5|||||VN|UNICODE UTF-8")
    writer = MemoryWriter()
    await make(settings, writer).handle_frame(Frame(to_cp1258(text)), P)
    assert ("charset", b"windows-1258") in writer.written[0][3]


async def test_enhanced_mode_gets_commit_acks_and_ne_gets_none(settings: Settings) -> None:
    writer = MemoryWriter()
    listener = make(settings, writer)
    al = GOOD.replace(b"|P|2.5", b"|P|2.5|||AL|NE")
    assert msa(await listener.handle_frame(Frame(al), P))[0] == "CA"
    ne = GOOD.replace(b"|P|2.5", b"|P|2.5|||NE|NE").replace(b"CTRL-1", b"CTRL-9")
    assert await listener.handle_frame(Frame(ne), P) is None
    assert len(writer.written) == 2  # stored all the same


BATCH = ("BHS|^~\\&|HIS|79048|HSSK|SYT|20261122\r" + GOOD.decode() + GOOD.decode().replace("CTRL-1", "CTRL-2")
         + GOOD.decode().replace("|79048|", "|79999|").replace("CTRL-1", "CTRL-3") + "BTS|3\r").encode()


def test_split_batch_keeps_each_message_byte_for_byte() -> None:
    parts = split_batch(BATCH)
    assert parts[0] == GOOD and parts[1] == GOOD.replace(b"CTRL-1", b"CTRL-2") and len(parts) == 3


async def test_batch_over_mllp_accounts_for_every_message(settings: Settings) -> None:
    writer = MemoryWriter()
    ack = await make(settings, writer).handle_frame(Frame(BATCH), P)
    text = decode(ack)
    assert text.startswith("BHS|") and "BTS|3|3 messages received" in text
    codes = [line.split("|")[1:3] for line in text.split("\r") if line.startswith("MSA")]
    assert codes == [["AA", "CTRL-1"], ["AA", "CTRL-2"], ["AR", "CTRL-3"]]
    assert [w[0] for w in writer.written] == [HL7V2_RAW.name, HL7V2_RAW.name]


async def test_a_source_with_strict_validation_gets_ae_naming_the_problem(settings: Settings) -> None:
    """validate = true in the sources file: hl7apy's strict check runs at ingestion; a message that fails it is
    answered AE with the finding and dead-lettered, a conformant one is stored."""
    strict = {"facility": [{"code": "79048", "validate": True}]}
    conformant = ("MSH|^~\\&|HIS|79048|HSSK|SYT|20261122083000||ADT^A01^ADT_A01|STRICT-1|P|2.5\r"
                  "EVN|A01|20261122083000\r"
                  "PID|1||BN1^^^79048^MR||Nguyễn^An^Văn||19900101|M\r"
                  "PV1|1|I\r").encode()
    broken = conformant.replace(b"STRICT-1", b"STRICT-2").replace(b"PV1|1|I\r", b"PV1|1|I\rXYZ|junk\r")
    writer = MemoryWriter()
    listener = make(settings, writer, strict)
    assert msa(await listener.handle_frame(Frame(conformant), P)) == ("AA", "STRICT-1")
    ack = await listener.handle_frame(Frame(broken), P)
    assert msa(ack) == ("AE", "STRICT-2")
    assert b"XYZ" in ack  # the ERR text names the offending segment
    assert [t for t, *_ in writer.written] == [HL7V2_RAW.name, DLQ.name]
    assert orjson.loads(writer.written[1][1])["code"] == "parse"
