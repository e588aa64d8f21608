"""The API's audit events on ``audit.access``: the fields of hub.audit's ``record.read`` plus the endpoint
and a request id, written through the durable producer before a record leaves the process.

hub.audit.audit_read has no endpoint field, so the event is built here with the same keys and more; a unit
test keeps the two in step. ``write`` raises DeliveryError when Kafka does not confirm: the caller answers
503 and sends nothing.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Protocol

import orjson

from hub.topics import AUDIT_ACCESS

CHANNEL = "api"


class Producer(Protocol):
    async def write(self, topic: str, value: bytes, key: bytes | None = None, headers=()) -> tuple[int, int]: ...


def read_event(*, actor: str, citizen_id: str, purpose: str, endpoint: str, request_id: str) -> dict[str, str]:
    if not actor:
        raise ValueError("an audit event needs an actor")
    return {
        "type": "record.read",
        "actor": actor,
        "citizen_id": citizen_id,
        "purpose": purpose,
        "channel": CHANNEL,
        "endpoint": endpoint,  # the route template (e.g. GET /v1/citizens/{citizen_id}/record): no identifiers
        "request_id": request_id,
        "at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
    }


class AuditLog:
    def __init__(self, producer: Producer) -> None:
        self._producer = producer

    async def record_read(self, **fields: str) -> None:
        """Return once Kafka confirmed the event (acks=all); raise DeliveryError otherwise."""
        event = read_event(**fields)
        await self._producer.write(AUDIT_ACCESS.name, orjson.dumps(event), key=event["citizen_id"].encode())
