"""MLLP ingestion benchmark: ACKed throughput with 1, 10 and 100 senders, and ACK latency at a fixed rate.

    .venv/bin/python -m bench.mllp [--seconds 8] [--rate 1000] [--keep]

Starts Kafka and Redis (bench ports, .hub-bench state) and the hub's ``mllp`` role alone, as its own
process, so what is measured is: receive a frame, check the source, deduplicate, write the exact bytes to
``hl7v2.raw`` with ``acks=all`` (idempotent producer), then ACK. The baseline is hl7apy's own MLLP server
(``bench.hl7apy_server``) doing the same job with the same Kafka client and acks=all, measured in the same run
against the same broker; the ratio column is ours relative to it.

Senders behave like hospital engines: each connection has one message in flight and waits for its ACK
before sending the next. hl7apy's server answers one message per connection and then closes it, so its
senders reconnect for every message (that is how that server must be used).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import uvloop

from bench.stack import BENCH_ENV
from bench.table import Row, percentile, render
from connectors.mllp.framing import frame
from hub.settings import REPO_ROOT, Settings
from hub.synthetic import adt, person

BASELINE_PORT = 32576
ACK_OK = (b"MSA|AA|", b"MSA|CA|")


@dataclass
class Result:
    acked: int
    failed: int
    seconds: float
    latencies_ms: list[float]


def make_frames(n: int, tag: str) -> list[bytes]:
    rng = random.Random(tag)
    people = [person(rng) for _ in range(max(1, n // 3))]
    return [frame(adt(people[i % len(people)], "A08", f"{tag}-{i:07d}", phone=f"09{i:08d}")) for i in range(n)]


class Sender:
    """One MLLP connection with one message in flight. ``reconnect`` opens a new connection per message,
    as hl7apy's server requires (it closes the connection after each answer)."""

    def __init__(self, port: int, reconnect: bool) -> None:
        self.port = port
        self.reconnect = reconnect
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, data: bytes) -> bool:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(data)
        try:
            answer = await self.reader.readuntil(b"\x1c\x0d")
        except (ConnectionError, asyncio.IncompleteReadError):
            await self.close()
            return False
        if self.reconnect:
            await self.close()
        return any(code in answer for code in ACK_OK)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer, self.reader = None, None


async def saturate(port: int, frames: list[bytes], senders: int, seconds: float, reconnect: bool) -> Result:
    """Every sender sends back-to-back for ``seconds``."""
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []
    counts = {"acked": 0, "failed": 0}
    feed = iter(frames)

    async def run_sender() -> None:
        sender = Sender(port, reconnect)
        try:
            while time.perf_counter() < deadline:
                data = next(feed, None)
                if data is None:
                    return
                t0 = time.perf_counter()
                ok = await sender.send(data)
                latencies.append((time.perf_counter() - t0) * 1000)
                counts["acked" if ok else "failed"] += 1
        finally:
            await sender.close()

    start = time.perf_counter()
    await asyncio.gather(*(run_sender() for _ in range(senders)))
    return Result(counts["acked"], counts["failed"], time.perf_counter() - start, latencies)


async def fixed_rate(port: int, frames: list[bytes], rate: float, seconds: float, reconnect: bool,
                     senders: int = 20) -> Result:
    """Offer ``rate`` msg/s spread over ``senders`` connections; latency counts from the scheduled send time,
    so a listener that falls behind shows it in the latency rather than hiding it."""
    total = int(rate * seconds)
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    latencies: list[float] = []
    counts = {"acked": 0, "failed": 0}

    async def run_sender() -> None:
        sender = Sender(port, reconnect)
        try:
            while (item := await queue.get()) is not None:
                scheduled, data = item
                if time.perf_counter() > give_up:
                    counts["failed"] += 1  # not even sent in time: the listener is far behind this rate
                    continue
                ok = await sender.send(data)
                latencies.append((time.perf_counter() - scheduled) * 1000)
                counts["acked" if ok else "failed"] += 1
        finally:
            await sender.close()

    workers = [asyncio.create_task(run_sender()) for _ in range(senders)]
    start = time.perf_counter()
    give_up = start + 3 * seconds
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((scheduled, frames[i]))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return Result(counts["acked"], counts["failed"], time.perf_counter() - start, latencies)


def _row(name: str, result: Result, note: str) -> Row:
    return Row(name, result.acked, result.seconds,
               {"p50 ms": percentile(result.latencies_ms, 50), "p99 ms": percentile(result.latencies_ms, 99)},
               note + (f"; {result.failed} not AA" if result.failed else ""))


def _wait_port(port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"nothing listens on port {port} after {timeout_s:g} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and its reaped children) so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


async def measure(name: str, port: int, seconds: float, rate: float, tag: str, reconnect: bool,
                  server_pid: int) -> list[Row]:
    """Each row's note says how busy the server process was: with one Python process per listener, one
    core is the ceiling, and on this 2-core machine Kafka, Redis and the load generator share the other."""
    frames = make_frames(int(max(rate, 12_000) * seconds * 1.5), tag)
    await saturate(port, frames[:300], 10, 2, reconnect)  # warm-up: connections, producer metadata, JIT-free caches
    rows = []
    offset = 300
    for senders in (1, 10, 100):
        cpu0 = cpu_seconds(server_pid)
        result = await saturate(port, frames[offset:], senders, seconds, reconnect)
        busy = (cpu_seconds(server_pid) - cpu0) / result.seconds * 100
        offset += result.acked + result.failed
        rows.append(_row(f"{name}: {senders} senders", result, f"saturating; server CPU {busy:.0f}% of a core"))
    cpu0 = cpu_seconds(server_pid)
    result = await fixed_rate(port, frames[offset:], rate, seconds, reconnect)
    busy = (cpu_seconds(server_pid) - cpu0) / result.seconds * 100
    rows.append(_row(f"{name}: fixed {rate:,.0f} msg/s", result,
                     f"latency from scheduled send; server CPU {busy:.0f}%"))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each measurement")
    parser.add_argument("--rate", type=float, default=1000.0, help="offered rate of the latency measurement")
    parser.add_argument("--keep", action="store_true", help="leave the bench stack running afterwards")
    args = parser.parse_args()
    os.environ.update(BENCH_ENV)
    settings = Settings.from_env()
    from hub.ops import local
    from hub.topics import ensure_topics

    local.stop_role(settings, "mllp")
    local.stack("stop", settings)
    shutil.rmtree(settings.state_dir, ignore_errors=True)
    if local.stack("start", settings) != 0:
        return 1
    asyncio.run(ensure_topics(settings))
    for port in (settings.mllp_port, BASELINE_PORT):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                raise SystemExit(f"port {port} is already taken (a listener left from an earlier run?): "
                                 "stop it first, or the benchmark would measure that process")
    local.start_role(settings, "mllp")
    baseline = subprocess.Popen([sys.executable, "-m", "bench.hl7apy_server", str(BASELINE_PORT)],
                                cwd=REPO_ROOT, env=dict(os.environ))
    try:
        _wait_port(settings.mllp_port)
        _wait_port(BASELINE_PORT)
        tag = f"b{int(time.time())}"
        listener_pid = local.role_pid(settings, "mllp")
        ours = uvloop.run(measure("hub mllp", settings.mllp_port, args.seconds, args.rate, tag + "h", False,
                                  listener_pid))
        theirs = uvloop.run(measure("hl7apy MLLPServer", BASELINE_PORT, args.seconds, args.rate, tag + "b", True,
                                    baseline.pid))
    finally:
        baseline.terminate()
        baseline.wait(10)
        if not args.keep:
            local.stop_role(settings, "mllp")
            local.stack("stop", settings)
    print(render("MLLP ingestion: ADT^A08 (~600 bytes) -> hl7v2.raw with acks=all -> ACK", ours + theirs))
    print("ratio (ours / hl7apy), same senders:")
    for mine, base in zip(ours, theirs):
        label = mine.name.split(": ", 1)[1]
        ratio = mine.rate / base.rate if base.rate else float("inf")
        print(f"  {label:<22} throughput {ratio:6.1f}x   p99 {base.latency_ms['p99 ms'] / mine.latency_ms['p99 ms']:6.1f}x lower")
    return 0


if __name__ == "__main__":
    sys.exit(main())
