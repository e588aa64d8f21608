"""Keyed hashes: how personal identifiers become Kafka keys and citizen ids without leaking.

A plain hash of a 12-digit CCCD can be reversed by enumeration; an HMAC with the hub's secret cannot.
"""

from __future__ import annotations

import hashlib
import hmac


def keyed_hash(secret: bytes, *parts: str) -> str:
    """A short, stable, non-reversible token for ``parts`` (32 hex chars, 128 bits).

    Hex, not base32: it is computed for every message on the MLLP hot path, and ``bytes.hex`` is C while
    ``base64.b32encode`` is pure Python (~5% of the listener's CPU under load, py-spy).
    """
    digest = hmac.digest(secret, "\x1f".join(parts).encode(), hashlib.sha256)  # one-shot C path: 3x hmac.new
    return digest[:16].hex()


def citizen_id_for(secret: bytes, id_system: str, id_value: str) -> str:
    """The citizen id minted from the first strong identifier seen: deterministic, so a rebuild agrees."""
    return "cz-" + keyed_hash(secret, "citizen", id_system, id_value)
