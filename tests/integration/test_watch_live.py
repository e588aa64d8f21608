"""`hub watch DIR` on the real stack, as an operator runs it (its own process): files imported once per
content, moved to done/ or failed/ with reason files; a file being written is not taken; a restart finds its
ledger; a process killed mid-file imports the file again on restart with the same event ids, and downstream
absorbs the repeats (the record shows each dose once)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from connectors.registry import COLUMNS
from hub.ops.watch import Ledger, ledger_path, sha256_of
from hub.settings import REPO_ROOT, Settings
from tests.conftest import TEST_ENV, hub_cli
from tests.integration.kafka_tools import read_until, wait_until_idle
from tests.integration.test_import_fhir_live import BUNDLE, record_of

pytestmark = pytest.mark.integration


def start_watch(folder: Path) -> subprocess.Popen[str]:
    env = {**os.environ, **TEST_ENV}
    return subprocess.Popen([sys.executable, "-m", "hub.cli", "watch", str(folder), "--poll", "0.3", "--settle", "0.6"],
                            env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> str:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


async def wait_for(path: Path, timeout_s: float = 90.0) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not path.exists():
        if loop.time() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout_s} s")
        await asyncio.sleep(0.2)
    return path.read_text(encoding="utf-8")


def rows(prefix: str, n: int, cccd: str, name: str, born: str, site: str = "79001") -> str:
    """``n`` doses of one person (one CCCD) as registry CSV."""
    lines = [",".join(COLUMNS)]
    for i in range(1, n + 1):
        lines.append(f"{prefix}-{i},{name},{born},Nữ,{cccd},,,,26734,V{i % 7},Vắc xin {i % 7},"
                     f"L{i},{i},{(i % 28) + 1:02d}/0{(i % 9) + 1}/2022,{site}")
    return "\n".join(lines) + "\n"


def events_of(records: list, ids: set[str]) -> list[dict]:
    return [v for v in (orjson.loads(r.value) for r in records) if v["source"]["message_id"] in ids]


async def test_once_per_content_done_and_failed_with_reasons_across_a_restart(
        hub_stack: Settings, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    proc = start_watch(drop)
    try:
        # an exporter copying under a temporary name, then renaming: only the finished file is taken
        partial = drop / "cho_ray.json.part"
        partial.write_bytes(BUNDLE.read_bytes()[:500])
        await asyncio.sleep(1.5)
        assert partial.exists()
        partial.write_bytes(BUNDLE.read_bytes())
        partial.rename(drop / "cho_ray.json")
        (drop / "ghi_chu.txt").write_text("Bệnh nhân ổn định, hẹn tái khám", encoding="utf-8")
        done = await wait_for(drop / "done" / "cho_ray.json.reason.txt")
        failed = await wait_for(drop / "failed" / "ghi_chu.txt.reason.txt")
    finally:
        first_out = stop(proc)
    assert "result: done" in done and "9 entries read, 8 accepted, 7 events published, 1 failures" in done
    assert "parse.invalid: Observation status" in done
    assert "result: failed" in failed and "not a format the hub reads" in failed
    assert "done: cho_ray.json" in first_out and "failed: ghi_chu.txt" in first_out
    assert not (drop / "cho_ray.json").exists() and (drop / "done" / "cho_ray.json").exists()

    key = "Bundle/bv-cho-ray-2026-11-30-0001"
    counted = lambda recs: [v for v in (orjson.loads(r.value) for r in recs)  # noqa: E731
                            if v["source"]["message_id"] == key and v["source"]["raw"]["topic"] == "emr.raw"]
    before = len(counted(await read_until(hub_stack, "events.canonical", lambda recs: len(counted(recs)) >= 7)))

    # restart: the ledger remembers; the same bytes under another name publish nothing
    proc = start_watch(drop)
    try:
        (drop / "cho_ray_lan_2.json").write_bytes(BUNDLE.read_bytes())
        duplicate = await wait_for(drop / "done" / "cho_ray_lan_2.json.reason.txt")
    finally:
        stop(proc)
    assert "result: duplicate" in duplicate and "not imported again: the same content" in duplicate
    assert "as cho_ray.json" in duplicate
    after = counted(await read_until(hub_stack, "events.canonical", lambda recs: False, timeout_s=3.0))
    assert len(after) == before  # nothing published for the duplicate


async def test_killed_mid_file_is_imported_again_with_the_same_event_ids(hub_stack: Settings, tmp_path: Path) -> None:
    """A real SIGKILL as soon as the watcher has begun the file, and a simulated crash after half of another
    file was published: in both, the restarted watcher imports the file again, every event id repeats rather
    than multiplies, the file lands in done/ once, and the record holds each dose once."""
    drop = tmp_path / "drop"
    drop.mkdir()
    ledger = Ledger(ledger_path(hub_stack))

    # 1. half a file already published (as if the process died half-way), the ledger left at 'started'
    half_cccd, doses = "079191004455", 12  # a CCCD consistent with the row (sex, 1991)
    full = rows("MID", doses, half_cccd, "Huỳnh Thị Mai", "03/04/1991")
    first_half = tmp_path / "first_half.csv"
    first_half.write_text("\n".join(full.splitlines()[: doses // 2 + 1]) + "\n", encoding="utf-8")
    hub_cli("import", str(first_half))
    staged = drop / "mid.csv.tmp"
    staged.write_text(full, encoding="utf-8")
    ledger.begin(sha256_of(staged), "mid.csv")

    # 2. a bigger file, the watcher killed once it has begun
    kill_cccd, many = "079191006677", 400  # 1: a woman born in the 1900s, 91: 1991
    big = rows("KILL", many, kill_cccd, "Đặng Ngọc Trâm", "17/11/1991")
    proc = start_watch(drop)
    try:
        (drop / "kill.csv.tmp").write_text(big, encoding="utf-8")
        (drop / "kill.csv.tmp").rename(drop / "kill.csv")
        sha = sha256_of(drop / "kill.csv")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while (entry := ledger.get(sha)) is None and loop.time() < deadline:
            await asyncio.sleep(0.05)
        assert entry is not None
    finally:
        stop(proc, signal.SIGKILL)

    staged.rename(drop / "mid.csv")
    proc = start_watch(drop)
    try:
        kill_reason = await wait_for(drop / "done" / "kill.csv.reason.txt")
        mid_reason = await wait_for(drop / "done" / "mid.csv.reason.txt")
    finally:
        stop(proc)
    ledger_entries = ledger.get(sha), ledger.get(sha256_of(drop / "done" / "mid.csv"))
    ledger.close()
    assert f"{many} rows read, {many} accepted, {2 * many} events published" in kill_reason
    assert f"{doses} rows read, {doses} accepted" in mid_reason
    assert [e.state for e in ledger_entries] == ["done", "done"] and ledger_entries[1].attempts == 2
    assert sorted(p.name for p in (drop / "done").iterdir() if not p.name.endswith(".txt")) == ["kill.csv", "mid.csv"]

    ids = {f"MID-{i}" for i in range(1, doses + 1)} | {f"KILL-{i}" for i in range(1, many + 1)}
    events = events_of(await read_until(hub_stack, "events.canonical", lambda recs: len(
        {e["event_id"] for e in events_of(recs, ids)}) >= 2 * (doses + many), timeout_s=90), ids)
    distinct = {e["event_id"] for e in events}
    assert len(distinct) == 2 * (doses + many)  # every row's two events, and no other id
    mid_ids = [e["event_id"] for e in events if e["source"]["message_id"].startswith("MID-")]
    assert len(mid_ids) == 2 * doses + 2 * (doses // 2)  # the first half published twice, with the same ids

    await wait_until_idle(hub_stack, timeout_s=120)
    record = await record_of(half_cccd, lambda r: len(r.get("immunizations", {})) >= doses)
    assert len(record["immunizations"]) == doses  # each dose once, although half of them arrived twice
    record = await record_of(kill_cccd, lambda r: len(r.get("immunizations", {})) >= many, timeout_s=120)
    assert len(record["immunizations"]) == many
