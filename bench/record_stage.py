"""Record step benchmark: events/s and CPU per event of the record stage's batch step against real Redis, no Kafka.

    .venv/bin/python -m bench.record_stage [--citizens 3000] [--reports 3] [--batch 500] [--shape lab,patient] [--old]

Synthetic citizen events shaped like the translator's, cut into batches of ``--batch`` as ``take_events`` hands
them to the stage, in two shapes:

- ``lab``: per lab report the Patient, an Encounter, a DiagnosticReport and 8 Observations, i.e. 11 events of one
  citizen side by side, as one ORU^R01 gives; each citizen ``--reports`` reports, interleaved across citizens
  (a batch touches ~45 records, each read and written once for its 11 events);
- ``patient``: only the ``patient.updated`` of each report, so a batch holds 500 citizens, one event each (the
  shape of bench.identity_stream: every event reads and writes its own record).

Variants, in the same run, each on a flushed Redis:

- ``stage``: hub.stream.record.RecordStage.step + save_batch, what the role runs (WATCH, MGET, applied and
  outbox lookups in one pipeline, apply in place, one MULTI/EXEC, outbox cleared);
- ``stage, replay``: the same batches again (every event already applied: what a redelivery costs);
- ``old step (deepcopy per event)`` (with ``--old``; slow): the step as it was before merges (apply()
  deep-copying the record for every event, MGET + SISMEMBER pipeline + MULTI/EXEC, no WATCH or outbox);
- ``baseline: SET the JSON``: the same final records written with one pipelined SET per citizen per batch,
  i.e. the Redis I/O alone; the ratio column is relative to it, and each note gives the CPU ratio too.

The garbage collector runs with the stage roles' threshold (hub.stream.app.GC_FIRST_GENERATION): with the
default one, collections rescanning the bench's own event lists took a third of the step's CPU.
Redis is a private ``redis-server`` on a bench port (bench.stack.bench_env("record", 1100)), appendonly like
the local stack, started and stopped by the bench. The machine is shared and noisy: run it twice.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import tempfile
import time

import orjson
import redis.asyncio as aioredis

from bench.stack import bench_env
from bench.table import Row, percentile, render
from hub.envelope import SYSTEM_CCCD, Envelope, Identifier, Source, Subject, mrn_system
from hub.record.apply import apply
from hub.record.store import RedisRecordStore, applied_key, record_key
from hub.stream.app import GC_FIRST_GENERATION, Incoming, read_envelope
from hub.stream.record import RecordStage

PORT = int(bench_env("record", 1100)["HSSK_REDIS_PORT"])
FAMILIES = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Võ", "Đặng")
GIVEN = ("Văn Hùng", "Thị Lan", "Minh Tuấn", "Thị Bích Ngọc", "Quốc Bảo", "Thu Hà")
LOINC = ("6690-2", "789-8", "718-7", "4544-3", "787-2", "785-6", "786-4", "777-3")


def report(n: int, cid: str, r: int) -> list[Envelope]:
    at = f"2026-{1 + r % 12:02d}-{1 + n % 28:02d}T08:{r % 60:02d}:00+07:00"
    facility, mrn = "79048", f"CR{n:07d}"
    idents = (Identifier(SYSTEM_CCCD, f"079{n:09d}"), Identifier(mrn_system(facility), mrn))
    family, given = FAMILIES[n % len(FAMILIES)], GIVEN[n % len(GIVEN)]
    subject = Subject(idents, family, tuple(given.split()), "1985-02-20", "female")
    msg = f"LAB{n}-{r}"
    source = Source("hl7v2", facility, msg, "LIS")

    def event(i: int, kind: str, payload: dict) -> Envelope:
        return Envelope(f"{msg}-{i}", kind, at, at, source, subject, payload, citizen_id=cid)

    events = [event(0, "patient.updated", {
        "resourceType": "Patient", "id": f"pat-{n}",
        "identifier": [{"system": i.system, "value": i.value} for i in idents],
        "name": [{"family": family, "given": given.split(), "text": f"{family} {given}"}], "gender": "female",
        "birthDate": "1985-02-20", "telecom": [{"system": "phone", "value": f"09{n:08d}"}],
        "address": [{"text": "12 Lê Lợi, Phường Bến Thành, TP. Hồ Chí Minh"}]}),
        event(1, "encounter.recorded", {"resourceType": "Encounter", "id": f"enc-{msg}", "status": "finished",
                                        "class": {"code": "AMB"}, "period": {"start": at}}),
        event(2, "report.recorded", {"resourceType": "DiagnosticReport", "id": f"rep-{msg}", "status": "final",
                                     "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
                                     "effectiveDateTime": at})]
    for i, code in enumerate(LOINC):
        events.append(event(3 + i, "observation.recorded", {
            "resourceType": "Observation", "id": f"obs-{msg}-{code}", "status": "final",
            "category": [{"coding": [{"code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": "Tổng phân tích"}]},
            "valueQuantity": {"value": 4.2 + i, "unit": "10*9/L"}, "effectiveDateTime": at,
            "referenceRange": [{"low": {"value": 4.0}, "high": {"value": 10.0}}]}))
    return events


def batches(citizens: int, reports: int, size: int, shape: str = "lab") -> list[list[Incoming]]:
    per_report = slice(None) if shape == "lab" else slice(0, 1)  # patient: the report's patient.updated alone
    stream = [e for r in range(reports) for n in range(citizens) for e in report(n, f"cz-bench-{n:06d}", r)[per_report]]
    records = [Incoming(e.citizen_id.encode(), e.to_json(), {}, "events.citizen", 0, i, 0.0)
               for i, e in enumerate(stream)]
    return [records[i:i + size] for i in range(0, len(records), size)]


async def redis_cpu(redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def time_batches(redis, work, cut: list[list[Incoming]]) -> tuple[float, list[float], float, float]:
    """Wall seconds, batch latencies (ms), and CPU seconds of this process and of Redis."""
    took = []
    cpu, rcpu = time.process_time(), await redis_cpu(redis)
    started = time.perf_counter()
    for batch in cut:
        t0 = time.perf_counter()
        await work(batch)
        took.append((time.perf_counter() - t0) * 1000)
    wall = time.perf_counter() - started
    return wall, took, time.process_time() - cpu, await redis_cpu(redis) - rcpu


def row(name: str, events: int, measured: tuple[float, list[float], float, float], note: str = "",
        base_cpu: float | None = None) -> Row:
    seconds, took, cpu, rcpu = measured
    ratio = f" ({cpu / base_cpu:.1f}x the baseline's CPU)" if base_cpu else ""
    return Row(name, events, seconds, {"batch p50 ms": percentile(took, 50), "batch p99 ms": percentile(took, 99),
                                       "cpu us/event": cpu / events * 1e6, "redis cpu us/event": rcpu / events * 1e6},
               f"{events / cpu:,.0f} events per CPU-second of the step{ratio}; {note}")


async def old_step(redis, batch: list[Incoming]) -> None:
    """The step before merges: deepcopy per event, no WATCH, no outbox."""
    events = [read_envelope(i) for i in batch]
    async with redis.pipeline(transaction=False) as pipe:
        for e in events:
            pipe.sismember(applied_key(e.citizen_id), e.event_id)
        done = await pipe.execute()
    cids = sorted({e.citizen_id for e in events})
    loaded = {c: orjson.loads(r) if r else None for c, r in zip(cids, await redis.mget([record_key(c) for c in cids]))}
    working, applied = {}, []
    for e, seen in zip(events, done):
        if seen:
            continue
        working[e.citizen_id], _ = apply(working.get(e.citizen_id, loaded[e.citizen_id]), e)
        applied.append(e)
    async with redis.pipeline(transaction=True) as pipe:
        for cid, record in working.items():
            pipe.set(record_key(cid), orjson.dumps(record))
        for e in applied:
            pipe.sadd(applied_key(e.citizen_id), e.event_id)
        await pipe.execute()


async def final_records(cut: list[list[Incoming]]) -> list[dict[str, bytes]]:
    """Per batch, the JSON of each touched citizen's record after it (what the baseline SETs)."""
    state: dict[str, dict] = {}
    out = []
    for batch in cut:
        touched = {}
        for incoming in batch:
            e = read_envelope(incoming)
            state[e.citizen_id], _ = apply(state.get(e.citizen_id), e)
            touched[e.citizen_id] = None
        out.append({c: orjson.dumps(state[c]) for c in touched})
    return out


async def measure(redis, args: argparse.Namespace, shape: str) -> str:
    """The variants on one shape of events, each on a flushed Redis."""
    cut = batches(args.citizens, args.reports, args.batch, shape)
    events = sum(len(b) for b in cut)
    payloads = await final_records(cut)
    await redis.flushall()

    async def baseline(batch: list[Incoming], it=iter(payloads)) -> None:
        async with redis.pipeline(transaction=False) as pipe:
            for cid, body in next(it).items():
                pipe.set(record_key(cid), body)
            await pipe.execute()

    measured = await time_batches(redis, baseline, cut)
    base_cpu = measured[2]
    rows = [row("baseline: SET the JSON", events, measured, "same final records, no logic")]
    await redis.flushall()
    stage = RecordStage(RedisRecordStore(redis))

    async def step(batch: list[Incoming]) -> None:
        await stage.step(batch)
        await stage.save_batch()

    rows.append(row("stage", events, await time_batches(redis, step, cut),
                    "WATCH + MULTI/EXEC, outbox, apply in place", base_cpu))
    rows.append(row("stage, replay", events, await time_batches(redis, step, cut), "every event already applied",
                    base_cpu))
    if args.old:
        await redis.flushall()
        rows.append(row("old step (deepcopy per event)", events,
                        await time_batches(redis, lambda b: old_step(redis, b), cut), "before merges", base_cpu))
    per_batch = sum(len({i.key for i in b}) for b in cut) / len(cut)
    title = (f"record step, {shape} shape: {args.citizens} citizens x {args.reports} reports x "
             f"{11 if shape == 'lab' else 1} events = {events} events, batches of {args.batch} "
             f"({per_batch:.0f} records each)")
    return render(title, rows, baseline="baseline: SET the JSON") + (
        f"\nload average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


async def run(args: argparse.Namespace) -> str:
    gc.set_threshold(GC_FIRST_GENERATION, 20, 20)  # as the stage roles run (hub.stream.app.make_app)
    with tempfile.TemporaryDirectory() as folder:
        server = subprocess.Popen(["redis-server", "--port", str(PORT), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "yes", "--dir", folder], stdout=subprocess.DEVNULL)
        redis = aioredis.Redis(port=PORT)
        try:
            for _ in range(100):
                try:
                    await redis.ping()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            tables = [await measure(redis, args, shape) for shape in args.shape.split(",")]
        finally:
            await redis.aclose()
            server.terminate()
            server.wait(10)
    return "\n\n".join(tables) + (
        "\nshared 2-core machine (other sessions running): wall-clock rates follow the load; CPU per event (this "
        "process, and Redis from INFO cpu) is the steadier figure.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--citizens", type=int, default=3000)
    parser.add_argument("--reports", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--shape", default="lab,patient", help="comma-separated: lab, patient")
    parser.add_argument("--old", action="store_true", help="also run the step as it was before merges (slow)")
    print(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
