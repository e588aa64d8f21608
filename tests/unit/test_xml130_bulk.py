"""The importer's BHYT path (hub.ops.publish.map_encounters: ``translate_hoso(encoded=True)``, events built as
dicts and serialised once) writes exactly the bytes, keys and raw records of the object path
(``read_export`` -> Envelopes -> ``encode_events`` / ``xml_raw``), and keeps every failure."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.xml130 import Failure, Record, generate, read_export, read_hoso
from connectors.xml130.generate import envelope, hoso
from hub.ops.publish import RAW_PLACEHOLDER, encode_events, map_encounters, xml_raw

RECEIVED = "2026-12-01T08:00:00.000+07:00"
SECRET = b"k" * 32
INPATIENT = Path(__file__).resolve().parents[1] / "data" / "xml130" / "inpatient"


def _golden() -> bytes:
    return envelope([hoso({p.stem: p.read_bytes() for p in sorted(INPATIENT.glob("XML*.xml"))})])


def _repeated_table() -> bytes:
    """A HOSO whose XML2 comes twice (the second is refused): the raw record keeps the first, re-encoded."""
    v = generate.visit(generate.random.Random(3), 1, facility="79048")
    xml2 = base64.b64encode(v.tables["XML2"]).decode()
    other = base64.b64encode(generate.xml2(v, generate.random.Random(4), 2)).decode()
    return envelope([hoso([(k, base64.b64encode(d).decode()) for k, d in v.tables.items()] + [("XML2", other)]),
                     hoso([("XML2", "%%%"), ("XML2", xml2)] + [(k, base64.b64encode(d).decode())
                                                              for k, d in v.tables.items() if k != "XML2"])])


def _wrapped_base64() -> bytes:
    v = generate.visit(generate.random.Random(5), 2, facility="79048")
    text = base64.encodebytes(v.tables["XML3"]).decode()  # 76-character lines
    return envelope([hoso([(k, text if k == "XML3" else base64.b64encode(d).decode()) for k, d in v.tables.items()])])


EXPORTS: dict[str, Callable[[], bytes]] = {
    "qd130": lambda: generate.export(6, seed=77),
    "qd4210": lambda: generate.export(3, seed=78, layout="4210"),
    "hiv-unmapped": lambda: generate.export(3, seed=79, hiv=True, unmapped=True),
    "lean": lambda: generate.export(3, seed=80, documents=False),
    "broken": lambda: generate.export(2, seed=81, broken=True),
    "golden": _golden,
    "repeated-table": _repeated_table,
    "wrapped-base64": _wrapped_base64,
}


@pytest.mark.parametrize("name", list(EXPORTS))
def test_same_bytes_keys_raws_and_failures_as_the_object_path(name: str) -> None:
    """Every event's bytes and key, every raw record and every failure equal the object path's."""
    data = EXPORTS[name]()
    direct = [r for r in read_export(data, received_at=RECEIVED, raw=RAW_PLACEHOLDER) if isinstance(r, Record)]
    items = [i for i in read_hoso(data, received_at=RECEIVED, raw=RAW_PLACEHOLDER) if not isinstance(i, Failure)]
    mapped = map_encounters(items, RECEIVED, None, SECRET, "79048.xml")
    assert mapped.events == [encode_events(SECRET, r.events) for r in direct]
    assert mapped.raws == [xml_raw(r, "79048.xml", SECRET) for r in direct]
    assert mapped.failures == [r.failures for r in direct]
    assert mapped.ok == sum(r.ok for r in direct)
    assert sum(len(own) for own in mapped.events) > 0


def test_every_encoded_payload_validates(validate_fhir: Callable[[dict[str, Any]], None]) -> None:
    """What the bulk path writes is valid FHIR R4B, HIV-flagged encounters included."""
    data = generate.export(4, seed=82, hiv=True)
    items = list(read_hoso(data, received_at=RECEIVED, raw=RAW_PLACEHOLDER))
    mapped = map_encounters(items, RECEIVED, None, SECRET, "79048.xml")
    events = [orjson.loads(value) for own in mapped.events for value, _key in own]
    assert len(events) > 100
    for event in events:
        validate_fhir(event["payload"])
        assert event["sensitivity"] == ["hiv"] and event["source"]["raw"]["offset"] == -1
