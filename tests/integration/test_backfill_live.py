"""``hub backfill`` on the real stack (Kafka, Redis, the identity and record roles as their own processes).

A small generated registry export with Vietnamese names goes through the command; what the identity role
decided is read back from events.citizen and the records from Redis.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from connectors.registry import COLUMNS
from hub.envelope import SYSTEM_CCCD, Envelope, Identifier, Source, Subject, mrn_system
from hub.identity import population
from hub.identity.evaluate import pairwise, read_mapping
from hub.identity.records import SourceRecord, prepare
from hub.settings import Settings
from hub.topics import EVENTS_CITIZEN
from tests.conftest import hub_cli
from tests.integration.kafka_tools import read_until
from tests.integration.test_identity_mpi_live import publish, resolved

pytestmark = pytest.mark.integration
ROWS = 400


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> tuple[Path, Path]:
    """A generated export whose record ids are this run's own (event ids derive from them)."""
    folder = tmp_path_factory.mktemp("backfill")
    gen, gen_truth = folder / "gen.csv", folder / "gen-truth.csv"
    seed = random.randrange(1_000_000)
    population.write_files(ROWS, gen, gen_truth, seed=seed)
    tag = f"BF{seed:06d}-"
    out, truth = folder / "registry.csv", folder / "truth.csv"
    with open(gen, encoding="utf-8", newline="") as src, open(out, "w", encoding="utf-8", newline="") as dst:
        w = csv.writer(dst, lineterminator="\r\n")
        for i, row in enumerate(csv.reader(src)):
            w.writerow(row if i == 0 else [tag + row[0], *row[1:]])
    with open(gen_truth, encoding="utf-8", newline="") as src, open(truth, "w", encoding="utf-8", newline="") as dst:
        w = csv.writer(dst, lineterminator="\n")
        for i, row in enumerate(csv.reader(src)):
            w.writerow(row if i == 0 else [tag + row[0], row[1]])
    return out, truth


async def decided(settings: Settings, record_ids: set[str], copies: int = 1) -> dict[str, set[str]]:
    """record_id -> the citizen ids the identity role gave its Patient events (``copies`` imports of each)."""
    def found(records) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r in records:
            doc = orjson.loads(r.value)
            rid = doc["source"]["message_id"]
            if rid in record_ids and doc["type"] == "patient.updated":
                out.setdefault(rid, []).append(doc["citizen_id"])
        return out

    def done(records) -> bool:
        got = found(records)
        return len(got) == len(record_ids) and all(len(v) >= copies for v in got.values())

    records = await read_until(settings, EVENTS_CITIZEN.name, done, timeout_s=120)
    return {rid: set(cids) for rid, cids in found(records).items()}


async def records_of(settings: Settings, citizens: set[str]) -> dict[str, bytes | None]:
    client = aioredis.from_url(settings.redis_url)
    try:
        keys = sorted(citizens)
        return dict(zip(keys, await client.mget([f"record:{c}" for c in keys]), strict=True))
    finally:
        await client.aclose()


async def test_backfill_citizens_are_the_clusters_a_rerun_changes_nothing_and_live_events_link(
        hub_stack: Settings, export: tuple[Path, Path], tmp_path: Path) -> None:
    csv_path, truth = export
    plan_file = tmp_path / "plan.csv"
    first = hub_cli("backfill", "--input", str(csv_path), "--output", str(plan_file), "--wait", "180", timeout=400)
    assert "citizens" in first.stderr and f"{ROWS:,} rows" in first.stderr
    plan = read_mapping(plan_file)
    assert len(plan) == ROWS
    scores = pairwise(plan, read_mapping(truth))  # ~140 true pairs: one wrong pair moves P by 0.007
    assert scores.precision >= 0.95 and scores.recall >= 0.95

    # the identity role took every row's citizen from the seeded MPI: the clusters, as planned
    got = await decided(hub_stack, set(plan))
    assert {rid: next(iter(c)) for rid, c in got.items()} == plan
    citizens = set(plan.values())
    before = await records_of(hub_stack, citizens)
    assert all(before.values()), "every planned citizen has a record"
    assert all(b'"immunizations"' in doc for doc in before.values())  # built from the imported events

    # a rerun reuses the saved plan, publishes the same events again and changes no record
    again = hub_cli("backfill", "--input", str(csv_path), "--wait", "180", timeout=400)
    assert "saved plan" in again.stderr
    got = await decided(hub_stack, set(plan), copies=2)
    assert all(c == {plan[rid]} for rid, c in got.items())
    assert await records_of(hub_stack, citizens) == before

    # weeks later a hospital sends an ADT for a backfilled person: own MRN, the person's CCCD (and a sex: the
    # generator's error model leaves some rows without one, and the export's seed is new every run)
    rid, p = next((rid, p) for rid, p in ((rid, _prepared(rid, row)) for rid, row in _rows(csv_path).items())
                  if p.cccd and p.cccd_ok and p.dob8 and p.sex in ("M", "F") and not p.infant)
    words = _rows(csv_path)[rid][1].split()
    dob, sex = f"{p.year:04d}-{p.month:02d}-{p.day:02d}", {"M": "male", "F": "female"}[p.sex]
    idents = (Identifier(mrn_system("79048"), f"BN{random.randrange(10**7):07d}"), Identifier(SYSTEM_CCCD, p.cccd))
    eid = f"backfill-live-{rid}"
    live = Envelope(eid, "patient.updated", "2026-11-30T09:00:00+07:00", "2026-11-30T09:00:01+07:00",
                    Source("hl7v2", "79048", eid), Subject(idents, words[0], tuple(words[1:]), dob, sex),
                    {"resourceType": "Patient", "identifier": [{"system": i.system, "value": i.value} for i in idents]})
    await publish(hub_stack, [live])
    assert (await resolved(hub_stack, [live], timeout_s=120))[eid] == plan[rid]


def test_backfill_of_a_file_that_is_not_a_registry_export_says_so(hub_stack: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "not-registry.csv"
    bad.write_text("ma_lk,ho_ten\n1,Nguyễn Văn A\n", encoding="utf-8")
    proc = hub_cli("backfill", "--input", str(bad), check=False)
    assert proc.returncode == 2 and "header is not the vaccination registry's" in proc.stderr
    assert "Nguyễn" not in proc.stderr


def _rows(path: Path) -> dict[str, list[str]]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        assert tuple(next(reader)) == COLUMNS
        return {row[0]: row for row in reader}


def _prepared(rid: str, row: list[str]):
    return prepare(SourceRecord(rid, row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[14],
                                event_date=row[13]))
