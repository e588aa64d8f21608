"""The shared pieces: settings from the environment, the topic catalogue, the envelope contract, log redaction."""

from __future__ import annotations

import io
import json
from pathlib import Path

import jsonschema
import orjson
import structlog

from hub import logging as hub_logging
from hub.envelope import SYSTEM_CCCD, Envelope, Identifier, RawCoordinates, Source, Subject, event_id
from hub.settings import REPO_ROOT, Settings
from hub.topics import CATALOGUE

SCHEMA = json.loads((REPO_ROOT / "schemas" / "canonical-event.v1.json").read_text())


def test_settings_read_ports_from_the_environment() -> None:
    s = Settings.from_env({"HSSK_KAFKA_PORT": "19092", "HSSK_REDIS_PORT": "16379", "HSSK_MLLP_PORT": "12575"})
    assert (s.kafka_bootstrap, s.redis_url, s.mllp_port) == ("127.0.0.1:19092", "redis://127.0.0.1:16379/0", 12575)
    assert s.redis_port == 16379


def test_defaults() -> None:
    s = Settings.from_env({})
    assert (s.mllp_port, s.mllp_max_frame_bytes) == (2575, 10 * 1024 * 1024)


def test_catalogue_names_are_unique_and_raw_topics_are_kept_forever() -> None:
    names = [t.name for t in CATALOGUE]
    assert len(names) == len(set(names))
    raw = {t.name: t for t in CATALOGUE}["hl7v2.raw"]
    assert raw.config()["retention.ms"] == "-1"


def sample_envelope() -> Envelope:
    return Envelope(
        event_id=event_id("hl7v2", "79048", "MSG1", "Patient"), type="patient.updated",
        occurred_at="2026-11-22T08:25:00+07:00", recorded_at="2026-11-22T08:30:00.123+07:00",
        source=Source("hl7v2", "79048", "MSG1", "HIS", RawCoordinates("hl7v2.raw", 0, 42)),
        subject=Subject((Identifier(SYSTEM_CCCD, "079090001234"),), "Nguyễn", ("Văn", "An"), "1990-05-12", "male"),
        payload={"resourceType": "Patient", "id": "x"},
    )


def test_envelope_round_trips_and_validates_against_the_published_schema() -> None:
    env = sample_envelope()
    data = orjson.loads(env.to_json())
    jsonschema.validate(data, SCHEMA)
    assert Envelope.from_json(env.to_json()) == env
    jsonschema.validate(orjson.loads(env.with_citizen("cz-1").to_json()), SCHEMA)


def test_event_ids_are_deterministic() -> None:
    assert event_id("hl7v2", "79048", "M1", "Patient") == event_id("hl7v2", "79048", "M1", "Patient")
    assert event_id("hl7v2", "79048", "M1", "Patient") != event_id("hl7v2", "79048", "M1", "Encounter")


def test_logs_never_carry_names_or_identifier_numbers() -> None:
    out = io.StringIO()
    hub_logging.configure("info", stream=out)
    try:
        structlog.get_logger("t").info("message rejected for 079090001234", name="Nguyễn Văn An", control_id="M1",
                                       note="card DN4797912345678")
    finally:
        structlog.reset_defaults()
    line = out.getvalue()
    for secret in ("079090001234", "Nguyễn", "DN4797912345678"):
        assert secret not in line
    assert json.loads(line)["control_id"] == "M1"
