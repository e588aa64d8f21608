"""The MLLP listener: receive a frame, store its exact bytes on hl7v2.raw, then (and only then) ACK ``AA``.

Invariant 1 of ARCHITECTURE.md lives here: an ``AA``/``CA`` is written to the socket only after Kafka has
confirmed the write with ``acks=all``. If the write fails or times out the sender gets ``AR`` (a receiver
fault: resend unchanged). Messages on one connection are handled in order; connections are independent.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime
from typing import Protocol

from connectors.hl7v2.parse import Header, decode, parse, read_header, source_patient_id
from connectors.mllp.ack import (
    ERR_DATA_TYPE, ERR_INTERNAL, ERR_REQUIRED_FIELD, AckDecision, ack_code, build_ack, should_send, VN_TZ,
)
from connectors.mllp.framing import Frame, FrameDecoder, Oversized, frame
from hub.envelope import DeadLetter
from hub.errors import DeliveryError, FrameError, HubError, ParseError
from hub.logging import get_logger
from hub.pseudonym import keyed_hash
from hub.settings import Settings
from hub.topics import DLQ, HL7V2_RAW

log = get_logger("mllp")
STAGE = "ingest"


class RawWriter(Protocol):
    async def write(self, topic: str, value: bytes, key: bytes | None = None,
                    headers: list[tuple[str, bytes]] = ...) -> tuple[int, int]: ...


class MllpListener:
    def __init__(self, settings: Settings, writer: RawWriter) -> None:
        self.settings = settings
        self.writer = writer
        self._conn_ids = itertools.count(1)
        self._writers: set[asyncio.StreamWriter] = set()
        self._busy = 0  # frames being stored/answered right now
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self.acks_by_code: dict[str, int] = {}

    @property
    def open_connections(self) -> int:
        return len(self._writers)

    async def serve(self) -> asyncio.Server:
        return await asyncio.start_server(
            self.handle_connection, self.settings.mllp_host, self.settings.mllp_port,
            limit=1024 * 1024, backlog=1024,
        )

    async def handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        peer_text = f"{peer[0]}:{peer[1]}" if peer else "unknown"
        conn_id = f"c{next(self._conn_ids)}"
        decoder = FrameDecoder(self.settings.mllp_max_frame_bytes)
        self._writers.add(writer)
        log.info("connection opened", connection=conn_id, peer=peer_text)
        try:
            while not self._closing and (data := await reader.read(65536)):
                frames = decoder.feed(data)
                if not frames:
                    continue
                self._busy += 1
                self._idle.clear()
                try:
                    for item in frames:  # every frame already read is answered, even while closing
                        reply = await self.handle_frame(item, peer_text, conn_id)
                        if reply is not None:
                            writer.write(frame(reply))
                            await writer.drain()
                finally:
                    self._busy -= 1
                    if self._busy == 0:
                        self._idle.set()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            log.info("connection closed", connection=conn_id, skipped_bytes=decoder.skipped_bytes,
                     unfinished_frame=decoder.pending)
            writer.close()

    async def drain(self, timeout_s: float) -> None:
        """Graceful shutdown: let in-flight frames get their ACK or NAK, then close every connection."""
        self._closing = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except asyncio.TimeoutError:
            log.warning("shutdown with frames still in flight", busy=self._busy)
        for writer in list(self._writers):
            writer.close()

    async def handle_frame(self, item: Frame | Oversized, peer: str, conn_id: str) -> bytes | None:
        """Store one frame and return the ACK to send (None when enhanced mode asks for no ACK)."""
        received_at = datetime.now(VN_TZ).isoformat(timespec="milliseconds")
        raw = item.payload if isinstance(item, Frame) else item.head
        # An oversized frame's head may end inside a character: read only its MSH line.
        readable = raw if isinstance(item, Frame) else raw.replace(b"\n", b"\r").split(b"\r", 1)[0]
        header: Header | None = None
        try:
            message = parse(decode(readable, self.settings.source_charset))
            header = read_header(message)
        except ParseError as exc:
            if isinstance(item, Oversized):
                exc = ParseError(f"frame of {item.size} bytes exceeds the limit; its MSH is unreadable")
            return await self._reject(raw, header, exc, "error", ERR_DATA_TYPE, received_at, peer, conn_id)
        if isinstance(item, Oversized):
            limit = self.settings.mllp_max_frame_bytes
            return await self._reject(raw, header, FrameError(f"frame of {item.size} bytes exceeds the {limit}-byte limit"),
                                      "reject", ERR_INTERNAL, received_at, peer, conn_id)
        if not header.control_id:
            return await self._reject(raw, header, ParseError("MSH-10 (message control id) is empty"),
                                      "error", ERR_REQUIRED_FIELD, received_at, peer, conn_id)
        patient = source_patient_id(message)
        key_parts = (header.sending_facility, patient) if patient else (header.sending_facility, "msh10", header.control_id)
        headers = [
            ("hl7.message_type", header.message_code.encode()), ("hl7.trigger", header.trigger.encode()),
            ("hl7.version", header.version.encode()), ("hl7.control_id", header.control_id.encode()),
            ("hl7.sending_application", header.sending_application.encode()),
            ("hl7.sending_facility", header.sending_facility.encode()),
            ("charset", self.settings.source_charset.encode()), ("received_at", received_at.encode()),
            ("peer", peer.encode()), ("connection_id", conn_id.encode()),
        ]
        try:
            await self.writer.write(HL7V2_RAW.name, raw, keyed_hash(self.settings.pseudonym_key, *key_parts).encode(), headers)
        except DeliveryError as exc:
            log.warning("raw write failed", connection=conn_id, control_id=header.control_id, reason=exc.reason)
            return self._ack(header, AckDecision(ack_code(header, "reject"),
                                                 "message not stored, resend: storage unavailable", ERR_INTERNAL))
        return self._ack(header, AckDecision(ack_code(header, "accept")))

    async def _reject(self, raw: bytes, header: Header | None, exc: HubError, outcome: str, error: tuple[str, str],
                      received_at: str, peer: str, conn_id: str) -> bytes | None:
        """Input we cannot accept: keep the bytes (or an oversized frame's head) in the DLQ and say why.

        If even the DLQ write fails, answer AR: nothing was kept, so the sender must resend.
        """
        letter = DeadLetter(stage=STAGE, code=exc.code, reason=exc.reason, original=raw,
                            headers={"peer": peer, "connection_id": conn_id}, failed_at=received_at)
        try:
            await self.writer.write(DLQ.name, letter.to_json(), None, [("stage", STAGE.encode())])
        except DeliveryError:
            return self._ack(header, AckDecision(ack_code(header, "reject"), f"{exc.reason}; not stored", ERR_INTERNAL))
        log.info("message rejected", connection=conn_id, code=exc.code, reason=exc.reason)
        return self._ack(header, AckDecision(ack_code(header, outcome), exc.reason, error))

    def _ack(self, header: Header | None, decision: AckDecision) -> bytes | None:
        self.acks_by_code[decision.code] = self.acks_by_code.get(decision.code, 0) + 1
        return build_ack(header, decision) if should_send(header, decision) else None
