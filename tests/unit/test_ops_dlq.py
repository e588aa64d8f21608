"""DLQ entries as operators see them: decoding, filters, what a replay writes, and replaying only once."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timezone

import orjson
import pytest
from aiokafka import ConsumerRecord

from hub.envelope import Envelope, Source, Subject, event_id
from hub.errors import DeliveryError, IdentityError, TranslateError
from hub.ops import dlq, replay
from hub.pseudonym import keyed_hash
from hub.stream.app import Incoming, dead_letter
from hub.synthetic import Person, adt
from tests.unit.test_mllp_listener import to_cp1258

LAN = Person(cccd="079190001122", family="Trương", middle="Thị Ngọc", given="Lan", birth_date="19900311", sex="F",
             mrn="BN-DLQ-01", facility="79033", phone="0912345678")
SECRET = b"unit-test-key"


def record(value: bytes, *, partition: int = 1, offset: int = 7, key: bytes | None = b"k-1",
           timestamp: int = 1_764_000_000_000, headers: tuple = ()) -> ConsumerRecord:
    return ConsumerRecord("hub.dlq", partition, offset, timestamp, 0, key, value, None, len(key or b""),
                          len(value), list(headers))


def letter(stage: str, original: bytes, exc: Exception, headers: dict[str, bytes] | None = None,
           source_topic: str = "hl7v2.raw") -> bytes:
    """A DLQ value exactly as the live stages write it (hub.stream.app.dead_letter)."""
    incoming = Incoming(b"k-1", original, headers or {}, source_topic, 3, 42, 1_764_000_000.0)
    return dead_letter(stage, incoming, exc).value


HL7 = adt(LAN, "A01", "DLQ-U-1")
RAW_HEADERS = {"hl7.sending_facility": b"79033", "charset": b"utf-8", "received_at": b"2026-11-22T08:30:00.000+07:00"}


class TestEntryId:
    @pytest.mark.parametrize("text", ["", "2", "2/", "/3", "a/b", "2/-1", "2/3/4", "-1/3"])
    def test_malformed_ids_are_refused_with_the_format(self, text: str) -> None:
        with pytest.raises(ValueError, match="<partition>/<offset>"):
            dlq.EntryId.parse(text)

    @pytest.mark.parametrize(("text", "expected"), [("2/15", (2, 15)), (" 0:0 ", (0, 0)), ("11/900", (11, 900))])
    def test_ids(self, text: str, expected: tuple[int, int]) -> None:
        parsed = dlq.EntryId.parse(text)
        assert expected == (parsed.partition, parsed.offset)
        assert f"{expected[0]}/{expected[1]}" == str(parsed)


class TestParseEntry:
    def test_a_live_dead_letter_round_trips(self) -> None:
        """What the stages write is read back whole: stage, code, reason, bytes, headers, coordinates."""
        entry = dlq.parse_entry(record(letter("translate", HL7, TranslateError("unsupported message type DFT^P03"),
                                              RAW_HEADERS)))
        assert (entry.id, entry.stage, entry.code) == ("1/7", "translate", "translate")
        assert entry.reason == "unsupported message type DFT^P03"
        assert entry.original == HL7
        assert (entry.source_topic, entry.source_partition, entry.source_offset) == ("hl7v2.raw", 3, 42)
        assert entry.source == "hl7v2.raw/3/42"
        assert entry.headers["charset"] == "utf-8" and entry.facility == "79033"
        assert entry.key == b"k-1" and entry.replay_of is None

    def test_an_unexpected_exception_has_the_internal_code(self) -> None:
        entry = dlq.parse_entry(record(letter("translate", HL7, KeyError("PID"))))
        assert entry.code == "internal" and "KeyError" in entry.reason

    @pytest.mark.parametrize("value", [b"not json", b"{}", b'{"stage": "x", "original": "***"}', b"[1]"])
    def test_a_broken_record_is_kept_as_unreadable(self, value: bytes) -> None:
        entry = dlq.parse_entry(record(value, headers=(("stage", b"record"),)))
        assert entry.code == "unreadable" and entry.original == value
        assert entry.stage in ("record", "x")

    def test_an_input_too_big_for_one_dlq_record_keeps_its_head_with_length_and_hash(self) -> None:
        """Base64 makes a dead letter 4/3 of its input: past 7 MiB it would not fit under Kafka's 10 MiB limit."""
        from hub.stream.app import DLQ_HEAD_BYTES, DLQ_ORIGINAL_MAX, MAX_RECORD_BYTES

        big = HL7 + b"OBX|1|TX|||" + "Nguyễn Thị Hồng ".encode() * (DLQ_ORIGINAL_MAX // 18)
        value = letter("translate", big, TranslateError("unsupported message type"))
        entry = dlq.parse_entry(record(value))
        assert len(big) > DLQ_ORIGINAL_MAX and len(value) < MAX_RECORD_BYTES
        assert entry.original == big[:DLQ_HEAD_BYTES]
        assert entry.headers["original_bytes"] == str(len(big))
        assert entry.headers["original_sha256"] == hashlib.sha256(big).hexdigest()
        assert entry.reason.startswith("unsupported message type") and "hl7v2.raw/3/42" in entry.reason

    def test_an_input_at_the_limit_is_kept_whole(self) -> None:
        from hub.stream.app import DLQ_ORIGINAL_MAX, MAX_RECORD_BYTES

        whole = HL7 + b"x" * (DLQ_ORIGINAL_MAX - len(HL7))
        value = letter("translate", whole, TranslateError("x"))
        entry = dlq.parse_entry(record(value))
        assert entry.original == whole and "original_bytes" not in entry.headers
        assert len(value) < MAX_RECORD_BYTES

    def test_summary_carries_no_original_bytes(self) -> None:
        summary = dlq.parse_entry(record(letter("translate", HL7, TranslateError("x"), RAW_HEADERS))).summary()
        assert "original" not in summary and LAN.family not in orjson.dumps(summary).decode()
        assert summary["size"] == len(HL7)


class TestFacility:
    def test_from_raw_headers(self) -> None:
        assert "79048" == dlq.facility_of({"hl7.sending_facility": "79048"}, b"")

    def test_from_the_listener_headers(self) -> None:
        assert "79001" == dlq.facility_of({"facility": "79001"}, b"MSH|^~\\&|HIS|79048|")

    def test_from_msh_4_when_no_header(self) -> None:
        assert "79033" == dlq.facility_of({}, HL7)
        assert "79015" == dlq.facility_of({}, b"\xef\xbb\xbfMSH|^~\\&|HIS|79015^BV Nh\xc3\xa2n D\xc3\xa2n|HSSK\n")

    def test_from_an_event_source(self) -> None:
        event = Envelope(event_id("hl7v2", "79015", "M1", "PID"), "patient.updated", "2026-11-22T08:30:00+07:00",
                         "2026-11-22T08:30:01+07:00", Source("hl7v2", "79015", "M1"),
                         Subject(family="Lý", given=("Thanh",)), {"resourceType": "Patient"})
        assert "79015" == dlq.facility_of({}, event.to_json())

    @pytest.mark.parametrize("original", [b"", b"{broken", b"MSH", b"PID|1"])
    def test_unknown(self, original: bytes) -> None:
        assert "" == dlq.facility_of({}, original)


class TestParseTime:
    NOW = datetime(2026, 11, 22, 3, 0, tzinfo=timezone.utc)

    @pytest.mark.parametrize(("text", "expected"), [
        ("30m", datetime(2026, 11, 22, 2, 30, tzinfo=timezone.utc)),
        ("2h", datetime(2026, 11, 22, 1, 0, tzinfo=timezone.utc)),
        ("1d", datetime(2026, 11, 21, 3, 0, tzinfo=timezone.utc)),
        ("2026-11-22T08:30", datetime(2026, 11, 22, 1, 30, tzinfo=timezone.utc)),  # no offset: Asia/Ho_Chi_Minh
        ("2026-11-22T08:30:00+00:00", datetime(2026, 11, 22, 8, 30, tzinfo=timezone.utc)),
        ("2026-11-22", datetime(2026, 11, 21, 17, 0, tzinfo=timezone.utc)),
    ])
    def test_times(self, text: str, expected: datetime) -> None:
        assert int(expected.timestamp() * 1000) == dlq.parse_time(text, self.NOW)

    @pytest.mark.parametrize("text", ["yesterday", "5 minutes", "-2h", "2w", "22/11/2026"])
    def test_bad_times_say_what_is_accepted(self, text: str) -> None:
        with pytest.raises(ValueError, match="ISO 8601"):
            dlq.parse_time(text, self.NOW)


class TestFilter:
    ENTRY = dlq.parse_entry(record(letter("translate", HL7, TranslateError("unsupported message type DFT^P03"),
                                          RAW_HEADERS), timestamp=5_000))

    @pytest.mark.parametrize(("kwargs", "message"), [
        ({"stage": "translator"}, "unknown stage 'translator'"),
        ({"code": "oops"}, "unknown reason code 'oops'"),
        ({"since_ms": 2, "until_ms": 1}, "--until is before --since"),
    ])
    def test_bad_filters_are_refused_when_built(self, kwargs: dict, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            dlq.Filter(**kwargs)

    @pytest.mark.parametrize(("kwargs", "expected"), [
        ({}, True),
        ({"stage": "translate"}, True), ({"stage": "identity"}, False),
        ({"code": "translate"}, True), ({"code": "parse"}, False),
        ({"reason": "dft^p03"}, True), ({"reason": "CCCD"}, False),
        ({"facility": "79033"}, True), ({"facility": "79048"}, False),
        ({"since_ms": 5_000, "until_ms": 5_000}, True), ({"since_ms": 5_001}, False), ({"until_ms": 4_999}, False),
        ({"stage": "translate", "facility": "79048"}, False),
    ])
    def test_every_given_field_must_match(self, kwargs: dict, expected: bool) -> None:
        assert expected == dlq.Filter(**kwargs).matches(self.ENTRY)

    def test_empty(self) -> None:
        assert dlq.Filter().empty and not dlq.Filter(facility="79033").empty


class TestDecodeOriginal:
    def test_hl7_in_its_charset_one_segment_a_line_nfc(self) -> None:
        raw = to_cp1258(adt(LAN, "A08", "DLQ-U-2").decode())  # tone marks as combining bytes
        entry = dlq.parse_entry(record(letter("translate", raw, TranslateError("x"), {"charset": b"windows-1258"})))
        text = dlq.decode_original(entry)
        assert "Trương^Lan^Thị Ngọc" in text
        assert text.splitlines()[0].startswith("MSH|") and text.splitlines()[2].startswith("PID|")

    def test_events_as_indented_json(self) -> None:
        entry = dlq.parse_entry(record(letter("identity", '{"event_id": "e1", "subject": {"family": "Lê"}}'.encode(),
                                              TranslateError("x"), source_topic="events.canonical")))
        assert dlq.decode_original(entry) == '{\n  "event_id": "e1",\n  "subject": {\n    "family": "Lê"\n  }\n}'


class TestReplayRecord:
    @pytest.mark.parametrize(("stage", "topic"), [("ingest", "hl7v2.raw"), ("translate", "hl7v2.raw"),
                                                  ("identity", "events.canonical"), ("record", "events.citizen"),
                                                  ("fanout", "record.changes")])
    def test_each_stage_replays_into_its_source_topic(self, stage: str, topic: str) -> None:
        entry = dlq.parse_entry(record(letter(stage, HL7, TranslateError("x"))))
        assert topic == replay.replay_record(entry, SECRET).topic.name

    def test_original_bytes_key_and_headers_plus_the_replay_header(self) -> None:
        entry = dlq.parse_entry(record(letter("translate", HL7, TranslateError("x"), RAW_HEADERS)))
        out = replay.replay_record(entry, SECRET)
        assert (out.value, out.key) == (HL7, b"k-1")
        assert dict(out.headers) == {**RAW_HEADERS, "hssk.replay_of": b"1/7"}

    def test_a_replay_of_a_replay_names_only_the_newest_entry(self) -> None:
        entry = dlq.parse_entry(record(letter("translate", HL7, TranslateError("x"), {"hssk.replay_of": b"0/1"}),
                                       offset=9))
        assert entry.replay_of == "0/1"
        headers = replay.replay_record(entry, SECRET).headers
        assert [v for k, v in headers if k == "hssk.replay_of"] == [b"1/9"]

    def test_ingest_entries_get_the_listeners_key_and_receipt_time(self) -> None:
        """Refused at the listener, an entry has no raw key: it is made as the listener makes it."""
        value = orjson.dumps({"stage": "ingest", "code": "parse", "reason": "x", "original": base64.b64encode(HL7).decode(),
                              "headers": {"facility": "79033"},
                              "failed_at": "2026-11-22T08:30:00.000+07:00"})
        out = replay.replay_record(dlq.parse_entry(record(value, key=None)), SECRET)
        assert out.key == keyed_hash(SECRET, "79033", LAN.mrn).encode()
        assert dict(out.headers)["received_at"] == b"2026-11-22T08:30:00.000+07:00"

    @pytest.mark.parametrize(("value", "message"), [
        (b"garbage", "not a readable dead letter"),
        (orjson.dumps({"stage": "ingest", "code": "frame", "reason": "too big", "original": ""}), "oversized frame"),
        (orjson.dumps({"stage": "warehouse", "code": "deliver", "reason": "x", "original": ""}), "no source topic"),
    ])
    def test_entries_that_cannot_be_replayed(self, value: bytes, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            replay.replay_record(dlq.parse_entry(record(value)), SECRET)


    def test_an_entry_holding_only_the_head_of_its_input_is_not_replayed(self) -> None:
        from hub.stream.app import DLQ_ORIGINAL_MAX

        big = HL7 + b"x" * DLQ_ORIGINAL_MAX
        entry = dlq.parse_entry(record(letter("translate", big, TranslateError("x"))))
        with pytest.raises(ValueError, match=r"only the head of its \d+-byte input.*hl7v2.raw/3/42"):
            replay.replay_record(entry, SECRET)


class MemoryLedger:
    def __init__(self) -> None:
        self.notes: dict[str, str] = {}

    async def claim(self, entry_id: str, note: str) -> str | None:
        if entry_id in self.notes:
            return self.notes[entry_id]
        self.notes[entry_id] = note
        return None

    async def confirm(self, entry_id: str, note: str) -> None:
        self.notes[entry_id] = note

    async def release(self, entry_id: str) -> None:
        self.notes.pop(entry_id, None)

    async def lookup(self, entry_ids: list[str]) -> dict[str, str]:
        return {i: self.notes[i] for i in entry_ids if i in self.notes}


class MemoryWriter:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.written: list[tuple[str, bytes, bytes | None, tuple]] = []

    async def write(self, topic: str, value: bytes, key: bytes | None = None, headers=()) -> tuple[int, int]:
        if self.fail:
            raise DeliveryError(f"writing to {topic}: Kafka did not confirm the write")
        self.written.append((topic, value, key, tuple(headers)))
        return 2, len(self.written) - 1


class TestReplayOnce:
    ENTRY = dlq.parse_entry(record(letter("translate", HL7, TranslateError("x"), RAW_HEADERS)))

    async def test_a_second_replay_of_the_same_entry_is_skipped_and_says_where_the_first_went(self) -> None:
        ledger, writer = MemoryLedger(), MemoryWriter()
        [first] = await replay.replay_entries([self.ENTRY], SECRET, ledger, writer)
        [second] = await replay.replay_entries([self.ENTRY], SECRET, ledger, writer)
        assert (first.status, first.target) == ("replayed", "hl7v2.raw/2/0")
        assert second.status == "skipped" and "already replayed to hl7v2.raw/2/0" in second.detail
        assert len(writer.written) == 1

    async def test_a_failed_write_releases_the_claim_so_a_later_replay_can_work(self) -> None:
        ledger = MemoryLedger()
        [failed] = await replay.replay_entries([self.ENTRY], SECRET, ledger, MemoryWriter(fail=True))
        assert failed.status == "failed" and "did not confirm" in failed.detail and ledger.notes == {}
        [retried] = await replay.replay_entries([self.ENTRY], SECRET, ledger, MemoryWriter())
        assert retried.status == "replayed"

    async def test_an_unconfirmed_claim_is_reported_not_replayed(self) -> None:
        ledger, writer = MemoryLedger(), MemoryWriter()
        ledger.notes["1/7"] = "pending 2026-11-22T01:00:00+00:00"
        [outcome] = await replay.replay_entries([self.ENTRY], SECRET, ledger, writer)
        assert outcome.status == "skipped" and "did not confirm" in outcome.detail and writer.written == []

    async def test_force_replays_again(self) -> None:
        ledger, writer = MemoryLedger(), MemoryWriter()
        await replay.replay_entries([self.ENTRY], SECRET, ledger, writer)
        [again] = await replay.replay_entries([self.ENTRY], SECRET, ledger, writer, force=True)
        assert (again.status, again.detail) == ("replayed", "forced") and len(writer.written) == 2
        assert ledger.notes["1/7"].startswith("hl7v2.raw/2/1 ")

    async def test_dry_run_writes_and_claims_nothing(self) -> None:
        ledger = MemoryLedger()
        [outcome] = await replay.replay_entries([self.ENTRY], SECRET, ledger, None)
        assert (outcome.status, outcome.target) == ("would-replay", "hl7v2.raw") and ledger.notes == {}

    async def test_an_entry_that_cannot_be_replayed_fails_alone(self) -> None:
        broken = dlq.parse_entry(record(b"garbage", offset=8))
        writer = MemoryWriter()
        outcomes = await replay.replay_entries([broken, self.ENTRY], SECRET, MemoryLedger(), writer)
        assert [o.status for o in outcomes] == ["failed", "replayed"] and len(writer.written) == 1


class TestOneReplayPerSourceRecord:
    """Two entries for one source record (dead-lettered again after a crash before the commit): one replay."""

    FIRST = dlq.parse_entry(record(letter("translate", HL7, TranslateError("x"), RAW_HEADERS), offset=7))
    AGAIN = dlq.parse_entry(record(letter("translate", HL7, TranslateError("x"), RAW_HEADERS), offset=8))

    def test_ledger_keys(self) -> None:
        assert ["1/7", "src:hl7v2.raw/3/42"] == replay.ledger_keys(self.FIRST)
        ingest = dlq.parse_entry(record(orjson.dumps({"stage": "ingest", "code": "parse", "reason": "x",
                                                      "original": ""})))
        assert ["1/7"] == replay.ledger_keys(ingest)

    async def test_the_second_entry_of_a_source_record_is_skipped(self) -> None:
        ledger, writer = MemoryLedger(), MemoryWriter()
        outcomes = await replay.replay_entries([self.FIRST, self.AGAIN], SECRET, ledger, writer)
        assert [o.status for o in outcomes] == ["replayed", "skipped"] and len(writer.written) == 1
        assert "its source record hl7v2.raw/3/42 was already replayed to hl7v2.raw/2/0" in outcomes[1].detail
        assert "1/8" not in ledger.notes  # the skipped entry's own claim is given back
        [dry] = await replay.replay_entries([self.AGAIN], SECRET, ledger, None)
        assert dry.status == "skipped" and "source record" in dry.detail

    async def test_a_failed_write_gives_back_every_claim(self) -> None:
        ledger = MemoryLedger()
        await replay.replay_entries([self.FIRST], SECRET, ledger, MemoryWriter(fail=True))
        assert ledger.notes == {}


def test_counts_by_stage_and_code_most_first() -> None:
    entries = [dlq.parse_entry(record(letter(stage, HL7, exc), offset=i)) for i, (stage, exc) in enumerate([
        ("translate", TranslateError("a")), ("identity", IdentityError("b")), ("translate", TranslateError("c")),
        ("translate", KeyError("PID"))])]
    assert [("translate", "translate", 2), ("identity", "identity", 1), ("translate", "internal", 1)] == dlq.counts(
        entries)
    assert [] == dlq.counts([])
