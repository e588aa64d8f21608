"""Access audit: every read of a record is written to audit.access before any data is returned."""

from __future__ import annotations

import getpass
from datetime import datetime, timezone

import orjson

from hub.kafka import DurableProducer
from hub.topics import AUDIT_ACCESS


async def audit_read(producer: DurableProducer, *, actor: str, citizen_id: str, purpose: str, channel: str) -> None:
    """Raise DeliveryError if the audit event cannot be stored: then the read must not happen."""
    event = {
        "type": "record.read",
        "actor": actor,
        "citizen_id": citizen_id,
        "purpose": purpose,
        "channel": channel,
        "at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
    }
    await producer.write(AUDIT_ACCESS.name, orjson.dumps(event), key=citizen_id.encode())


def local_actor() -> str:
    return f"os-user:{getpass.getuser()}"
