"""The importer's publishing half without services: events serialised once with placeholder raw coordinates
that are swapped for the real ones, chunks mapped in order (in this process and in workers), registry rows as
ready-to-write records, and the bulk producer's configuration (acks=all, idempotence, murmur2)."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import hmac
import io
import random

import orjson
import pytest

from connectors.registry import COLUMNS, translate_row
from connectors.registry.read import _as_csv
from connectors.xml130 import generate, read_export, read_hoso
from hub.envelope import Envelope
from hub.kafka import BulkProducer
from hub.ops.publish import (
    RAW_PLACEHOLDER, MapPool, encode_events, located, map_encounters, map_rows, pack_rows, patient_key, xml_raw,
)
from hub.pseudonym import KeyHasher, keyed_hash
from hub.settings import Settings

SECRET = b"k" * 32
RECEIVED = "2026-12-01T08:00:00.000+07:00"
ROW = ["VX-77", "Nguyễn Thị Bích Ngọc", "20/02/1985", "Nữ", "079185004321", "", "0918765432",
       "12 Lê Lợi, P. Bến Thành", "26734", "AZ", "AstraZeneca", "A1234", "2", "15/08/2021 09:30", "79033"]


def _fields(values: list[str]) -> dict[str, str]:
    return dict(zip(COLUMNS, values))


class TestLocatedEvents:
    def test_placeholder_is_swapped_for_the_raw_records_coordinates(self) -> None:
        """An event serialised before its raw record was written carries the real topic/partition/offset after
        ``located``, and is otherwise the same JSON as the event built with those coordinates."""
        events = translate_row(_fields(ROW), received_at=RECEIVED, raw=RAW_PLACEHOLDER).events
        [(patient_json, key), (shot_json, key2)] = encode_events(SECRET, events)
        assert key == key2 == patient_key(SECRET, events[0]) and len(key) == 32
        data = orjson.loads(located(shot_json, 3, 41_277))
        assert data["source"]["raw"] == {"topic": "emr.raw", "partition": 3, "offset": 41_277}
        assert Envelope.from_json(located(patient_json, 3, 41_277)).payload == events[0].payload

    def test_events_built_without_the_placeholder_get_it(self) -> None:
        """Connectors that know nothing of the placeholder (FHIR) are copied with it, once per Source."""
        events = translate_row(_fields(ROW), received_at=RECEIVED).events
        assert events[0].source.raw is None
        [(value, _key), _] = encode_events(SECRET, events)
        assert orjson.loads(located(value, 0, 9))["source"]["raw"]["offset"] == 9

    def test_a_payload_that_mentions_the_marker_text_is_left_alone(self) -> None:
        """Only the source's coordinates are replaced (the first occurrence, which precedes the payload)."""
        values = list(ROW)
        values[7] = '"raw":{"topic":"emr.raw","partition":-1,"offset":-1}'
        events = translate_row(_fields(values), received_at=RECEIVED, raw=RAW_PLACEHOLDER).events
        data = orjson.loads(located(encode_events(SECRET, events)[0][0], 1, 2))
        assert data["source"]["raw"]["offset"] == 2 and data["payload"]["address"][0]["text"] == values[7]


class TestMappedChunks:
    def test_registry_rows_become_raw_records_and_located_events_and_bad_rows_reasons(self) -> None:
        bad = list(ROW)
        bad[0], bad[13] = "VX-78", "31/04/2021"  # 31 April
        mapped = map_rows(*pack_rows([(2, ROW), (3, bad)]), RECEIVED, SECRET)
        [(topic, value, key, headers)] = mapped.raw_records("tiem_chung.csv")
        assert topic == "emr.raw" and value == _as_csv(ROW) and len(key) == 32
        assert headers == [("source_system", b"registry"), ("file", b"tiem_chung.csv"), ("line", b"2")]
        assert len(mapped.events) == 2 and len(mapped.event_keys) == 1
        assert mapped.rejected == [(3, "translate", "ngay_tiem: impossible date", _as_csv(bad))]

    def test_rows_cross_to_a_worker_as_one_string_unless_a_value_holds_a_nul(self) -> None:
        """The csv reader lets a NUL through: such a chunk keeps its list of values, and maps the same."""
        nul = list(ROW)
        nul[0], nul[7] = "VX-79", "12 Lê Lợi\0P. Bến Thành"
        lines, packed = pack_rows([(2, ROW), (3, ROW)])
        assert lines == [2, 3] and isinstance(packed, str)
        lines, values = pack_rows([(2, ROW), (3, nul)])
        assert values == ROW + nul == pack_rows([(2, ROW), (3, nul)], for_worker=False)[1]
        mapped = map_rows(lines, values, RECEIVED, SECRET)
        assert mapped.lines == [2, 3] and not mapped.rejected
        assert orjson.loads(mapped.events[2])["payload"]["address"][0]["text"] == nul[7]

    async def test_pairs_are_located_at_their_raw_records_coordinates(self) -> None:
        """Each raw record's two events get its (partition, offset), in order, with its row's key."""
        from hub.ops.publish import _locate_pairs

        mapped = map_rows(*pack_rows([(2, ROW), (3, ["VX-80", *ROW[1:]])]), RECEIVED, SECRET)
        records = _locate_pairs(mapped.events, mapped.event_keys, [(4, 10), (1, 7)])
        assert [(t, k) for t, _v, k, _h in records] == [("events.canonical", mapped.event_keys[0])] * 2 + [
            ("events.canonical", mapped.event_keys[1])] * 2
        assert [orjson.loads(v)["source"]["raw"] for _t, v, _k, _h in records] == [
            {"topic": "emr.raw", "partition": p, "offset": o} for p, o in ((4, 10), (4, 10), (1, 7), (1, 7))]
        assert [v for _t, v, _k, _h in records] == [located(e, p, o) for e, (p, o) in
                                                     zip(mapped.events, [(4, 10), (4, 10), (1, 7), (1, 7)])]

    def test_encounters_mapped_elsewhere_equal_the_readers_own(self) -> None:
        """read_hoso + map_encounters (what a worker does) give the events read_export gives."""
        data = generate.export(3, seed=77)
        direct = [r for r in read_export(data, received_at=RECEIVED, raw=RAW_PLACEHOLDER)]
        items = list(read_hoso(data, received_at=RECEIVED, raw=RAW_PLACEHOLDER))
        mapped = map_encounters(items, RECEIVED, None, SECRET, "79048.xml")
        assert mapped.raws == [xml_raw(r, "79048.xml", SECRET) for r in direct]
        assert mapped.events == [encode_events(SECRET, r.events) for r in direct]
        assert mapped.ok == sum(r.ok for r in direct) == 3


class TestMapPool:
    @pytest.mark.parametrize("workers", [0, 1])
    async def test_results_are_handed_over_in_submission_order(self, workers: int) -> None:
        """However long each chunk takes, ``then`` sees them in the order they were put."""
        pool = MapPool(workers, depth=3)
        seen: list[int] = []

        async def then(result: list[int]) -> None:
            seen.append(result[0])

        try:
            for n in (5, 1, 4, 2, 3):
                await pool.put(sorted, ([n, 9],), then)
            await pool.drain()
        finally:
            pool.close()
        assert seen == [5, 1, 4, 2, 3]

    async def test_a_failing_chunk_raises_where_its_result_is_taken(self) -> None:
        pool = MapPool(0)

        async def then(_result: object) -> None:
            raise AssertionError("not reached")

        with pytest.raises(TypeError):
            await pool.put(sorted, (None,), then)


class TestBulkProducerConfig:
    def test_durable_and_partitioned_like_the_other_writers(self) -> None:
        """acks=all + idempotence (the hub's durability invariant) and murmur2 (aiokafka/Java) partitioning."""
        producer = BulkProducer(Settings(), "hssk-test")
        config = producer._config
        assert config["acks"] == "all" and config["enable.idempotence"] is True
        assert config["partitioner"] == "murmur2_random"
        assert config["queue.buffering.max.kbytes"] == 256 * 1024  # bounded memory
        assert producer.sibling(report_successes=False)._config["delivery.report.only.error"] is True

    async def test_writing_before_connecting_is_a_delivery_error(self) -> None:
        from hub.errors import DeliveryError

        with pytest.raises(DeliveryError):
            await BulkProducer(Settings(), "hssk-test").write("emr.raw", b"x")


class TestCsvText:
    def test_raw_row_text_is_what_csv_writer_writes(self) -> None:
        """The fast path for rows that need no quoting gives csv.writer's bytes; the rest go through it."""
        rng = random.Random(130)
        alphabet = ["a", "Ế", ",", '"', "\n", "\r", " ", "", "Lê Lợi"]
        for _ in range(5000):
            values = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3)))
                      for _ in range(rng.randint(1, 5))]
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerow(values)
            assert _as_csv(values) == out.getvalue().encode("utf-8"), values


def test_pool_workers_are_spawned_not_forked() -> None:
    """librdkafka's threads run in the importer's process: a forked child would inherit their locks."""
    pool = MapPool(1)

    async def run() -> None:
        async def then(_r: object) -> None:
            pass
        await pool.put(len, ([1],), then)
        await pool.drain()

    try:
        asyncio.run(run())
        assert pool._executor is not None and pool._executor._mp_context.get_start_method() == "spawn"
    finally:
        pool.close()


class TestBulkRegistryPath:
    """map_rows builds the envelopes as dicts, without Envelope objects: the same bytes as translate_row +
    encode_events, over rows of every shape (and every payload validates with the FHIR R4B models)."""

    @staticmethod
    def _random_row(rng: random.Random, i: int) -> list[str]:
        import unicodedata

        name = rng.choice(["Nguyễn Thị Bích Ngọc", "TRAN VAN DUC", "Lê  Ánh", "", "Phạm"])
        if rng.random() < 0.2:
            name = unicodedata.normalize("NFD", name)
        return [
            f"VX-{i}", name, rng.choice(["20/02/1985", "00/00/1950", "00/07/1950", "1950-07-03", ""]),
            rng.choice(["Nam", "Nữ", "1", "2", "3", "khac", "?", ""]),
            rng.choice(["079185004321", "025123456", "0791850043", "", "079 185 004 321"]),
            rng.choice(["DN4797914581234", "7914581234", "dn47979", ""]), rng.choice(["0918765432", ""]),
            rng.choice(["12 Lê Lợi, P. Bến Thành", 'Hẻm "B", Q.1', "", "Ấp 3"]), rng.choice(["26734", ""]),
            rng.choice(["AZ", "PF"]), rng.choice(["AstraZeneca", ""]), rng.choice(["A1234", ""]),
            rng.choice(["1", "2", ""]), rng.choice(["15/08/2021 09:30", "02/07/2021"]), rng.choice(["79033", "79001"]),
        ]

    def test_events_are_the_bytes_translate_row_and_encode_events_give(self) -> None:
        from fhir.resources.R4B.immunization import Immunization
        from fhir.resources.R4B.patient import Patient

        rng = random.Random(6)
        items = [(i + 2, self._random_row(rng, i)) for i in range(400)]
        mapped = map_rows(*pack_rows(items), RECEIVED, SECRET)
        assert not mapped.rejected and mapped.lines == [line for line, _values in items]
        expected_dropped: list[str] = []
        for i, ((line, values), raw_value, raw_key) in enumerate(zip(items, mapped.raws, mapped.raw_keys)):
            translation = translate_row(_fields(values), received_at=RECEIVED, raw=RAW_PLACEHOLDER)
            expected_dropped += translation.dropped
            own = [(value, mapped.event_keys[i]) for value in mapped.events[2 * i:2 * i + 2]]
            assert own == encode_events(SECRET, translation.events), values
            assert raw_value == _as_csv(values)
            assert raw_key == keyed_hash(SECRET, values[14], "registry", values[0]).encode()
            patient, shot = (orjson.loads(value)["payload"] for value, _key in own)
            Patient.model_validate(patient)
            Immunization.model_validate(shot)
        assert len(mapped.events) == 2 * len(items)
        assert mapped.dropped == expected_dropped

    def test_key_hasher_gives_the_standard_librarys_hmac_sha256(self) -> None:
        for secret in (SECRET, b"", b"s" * 64, b"long" * 40):  # a key over 64 bytes is hashed first
            hasher = KeyHasher(secret)
            for parts in (("79033", "registry", "VX-1"), ("Lê Lợi",), ("a", "")):
                expected = hmac.new(secret, "\x1f".join(parts).encode(), hashlib.sha256).digest()[:16].hex()
                assert hasher(*parts) == keyed_hash(secret, *parts) == expected
