"""`hub import` on the real stack: a BHYT XML export reaches emr.raw, events.canonical (with raw coordinates)
and the DLQ for its broken parts; an HL7 v2 batch file takes the listener's path onto hl7v2.raw."""

from __future__ import annotations

import base64

import orjson
import pytest

from connectors.registry import COLUMNS
from connectors.xml130 import generate
from hub.settings import Settings
from hub.synthetic import Person, adt
from tests.conftest import hub_cli
from tests.integration.kafka_tools import read_until, wait_until_idle
from tests.integration.test_thin_path import citizen_of

pytestmark = pytest.mark.integration

KHOA = Person(cccd="079083556677", family="Lâm", middle="Đăng", given="Khoa", birth_date="19830405", sex="M",
              mrn="BN-IMP-1", facility="79033", phone="0907123123")


async def test_bhyt_xml_export_is_imported_with_raw_coordinates_and_its_broken_parts_dead_lettered(
        hub_stack: Settings, tmp_path) -> None:
    export = tmp_path / "79048_202611.xml"
    export.write_bytes(generate.export(3, seed=4242, broken=True))
    done = hub_cli("import", str(export))
    line = done.stdout.splitlines()[0]
    assert "(xml130): " in line and " encounters read" in line
    read = int(line.split("): ", 1)[1].split()[0])
    assert read >= 3 and "failures (to hub.dlq)" in line and " 0 failures" not in line

    events = await read_until(hub_stack, "events.canonical", lambda recs: any(
        orjson.loads(r.value)["source"]["system"] == "xml130" for r in recs))
    mine = [orjson.loads(r.value) for r in events if orjson.loads(r.value)["source"]["system"] == "xml130"]
    assert {"patient.updated", "encounter.recorded", "condition.recorded"} <= {e["type"] for e in mine}
    raw_at = mine[0]["source"]["raw"]
    assert raw_at["topic"] == "emr.raw"
    raws = await read_until(hub_stack, "emr.raw", lambda recs: any(
        (r.partition, r.offset) == (raw_at["partition"], raw_at["offset"]) for r in recs))
    raw = next(orjson.loads(r.value) for r in raws if (r.partition, r.offset) == (raw_at["partition"], raw_at["offset"]))
    assert raw["source_system"] == "xml130" and "XML1" in raw["tables"]
    assert b"<TONG_HOP>" in base64.b64decode(raw["tables"]["XML1"])
    keys = {r.key for r in events if orjson.loads(r.value)["source"]["system"] == "xml130"}
    assert all(len(k) == 32 for k in keys)  # keyed hashes, never an MRN or CCCD

    dlq = await read_until(hub_stack, "hub.dlq", lambda recs: any(
        orjson.loads(r.value)["headers"].get("file") == export.name for r in recs))
    letters = [orjson.loads(r.value) for r in dlq if orjson.loads(r.value)["headers"].get("file") == export.name]
    assert letters and all(entry["stage"] == "import" and entry["reason"] for entry in letters)


async def test_hl7_batch_file_takes_the_listener_path(hub_stack: Settings, tmp_path) -> None:
    messages = [adt(KHOA, "A04", f"IMP-{i}", visit="V-IMP") for i in range(2)]
    stranger = adt(KHOA, "A04", "IMP-X").replace(b"|79033|", b"|79999|", 1)
    batch = tmp_path / "feed.hl7"
    batch.write_bytes(b"BHS|^~\\&|HIS|79033\r" + b"".join(messages) + stranger + b"BTS|3\r")
    done = hub_cli("import", str(batch))
    assert "(hl7v2): 3 messages read, 2 accepted" in done.stdout and "AR: sending facility" in done.stdout
    raw = await read_until(hub_stack, "hl7v2.raw", lambda recs: sum(
        dict(r.headers)["hl7.control_id"] in (b"IMP-0", b"IMP-1") for r in recs) == 2)
    peers = {dict(r.headers)["peer"] for r in raw if dict(r.headers)["hl7.control_id"] in (b"IMP-0", b"IMP-1")}
    assert peers == {b"file:feed.hl7"}


def test_unreadable_and_unknown_files_exit_non_zero(hub_stack: Settings, tmp_path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("Bệnh nhân ổn định", encoding="utf-8")
    done = hub_cli("import", str(junk), str(tmp_path / "missing.xml"), check=False)
    assert done.returncode == 1
    assert "notes.txt: not imported: not a format" in done.stderr and "missing.xml: not imported: cannot read" in done.stderr


async def test_registry_csv_rows_become_events_and_bad_rows_are_dead_lettered_by_line(
        hub_stack: Settings, tmp_path) -> None:
    header = ",".join(COLUMNS)
    lines = [
        header,
        'VX-1,Võ Thị Sáu,00/00/1952,Nữ,079152001122,,0909111222,"3 Lý Tự Trọng, P. Bến Nghé",26734,AZ,AstraZeneca,'
        "A77,1,10/06/2021 08:15,79001",
        "VX-2,VÕ THỊ SÁU,01/01/1952,2,,DN4797900011223,,,26734,AZ,AstraZeneca,A78,2,10/09/2021,79001",
        "VX-3,Lý Văn Bảy,05/05/1970,1,07917000,,,,26740,PF,Pfizer,P1,1,31/04/2021,79001",  # 31 April
        "VX-4,short,row",
    ]
    csv_file = tmp_path / "tiem_chung_79001.csv"
    csv_file.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    done = hub_cli("import", str(csv_file))
    assert "(registry): 4 rows read, 2 accepted, 4 events published, 2 failures" in done.stdout
    assert "translate: ngay_tiem: impossible date" in done.stdout and "expected 15 columns, found 3" in done.stdout

    events = await read_until(hub_stack, "events.canonical", lambda recs: sum(
        orjson.loads(r.value)["source"]["message_id"] in ("VX-1", "VX-2") for r in recs) == 4)
    mine = [orjson.loads(r.value) for r in events if orjson.loads(r.value)["source"]["message_id"] in ("VX-1", "VX-2")]
    shots = [e["payload"] for e in mine if e["type"] == "immunization.recorded"]
    assert sorted(s["lotNumber"] for s in shots) == ["A77", "A78"]
    assert all(e["source"]["raw"]["topic"] == "emr.raw" for e in mine)
    dlq = await read_until(hub_stack, "hub.dlq", lambda recs: sum(
        orjson.loads(r.value)["headers"].get("file") == csv_file.name for r in recs) == 2)
    lines_failed = sorted(int(orjson.loads(r.value)["headers"]["line"]) for r in dlq
                          if orjson.loads(r.value)["headers"].get("file") == csv_file.name)
    assert lines_failed == [4, 5]
    await wait_until_idle(hub_stack)
    assert await citizen_of(hub_stack, "079152001122") is not None  # the CCCD row reached the MPI and the record
