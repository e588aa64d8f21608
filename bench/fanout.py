"""Fan-out benchmark: health-book push latency at a fixed offered rate, and the cost of a dead subscriber.

    .venv/bin/python -m bench.fanout [--rate 500] [--seconds 60] [--warmup 60] [--connections 200]
                                     [--isolation-events 6000]
                                     [--rounds 2] [--skip-latency] [--skip-alone]
                                     [--skip-isolation] [--keep]

Its own stack (bench.stack.bench_env("fanout", 900): own ports, ``.hub-bench-fanout``), every role of ``hub up``
including the reference receiver (deploy/local/receiver), with a subscriptions file of its own in the state
folder instead of deploy/local/subscriptions.toml.

1. **Latency** (target p99 <= 1 s): after ``--warmup`` seconds of the same load, not measured (a freshly
   started Kafka broker spends minutes JIT-compiling, C2 ~17% of a core at first, which a running hub has long
   done), ADT^A01 messages for new citizens offered over MLLP at ``--rate`` msg/s for ``--seconds`` (open loop: each message has its send time; ``--connections`` senders, one message in flight
   each, as hospital engines do). One subscription, ``bench-healthbook``: format health-book, coalescing off,
   webhook to the receiver. Per message, from the wall-clock time its ACK arrived at the sender to
   - baseline (same run): its encounter change read from record.changes by a consumer of the bench;
   - the first health-book push showing that encounter stored by the receiver (its ``received_at``);
   and per message the difference of the two: the fan-out's own part (change on record.changes -> push).
   The MLLP senders are the limit when ``--connections`` x (1 / ACK time) is below ``--rate``: the table says
   how far behind schedule they were.
1b. **The fan-out alone** (same target, independent of identity and record): encounter changes produced straight
   onto record.changes at ``--rate`` for ``--seconds``, their records written to Redis first; from each change's
   produce acknowledgement to its push stored by the receiver, and the fanout process's CPU per push.
2. **Isolation** (target: a dead subscriber costs the healthy one < 5 % throughput): ``--isolation-events``
   canonical events produced straight onto record.changes, delivered by a healthy ``event`` webhook subscription
   to the receiver, alone (baseline) and next to a dead subscriber (webhook to a closed port, default retries),
   ``--rounds`` times alternating. Throughput = deliveries stored / (last - first ``received_at``); and the fanout
   process's CPU time per healthy delivery over the same run (less sensitive to the machine's other load). The
   fanout role is restarted with each file; subscriptions start at ``latest`` and their names are new each round.

The machine is shared (2 cores, other work running): load averages are printed with the tables.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
import redis.asyncio as aioredis
import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.stack import bench_env
from bench.table import Row, percentile, render
from connectors.mllp.framing import Frame, FrameDecoder, frame
from hub.envelope import SYSTEM_CCCD, Envelope, Source, Subject
from hub.ops import local
from hub.ops.status import _admin, group_is_stable
from hub.record.store import record_key
from hub.settings import REPO_ROOT, Settings
from hub.synthetic import FACILITIES, Person, adt, person
from hub.topics import RECORD_CHANGES

ENV = bench_env("fanout", 900)
STATE = Path(ENV["HSSK_STATE_DIR"])
SUBS_FILE = STATE / "subscriptions.toml"
RECEIVER_DB = STATE / "receiver" / "deliveries.sqlite3"
LATENCY_SUB = "bench-healthbook"


def hub(*args: str, check: bool = True) -> None:
    subprocess.run([sys.executable, "-m", "hub.cli", *args], env={**os.environ, **ENV}, cwd=REPO_ROOT, check=check,
                   stdout=subprocess.DEVNULL)


def _webhook(name: str, fmt: str, url: str, *, coalescing_off: bool = False, start: str = "latest") -> str:
    return "\n".join([
        "[[subscription]]", f'name = "{name}"', f'format = "{fmt}"', f'start = "{start}"',
        *(["coalesce_s = 0"] if coalescing_off else []),
        "[subscription.delivery]", 'kind = "webhook"', f'url = "{url}"', 'secret_env = "HSSK_RECEIVER_SECRET"',
        "timeout_s = 5", ""])


def receiver_url(settings: Settings) -> str:
    return f"http://{settings.receiver_host}:{settings.receiver_port}/deliveries"


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


# --- 1. latency -------------------------------------------------------------------------------------------------

@dataclass
class Sent:
    ack_at: dict[str, float] = field(default_factory=dict)  # control id -> wall-clock time of its ACK
    ack_ms: list[float] = field(default_factory=list)
    late_ms: list[float] = field(default_factory=list)  # how far behind its schedule each send started
    codes: dict[str, int] = field(default_factory=dict)


def latency_people(n: int, tag: int, first_serial: int = 0) -> list[Person]:
    """New people (CCCD serials from ``first_serial``): a warm-up's people must not be the measured run's."""
    rng = random.Random(tag)
    return [person(rng, serial=first_serial + i) for i in range(n)]


def ack_code(payload: bytes) -> str:
    """MSA-1 of an ACK, read from its bytes: the senders stand in for hospital engines on other machines, so
    they should cost the machine under test as little as possible (a full HL7 parse of each ACK did not)."""
    separator = payload[3:4]
    for segment in payload.split(b"\r"):
        if segment.startswith(b"MSA"):
            return segment.split(separator)[1].decode()
    return "no MSA"


async def _paced_sender(settings: Settings, messages: list[tuple[float, str, bytes]], sent: Sent) -> None:
    reader, writer = await asyncio.open_connection(settings.mllp_host, settings.mllp_port)
    decoder = FrameDecoder(1 << 20)
    try:
        for due, control_id, raw in messages:
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                sent.late_ms.append(-delay * 1000)
            t0 = time.perf_counter()
            writer.write(frame(raw))
            await writer.drain()
            frames: list[Frame] = []
            while not frames:
                frames = [f for f in decoder.feed(await reader.read(65536)) if isinstance(f, Frame)]
            sent.ack_at[control_id] = time.time()
            sent.ack_ms.append((time.perf_counter() - t0) * 1000)
            code = ack_code(frames[0].payload)
            sent.codes[code] = sent.codes.get(code, 0) + 1
    finally:
        writer.close()


async def _watch_changes(settings: Settings, wanted: set[str], seen: dict[str, float], stop: asyncio.Event) -> None:
    """Wall-clock time each wanted message's encounter change is read from record.changes (the baseline)."""
    consumer = AIOKafkaConsumer(RECORD_CHANGES.name, bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                auto_offset_reset="latest", enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.seek_to_end()
        while not stop.is_set() and wanted - seen.keys():
            for records in (await consumer.getmany(timeout_ms=100)).values():
                now = time.time()
                for rec in records:
                    if b'"encounter.recorded"' not in rec.value:  # a cheap filter before the parse
                        continue
                    event = orjson.loads(rec.value)
                    if event["type"] == "encounter.recorded":
                        seen.setdefault(event["source"]["message_id"], now)
    finally:
        await consumer.stop()


class Pushes:
    """CCCD -> wall-clock time the receiver got the first health book of that citizen showing an encounter.

    Read incrementally (the rows after the last one read): waiting for the pushes polls every second, and
    re-reading and re-parsing every stored push each time used more CPU than the hub's record role, on the
    cores the hub was still catching up on."""

    def __init__(self, subscription: str) -> None:
        self.subscription = subscription
        self.after = 0
        self.first: dict[str, float] = {}

    def read(self) -> dict[str, float]:
        if not RECEIVER_DB.exists():
            return self.first
        db = sqlite3.connect(f"file:{RECEIVER_DB}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT seq, received_at, body FROM deliveries WHERE subscription = ? AND seq > ?"
                              " ORDER BY seq", (self.subscription, self.after)).fetchall()
        finally:
            db.close()
        for seq, received_at, body in rows:
            self.after = seq
            book = orjson.loads(body).get("health_book") or {}
            if not book.get("encounters"):
                continue
            for ident in book.get("administrative", {}).get("identifiers", []):
                if ident["system"] == SYSTEM_CCCD:
                    self.first.setdefault(ident["value"], dt.datetime.fromisoformat(received_at).timestamp())
        return self.first

    def skip(self) -> None:
        """Start after what is stored now (a warm-up's pushes)."""
        if RECEIVER_DB.exists():
            db = sqlite3.connect(f"file:{RECEIVER_DB}?mode=ro", uri=True)
            try:
                self.after = db.execute("SELECT coalesce(max(seq), 0) FROM deliveries").fetchone()[0]
            finally:
                db.close()


def stored_count(subscription: str) -> int:
    if not RECEIVER_DB.exists():
        return 0
    db = sqlite3.connect(f"file:{RECEIVER_DB}?mode=ro", uri=True)
    try:
        return db.execute("SELECT count(*) FROM deliveries WHERE subscription = ?", (subscription,)).fetchone()[0]
    finally:
        db.close()


async def latency(settings: Settings, rate: float, seconds: float, connections: int,
                  first_serial: int = 0) -> list[Row]:
    n = int(rate * seconds)
    tag = int(time.time())
    people = latency_people(n, tag, first_serial)
    messages = [(i / rate, f"FO{tag % 100000:05d}-{i:06d}", adt(p, "A01", f"FO{tag % 100000:05d}-{i:06d}",
                 visit=f"V-FO-{first_serial + i}", when="20261124083000")) for i, p in enumerate(people)]
    cccd_of = {cid: p.cccd for (_, cid, _), p in zip(messages, people, strict=True)}
    ours = set(cccd_of.values())
    sent, seen, stop = Sent(), {}, asyncio.Event()
    pushes = Pushes(LATENCY_SUB)
    pushes.skip()  # what a warm-up left
    pids = process_pids(settings)
    cpu_before = {name: process_cpu_s(pid) for name, pid in pids.items()}
    own_before = time.process_time()
    watcher = asyncio.create_task(_watch_changes(settings, set(cccd_of), seen, stop))
    await asyncio.sleep(1.0)  # the watcher's consumer at the end of the topic first
    start = time.perf_counter()
    lanes = [[(start + due, cid, raw) for due, cid, raw in messages[c::connections]] for c in range(connections)]
    await asyncio.gather(*(_paced_sender(settings, lane, sent) for lane in lanes))
    send_s = time.perf_counter() - start
    # Wait for the pushes: until every citizen's encounter is at the receiver, or 20 s without progress.
    last, still = -1, time.monotonic()
    while True:
        got = sum(c in ours for c in pushes.read())  # not a warm-up's citizens
        if got >= n or time.monotonic() - still > 20:
            break
        if got != last:
            last, still = got, time.monotonic()
        await asyncio.sleep(1.0)
    stop.set()
    await watcher
    done_s = time.perf_counter() - start
    cpu_ms = {name: (process_cpu_s(pid) - cpu_before[name]) * 1000 / n for name, pid in pids.items()}
    own_ms = (time.process_time() - own_before) * 1000 / n
    print(f"CPU per message over the latency run ({n} messages, until the last push), ms: "
          + ", ".join(f"{name} {ms:.2f}" for name, ms in cpu_ms.items()) + f"; total {sum(cpu_ms.values()):.2f}"
          f" (and this bench's senders and watcher {own_ms:.2f}, on the same cores)", flush=True)
    pushed = pushes.read()
    to_change = [(seen[c] - sent.ack_at[c]) * 1000 for c in seen if c in sent.ack_at]
    to_push = [(pushed[cccd_of[c]] - sent.ack_at[c]) * 1000 for c in sent.ack_at if cccd_of[c] in pushed]
    fanout_part = [(pushed[cccd_of[c]] - seen[c]) * 1000 for c in seen if cccd_of[c] in pushed]
    behind = percentile(sent.late_ms, 99) if sent.late_ms else 0.0

    def lat(values: list[float]) -> dict[str, float]:
        return {"p50": percentile(values, 50), "p99": percentile(values, 99), "max": max(values, default=float("nan"))}

    return [  # seconds: the sending phase, so msg/s is the rate actually sent
        Row("baseline: ACK -> change on record.changes", len(to_change), send_s, lat(to_change),
            f"{len(seen)}/{n} seen; ACK p50/p99 {percentile(sent.ack_ms, 50):.0f}/{percentile(sent.ack_ms, 99):.0f} ms,"
            f" {sent.codes}"),
        Row("ACK -> health-book push at receiver", len(to_push), send_s, lat(to_push),
            f"{sum(c in ours for c in pushed)}/{n} citizens pushed with their encounter; "
            f"{stored_count(LATENCY_SUB)} pushes stored (a warm-up's included)"),
        Row("fan-out part: change -> push", len(fanout_part), send_s, lat(fanout_part),
            f"offered {rate:.0f} msg/s for {seconds:.0f} s on {connections} connections; sender p99 "
            f"{behind:.0f} ms behind schedule; all pushed {done_s:.0f} s after the first send"),
    ]


# --- 1b. the fan-out alone at the full rate ---------------------------------------------------------------------

async def fanout_alone(settings: Settings, rate: float, seconds: float) -> list[Row]:
    """Encounter changes produced straight onto record.changes at ``rate`` (their records written to Redis first,
    as the record stage leaves them), so the fan-out gets the full rate whatever identity and record manage."""
    n = int(rate * seconds)
    tag = f"FA{int(time.time()) % 100000:05d}"
    cccd = [f"{tag}{i:07d}" for i in range(n)]
    client = aioredis.from_url(settings.redis_url)
    async with client.pipeline(transaction=False) as pipe:
        for i in range(n):
            cid = f"bench-fa-{tag}-{i}"
            pipe.set(record_key(cid), orjson.dumps({
                "citizen_id": cid, "version": 1, "demographics": {"gender": "female"},
                "identifiers": [{"system": SYSTEM_CCCD, "value": cccd[i]}],
                "encounters": {f"E{i}": {"facility": FACILITIES[i % 4], "class": "IMP", "status": "in-progress",
                                         "period": {"start": "2026-11-24T08:30:00+07:00"}}}}))
        await pipe.execute()
    await client.aclose()
    events = []
    for i in range(n):
        cid = f"bench-fa-{tag}-{i}"
        events.append((cid.encode(), Envelope(
            event_id=f"bench-fa-{tag}-{i}", type="encounter.recorded", occurred_at="2026-11-24T08:30:00+07:00",
            recorded_at="2026-11-24T08:30:01+07:00", source=Source("hl7v2", FACILITIES[i % 4], f"{tag}-{i}"),
            subject=Subject(), citizen_id=cid, record_version=1,
            payload={"resourceType": "Encounter", "id": f"E{i}", "status": "in-progress"}).to_json()))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=1)
    await producer.start()
    acked: dict[int, float] = {}
    late: list[float] = []

    async def confirm(i: int, future: asyncio.Future) -> None:
        await future
        acked[i] = time.time()

    confirms = []
    pushes = Pushes(LATENCY_SUB)
    pushes.skip()
    pid = local.role_pid(settings, "fanout")
    cpu0 = process_cpu_s(pid)
    start = time.perf_counter()
    try:
        for i, (key, value) in enumerate(events):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late.append(-delay * 1000)
            confirms.append(asyncio.create_task(confirm(i, await producer.send(RECORD_CHANGES.name, value, key=key))))
        await asyncio.gather(*confirms)
    finally:
        await producer.stop()
    send_s = time.perf_counter() - start
    last, still = -1, time.monotonic()
    while True:
        got = pushes.read()
        done = sum(c in got for c in cccd)
        if done >= n or time.monotonic() - still > 20:
            break
        if done != last:
            last, still = done, time.monotonic()
        await asyncio.sleep(1.0)
    cpu_ms = (process_cpu_s(pid) - cpu0) * 1000
    got = pushes.read()
    lat = [(got[cccd[i]] - at) * 1000 for i, at in acked.items() if cccd[i] in got]
    return [Row("fan-out alone: change produced -> push", len(lat), send_s,
                {"p50": percentile(lat, 50), "p99": percentile(lat, 99), "max": max(lat, default=float("nan"))},
                f"{len(lat)}/{n} pushed; offered {rate:.0f}/s for {seconds:.0f} s, producer p99 "
                f"{percentile(late, 99) if late else 0.0:.0f} ms behind schedule; fanout CPU "
                f"{cpu_ms / max(1, len(lat)):.2f} ms/push; load {load()}")]


# --- 2. isolation -----------------------------------------------------------------------------------------------

def isolation_events(n: int, tag: str, citizens: int) -> list[tuple[bytes, bytes]]:
    """Canonical observation changes as the record stage writes them (key = citizen id)."""
    out = []
    for i in range(n):
        cid = f"bench-fo-{tag}-{i % citizens:05d}"
        event = Envelope(
            event_id=f"bench-fo-{tag}-{i}", type="observation.recorded", occurred_at="2026-11-24T08:30:00+07:00",
            recorded_at="2026-11-24T08:30:01+07:00", source=Source("hl7v2", FACILITIES[i % 4], f"FO-{tag}-{i}"),
            subject=Subject(), citizen_id=cid, record_version=i // citizens + 1,
            payload={"resourceType": "Observation", "id": f"o-{tag}-{i}", "status": "final",
                     "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}]},
                     "valueQuantity": {"value": 5.5 + i % 10 / 10, "unit": "mmol/L"}})
        out.append((cid.encode(), event.to_json()))
    return out


async def restart_fanout(settings: Settings, subs_toml: str, groups: list[str]) -> None:
    SUBS_FILE.write_text(subs_toml)
    local.stop_role(settings, "fanout")
    local.start_role(settings, "fanout")
    admin = await _admin(settings)
    deadline = time.monotonic() + 120
    try:
        for group in groups:
            while not await group_is_stable(admin, group):
                if time.monotonic() > deadline or local.role_pid(settings, "fanout") is None:
                    log = local.log_file(settings, "fanout")
                    raise SystemExit(f"bench.fanout: {group} never became stable; see {log}")
                await asyncio.sleep(0.2)
    finally:
        await admin.close()
    await asyncio.sleep(2.0)  # 'latest' is resolved at the first fetch after assignment
    await settled(local.role_pid(settings, "fanout"))


async def settled(pid: int | None, quiet_s: float = 0.05, limit_s: float = 30.0) -> None:
    """Wait until the process uses under ``quiet_s`` CPU seconds in a second: a fresh faust worker keeps busy for
    seconds after its groups are stable, and a run's CPU per delivery must not include that."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = process_cpu_s(pid)
        await asyncio.sleep(1.0)
        if process_cpu_s(pid) - before < quiet_s:
            return


async def isolation_run(settings: Settings, name: str, dead: bool, n: int) -> Row:
    healthy = f"iso-{name}"
    toml = _webhook(healthy, "event", receiver_url(settings))
    groups = [f"hssk-sub-{healthy}"]
    if dead:
        toml += "\n" + _webhook(f"{healthy}-dead", "event", f"http://127.0.0.1:{closed_port()}/deliveries")
        groups.append(f"hssk-sub-{healthy}-dead")
    await restart_fanout(settings, toml, groups)
    pid = local.role_pid(settings, "fanout")
    cpu0 = process_cpu_s(pid)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(RECORD_CHANGES.name, value, key=key)
                   for key, value in isolation_events(n, name, max(1, n // 10))]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    deadline = time.monotonic() + 300
    while stored_count(healthy) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    cpu_ms = (process_cpu_s(pid) - cpu0) * 1000
    db = sqlite3.connect(f"file:{RECEIVER_DB}?mode=ro", uri=True)
    try:
        count, first, last = db.execute("SELECT count(*), min(received_at), max(received_at) FROM deliveries"
                                        " WHERE subscription = ?", (healthy,)).fetchone()
    finally:
        db.close()
    span = dt.datetime.fromisoformat(last).timestamp() - dt.datetime.fromisoformat(first).timestamp()
    label = "healthy + dead subscriber" if dead else "baseline: healthy alone"
    note = f"{count}/{n} stored; load {load()}"
    if dead:
        note += f"; the dead one retried {await retries(settings, f'{healthy}-dead'):.0f} failed attempts"
    return Row(f"{label} ({name})", count, span, {"fanout cpu ms/delivery": cpu_ms / max(1, count)}, note)


def process_pids(settings: Settings) -> dict[str, int]:
    """Every running role of the bench stack, and its Kafka and Redis (pid files of deploy/local/stack.sh)."""
    pids = {role: pid for role in local.ROLES if (pid := local.role_pid(settings, role)) is not None}
    for service in ("kafka", "redis"):
        pid_file = settings.state_dir / service / f"{service}.pid"
        if pid_file.exists():
            pids[service] = int(pid_file.read_text().split()[0])
    return pids


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (a measure the other load on the machine does not inflate)."""
    if pid is None:
        return float("nan")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def retries(settings: Settings, subscription: str) -> float:
    """hssk_subscription_retries_total of one subscription, from the fanout role's /metrics."""
    url = f"http://{settings.metrics_host}:{settings.metrics_port('fanout')}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        text = await resp.text()
    pattern = rf'^hssk_subscription_retries_total{{subscription="{re.escape(subscription)}"}} (\S+)$'
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else float("nan")


async def isolation(settings: Settings, n: int, rounds: int) -> list[Row]:
    rows = []
    for r in range(1, rounds + 1):
        rows.append(await isolation_run(settings, f"a{r}", dead=False, n=n))
        rows.append(await isolation_run(settings, f"b{r}", dead=True, n=n))
    return rows


def summary(rows: list[Row]) -> str:
    def rate(kind: str) -> float:
        return sum(r.messages for r in rows if kind in r.name) / max(1e-9, sum(r.seconds for r in rows if kind in r.name))

    alone, dead = rate("alone"), rate("dead")
    cpu = {kind: sum(r.latency_ms["fanout cpu ms/delivery"] for r in rows if kind in r.name) /
           max(1, sum(kind in r.name for r in rows)) for kind in ("alone", "dead")}
    return (f"all rounds: healthy alone {alone:,.0f}/s, next to a dead subscriber {dead:,.0f}/s -> cost "
            f"{(1 - dead / alone) * 100:+.1f} % (target < 5 %); fanout CPU per healthy delivery "
            f"{cpu['alone']:.2f} -> {cpu['dead']:.2f} ms ({(cpu['dead'] / cpu['alone'] - 1) * 100:+.1f} %)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=60.0,
                        help="seconds of the same load first, not measured: the stack is fresh, a running hub is not")
    # 200: at an ACK time of ~200 ms on a loaded machine, 50 senders with one message in flight each could offer
    # only ~250 msg/s (the last run offered 228 of 500).
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--isolation-events", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-isolation", action="store_true")
    parser.add_argument("--skip-alone", action="store_true", help="skip the fan-out alone at the full rate")
    parser.add_argument("--keep", action="store_true", help="leave the bench stack running afterwards")
    args = parser.parse_args()
    os.environ.update(ENV)
    os.environ["HSSK_SUBSCRIPTIONS_FILE"] = str(SUBS_FILE)
    hub("down", check=False)
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True)
    settings = Settings.from_env()
    SUBS_FILE.write_text(_webhook(LATENCY_SUB, "health-book", receiver_url(settings), coalescing_off=True,
                                  start="earliest"))
    print(f"load average before hub up: {load()}", flush=True)
    try:
        hub("up")
        # The senders and watchers run on uvloop (as the hub's socket-heavy roles do): they stand in for machines
        # outside the hub, so what they cost the two cores under test should be as little as it can be.
        if not args.skip_latency:
            if args.warmup > 0:  # a fresh broker JIT-compiles for minutes (C2 ~17% of a core at first): not steady
                rows = uvloop.run(latency(settings, args.rate, args.warmup, args.connections, first_serial=500_000))
                print(render(f"Warm-up (not the measurement): the same load for {args.warmup:g} s on the fresh stack",
                             rows))
            rows = uvloop.run(latency(settings, args.rate, args.seconds, args.connections))
            print(render("Fan-out latency: MLLP ACK -> health-book push (coalescing off), ms", rows))
            print(f"load average after: {load()}", flush=True)
        if not args.skip_alone:
            rows = uvloop.run(fanout_alone(settings, args.rate, args.seconds))
            print(render("Fan-out alone: changes produced onto record.changes -> health-book push (coalescing off), ms",
                         rows))
        if not args.skip_isolation:
            rows = uvloop.run(isolation(settings, args.isolation_events, args.rounds))
            print(render(f"Fan-out isolation: one healthy webhook subscription, {args.isolation_events} events per "
                         "run, with and without a dead subscriber", rows, baseline=rows[0].name))
            print(summary(rows))
    finally:
        if not args.keep:
            hub("down", check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
