"""Reading a citizen event for the record (hub.record.event) and writing its change (hub.stream.record):
the record's light reading accepts and refuses exactly what ``Envelope.from_dict`` does, and the change spliced
onto the event's own JSON is the object re-serialising it would give."""

from __future__ import annotations

import copy

import orjson
import pytest

from hub.envelope import Envelope, RawCoordinates
from hub.record.event import RecordEvent, read_event
from hub.stream.record import change_body
from tests.unit.test_record_merge import CHO_RAY, HUNG, LAN, TU_DU, encounter, observation, patient

HUNG_PATIENT = patient(HUNG, "h1", "2026-01-05T08:00:00+07:00", "Nguyễn", "Văn Hùng", phone="0903111222", mrn=CHO_RAY)
LAN_RESULT = observation(LAN, "l2", "2026-02-10T10:00:00+07:00", mrn=TU_DU, value=6.1)
HIV_VISIT = encounter(LAN, "l3", "2026-02-11T09:00:00+07:00", mrn=TU_DU, sensitivity=("hiv",))


def fields(event: Envelope | RecordEvent) -> tuple:
    if isinstance(event, Envelope):
        event = RecordEvent.of(event)
    return (event.event_id, event.type, event.occurred_at, event.recorded_at, event.facility, event.system,
            event.payload, event.sensitivity, event.citizen_id, event.member_id, event.subject)


def with_raw(event: Envelope) -> dict:
    data = event.to_dict()
    data["source"]["raw"] = {"topic": "hl7v2.raw", "partition": 2, "offset": 41}
    return data


ACCEPTED = {
    "a Patient with its identifiers": HUNG_PATIENT.to_dict(),
    "an Observation": LAN_RESULT.to_dict(),
    "a flagged Encounter": HIV_VISIT.to_dict(),
    "source coordinates": with_raw(LAN_RESULT),
    "a merged-away member": HUNG_PATIENT.with_citizen(HUNG, LAN).to_dict(),
    "no subject": {k: v for k, v in LAN_RESULT.to_dict().items() if k != "subject"},
    "given names as a string": {**LAN_RESULT.to_dict(), "subject": {"given": "Lan"}},
}


@pytest.mark.parametrize("data", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_a_well_formed_event_reads_as_from_dict_reads_it(data: dict) -> None:
    assert fields(read_event(copy.deepcopy(data))) == fields(Envelope.from_dict(copy.deepcopy(data)))


def test_the_source_coordinates_are_kept_on_the_envelope() -> None:
    assert read_event(with_raw(LAN_RESULT)).envelope.source.raw == RawCoordinates("hl7v2.raw", 2, 41)


def test_an_event_with_source_coordinates_is_read_without_building_an_envelope() -> None:
    """Most events carry them (HL7 v2, the importers): they stay on the direct path (~3x cheaper)."""
    assert read_event(with_raw(LAN_RESULT))._envelope is None
    assert read_event(LAN_RESULT.to_dict())._envelope is None


def broken(change) -> dict:
    data = LAN_RESULT.to_dict()
    change(data)
    return data


REFUSED = {  # malformed first: what from_dict raises, read_event raises
    "not an object": [LAN_RESULT.to_dict()],
    "no source": broken(lambda d: d.pop("source")),
    "no event id": broken(lambda d: d.pop("event_id")),
    "no payload": broken(lambda d: d.pop("payload")),
    "a source without its facility": broken(lambda d: d["source"].pop("facility")),
    "an unknown source field": broken(lambda d: d["source"].update(ward="26734")),
    "an identifier without a value": broken(lambda d: d["subject"]["identifiers"][0].pop("value")),
    "an identifier with an extra field": broken(lambda d: d["subject"]["identifiers"][0].update(use="official")),
    "identifiers that are not a list": broken(lambda d: d["subject"].update(identifiers=None)),
    "a sensitivity that is not a list": broken(lambda d: d.update(sensitivity=7)),
    "bad source coordinates": broken(lambda d: d["source"].update(raw={"topic": "hl7v2.raw"})),
    "source coordinates with an extra field": broken(lambda d: d["source"].update(
        raw={"topic": "hl7v2.raw", "partition": 0, "offset": 1, "leader_epoch": 3})),
    "source coordinates that are not an object": broken(lambda d: d["source"].update(raw=[1, 2])),
}


@pytest.mark.parametrize("data", REFUSED.values(), ids=REFUSED.keys())
def test_a_malformed_event_is_refused_with_from_dicts_error(data) -> None:
    with pytest.raises((KeyError, TypeError)) as expected:
        Envelope.from_dict(copy.deepcopy(data))
    with pytest.raises(expected.type):
        read_event(copy.deepcopy(data))


class TestChangeBody:
    def test_the_spliced_change_is_the_re_serialised_event_with_its_version(self) -> None:
        raw = LAN_RESULT.to_json()
        data = orjson.loads(raw)
        body = change_body(raw, data, LAN, 7)
        assert body == orjson.dumps({**data, "citizen_id": LAN, "record_version": 7})

    def test_an_event_applied_to_a_survivor_names_the_survivor(self) -> None:
        raw = LAN_RESULT.to_json()
        change = orjson.loads(change_body(raw, orjson.loads(raw), HUNG, 3))
        assert change["citizen_id"] == HUNG and change["record_version"] == 3

    def test_an_event_that_carries_a_version_gets_the_records(self) -> None:
        data = {**LAN_RESULT.to_dict(), "record_version": 1}
        change = orjson.loads(change_body(orjson.dumps(data), data, LAN, 4))
        assert change == {**data, "record_version": 4}

    def test_json_with_trailing_space_is_re_serialised(self) -> None:
        raw = LAN_RESULT.to_json() + b"\n"
        assert orjson.loads(change_body(raw, orjson.loads(raw), LAN, 2))["record_version"] == 2
