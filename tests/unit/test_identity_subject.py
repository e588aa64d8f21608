"""A canonical event's subject becomes a matcher record, so real time and batch share one model."""

from __future__ import annotations

from hub.envelope import SYSTEM_BHYT, SYSTEM_CCCD, Envelope, Identifier, Source, Subject, mrn_system
from hub.identity.model import LINK, MatchModel
from hub.identity.records import SourceRecord, prepare
from hub.identity.subject import record_from_envelope


def event() -> Envelope:
    idents = (Identifier(SYSTEM_CCCD, "079185004321"), Identifier(mrn_system("79033"), "TD55012"),
              Identifier(SYSTEM_BHYT, "DN4797912345678"))
    payload = {"resourceType": "Patient", "telecom": [{"system": "phone", "value": "+84912345678"}],
               "address": [{"line": ["12 Lê Lợi"], "district": "Phường Bến Thành", "city": "Hồ Chí Minh"}]}
    return Envelope(event_id="e1", type="patient.updated", occurred_at="2026-01-05T08:00:00+07:00",
                    recorded_at="2026-01-05T08:00:01+07:00", source=Source("hl7v2", "79033", "m1"),
                    subject=Subject(idents, "Trần", ("Thị Bích", "Ngọc"), "1985-02-20", "female"), payload=payload)


def test_subject_fields_map_to_the_record() -> None:
    rec = record_from_envelope(event())
    assert (rec.name, rec.birth_date, rec.personal_id, rec.insurance) == (
        "Trần Thị Bích Ngọc", "1985-02-20", "079185004321", "DN4797912345678")
    assert (rec.facility, rec.mrn, rec.phone, rec.event_date) == ("79033", "TD55012", "+84912345678", "2026-01-05")


def test_an_event_links_to_a_registry_row_of_the_same_person() -> None:
    row = SourceRecord("VR1", name="TRAN THI BICH NGOC", birth_date="20/02/1985", sex="Nữ",
                       personal_id="079185004321", phone="0912345678")
    decision = MatchModel().score(prepare(record_from_envelope(event())), prepare(row))
    assert (decision.outcome, decision.rule) == (LINK, "cccd")
