"""Delivery documents: every format validates against schemas/out-topic.v1.json, the FHIR Bundle with
fhir.resources, the health book hides what the subscription may not see; idempotency keys are stable."""

from __future__ import annotations

import json
from typing import Any, Callable

import orjson
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from hub.envelope import Envelope, Source, Subject
from hub.fanout import formats
from hub.fanout.healthbook import health_book
from hub.identity.events import merged_event
from hub.record.apply import empty_record
from hub.settings import REPO_ROOT

CITIZEN = "cz-5f0c1d2e3a4b5c6d7e8f90a1b2c3d4e5"


def out_validator() -> Draft202012Validator:
    schemas = REPO_ROOT / "schemas"
    canonical = json.loads((schemas / "canonical-event.v1.json").read_text(encoding="utf-8"))
    out = json.loads((schemas / "out-topic.v1.json").read_text(encoding="utf-8"))
    registry = Registry().with_resource(canonical["$id"], Resource.from_contents(canonical))
    Draft202012Validator.check_schema(out)
    return Draft202012Validator(out, registry=registry)


VALIDATOR = out_validator()


def encounter(sensitivity: tuple[str, ...] = ()) -> Envelope:
    return Envelope(
        event_id="0b7e3c1a-5d2f-5e8a-9c4b-1f2e3d4c5b6a", type="encounter.recorded",
        occurred_at="2026-11-30T08:15:00+07:00", recorded_at="2026-11-30T08:15:02+07:00",
        source=Source("hl7v2", "79048", "MSG0001"), subject=Subject(family="Phạm", given=("Văn", "Đức")),
        payload={"resourceType": "Encounter", "id": "VV260001", "status": "finished",
                 "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
                 "subject": {"reference": f"Patient/{CITIZEN}"},
                 "period": {"start": "2026-11-30T08:15:00+07:00"}},
        sensitivity=sensitivity, citizen_id=CITIZEN, record_version=7)


def pham_van_duc() -> dict[str, Any]:
    r = empty_record(CITIZEN)
    r["version"] = 7
    r["demographics"] = {"name": {"family": "Phạm", "given": ["Văn", "Đức"], "text": "Phạm Văn Đức"},
                         "gender": "male", "birth_date": "1958-04-30", "address": None, "telecom": [],
                         "provenance": {}}
    r["encounters"] = {
        "VV260001": {"status": "finished", "class": "IMP", "facility": "79048",
                     "period": {"start": "2026-11-30T08:15:00+07:00"}, "provenance": {}},
        "VV260002": {"status": "finished", "class": "AMB", "facility": "79033", "sensitivity": ["hiv"],
                     "period": {"start": "2026-11-29T10:00:00+07:00"}, "provenance": {}},
    }
    return r


def doc(item: formats.Outbound) -> dict[str, Any]:
    data = orjson.loads(item.body)
    VALIDATOR.validate(data)
    assert data["idempotency_key"] == item.key and data["format"] == item.format
    return data


class TestDocuments:
    def test_an_event_delivery_carries_the_canonical_event(self, validate_event: Callable[[Envelope], None]) -> None:
        event = encounter()
        data = doc(formats.event_delivery("thanhpho", event))
        assert (data["event_id"], data["record_version"], data["citizen_id"]) == (event.event_id, 7, CITIZEN)
        validate_event(Envelope.from_dict(data["event"]))

    def test_a_bundle_delivery_is_a_valid_fhir_collection(self) -> None:
        from fhir.resources.R4B.bundle import Bundle

        data = doc(formats.bundle_delivery("thanhpho", encounter()))
        bundle = Bundle.model_validate(data["bundle"])
        assert bundle.type == "collection" and bundle.entry[0].resource.id == "VV260001"
        assert data["bundle"]["entry"][0]["fullUrl"] == f"urn:uuid:{encounter().event_id}"

    def test_a_health_book_leaves_out_and_does_not_count_sensitive_entries(self) -> None:
        data = doc(formats.book_delivery("sotay", pham_van_duc(), frozenset()))
        book = data["health_book"]
        assert [e["id"] for e in book["encounters"]] == ["VV260001"]
        assert book["administrative"]["name"] == "Phạm Văn Đức" and data["record_version"] == 7
        assert "withheld_sensitive" not in book["summary"] and b"hiv" not in orjson.dumps(data)

    def test_an_entitled_health_book_shows_the_entry(self) -> None:
        book = doc(formats.book_delivery("hiv-care", pham_van_duc(), frozenset({"hiv"})))["health_book"]
        assert [e["id"] for e in book["encounters"]] == ["VV260001", "VV260002"]

    def test_the_api_health_book_is_unchanged_by_entitlement_defaults(self) -> None:
        book = health_book(pham_van_duc())
        assert book["summary"]["withheld_sensitive"] == 1 and len(book["encounters"]) == 1

    def test_a_merge_notice_names_the_retired_and_the_survivor(self) -> None:
        merge = merged_event(CITIZEN, "cz-retired", cause="A40-77", occurred_at="2026-12-01T09:00:00+07:00",
                             recorded_at="2026-12-01T09:00:01+07:00")
        data = doc(formats.merge_notice("sotay", merge))
        assert data["citizen_id"] == "cz-retired"
        assert data["merged"] == {"retired_citizen_id": "cz-retired", "merged_into": CITIZEN}


class TestIdempotencyKeys:
    def test_the_same_change_has_the_same_key_and_bytes_every_time(self) -> None:
        for build in (formats.event_delivery, formats.bundle_delivery):
            a, b = build("thanhpho", encounter()), build("thanhpho", encounter())
            assert (a.key, a.body) == (b.key, b.body)

    def test_keys_differ_by_subscription_and_format(self) -> None:
        keys = {formats.event_delivery("a", encounter()).key, formats.event_delivery("b", encounter()).key,
                formats.bundle_delivery("a", encounter()).key}
        assert len(keys) == 3

    def test_a_health_book_key_follows_the_record_version(self) -> None:
        record = pham_van_duc()
        first = formats.book_delivery("sotay", record, frozenset())
        assert formats.book_delivery("sotay", record, frozenset()).key == first.key
        record["version"] = 8
        assert formats.book_delivery("sotay", record, frozenset()).key != first.key

    @pytest.mark.parametrize("key", [formats.idempotency_key("sotay", "health-book", CITIZEN, "7")])
    def test_a_key_is_40_hex_digits_and_names_no_one(self, key: str) -> None:
        assert len(key) == 40 and int(key, 16) >= 0 and CITIZEN not in key
