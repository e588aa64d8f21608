"""The warehouse on the real stack: HL7 v2 over MLLP -> Kafka -> translate -> identity -> events.citizen ->
role ``warehouse`` -> real PostgreSQL (started by ``hub up`` through deploy/local/stack.sh).

The role runs as its own process, started and stopped here (``python -m hub.stream.warehouse``), unless ``hub up``
already runs it."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
from typing import AsyncIterator, Iterator

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from connectors.mllp.sender import send_messages
from hub.envelope import Envelope, Source, Subject
from hub.ops import lag as lag_
from hub.ops import local
from hub.ops.status import _admin, group_is_stable
from hub.settings import REPO_ROOT, Settings
from hub.synthetic import WARDS, Person, adt
from hub.topics import DLQ, EVENTS_CITIZEN, HL7V2_RAW
from hub.warehouse.migrate import discover, migrate
from tests.conftest import TEST_ENV
from tests.integration.kafka_tools import read_until, wait_until_idle
from tests.integration.test_thin_path import citizen_of

pytestmark = pytest.mark.integration

GROUP = lag_.group_of("warehouse")
TABLES = ("dim_citizen", "dim_facility", "citizen_merge", "fact_encounter", "fact_diagnosis", "fact_immunization",
          "fact_observation", "fact_medication", "fact_procedure", "schema_version")

THU = Person(cccd="079196007788", family="Phạm", middle="Ngọc Anh", given="Thư", birth_date="19960718", sex="F",
             mrn="BN-WH-THU", facility="79015", phone="0977123456")
DUNG = Person(cccd="079072008899", family="Võ", middle="Tấn", given="Dũng", birth_date="19720101", sex="M",
              mrn="BN-WH-DUNG", facility="79001", phone="0909888777")
KHOA = Person(cccd="079201009911", family="Huỳnh", middle="Đăng", given="Khoa", birth_date="20011231", sex="M",
              mrn="BN-WH-KHOA", facility="79048", phone="0933444555")


@pytest.fixture(scope="module")
def warehouse_role(hub_stack: Settings) -> Iterator[Settings]:
    """The warehouse role as its own process for this module (none is started if ``hub up`` runs one)."""
    proc = None
    if local.role_pid(hub_stack, "warehouse") is None:
        log_path = hub_stack.state_dir / "logs" / "warehouse-test.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "hub.stream.warehouse"], stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO_ROOT,
                                    env={**os.environ, **TEST_ENV}, start_new_session=True)
    try:
        asyncio.run(_wait_stable(hub_stack, proc))
        yield hub_stack
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _wait_stable(settings: Settings, proc: subprocess.Popen[bytes] | None, timeout_s: float = 90.0) -> None:
    admin = await _admin(settings)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        while not await group_is_stable(admin, GROUP):
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"the warehouse role exited with {proc.returncode}; see logs/warehouse-test.log")
            if loop.time() > deadline:
                raise AssertionError(f"the warehouse role did not join {GROUP} within {timeout_s} s")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


@pytest.fixture
async def db(warehouse_role: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(warehouse_role.pg_dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def warehouse_idle(settings: Settings, timeout_s: float = 60.0) -> None:
    """Every stage, the warehouse included, has committed everything it reads."""
    await wait_until_idle(settings, timeout_s)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        rows = await lag_.measure(settings, [GROUP], seconds=False)
        if rows and all(r.lag == 0 for r in rows):
            return
        if loop.time() > deadline:
            raise AssertionError(f"warehouse still behind: {[(r.partition, r.lag) for r in rows]}")
        await asyncio.sleep(0.2)


async def snapshot(db: asyncpg.Connection) -> dict[str, list[dict]]:
    """Every row of every warehouse table, with xmin: a row rewritten with equal values still shows."""
    return {t: [dict(r) for r in await db.fetch(f"SELECT xmin::text AS xmin, * FROM {t} ORDER BY 2")] for t in TABLES}


async def publish(settings: Settings, topic: str, items: list[tuple[bytes, bytes]],
                  headers: list[tuple[str, bytes]] | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in items:
            await producer.send_and_wait(topic, value, key=key, headers=headers or [])
    finally:
        await producer.stop()


def citizen_event(type_: str, citizen_id: str, event_id: str, payload: dict, *, facility: str = "79048",
                  occurred_at: str = "2026-11-23T10:00:00+07:00",
                  sensitivity: tuple[str, ...] = (), member_id: str | None = None) -> tuple[bytes, bytes]:
    """An event as the identity stage would put it on events.citizen."""
    event = Envelope(event_id=event_id, type=type_, occurred_at=occurred_at, recorded_at=occurred_at,
                     source=Source("hl7v2", facility, event_id), subject=Subject(), payload=payload,
                     sensitivity=sensitivity, citizen_id=citizen_id, member_id=member_id)
    return citizen_id.encode(), event.to_json()


async def wait_for(db: asyncpg.Connection, sql: str, *args: object, timeout_s: float = 60.0) -> list[asyncpg.Record]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            rows = await db.fetch(sql, *args)
        except asyncpg.UndefinedTableError:  # the role has not migrated yet
            rows = []
        if rows:
            return rows
        if loop.time() > deadline:
            raise AssertionError(f"no rows within {timeout_s} s for: {sql}")
        await asyncio.sleep(0.2)


async def test_an_admission_and_its_discharge_become_warehouse_rows(warehouse_role: Settings,
                                                                   db: asyncpg.Connection) -> None:
    settings = warehouse_role
    admit = adt(THU, "A01", "WH-0001", visit="WH-V-1", when="20261122082500")
    results = await send_messages(settings.mllp_host, settings.mllp_port, [admit])
    assert [r.code for r in results] == ["AA"]
    cid = None
    for _ in range(300):
        cid = await citizen_of(settings, THU.cccd)
        if cid:
            break
        await asyncio.sleep(0.2)
    assert cid
    [enc] = await wait_for(db, "SELECT * FROM fact_encounter WHERE citizen_id = $1", cid)
    assert (enc["class_code"], enc["status"], enc["facility_code"]) == ("IMP", "in-progress", "79015")
    assert enc["period_start"].isoformat() == "2026-11-22T01:25:00+00:00" and enc["period_end"] is None
    [citizen] = await wait_for(db, "SELECT * FROM dim_citizen WHERE citizen_id = $1 AND event_id IS NOT NULL", cid)
    assert (citizen["birth_year"], citizen["sex"], citizen["province"]) == (1996, "female", "Hồ Chí Minh")
    assert citizen["ward"] in WARDS and citizen["merged_into"] is None
    assert await db.fetchval("SELECT count(*) FROM dim_facility WHERE facility_code = '79015'") == 1

    discharge = adt(THU, "A08", "WH-0002", visit="WH-V-1", when="20261122165500", discharge="20261122163000")
    assert [r.code for r in await send_messages(settings.mllp_host, settings.mllp_port, [discharge])] == ["AA"]
    [enc] = await wait_for(db, "SELECT * FROM fact_encounter WHERE citizen_id = $1 AND status = 'finished'", cid)
    assert enc["period_end"].isoformat() == "2026-11-22T09:30:00+00:00"
    assert await db.fetchval("SELECT count(*) FROM fact_encounter WHERE citizen_id = $1", cid) == 1


async def test_no_name_cccd_phone_or_mrn_anywhere_in_the_warehouse(warehouse_role: Settings,
                                                                  db: asyncpg.Connection) -> None:
    settings = warehouse_role
    message = adt(DUNG, "A04", "WH-0101", visit="WH-V-2", when="20261123090000", patient_class="O")
    assert [r.code for r in await send_messages(settings.mllp_host, settings.mllp_port, [message])] == ["AA"]
    await warehouse_idle(settings)
    cid = await citizen_of(settings, DUNG.cccd)
    await wait_for(db, "SELECT 1 FROM fact_encounter WHERE citizen_id = $1 AND class_code = 'AMB'", cid)
    dump = "\n".join([str(r[0]) for t in TABLES for r in await db.fetch(f"SELECT row_to_json(t)::text FROM {t} t")])
    for person in (THU, DUNG):
        for personal in (person.cccd, person.phone, person.mrn, person.family, person.given, person.middle,
                         person.full_name, "Lê Lợi"):
            assert personal not in dump, personal


async def test_a_replayed_message_changes_nothing(warehouse_role: Settings, db: asyncpg.Connection) -> None:
    """The same raw message again on hl7v2.raw: same events, same rows, not even rewritten (same xmin)."""
    settings = warehouse_role
    message = adt(KHOA, "A01", "WH-0201", visit="WH-V-3", when="20261124070000")
    assert [r.code for r in await send_messages(settings.mllp_host, settings.mllp_port, [message])] == ["AA"]
    await warehouse_idle(settings)
    cid = await citizen_of(settings, KHOA.cccd)
    await wait_for(db, "SELECT 1 FROM fact_encounter WHERE citizen_id = $1", cid)
    before = await snapshot(db)

    raw = await read_until(settings, HL7V2_RAW.name, lambda recs: any(r.value == message for r in recs), timeout_s=30)
    original = next(r for r in raw if r.value == message)
    await publish(settings, HL7V2_RAW.name, [(original.key, message)], list(original.headers))
    await warehouse_idle(settings)
    assert await snapshot(db) == before


async def test_migrations_applied_twice_are_a_no_op(warehouse_role: Settings, db: asyncpg.Connection) -> None:
    before = [dict(r) for r in await db.fetch("SELECT * FROM schema_version ORDER BY version")]
    assert [r["version"] for r in before] == [m.version for m in discover()]  # applied once, by the role at start
    assert await migrate(db) == []
    assert await migrate(db) == []
    assert [dict(r) for r in await db.fetch("SELECT * FROM schema_version ORDER BY version")] == before


async def test_a_merge_repoints_facts_to_the_surviving_citizen(warehouse_role: Settings,
                                                              db: asyncpg.Connection) -> None:
    """citizen.merged moves the retired citizen's facts to the survivor; later facts for the retired id land on
    the survivor too; the merge replayed changes nothing."""
    settings = warehouse_role
    survivor, retired = "wh-test-survivor-01", "wh-test-retired-01"
    condition = {"resourceType": "Condition", "id": "wh-cond-1", "clinicalStatus": {"coding": [{"code": "active"}]},
                 "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11.9",
                                      "display": "Đái tháo đường típ 2 không biến chứng"}]}}
    vaccine = {"resourceType": "Immunization", "id": "wh-imm-1", "status": "completed",
               "vaccineCode": {"coding": [{"code": "208"}]}, "occurrenceDateTime": "2026-03-01T08:30:00+07:00"}
    await publish(settings, EVENTS_CITIZEN.name, [
        citizen_event("condition.recorded", retired, "wh-ev-cond-1", condition),
        citizen_event("immunization.recorded", survivor, "wh-ev-imm-1", vaccine),
    ])
    await wait_for(db, "SELECT 1 FROM fact_diagnosis WHERE resource_id = 'wh-cond-1' AND citizen_id = $1", retired)

    merge = citizen_event("citizen.merged", survivor, "wh-ev-merge-1", {
        "resourceType": "Patient", "id": survivor,
        "link": [{"type": "replaces", "other": {"reference": f"Patient/{retired}"}}]})
    await publish(settings, EVENTS_CITIZEN.name, [merge])
    await wait_for(db, "SELECT 1 FROM fact_diagnosis WHERE resource_id = 'wh-cond-1' AND citizen_id = $1", survivor)
    assert await db.fetchval("SELECT merged_into FROM dim_citizen WHERE citizen_id = $1", retired) == survivor
    assert await db.fetchval("SELECT survivor_id FROM citizen_merge WHERE retired_id = $1", retired) == survivor

    late = {"resourceType": "Procedure", "id": "wh-proc-1", "status": "completed",
            "code": {"coding": [{"code": "89.52", "display": "Điện tâm đồ"}]}}
    await publish(settings, EVENTS_CITIZEN.name, [citizen_event("procedure.recorded", retired, "wh-ev-proc-1", late)])
    [proc] = await wait_for(db, "SELECT citizen_id FROM fact_procedure WHERE resource_id = 'wh-proc-1'")
    assert proc["citizen_id"] == survivor
    assert await db.fetchval("SELECT count(*) FROM fact_diagnosis WHERE citizen_id = $1", retired) == 0

    await warehouse_idle(settings)
    before = await snapshot(db)
    await publish(settings, EVENTS_CITIZEN.name, [merge])
    await warehouse_idle(settings)
    assert await snapshot(db) == before


async def test_an_event_the_warehouse_cannot_map_goes_to_the_dlq(warehouse_role: Settings) -> None:
    settings = warehouse_role
    key, value = citizen_event("encounter.recorded", "wh-test-dlq-01", "wh-ev-dlq-1",
                               {"resourceType": "Encounter", "status": "finished"})  # no resource id
    await publish(settings, EVENTS_CITIZEN.name, [(key, value)])

    def ours(recs: list) -> list[dict]:
        letters = [orjson.loads(r.value) for r in recs]
        return [d for d in letters if d["stage"] == "warehouse" and d["source_topic"] == EVENTS_CITIZEN.name
                and "wh-ev-dlq-1" in base64.b64decode(d["original"]).decode()]

    recs = await read_until(settings, DLQ.name, lambda rs: bool(ours(rs)), timeout_s=60)
    [letter] = ours(recs)
    assert letter["code"] == "warehouse" and "resource id" in letter["reason"]


async def test_the_three_writers_store_the_same_rows_for_every_resource_type(warehouse_role: Settings,
                                                                            db: asyncpg.Connection) -> None:
    """Every fact table, a sensitivity flag, numbers, booleans, partial dates: the batched (JSON) writer, the
    COPY writer and the row-at-a-time baseline leave identical tables, each in a database of its own."""
    from bench.warehouse import citizen_events
    from hub.warehouse.plan import plan_events
    from hub.warehouse.writer import Warehouse

    hiv = citizen_event("condition.recorded", "bench-c-0000001", "wh-ev-hiv", {
        "resourceType": "Condition", "id": "wh-hiv-1", "code": {"coding": [{"code": "B24"}]},
        "onsetDateTime": "2019"}, sensitivity=("hiv",))[1]
    _, plan = plan_events([*citizen_events(0), *citizen_events(1), hiv], entitled=frozenset({"hiv"}))
    assert plan.fact_count == 23
    base = warehouse_role.pg_dsn.rsplit("/", 1)[0]
    tables = {}
    for how in ("write", "write_copy", "write_row_at_a_time"):
        name = f"wh_writer_{how}"
        await db.execute(f"DROP DATABASE IF EXISTS {name}")
        await db.execute(f"CREATE DATABASE {name}")
        warehouse = await Warehouse.connect(f"{base}/{name}")
        try:
            await warehouse.migrate()
            await getattr(warehouse, how)(plan)
            tables[how] = {t: [dict(r) for r in await warehouse.conn.fetch(
                f"SELECT * FROM {t} ORDER BY 1")] for t in TABLES if t != "schema_version"}
        finally:
            await warehouse.close()
            await db.execute(f"DROP DATABASE {name}")
    for rows in tables.values():
        for t in rows.values():
            for row in t:
                row.pop("loaded_at", None)
    assert tables["write"] == tables["write_copy"] == tables["write_row_at_a_time"]
    got = tables["write"]
    assert [len(got[t]) for t in ("fact_encounter", "fact_diagnosis", "fact_immunization", "fact_observation",
                                  "fact_medication", "fact_procedure")] == [2, 5, 2, 8, 4, 2]
    [flagged] = [r for r in got["fact_diagnosis"] if r["resource_id"] == "wh-hiv-1"]
    assert flagged["sensitivity"] == ["hiv"] and flagged["onset_at"].isoformat() == "2018-12-31T17:00:00+00:00"
    [dim] = [r for r in got["dim_citizen"] if r["citizen_id"] == "bench-c-0000001"]
    assert (dim["birth_year"], dim["sex"], dim["ward"]) == (1941, "female", "Phường Sài Gòn")
    obs = {r["code"]: r["value_num"] for r in got["fact_observation"] if r["citizen_id"] == "bench-c-0000000"}
    assert obs == {"2093-3": 4.2, "2571-8": 5.2, "8302-2": 6.2, "29463-7": 7.2}


async def test_an_hiv_flagged_diagnosis_is_withheld_from_the_warehouse(warehouse_role: Settings,
                                                                      db: asyncpg.Connection) -> None:
    """Not entitled by default: the flagged event is consumed (lag 0) and written nowhere, nor dead-lettered."""
    settings = warehouse_role
    flagged = citizen_event("condition.recorded", "wh-test-hiv-01", "wh-ev-hiv-live", {
        "resourceType": "Condition", "id": "wh-hiv-live-1", "code": {"coding": [{"code": "B24"}]}},
        sensitivity=("hiv",))
    plain = citizen_event("condition.recorded", "wh-test-hiv-01", "wh-ev-plain-live", {
        "resourceType": "Condition", "id": "wh-plain-live-1", "code": {"coding": [{"code": "J18.9"}]}})
    await publish(settings, EVENTS_CITIZEN.name, [flagged, plain])
    await wait_for(db, "SELECT 1 FROM fact_diagnosis WHERE resource_id = 'wh-plain-live-1'")
    await warehouse_idle(settings)
    dump = "\n".join([str(r[0]) for t in TABLES for r in await db.fetch(f"SELECT row_to_json(t)::text FROM {t} t")])
    assert "wh-hiv-live-1" not in dump and "wh-ev-hiv-live" not in dump and '"B24"' not in dump  # the code as a value, not inside another test's random id


def postgres_sh(command: str) -> None:
    """deploy/local/postgres.sh on this session's own stack (its state folder and port), nothing else."""
    subprocess.run(["bash", str(REPO_ROOT / "deploy" / "local" / "postgres.sh"), command],
                   env={**os.environ, **TEST_ENV}, check=True, capture_output=True, timeout=120)


@pytest.mark.disruptive
async def test_a_postgresql_outage_delays_rows_and_loses_none(warehouse_role: Settings) -> None:
    """With PostgreSQL stopped the role keeps retrying and commits nothing past the write; once it is back,
    the rows arrive and nothing went to the DLQ."""
    settings = warehouse_role
    item = citizen_event("procedure.recorded", "wh-test-outage-01", "wh-ev-outage-1", {
        "resourceType": "Procedure", "id": "wh-outage-proc-1", "status": "completed",
        "code": {"coding": [{"code": "89.52", "display": "Điện tâm đồ"}]}})
    postgres_sh("stop")
    try:
        log_path = settings.state_dir / "logs" / "warehouse-test.log"
        seen = log_path.read_bytes().count(b"warehouse unreachable") if log_path.exists() else 0
        await publish(settings, EVENTS_CITIZEN.name, [item])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        # Polled: the role (ours, logging there) has tried and failed a few times; then the commit interval.
        while log_path.exists() and log_path.read_bytes().count(b"warehouse unreachable") < seen + 3:
            assert loop.time() < deadline, "the role did not retry the write"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # > faust's 1 s commit interval: a wrongly committed offset would show now
        rows = await lag_.measure(settings, [GROUP], seconds=False)
        assert sum(r.lag for r in rows) >= 1  # the event's offset is not committed while the write fails
    finally:
        postgres_sh("start")
    conn = await asyncpg.connect(settings.pg_dsn)
    try:
        await wait_for(conn, "SELECT 1 FROM fact_procedure WHERE resource_id = 'wh-outage-proc-1'", timeout_s=90)
    finally:
        await conn.close()
    await warehouse_idle(settings)
    letters = await read_until(settings, DLQ.name, lambda recs: False, timeout_s=3)
    assert not [r for r in letters if b"wh-ev-outage-1" in base64.b64decode(orjson.loads(r.value)["original"])]


async def test_merge_chains_end_on_the_last_survivor(warehouse_role: Settings, db: asyncpg.Connection) -> None:
    """A into B, then B into C: A's and B's facts are C's, both dimension rows point at C, and a merge back
    (C into A) is ignored rather than making a cycle. Written straight through the writer, in its own database."""
    from hub.warehouse.plan import plan_events
    from hub.warehouse.writer import Warehouse

    def dx(cid: str, rid: str) -> bytes:
        return citizen_event("condition.recorded", cid, f"ev-{rid}", {
            "resourceType": "Condition", "id": rid, "code": {"coding": [{"code": "I10", "display": "Tăng huyết áp"}]}})[1]

    def merged(survivor: str, retired: str, eid: str) -> bytes:
        return citizen_event("citizen.merged", survivor, eid, {"resourceType": "Patient", "id": survivor, "link": [
            {"type": "replaces", "other": {"reference": f"Patient/{retired}"}}]})[1]

    name = "wh_merge_chain"
    await db.execute(f"DROP DATABASE IF EXISTS {name}")
    await db.execute(f"CREATE DATABASE {name}")
    warehouse = await Warehouse.connect(f"{warehouse_role.pg_dsn.rsplit('/', 1)[0]}/{name}")
    try:
        await warehouse.migrate()
        for batch in ([dx("A", "a1"), dx("B", "b1"), dx("C", "c1")], [merged("B", "A", "m1")],
                      [merged("C", "B", "m2")], [merged("A", "C", "m3"), dx("A", "a2")]):
            await warehouse.write(plan_events(batch)[1])
        owners = dict(await warehouse.conn.fetch("SELECT resource_id, citizen_id FROM fact_diagnosis"))
        assert owners == {"a1": "C", "b1": "C", "c1": "C", "a2": "C"}
        dims = dict(await warehouse.conn.fetch("SELECT citizen_id, merged_into FROM dim_citizen"))
        assert dims == {"A": "C", "B": "C", "C": None}
    finally:
        await warehouse.close()
        await db.execute(f"DROP DATABASE {name}")


async def test_an_unmerge_moves_the_restored_citizens_facts_back(warehouse_role: Settings,
                                                                 db: asyncpg.Connection) -> None:
    """A into B, B into C, then B split out of C: B's facts and A's (merged through B, including one that arrived
    after the merges, and one the MPI resolved to C from a source record of B's: member_id B) are B's again, C
    keeps its own; the merge replayed afterwards is ignored, a later merge decision applies, and the old unmerge
    replayed after it changes nothing. Through the writer, own database."""
    from hub.identity.events import merged_event, unmerged_event
    from hub.warehouse.plan import plan_events
    from hub.warehouse.writer import Warehouse

    def dx(cid: str, rid: str, member: str | None = None) -> bytes:
        return citizen_event("condition.recorded", cid, f"ev-{rid}", {
            "resourceType": "Condition", "id": rid,
            "code": {"coding": [{"code": "E11", "display": "Đái tháo đường típ 2"}]}}, member_id=member)[1]

    def at(minute: int) -> str:
        return f"2026-11-23T10:{minute:02d}:00+07:00"

    m1 = merged_event("B", "A", "review-1", at(1), at(1)).to_json()
    m2 = merged_event("C", "B", "review-2", at(2), at(2)).to_json()
    u3 = unmerged_event("C", "B", "review-3", at(3), at(3)).to_json()
    m4 = merged_event("C", "B", "review-4", at(4), at(4)).to_json()
    name = "wh_unmerge"
    await db.execute(f"DROP DATABASE IF EXISTS {name}")
    await db.execute(f"CREATE DATABASE {name}")
    warehouse = await Warehouse.connect(f"{warehouse_role.pg_dsn.rsplit('/', 1)[0]}/{name}")

    async def state() -> tuple[dict, dict]:
        owners = dict(await warehouse.conn.fetch("SELECT resource_id, citizen_id FROM fact_diagnosis"))
        dims = dict(await warehouse.conn.fetch("SELECT citizen_id, merged_into FROM dim_citizen"))
        return owners, dims

    try:
        await warehouse.migrate()
        for batch in ([dx("A", "a1"), dx("B", "b1"), dx("C", "c1")], [m1], [m2], [dx("A", "a2")],
                      [dx("C", "b2", member="B"), dx("C", "c2")]):
            outcomes, plan = plan_events(batch)
            assert not [o for o in outcomes if isinstance(o, Exception)]
            await warehouse.write(plan)
        assert (await state())[0] == {"a1": "C", "b1": "C", "c1": "C", "a2": "C", "b2": "C", "c2": "C"}

        await warehouse.write(plan_events([u3])[1])
        split = ({"a1": "B", "b1": "B", "c1": "C", "a2": "B", "b2": "B", "c2": "C"}, {"A": "B", "B": None, "C": None})
        assert await state() == split
        await warehouse.write(plan_events([u3, m2])[1])  # both replayed: the older merge stays undone
        assert await state() == split
        await warehouse.write(plan_events([m4])[1])  # a later decision merges them again
        assert await state() == ({"a1": "C", "b1": "C", "c1": "C", "a2": "C", "b2": "C", "c2": "C"},
                                 {"A": "C", "B": "C", "C": None})
        await warehouse.write(plan_events([u3])[1])  # the old unmerge replayed after it: no change
        assert (await state())[1] == {"A": "C", "B": "C", "C": None}
    finally:
        await warehouse.close()
        await db.execute(f"DROP DATABASE {name}")
