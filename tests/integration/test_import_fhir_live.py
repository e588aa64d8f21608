"""`hub import` of a FHIR Bundle on the real stack: each clinical entry's JSON on emr.raw, its event on
events.canonical pointing at it, the invalid entry on hub.dlq with its index and field, the record built from
the events; importing the same bundle again changes nothing downstream (same event ids)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import orjson
import pytest

from hub.settings import Settings
from tests.conftest import hub_cli
from tests.integration.kafka_tools import read_until, wait_until_idle

pytestmark = pytest.mark.integration

BUNDLE = Path(__file__).resolve().parents[1] / "data" / "fhir" / "transaction_tran_thi_lan.json"
# The sample with a bundle id and a person of its own (another CCCD, MRN, name, birthday, phone, address), so
# other tests importing the sample cannot interfere, nor the MPI take the two for one person.
_OWN = {"bv-cho-ray-2026-11-30-0001": "bv-cho-ray-import-live", "079186005566": "079186007788",
        "BN-2026-7781": "BN-2026-9001", "Trần Thị Lan": "Trần Thị Hạnh", '"Lan"': '"Hạnh"',
        "1986-03-14": "1986-10-02", "0903111222": "0913555777", "45 Nguyễn Trãi": "8 Hai Bà Trưng"}
OWN = BUNDLE.read_text(encoding="utf-8")
for _old, _new in _OWN.items():
    assert _old in OWN, _old
    OWN = OWN.replace(_old, _new)
OWN = OWN.encode("utf-8")
KEY = "Bundle/bv-cho-ray-import-live"
CCCD = "079186007788"


def mine(records: list) -> list[dict]:
    return [v for v in (orjson.loads(r.value) for r in records) if v.get("source", {}).get("message_id") == KEY]


async def record_of(cccd: str, until: object, timeout_s: float = 60.0) -> dict:
    """The citizen's record through `hub record` (the audited read path), once ``until(record)`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    record: dict = {}
    while loop.time() < deadline:
        done = hub_cli("record", "--cccd", cccd, check=False)
        if done.returncode == 0:
            record = json.loads(done.stdout)
            if until(record):  # type: ignore[operator]
                return record
        await asyncio.sleep(1.0)
    raise AssertionError(f"record not as expected within {timeout_s} s: {record}")


async def test_bundle_import_raw_events_dlq_and_record(hub_stack: Settings, tmp_path: Path) -> None:
    path = tmp_path / "cho_ray_20261130.json"
    path.write_bytes(OWN)
    done = hub_cli("import", str(path))
    assert (f"{path} (fhir): 9 entries read, 8 accepted, 7 events published, 1 failures (to hub.dlq)"
            in done.stdout), done.stdout
    assert "parse.invalid: Observation status: Value for the field 'status' is required." in done.stdout

    events = mine(await read_until(hub_stack, "events.canonical", lambda recs: len(mine(recs)) >= 7))
    assert sorted(e["type"] for e in events) == sorted([
        "patient.updated", "encounter.recorded", "condition.recorded", "observation.recorded",
        "medication.recorded", "immunization.recorded", "allergy.recorded"])
    where = {(e["source"]["raw"]["partition"], e["source"]["raw"]["offset"]) for e in events}
    raws = await read_until(hub_stack, "emr.raw", lambda recs: where <= {(r.partition, r.offset) for r in recs})
    entries = {(r.partition, r.offset): r for r in raws if (r.partition, r.offset) in where}
    assert {dict(r.headers)["source_system"] for r in entries.values()} == {b"fhir"}
    assert {orjson.loads(r.value)["resource"]["resourceType"] for r in entries.values()} >= {"Patient", "Immunization"}

    dlq = await read_until(hub_stack, "hub.dlq", lambda recs: any(
        orjson.loads(r.value)["headers"].get("file") == path.name for r in recs))
    (letter,) = [orjson.loads(r.value) for r in dlq if orjson.loads(r.value)["headers"].get("file") == path.name]
    assert letter["stage"] == "import" and letter["headers"]["where"] == "entry 7"
    assert letter["reason"] == "entry 7 (Observation): status: Value for the field 'status' is required."

    await wait_until_idle(hub_stack)
    record = await record_of(CCCD, lambda r: r.get("immunizations") and r.get("allergies"))
    assert [i["resource"]["lotNumber"] for i in record["immunizations"].values()] == ["FLU-2026-11"]
    assert record["demographics"]["name"]["family"] == "Trần"

    # the same bundle again (another name): the same event ids, so the record does not change
    again = tmp_path / "cho_ray_copy.json"
    again.write_bytes(OWN)
    hub_cli("import", str(again))
    events = mine(await read_until(hub_stack, "events.canonical", lambda recs: len(mine(recs)) >= 14))
    assert len(events) == 14 and len({e["event_id"] for e in events}) == 7
    await wait_until_idle(hub_stack)
    after = await record_of(CCCD, lambda r: True)
    assert after["version"] == record["version"] and after["immunizations"] == record["immunizations"]
