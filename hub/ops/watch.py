"""``hub watch DIR``: a drop folder as a connector. Hospitals' export scripts copy files in; each is imported
once and moved to ``DIR/done/`` or ``DIR/failed/`` with a ``<name>.reason.txt`` next to it.

- **Once per content.** A ledger keyed by the file's SHA-256 (SQLite in the state dir, committed before and
  after each import) remembers what was imported. The same bytes dropped again, under any name, are moved
  to done/ with a reason saying so, and nothing is published.
- **Not half-way.** Hidden files and temporary names (``.tmp``, ``.part``, ``.partial``, ``.crdownload``,
  ``~`` ...) are ignored; a file is taken only when its size and mtime have not changed for
  ``HSSK_WATCH_SETTLE_S`` and again after hashing. Writers should copy under a temporary name and rename.
- **Restarts.** The ledger says ``started`` before the import and ``done``/``failed`` after it; the file is
  moved last. A crash mid-file leaves ``started`` and the file in place, so the next run imports it again:
  the events carry the same deterministic ids, and downstream absorbs them (the record stage keys each
  resource by its id, and an event that changes nothing emits no ``record.changes``; the warehouse upserts by
  resource id; HL7 v2 resends are recognised by the listener's dedup). emr.raw may hold the raw record twice
  (it is a log), and the second events point at the second copy. A crash after ``done`` but before the move
  finds the file's hash done at the next start and moves it without importing.
- **Transient failures** (Kafka not confirming) leave the file in place and the ledger at ``started``; the
  next poll retries. ``failed/`` is only for files whose content cannot be read.

Polling (``HSSK_WATCH_POLL_S``), not inotify: it works the same on network shares, where drop folders live.
One watcher per folder: a second one on the same folder refuses to start (a lock file, ``DIR/.hub-watch.lock``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import hashlib
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from connectors.mllp.ack import VN_TZ
from hub.errors import DeliveryError
from hub.logging import get_logger
from hub.ops.file_import import FileReport, Importer, Progress
from hub.settings import Settings

log = get_logger("watch")

DONE, FAILED = "done", "failed"
LOCK_NAME = ".hub-watch.lock"
REASON_SUFFIX = ".reason.txt"
TEMP_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".filepart", ".download", ".swp", "~")


def is_candidate(name: str) -> bool:
    """A finished file, by its name: not hidden, not a temporary name, not one of our reason files."""
    lowered = name.lower()
    return not name.startswith((".", "~$")) and not lowered.endswith(TEMP_SUFFIXES) and \
        not lowered.endswith(REASON_SUFFIX)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _now() -> str:
    return datetime.now(VN_TZ).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    sha256: str
    state: str  # started, done, failed
    name: str
    attempts: int
    finished_at: str | None
    reason: str


class Ledger:
    """What has been imported, by content hash; SQLite, so each state change is durable when it returns."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)  # autocommit: every statement is durable
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("""CREATE TABLE IF NOT EXISTS files (
            sha256 TEXT PRIMARY KEY, state TEXT NOT NULL, name TEXT NOT NULL, attempts INTEGER NOT NULL,
            started_at TEXT NOT NULL, finished_at TEXT, reason TEXT NOT NULL DEFAULT '')""")

    def get(self, sha256: str) -> LedgerEntry | None:
        row = self._db.execute("SELECT sha256, state, name, attempts, finished_at, reason FROM files "
                               "WHERE sha256 = ?", (sha256,)).fetchone()
        return LedgerEntry(*row) if row else None

    def begin(self, sha256: str, name: str) -> None:
        self._db.execute("""INSERT INTO files (sha256, state, name, attempts, started_at) VALUES (?, 'started', ?, 1, ?)
            ON CONFLICT(sha256) DO UPDATE SET state = 'started', name = excluded.name, attempts = attempts + 1,
            started_at = excluded.started_at, finished_at = NULL""", (sha256, name, _now()))

    def finish(self, sha256: str, state: str, reason: str) -> None:
        self._db.execute("UPDATE files SET state = ?, finished_at = ?, reason = ? WHERE sha256 = ?",
                         (state, _now(), reason, sha256))

    def close(self) -> None:
        self._db.close()


@dataclass(frozen=True, slots=True)
class Outcome:
    name: str
    result: str  # done, failed, duplicate, retry
    lines: tuple[str, ...]  # the summary (or reason) written next to the file


class Watcher:
    """One drop folder. ``poll()`` looks once and imports what is ready; ``run()`` polls until cancelled."""

    def __init__(self, settings: Settings, folder: Path, importer: Importer, ledger: Ledger, *,
                 settle_s: float | None = None) -> None:
        self.folder = folder
        self.importer = importer
        self.ledger = ledger
        self.settle_s = settings.watch_settle_s if settle_s is None else settle_s
        self._seen: dict[str, tuple[tuple[int, int], float]] = {}  # name -> (size, mtime_ns), first seen at
        for sub in (DONE, FAILED):
            (folder / sub).mkdir(parents=True, exist_ok=True)

    def pending(self) -> int:
        """Files seen but not yet settled (or left for a retry)."""
        return len(self._seen)

    def _ready(self) -> list[Path]:
        now = time.monotonic()
        ready: list[Path] = []
        present: set[str] = set()
        for entry in sorted(os.scandir(self.folder), key=lambda e: e.name):
            if not entry.is_file(follow_symlinks=False) or not is_candidate(entry.name):
                continue
            present.add(entry.name)
            stat = entry.stat(follow_symlinks=False)
            signature = (stat.st_size, stat.st_mtime_ns)
            previous = self._seen.get(entry.name)
            if previous is None or previous[0] != signature:
                self._seen[entry.name] = (signature, now)
            elif now - previous[1] >= self.settle_s:
                ready.append(Path(entry.path))
        for gone in set(self._seen) - present:
            del self._seen[gone]
        return ready

    async def poll(self) -> list[Outcome]:
        outcomes = []
        for path in self._ready():
            outcome = await self._process(path)
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    async def _process(self, path: Path) -> Outcome | None:
        signature = self._seen[path.name][0]
        sha = await asyncio.to_thread(sha256_of, path)
        stat = path.stat()
        if (stat.st_size, stat.st_mtime_ns) != signature:  # written to while we hashed: not finished yet
            self._seen[path.name] = ((stat.st_size, stat.st_mtime_ns), time.monotonic())
            return None
        known = self.ledger.get(sha)
        if known is not None and known.state in (DONE, FAILED):
            verb = "imported" if known.state == DONE else "failed"
            lines = (f"not imported again: the same content (sha256 {sha}) was already {verb} as {known.name} "
                     f"at {known.finished_at}", *known.reason.splitlines())
            return self._move(path, known.state, "duplicate", sha, lines)
        self.ledger.begin(sha, path.name)
        log.info("watch importing", file=path.name, sha256=sha[:16], attempt=(known.attempts + 1) if known else 1)
        try:
            report = await self.importer.import_file(path)
        except (DeliveryError, OSError, asyncio.TimeoutError) as exc:
            log.warning("watch import interrupted; the file stays for the next poll", file=path.name,
                        error=getattr(exc, "reason", type(exc).__name__))
            self._seen[path.name] = (signature, time.monotonic())
            return Outcome(path.name, "retry", (f"Kafka did not confirm: {getattr(exc, 'reason', exc)}",))
        except Exception as exc:  # a reader bug must cost this file, not the folder (and not loop on it)
            log.exception("watch import failed unexpectedly", file=path.name)
            lines = (f"{path.name}: not imported: unexpected {type(exc).__name__} while importing (a bug; after "
                     "the fix, import the file with `hub import`)",)
            self.ledger.finish(sha, FAILED, lines[0])
            return self._move(path, FAILED, FAILED, sha, lines)
        state = DONE if report.readable and report.read else FAILED
        lines = tuple(_summary(report))
        self.ledger.finish(sha, state, "\n".join(lines))
        return self._move(path, state, state, sha, lines)

    def _move(self, path: Path, folder: str, result: str, sha: str, lines: tuple[str, ...]) -> Outcome:
        target = self.folder / folder / path.name
        if target.exists():
            target = target.with_name(f"{path.stem}-{sha[:12]}{path.suffix}")
        reason = target.with_name(target.name + REASON_SUFFIX)
        temp = reason.with_name(f".{reason.name}.tmp")
        temp.write_text("\n".join((f"file: {path.name}", f"sha256: {sha}", f"result: {result}", f"at: {_now()}",
                                   *lines)) + "\n", encoding="utf-8")
        os.replace(temp, reason)
        os.replace(path, target)
        self._seen.pop(path.name, None)
        log.info("watch moved", file=path.name, result=result, to=folder)
        return Outcome(path.name, result, lines)


def _summary(report: FileReport) -> list[str]:
    lines = report.summary_lines()
    if report.readable and not report.read:
        lines = [f"{report.path}: not imported: nothing to read in it"]
    return lines


def print_outcome(outcome: Outcome) -> None:
    print(f"{outcome.result}: {outcome.name}\n" + "\n".join(f"  {line}" for line in outcome.lines), flush=True)


class FolderBusy(RuntimeError):
    """Another watcher holds the folder's lock."""


@contextlib.contextmanager
def folder_lock(folder: Path):  # type: ignore[no-untyped-def]
    """Hold ``DIR/.hub-watch.lock`` (flock) while watching: two watchers would race for the same files."""
    with open(folder / LOCK_NAME, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise FolderBusy(f"{folder} is already watched (pid {handle.read().strip() or '?'})") from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


async def watch(settings: Settings, folder: Path, *, once: bool = False, facility: str | None = None,
                progress: Progress | None = None, on_outcome: Callable[[Outcome], None] = print_outcome) -> int:
    """Poll ``folder`` until cancelled (or, with ``once``, until nothing is left to settle: then 0, or 1 when a
    file had to be left for a retry)."""
    ledger = Ledger(ledger_path(settings))
    try:
        with folder_lock(folder):
            return await _watch(settings, folder, once, facility, progress, on_outcome, ledger)
    finally:
        ledger.close()


async def _watch(settings: Settings, folder: Path, once: bool, facility: str | None, progress: Progress | None,
                 on_outcome: Callable[[Outcome], None], ledger: Ledger) -> int:
    async with Importer(settings, progress, facility) as importer:
        watcher = Watcher(settings, folder, importer, ledger)
        print(f"watching {folder} (every {settings.watch_poll_s:g} s; files settle for {watcher.settle_s:g} s)",
              flush=True)
        while True:
            outcomes = await watcher.poll()
            for outcome in outcomes:
                on_outcome(outcome)
            if once and any(o.result == "retry" for o in outcomes):
                return 1  # Kafka did not confirm: the file stays for the next run
            if once and not watcher.pending():
                return 0
            await asyncio.sleep(settings.watch_poll_s if not once else min(settings.watch_poll_s, 0.5))


def ledger_path(settings: Settings) -> Path:
    return settings.state_dir / "watch" / "ledger.sqlite3"


def run(settings: Settings, folder: Path, *, once: bool, facility: str | None, progress: Progress | None) -> int:
    """The command's body: SIGTERM/SIGINT end the watch; a file being imported then is imported again next time."""

    async def main() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
        with contextlib.suppress(asyncio.CancelledError):
            return await watch(settings, folder, once=once, facility=facility, progress=progress)
        return 0

    return asyncio.run(main())


def cmd_watch(settings: Settings, args: argparse.Namespace) -> int:
    from hub.ops.progress import TqdmProgress

    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"hub watch: {folder} is not a folder", file=sys.stderr)
        return 2
    if args.poll is not None or args.settle is not None:
        settings = replace(settings, watch_poll_s=args.poll if args.poll is not None else settings.watch_poll_s,
                           watch_settle_s=args.settle if args.settle is not None else settings.watch_settle_s)
    try:
        return run(settings, folder, once=args.once, facility=args.facility, progress=TqdmProgress())
    except FolderBusy as exc:
        print(f"hub watch: {exc}", file=sys.stderr)
        return 2
    except (DeliveryError, OSError, asyncio.TimeoutError) as exc:
        print(f"hub watch: Kafka not reachable: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 2


def add_watch_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    watch_cmd = sub.add_parser("watch", help="import every file dropped into a folder, once per content (ledger "
                                             "by SHA-256), then move it to done/ or failed/ with a reason file")
    watch_cmd.add_argument("folder", metavar="DIR")
    watch_cmd.add_argument("--once", action="store_true", help="import what is there, then exit")
    watch_cmd.add_argument("--facility", help="facility code (MA_CSKCB) for files that do not name one")
    watch_cmd.add_argument("--poll", type=float, help="seconds between looks (default HSSK_WATCH_POLL_S, 2)")
    watch_cmd.add_argument("--settle", type=float, help="seconds a file must stay unchanged before it is taken "
                                                        "(default HSSK_WATCH_SETTLE_S, 2)")
    watch_cmd.set_defaults(func=cmd_watch)
