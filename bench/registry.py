"""Vaccination registry CSV -> Kafka: rows/s through ``hub import``'s registry path.

    .venv/bin/python -m bench.registry [--rows 100000] [--workers 2] [--warmup-rows 50000] [--keep]

Starts Kafka and Redis on the bench ports (bench/stack.py), writes a generated registry CSV, and measures
the importer: read and validate each row, map it to Patient + Immunization, write the raw row to emr.raw and
both events to events.canonical with acks=all. The baselines in the same run are the least a bulk load can
do: stdlib ``csv`` reading the same file and producing each raw line once with acks=all + idempotence, no
mapping, with aiokafka and with confluent-kafka (the client the importer uses).

Before anything is measured, ``--warmup-rows`` rows of another file go through the importer (not reported): a
freshly started broker JIT-compiles for its first minutes (C2 ~4% of the machine in perf during a cold run), which
a running hub's broker has long done.

The importer runs twice: mapping in its own process (``HSSK_IMPORT_WORKERS=0``, the default) and in
``--workers`` mapping processes (the main process then reads, validates the CSV and produces).

Each row also shows the CPU the measured process used (all its threads; the importer's worker processes
separately) and the Kafka broker's CPU over the same interval, per row: on this shared 2-core machine wall time
depends on the other work, CPU per row much less, so the CPU figures are the capacity to compare between runs
(20,000 rows/s on 2 cores leaves ~100 us of CPU a row for every process together, the broker's included).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import confluent_kafka
from aiokafka import AIOKafkaProducer

from bench.stack import bench_env
from bench.table import Row, render
from connectors.registry import COLUMNS
from hub.settings import Settings
from hub.synthetic import WARDS, person

VACCINES = [("AZ", "AstraZeneca"), ("PF", "Pfizer-BioNTech"), ("MD", "Moderna"), ("VC", "Vero Cell")]


def write_csv(path: Path, n: int, seed: int = 2021, prefix: str = "R") -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(COLUMNS)
        for i in range(n):
            p = person(rng)
            code, name = rng.choice(VACCINES)
            dob = f"{p.birth_date[6:]}/{p.birth_date[4:6]}/{p.birth_date[:4]}"
            out.writerow([f"{prefix}{i:08d}", p.full_name, dob, "Nam" if p.sex == "M" else "Nữ",
                          p.cccd if rng.random() > 0.25 else "", "", p.phone, f"{rng.randint(1, 300)} Lê Lợi, "
                          f"{rng.choice(WARDS)}", "26734", code, name, f"L{rng.randint(1, 999):03d}",
                          str(rng.randint(1, 3)), f"{rng.randint(1, 28):02d}/0{rng.randint(6, 9)}/2021 08:30",
                          "79001"])


async def hub_import(settings: Settings, path: Path, workers: int) -> Row:
    from hub.ops.file_import import Importer

    before, children, broker = _cpu(), _children_cpu(), _broker_cpu(settings)
    async with Importer(replace(settings, import_workers=workers)) as importer:
        workers = importer._pool_for(path).workers  # a file under 4 MiB is mapped in the importer's process
        start = time.perf_counter()
        report = await importer.import_file(path)
        seconds = time.perf_counter() - start
    # After the importer closed its worker pool, so their CPU is counted too.
    own, children, broker = _cpu() - before, _children_cpu() - children, _broker_cpu(settings) - broker
    n = report.read
    note = (f"{report.events:,} events + {report.accepted:,} raw rows; {sum(report.failures.values())} failures; "
            f"{_cpu_note(n, own + children)}; CPU a row: importer {own / n * 1e6:.0f} us"
            + (f" + workers {children / n * 1e6:.0f} us" if workers else "") + f", broker {broker / n * 1e6:.0f} us")
    return Row(f"hub import (registry CSV), {workers or 'no'} mapping workers", n, seconds, note=note)


def _cpu() -> float:
    """CPU seconds of this process (every thread)."""
    t = os.times()
    return t.user + t.system


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (the import's mapping workers)."""
    t = os.times()
    return t.children_user + t.children_system


def _broker_cpu(settings: Settings) -> float:
    """CPU seconds the bench stack's Kafka broker has used (0 when its pid file cannot be read)."""
    try:
        pid = int((settings.state_dir / "kafka" / "kafka.pid").read_text().strip())
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_note(rows: int, cpu: float) -> str:
    return f"CPU {cpu:.1f} s, {rows / cpu:,.0f} rows per CPU-s"


async def baseline(settings: Settings, path: Path) -> Row:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=5)
    await producer.start()
    try:
        start, cpu, broker = time.perf_counter(), _cpu(), _broker_cpu(settings)
        n = 0
        pending = []
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            next(reader)
            for values in reader:
                pending.append(await producer.send("emr.raw", ",".join(values).encode()))
                n += 1
                if len(pending) >= 2000:
                    await asyncio.gather(*pending)
                    pending = []
        await asyncio.gather(*pending)
        seconds, cpu, broker = time.perf_counter() - start, _cpu() - cpu, _broker_cpu(settings) - broker
    finally:
        await producer.stop()
    return Row("baseline: csv + aiokafka, raw line only", n, seconds,
               note=f"no mapping, one record per row; {_cpu_note(n, cpu)}; broker {broker / n * 1e6:.0f} us a row")


def baseline_confluent(settings: Settings, path: Path) -> Row:
    """The same bytes through librdkafka with the importer's producer settings (acks=all, idempotence)."""
    producer = confluent_kafka.Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all",
                                         "enable.idempotence": True, "linger.ms": 5, "batch.size": 1 << 20,
                                         "partitioner": "murmur2_random"})
    failed: list[object] = []

    def report(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(err)

    start, cpu, broker = time.perf_counter(), _cpu(), _broker_cpu(settings)
    n = 0
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for values in reader:
            while True:
                try:
                    producer.produce("emr.raw", ",".join(values).encode(), on_delivery=report)
                    break
                except BufferError:
                    producer.poll(0.01)
            n += 1
            if n % 1000 == 0:
                producer.poll(0)
    producer.flush(30)
    seconds, cpu, broker = time.perf_counter() - start, _cpu() - cpu, _broker_cpu(settings) - broker
    assert not failed, failed[:3]
    return Row("baseline: csv + confluent-kafka, raw line only", n, seconds,
               note=f"no mapping, one record per row; {_cpu_note(n, cpu)}; broker {broker / n * 1e6:.0f} us a row")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2, help="mapping processes for the second import run")
    parser.add_argument("--warmup-rows", type=int, default=50_000,
                        help="rows imported (other record ids) before the measured runs, not reported")
    parser.add_argument("--keep", action="store_true", help="leave the bench stack running afterwards")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    os.environ.update(bench_env("registry", 700), HSSK_START_TIMEOUT="300")  # a loaded machine starts slowly
    settings = Settings.from_env()
    from hub.ops import local
    from hub.topics import ensure_topics

    local.stack("stop", settings)
    shutil.rmtree(settings.state_dir, ignore_errors=True)
    try:
        if local.stack("start", settings) != 0:
            return 1
        asyncio.run(ensure_topics(settings))
        path = settings.state_dir / "registry.csv"
        write_csv(path, args.rows)
        if args.warmup_rows:
            warmup = settings.state_dir / "warmup.csv"
            write_csv(warmup, args.warmup_rows, seed=7, prefix="W")
            asyncio.run(hub_import(settings, warmup, args.workers))
        rows = [asyncio.run(baseline(settings, path)), baseline_confluent(settings, path),
                asyncio.run(hub_import(settings, path, 0)), asyncio.run(hub_import(settings, path, args.workers))]
    finally:
        if not args.keep:
            local.stack("stop", settings)
    print(render(f"Vaccination registry CSV -> Kafka ({args.rows:,} rows, after {args.warmup_rows:,} rows of warm-up; "
                 "target >= 20,000 rows/s)", rows,
                 baseline="baseline: csv + aiokafka, raw line only"))
    print(f"load average before {load_before:.2f}, at the end {os.getloadavg()[0]:.2f} (other work on this 2-core "
          "machine skews every row's wall time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
