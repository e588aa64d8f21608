"""Warehouse write benchmark: facts per second into real PostgreSQL, batched writer against row-at-a-time.

    .venv/bin/python -m bench.warehouse [--citizens 2000] [--batch 500] [--keep]

Synthetic canonical events with the shape the translator produces (per citizen: a Patient, an Encounter,
2 Conditions, an Immunization, 4 Observations, a MedicationRequest, a MedicationDispense and a Procedure:
11 facts + 1 citizen row), cut into batches of ``--batch`` events as the stage consumes them. Every variant
writes the same batches into freshly truncated tables of one database, in the same run:

- ``batched``: hub.warehouse.writer.Warehouse.write, what the role uses (per table one
  INSERT ... SELECT FROM json_populate_recordset(the batch as one JSON parameter) ... ON CONFLICT; one
  transaction per batch);
- ``batched, COPY + temp table``: Warehouse.write_copy (binary COPY into ON COMMIT DELETE ROWS temp tables,
  then the same INSERT ... SELECT ... ON CONFLICT);
- ``batched, stage path``: the same plus plan_events (JSON -> rows) per batch, i.e. what the role does;
- ``batched, replay``: the same batches again onto the filled tables (every row conflicts and is skipped);
- ``row-at-a-time``: Warehouse.write_row_at_a_time, the same upserts one INSERT per row (one round trip
  each), also one transaction per batch: the obvious baseline with the same driver (asyncpg).

One untimed pass of every batch goes first (then the tables are truncated), so no variant pays for a cold
server. PostgreSQL is the bench stack's (bench/stack.py: .hub-bench, port 35432), started through
deploy/local/postgres.sh and stopped afterwards unless it was already running or ``--keep`` is given.
Target (issue 7): >= 20,000 facts/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from bench.stack import BENCH_ENV
from hub.envelope import Envelope, Source, Subject
from hub.settings import REPO_ROOT, Settings
from hub.warehouse.plan import Plan, plan_events
from hub.warehouse.writer import Warehouse

POSTGRES_SH = REPO_ROOT / "deploy" / "local" / "postgres.sh"
BENCH_DB = "warehouse_bench"
TARGET = 20_000
FACT_TABLES = ("fact_encounter", "fact_diagnosis", "fact_immunization", "fact_observation", "fact_medication",
               "fact_procedure")
WARDS = ("Phường Bến Thành", "Phường Sài Gòn", "Phường Chợ Lớn", "Phường Tân Định")


def _event(i: int, n: int, type_: str, payload: dict[str, Any], cid: str) -> bytes:
    return Envelope(event_id=f"bench-{i}-{n}", type=type_, occurred_at="2026-11-22T08:25:00+07:00",
                    recorded_at="2026-11-22T08:25:01+07:00", source=Source("hl7v2", f"790{i % 50:02d}", f"M{i}"),
                    subject=Subject(), payload=payload, citizen_id=cid).to_json()


def citizen_events(i: int) -> list[bytes]:
    """One citizen's events: 11 facts and a Patient."""
    cid, enc = f"bench-c-{i:07d}", {"reference": f"Encounter/e-{i}"}
    coded = lambda system, code, display: {"coding": [{"system": system, "code": code, "display": display}]}  # noqa: E731
    events = [
        ("patient.updated", {"resourceType": "Patient", "id": f"p-{i}", "gender": ("male", "female")[i % 2],
                             "birthDate": f"{1940 + i % 80}-05-12",
                             "address": [{"use": "home", "line": ["12 Lê Lợi", WARDS[i % 4]], "city": "Hồ Chí Minh"}]}),
        ("encounter.recorded", {"resourceType": "Encounter", "id": f"e-{i}", "status": "finished",
                                "class": {"code": "IMP"}, "period": {"start": "2026-11-22T08:25:00+07:00",
                                                                     "end": "2026-11-24T10:00:00+07:00"}}),
        *[("condition.recorded", {"resourceType": "Condition", "id": f"c-{i}-{k}", "encounter": enc,
                                  "clinicalStatus": coded(None, "active", None),
                                  "code": coded("http://hl7.org/fhir/sid/icd-10", code, display),
                                  "recordedDate": "2026-11-22T09:10:00+07:00"})
          for k, (code, display) in enumerate((("J18.9", "Viêm phổi, không đặc hiệu"),
                                               ("E11.9", "Đái tháo đường típ 2 không biến chứng")))],
        ("immunization.recorded", {"resourceType": "Immunization", "id": f"i-{i}", "status": "completed",
                                   "vaccineCode": coded("http://hl7.org/fhir/sid/cvx", "208", "COVID-19, mRNA"),
                                   "occurrenceDateTime": "2026-03-01T08:30:00+07:00",
                                   "protocolApplied": [{"doseNumberPositiveInt": 2}]}),
        *[("observation.recorded", {"resourceType": "Observation", "id": f"o-{i}-{k}", "status": "final",
                                    "encounter": enc, "code": coded("http://loinc.org", code, display),
                                    "effectiveDateTime": "2026-11-22T10:00:00+07:00",
                                    "valueQuantity": {"value": 4.2 + k + i % 7, "unit": unit}})
          for k, (code, display, unit) in enumerate((("2093-3", "Cholesterol toàn phần", "mmol/L"),
                                                     ("2571-8", "Triglycerid", "mmol/L"),
                                                     ("8302-2", "Chiều cao", "cm"), ("29463-7", "Cân nặng", "kg")))],
        ("medication.recorded", {"resourceType": "MedicationRequest", "id": f"rx-{i}", "status": "active",
                                 "intent": "order", "encounter": enc, "authoredOn": "2026-11-22T11:55:00+07:00",
                                 "medicationCodeableConcept": coded("http://www.whocc.no/atc", "J01CA04",
                                                                    "Amoxicillin 500mg")}),
        ("medication.recorded", {"resourceType": "MedicationDispense", "id": f"md-{i}", "status": "completed",
                                 "context": enc, "whenHandedOver": "2026-11-22T12:55:00+07:00",
                                 "quantity": {"value": 14, "unit": "CAP"},
                                 "medicationCodeableConcept": coded("http://www.whocc.no/atc", "J01CA04", None)}),
        ("procedure.recorded", {"resourceType": "Procedure", "id": f"pr-{i}", "status": "completed",
                                "encounter": enc, "performedDateTime": "2026-11-22T09:14:00+07:00",
                                "code": coded("http://hl7.org/fhir/sid/icd-9-cm", "89.52", "Điện tâm đồ")}),
    ]
    return [_event(i, n, t, p, cid) for n, (t, p) in enumerate(events)]


async def _reset(conn: asyncpg.Connection) -> None:
    await conn.execute(f"TRUNCATE {', '.join(FACT_TABLES)}, dim_citizen, dim_facility, citizen_merge")


async def _timed(label: str, batches: list[Any], write: Callable[[Any], Awaitable[None]], facts: int,
                 rows: list[tuple[str, int, float]]) -> None:
    t0 = time.perf_counter()
    for batch in batches:
        await write(batch)
    rows.append((label, facts, time.perf_counter() - t0))


def render(rows: list[tuple[str, int, float]], baseline: str, batch: int) -> str:
    base = next(n / s for name, n, s in rows if name == baseline)
    head = ["writer", "facts", "seconds", "facts/s", "ratio"]
    lines = [[name, f"{n:,}", f"{s:.2f}", f"{n / s:,.0f}", f"{n / s / base:.1f}x"] for name, n, s in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [f"warehouse writes (batches of {batch} events, one transaction each; target >= {TARGET:,} facts/s)",
           f"conditions: {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores, "
           f"{platform.machine()}, PostgreSQL on loopback (asyncpg), fsync on",
           fmt.format(*head), fmt.format(*("-" * w for w in widths)), *(fmt.format(*line) for line in lines),
           f"ratio: facts/s relative to '{baseline}' in the same run"]
    return "\n".join(out)


async def run(settings: Settings, citizens: int, batch: int) -> str:
    admin = await asyncpg.connect(settings.pg_dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")
        await admin.execute(f"CREATE DATABASE {BENCH_DB}")
    finally:
        await admin.close()
    warehouse = await Warehouse.connect(settings.pg_dsn.rsplit("/", 1)[0] + f"/{BENCH_DB}")
    try:
        await warehouse.migrate()
        events = [e for i in range(citizens) for e in citizen_events(i)]
        raw_batches = [events[k:k + batch] for k in range(0, len(events), batch)]
        plans: list[Plan] = [plan_events(b)[1] for b in raw_batches]
        facts = sum(p.fact_count for p in plans)
        rows: list[tuple[str, int, float]] = []

        async def stage_path(values: list[bytes]) -> None:
            await warehouse.write(plan_events(values)[1])

        for plan in plans:  # warm-up, untimed
            await warehouse.write(plan)
        await _reset(warehouse.conn)
        await _timed("batched", plans, warehouse.write, facts, rows)
        await _timed("batched, replay", plans, warehouse.write, facts, rows)
        await _reset(warehouse.conn)
        await _timed("batched, COPY + temp table", plans, warehouse.write_copy, facts, rows)
        await _reset(warehouse.conn)
        await _timed("batched, stage path", raw_batches, stage_path, facts, rows)
        await _reset(warehouse.conn)
        await _timed("row-at-a-time", plans, warehouse.write_row_at_a_time, facts, rows)
        counted = sum([await warehouse.conn.fetchval(f"SELECT count(*) FROM {t}") for t in FACT_TABLES])
        assert counted == facts, (counted, facts)
        return render(rows, "row-at-a-time", batch)
    finally:
        await warehouse.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--citizens", type=int, default=2000, help="synthetic citizens (11 facts each)")
    parser.add_argument("--batch", type=int, default=500, help="events per batch (the stage's BATCH_SIZE)")
    parser.add_argument("--keep", action="store_true", help="leave the bench PostgreSQL running afterwards")
    args = parser.parse_args()
    env = {**os.environ, **BENCH_ENV}
    status = subprocess.run(["bash", str(POSTGRES_SH), "status"], env=env, capture_output=True, text=True).stdout
    started = " up " not in status
    if started:
        subprocess.run(["bash", str(POSTGRES_SH), "start"], env=env, check=True, stdout=subprocess.DEVNULL)
    try:
        print(asyncio.run(run(Settings.from_env(env), args.citizens, args.batch)))
    finally:
        if started and not args.keep:
            subprocess.run(["bash", str(POSTGRES_SH), "stop"], env=env, check=False, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
