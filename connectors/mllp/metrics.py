"""The MLLP listener's Prometheus metrics. Labels carry ACK codes and facility codes (organisations, not
people), never identifiers or message content."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter("hssk_mllp_messages", "HL7 v2 messages answered, by ACK code (MSA-1) and facility (MSH-4)",
                   ["code", "facility"])
ACK_LATENCY = Histogram("hssk_mllp_ack_latency_seconds", "From a complete frame to its ACK being ready to write",
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
OPEN_CONNECTIONS = Gauge("hssk_mllp_open_connections", "MLLP connections open now")
REFUSED_CONNECTIONS = Counter("hssk_mllp_refused_connections", "Connections closed at once: over a connection limit",
                              ["limit"])
IDLE_CLOSED = Counter("hssk_mllp_idle_closed_connections", "Connections closed after the idle timeout")
RECEIVED_BYTES = Counter("hssk_mllp_received_bytes", "Bytes read from MLLP connections")
SKIPPED_BYTES = Counter("hssk_mllp_skipped_bytes", "Bytes outside any frame (junk before a start block), skipped")
OVERSIZED = Counter("hssk_mllp_oversized_frames", "Frames over the size limit, answered AR")
DUPLICATES = Counter("hssk_mllp_duplicates", "Resends of a stored message: ACKed again, not published twice")
CONTROL_ID_REUSES = Counter("hssk_mllp_control_id_reuses", "A stored control id (MSH-10) arriving with other content")
BATCH_MESSAGES = Counter("hssk_mllp_batch_messages", "Messages received inside FHS/BHS batches")


_children: dict[tuple[str, str], Any] = {}


def count(code: str, facility: str) -> None:
    """Count one answer. The labelled child is cached: ``labels()`` takes a lock and builds a key per call,
    a visible share of the listener's per-message cost under load."""
    key = (code, facility or "unknown")
    child = _children.get(key)
    if child is None:
        child = _children[key] = MESSAGES.labels(code=key[0], facility=key[1])
    child.inc()
