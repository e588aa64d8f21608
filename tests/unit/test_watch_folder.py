"""The drop folder without services: which names are taken, when a file counts as finished, the ledger by
content hash (durable across a new Ledger on the same file), done/ and failed/ with reason files, a duplicate
dropped under another name, a crash mid-file (ledger left at started) imported again, and a Kafka outage that
leaves the file for the next poll. The importer is a stand-in; tests/integration/test_watch_live.py runs the
real one."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from hub.errors import DeliveryError
from hub.ops.file_import import FileReport
from hub.ops.watch import Ledger, Watcher, is_candidate, sha256_of
from hub.settings import Settings


class FakeImporter:
    """Stands in for hub.ops.file_import.Importer.import_file: a readable file unless its text says otherwise."""

    def __init__(self) -> None:
        self.imported: list[str] = []
        self.fail_with: Exception | None = None

    async def import_file(self, path: Path) -> FileReport:
        if self.fail_with is not None:
            raise self.fail_with
        self.imported.append(path.name)
        text = path.read_text(encoding="utf-8")
        if text.startswith("rác"):
            return FileReport(str(path), "unknown", error="not a format the hub reads")
        return FileReport(str(path), "registry", read=2, accepted=2, events=4)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    drop = tmp_path / "drop"
    drop.mkdir()
    return drop


def watcher(folder: Path, importer: FakeImporter, ledger: Ledger) -> Watcher:
    return Watcher(Settings(), folder, importer, ledger, settle_s=0.0)  # type: ignore[arg-type]


async def settle(w: Watcher) -> list:
    """Two looks: the first records the size, the second finds it unchanged and imports."""
    first = await w.poll()
    return first + await w.poll()


class TestNames:
    @pytest.mark.parametrize(("name", "taken"), [
        ("79048_202611.xml", True), ("bundle.json", True), ("tiem_chung.csv", True),
        (".79048.xml", False), ("79048.xml.part", False), ("79048.xml.tmp", False), ("x.crdownload", False),
        ("x.csv~", False), ("~$x.csv", False), ("x.xml.reason.txt", False), ("X.XML.PARTIAL", False),
    ])
    def test_is_candidate(self, name: str, taken: bool) -> None:
        assert is_candidate(name) is taken


class TestWatcher:
    async def test_done_with_a_reason_file_and_once_per_content(self, folder: Path, tmp_path: Path) -> None:
        ledger = Ledger(tmp_path / "state" / "ledger.sqlite3")
        importer = FakeImporter()
        w = watcher(folder, importer, ledger)
        (folder / "tiem_chung.csv").write_text("record_id,...\nVX-1,Nguyễn Văn Hùng\n", encoding="utf-8")
        outcomes = await settle(w)
        assert [(o.name, o.result) for o in outcomes] == [("tiem_chung.csv", "done")]
        assert (folder / "done" / "tiem_chung.csv").exists() and not (folder / "tiem_chung.csv").exists()
        reason = (folder / "done" / "tiem_chung.csv.reason.txt").read_text(encoding="utf-8")
        assert "result: done" in reason and "2 rows read, 2 accepted, 4 events published" in reason
        sha = sha256_of(folder / "done" / "tiem_chung.csv")
        assert f"sha256: {sha}" in reason

        # the same bytes again, under another name, and after a restart (a new Ledger on the same file)
        ledger.close()
        ledger = Ledger(tmp_path / "state" / "ledger.sqlite3")
        w = watcher(folder, importer, ledger)
        (folder / "lan2.csv").write_bytes((folder / "done" / "tiem_chung.csv").read_bytes())
        outcomes = await settle(w)
        assert [(o.name, o.result) for o in outcomes] == [("lan2.csv", "duplicate")]
        assert importer.imported == ["tiem_chung.csv"]  # imported once
        text = (folder / "done" / "lan2.csv.reason.txt").read_text(encoding="utf-8")
        assert "not imported again: the same content" in text and "as tiem_chung.csv" in text

    async def test_unreadable_file_goes_to_failed_with_its_reason(self, folder: Path, tmp_path: Path) -> None:
        ledger = Ledger(tmp_path / "ledger.sqlite3")
        w = watcher(folder, FakeImporter(), ledger)
        (folder / "ghi_chu.txt").write_text("rác: không phải tệp xuất", encoding="utf-8")
        (folder / "ghi_chu.txt.part").write_text("đang chép", encoding="utf-8")
        outcomes = await settle(w)
        assert [(o.name, o.result) for o in outcomes] == [("ghi_chu.txt", "failed")]
        reason = (folder / "failed" / "ghi_chu.txt.reason.txt").read_text(encoding="utf-8")
        assert "not imported: not a format the hub reads" in reason
        assert (folder / "ghi_chu.txt.part").exists()  # a temporary name is never taken
        assert ledger.get(sha256_of(folder / "failed" / "ghi_chu.txt")).state == "failed"

    async def test_a_growing_file_is_not_taken(self, folder: Path, tmp_path: Path) -> None:
        w = Watcher(Settings(), folder, FakeImporter(), Ledger(tmp_path / "l.sqlite3"),  # type: ignore[arg-type]
                    settle_s=0.3)
        path = folder / "79048.xml"
        path.write_text("<GIAMDINHHS>", encoding="utf-8")
        assert await w.poll() == []
        with path.open("a", encoding="utf-8") as f:
            f.write("<THONGTINDONVI/>")
        assert await w.poll() == [] and await w.poll() == []  # changed: the settle time starts again
        await asyncio.sleep(0.35)
        assert [o.result for o in await w.poll()] == ["done"]

    async def test_crash_mid_file_is_imported_again(self, folder: Path, tmp_path: Path) -> None:
        """A ledger left at 'started' (the process died during the import) means: import it again."""
        ledger = Ledger(tmp_path / "l.sqlite3")
        path = folder / "bundle.json"
        path.write_text('{"resourceType": "Bundle"}', encoding="utf-8")
        ledger.begin(sha256_of(path), "bundle.json")
        importer = FakeImporter()
        assert [o.result for o in await settle(watcher(folder, importer, ledger))] == ["done"]
        entry = ledger.get(sha256_of(folder / "done" / "bundle.json"))
        assert importer.imported == ["bundle.json"] and entry.state == "done" and entry.attempts == 2

    async def test_kafka_outage_leaves_the_file_for_the_next_poll(self, folder: Path, tmp_path: Path) -> None:
        ledger = Ledger(tmp_path / "l.sqlite3")
        importer = FakeImporter()
        importer.fail_with = DeliveryError("Kafka did not confirm within 30 s")
        w = watcher(folder, importer, ledger)
        (folder / "a.csv").write_text("record_id\n", encoding="utf-8")
        assert [o.result for o in await settle(w)] == ["retry"]
        assert (folder / "a.csv").exists() and ledger.get(sha256_of(folder / "a.csv")).state == "started"
        importer.fail_with = None
        assert [o.result for o in await settle(w)] == ["done"]

    async def test_name_clash_in_done_keeps_both(self, folder: Path, tmp_path: Path) -> None:
        w = watcher(folder, FakeImporter(), Ledger(tmp_path / "l.sqlite3"))
        (folder / "x.csv").write_text("một", encoding="utf-8")
        await settle(w)
        (folder / "x.csv").write_text("hai", encoding="utf-8")
        await settle(w)
        names = sorted(p.name for p in (folder / "done").iterdir())
        assert len(names) == 4 and "x.csv" in names and any(n.startswith("x-") and n.endswith(".csv") for n in names)

    async def test_an_importer_bug_costs_the_file_not_the_folder(self, folder: Path, tmp_path: Path) -> None:
        importer = FakeImporter()
        importer.fail_with = KeyError("x")
        w = watcher(folder, importer, Ledger(tmp_path / "l.sqlite3"))
        (folder / "b.json").write_text("{}", encoding="utf-8")
        assert [o.result for o in await settle(w)] == ["failed"]
        assert "unexpected KeyError" in (folder / "failed" / "b.json.reason.txt").read_text(encoding="utf-8")


class TestOnce:
    async def test_once_imports_what_is_there_and_returns(self, folder: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
        """``hub watch --once`` (for cron): waits for files to settle, imports them, exits 0."""
        import hub.ops.watch as watch_module
        from hub.ops.watch import watch

        class Opened(FakeImporter):
            def __init__(self, *_args: object) -> None:
                super().__init__()

            async def __aenter__(self) -> "Opened":
                return self

            async def __aexit__(self, *_exc: object) -> None:
                return None

        monkeypatch.setattr(watch_module, "Importer", Opened)
        (folder / "a.csv").write_text("Phạm Văn Đồng", encoding="utf-8")
        settings = Settings(state_dir=tmp_path / "state", watch_poll_s=0.05, watch_settle_s=0.1)
        seen: list[str] = []
        assert await watch(settings, folder, once=True, on_outcome=lambda o: seen.append(o.result)) == 0
        assert seen == ["done"] and (folder / "done" / "a.csv").exists()

    def test_one_watcher_per_folder(self, folder: Path) -> None:
        """A second watcher on the same folder is refused while the first holds the lock."""
        from hub.ops.watch import FolderBusy, folder_lock

        with folder_lock(folder):
            with pytest.raises(FolderBusy, match=f"already watched \\(pid {os.getpid()}\\)"):
                with folder_lock(folder):
                    pass
        with folder_lock(folder):  # released: it can be taken again
            pass
