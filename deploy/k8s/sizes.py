"""Measured sizes behind the README's capacity plan: bytes per raw message, events per message, bytes per
event on each topic, and one citizen's record after a year of visits, in JSON and in Redis.

    .venv/bin/python deploy/k8s/sizes.py [--redis-url redis://127.0.0.1:16379/0 [--mpi 5000]]

A "year of care" is an assumption written down here, not a measurement: 4 outpatient visits (ADT A04 + A08),
2 of them with a blood count (ORU^R01, 10 results), 1 prescription (RDE^O11), 1 vaccination (VXU^V04) and
1 admission with diagnoses, allergy and procedure (ADT^A01). Messages are the hub's own test corpus and
synthetic data, translated by the hub's own translator and applied by the hub's own record code. With
``--redis-url`` the record, its applied-event set, one identity link and one MLLP dedup marker are written
under scratch keys, sized with MEMORY USAGE and deleted again (use a scratch Redis, never production); with
``--mpi N`` also the streaming MPI's index for N citizens (that one flushes the database).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import zlib
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from connectors.hl7v2.translate import translate  # noqa: E402
from hub.record.apply import apply  # noqa: E402
from hub.synthetic import Person, adt, person  # noqa: E402
from hub.warehouse.plan import plan_events  # noqa: E402

CORPUS = ROOT / "tests" / "data" / "hl7" / "corpus"
RECEIVED_AT = "2026-12-01T10:00:00.000+07:00"
CITIZEN = "c-0000000000000000000000000000000000"  # a citizen id's length (36 characters)
PERSON = Person(cccd="079190123456", family="Nguyễn", middle="Thị", given="Hương", birth_date="19900215", sex="F",
                mrn="BN19900215", facility="79048", phone="0903555666")


def _unique(raw: bytes, n: int) -> bytes:
    """The message with its own MSH-10 (so its events get their own ids), as another facility's feed would."""
    msh, rest = raw.split(b"\r", 1)
    fields = msh.split(b"|")
    fields[9] += f"-{n}".encode()
    return b"|".join(fields) + b"\r" + rest


def year_of_care(p: Person, n: int) -> list[tuple[str, bytes]]:
    """(kind, message) for one citizen's year, in the order a feed would send them."""
    messages: list[tuple[str, bytes]] = []
    for visit in range(4):
        when = f"2026{3 * visit + 1:02d}10080000"
        messages.append(("ADT^A04", adt(p, "A04", f"SZ-{n}-{visit}-A04", visit=f"V-SZ-{n}-{visit}", when=when,
                                        patient_class="O")))
        messages.append(("ADT^A08", adt(p, "A08", f"SZ-{n}-{visit}-A08", visit=f"V-SZ-{n}-{visit}", when=when,
                                        patient_class="O", discharge=when)))
        if visit % 2 == 0:
            oru = (CORPUS / "oru_r01_cbc_10_obx.hl7").read_bytes()
            for order in (b"ORD-778812", b"LAB-20260203-0042"):  # each blood count its own order
                oru = oru.replace(order, order + f"-{n}-{visit}".encode())
            messages.append(("ORU^R01 (10 OBX)", _unique(oru, 10 * n + visit)))
    for kind, name in (("RDE^O11", "rde_o11_amoxicillin.hl7"), ("VXU^V04", "vxu_v04_covid_dose2.hl7"),
                       ("ADT^A01 (DG1, AL1, PR1)", "adt_a01_full_dg1_al1_pr1_obx_nk1.hl7")):
        messages.append((kind, _unique((CORPUS / name).read_bytes(), n)))
    return messages


def measure(citizens: int = 50) -> dict:
    """Sizes for citizen 0's year; compression over ``citizens`` different citizens' years in one batch (ids
    and values differ from citizen to citizen, as in a Kafka record batch of a real feed)."""
    by_kind: dict[str, dict] = {}
    record = None
    applied: list[str] = []
    citizen_event_bytes = change_bytes = 0
    raw_batch, event_batch = bytearray(), bytearray()
    rng = random.Random(1)
    for n in range(citizens):
        p = PERSON if n == 0 else person(rng, serial=n)
        for kind, raw in year_of_care(p, n):
            events = [e.with_citizen(f"{CITIZEN[:-6]}{n:06d}") for e in translate(raw, received_at=RECEIVED_AT)]
            raw_batch += raw
            for event in events:
                event_batch += event.to_json()
            if n:
                continue
            row = by_kind.setdefault(kind, {"messages": 0, "raw_bytes": 0, "events": 0, "event_bytes": 0})
            row["messages"] += 1
            row["raw_bytes"] += len(raw)
            row["events"] += len(events)
            row["event_bytes"] += sum(len(e.to_json()) for e in events)
            for event in events:
                citizen_event_bytes += len(event.to_json())
                record, changed = apply(record, event)
                applied.append(event.event_id)
                if changed:
                    change_bytes += len(event.to_json()) + 20  # + "record_version"
    record_json = orjson.dumps(record)
    _, plan = plan_events([e.with_citizen(CITIZEN).to_json() for _, raw in year_of_care(PERSON, 0)
                           for e in translate(raw, received_at=RECEIVED_AT)])
    return {"by_kind": by_kind, "record": record, "applied": applied, "citizen_event_bytes": citizen_event_bytes,
            "change_bytes": change_bytes, "citizens": citizens,
            "facts": {table: len(rows) for table, rows in plan.facts.items()},
            "gzip_events": len(event_batch) / len(zlib.compress(bytes(event_batch), 6)),
            "gzip_raw": len(raw_batch) / len(zlib.compress(bytes(raw_batch), 6)),
            "gzip_record": len(record_json) / len(zlib.compress(record_json, 6))}


async def redis_sizes(url: str, record: dict, applied: list[str]) -> dict[str, int]:
    import redis.asyncio as aioredis

    from connectors.mllp.dedup import message_key
    from hub.settings import DEV_PSEUDONYM_KEY

    client = aioredis.from_url(url)
    keys = {"record": "sizes:record:" + CITIZEN, "applied events": "sizes:record:" + CITIZEN + ":events",
            "identity link": "sizes:" + "0" * 43, "MLLP dedup marker": "sizes:" + message_key(
                DEV_PSEUDONYM_KEY.encode(), "HIS", "79048", "SZ-0-A04")}
    try:
        await client.set(keys["record"], orjson.dumps(record))
        await client.sadd(keys["applied events"], *applied)
        await client.set(keys["identity link"], CITIZEN)
        await client.set(keys["MLLP dedup marker"], "c|" + "0" * 64, ex=7 * 24 * 3600)
        return {name: int(await client.memory_usage(key, samples=0)) for name, key in keys.items()}
    finally:
        await client.delete(*keys.values())
        await client.aclose()


async def mpi_bytes_per_citizen(url: str, citizens: int) -> float:
    """The streaming MPI's Redis index (links, blocking keys, prepared records) per citizen with one source
    record each, from INFO used_memory before and after resolving their patient events. Needs an EMPTY Redis:
    it is flushed before and after."""
    import redis.asyncio as aioredis

    from hub.identity.mpi_store import RedisMpiStore
    from hub.identity.resolve import Resolver
    from hub.settings import DEV_PSEUDONYM_KEY

    client = aioredis.from_url(url)
    try:
        await client.flushdb()
        before = int((await client.info("memory"))["used_memory"])
        resolver = Resolver(RedisMpiStore(client), DEV_PSEUDONYM_KEY.encode())
        rng = random.Random(5)
        events = [e for n in range(citizens) for e in translate(
            adt(person(rng, serial=n), "A04", f"MPI-{n}", patient_class="O"), received_at=RECEIVED_AT)
            if e.type == "patient.updated"]
        for start in range(0, len(events), 500):  # the identity stage's batch size
            await resolver.resolve(events[start:start + 500])
        return (int((await client.info("memory"))["used_memory"]) - before) / citizens
    finally:
        await client.flushdb()
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", help="a test Redis to size the keys in (scratch keys, deleted after)")
    parser.add_argument("--mpi", type=int, default=0, metavar="N",
                        help="also size the MPI index for N citizens (FLUSHES the --redis-url database)")
    args = parser.parse_args()
    m = measure()
    print(f"{'message':<26}{'msgs':>5}{'raw B/msg':>11}{'events/msg':>12}{'B/event':>9}")
    for kind, row in m["by_kind"].items():
        print(f"{kind:<26}{row['messages']:>5}{row['raw_bytes'] / row['messages']:>11.0f}"
              f"{row['events'] / row['messages']:>12.1f}{row['event_bytes'] / max(row['events'], 1):>9.0f}")
    total = {k: sum(r[k] for r in m["by_kind"].values()) for k in ("messages", "raw_bytes", "events")}
    print(f"year of care: {total['messages']} messages, {total['raw_bytes']:,} raw bytes, {total['events']} events, "
          f"{m['citizen_event_bytes']:,} bytes on events.citizen, {m['change_bytes']:,} on record.changes")
    print(f"gzip (zlib 6) over {m['citizens']} citizens' years in one batch: events {m['gzip_events']:.1f}x, raw HL7 "
          f"{m['gzip_raw']:.1f}x; one record {m['gzip_record']:.1f}x (zstd, the brokers' codec, does about as well)")
    print(f"warehouse rows of the year: {m['facts']} ({sum(m['facts'].values())} facts)")
    print(f"record after the year: {len(orjson.dumps(m['record'])):,} bytes of JSON, {len(m['applied'])} applied event ids")
    if args.redis_url:
        for name, size in asyncio.run(redis_sizes(args.redis_url, m["record"], m["applied"])).items():
            print(f"redis MEMORY USAGE {name:<20}{size:>8,} bytes")
    if args.redis_url and args.mpi:
        per = asyncio.run(mpi_bytes_per_citizen(args.redis_url, args.mpi))
        print(f"redis MPI index, {args.mpi:,} citizens with one record each: {per:,.0f} bytes per citizen")


if __name__ == "__main__":
    main()
