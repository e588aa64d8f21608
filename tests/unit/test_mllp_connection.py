"""MLLP connections over real loopback sockets (an in-memory writer stands in for Kafka; the broker is in
tests/integration): framing across reads, limits, slow senders, idle timeout, graceful shutdown."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from connectors.mllp.connection import MllpServer
from connectors.mllp.framing import Frame, FrameDecoder, frame
from connectors.mllp.listener import MllpListener
from connectors.mllp.sources import SourcesFile, parse_sources
from hub.settings import Settings
from hub.topics import DLQ, HL7V2_RAW


def message(control_id: str, name: str = "Nguyễn^Thị Hồng^Nhung", sep: str = "\r") -> bytes:
    return sep.join([
        f"MSH|^~\\&|HIS|79048|HSSK|SYT|20261122083000||ADT^A08^ADT_A01|{control_id}|P|2.5",
        "EVN|A08|20261122083000",
        f"PID|1||BN{control_id}^^^79048^MR~079190001234^^^BCA^NNVNM||{name}||19900101|F",
    ]).encode() + sep.encode()


class SlowWriter:
    """Records writes; optionally takes ``delay_s`` per write, like a broker confirming acks=all."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.written: list[tuple[str, bytes]] = []

    async def write(self, topic, value, key=None, headers=()):
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.written.append((topic, value))
        return 0, len(self.written)


async def start(writer: SlowWriter, **overrides) -> tuple[MllpServer, int]:
    settings = Settings(mllp_max_frame_bytes=overrides.pop("max_frame", 64 * 1024), **overrides)
    sources = SourcesFile(None)
    sources.current = parse_sources({"facility": [{"code": "79048"}]})
    server = MllpServer(MllpListener(settings, writer, sources))
    listening = await server.listen("127.0.0.1", 0)
    return server, listening.sockets[0].getsockname()[1]


async def read_acks(reader: asyncio.StreamReader, n: int, timeout_s: float = 5.0) -> list[bytes]:
    decoder = FrameDecoder(1 << 20)
    acks: list[bytes] = []
    while len(acks) < n:
        data = await asyncio.wait_for(reader.read(65536), timeout_s)
        if not data:
            break
        acks += [f.payload for f in decoder.feed(data) if isinstance(f, Frame)]
    return acks


def msa(ack: bytes) -> list[str]:
    line = next(seg for seg in ack.split(b"\r") if seg.startswith(b"MSA"))
    return line.decode().split("|")[1:3]


async def test_several_frames_in_one_write_and_one_frame_over_many_writes() -> None:
    writer = SlowWriter()
    server, port = await start(writer)
    reader, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(frame(message("A1")) + frame(message("A2")) + frame(message("A3")))
    one = frame(message("A4"))
    for i in range(0, len(one), 7):
        w.write(one[i:i + 7])
        await w.drain()
        await asyncio.sleep(0.001)
    acks = await read_acks(reader, 4)
    assert [msa(a) for a in acks] == [["AA", "A1"], ["AA", "A2"], ["AA", "A3"], ["AA", "A4"]]
    assert [v for _, v in writer.written] == [message("A1"), message("A2"), message("A3"), message("A4")]
    w.close()
    await server.shutdown(1)


async def test_junk_lf_separators_bom_and_missing_final_cr() -> None:
    writer = SlowWriter()
    server, port = await start(writer)
    reader, w = await asyncio.open_connection("127.0.0.1", port)
    lf = message("B1", sep="\n")
    bom = b"\xef\xbb\xbf" + message("B2", sep="\r\n")
    w.write(b"GARBAGE" + frame(lf) + b"\x0b" + bom + b"\x1c")  # second frame lacks its final CR
    acks = await read_acks(reader, 2)
    assert [msa(a) for a in acks] == [["AA", "B1"], ["AA", "B2"]]
    assert [v for _, v in writer.written] == [lf, bom]  # the exact bytes, not normalised ones
    w.close()
    await server.shutdown(1)


async def test_oversized_frame_gets_ar_and_the_connection_stays_usable() -> None:
    writer = SlowWriter()
    server, port = await start(writer, max_frame=4096)
    reader, w = await asyncio.open_connection("127.0.0.1", port)
    big = message("C1") + b"OBX|1|TX|||" + "Kết quả ".encode() * 2000 + b"\r"
    w.write(frame(big) + frame(message("C2")))
    acks = await read_acks(reader, 2)
    assert [msa(a) for a in acks] == [["AR", "C1"], ["AA", "C2"]]
    assert [t for t, _ in writer.written] == [DLQ.name, HL7V2_RAW.name]
    w.close()
    await server.shutdown(1)


async def test_a_byte_at_a_time_sender_does_not_hold_up_others() -> None:
    server, port = await start(SlowWriter())
    slow_reader, slow = await asyncio.open_connection("127.0.0.1", port)
    slow_bytes = frame(message("SLOW"))
    slow.write(slow_bytes[:10])  # starts a frame and then dawdles
    await slow.drain()
    t0 = time.perf_counter()
    reader, fast = await asyncio.open_connection("127.0.0.1", port)
    fast.write(frame(message("FAST")))
    acks = await read_acks(reader, 1)
    assert msa(acks[0]) == ["AA", "FAST"] and time.perf_counter() - t0 < 1.0
    for b in slow_bytes[10:]:
        slow.write(bytes([b]))
    assert msa((await read_acks(slow_reader, 1))[0]) == ["AA", "SLOW"]
    slow.close(), fast.close()
    await server.shutdown(1)


async def test_500_concurrent_connections_each_get_their_ack() -> None:
    writer = SlowWriter(delay_s=0.01)
    server, port = await start(writer)

    async def one(i: int) -> list[str]:
        reader, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(frame(message(f"K{i}")))
        ack = await read_acks(reader, 1, timeout_s=20)
        w.close()
        return msa(ack[0])

    results = await asyncio.gather(*(one(i) for i in range(500)))
    assert results == [["AA", f"K{i}"] for i in range(500)]
    assert len(writer.written) == 500
    await server.shutdown(1)


async def test_connection_limit_refuses_extra_connections_without_harming_others() -> None:
    server, port = await start(SlowWriter(), mllp_max_connections_per_peer=2)
    kept = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    await asyncio.sleep(0.05)
    reader, w = await asyncio.open_connection("127.0.0.1", port)
    assert await asyncio.wait_for(reader.read(), 2) == b""  # closed at once, nothing owed
    w.close()
    r0, w0 = kept[0]
    w0.write(frame(message("L1")))
    assert msa((await read_acks(r0, 1))[0]) == ["AA", "L1"]
    for _, kw in kept:
        kw.close()
    await server.shutdown(1)


async def test_idle_connections_are_closed() -> None:
    server, port = await start(SlowWriter(), mllp_idle_timeout_s=0.3)
    reader, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(frame(message("I1")))
    assert msa((await read_acks(reader, 1))[0]) == ["AA", "I1"]
    t0 = time.perf_counter()
    assert await asyncio.wait_for(reader.read(), 3) == b""
    assert 0.2 < time.perf_counter() - t0 < 2.0
    w.close()
    await server.shutdown(1)


async def test_a_peer_that_never_reads_its_acks_is_closed_after_the_idle_timeout() -> None:
    """It pipelines thousands of messages with a tiny receive buffer and reads nothing: the listener's
    writes back up, and after the idle timeout the connection is closed instead of pinning its worker."""
    server, port = await start(SlowWriter(), mllp_idle_timeout_s=0.5)
    for listening in server._servers:  # small kernel buffers both ways, so the ACK backlog shows up quickly
        listening.sockets[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    loop = asyncio.get_running_loop()
    deaf = socket.socket()  # a bare socket: nothing reads on its side, not even a StreamReader's buffer
    deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    deaf.setblocking(False)
    await loop.sock_connect(deaf, ("127.0.0.1", port))
    sending = asyncio.ensure_future(loop.sock_sendall(deaf, b"".join(frame(message(f"D{i}")) for i in range(3000))))
    reader, w = await asyncio.open_connection("127.0.0.1", port)  # a healthy neighbour
    w.write(frame(message("N1")))
    assert msa((await read_acks(reader, 1))[0]) == ["AA", "N1"]
    deadline = time.monotonic() + 5
    while server.connections and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert server.connections == set()  # the deaf one too, although its worker is blocked on writing
    sending.cancel()
    deaf.close()
    w.close()
    await server.shutdown(1)


async def test_graceful_shutdown_answers_every_frame_already_received() -> None:
    writer = SlowWriter(delay_s=0.05)
    server, port = await start(writer)
    reader, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"".join(frame(message(f"S{i}")) for i in range(5)))
    await w.drain()
    await asyncio.sleep(0.02)  # the first write is in flight
    await server.shutdown(timeout_s=5)
    acks = await read_acks(reader, 5)
    assert [msa(a) for a in acks] == [["AA", f"S{i}"] for i in range(5)]
    assert await asyncio.wait_for(reader.read(), 2) == b""  # and then it closed
    w.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)  # no longer accepting


async def test_peer_that_half_closes_still_gets_its_acks() -> None:
    server, port = await start(SlowWriter(delay_s=0.02))
    reader, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(frame(message("H1")) + frame(message("H2")))
    w.write_eof()
    acks = await read_acks(reader, 2)
    assert [msa(a) for a in acks] == [["AA", "H1"], ["AA", "H2"]]
    assert await asyncio.wait_for(reader.read(), 2) == b""  # answered, then closed
    w.close()
    await server.shutdown(1)
