"""The API's audit event: hub.audit's record.read fields plus endpoint and request id, keyed by citizen id,
written to audit.access; never without an actor."""

from __future__ import annotations

import orjson
import pytest

from hub.api.audit import AuditLog, read_event
from hub.audit import audit_read
from hub.topics import AUDIT_ACCESS

CITIZEN = "cz-0123456789abcdef0123456789abcdef"


class CapturingProducer:
    def __init__(self) -> None:
        self.writes: list[tuple[str, dict, bytes | None]] = []

    async def write(self, topic: str, value: bytes, key: bytes | None = None, headers=()) -> tuple[int, int]:
        self.writes.append((topic, orjson.loads(value), key))
        return 0, len(self.writes) - 1


class TestAuditEvent:
    async def test_it_has_every_field_of_hub_audit_and_the_endpoint(self) -> None:
        """Consumers of audit.access see one shape whichever part of the hub read the record."""
        core, ours = CapturingProducer(), CapturingProducer()
        await audit_read(core, actor="os-user:x", citizen_id=CITIZEN, purpose="TREAT", channel="cli")  # type: ignore[arg-type]
        await AuditLog(ours).record_read(actor="bv-cho-ray", citizen_id=CITIZEN, purpose="TREAT",
                                         endpoint="GET /v1/citizens/{citizen_id}/record", request_id="r1")
        [(core_topic, core_event, _)] = core.writes
        [(topic, event, key)] = ours.writes
        assert topic == core_topic == AUDIT_ACCESS.name
        assert set(core_event) <= set(event)
        assert event["type"] == core_event["type"] == "record.read"
        assert event["actor"] == "bv-cho-ray" and event["channel"] == "api"
        assert event["endpoint"] == "GET /v1/citizens/{citizen_id}/record" and event["request_id"] == "r1"
        assert key == CITIZEN.encode()  # the catalogue's key for audit.access
        assert event["at"].endswith("+00:00")

    def test_no_event_without_an_actor(self) -> None:
        with pytest.raises(ValueError):
            read_event(actor="", citizen_id=CITIZEN, purpose="TREAT", endpoint="GET /x", request_id="r")
