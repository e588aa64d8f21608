"""ADT -> patient.updated (+ encounter.recorded): golden files and targeted behaviour.

Golden files: ``tests/data/hl7/<name>.hl7`` -> ``<name>-expected.json`` (the list of event dicts, as they go on
the wire). Regenerate with ``HSSK_REGEN_GOLDEN=1 pytest tests/unit/test_translate_adt.py``, then read every
changed golden before committing it: the goldens are the reviewed specification, not a snapshot.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.hl7v2.maps import UNMAPPED
from connectors.hl7v2.translate import SYSTEM_BHXH, TRANSLATORS, translate
from hub.envelope import (
    EVENT_ID_NAMESPACE, SYSTEM_BHYT, SYSTEM_CCCD, SYSTEM_OLD_ID, Envelope, Identifier, RawCoordinates,
    event_id, mrn_system,
)
from hub.errors import ParseError, TranslateError, UnsupportedMessage
from hub.topics import HL7V2_RAW

DATA = Path(__file__).resolve().parents[1] / "data" / "hl7"
GOLDEN_INPUTS = sorted(DATA.glob("*.hl7"))
RECEIVED_AT = "2026-01-22T09:15:00.250+07:00"
COORDS = RawCoordinates(HL7V2_RAW.name, 3, 1042)
REGEN = os.environ.get("HSSK_REGEN_GOLDEN") == "1"


def wire(events: list[Envelope]) -> list[dict[str, Any]]:
    """Events as JSON-decoded dicts, exactly what a consumer of events.canonical reads."""
    return [orjson.loads(event.to_json()) for event in events]


def message(*segments: str) -> bytes:
    return ("\r".join(segments) + "\r").encode("utf-8")


MSH = "MSH|^~\\&|HIS_CHORAY|79048|HSSK_HUB|SYT_HCM|20260115083000||{type}|MSG0001|P|2.5"
EVN = "EVN|{trigger}|20260115082512"
PID = "PID|1||079090001234^^^BCA^CCCD~CR0012345^^^79048^MR||Nguyễn^An^Văn||19900512|M"
PV1 = "PV1|1|I|NOI1^P.201||||||||||||||||VN001|||||||||||||||||||||||||20260115082000|{discharge}"


def adt(trigger: str = "A01", *, pid: str = PID, discharge: str = "", evn: str | None = EVN) -> bytes:
    segments = [MSH.format(type=f"ADT^{trigger}^ADT_A01")]
    if evn is not None:
        segments.append(evn.format(trigger=trigger))
    segments += [pid, PV1.format(discharge=discharge)]
    return message(*segments)


def run(raw: bytes, **kwargs: Any) -> list[Envelope]:
    return translate(raw, received_at=RECEIVED_AT, **kwargs)


class TestGolden:
    def test_there_are_enough_goldens(self) -> None:
        """Every golden input has its expected output, and the set covers at least the agreed cases."""
        assert len(GOLDEN_INPUTS) >= 5
        for path in GOLDEN_INPUTS:
            assert path.with_name(f"{path.stem}-expected.json").exists() or REGEN, path.name

    @pytest.mark.parametrize("path", GOLDEN_INPUTS, ids=lambda p: p.stem)
    def test_golden(self, path: Path) -> None:
        """The whole output for each golden message equals the reviewed expected JSON."""
        actual = wire(translate(path.read_bytes(), received_at=RECEIVED_AT, raw_coords=COORDS))
        expected_path = path.with_name(f"{path.stem}-expected.json")
        if REGEN:
            expected_path.write_text(json.dumps(actual, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        assert actual == json.loads(expected_path.read_text(encoding="utf-8"))

    @pytest.mark.parametrize("path", GOLDEN_INPUTS, ids=lambda p: p.stem)
    def test_golden_output_is_valid(self, path: Path, validate_fhir, validate_event) -> None:
        """Every payload validates as FHIR R4B and every event against schemas/canonical-event.v1.json."""
        for event in translate(path.read_bytes(), received_at=RECEIVED_AT, raw_coords=COORDS):
            validate_fhir(event.payload)
            validate_event(event)

    @pytest.mark.parametrize("path", GOLDEN_INPUTS, ids=lambda p: p.stem)
    def test_deterministic(self, path: Path) -> None:
        """Translating the same bytes twice gives byte-identical events (no clock, no randomness)."""
        raw = path.read_bytes()
        first = [e.to_json() for e in translate(raw, received_at=RECEIVED_AT, raw_coords=COORDS)]
        second = [e.to_json() for e in translate(raw, received_at=RECEIVED_AT, raw_coords=COORDS)]
        assert first == second


class TestDispatch:
    def test_registered_triggers(self) -> None:
        """The message types of issue 4 have translators, and nothing else does."""
        adt_triggers = {"A01", "A02", "A03", "A04", "A05", "A06", "A07", "A08", "A11", "A12", "A13", "A28", "A31",
                        "A40"}
        assert set(TRANSLATORS) == {("ADT", t) for t in adt_triggers} | {
            ("ORU", "R01"), ("OUL", "R22"), ("VXU", "V04"), ("ORM", "O01"), ("OML", "O21"), ("RDE", "O11"),
            ("RDS", "O13"), ("PPR", "PC1"), ("PPR", "PC2"), ("PPR", "PC3"), ("MDM", "T02"), ("MDM", "T04"), ("MDM", "T06"), ("MDM", "T08"),
            ("MDM", "T10"), ("MDM", "T11"), ("SIU", "S12"),
            ("SIU", "S13"), ("SIU", "S14"), ("SIU", "S15"), ("SIU", "S17")}

    @pytest.mark.parametrize(("msh9", "reason"), [
        ("ADT^A09^ADT_A09", "unsupported message type ADT^A09"),
        ("ADT^A34^ADT_A30", "unsupported message type ADT^A34"),
        ("QRY^A19^QRY_A19", "unsupported message type QRY^A19"),
        ("MDM^T01^MDM_T01", "unsupported message type MDM^T01"),
        ("ACK^A01^ACK", "unsupported message type ACK^A01"),
        ("ZZZ^Z01", "unsupported message type ZZZ^Z01"),
    ])
    def test_unsupported(self, msh9: str, reason: str) -> None:
        """A message type without a translator is UnsupportedMessage (a TranslateError) naming the type."""
        raw = message(MSH.format(type=msh9), PID)
        with pytest.raises(UnsupportedMessage) as info:
            run(raw)
        assert info.value.reason == reason
        assert info.value.code == "translate"

    def test_trigger_from_evn_when_msh9_has_none(self) -> None:
        """Old senders that put the trigger only in EVN-1 are still dispatched."""
        raw = message(MSH.format(type="ADT"), EVN.format(trigger="A04"), PID, PV1.format(discharge=""))
        events = run(raw)
        assert events[1].payload["status"] == "arrived"

    @pytest.mark.parametrize(("trigger", "discharge", "status"), [
        ("A01", "", "in-progress"),
        ("A04", "", "arrived"),
        ("A08", "", "in-progress"),
        ("A08", "20260120160000", "finished"),
    ])
    def test_encounter_status(self, trigger: str, discharge: str, status: str) -> None:
        """Status follows the trigger: admit in-progress, register arrived, update finished once discharged."""
        events = run(adt(trigger, discharge=discharge))
        assert [e.type for e in events] == ["patient.updated", "encounter.recorded"]
        assert events[1].payload["status"] == status


class TestEnvelope:
    def test_fields(self) -> None:
        """occurred_at is EVN-2, recorded_at the receipt time; source names facility, MSH-10, MSH-3 and raw."""
        patient_event, encounter_event = run(adt(), raw_coords=COORDS)
        for event in (patient_event, encounter_event):
            assert event.occurred_at == "2026-01-15T08:25:12+07:00"
            assert event.recorded_at == RECEIVED_AT
            assert event.source.system == "hl7v2"
            assert event.source.facility == "79048"
            assert event.source.message_id == "MSG0001"
            assert event.source.application == "HIS_CHORAY"
            assert event.source.raw == COORDS
            assert event.sensitivity == ()
            assert event.citizen_id is None
        assert patient_event.event_id == event_id("hl7v2", "79048", "MSG0001", "Patient")
        assert encounter_event.event_id == event_id("hl7v2", "79048", "MSG0001", "Encounter")

    @pytest.mark.parametrize("evn", [None, "EVN|{trigger}", "EVN|{trigger}|\"\""])
    def test_occurred_at_falls_back_to_msh7(self, evn: str | None) -> None:
        """Without EVN-2 the message time (MSH-7) is when it happened."""
        events = run(adt(evn=evn))
        assert events[0].occurred_at == "2026-01-15T08:30:00+07:00"

    def test_subject(self) -> None:
        """The subject repeats the Patient's identifiers and demographics for the MPI."""
        patient_event = run(adt())[0]
        assert patient_event.subject.identifiers == (
            Identifier(SYSTEM_CCCD, "079090001234"), Identifier(mrn_system("79048"), "CR0012345"))
        assert patient_event.subject.family == "Nguyễn"
        assert patient_event.subject.given == ("Văn", "An")
        assert patient_event.subject.birth_date == "1990-05-12"
        assert patient_event.subject.sex == "male"

    def test_no_pv1_gives_only_the_patient(self) -> None:
        """Without a PV1 segment only patient.updated is produced."""
        raw = message(MSH.format(type="ADT^A08^ADT_A01"), EVN.format(trigger="A08"), PID)
        assert [e.type for e in run(raw)] == ["patient.updated"]

    def test_received_at_is_passed_through(self) -> None:
        """recorded_at is the caller's receipt time, not a clock read here."""
        events = translate(adt(), received_at="2026-02-01T00:00:00.000+07:00")
        assert {e.recorded_at for e in events} == {"2026-02-01T00:00:00.000+07:00"}

    @pytest.mark.parametrize(("resource", "problem"), [
        ({"resourceType": "Patient", "birthDate": "1990-05-12T00:00:00+07:00"}, "birthDate"),
        ({"resourceType": "Patient", "gender": "M"}, "gender"),
        ({"resourceType": "Patient", "name": [{"use": "legal"}]}, "name.use"),
        ({"resourceType": "Patient", "identifier": [{"system": "urn:a b", "value": "1"}]}, "urn:a b"),
        ({"resourceType": "Encounter", "status": "admitted", "class": {"code": "IMP"}}, "encounter.status"),
        ({"resourceType": "Encounter", "status": "arrived", "class": {"code": "IMP"},
          "period": {"start": "2026-01-15T08:20:00"}}, "period.start"),
    ])
    def test_fhir_validator_rejects(self, validate_fhir, resource: dict, problem: str) -> None:
        """The FHIR check used on every payload does reject bad output (including codes the models let pass)."""
        with pytest.raises(Exception, match=re.escape(problem)):
            validate_fhir(resource)

    def test_schema_validator_rejects(self, validate_event) -> None:
        """The JSON Schema check rejects an envelope that breaks the contract."""
        import jsonschema

        event = run(adt())[0]
        for broken in (replace(event, type="patient.created"), replace(event, event_id="not-a-uuid"),
                       replace(event, subject=replace(event.subject, sex="M"))):
            with pytest.raises(jsonschema.ValidationError):
                validate_event(broken)

    def test_events_validate(self, validate_fhir, validate_event) -> None:
        """The inline message's events validate too (FHIR R4B payloads, JSON Schema envelope)."""
        for trigger, discharge in (("A01", ""), ("A04", ""), ("A08", "20260120160000")):
            for event in run(adt(trigger, discharge=discharge)):
                validate_fhir(event.payload)
                validate_event(event)


class TestPatient:
    def test_identifiers_bhyt_mrn_cccd(self) -> None:
        """Each PID-3 repetition maps by CX.5; a 15-char BHYT card also gives its 10-digit BHXH number."""
        pid = ("PID|1||HC4791234567890^^^BHXH^HC~BD0009876^^^^MR~079186001122^^^BCA^CCCD~023456789^^^CA^CMND"
               "~B1234567^^^VNM^PPN~X99^^^^ZZ||Phạm^Hà^Thị Thu||19860721|F")
        patient = run(adt(pid=pid))[0].payload
        assert patient["identifier"] == [
            {"system": SYSTEM_BHYT, "value": "HC4791234567890"},
            {"system": SYSTEM_BHXH, "value": "1234567890"},
            {"system": mrn_system("79048"), "value": "BD0009876"},
            {"system": SYSTEM_CCCD, "value": "079186001122"},
            {"system": SYSTEM_OLD_ID, "value": "023456789"},
            {"system": "http://fhir.ehealth.gov.vn/core/sid/passport", "value": "B1234567"},
            {"system": "urn:hssk:hl7v2:id-type:ZZ", "value": "X99"},
        ]

    @pytest.mark.parametrize(("card", "bhxh"), [
        ("HC4791234567890", "1234567890"),
        ("0123456789", "0123456789"),
        ("DN47912345", None),
        ("HC479123456789X", None),
    ])
    def test_bhxh_number(self, card: str, bhxh: str | None) -> None:
        """The BHXH number is the card's last 10 digits (15-char card, or a 10-digit card since 2021)."""
        pid = f"PID|1||{card}^^^BHXH^BHYT||Trần^Bích Ngọc^Thị||19850302|F"
        identifiers = run(adt(pid=pid))[0].payload["identifier"]
        assert [i["value"] for i in identifiers if i["system"] == SYSTEM_BHXH] == ([bhxh] if bhxh else [])

    def test_duplicate_identifiers_are_sent_once(self) -> None:
        """The same identifier repeated in PID-3 appears once."""
        pid = "PID|1||079090001234^^^BCA^CCCD~079090001234^^^BCA^NNVNM||Nguyễn^An^Văn"
        assert run(adt(pid=pid))[0].payload["identifier"] == [{"system": SYSTEM_CCCD, "value": "079090001234"}]

    def test_ids_are_deterministic_and_hide_id_numbers(self) -> None:
        """Patient.id is uuid5 of facility + first PID-3 (with CX.5); Encounter.id of facility + PV1-19."""
        patient_event, encounter_event = run(adt())
        expected = str(uuid.uuid5(EVENT_ID_NAMESPACE, "Patient|79048|CCCD|079090001234"))
        assert patient_event.payload["id"] == expected
        assert "079090001234" not in patient_event.payload["id"]
        assert encounter_event.payload["id"] == str(uuid.uuid5(EVENT_ID_NAMESPACE, "Encounter|79048|visit|VN001"))
        assert encounter_event.payload["subject"] == {"reference": f"Patient/{expected}"}

    def test_same_patient_same_visit_same_ids_across_messages(self) -> None:
        """Two messages about one patient and visit share Patient.id and Encounter.id (but not event ids)."""
        a01 = run(adt("A01"))
        a08 = run(adt("A08").replace(b"MSG0001", b"MSG0002"))
        assert a01[0].payload["id"] == a08[0].payload["id"]
        assert a01[1].payload["id"] == a08[1].payload["id"]
        assert a01[0].event_id != a08[0].event_id

    def test_encounter_id_falls_back_to_control_id(self) -> None:
        """Without a visit number (PV1-19) the Encounter id comes from MSH-10 and carries no identifier."""
        raw = adt().replace(b"|VN001|", b"||")
        encounter = run(raw)[1].payload
        assert encounter["id"] == str(uuid.uuid5(EVENT_ID_NAMESPACE, "Encounter|79048|message|MSG0001"))
        assert "identifier" not in encounter

    @pytest.mark.parametrize(("sex", "gender"), [("M", "male"), ("F", "female"), ("O", "other"), ("U", "unknown"),
                                                 ("A", "unknown"), ("N", "unknown"), ("X", "unknown"), ("", None)])
    def test_gender(self, sex: str, gender: str | None) -> None:
        """PID-8 maps through the sex table (default unknown); an empty PID-8 leaves gender out."""
        pid = f"PID|1||CR1^^^79048^MR||Lê^Phúc^Hoàng||1978|{sex}"
        event = run(adt(pid=pid))[0]
        assert event.payload.get("gender") == gender
        assert event.subject.sex == gender

    def test_unmapped_codes_are_counted(self) -> None:
        """Codes the maps do not know are translated to the default and counted by (table, code)."""
        before = (UNMAPPED[("administrative_sex", "X")], UNMAPPED[("encounter_class", "Q")])
        raw = adt(pid="PID|1||CR1^^^79048^MR||Lê^Phúc^Hoàng||1978|X").replace(b"PV1|1|I|", b"PV1|1|Q|")
        patient_event, encounter_event = run(raw)
        assert patient_event.payload["gender"] == "unknown"
        assert encounter_event.payload["class"]["code"] == "AMB"
        assert (UNMAPPED[("administrative_sex", "X")], UNMAPPED[("encounter_class", "Q")]) == (
            before[0] + 1, before[1] + 1)

    def test_name_and_contacts(self) -> None:
        """Name, birth date, address and phones come from PID-5, -7, -11, -13 and -14."""
        pid = ("PID|1||CR1^^^79048^MR||Lê^Phúc^Hoàng~Lê^Phúc^^^^^A||197803120000|M|||"
               "78 Trần Hưng Đạo^Phường Cầu Ông Lãnh^Hồ Chí Minh^^^VNM^H||0987654321^PRN^PH|02838554137")
        patient = run(adt(pid=pid))[0].payload
        assert patient["name"] == [
            {"use": "official", "text": "Lê Hoàng Phúc", "family": "Lê", "given": ["Hoàng", "Phúc"]},
            {"use": "usual", "text": "Lê Phúc", "family": "Lê", "given": ["Phúc"]},
        ]
        assert patient["birthDate"] == "1978-03-12"
        assert patient["address"][0]["line"] == ["78 Trần Hưng Đạo", "Phường Cầu Ông Lãnh"]
        assert patient["telecom"] == [{"system": "phone", "value": "0987654321", "use": "home"},
                                      {"system": "phone", "value": "02838554137", "use": "work"}]

    @pytest.mark.parametrize(("fields", "expected"), [
        ({29: "20260301103000", 30: "Y"}, {"deceasedDateTime": "2026-03-01T10:30:00+07:00"}),
        ({30: "Y"}, {"deceasedBoolean": True}),
        ({30: "N"}, {"deceasedBoolean": False}),
        ({24: "Y", 25: "2"}, {"multipleBirthInteger": 2}),
        ({24: "N"}, {"multipleBirthBoolean": False}),
        ({}, {}),
    ])
    def test_death_and_multiple_birth(self, fields: dict[int, str], expected: dict) -> None:
        """PID-29/30 give deceased[x]; PID-24/25 give multipleBirth[x] (birth order wins)."""
        tail = "".join(f"|{fields.get(n, '')}" for n in range(9, max(fields, default=8) + 1))
        patient = run(adt(pid=f"PID|1||CR1^^^79048^MR||Lê^Phúc^Hoàng||1978|M{tail}"))[0].payload
        assert {k: v for k, v in patient.items() if k.startswith(("deceased", "multipleBirth"))} == expected

    def test_z_segments_are_ignored(self) -> None:
        """Unknown Z-segments never fail a message and change nothing in the output."""
        with_z = adt() + b"ZPI|1|H\xe1\xbb\x99 ngh\xc3\xa8o|79^HCM\r"
        assert wire(run(with_z)) == wire(run(adt()))


def to_windows_1258(text: str) -> bytes:
    """Encode Vietnamese as Windows-1258 does: base letters (â, ơ, ư, đ...) precomposed, tone marks combining."""
    tones = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}
    out = []
    for ch in unicodedata.normalize("NFC", text):
        decomposed = unicodedata.normalize("NFD", ch)
        base = unicodedata.normalize("NFC", "".join(c for c in decomposed if c not in tones))
        out.append(base + "".join(c for c in decomposed if c in tones))
    return "".join(out).encode("cp1258")


class TestFailures:
    @pytest.mark.parametrize(("raw", "error", "reason"), [
        (adt(pid="PID|1||CR1^^^79048^MR||Lê^Phúc^Hoàng||2026133|M"), TranslateError,
         "PID-7: '2026133' is not a valid HL7 timestamp"),
        (adt().replace(b"20260115082000|", b"20260132082000|"), TranslateError,
         "PV1-44: '20260132082000' is not a valid HL7 timestamp"),
        (adt("A08", discharge="2026012016000"), TranslateError,
         "PV1-45: '2026012016000' is not a valid HL7 timestamp"),
        (adt(evn="EVN|{trigger}|yesterday"), TranslateError, "EVN-2: 'yesterday' is not a valid HL7 timestamp"),
        (message(MSH.format(type="ADT^A01^ADT_A01"), EVN.format(trigger="A01"), PV1.format(discharge="")),
         TranslateError, "PID segment missing"),
        (adt(pid="PID|1||^^^79048^MR~||Lê^Phúc^Hoàng"), TranslateError, "PID-3: no patient identifier"),
        (adt().replace(b"|MSG0001|", b"||"), TranslateError, "MSH-10: message control id missing"),
        (adt().replace(b"|79048|HSSK_HUB", b"||HSSK_HUB"), TranslateError, "MSH-4: sending facility missing"),
        (adt(evn=None).replace(b"|20260115083000|", b"||"), TranslateError, "MSH-7: message date/time missing"),
        (b"PID|1||CR1\r", ParseError, "message does not start with an MSH segment"),
        (b"", ParseError, "message does not start with an MSH segment"),
    ])
    def test_rejected(self, raw: bytes, error: type[Exception], reason: str) -> None:
        """What cannot become events raises the stage's error with a reason that names the field."""
        with pytest.raises(error) as info:
            run(raw)
        assert info.value.reason.startswith(reason)
        assert type(info.value) is error

    def test_undecodable_bytes(self) -> None:
        """Bytes that are not valid in the configured charset are a ParseError, never guessed."""
        raw = adt().replace("Nguyễn".encode(), b"Nguy\xc3\x28n")
        with pytest.raises(ParseError, match="not valid utf-8"):
            run(raw)

    def test_windows_1258(self) -> None:
        """Windows-1258 bytes decode when that charset is given, and names come out NFC."""
        text = adt(pid="PID|1||CR1^^^79048^MR||Trần^Bích Ngọc^Thị||19850302|F").decode("utf-8")
        raw = to_windows_1258(text)
        assert raw != text.encode("utf-8")
        with pytest.raises(ParseError):
            run(raw)  # the same bytes are not UTF-8
        patient = run(raw, charset="windows-1258")[0].payload
        assert patient["name"][0]["text"] == "Trần Thị Bích Ngọc"
        assert unicodedata.is_normalized("NFC", patient["name"][0]["text"])
        assert patient["name"][0]["given"] == ["Thị", "Bích Ngọc"]
