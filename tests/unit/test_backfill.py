"""The backfill's pure parts over the in-memory MPI store: the plan from batch linkage, seeding the streaming
MPI with it, and what the streaming resolver then decides for the imported rows and for later live events."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from connectors.registry import COLUMNS, translate_row
from hub.envelope import SYSTEM_CCCD, Envelope, Identifier, Source, Subject, mrn_system
from hub.identity import population
from hub.identity.evaluate import pairwise, read_mapping
from hub.identity.model import LINK
from hub.identity.mpi_store import MemoryMpiStore, link_slot
from hub.identity.resolve import Resolver, identity_key
from hub.ops import backfill as backfill_module
from hub.ops.backfill import BackfillError, BackfillReport, make_plan, plan_path, read_plan, read_rows, seed
from hub.ops.watch import sha256_of
from hub.settings import Settings

RECEIVED = "2026-11-30T08:00:00+07:00"


def settings_in(tmp_path: Path) -> Settings:
    return Settings.from_env({"HSSK_STATE_DIR": str(tmp_path / "state")})


def row(rid: str, name: str, dob: str, sex: str, cccd: str = "", bhyt: str = "", phone: str = "",
        address: str = "", ward: str = "26734", dose: str = "1", given: str = "15/06/2021", site: str = "79001"):
    return {"record_id": rid, "ho_ten": name, "ngay_sinh": dob, "gioi_tinh": sex, "so_cccd": cccd, "so_bhyt": bhyt,
            "so_dien_thoai": phone, "dia_chi": address, "ma_xa": ward, "ma_vaccine": "COVID-AZ",
            "ten_vaccine": "AstraZeneca", "so_lo": "A1234", "mui_thu": dose, "ngay_tiem": given, "ma_co_so": site}


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow(COLUMNS)
        w.writerows([r[c] for c in COLUMNS] for r in rows)
    return path


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("gen")
    csv_path, truth = folder / "registry.csv", folder / "truth.csv"
    population.write_files(1500, csv_path, truth, seed=11)
    return csv_path, truth


async def planned(csv_path: Path, settings: Settings, store: MemoryMpiStore) -> tuple[Path, BackfillReport]:
    report = BackfillReport(str(csv_path))
    plan = plan_path(settings, sha256_of(csv_path))
    await make_plan(csv_path, plan, settings, store, report)
    return plan, report


def events_of(csv_path: Path) -> list[tuple[str, list[Envelope]]]:
    out = []
    for line, values in read_rows(csv_path):
        fields = dict(zip(COLUMNS, values))
        out.append((values[0], translate_row(fields, received_at=RECEIVED).events))
    return out


class TestPlan:
    async def test_the_plan_names_every_row_with_hub_links_citizens_and_scores_like_batch_linkage(
            self, generated, tmp_path) -> None:
        """One row per input row, in file order; its clusters score like batch linkage against the truth."""
        csv_path, truth = generated
        settings = settings_in(tmp_path)
        plan, report = await planned(csv_path, settings, MemoryMpiStore())
        rows = list(read_plan(plan))
        assert [rid for rid, _ in rows] == [values[0] for _, values in read_rows(csv_path)]
        assert report.rows == len(rows) == 1500 and report.citizens == len({c for _, c in rows})
        assert all(c.startswith("cz-") for _, c in rows)
        scores = pairwise(dict(rows), read_mapping(truth))
        assert scores.precision >= 0.99 and scores.recall >= 0.95

    async def test_a_cluster_takes_the_citizen_the_mpi_already_links_its_cccd_to(self, tmp_path) -> None:
        """Live traffic came first: the backfill joins that citizen instead of splitting the person."""
        settings = settings_in(tmp_path)
        cccd = "079185001234"  # female, born 1985
        csv_path = write_csv(tmp_path / "r.csv", [
            row("R1", "Trần Thị Ngọc Hân", "12/03/1985", "Nữ", cccd=cccd, phone="0903123456"),
            row("R2", "TRAN THI NGOC HAN", "12/03/1985", "2", cccd=cccd, dose="2", given="20/08/2021"),
            row("R3", "Lê Văn Phúc", "01/01/1960", "Nam", cccd="079060004321"),
        ])
        store = MemoryMpiStore()
        live = "cz-live-person"
        await store.write([(link_slot(identity_key(settings.pseudonym_key, Identifier(SYSTEM_CCCD, cccd))), "L",
                            live)])
        plan, report = await planned(csv_path, settings, store)
        got = dict(read_plan(plan))
        assert got["R1"] == got["R2"] == live and got["R3"] not in (live, "")
        assert report.adopted == 1 and report.adoption_conflicts == 0


class TestSeed:
    async def test_every_imported_event_resolves_to_its_planned_citizen_without_writing(
            self, generated, tmp_path) -> None:
        """The identity stage's cheap path: each row's record is already filed, so it links and writes nothing."""
        csv_path, _ = generated
        settings = settings_in(tmp_path)
        store = MemoryMpiStore()
        plan, report = await planned(csv_path, settings, store)
        await seed(csv_path, plan, settings, store, report)
        assert report.seeded + report.untranslatable == report.rows
        expected = dict(read_plan(plan))
        before = dict(store.data)
        resolver = Resolver(store, settings.pseudonym_key)
        rows = events_of(csv_path)
        wrong = 0
        for start in range(0, len(rows), 250):
            chunk = rows[start:start + 250]
            res = await resolver.resolve([e for _, events in chunk for e in events])
            assert set(res.outcomes) == {LINK} and not res.proposals
            cids = iter(r.citizen_id for r in res.results)
            for rid, events in chunk:
                for _ in events:
                    wrong += next(cids) != expected[rid]
        assert wrong <= 2 * report.already_filed  # rows following an identical record filed under another
        assert store.data == before

    async def test_seeding_twice_changes_nothing(self, generated, tmp_path) -> None:
        csv_path, _ = generated
        settings = settings_in(tmp_path)
        store = MemoryMpiStore()
        plan, report = await planned(csv_path, settings, store)
        await seed(csv_path, plan, settings, store, report)
        once = dict(store.data)
        await seed(csv_path, plan, settings, store, BackfillReport(str(csv_path)))
        assert store.data == once

    async def test_a_later_live_event_for_a_backfilled_person_links_to_the_backfilled_citizen(self, tmp_path) -> None:
        """A hospital's ADT with its own MRN and the person's CCCD, weeks after the backfill."""
        settings = settings_in(tmp_path)
        cccd = "001090007788"  # male, born 1990
        csv_path = write_csv(tmp_path / "r.csv", [
            row("R1", "Phạm Minh Khôi", "05/09/1990", "Nam", cccd=cccd, phone="0912345678",
                address="15 Nguyễn Huệ, P. Bến Nghé, Q.1"),
            row("R2", "Pham Minh Khoi", "05/09/1990", "Nam", phone="0912345678", dose="2", given="01/09/2021"),
        ])
        store = MemoryMpiStore()
        plan, report = await planned(csv_path, settings, store)
        await seed(csv_path, plan, settings, store, report)
        [(_, cid)] = set((None, c) for _, c in read_plan(plan))
        idents = (Identifier(mrn_system("79048"), "BN778899"), Identifier(SYSTEM_CCCD, cccd))
        live = Envelope("adt-1", "patient.updated", "2026-11-30T09:00:00+07:00", RECEIVED,
                        Source("hl7v2", "79048", "adt-1"), Subject(idents, "Phạm", ("Minh", "Khôi"), "1990-09-05",
                                                                   "male"),
                        {"resourceType": "Patient", "identifier": [{"system": i.system, "value": i.value}
                                                                   for i in idents]})
        res = await Resolver(store, settings.pseudonym_key).resolve([live])
        assert res.results[0].citizen_id == cid and res.outcomes == [LINK]

    async def test_a_plan_that_does_not_fit_the_file_is_refused(self, tmp_path) -> None:
        settings = settings_in(tmp_path)
        a = write_csv(tmp_path / "a.csv", [row("R1", "Võ Thị Lan", "01/02/1970", "Nữ")])
        b = write_csv(tmp_path / "b.csv", [row("X9", "Võ Thị Lan", "01/02/1970", "Nữ")])
        store = MemoryMpiStore()
        plan, report = await planned(a, settings, store)
        with pytest.raises(BackfillError, match="does not match line 2"):
            await seed(b, plan, settings, store, report)


class _Crashing(MemoryMpiStore):
    """The in-memory store, dying (like a SIGKILLed backfill) on its ``after``-th write."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    async def write(self, ops):
        self.after -= 1
        if self.after == 0:
            raise ConnectionError("killed")
        return await super().write(ops)


class TestCrash:
    async def test_a_seed_killed_midway_and_run_again_ends_as_a_clean_run(self, generated, tmp_path,
                                                                          monkeypatch) -> None:
        monkeypatch.setattr(backfill_module, "_SEED_OPS", 2_000)  # several writes for this small file
        csv_path, _ = generated
        settings = settings_in(tmp_path)
        clean = MemoryMpiStore()
        plan, report = await planned(csv_path, settings, clean)
        await seed(csv_path, plan, settings, clean, report)
        crashed = _Crashing(after=2)
        with pytest.raises(ConnectionError):
            await seed(csv_path, plan, settings, crashed, BackfillReport(str(csv_path)))
        assert 0 < len(crashed.data) < len(clean.data)
        crashed.after = -1
        await seed(csv_path, plan, settings, crashed, BackfillReport(str(csv_path)))
        assert crashed.data == clean.data

    async def test_the_saved_plan_is_written_whole_or_not_at_all(self, generated, tmp_path) -> None:
        """No half plan: a rerun after a crash during planning links again instead of trusting one."""
        csv_path, _ = generated
        settings = settings_in(tmp_path)
        plan, _ = await planned(csv_path, settings, MemoryMpiStore())
        assert [p.name for p in plan.parent.iterdir()] == [plan.name]
