"""The registry import on the real broker, with its rows mapped in a worker process: every event points at the
raw record of its own row (the offsets learnt per raw record are swapped into the events the worker built),
and what the import reports is on Kafka."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

import hub.ops.file_import as file_import
from connectors.registry import COLUMNS
from hub.settings import Settings
from tests.integration.kafka_tools import read_until

pytestmark = pytest.mark.integration

NAMES = ["Nguyễn Thị Bích Ngọc", "Trần Văn Đức", "Lê Thị Ánh", "Phạm Quốc Hưng"]


def _write(path: Path, n: int) -> list[list[str]]:
    rows = [[f"LIVE-{i}", NAMES[i % 4], f"{i % 28 + 1:02d}/03/1980", "Nữ" if i % 2 else "Nam",
             f"0791800{i:05d}" if i % 3 else "", "", "", f"{i} Lê Lợi, P. Bến Thành", "26734", "AZ", "AstraZeneca",
             f"L{i}", str(i % 3 + 1), "15/08/2021 09:30", "79033"] for i in range(n)]
    rows[7][13] = "31/04/2021"  # 31 April: dead-lettered, the rest imported
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return rows


async def test_events_point_at_their_own_rows_raw_record_when_mapped_in_a_worker(
        hub_stack: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_import, "_POOL_MIN_BYTES", 0)  # a small file, mapped in a worker all the same
    monkeypatch.setattr(file_import, "_ROW_CHUNK", 64)  # several chunks in the pipeline at once
    path = tmp_path / "tiem_chung_live.csv"
    rows = _write(path, 300)
    async with file_import.Importer(replace(hub_stack, import_workers=1)) as importer:
        assert importer._pool.workers == 1
        report = await importer.import_file(path)
    assert (report.read, report.accepted, report.events) == (300, 299, 598)
    assert dict(report.failures) == {"translate: ngay_tiem: impossible date": 1}

    mine = lambda r: orjson.loads(r.value)["source"]["message_id"].startswith("LIVE-")  # noqa: E731
    events = await read_until(hub_stack, "events.canonical", lambda recs: sum(map(mine, recs)) >= 598)
    events = [orjson.loads(r.value) for r in events if mine(r)]
    raws = await read_until(hub_stack, "emr.raw", lambda recs: sum(
        dict(r.headers or ()).get("file") == path.name.encode() for r in recs) >= 299)
    by_position = {(r.partition, r.offset): r for r in raws if dict(r.headers or ()).get("file") == path.name.encode()}
    assert len(events) == 598 and len(by_position) == 299
    for event in events:
        raw = event["source"]["raw"]
        record = by_position[(raw["partition"], raw["offset"])]
        line = int(dict(record.headers)["line"])
        assert record.value.decode().rstrip("\n").split(",")[0] == event["source"]["message_id"]
        assert rows[line - 2][0] == event["source"]["message_id"]
    assert "LIVE-7" not in {e["source"]["message_id"] for e in events}
