"""MLLP connections: asyncio Protocols feeding frames to the listener, one message at a time per connection.

Protocols rather than StreamReader/StreamWriter: bytes go straight from the transport into the frame decoder
and ACKs straight back, without a future per read (the listener's profile under 100 senders was dominated by
stream plumbing). Per connection, frames are answered strictly in order; connections never wait on each
other, so a byte-at-a-time sender holds up nobody. Limits: total and per-peer connection counts (refused at
once, before any message is owed an answer), an idle timeout, read pause when a peer pipelines too far ahead,
write pause when a peer stops reading its ACKs.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import time
from collections import deque

from connectors.mllp import metrics
from connectors.mllp.framing import Frame, FrameDecoder, Oversized, frame
from connectors.mllp.listener import MllpListener, Peer
from connectors.mllp.sources import ClientCertificate
from hub.logging import get_logger

log = get_logger("mllp")
_PAUSE_AT = 64  # frames queued on one connection before we stop reading from it
_RESUME_AT = 8
_LINGER_S = 2.0  # at shutdown: how long a half-closed connection may take to close its side


class MllpServer:
    """Accepts connections for one listener (plain and/or TLS ports) and shuts them down gracefully."""

    def __init__(self, listener: MllpListener) -> None:
        self.listener = listener
        settings = listener.settings
        self.max_connections = settings.mllp_max_connections
        self.max_per_peer = settings.mllp_max_connections_per_peer
        self.idle_timeout_s = settings.mllp_idle_timeout_s
        self.connections: set[MllpConnection] = set()
        self.per_peer: dict[str, int] = {}
        self.closing = False
        self._ids = itertools.count(1)
        self._servers: list[asyncio.Server] = []

    async def listen(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: MllpConnection(self), host, port, ssl=tls, backlog=2048)
        self._servers.append(server)
        return server

    def next_id(self) -> str:
        return f"c{next(self._ids)}"

    @property
    def busy(self) -> int:
        return sum(1 for c in self.connections if c.working)

    async def shutdown(self, timeout_s: float) -> None:
        """Stop accepting, stop reading, answer every frame already received, then close every connection."""
        self.closing = True
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            conn.stop_reading()
        deadline = time.monotonic() + timeout_s
        while self.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self.busy:
            log.warning("shutdown with frames still in flight", busy=self.busy)
        # Half-close, then read and discard until the peer closes: closing a socket with unread bytes makes
        # the kernel send RST, and a peer receiving RST may lose the ACKs it has not read yet.
        for conn in list(self.connections):
            conn.finish()
        linger_until = time.monotonic() + _LINGER_S
        while self.connections and time.monotonic() < linger_until:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.close()


class MllpConnection(asyncio.Protocol):
    def __init__(self, server: MllpServer) -> None:
        self.server = server
        self.listener = server.listener
        self.decoder = FrameDecoder(server.listener.settings.mllp_max_frame_bytes)
        self.queue: deque[tuple[Frame | Oversized, float]] = deque()
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None
        self.host = ""
        self.worker: asyncio.Task[None] | None = None
        self.last_activity = time.monotonic()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._writable: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._closed = False
        self._eof = False
        self._draining = False

    @property
    def working(self) -> bool:
        return self.worker is not None and not self.worker.done()

    # --- asyncio.Protocol ---------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        peername = transport.get_extra_info("peername")
        self.host = str(peername[0]) if peername else "unknown"
        address = f"{peername[0]}:{peername[1]}" if peername else "unknown"
        server = self.server
        limit = ("total" if len(server.connections) >= server.max_connections else
                 "per_peer" if server.per_peer.get(self.host, 0) >= server.max_per_peer else "")
        if limit or server.closing:
            metrics.REFUSED_CONNECTIONS.labels(limit=limit or "closing").inc()
            log.warning("connection refused", peer=address, limit=limit or "closing")
            self._closed = True
            transport.abort()
            return
        server.connections.add(self)
        server.per_peer[self.host] = server.per_peer.get(self.host, 0) + 1
        metrics.OPEN_CONNECTIONS.inc()
        self.peer = Peer(address, server.next_id(), _client_certificate(transport))
        log.info("connection opened", connection=self.peer.connection_id, peer=address,
                 tls=transport.get_extra_info("ssl_object") is not None)
        self._arm_idle_timer()

    def data_received(self, data: bytes) -> None:
        if self._draining:
            return  # shutting down: everything received before has been answered; the rest is not read
        self.last_activity = time.monotonic()
        metrics.RECEIVED_BYTES.inc(len(data))
        skipped_before = self.decoder.skipped_bytes
        frames = self.decoder.feed(data)
        if self.decoder.skipped_bytes != skipped_before:
            metrics.SKIPPED_BYTES.inc(self.decoder.skipped_bytes - skipped_before)
        if not frames:
            return
        now = time.perf_counter()
        self.queue.extend((f, now) for f in frames)
        if len(self.queue) >= _PAUSE_AT and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
        if not self.working:
            self.worker = asyncio.get_running_loop().create_task(self._work())

    def eof_received(self) -> bool:
        """The peer shut down its sending side: answer what it sent, then close."""
        self._eof = True
        if not self.working:
            self.close()
        return True  # keep the transport open to write those answers

    def connection_lost(self, exc: Exception | None) -> None:
        if self._closed and self.peer is None:
            return
        self._closed = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self.server.connections.discard(self)
        remaining = self.server.per_peer.get(self.host, 1) - 1
        if remaining > 0:
            self.server.per_peer[self.host] = remaining
        else:
            self.server.per_peer.pop(self.host, None)
        metrics.OPEN_CONNECTIONS.dec()
        log.info("connection closed", connection=self.peer.connection_id, skipped_bytes=self.decoder.skipped_bytes,
                 unfinished_frame=self.decoder.pending)

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # --- work -----------------------------------------------------------------------------------------------

    async def _work(self) -> None:
        """Answer queued frames in order. Every frame already received gets its answer, even while closing."""
        while self.queue:
            item, _ = self.queue.popleft()
            if self._reading_paused and len(self.queue) <= _RESUME_AT and not self.server.closing:
                self._reading_paused = False
                self.transport.resume_reading()
            try:
                reply = await self.listener.handle_frame(item, self.peer)
            except Exception:  # a bug must cost one answer, not the connection: answer AR and go on
                log.exception("frame handling failed", connection=self.peer.connection_id)
                from connectors.mllp.ack import ERR_INTERNAL, AckDecision, build_ack

                reply = build_ack(None, AckDecision("AR", "internal error, resend", ERR_INTERNAL))
            if reply is not None and not self._closed:
                if self._writable is not None:
                    await self._writable
                self.transport.write(frame(reply))
            self.last_activity = time.monotonic()
        if self._eof:
            self.close()

    def stop_reading(self) -> None:
        if self.transport is not None and not self._closed and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def finish(self) -> None:
        """Shutdown, after every received frame is answered: send FIN after the ACKs, then drain the peer."""
        if self.transport is None or self._closed or self.transport.is_closing():
            return
        if not self.transport.can_write_eof():  # TLS cannot half-close: its close_notify follows the ACKs
            self.close()
            return
        self._draining = True
        self.transport.write_eof()
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _arm_idle_timer(self) -> None:
        loop = asyncio.get_running_loop()
        self._idle_timer = loop.call_later(self.server.idle_timeout_s, self._check_idle)

    def _check_idle(self) -> None:
        if self._closed:
            return
        idle_for = time.monotonic() - self.last_activity
        # Blocked on a peer that stopped reading its ACKs counts as idle too: a dead peer must not pin a
        # worker and its buffers forever (its messages are stored; it will resend and be answered AA).
        if idle_for >= self.server.idle_timeout_s and (not self.working or self._writable is not None):
            metrics.IDLE_CLOSED.inc()
            log.info("idle connection closed", connection=self.peer.connection_id, idle_s=round(idle_for),
                     unread_acks=self._writable is not None)
            if self._writable is not None:
                self.transport.abort()  # its ACK backlog can never be delivered; do not wait to flush it
            else:
                self.close()
            return
        delay = max(0.05, self.server.idle_timeout_s - idle_for)
        self._idle_timer = asyncio.get_running_loop().call_later(delay, self._check_idle)


def _client_certificate(transport: asyncio.Transport) -> ClientCertificate | None:
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return ClientCertificate.from_der(der, ssl_object.getpeercert()) if der else None


def tls_context(cert_file: str, key_file: str, client_ca_file: str = "") -> ssl.SSLContext:
    """Server TLS (1.2+); with a client CA, mutual TLS: a client without a certificate from it is refused."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    if client_ca_file:
        context.load_verify_locations(client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
