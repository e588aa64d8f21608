"""The MLLP listener's decisions: receive a message, check its source, store its exact bytes on hl7v2.raw,
then (and only then) ACK ``AA``/``CA``.

Invariant 1 of ARCHITECTURE.md lives here: an accept is written to the socket only after Kafka has confirmed
the write with ``acks=all``. If the write fails or times out the sender gets ``AR``/``CR`` (a receiver fault:
resend unchanged). Input the hub cannot take gets ``AE``/``CE`` with an ERR segment and goes to the DLQ with
its bytes; a sender the sources file does not know gets ``AR``. Connections are handled in
``connectors.mllp.connection``; this module sees one frame at a time.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from connectors.hl7v2.parse import Header, decode, parse, read_header, source_patient_id
from connectors.mllp import metrics
from connectors.mllp.ack import (
    ERR_DATA_TYPE, ERR_INTERNAL, ERR_REQUIRED_FIELD, ERR_UNKNOWN_KEY, VN_TZ, AckDecision, ack_code, build_ack,
    build_batch_ack, should_send,
)
from connectors.mllp.dedup import HASH_HEADER, DedupStore, Seen
from connectors.mllp.framing import Frame, Oversized
from connectors.mllp.sources import ClientCertificate, Facility, SourcesFile
from hub.envelope import DeadLetter
from hub.errors import DeliveryError, FrameError, HubError, ParseError
from hub.logging import get_logger
from hub.pseudonym import keyed_hash
from hub.settings import Settings
from hub.topics import DLQ, HL7V2_RAW

log = get_logger("mllp")
STAGE = "ingest"
UTF8_BOM = b"\xef\xbb\xbf"
_BATCH_STARTS = (b"FHS", b"BHS")


class RawWriter(Protocol):
    async def write(self, topic: str, value: bytes, key: bytes | None = None,
                    headers: list[tuple[str, bytes]] = ...) -> tuple[int, int]: ...


@dataclass(frozen=True, slots=True)
class Peer:
    """Where a frame came from: logged and stored as headers, never personal data."""

    address: str
    connection_id: str
    certificate: ClientCertificate | None = None


def split_batch(raw: bytes) -> list[bytes]:
    """The messages of an FHS/BHS batch as exact byte slices (batch header and trailer segments dropped).

    Works on bytes so each stored message is byte-for-byte what the sender sent; every supported charset
    (UTF-8, windows-1258, latin-1) keeps ASCII segment names and separators.
    """
    messages: list[bytes] = []
    current: list[bytes] = []
    for line in raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r"):
        name = line[:3]
        if name in (b"FHS", b"BHS", b"BTS", b"FTS") or not line.strip():
            continue
        if name == b"MSH" and current:
            messages.append(b"\r".join(current) + b"\r")
            current = []
        current.append(line)
    if current:
        messages.append(b"\r".join(current) + b"\r")
    return messages


def read_msh(raw: bytes) -> Header:
    """MSH of a message in any supported charset, read before the charset is known: MSH is ASCII in
    practice, and latin-1 decodes every byte, so no charset can make this step fail."""
    return read_header(parse(_msh_line(raw).decode("latin-1")))


def _msh_line(raw: bytes) -> bytes:
    """The MSH segment's bytes."""
    if raw.startswith(UTF8_BOM):
        raw = raw[3:]
    end = len(raw)
    for sep in (b"\r", b"\n"):
        pos = raw.find(sep)
        if pos != -1:
            end = min(end, pos)
    return raw[:end]


class MllpListener:
    def __init__(self, settings: Settings, writer: RawWriter, sources: SourcesFile,
                 dedup: DedupStore | None = None) -> None:
        self.settings = settings
        self.writer = writer
        self.sources = sources
        self.dedup = dedup

    async def handle_frame(self, item: Frame | Oversized, peer: Peer) -> bytes | None:
        """Store one frame and return the ACK to send (None when enhanced mode asks for no ACK)."""
        received_at = datetime.now(VN_TZ).isoformat(timespec="milliseconds")
        if isinstance(item, Oversized):
            return await self._oversized(item, peer, received_at)
        raw = item.payload
        body = raw[3:] if raw.startswith(UTF8_BOM) else raw
        if body.lstrip()[:3] in _BATCH_STARTS:
            return await self._batch(raw, peer, received_at)
        return await self.handle_message(raw, peer, received_at)

    async def handle_message(self, raw: bytes, peer: Peer, received_at: str) -> bytes | None:
        started = time.perf_counter()
        msh_line = _msh_line(raw)
        try:
            msh_header = read_header(parse(msh_line.decode("latin-1")))
        except ParseError as exc:
            return await self._reject(raw, None, exc, "error", ERR_DATA_TYPE, received_at, peer)
        admission = self.sources.current.admit(msh_header.sending_facility, msh_header.sending_application,
                                               peer.certificate)
        if admission.facility is None:
            log.info("message refused", connection=peer.connection_id, reason=admission.reason)
            return self._ack(msh_header, AckDecision(ack_code(msh_header, "reject"), admission.reason, ERR_UNKNOWN_KEY),
                             "", started)
        facility = admission.facility
        charset = facility.charset_for(msh_header.charset)
        try:
            text = decode(raw, charset)
            message = parse(text)
            # MSH is ASCII in practice, so its first reading is already exact: read it again only when it is not.
            header = msh_header if msh_line.isascii() else read_header(message)
        except ParseError as exc:
            return await self._reject(raw, msh_header, exc, "error", ERR_DATA_TYPE, received_at, peer, facility)
        if not header.control_id:
            return await self._reject(raw, header, ParseError("MSH-10 (message control id) is empty"),
                                      "error", ERR_REQUIRED_FIELD, received_at, peer, facility)
        if facility.validate:
            problem = _conformance_problem(text)
            if problem:
                return await self._reject(raw, header, ParseError(problem), "error", ERR_DATA_TYPE, received_at,
                                          peer, facility)
        digest = hashlib.sha256(raw).hexdigest()
        ticket = None
        if self.dedup is not None:
            ticket = await self.dedup.check(header.sending_application, header.sending_facility, header.control_id,
                                            digest)
            if ticket.seen is Seen.DUPLICATE:
                metrics.DUPLICATES.inc()
                return self._ack(header, AckDecision(ack_code(header, "accept")), facility.code, started)
            if ticket.seen is Seen.REUSED:
                metrics.CONTROL_ID_REUSES.inc()
                log.warning("control id reused with different content", connection=peer.connection_id,
                            facility=facility.code)
        patient = source_patient_id(message)
        key_parts = (header.sending_facility, patient) if patient else (header.sending_facility, "msh10", header.control_id)
        headers = [
            ("hl7.message_type", header.message_code.encode()), ("hl7.trigger", header.trigger.encode()),
            ("hl7.version", header.version.encode()), ("hl7.control_id", header.control_id.encode()),
            ("hl7.sending_application", header.sending_application.encode()),
            ("hl7.sending_facility", header.sending_facility.encode()),
            ("charset", charset.encode()), ("received_at", received_at.encode()),
            ("peer", peer.address.encode()), ("connection_id", peer.connection_id.encode()),
            (HASH_HEADER, digest.encode()),
        ]
        if ticket is not None and ticket.seen is Seen.REUSED:
            headers.append(("hl7.control_id_reused", b"true"))
        try:
            await self.writer.write(HL7V2_RAW.name, raw, keyed_hash(self.settings.pseudonym_key, *key_parts).encode(),
                                    headers)
        except DeliveryError as exc:
            if ticket is not None:
                await self.dedup.failed(ticket)
            log.warning("raw write failed", connection=peer.connection_id, reason=exc.reason)
            return self._ack(header, AckDecision(ack_code(header, "reject"),
                                                 "message not stored, resend: storage unavailable", ERR_INTERNAL),
                             facility.code, started)
        if ticket is not None:
            self.dedup.stored(ticket)
        return self._ack(header, AckDecision(ack_code(header, "accept")), facility.code, started)

    async def _batch(self, raw: bytes, peer: Peer, received_at: str) -> bytes:
        """An FHS/BHS batch: each message is stored (or refused) on its own; one batch ACK answers them all."""
        messages = split_batch(raw)
        metrics.BATCH_MESSAGES.inc(len(messages))
        acks = [ack for msg in messages if (ack := await self.handle_message(msg, peer, received_at)) is not None]
        log.info("batch received", connection=peer.connection_id, messages=len(messages))
        return build_batch_ack(acks, len(messages))

    async def _oversized(self, item: Oversized, peer: Peer, received_at: str) -> bytes | None:
        metrics.OVERSIZED.inc()
        limit = self.settings.mllp_max_frame_bytes
        header: Header | None = None
        try:  # the head may end inside a character: read only its MSH line, to answer with the right ids
            header = read_msh(item.head)
        except ParseError:
            pass
        exc = FrameError(f"frame of {item.size} bytes exceeds the {limit}-byte limit")
        return await self._reject(item.head, header, exc, "reject", ERR_INTERNAL, received_at, peer)

    async def _reject(self, raw: bytes, header: Header | None, exc: HubError, outcome: str, error: tuple[str, str],
                      received_at: str, peer: Peer, facility: Facility | None = None) -> bytes | None:
        """Input we cannot accept: keep the bytes (or an oversized frame's head) in the DLQ and say why.

        If even the DLQ write fails, answer AR: nothing was kept, so the sender must resend.
        """
        started = time.perf_counter()
        letter = DeadLetter(stage=STAGE, code=exc.code, reason=exc.reason, original=raw,
                            headers={"peer": peer.address, "connection_id": peer.connection_id,
                                     "facility": facility.code if facility else ""},
                            failed_at=received_at)
        code = facility.code if facility else ""
        try:
            await self.writer.write(DLQ.name, letter.to_json(), None, [("stage", STAGE.encode())])
        except DeliveryError:
            return self._ack(header, AckDecision(ack_code(header, "reject"), f"{exc.reason}; not stored", ERR_INTERNAL),
                             code, started)
        log.info("message rejected", connection=peer.connection_id, code=exc.code, reason=exc.reason)
        return self._ack(header, AckDecision(ack_code(header, outcome), exc.reason, error), code, started)

    def _ack(self, header: Header | None, decision: AckDecision, facility: str, started: float) -> bytes | None:
        metrics.count(decision.code, facility)
        metrics.ACK_LATENCY.observe(time.perf_counter() - started)
        return build_ack(header, decision) if should_send(header, decision) else None


def _conformance_problem(text: str) -> str:
    """The strict (hl7apy) conformance check a source can switch on; "" when the message conforms."""
    from connectors.hl7v2.validate import validate_message  # slow, optional: imported only when used

    return "; ".join(str(f) for f in validate_message(text)[:3])
