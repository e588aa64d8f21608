"""`hub import` on the real stack with a BHYT export holding a bad table of several MB: its hub.dlq entry fits in
one Kafka message (the broker's default 1 MB limit), and the rest of the file and of the encounter is imported."""

from __future__ import annotations

import base64
import hashlib
import random

import orjson
import pytest

from connectors.xml130 import generate
from hub.settings import Settings
from tests.conftest import hub_cli
from tests.integration.kafka_tools import read_until

pytestmark = pytest.mark.integration


def _of_file(records: list, name: str) -> list[dict]:
    """This file's BHYT raw records (emr.raw also holds other imports' records, e.g. registry CSV lines)."""
    out = []
    for record in records:
        if record.value.startswith(b'{"source_system":"xml130"'):
            raw = orjson.loads(record.value)
            if raw["file"] == name:
                out.append(raw)
    return out


async def test_a_huge_bad_table_is_dead_lettered_with_its_reason_and_the_rest_is_imported(
        hub_stack: Settings, tmp_path) -> None:
    rng = random.Random(61)
    good = [generate.hoso(generate.visit(rng, i, facility="79048").tables) for i in range(2)]
    bad_visit = generate.visit(rng, 2, facility="79048")
    row = bad_visit.tables["XML2"].split(b"<CHI_TIET_THUOC>", 1)[1].split(b"</CHI_TIET_THUOC>", 1)[0]
    rows = b"".join(b"<CHI_TIET_THUOC>" + row + b"</CHI_TIET_THUOC>" for _ in range(3_000_000 // len(row)))
    truncated = b'<?xml version="1.0" encoding="utf-8"?><CHITIEU_CHITIET_THUOC><DSACH_CHI_TIET_THUOC>' + rows
    sent = base64.b64encode(truncated)
    export = tmp_path / "79048_huge_bad_table.xml"
    export.write_bytes(generate.envelope([*good, generate.hoso({**bad_visit.tables, "XML2": truncated})]))

    done = hub_cli("import", str(export))
    line = done.stdout.splitlines()[0]
    assert "(xml130): 3 encounters read" in line and "1 failures (to hub.dlq)" in line, done.stdout

    dlq = await read_until(hub_stack, "hub.dlq", lambda recs: any(
        orjson.loads(r.value)["headers"].get("file") == export.name for r in recs))
    mine = [r for r in dlq if orjson.loads(r.value)["headers"].get("file") == export.name]
    assert len(mine) == 1 and len(mine[0].value) < 1_000_000
    entry = orjson.loads(mine[0].value)
    assert (entry["stage"], entry["code"], entry["headers"]["kind"]) == ("import", "parse", "truncated")
    assert entry["reason"].startswith("XML2: table XML ends early") and entry["headers"]["where"] == "HOSO 3 XML2"
    assert entry["headers"]["original_bytes"] == str(len(sent))
    assert entry["headers"]["original_sha256"] == hashlib.sha256(sent).hexdigest()
    assert sent.startswith(base64.b64decode(entry["original"]))

    raws = await read_until(hub_stack, "emr.raw", lambda recs: len(_of_file(recs, export.name)) == 3)
    by_hoso = {raw["hoso"]: raw for raw in _of_file(raws, export.name)}
    assert sorted(by_hoso) == [1, 2, 3]
    assert "XML1" in by_hoso[3]["tables"] and "XML2" not in by_hoso[3]["tables"]  # the bad table: in the DLQ
