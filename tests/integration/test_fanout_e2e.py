"""Fan-out end to end on the real stack (``hub up``): HL7 v2 over MLLP and a BHYT XML export in -> warehouse rows in
PostgreSQL and signed health-book pushes at the reference receiver (deploy/local/receiver), values asserted.

The receiver stores only what it verified with hub.fanout.signing.verify, so every stored push was signed with the
local health-book subscription's secret. Messages of one test are about citizens no other test touches (their
own CCCDs), so the tests share one stack and stay independent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from connectors.mllp.sender import send_messages
from connectors.xml130 import generate
from hub.fanout.signing import IDEMPOTENCY_HEADER, SUBSCRIPTION_HEADER, sign
from hub.identity.events import merged_event
from hub.ops import local
from hub.ops.status import port_open
from hub.settings import Settings
from hub.synthetic import Person, adt
from hub.topics import EVENTS_CITIZEN
from tests.conftest import hub_cli
from tests.integration.kafka_tools import read_until

pytestmark = pytest.mark.integration

FACILITY = "79001"  # Bệnh viện Nhân dân 115 in the demo sources file: any sending application
NHUNG = Person(cccd="079188070001", family="Nguyễn", middle="Thị Hồng", given="Nhung", birth_date="19880314",
               sex="F", mrn="BN115-70001", facility=FACILITY, phone="0912070001")
LAN = Person(cccd="079190070002", family="Lê", middle="Thị Ngọc", given="Lan", birth_date="19900707", sex="F",
             mrn="BN-E2E-70002", facility="79048", phone="0903070002")
TUAN = Person(cccd="079076070003", family="Đặng", middle="Quốc", given="Tuấn", birth_date="19761105", sex="M",
              mrn="BN115-70003", facility=FACILITY, phone="0908070003")
KHOI = Person(cccd="079095070004", family="Trần", middle="Minh", given="Khôi", birth_date="19950228", sex="M",
              mrn="BN115-70004", facility=FACILITY, phone="0938070004")
HANH = Person(cccd="079167070005", family="Phạm", middle="Thị Mỹ", given="Hạnh", birth_date="19670919", sex="F",
              mrn="BN115-70005", facility=FACILITY, phone="0918070005")
# Registered twice under two CCCDs (one mistyped at the desk, another name spelling): a data steward merges them.
HANH_AGAIN = Person(cccd="079168070006", family="Phạm", middle="Mỹ", given="Hạnh", birth_date="19680919",
                    sex="F", mrn="BN115-70006", facility=FACILITY, phone="0918070006")


def _pid(p: Person) -> str:
    return (f"PID|1||{p.cccd}^^^BCA^CCCD~{p.mrn}^^^{p.facility}^MR||{p.family}^{p.given}^{p.middle}||{p.birth_date}|"
            f"{p.sex}|||45 Lý Tự Trọng^Phường Sài Gòn^Hồ Chí Minh^^700000^VNM^H||{p.phone}")


def _msg(*segments: str) -> bytes:
    return ("\r".join(segments) + "\r").encode()


def admission(p: Person, control_id: str, *, diagnosis: str = "J18.9^Viêm phổi, không đặc hiệu^I10",
              allergy: bool = True) -> bytes:
    """ADT^A01: the patient, an inpatient encounter, an allergy and an admitting diagnosis."""
    return _msg(f"MSH|^~\\&|HIS|{p.facility}|HSSK_HUB|SYT_HCM|20261124081500||ADT^A01^ADT_A01|{control_id}|P|2.5",
                "EVN|A01|20261124081000", _pid(p),
                f"PV1|1|I|NOI^305^2^{p.facility}||||||||||||||||VV-{p.mrn}|||||||||||||||||||||||||20261124080000",
                *(["AL1|1|DA|70618^Penicillin^RXNORM|SV|Phát ban|20150601"] if allergy else []),
                f"DG1|1||{diagnosis}||20261124081000|A")


def vaccination(p: Person, control_id: str) -> bytes:
    """VXU^V04: one dose of hepatitis B vaccine."""
    return _msg(f"MSH|^~\\&|TIEMCHUNG|{p.facility}|HSSK_HUB|SYT_HCM|20261124090000||VXU^V04^VXU_V04|{control_id}"
                "|P|2.5.1", _pid(p), f"ORC|RE||TC-{control_id}^TIEMCHUNG",
                "RXA|0|1|20261124083000|20261124083000|08^Vắc xin viêm gan B^CVX|0.5|mL^mL^UCUM||00^Mũi tiêm mới^NIP001"
                "||||||HB2611|20271231|||||CP|A",
                "RXR|IM^Tiêm bắp^HL70162|LD^Cơ delta trái^HL70163")


def hiv_result(p: Person, control_id: str) -> bytes:
    """ORU^R01 with LOINC 75622-1 (HIV 1+2 Ab+Ag): flagged ``hiv`` by connectors/hl7v2/sensitivity.json."""
    return _msg(f"MSH|^~\\&|LIS|{p.facility}|HSSK_HUB|SYT_HCM|20261124100000||ORU^R01^ORU_R01|{control_id}|P|2.5.1",
                _pid(p), f"OBR|1||L-{control_id}|75622-1^HIV 1+2 Ab+Ag^LN|||20261124093000|||||||||||||||||LAB|F",
                "OBX|1|CWE|75622-1^HIV 1+2 Ab+Ag^LN||10828004^Dương tính^SCT|||POS|||F")


# --- the receiver and the warehouse, read back --------------------------------------------------------------------

async def deliveries(settings: Settings, citizen_id: str) -> list[dict[str, Any]]:
    url = f"http://{settings.receiver_host}:{settings.receiver_port}/deliveries"
    async with aiohttp.ClientSession() as session, session.get(url, params={"citizen": citizen_id}) as resp:
        assert resp.status == 200
        return (await resp.json())["deliveries"]


async def wait_deliveries(settings: Settings, citizen_id: str, done: Callable[[list[dict[str, Any]]], bool],
                          timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """Poll the receiver until ``done(deliveries of the citizen)``; the last list read on timeout fails the test."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    rows: list[dict[str, Any]] = []
    while loop.time() < deadline:
        if port_open(settings.receiver_host, settings.receiver_port):
            rows = await deliveries(settings, citizen_id)
            if done(rows):
                return rows
        await asyncio.sleep(0.25)
    raise AssertionError(f"receiver: not there within {timeout_s} s; got "
                         f"{[(r['format'], r['body'].get('record_version')) for r in rows]}")


async def wait_citizen(settings: Settings, cccd: str, timeout_s: float = 60.0) -> str:
    """The citizen the identity stage resolved a CCCD to, as it wrote it on events.citizen (whatever it links on)."""
    def about(record: Any) -> bool:
        event = orjson.loads(record.value)
        return any(i["value"] == cccd for i in (event.get("subject") or {}).get("identifiers", []))

    records = await read_until(settings, EVENTS_CITIZEN.name, lambda rs: any(about(r) for r in rs), timeout_s)
    cids = {orjson.loads(r.value)["citizen_id"] for r in records if about(r)}
    assert len(cids) == 1, f"the CCCD resolved to {len(cids)} citizens"
    return cids.pop()


def books(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The health-book pushes among a citizen's deliveries (merge notices are the other kind)."""
    return [r for r in rows if r["format"] == "health-book"]


def latest(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The health book the receiver shows now: the four groups of the last health-book push."""
    pushed = books(rows)
    return pushed[-1]["body"]["health_book"] if pushed else None


def has(rows: list[dict[str, Any]], check: Callable[[dict[str, Any]], Any]) -> bool:
    book = latest(rows)
    return book is not None and bool(check(book))


def encounter_ids(book: dict[str, Any]) -> list[str]:
    return [e["id"] for e in book["encounters"]]


def in_order_without_duplicates(rows: list[dict[str, Any]]) -> None:
    """Per-citizen order: record versions never go back in order of arrival; each key arrived once."""
    versions = [r["body"]["record_version"] for r in books(rows)]
    assert versions == sorted(versions), versions
    keys = [r["idempotency_key"] for r in rows]
    assert len(keys) == len(set(keys))


@pytest.fixture
async def db(hub_stack: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(hub_stack.pg_dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def wait_rows(db: asyncpg.Connection, sql: str, *args: object, until: Callable[[list[asyncpg.Record]], bool]
                    = bool, timeout_s: float = 60.0) -> list[asyncpg.Record]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    rows: list[asyncpg.Record] = []
    while loop.time() < deadline:
        try:
            rows = await db.fetch(sql, *args)
        except asyncpg.UndefinedTableError:  # the warehouse role has not migrated yet
            rows = []
        if until(rows):
            return rows
        await asyncio.sleep(0.25)
    raise AssertionError(f"warehouse: {sql} gave {[dict(r) for r in rows]} within {timeout_s} s")


async def acked(settings: Settings, messages: list[bytes]) -> None:
    results = await send_messages(settings.mllp_host, settings.mllp_port, messages)
    assert [r.code for r in results] == ["AA"] * len(messages), [(r.code, r.acked_control_id) for r in results]


# --- the tests ------------------------------------------------------------------------------------------------------

async def test_the_live_receiver_refuses_an_unsigned_push(hub_stack: Settings) -> None:
    body = orjson.dumps({"citizen_id": "c-gia-mao", "administrative": {"name": "Kẻ Giả Mạo"}})
    headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: "gia-mao-1", SUBSCRIPTION_HEADER: "health-book",
               **sign(b"khong-phai-bi-mat", body)}
    url = f"http://{hub_stack.receiver_host}:{hub_stack.receiver_port}/deliveries"
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as resp:
        assert resp.status == 401 and "does not match" in (await resp.json())["error"]
    assert await deliveries(hub_stack, "c-gia-mao") == []


async def test_hl7_messages_reach_the_warehouse_and_the_health_book(hub_stack: Settings,
                                                                    db: asyncpg.Connection) -> None:
    await acked(hub_stack, [admission(NHUNG, "E2E-NHUNG-A01"), vaccination(NHUNG, "E2E-NHUNG-V04")])
    cid = await wait_citizen(hub_stack, NHUNG.cccd)

    rows = await wait_deliveries(hub_stack, cid, lambda rs: has(rs, lambda b: all(
        b["history"][group] for group in ("immunizations", "allergies", "illnesses"))))
    in_order_without_duplicates(rows)
    assert {r["subscription"] for r in rows} == {rows[0]["subscription"]}
    book = latest(rows)
    assert book["citizen_id"] == cid
    admin = book["administrative"]
    assert admin["name"] == "Nguyễn Thị Hồng Nhung" and admin["family"] == "Nguyễn"
    assert admin["gender"] == "female" and admin["birth_date"] == "1988-03-14"
    assert "Phường Sài Gòn" in admin["address"]
    [encounter] = book["encounters"]
    assert encounter["class"] == "IMP" and encounter["facility"] == FACILITY
    assert encounter["start"].startswith("2026-11-24T08:00:00+07:00")
    [shot] = book["history"]["immunizations"]
    assert shot["resource"]["vaccineCode"]["coding"][0]["code"] == "08"
    assert shot["resource"]["vaccineCode"]["coding"][0]["display"] == "Vắc xin viêm gan B"
    [illness] = book["history"]["illnesses"]
    assert illness["resource"]["code"]["coding"][0]["code"] == "J18.9"
    assert illness["resource"]["code"]["coding"][0]["display"] == "Viêm phổi, không đặc hiệu"
    [allergy] = book["history"]["allergies"]
    assert allergy["resource"]["code"]["coding"][0]["display"] == "Penicillin"
    assert book["summary"]["encounter_count"] == 1 and book["summary"]["facilities"] == [FACILITY]

    [enc] = await wait_rows(db, "SELECT * FROM fact_encounter WHERE citizen_id = $1", cid)
    assert (enc["class_code"], enc["facility_code"], enc["resource_id"]) == ("IMP", FACILITY, encounter["id"])
    assert enc["period_start"] == dt.datetime(2026, 11, 24, 1, 0, tzinfo=dt.timezone.utc)
    [imm] = await wait_rows(db, "SELECT * FROM fact_immunization WHERE citizen_id = $1", cid)
    assert (imm["code"], imm["display"]) == ("08", "Vắc xin viêm gan B")
    [dx] = await wait_rows(db, "SELECT * FROM fact_diagnosis WHERE citizen_id = $1", cid)
    assert dx["code"] == "J18.9"
    [who] = await wait_rows(db, "SELECT * FROM dim_citizen WHERE citizen_id = $1", cid)
    assert (who["birth_year"], who["sex"], who["ward"]) == (1988, "female", "Phường Sài Gòn")


async def test_a_bhyt_xml_export_reaches_the_warehouse_and_the_health_book(hub_stack: Settings, db: asyncpg.Connection,
                                                                           tmp_path) -> None:
    visit = generate.visit(random.Random(70002), 70002, facility="79048", drugs=2, services=2, results=2)
    visit.person = LAN
    visit.tables["XML1"] = generate.xml1(visit)  # the tables are about Lan, under the visit's MA_LK and card
    export = tmp_path / "79048_202611_e2e.xml"
    export.write_bytes(generate.envelope([generate.hoso(visit.tables)], "79048"))
    done = hub_cli("import", str(export))
    assert " 0 failures" in done.stdout or "failures" not in done.stdout, done.stdout
    cid = await wait_citizen(hub_stack, LAN.cccd)

    codes = sorted(code for code, _text in visit.diagnoses)
    rows = await wait_deliveries(hub_stack, cid, lambda rs: has(rs, lambda b: b["encounters"] and sorted(
        i["resource"]["code"]["coding"][0]["code"] for i in b["history"]["illnesses"]) == codes))
    in_order_without_duplicates(rows)
    book = latest(rows)
    assert book["administrative"]["name"] == "Lê Thị Ngọc Lan"
    assert book["administrative"]["birth_date"] == "1990-07-07" and book["administrative"]["gender"] == "female"
    [encounter] = book["encounters"]
    assert encounter["facility"] == "79048"
    assert {i["facility"] for i in book["history"]["illnesses"]} == {"79048"}

    [enc] = await wait_rows(db, "SELECT * FROM fact_encounter WHERE citizen_id = $1", cid)
    assert enc["facility_code"] == "79048" and enc["resource_id"] == encounter["id"]
    dxs = await wait_rows(db, "SELECT code FROM fact_diagnosis WHERE citizen_id = $1 ORDER BY code", cid,
                          until=lambda rs: len(rs) == len(codes))
    assert [r["code"] for r in dxs] == codes
    drugs = await wait_rows(db, "SELECT display FROM fact_medication WHERE citizen_id = $1", cid,
                            until=lambda rs: len(rs) >= 2)
    assert {"Paracetamol", "Amoxicilin"} <= {r["display"] for r in drugs}


async def test_an_hiv_flagged_result_or_diagnosis_never_reaches_the_health_book(hub_stack: Settings,
                                                                              db: asyncpg.Connection) -> None:
    # Tuấn: admitted with an HIV diagnosis (encounter and condition flagged), then an HIV test result.
    await acked(hub_stack, [admission(TUAN, "E2E-TUAN-A01", diagnosis="B20^Bệnh do HIV^I10", allergy=False),
                            hiv_result(TUAN, "E2E-TUAN-HIV"), vaccination(TUAN, "E2E-TUAN-V04")])
    cid = await wait_citizen(hub_stack, TUAN.cccd)
    # The vaccination comes after the flagged messages on the same partition: once it is in, so are they.
    rows = await wait_deliveries(hub_stack, cid, lambda rs: has(rs, lambda b: b["history"]["immunizations"]))
    in_order_without_duplicates(rows)
    book = latest(rows)
    assert book["administrative"]["name"] == "Đặng Quốc Tuấn"
    assert book["encounters"] == [] and book["history"]["illnesses"] == []
    assert "withheld_sensitive" not in book["summary"]  # even a count would tell a third party something
    for row in rows:
        text = orjson.dumps(row["body"]).decode()
        assert "B20" not in text and "75622-1" not in text and "HIV" not in text and "Dương tính" not in text

    # The warehouse is not entitled either: the vaccination is there, nothing flagged.
    await wait_rows(db, "SELECT 1 FROM fact_immunization WHERE citizen_id = $1", cid)
    for table in ("fact_encounter", "fact_diagnosis", "fact_observation"):
        assert await db.fetch(f"SELECT 1 FROM {table} WHERE citizen_id = $1", cid) == []


async def test_a_merge_repoints_the_warehouse_and_updates_the_health_book(hub_stack: Settings,
                                                                       db: asyncpg.Connection) -> None:
    await acked(hub_stack, [admission(HANH, "E2E-HANH-A01"), admission(HANH_AGAIN, "E2E-HANH2-A01", allergy=False)])
    survivor, retired = await wait_citizen(hub_stack, HANH.cccd), await wait_citizen(hub_stack, HANH_AGAIN.cccd)
    assert survivor != retired
    before = await wait_deliveries(hub_stack, survivor, lambda rs: has(rs, lambda b: b["encounters"]))
    retired_rows = await wait_deliveries(hub_stack, retired, lambda rs: has(rs, lambda b: b["encounters"]))
    [retired_encounter] = encounter_ids(latest(retired_rows))
    await wait_rows(db, "SELECT 1 FROM fact_encounter WHERE resource_id = $1 AND citizen_id = $2",
                    retired_encounter, retired)

    now = dt.datetime.now(dt.timezone(dt.timedelta(hours=7))).isoformat(timespec="seconds")
    merge = merged_event(survivor, retired, cause="e2e-merge-hanh", occurred_at=now, recorded_at=now,
                         facility=FACILITY)
    producer = AIOKafkaProducer(bootstrap_servers=hub_stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(EVENTS_CITIZEN.name, merge.to_json(), key=survivor.encode())
    finally:
        await producer.stop()

    await wait_rows(db, "SELECT 1 FROM fact_encounter WHERE resource_id = $1 AND citizen_id = $2",
                    retired_encounter, survivor)
    [gone] = await wait_rows(db, "SELECT merged_into FROM dim_citizen WHERE citizen_id = $1", retired)
    assert gone["merged_into"] == survivor
    after = await wait_deliveries(hub_stack, survivor, lambda rs: len(rs) > len(before)
                                  and has(rs, lambda b: retired_encounter in encounter_ids(b)), timeout_s=30)
    in_order_without_duplicates(after)
    assert latest(after)["summary"]["encounter_count"] == 2
    assert latest(after)["administrative"]["name"] in ("Phạm Thị Mỹ Hạnh", "Phạm Mỹ Hạnh")
    notices = await wait_deliveries(hub_stack, retired, lambda rs: any(r["format"] == "merged" for r in rs))
    [notice] = [r["body"]["merged"] for r in notices if r["format"] == "merged"]
    assert notice == {"retired_citizen_id": retired, "merged_into": survivor}


@pytest.mark.disruptive
async def test_receiver_down_for_a_while_then_everything_arrives_once_and_in_order(hub_stack: Settings) -> None:
    await acked(hub_stack, [adt(KHOI, "A01", "E2E-KHOI-A01", visit="VV-KHOI", when="20261124080000")])
    cid = await wait_citizen(hub_stack, KHOI.cccd)
    first = await wait_deliveries(hub_stack, cid, lambda rs: has(rs, lambda b: b["encounters"]))

    assert local.stop_role(hub_stack, "receiver")
    try:
        phones = [f"09380700{i:02d}" for i in range(10, 15)]
        await acked(hub_stack, [adt(KHOI, "A08", f"E2E-KHOI-A08-{i}", visit="VV-KHOI", when=f"2026112409{i:02d}00",
                                    phone=phone) for i, phone in enumerate(phones)])
        await asyncio.sleep(3.0)  # the sender meets a closed port and backs off meanwhile
    finally:
        await asyncio.to_thread(hub_cli, "up", "--timeout", "60")  # starts what is not running: the receiver
    t0 = time.monotonic()
    rows = await wait_deliveries(hub_stack, cid, lambda rs: has(
        rs, lambda b: b["administrative"]["telecom"] == [phones[-1]]), timeout_s=60)
    print(f"caught up {time.monotonic() - t0:.1f} s after the receiver came back")
    in_order_without_duplicates(rows)
    assert rows[:len(first)] == first
    assert len(rows) > len(first)
    assert latest(rows)["administrative"]["name"] == "Trần Minh Khôi"
