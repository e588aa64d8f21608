"""Streaming identity + record benchmark: the MPI with a city-sized index, one worker, real Redis.

    .venv/bin/python -m bench.identity_stream [--citizens 1000000] [--events 50000] [--seed 3] [--cache DIR]

(Loading a million citizens costs ~10 CPU-minutes, over an hour of wall time on a loaded machine; ``--cache``
keeps the loaded index so the measurement can be repeated without it. The snapshot holds synthetic people only.)

1. Starts a private Redis (a temporary folder, no persistence, its own port: it never touches the demo,
   test or bench stacks) and indexes ``--citizens`` generated people (``hub.identity.population``, one
   registry row each) through ``Resolver.index_ops`` in pipelined script calls.
2. Pushes most of ``--events`` further rows (70% of them returning people, the rest people not indexed) as
   canonical ``patient.updated`` events (each row its own facility + MRN, so every event is matched: the worst
   case) through the identity stage step (``IdentityStage.step``: resolution, review cases, A40 merges) and then
   the record stage step (``RecordStage.step`` + ``save_batch``) on the same Redis, in batches of 500, as the
   workers would.
2b. The mix a hospital feed is made of: ``--new-share`` (15%) of the events from source identities not seen
   before (the rest of those rows), the others follow-up encounters of patients of step 2 at the same hospital
   (their MRN now linked, the demographics as the hospital sent them), spread evenly.
3. Same run, step 2's events, fresh record keys: the old CCCD-only resolution (one SET NX per event) + the
   record stage, as the baseline.

Prints events/s and per-batch latency (identity + record) p50/p99, the identity outcomes, and how often
a returning person's event was linked to the right citizen / a new person's to someone else.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import pickle
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import orjson
import redis.asyncio as aioredis

from bench.table import Row, percentile, render
from hub.envelope import (SYSTEM_BHYT, SYSTEM_CCCD, SYSTEM_OLD_ID, SYSTEM_PASSPORT, Envelope, Identifier, Source,
                          Subject, event_id, mrn_system)
from hub.identity import identifiers as ids
from hub.identity.mpi_store import RedisMpiStore, identity_key
from hub.identity.population import PopulationGenerator
from hub.identity.resolve import Resolver
from hub.identity.review import Mpi
from hub.pseudonym import citizen_id_for
from hub.record.store import RedisRecordStore
from hub.stream.app import GC_FIRST_GENERATION, Incoming, read_envelope
from hub.stream.identity import IdentityStage
from hub.stream.record import RecordStage

SECRET = b"bench-identity-secret"
BATCH = 500
_SEX = {"nam": "male", "1": "male", "nữ": "female", "2": "female"}


def envelope(row: dict[str, str], seq: int) -> Envelope:
    """A registry row as the canonical patient.updated a connector would emit (own facility + MRN)."""
    facility = row["ma_co_so"]
    idents = [Identifier(mrn_system(facility), f"BN{seq:08d}")]
    pid = ids.classify_personal_id(row["so_cccd"])
    for value, system in ((pid.cccd, SYSTEM_CCCD), (pid.cmnd, SYSTEM_OLD_ID), (pid.passport, SYSTEM_PASSPORT)):
        if value:
            idents.append(Identifier(system, value))
    if row["so_bhyt"]:
        idents.append(Identifier(SYSTEM_BHYT, row["so_bhyt"]))
    words = row["ho_ten"].split()
    family, given = (words[0], tuple(words[1:])) if len(words) > 1 else (None, tuple(words))
    payload = {"resourceType": "Patient", "identifier": [{"system": i.system, "value": i.value} for i in idents],
               "telecom": [{"system": "phone", "value": row["so_dien_thoai"]}] if row["so_dien_thoai"] else [],
               "address": [{"text": row["dia_chi"], "extension": [
                   {"url": "http://fhir.ehealth.gov.vn/core/StructureDefinition/ward-code", "valueCode": row["ma_xa"]}]}]}
    eid = event_id("bench", facility, f"M{seq}", "0")
    when = "2026-03-01T08:00:00+07:00"
    return Envelope(eid, "patient.updated", when, when, Source("bench", facility, f"M{seq}"),
                    Subject(tuple(idents), family, given, row["ngay_sinh"], _SEX.get(row["gioi_tinh"].lower())),
                    payload)


def incoming(value: bytes, topic: str, offset: int) -> Incoming:
    return Incoming(None, value, {}, topic, 0, offset, 0.0)


async def redis_cpu(redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def load_index(redis, resolver: Resolver, gen, citizens: int, events: int
                     ) -> tuple[list[tuple[bytes, str | None]], dict[str, str], float]:
    """Index ``citizens`` people (their first row); keep ``events`` later rows (pid or None if new)."""
    store = resolver.store
    known: dict[str, str] = {}  # person id -> citizen id
    pool: list[tuple[bytes, str | None]] = []  # each event serialised as the worker gets it from Kafka
    ops: list = []
    seq = returning = 0
    started = time.perf_counter()
    pending: list[asyncio.Task] = []
    for row, pid in gen.rows(int(citizens * 1.6) + events * 3):
        seq += 1
        if pid not in known and len(known) < citizens:
            cid = known[pid] = citizen_id_for(SECRET, "urn:hssk:bench-person", pid)
            ops += resolver.index_ops(envelope(row, seq), cid)
            if len(ops) >= 20_000:
                pending.append(asyncio.ensure_future(store.write(ops)))
                ops = []
                if len(pending) > 2:
                    await pending.pop(0)
            if len(known) % 100_000 == 0:
                print(f"  indexed {len(known):,} citizens in {time.perf_counter() - started:.0f} s", flush=True)
        elif pid in known and len(known) >= citizens * 0.5 and returning < events * 0.7:
            pool.append((envelope(row, seq).to_json(), pid))  # a returning person, at another facility
            returning += 1
        elif len(known) >= citizens and pid not in known and len(pool) < events:
            pool.append((envelope(row, seq).to_json(), None))  # someone the index does not hold
        if len(known) >= citizens and len(pool) >= events:
            break
    pending.append(asyncio.ensure_future(store.write(ops)))
    await asyncio.gather(*pending)
    return pool, known, time.perf_counter() - started


async def cccd_only(events: list[Envelope], redis) -> list[Envelope]:
    """The identity step before the MPI: link on a valid CCCD only (one SET NX + GET each), else DLQ."""
    out, keys = [], []
    for e in events:
        cccd = next((i.value for i in e.subject.identifiers if i.system == SYSTEM_CCCD and len(i.value) == 12), None)
        if cccd:
            keys.append((len(out), "mpi:link:" + identity_key(SECRET, Identifier(SYSTEM_CCCD, cccd)),
                         citizen_id_for(SECRET, SYSTEM_CCCD, cccd)))
            out.append(e)
    async with redis.pipeline(transaction=True) as pipe:
        for _, key, cid in keys:
            pipe.set(key, cid, nx=True)
            pipe.get(key)
        replies = await pipe.execute()
    return [out[pos].with_citizen(cid.decode()) for (pos, _, _), cid in zip(keys, replies[1::2], strict=True)]


async def snapshot(redis) -> None:
    """Write the index to dump.rdb in the background and wait for it: a blocking SAVE of a million citizens
    (~2 GB) outlasted the client's read timeout on a loaded machine, and the loaded index was lost."""
    await redis.bgsave()
    while True:
        await asyncio.sleep(1)
        info = await redis.info("persistence")
        if not info["rdb_bgsave_in_progress"]:
            if info["rdb_last_bgsave_status"] != "ok":
                raise RuntimeError("the Redis snapshot of the index failed")
            return


def cache_paths(args: argparse.Namespace) -> tuple[Path, Path] | None:
    """Where ``--cache`` keeps a loaded index (Redis snapshot) and its events; named by the run's parameters
    and a probe of the MPI key derivation, so a change of the key layout never reuses an old index."""
    if not args.cache:
        return None
    probe = identity_key(SECRET, Identifier("probe", "probe"))[:8]
    stem = Path(args.cache) / f"mpi-{args.citizens}-{args.events}-{args.seed}-{probe}"
    return stem.with_suffix(".rdb"), stem.with_suffix(".events.pickle")


async def run(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-identity-"))
    cached = cache_paths(args)
    reuse = cached is not None and cached[0].exists() and cached[1].exists()
    if reuse:
        shutil.copyfile(cached[0], folder / "dump.rdb")  # loaded by redis-server at start
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", str(folder), "--dbfilename", "dump.rdb"],
                              stdout=subprocess.DEVNULL)
    redis = aioredis.Redis(port=port)
    try:
        for _ in range(3000):
            try:
                await redis.ping()
                break
            except Exception:  # noqa: BLE001 - not up yet (or still loading a cached index)
                await asyncio.sleep(0.1)
        resolver = Resolver(RedisMpiStore(redis), SECRET)
        load_cpu = time.process_time()
        if reuse:
            started = time.perf_counter()
            with cached[1].open("rb") as f:  # type: ignore[index]
                pool, known = pickle.load(f)
            load_s = time.perf_counter() - started
            print(f"reused the cached index {cached[0]} ({args.citizens:,} citizens) on port {port}", flush=True)
        else:
            print(f"indexing {args.citizens:,} generated citizens into Redis on port {port} ...", flush=True)
            pool, known, load_s = await load_index(redis, resolver, PopulationGenerator(seed=args.seed),
                                                  args.citizens, args.events)
            if cached is not None:
                await snapshot(redis)
                Path(args.cache).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(folder / "dump.rdb", cached[0])
                with cached[1].open("wb") as f:
                    pickle.dump((pool, known), f, protocol=pickle.HIGHEST_PROTOCOL)
        load_cpu = time.process_time() - load_cpu
        memory = (await redis.info("memory"))["used_memory"] / 2**20
        print(f"indexed in {load_s:.0f} s ({args.citizens / load_s:,.0f} citizens/s), Redis {memory:,.0f} MB; "
              f"{len(pool):,} events to push", flush=True)
        person_of = {cid: pid for pid, cid in known.items()}
        cut = len(pool) - int(len(pool) * args.new_share / (2 - args.new_share))  # the mix's new ones after it
        first, later = pool[:cut], pool[cut:]
        gc.collect()
        gc.freeze()  # the bench's own million-entry maps are not the worker's: keep them out of GC passes
        gc.set_threshold(GC_FIRST_GENERATION, 20, 20)  # as the stage roles run (hub.stream.app.make_app)

        stage = IdentityStage(resolver, Mpi(redis, SECRET))
        record = RecordStage(RedisRecordStore(redis, prefix="new:"))
        load0 = os.getloadavg()[0]
        worst = await timed_pass(stage, record, redis, [(e, pid) for e, pid in first], person_of)
        # The mix: follow-ups of the first pass's patients (same facility and MRN, now linked) with new source
        # identities among them at --new-share, spread evenly.
        follow = [(follow_up(e, i), ("follow", worst.citizens[i])) for i, (e, _) in enumerate(first)]
        n_new = len(later)
        n_follow = min(len(follow), int(n_new * (1 - args.new_share) / args.new_share))
        mixed_events = _interleave(later, follow[:n_follow])
        mixed = await timed_pass(stage, record, redis, mixed_events, person_of)

        base_record = RecordStage(RedisRecordStore(redis, prefix="old:"))
        events = [e for e, _ in first]
        base_lat: list[float] = []
        cpu0, rcpu0 = time.process_time(), await redis_cpu(redis)
        started = time.perf_counter()
        for start in range(0, len(events), BATCH):
            chunk = events[start:start + BATCH]
            t0 = time.perf_counter()
            batch = [incoming(e, "events.canonical", start + i) for i, e in enumerate(chunk)]
            resolved = await cccd_only([read_envelope(i) for i in batch], redis)
            await base_record.step([Incoming(e.citizen_id.encode(), e.to_json(), {}, "events.citizen", 0, k, 0.0)
                                    for k, e in enumerate(resolved)])
            await base_record.save_batch()
            base_lat.append(time.perf_counter() - t0)
        old_s = time.perf_counter() - started
        old_cpu, old_rcpu = time.process_time() - cpu0, await redis_cpu(redis) - rcpu0
        queue = await stage.mpi.queue_size()
    finally:
        await redis.aclose()
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)

    baseline = "baseline: CCCD-only + record"
    rows = [
        worst.row("MPI identity + record, every event a new source identity", args.citizens),
        mixed.row(f"MPI identity + record, {args.new_share:.0%} new source identities, the rest follow-ups",
                  args.citizens),
        Row(baseline, len(events), old_s,
            {"batch p50 ms": percentile(base_lat, 50) * 1000, "batch p99 ms": percentile(base_lat, 99) * 1000},
            f"the first row's events; SET NX on CCCD only, events without one dropped; CPU: worker {old_cpu:.1f} s "
            f"({old_cpu / len(events) * 1000:.2f} ms/event) + Redis "
            f"{old_rcpu:.1f} s = {len(events) / (old_cpu + old_rcpu):,.0f} events per CPU-second"),
    ]
    print(render("streaming identity + record, one worker (one process, real Redis)", rows, baseline=baseline))
    for name, p in (("new source identities", worst), ("mix", mixed)):
        print(f"{name}: outcomes {dict(p.outcomes)}; identity step alone: worker CPU {p.id_cpu:.1f} s = "
              f"{p.id_cpu / p.n * 1000:.3f} ms/event, the record step and the bench's own checks the rest "
              f"({(p.cpu - p.id_cpu) / p.n * 1000:.3f} ms/event); returning people linked to their citizen: "
              f"{p.right:,}/{p.returning:,}; new people linked to an indexed citizen: {p.wrong_new:,}/{p.fresh:,}; "
              f"follow-ups given their patient's citizen: {p.follow_right:,}/{p.follow:,}")
    print(f"review queue {queue:,}; load average (1 min) at the start of the timed runs {load0:.1f}, at the end "
          f"{os.getloadavg()[0]:.1f}")
    print(f"index load: {args.citizens:,} citizens in {load_s:.0f} s (worker CPU {load_cpu:.0f} s, generating the "
          f"population included); Redis {memory:,.0f} MB. "
          "The machine is shared and noisy (load average above the core count): events per CPU-second "
          "and the ratio say more than wall-clock events/s.")


@dataclass
class Pass:
    """One timed run of the identity and record steps over a list of events, and what it linked."""

    n: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    redis_cpu: float = 0.0
    id_cpu: float = 0.0  # the identity step's own share of the worker's CPU
    latencies: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    citizens: list[str | None] = field(default_factory=list)  # each event's citizen (None: dead-lettered)
    right: int = 0
    returning: int = 0
    wrong_new: int = 0
    fresh: int = 0
    follow_right: int = 0
    follow: int = 0

    def row(self, name: str, indexed: int) -> Row:
        return Row(name, self.n, self.seconds,
                   {"batch p50 ms": percentile(self.latencies, 50) * 1000,
                    "batch p99 ms": percentile(self.latencies, 99) * 1000},
                   f"{indexed:,} indexed, batch {BATCH}; CPU: worker {self.cpu:.1f} s "
                   f"({self.cpu / self.n * 1000:.2f} ms/event) + Redis {self.redis_cpu:.1f} s = "
                   f"{self.n / (self.cpu + self.redis_cpu):,.0f} events per CPU-second")


Expected = str | None | tuple[str, str | None]  # a person id, None (not indexed), or ("follow", their citizen)


async def timed_pass(stage: IdentityStage, record: RecordStage, redis, pool: list[tuple[bytes, Expected]],
                     person_of: dict[str, str]) -> Pass:
    """The identity step then the record step (+ save_batch) on the same Redis, in batches, as a worker runs."""
    p = Pass(n=len(pool))
    cpu0, rcpu0 = time.process_time(), await redis_cpu(redis)
    started = time.perf_counter()
    for start in range(0, len(pool), BATCH):
        chunk = pool[start:start + BATCH]
        t0 = time.perf_counter()
        batch = [incoming(e, "events.canonical", start + i) for i, (e, _) in enumerate(chunk)]
        c0 = time.process_time()
        results = await stage.step(batch)
        p.id_cpu += time.process_time() - c0
        p.outcomes.update(stage._outcomes)  # the batch's own count (the stage replaces it per batch)
        citizen = [Incoming(o.key, o.value, {}, "events.citizen", 0, start + i, 0.0)
                   for i, r in enumerate(results) if not isinstance(r, Exception) for o in r]
        await record.step(citizen)
        await record.save_batch()
        p.latencies.append(time.perf_counter() - t0)
        for (_, expected), r in zip(chunk, results, strict=True):
            # The bench's check, cheap and not the worker's work.
            cid = None if isinstance(r, Exception) else orjson.loads(r[0].value)["citizen_id"]
            p.citizens.append(cid)
            if cid is None:
                continue  # counted in the stage's outcomes (dlq)
            if isinstance(expected, tuple):
                p.follow += 1
                p.follow_right += cid == expected[1]
            elif expected is not None:
                p.returning += 1
                p.right += person_of.get(cid) == expected
            else:
                p.fresh += 1
                p.wrong_new += cid in person_of
    p.seconds = time.perf_counter() - started
    p.cpu, p.redis_cpu = time.process_time() - cpu0, await redis_cpu(redis) - rcpu0
    return p


def follow_up(event_json: bytes, seq: int) -> bytes:
    """A later visit of the same patient at the same hospital: an encounter with the MRN the hospital linked."""
    e = Envelope.from_json(event_json)
    eid = event_id("bench", e.source.facility, f"F{seq}", "0")
    when = "2026-06-01T09:00:00+07:00"
    payload = {"resourceType": "Encounter", "id": eid, "status": "finished", "class": {"code": "AMB"},
               "period": {"start": when}}
    return replace(e, event_id=eid, type="encounter.recorded", occurred_at=when, recorded_at=when,
                   source=Source("bench", e.source.facility, f"F{seq}"), payload=payload).to_json()


def _interleave(fresh: list, follow: list) -> list:
    """Both lists in one, each spread evenly over it, in its own order."""
    total = len(fresh) + len(follow)
    if not fresh or not follow:
        return fresh + follow
    out, i, j = [], 0, 0
    for k in range(total):
        if j >= len(follow) or (i < len(fresh) and i * total <= k * len(fresh)):
            out.append(fresh[i])
            i += 1
        else:
            out.append(follow[j])
            j += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--citizens", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--new-share", type=float, default=0.15,
                        help="share of events from source identities not seen before in the mixed run (README "
                        "sizing: ~13 messages a citizen a year from 1-2 hospitals, each hospital's first new)")
    parser.add_argument("--cache", default="", help="folder keeping the loaded index (a Redis snapshot, ~2 GB at "
                        "1M citizens) and the events, so the next run with the same parameters skips the load")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
