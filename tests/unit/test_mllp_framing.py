"""MLLP framing: a table of byte streams (malformed first) and what the decoder must make of them."""

from __future__ import annotations

import pytest

from connectors.mllp.framing import Frame, FrameDecoder, Oversized, frame

MSG = "MSH|^~\\&|HIS|79048|HSSK|HUB|20261122||ADT^A01|C1|P|2.5\rPID|1||1^^^79048^MR||Nguyễn^An^Văn\r".encode()

CASES = [
    # (name, reads, expected frames, expected skipped bytes)
    ("junk before the start byte is skipped and counted", [b"garbage" + frame(MSG)], [MSG], 7),
    ("only junk, no frame", [b"\r\n\r\n"], [], 4),
    ("missing final CR", [b"\x0b" + MSG + b"\x1c" + frame(b"B")], [MSG, b"B"], 0),
    ("end bytes split across reads", [b"\x0b" + MSG + b"\x1c", b"\x0d"], [MSG], 0),
    ("one frame byte by byte", [bytes([b]) for b in frame(MSG)], [MSG], 0),
    ("several frames in one read", [frame(b"A") + frame(b"B") + frame(b"C")], [b"A", b"B", b"C"], 0),
    ("frame split in the middle", [frame(MSG)[:10], frame(MSG)[10:]], [MSG], 0),
    ("unfinished frame yields nothing", [b"\x0b" + MSG], [], 0),
]


@pytest.mark.parametrize("name, reads, expected, skipped", CASES, ids=[c[0] for c in CASES])
def test_decoder_table(name: str, reads: list[bytes], expected: list[bytes], skipped: int) -> None:
    decoder = FrameDecoder(max_frame_bytes=1024)
    got: list[bytes] = []
    for chunk in reads:
        got += [item.payload for item in decoder.feed(chunk) if isinstance(item, Frame)]
    assert got == expected
    assert decoder.skipped_bytes == skipped


def test_oversized_frame_is_reported_and_the_connection_stays_usable() -> None:
    """A frame over the limit yields Oversized with its head; the next frame decodes normally."""
    decoder = FrameDecoder(max_frame_bytes=100)
    big = MSG + b"X" * 500
    items = []
    for i in range(0, len(frame(big)), 64):  # arrives in pieces, so the limit trips mid-frame
        items += decoder.feed(frame(big)[i:i + 64])
    items += decoder.feed(frame(b"NEXT"))
    assert isinstance(items[0], Oversized)
    assert items[0].size == len(big)
    assert items[0].head.startswith(b"MSH|")
    assert items[1:] == [Frame(b"NEXT")]


def test_oversized_frame_in_one_read() -> None:
    decoder = FrameDecoder(max_frame_bytes=10)
    items = decoder.feed(frame(b"Y" * 50) + frame(b"ok"))
    assert [type(i) for i in items] == [Oversized, Frame]
    assert items[0].size == 50 and items[1] == Frame(b"ok")


def test_pending_reports_an_unfinished_frame() -> None:
    decoder = FrameDecoder(max_frame_bytes=1024)
    decoder.feed(b"\x0bMSH|")
    assert decoder.pending
    decoder.feed(b"\x1c\x0d")
    assert not decoder.pending
