"""Building HL7 ACKs: sender and receiver swapped, MSA-2 echoing MSH-10, an ERR segment saying what went wrong."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from connectors.hl7v2.parse import Header

VN_TZ = timezone(timedelta(hours=7))

# HL7 table 0357 (message error condition codes) used by the hub.
ERR_UNSUPPORTED_MESSAGE = ("200", "Unsupported message type")
ERR_UNSUPPORTED_VERSION = ("203", "Unsupported version id")
ERR_REQUIRED_FIELD = ("101", "Required field missing")
ERR_DATA_TYPE = ("102", "Data type error")
ERR_INTERNAL = ("207", "Application internal error")
ERR_UNKNOWN_KEY = ("204", "Unknown key identifier")  # used for a sender the sources file does not know

_UNKNOWN = Header("", "", "", "", "", "", "", "", "", "P", "2.5", "", "", "")


@dataclass(frozen=True, slots=True)
class AckDecision:
    code: str  # AA AE AR (original mode) or CA CE CR (enhanced mode commit ACK)
    text: str = ""
    error: tuple[str, str] | None = None


def _escape(text: str) -> str:
    return (text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
            .replace("&", "\\T\\").replace("~", "\\R\\").replace("\r", " ").replace("\n", " "))


_clock: list[int | str] = [0, ""]  # (whole second, its MSH-7 text): thousands of ACKs a second share one strftime


def _timestamp_now() -> str:
    second = int(time.time())
    if _clock[0] != second:
        _clock[0], _clock[1] = second, datetime.fromtimestamp(second, VN_TZ).strftime("%Y%m%d%H%M%S%z")
    return _clock[1]


def build_ack(header: Header | None, decision: AckDecision, now: datetime | None = None) -> bytes:
    """The ACK message bytes (UTF-8, CR separators) for one received message."""
    h = header or _UNKNOWN
    ts = now.strftime("%Y%m%d%H%M%S%z") if now else _timestamp_now()
    control_id = h.control_id
    segments = [
        "|".join([
            "MSH", "^~\\&", h.receiving_application or "HSSK", h.receiving_facility or "HSSK",
            h.sending_application, h.sending_facility, ts, "",
            f"ACK^{h.trigger}^ACK" if h.trigger else "ACK", f"ACK{control_id}"[:199] if control_id else "ACK",
            h.processing_id or "P", h.version or "2.5",
        ]),
        "|".join(["MSA", decision.code, control_id, _escape(decision.text)]).rstrip("|"),
    ]
    if decision.error is not None:
        code, label = decision.error
        # ERR-3 error code (HL7 table 0357), ERR-4 severity, ERR-8 user message.
        segments.append(f"ERR|||{code}^{label}^HL70357|E||||{_escape(decision.text)}")
    return ("\r".join(segments) + "\r").encode("utf-8")


def should_send(header: Header | None, decision: AckDecision) -> bool:
    """Enhanced mode (MSH-15): AL always, NE never, ER only on error, SU only on success."""
    if header is None or not header.accept_ack_type:
        return True
    mode = header.accept_ack_type.upper()
    success = decision.code in ("AA", "CA")
    return {"AL": True, "NE": False, "ER": not success, "SU": success}.get(mode, True)


def ack_code(header: Header | None, outcome: str) -> str:
    """Map an outcome (accept / error / reject) to the ACK code of the message's acknowledgement mode."""
    enhanced = header is not None and bool(header.accept_ack_type or header.app_ack_type)
    letter = {"accept": "A", "error": "E", "reject": "R"}[outcome]
    return ("C" if enhanced else "A") + letter


def build_batch_ack(acks: list[bytes], received: int, now: datetime | None = None) -> bytes:
    """One batch (BHS ... BTS) holding the ACK of each message of a received batch, in order.

    BTS-1 counts the ACK messages in the batch; BTS-2 says how many messages were received, so a sender can
    check that every message was accounted for.
    """
    ts = now.strftime("%Y%m%d%H%M%S%z") if now else _timestamp_now()
    body = b"".join(acks)
    return (f"BHS|^~\\&|HSSK|HSSK|||{ts}\r".encode() + body
            + f"BTS|{len(acks)}|{received} messages received\r".encode())
