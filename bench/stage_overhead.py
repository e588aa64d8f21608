"""What the stream framework costs per event: the hub's stage loop (``hub.stream.app.add_stage``) copying events,
against the same copy as a faust agent (how the stages ran before) and as a bare aiokafka batch loop, each in
a worker process of its own, on the same broker.

    .venv/bin/python -m bench.stage_overhead [--events 30000]

Every stage role (translator, identity, record, fanout's ``out.all``) runs through ``add_stage``; the issue
benchmarks time their steps without it, so this bench measures the part they leave out. Each worker reads
``--events`` canonical events (~1.3 kB, the size of a patient change) from a 4-partition topic and writes each
to an output topic, batches of up to 500, acks=all, offsets committed. The figure is the worker's CPU time
per event (from /proc, all threads) between "idle with its partitions assigned" and "every copy is on the
output topic", so start-up and group joins are not counted; wall rate is shown too but the machine is shared.

    .venv/bin/python -m bench.stage_overhead --rate 500 [--events 15000]

The paced mode: events arrive at ``--rate`` per second, as in the whole-path benchmark (bench.fanout), and
the hub's stage loop copies them under each consumer fetch setting (HSSK_STAGE_FETCH_MIN_BYTES /
HSSK_STAGE_FETCH_MAX_WAIT_MS). Below capacity a fetch that returns at once carries a few events, so the
stage and the broker pay per request; the table gives the stage's and the broker's CPU per event and the
copy latency (the output record's timestamp minus the time the event was sent), p50 and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

from bench.fanout import process_cpu_s
from bench.stack import bench_env
from bench.table import Row, render
from hub.settings import REPO_ROOT, Settings
from hub.topics import Topic

SOURCES = {"hub": "bench.stage.in.hub", "faust": "bench.stage.in.faust", "aiokafka": "bench.stage.in.plain"}
OUTPUTS = {"hub": "bench.stage.out.hub", "faust": "bench.stage.out.faust", "aiokafka": "bench.stage.out.plain"}
PARTITIONS = 4


def _topic(name: str) -> Topic:
    return Topic(name, "bench", 3_600_000, "stage overhead bench")


def _event(i: int, sent_ms: int = 0) -> bytes:
    filler = "Nguyễn Thị Hồng Nhung, phường Bến Nghé, Quận 1, Thành phố Hồ Chí Minh; " * 14
    return (f'{{"event_id":"{i:032x}","sent_ms":{sent_ms:013d},"type":"patient.updated",'
            f'"occurred_at":"2026-03-01T08:00:00+07:00","payload":{{"text":"{filler}"}}}}').encode()


# --- the two workers (child processes) ------------------------------------------------------------------


def run_hub(settings: Settings) -> None:
    """The hub's own stage loop (``hub.stream.app.add_stage``) in a faust worker, as every role runs."""
    import faust

    from hub.stream.app import Incoming, Outgoing, add_stage, each, make_app

    source = _topic(os.environ.get("BENCH_STAGE_IN", SOURCES["hub"]))
    out = _topic(os.environ.get("BENCH_STAGE_OUT", OUTPUTS["hub"]))

    async def copy(incoming: Incoming) -> list[Outgoing]:
        return [Outgoing(out, incoming.key, incoming.value)]

    app = make_app("bench-stage", settings)
    add_stage(app, settings, "bench-copy", source, each(copy))
    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


def run_faust(settings: Settings) -> None:
    """A faust agent doing the copy the way the stages did before (take_events batches, sends awaited together)."""
    import faust

    app = faust.App("bench-stage-faust", broker=f"kafka://{settings.kafka_bootstrap}", store="memory://",
                    value_serializer="raw", key_serializer="raw", web_enabled=False, topic_allow_declare=False,
                    topic_disable_leader=True, consumer_auto_offset_reset="earliest", producer_acks=-1,
                    producer_linger=0.005, producer_max_batch_size=512 * 1024, broker_commit_interval=1.0,
                    datadir=str(settings.state_dir / "faust-bench"))
    source = app.topic(SOURCES["faust"], key_type=bytes, value_type=bytes)
    out = app.topic(OUTPUTS["faust"], key_type=bytes, value_type=bytes)

    @app.agent(source)
    async def copy(stream):  # noqa: ANN001 - faust's agent signature
        async for events in stream.take_events(500, within=0.02):
            await asyncio.gather(*[await out.send(key=e.key, value=e.value) for e in events])

    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


async def run_aiokafka(settings: Settings) -> None:
    consumer = AIOKafkaConsumer(SOURCES["aiokafka"], bootstrap_servers=settings.kafka_bootstrap, group_id="bench-stage-plain",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5,
                                max_batch_size=512 * 1024)
    await consumer.start()
    await producer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=20, max_records=500)
            if not batches:
                continue
            futures = [await producer.send(OUTPUTS["aiokafka"], r.value, key=r.key)
                       for records in batches.values() for r in records]
            await asyncio.gather(*futures)
            await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


# --- the driver ---------------------------------------------------------------------------------------


async def _end_total(settings: Settings, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return sum((await consumer.end_offsets(parts)).values())
    finally:
        await consumer.stop()


async def _produce(settings: Settings, topic: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, _event(i), key=f"k{i % 997}".encode()) for i in range(n)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _create_topics(settings: Settings, names: list[str] | None = None) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        names = names or [*SOURCES.values(), *OUTPUTS.values()]
        await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in names])
    finally:
        await admin.close()


async def _produce_paced(settings: Settings, topic: str, n: int, rate: float) -> None:
    """``n`` events at ``rate`` per second (in 10 ms ticks), each carrying the wall time it was sent."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=1)
    await producer.start()
    try:
        futures, start, sent = [], time.monotonic(), 0
        while sent < n:
            due = min(n, int((time.monotonic() - start) * rate) + 1)
            while sent < due:
                futures.append(await producer.send(topic, _event(sent, int(time.time() * 1000)),
                                                   key=f"k{sent % 997}".encode()))
                sent += 1
            await asyncio.sleep(0.01)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


_SENT_AT = _event(0).index(b'"sent_ms":') + len('"sent_ms":')


async def _latencies_ms(settings: Settings, topic: str) -> list[float]:
    """Output record time minus the time its event was sent, for every copy on ``topic``."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        out: list[float] = []
        while batch := await consumer.getmany(timeout_ms=1000):
            for records in batch.values():
                out += [r.timestamp - int(r.value[_SENT_AT:_SENT_AT + 13]) for r in records]
        return sorted(out)
    finally:
        await consumer.stop()


# Consumer fetch settings the paced mode compares: (label, fetch.min.bytes, fetch.max.wait.ms).
FETCH_VARIANTS = [("fetch returns at once (1 B or 500 ms)", 1, 500), ("fetch 64 KiB or 10 ms", 65536, 10),
                  ("fetch 64 KiB or 25 ms", 65536, 25)]


def measure_paced(settings: Settings, index: int, label: str, min_bytes: int, wait_ms: int, n: int,
                  rate: float) -> Row:
    from bench.fanout import process_pids

    source, out = f"bench.stage.paced{index}.in", f"bench.stage.paced{index}.out"
    asyncio.run(_create_topics(settings, [source, out]))
    env = {**os.environ, "BENCH_STAGE_IN": source, "BENCH_STAGE_OUT": out,
           "HSSK_STAGE_FETCH_MIN_BYTES": str(min_bytes), "HSSK_STAGE_FETCH_MAX_WAIT_MS": str(wait_ms)}
    log = open(settings.state_dir / f"stage-paced{index}.log", "wb")
    child = subprocess.Popen([sys.executable, "-m", "bench.stage_overhead", "--child", "hub"], cwd=REPO_ROOT,
                             env=env, stdout=subprocess.DEVNULL, stderr=log)
    kafka = process_pids(settings)["kafka"]
    try:
        time.sleep(20)  # group join and assignment
        cpu0, broker0, t0 = process_cpu_s(child.pid), process_cpu_s(kafka), time.monotonic()
        asyncio.run(_produce_paced(settings, source, n, rate))
        while asyncio.run(_end_total(settings, out)) < n:
            if child.poll() is not None:
                raise SystemExit(f"the stage worker exited with {child.returncode} before copying everything")
            time.sleep(0.1)
        wall = time.monotonic() - t0
        cpu, broker = process_cpu_s(child.pid) - cpu0, process_cpu_s(kafka) - broker0
    finally:
        child.terminate()
        child.wait(30)
    lat = asyncio.run(_latencies_ms(settings, out))
    p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return Row(label, n, wall, {"stage µs/event": cpu * 1e6 / n, "broker µs/event": broker * 1e6 / n,
                                "copy p50 ms": p50, "copy p99 ms": p99},
               note=f"min bytes {min_bytes}, max wait {wait_ms} ms; broker CPU includes the paced producer's requests")


def measure(settings: Settings, kind: str, n: int) -> Row:
    """Start the worker on its own empty source, let it settle, then time ``n`` events through it."""
    log = open(settings.state_dir / f"stage-{kind}.log", "wb")
    child = subprocess.Popen([sys.executable, "-m", "bench.stage_overhead", "--child", kind], cwd=REPO_ROOT,
                             env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=log)
    try:
        time.sleep(20)  # group join and assignment (faust's rebalance takes seconds)
        idle_from = process_cpu_s(child.pid)
        time.sleep(5)
        idle_per_s = (process_cpu_s(child.pid) - idle_from) / 5
        target = asyncio.run(_end_total(settings, OUTPUTS[kind])) + n
        cpu0, t0 = process_cpu_s(child.pid), time.monotonic()
        asyncio.run(_produce(settings, SOURCES[kind], n))
        while asyncio.run(_end_total(settings, OUTPUTS[kind])) < target:
            if child.poll() is not None:
                raise SystemExit(f"the {kind} worker exited with {child.returncode} before copying everything")
            time.sleep(0.1)
        wall, cpu = time.monotonic() - t0, process_cpu_s(child.pid) - cpu0
    finally:
        child.terminate()
        child.wait(30)
    busy = cpu - idle_per_s * wall
    return Row(f"{kind} copy stage", n, wall, note=f"{cpu * 1e6 / n:,.0f} µs CPU/event ({busy * 1e6 / n:,.0f} µs "
                                                   f"above its idle {idle_per_s * 1000:.0f} ms/s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--child", choices=sorted(OUTPUTS))
    parser.add_argument("--rate", type=float, help="paced mode: events per second, compare consumer fetch settings")
    parser.add_argument("--keep", action="store_true", help="leave the bench stack running afterwards")
    args = parser.parse_args()
    if args.child is None:
        os.environ.update(bench_env("stage", 1300), HSSK_START_TIMEOUT="300")
    settings = Settings.from_env()
    if args.child == "hub":
        run_hub(settings)
        return 0
    if args.child == "faust":
        run_faust(settings)
        return 0
    if args.child == "aiokafka":
        asyncio.run(run_aiokafka(settings))
        return 0
    from hub.ops import local

    load_before = os.getloadavg()[0]
    local.stack("stop", settings)
    shutil.rmtree(settings.state_dir, ignore_errors=True)
    try:
        if local.stack("start", settings) != 0:
            return 1
        if args.rate:
            rows = [measure_paced(settings, i, *variant, args.events, args.rate)
                    for i, variant in enumerate(FETCH_VARIANTS)]
        else:
            asyncio.run(_create_topics(settings))
            rows = [measure(settings, kind, args.events) for kind in ("aiokafka", "faust", "hub")]
    finally:
        if not args.keep:
            local.stack("stop", settings)
    if args.rate:
        print(render(f"Stage loop at {args.rate:,.0f} events/s: {args.events:,} events of ~1.3 kB, 4 partitions, "
                     "acks=all, by consumer fetch setting", rows, baseline=FETCH_VARIANTS[0][0]))
    else:
        print(render(f"Stream stage overhead: copy {args.events:,} events, batches of 500, acks=all", rows,
                     baseline="aiokafka copy stage"))
    print(f"load average before {load_before:.2f}, at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
