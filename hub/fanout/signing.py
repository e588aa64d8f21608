"""Webhook signatures: HMAC-SHA256 over ``b"<timestamp>." + body``, the one definition sender and receivers share.

The timestamp is part of what is signed, so a captured request cannot be replayed after ``max_age_s``;
comparison is constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-HSSK-Signature"
TIMESTAMP_HEADER = "X-HSSK-Timestamp"
SUBSCRIPTION_HEADER = "X-HSSK-Subscription"
IDEMPOTENCY_HEADER = "Idempotency-Key"
SCHEME = "sha256="
MAX_AGE_S = 300


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The header value for one request: ``sha256=<hex>``."""
    return SCHEME + hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, now: float | None = None) -> dict[str, str]:
    """The timestamp and signature headers for ``body``."""
    timestamp = int(time.time() if now is None else now)
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signature(secret, timestamp, body)}


class SignatureError(ValueError):
    """Why a request's signature is not accepted (the receiver answers 401 with this text)."""


def verify(secret: bytes, body: bytes, timestamp: str | None, signature_value: str | None,
           now: float | None = None, max_age_s: int = MAX_AGE_S) -> None:
    """Raise SignatureError unless the signature matches and the timestamp is recent."""
    if not timestamp or not signature_value:
        raise SignatureError(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER}")
    try:
        sent = int(timestamp)
    except ValueError:
        raise SignatureError(f"{TIMESTAMP_HEADER} is not unix seconds") from None
    current = time.time() if now is None else now
    if abs(current - sent) > max_age_s:
        raise SignatureError(f"timestamp outside the {max_age_s} s window")
    if not hmac.compare_digest(signature(secret, sent, body), signature_value):
        raise SignatureError("signature does not match the body")
