"""What a subscriber receives: one delivery document per change (or per citizen for the health book).

Every delivery, on a webhook or on ``out.<name>``, is the same JSON document (``schemas/out-topic.v1.json``):

    {"schema": "hssk.out.v1", "subscription": ..., "format": "event" | "fhir-bundle" | "health-book" | "merged",
     "idempotency_key": ..., "citizen_id": ..., "event_id": ..., "record_version": ...,
     "event" | "bundle" | "health_book" | "merged": {...}}

The body is a pure function of the change (and, for the health book, of the record version it shows), with no
send time in it, so a retry or a replay sends the very same bytes under the same idempotency key.
Idempotency keys: ``sha256(subscription | format | what it carries)`` — the event id for events and bundles,
citizen id and record version for a health book, the merge event id and retired id for a merge notice.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from hub.envelope import Envelope
from hub.fanout.healthbook import health_book
from hub.identity.events import MERGED, UNMERGED, merge_link

SCHEMA = "hssk.out.v1"
EVENT, BUNDLE, HEALTH_BOOK, MERGE_NOTICE = "event", "fhir-bundle", "health-book", "merged"
_BUNDLE_NS = uuid.UUID("2b0f3a52-93c5-5d0e-8d7f-0c6a1f4e9b17")


@dataclass(frozen=True, slots=True)
class Outbound:
    """One delivery: what to send, whose order it keeps, and its idempotency key."""

    key: str
    citizen_id: str  # the Kafka key on out.<name>: the citizen whose changes it is ordered with
    format: str
    body: bytes


def idempotency_key(subscription: str, fmt: str, *parts: str) -> str:
    return hashlib.sha256("|".join((subscription, fmt, *parts)).encode()).hexdigest()[:40]


def _document(subscription: str, fmt: str, key: str, citizen_id: str, content_name: str, content: Any,
              **extra: Any) -> bytes:
    doc = {"schema": SCHEMA, "subscription": subscription, "format": fmt, "idempotency_key": key,
           "citizen_id": citizen_id, **{k: v for k, v in extra.items() if v is not None}, content_name: content}
    return orjson.dumps(doc)


def event_delivery(subscription: str, event: Envelope) -> Outbound:
    """The canonical event as it is on record.changes (schemas/canonical-event.v1.json)."""
    key = idempotency_key(subscription, EVENT, event.event_id)
    body = _document(subscription, EVENT, key, event.citizen_id or "", "event", event.to_dict(),
                     event_id=event.event_id, record_version=event.record_version)
    return Outbound(key, event.citizen_id or "", EVENT, body)


def change_bundle(event: Envelope, bundle_id: str) -> dict[str, Any]:
    """A FHIR R4 ``collection`` Bundle holding the resource the change carries."""
    resource = event.payload
    return {
        "resourceType": "Bundle", "id": bundle_id, "type": "collection", "timestamp": event.recorded_at,
        "entry": [{"fullUrl": f"urn:uuid:{event.event_id}", "resource": resource}],
    }


def bundle_delivery(subscription: str, event: Envelope) -> Outbound:
    key = idempotency_key(subscription, BUNDLE, event.event_id)
    bundle = change_bundle(event, str(uuid.uuid5(_BUNDLE_NS, key)))
    body = _document(subscription, BUNDLE, key, event.citizen_id or "", "bundle", bundle,
                     event_id=event.event_id, record_version=event.record_version)
    return Outbound(key, event.citizen_id or "", BUNDLE, body)


def book_delivery(subscription: str, record: dict[str, Any], entitled: frozenset[str]) -> Outbound:
    """The citizen's health book as the record now stands.

    The count of withheld sensitive entries is dropped: pushed to a third party it would tell that something
    sensitive exists, which is itself sensitive.
    """
    book = health_book(record, entitled)
    book["summary"].pop("withheld_sensitive", None)
    citizen_id, version = record["citizen_id"], record.get("version", 0)
    key = idempotency_key(subscription, HEALTH_BOOK, citizen_id, str(version))
    body = _document(subscription, HEALTH_BOOK, key, citizen_id, "health_book", book, record_version=version)
    return Outbound(key, citizen_id, HEALTH_BOOK, body)


def merge_notice(subscription: str, event: Envelope) -> Outbound:
    """``retired`` now belongs to ``survivor``: the receiver drops or redirects the retired health book."""
    link = merge_link(event)
    key = idempotency_key(subscription, MERGE_NOTICE, event.event_id, link.other)
    body = _document(subscription, MERGE_NOTICE, key, link.other, "merged",
                     {"retired_citizen_id": link.other, "merged_into": link.survivor}, event_id=event.event_id)
    return Outbound(key, link.survivor, MERGE_NOTICE, body)  # keyed by the survivor: ordered before its book


def book_citizens(event: Envelope) -> list[str]:
    """Whose health books a change touches, in push order: a merge's survivor; an unmerge's both citizens."""
    if event.type == UNMERGED:
        return [event.citizen_id or "", merge_link(event).other]
    return [event.citizen_id or ""]


def is_merge(event: Envelope) -> bool:
    return event.type == MERGED
