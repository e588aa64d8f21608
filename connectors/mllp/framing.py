"""MLLP framing: ``0x0B`` message ``0x1C 0x0D``, decoded incrementally from whatever TCP hands us.

The decoder buffers across reads, yields several frames from one read, skips (and counts) junk before a
start byte, tolerates a missing final CR, and bounds the frame size: an oversized frame is consumed to its
end and reported (with its first bytes, so the listener can still answer with the right control id), so
the connection stays usable.
"""

from __future__ import annotations

from dataclasses import dataclass

START = 0x0B
END = 0x1C
CR = 0x0D
# How much of an oversized frame is kept so its MSH can still be read for the NAK.
OVERSIZED_HEAD_BYTES = 64 * 1024


def frame(message: bytes) -> bytes:
    return b"\x0b" + message + b"\x1c\x0d"


@dataclass(frozen=True, slots=True)
class Frame:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Oversized:
    size: int
    head: bytes


class FrameDecoder:
    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.skipped_bytes = 0
        self._buf = bytearray()
        self._in_frame = False
        self._discarding = False  # inside an oversized frame: count, keep the head, drop the rest
        self._discarded = 0
        self._head = b""
        self._swallow_cr = False

    @property
    def pending(self) -> bool:
        """True while a frame has started and not ended (a peer closing now loses an unfinished frame)."""
        return self._in_frame

    def feed(self, data: bytes) -> list[Frame | Oversized]:
        if self._swallow_cr and data:
            self._swallow_cr = False
            if data[0] == CR:  # the CR of a frame we already delivered at its 0x1C
                data = data[1:]
        self._buf += data
        out: list[Frame | Oversized] = []
        buf = self._buf
        while buf:
            if not self._in_frame:
                start = buf.find(START)
                if start == -1:
                    self.skipped_bytes += len(buf)
                    buf.clear()
                    break
                self.skipped_bytes += start
                del buf[: start + 1]
                self._in_frame = True
            end = buf.find(END)
            if end == -1:
                if self._discarding or len(buf) > self.max_frame_bytes:
                    self._discard(len(buf))
                break
            body_end = end
            if end + 1 == len(buf):
                # The read ends at 0x1C: deliver now (a sender that omits the final CR must still get its
                # ACK) and drop the CR if it starts the next read.
                consumed = end + 1
                self._swallow_cr = True
            else:
                consumed = end + 2 if buf[end + 1] == CR else end + 1  # tolerate a missing final CR
            if self._discarding or body_end > self.max_frame_bytes:
                self._discard(body_end)
                consumed -= body_end
                out.append(Oversized(self._discarded, self._head))
                self._discarding = False
                self._discarded = 0
                self._head = b""
            else:
                out.append(Frame(bytes(buf[:body_end])))
            del buf[:consumed]
            self._in_frame = False
        return out

    def _discard(self, n: int) -> None:
        """Drop the first n buffered bytes of an oversized frame, keeping its head once."""
        if not self._discarding:
            self._head = bytes(self._buf[: min(n, OVERSIZED_HEAD_BYTES)])
            self._discarding = True
        self._discarded += n
        del self._buf[:n]
