"""``hub backfill --input FILE.csv``: a vaccination-registry export into the hub through the batch driver.

Why not ``hub import`` alone: the streaming identity stage matches each event only against the rows indexed
before it, with streaming thresholds, so a city's export splits people (100k generated rows: 82,576 citizens
for 72,147 people) and costs ~1 ms of matching per event (~31 h for 9.1M rows). Batch linkage sees the whole
file at once with the same ``MatchModel`` (one implementation, two drivers). Three phases:

1. **plan**: batch linkage (``hub.identity.linkage``) clusters the rows; each cluster gets the citizen id
   ``hub link`` prints for it (``linkage.citizen_ids``). A cluster whose strong identifiers the MPI already
   links to a citizen this backfill did not mint (live traffic before the backfill) adopts that citizen; a
   citizen is adopted by one cluster at most (a wrong merge is worse than a split). The plan (``record_id,
   citizen_id`` per row, in file order) is saved under the state folder by the file's SHA-256, so a rerun
   or a restart after a crash uses the same assignment without linking again.
2. **seed**: every row's Patient event, as the import's own ``translate_row`` builds it, is filed in the
   streaming MPI under the row's cluster's citizen (``Resolver.index_ops``: the record, its identifiers' links
   (first writer wins), its blocking keys, the citizen's list of records), in pipelined script calls, one
   batch in flight at a time so the order of writes, and so the state, never depends on timing. An event whose
   record (same demographics) was already filed under another citizen is left as it is: the identity stage
   will follow that record, and the report counts it. The row's Immunization is not filed: the identity stage
   gives it its Patient's citizen (same source and subject, in the same batch or the ones just before). Only an
   identity worker restarted between a row's two events would match the Immunization on its own (it would
   find the citizen by the row's identifiers); filing both events cost twice the seed's time.
3. **import**: ``hub.ops.file_import``, the registry path (raw rows to ``emr.raw``, events with
   deterministic ids to ``events.canonical``, bad rows to ``hub.dlq``). The identity role finds each event's
   record already filed, unchanged, and takes its citizen without matching; the record role builds the
   records. Later live events for these people are matched against the seeded index like any other.

Idempotent and kill-safe: the plan is fixed once saved, every seed write sets, appends-unless-present or
links-if-absent the same values, and event ids are deterministic; a rerun after a crash anywhere ends in
the same MPI and records (Kafka may hold some raw rows and events twice, which the stages absorb).
Limit: the seeded links are MPI state decided offline, so the saved plan (not a replay of
``events.canonical`` into an empty MPI) is what reproduces them.

Nothing here logs personal data: counts, times and file names only.
"""

from __future__ import annotations

import asyncio
import csv
import os
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis.asyncio as aioredis

from connectors.registry import BadRow, iter_values, row_of, translate_row
from hub.envelope import SYSTEM_BHXH, SYSTEM_CCCD, SYSTEM_OLD_ID, SYSTEM_PASSPORT, Identifier
from hub.errors import HubError
from hub.identity.linkage import citizen_ids, link_prepared, paused_gc
from hub.identity.model import MatchSettings
from hub.identity.mpi_store import MpiStore, Op, RedisMpiStore, identity_key, link_slot
from hub.identity.records import Prepared, SourceRecord, prepare
from hub.identity.resolve import Resolver
from hub.ops.formats import utf8_lines
from hub.ops.watch import sha256_of
from hub.settings import Settings

PLAN_HEADER = ("record_id", "citizen_id")
_SEED_OPS = 20_000  # writes per pipelined call: ~1,000 rows
_READ_SLOTS = 20_000
_STRONG = (("cmnd", SYSTEM_OLD_ID), ("passport", SYSTEM_PASSPORT), ("bhxh", SYSTEM_BHXH))

Say = Callable[[str], None]


class BackfillError(HubError):
    """The backfill cannot go on (the file is not a registry export, the saved plan does not fit it)."""

    code = "backfill"


@dataclass
class BackfillReport:
    """Counts and seconds per phase: what ``hub backfill`` prints (no personal data)."""

    path: str
    rows: int = 0  # readable rows (the plan covers each)
    unreadable: int = 0  # rows the reader rejected: the import dead-letters them
    citizens: int = 0  # clusters in the plan
    adopted: int = 0  # clusters that took a citizen the MPI already had
    adoption_conflicts: int = 0  # clusters whose identifiers named a citizen another cluster had adopted
    plan_reused: bool = False
    seeded: int = 0  # rows filed in the MPI (all of their events, or some: already_filed)
    untranslatable: int = 0  # rows translate_row rejects: not seeded, dead-lettered by the import
    already_filed: int = 0  # rows with an event whose record was already filed under another citizen
    seconds: dict[str, float] = field(default_factory=dict)  # plan / seed / import
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    imported: list[str] = field(default_factory=list)  # the import's summary lines

    def as_dict(self) -> dict:
        return asdict(self)

    def summary_lines(self) -> list[str]:
        phases = "  ".join(f"{name} {s:.1f} s (cpu {self.cpu_seconds.get(name, 0):.1f})"
                           for name, s in self.seconds.items())
        return [f"{self.path}: {self.rows:,} rows ({self.unreadable:,} unreadable), {self.citizens:,} citizens "
                f"({'saved plan' if self.plan_reused else 'linked'}; {self.adopted:,} already in the MPI, "
                f"{self.adoption_conflicts:,} adoption conflicts)",
                f"  seeded {self.seeded:,} rows into the MPI ({self.untranslatable:,} untranslatable, "
                f"{self.already_filed:,} following a record filed before)",
                f"  {phases}  peak memory {self.peak_rss_mb:,.0f} MB",
                *self.imported]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def plan_path(settings: Settings, digest: str) -> Path:
    return settings.state_dir / "backfill" / f"{digest[:32]}.plan.csv"


def read_rows(path: Path, bad: list[BadRow] | None = None) -> Iterator[tuple[int, list[str]]]:
    """The readable rows, as the import reads them (a line that is not UTF-8 is a bad row there and here)."""
    with open(path, "rb") as raw:
        for item in iter_values(utf8_lines(raw, {})):
            if isinstance(item, BadRow):
                if bad is not None:
                    bad.append(item)
                continue
            yield item


def _source_record(values: list[str]) -> SourceRecord:
    """The matcher's view of a row: the columns ``hub link`` reads (``hub.identity.registry``)."""
    return SourceRecord(record_id=values[0], name=values[1], birth_date=values[2], sex=values[3],
                        personal_id=values[4], insurance=values[5], phone=values[6], address=values[7],
                        ward=values[8], facility=values[14], event_date=values[13])


def strong_keys(secret: bytes, p: Prepared) -> list[str]:
    """Identity keys of a prepared row's strong identifiers, as the MPI links them."""
    out = [identity_key(secret, Identifier(SYSTEM_CCCD, p.cccd))] if p.cccd and p.cccd_ok else []
    for kind, system in _STRONG:
        value = getattr(p, kind)
        if value:
            out.append(identity_key(secret, Identifier(system, value)))
    return out


async def adopt_existing(store: MpiStore, secret: bytes, prepared: list[Prepared], offsets, members,
                         ids: list[str], report: BackfillReport) -> None:
    """Clusters whose identifiers the MPI already links to a citizen not minted here take that citizen
    (in place in ``ids``); each existing citizen goes to the first such cluster only."""
    minted = set(ids)
    adopted: set[str] = set()
    clusters = len(offsets) - 1
    start = 0
    while start < clusters:
        keys: dict[int, list[str]] = {}
        count = 0
        end = start
        while end < clusters and count < _READ_SLOTS:
            group = members[offsets[end]:offsets[end + 1]]
            own = list(dict.fromkeys(k for i in group for k in strong_keys(secret, prepared[i])))
            if own:
                keys[end] = own
                count += len(own)
            end += 1
        slots = list(dict.fromkeys(link_slot(k) for own in keys.values() for k in own))
        found = dict(zip(slots, await store.get(slots), strict=True)) if slots else {}
        for c, own in keys.items():
            held = [v.decode() for v in (found[link_slot(k)] for k in own) if v is not None]
            foreign = [h for h in dict.fromkeys(held) if h not in minted]
            if not foreign:
                continue
            choice = next((h for h in foreign if h not in adopted), None)
            if choice is None:
                report.adoption_conflicts += 1
                continue
            if len(foreign) > 1:
                report.adoption_conflicts += 1
            adopted.add(choice)
            report.adopted += 1
            first = members[offsets[c]]
            old = ids[first]
            for i in members[offsets[c]:offsets[c + 1]]:
                if ids[i] == old:
                    ids[i] = choice
        start = end


async def make_plan(path: Path, out: Path, settings: Settings, store: MpiStore, report: BackfillReport,
                    match: MatchSettings | None = None, say: Say | None = None) -> None:
    """Phase 1: link the file, name the clusters, adopt existing citizens; write the plan atomically."""
    bad: list[BadRow] = []
    with paused_gc():
        prepared = [prepare(_source_record(values), i) for i, (_, values) in enumerate(read_rows(path, bad))]
        if say:
            say(f"read {len(prepared):,} rows; linking")
        result = link_prepared(prepared, match, progress=say)
        ids = citizen_ids(result, prepared, settings.pseudonym_key)
        offsets, members = result.members()
        await adopt_existing(store, settings.pseudonym_key, prepared, offsets, members, ids, report)
        report.rows, report.unreadable, report.citizens = len(prepared), len(bad), result.cluster_count
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(PLAN_HEADER)
            w.writerows(zip(result.record_ids, ids))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)  # a crash leaves no half plan
        del prepared, result, offsets, members, ids


def read_plan(plan: Path) -> Iterator[tuple[str, str]]:
    with open(plan, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        if tuple(next(reader, ())) != PLAN_HEADER:
            raise BackfillError(f"{plan} is not a backfill plan")
        for row in reader:
            yield row[0], row[1]


def plan_summary(plan: Path) -> tuple[int, int]:
    """(rows, citizens) of a saved plan."""
    rows, citizens = 0, set()
    for _, cid in read_plan(plan):
        rows += 1
        citizens.add(cid)
    return rows, len(citizens)


def _record_ref(ops: list[Op]) -> str:
    """The record ref ``index_ops`` files: the field of its record write (``r:`` bucket, op S)."""
    return next(slot[2] for slot, op, _ in ops if op == "S" and slot[1].startswith("r:"))


async def seed(path: Path, plan: Path, settings: Settings, store: MpiStore, report: BackfillReport,
               say: Say | None = None) -> None:
    """Phase 2: file every row under its planned citizen in the streaming MPI (see the module docstring)."""
    resolver = Resolver(store, settings.pseudonym_key)
    received_at = "1970-01-01T07:00:00+07:00"  # the subject, all the MPI reads, does not depend on it
    filed: dict[str, str] = {}  # record ref -> the citizen it was filed under in this run
    ops: list[Op] = []
    pending: asyncio.Task | None = None
    planned = read_plan(plan)
    done = 0
    for line, values in read_rows(path):
        rid, cid = next(planned, ("", ""))
        if rid != values[0]:
            raise BackfillError(f"the saved plan {plan} does not match line {line} of {path}: delete it and rerun")
        done += 1
        try:
            events = translate_row(row_of(line, values).fields, received_at=received_at).events
        except HubError:
            report.untranslatable += 1
            continue
        followed = False
        for envelope in events:
            if envelope.payload.get("resourceType") != "Patient":
                continue  # the Immunization follows its Patient in the identity stage (module docstring)
            event_ops = resolver.index_ops(envelope, cid)
            if filed.setdefault(_record_ref(event_ops), cid) != cid:
                followed = True
                continue
            ops += event_ops
        report.seeded += 1
        report.already_filed += followed
        if len(ops) >= _SEED_OPS:
            if pending is not None:
                await pending
            pending, ops = asyncio.ensure_future(store.write(ops)), []
        if say and done % 200_000 == 0:
            say(f"seeded {done:,} rows")
    if next(planned, None) is not None:
        raise BackfillError(f"the saved plan {plan} has more rows than {path}: delete it and rerun")
    if pending is not None:
        await pending
    if ops:
        await store.write(ops)


async def backfill(settings: Settings, path: Path, *, match: MatchSettings | None = None, output: Path | None = None,
                   import_file: bool = True, progress=None, say: Say | None = None) -> BackfillReport:
    """All three phases; returns the report. ``import_file=False`` stops after seeding."""
    report = BackfillReport(str(path))
    client = aioredis.from_url(settings.redis_url)
    store = RedisMpiStore(client)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        plan = plan_path(settings, sha256_of(path))
        if plan.exists():
            report.plan_reused = True
            report.rows, report.citizens = plan_summary(plan)
        else:
            await make_plan(path, plan, settings, store, report, match, say)
        if output is not None:
            output.write_bytes(plan.read_bytes())
        t1, c1 = time.perf_counter(), time.process_time()
        report.seconds["plan"], report.cpu_seconds["plan"] = t1 - t0, c1 - c0
        if say:
            say(f"plan: {report.citizens:,} citizens for {report.rows:,} rows; seeding the MPI")
        await seed(path, plan, settings, store, report, say)
        t2, c2 = time.perf_counter(), time.process_time()
        report.seconds["seed"], report.cpu_seconds["seed"] = t2 - t1, c2 - c1
    finally:
        await client.aclose()
    if import_file:
        from hub.ops.file_import import import_files

        if say:
            say("importing the rows as events")
        [result] = await import_files(settings, [path], progress)
        report.imported = result.summary_lines()
        report.seconds["import"] = time.perf_counter() - t2
        report.cpu_seconds["import"] = time.process_time() - c2
        if not result.readable:
            raise BackfillError(f"import of {path}: {result.error}")
    report.peak_rss_mb = _peak_mb()
    return report


async def caught_up(settings: Settings, roles: tuple[str, ...] = ("identity", "record")) -> tuple[bool, int]:
    """Whether the roles' consumer groups have consumed every partition to its end; their total lag."""
    from hub.ops.lag import group_of, measure

    groups = [group_of(r) for r in roles]
    rows = await measure(settings, groups, seconds=False)
    seen = {g: 0 for g in groups}
    lag = 0
    for row in rows:
        seen[row.group] += 1
        lag += row.lag
    return all(n >= settings.topic_partitions for n in seen.values()) and lag == 0, lag


async def wait_caught_up(settings: Settings, timeout_s: float, say: Say | None = None) -> bool:
    """Poll until the identity and record roles have consumed everything (the backfill is then in the records)."""
    deadline = time.monotonic() + timeout_s
    last = 0.0
    while True:
        done, lag = await caught_up(settings)
        if done:
            return True
        if time.monotonic() > deadline:
            return False
        if say and time.monotonic() - last > 30:
            last = time.monotonic()
            say(f"identity and record: {lag:,} events to go")
        await asyncio.sleep(2)
