"""The MLLP sender behind ``hub send``: one connection, messages in order, each ACK matched by MSA-2."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from connectors.hl7v2.parse import decode, parse
from connectors.mllp.framing import Frame, FrameDecoder, frame
from connectors.mllp.listener import read_msh


@dataclass(frozen=True, slots=True)
class AckResult:
    control_id: str  # MSH-10 of the message we sent
    code: str  # MSA-1, or "" when no ACK came
    acked_control_id: str  # MSA-2
    text: str  # MSA-3 and the ERR user message, when present

    @property
    def accepted(self) -> bool:
        return self.code in ("AA", "CA") and self.acked_control_id == self.control_id


def read_ack(raw: bytes) -> tuple[str, str, str]:
    """(MSA-1, MSA-2, text) of an ACK message."""
    message = parse(decode(raw))
    msa = message.first("MSA")
    err = message.first("ERR")
    if msa is None:
        return "", "", "ACK without MSA segment"
    text = " ".join(t for t in (msa.component(3, 1), err.component(8, 1) if err else "") if t)
    return msa.component(1, 1), msa.component(2, 1), text


async def send_messages(host: str, port: int, messages: list[bytes], timeout_s: float = 15.0) -> list[AckResult]:
    """Send each message and wait for its ACK before the next (the order hospitals rely on)."""
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(host, port)
    decoder = FrameDecoder(16 * 1024 * 1024)
    pending: list[Frame] = []
    results: list[AckResult] = []
    try:
        for raw in messages:
            control_id = read_msh(raw).control_id  # any charset: the ACK is matched on MSH-10 alone
            writer.write(frame(raw))
            await writer.drain()
            try:
                while not pending:
                    async with asyncio.timeout(timeout_s):
                        data = await reader.read(65536)
                    if not data:
                        raise ConnectionError("listener closed the connection before answering")
                    pending.extend(f for f in decoder.feed(data) if isinstance(f, Frame))
            except asyncio.TimeoutError:
                results.append(AckResult(control_id, "", "", f"no ACK within {timeout_s:g} s"))
                continue
            code, acked, text = read_ack(pending.pop(0).payload)
            results.append(AckResult(control_id, code, acked, text))
    finally:
        writer.close()
    return results
