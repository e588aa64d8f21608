"""The vaccination-registry backfill: generated registry rows through ``hub backfill`` (batch linkage, MPI seed,
import), then the identity and record roles; the streaming-only ``hub import`` as the same-run baseline.

    .venv/bin/python -m bench.backfill [--rows 100000] [--baseline-rows 10000] [--seed 7] [--keep]

The city's export is 9,148,769 rows for 6,593,186 people. This bench generates ``--rows`` of them with their
hidden truth (``hub.identity.population``: households, twins, newborns under the mother's name, typos,
missing and re-issued ID numbers), starts its own stack (bench ports + 750, ``.hub-bench-backfill``: Kafka,
Redis and the identity and record roles only), and runs two paths on it:

1. baseline (``--baseline-rows``, 0 to skip): ``hub import`` alone, every row matched by the streaming MPI
   as it arrives (the path before ``hub backfill``), on its own generated file, until both roles are at lag 0.
   Then Redis is emptied and the roles restarted, so the backfill starts from an empty hub.
2. ``hub backfill --input FILE --json`` in a child process (its phases: plan = batch linkage, seed = the MPI
   filled through ``Resolver.index_ops``, import = the registry import), then until both roles are at lag 0.

For each it prints the wall time of every phase (and the CPU seconds of the process that ran it), rows/s,
the peak resident memory of every process (backfill or import child, identity, record, Kafka, Redis; VmHWM
from /proc) with the CPU seconds each used, the citizens in Redis (records the record role keeps, merge
redirects not counted) against the generator's true number of people, and the pairwise precision / recall
/ F1 (``hub.identity.evaluate``) of the citizen each row's Patient event got on ``events.citizen`` (what the
identity role decided, read back) against the truth. Load averages are printed: the machine is shared.
When ``--rows`` is below the city's size, the full size is extrapolated (labelled, not a measurement).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import redis

from bench.stack import bench_env
from hub.settings import REPO_ROOT, Settings

CITY_ROWS = 9_148_769
CITY_PEOPLE = 6_593_186
ROLES = ("identity", "record")
PORT_OFFSET = 750
_TICK = os.sysconf("SC_CLK_TCK")


def _hwm_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a live process, in MB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _service_pid(settings: Settings, name: str) -> int | None:
    try:
        return int((settings.state_dir / name / f"{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None


class PeakWatcher:
    """Samples the peak memory and CPU of a child while it runs: its /proc entry goes when it exits."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_mb, self.cpu_s = pid, 0.0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.peak_mb = max(self.peak_mb, _hwm_mb(self.pid), *self._children())
            self.cpu_s = max(self.cpu_s, _cpu_s(self.pid))

    def _children(self) -> list[float]:
        try:
            kids = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            return []
        return [_hwm_mb(int(k)) for k in kids]  # the import's mapping workers (each counted on its own)

    def stop(self) -> tuple[float, float]:
        self._stop.set()
        self._thread.join()
        return self.peak_mb, self.cpu_s


def read_truth(truth: Path) -> dict[str, str]:
    with open(truth, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        next(reader, None)
        return {row[0]: row[1] for row in reader if len(row) > 1}


def citizens_in_redis(settings: Settings) -> tuple[int, int]:
    """(citizens with a record, merge redirects) among the record role's keys."""
    from hub.record.merge import is_redirect

    client = redis.Redis.from_url(settings.redis_url)
    keys = [k for k in client.scan_iter(match="record:*", count=10_000) if k.count(b":") == 1]
    live = redirects = 0
    for start in range(0, len(keys), 5000):
        for raw in client.mget(keys[start:start + 5000]):
            if raw is None:
                continue
            if is_redirect(orjson.loads(raw)):
                redirects += 1
            else:
                live += 1
    client.close()
    return live, redirects


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "bench-backfill-offsets"})
    try:
        meta = c.list_topics(topic, timeout=30).topics[topic]
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in meta.partitions}
    finally:
        c.close()


def assignments(settings: Settings, since: dict[int, int]) -> dict[str, str]:
    """record_id -> citizen_id of every registry Patient event on events.citizen after ``since`` (partition ->
    offset): what the identity role decided."""
    from confluent_kafka import Consumer, TopicPartition

    from hub.topics import EVENTS_CITIZEN

    topic = EVENTS_CITIZEN.name
    until = end_offsets(settings, topic)
    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "bench-backfill-read",
                  "enable.auto.commit": False, "fetch.max.bytes": 64 << 20})
    c.assign([TopicPartition(topic, p, since.get(p, 0)) for p in until if until[p] > since.get(p, 0)])
    left = {p for p in until if until[p] > since.get(p, 0)}
    out: dict[str, str] = {}
    try:
        while left:
            for msg in c.consume(10_000, timeout=5):
                if msg.error():
                    continue
                value = msg.value()
                if b'"patient.updated"' in value:
                    doc = orjson.loads(value)
                    if doc["source"]["system"] == "registry":
                        out[doc["source"]["message_id"]] = doc["citizen_id"]
                if msg.offset() + 1 >= until[msg.partition()]:
                    left.discard(msg.partition())
    finally:
        c.close()
    return out


async def caught_up(settings: Settings) -> tuple[bool, int]:
    from hub.ops.backfill import caught_up as roles_caught_up

    return await roles_caught_up(settings, ROLES)


def wait_for_roles(settings: Settings, timeout_s: float) -> bool:
    deadline = time.perf_counter() + timeout_s
    done, _ = asyncio.run(caught_up(settings))
    while not done and time.perf_counter() < deadline:
        time.sleep(2)
        done, _ = asyncio.run(caught_up(settings))
    return done


@dataclass
class PathRun:
    name: str
    rows: int
    people: int
    phases: list[tuple[str, float, float]] = field(default_factory=list)  # (phase, wall s, cpu s)
    peaks: dict[str, tuple[float, float]] = field(default_factory=dict)  # process -> (peak MB, CPU s)
    caught_up: bool = False
    citizens: int = 0
    redirects: int = 0
    scores: object = None
    plan_scores: object = None  # the backfill's plan (batch linkage) against the truth
    assigned: int = 0
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)
    note: str = ""


def run_path(settings: Settings, env: dict[str, str], name: str, argv: list[str], csv_path: Path, truth: Path,
             pids: dict[str, int], timeout_s: float) -> PathRun:
    """One path (baseline import or backfill) in a child process, then until the roles are at lag 0."""
    from hub.identity.evaluate import pairwise
    from hub.topics import EVENTS_CITIZEN

    truth_map = read_truth(truth)
    if argv[0] == "backfill":
        argv = [*argv, "--output", str(csv_path.with_suffix(".plan.csv"))]
    run = PathRun(name, len(truth_map), len(set(truth_map.values())))
    since = end_offsets(settings, EVENTS_CITIZEN.name)
    cpu0 = {role: _cpu_s(pid) for role, pid in pids.items()}
    services = {s: _service_pid(settings, s) for s in ("kafka", "redis")}
    svc0 = {s: _cpu_s(pid) if pid else 0.0 for s, pid in services.items()}
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "hub.cli", *argv], env={**os.environ, **env}, cwd=REPO_ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watcher = PeakWatcher(child.pid)
    out, err = child.communicate()
    child_s = time.perf_counter() - started
    child_peak, child_cpu = watcher.stop()
    if child.returncode != 0:
        raise SystemExit(f"hub {' '.join(argv)} failed ({child.returncode}):\n{err[-3000:]}")
    if argv[0] == "backfill":
        report = orjson.loads(out.strip().splitlines()[-1])
        for phase in ("plan", "seed", "import"):
            run.phases.append((phase, report["seconds"][phase], report["cpu_seconds"][phase]))
        run.note = (f"{report['citizens']:,} planned citizens, {report['adopted']:,} adopted, "
                    f"{report['already_filed']:,} rows following an identical record")
    else:
        run.phases.append(("import", child_s, child_cpu))
    t = time.perf_counter()
    run.caught_up = wait_for_roles(settings, timeout_s)
    run.phases.append(("stages catch up after it", time.perf_counter() - t, 0.0))
    run.phases.append(("total", time.perf_counter() - started, 0.0))
    run.peaks[f"{argv[0]} child"] = (child_peak, child_cpu)
    for role, pid in pids.items():
        run.peaks[f"{role} role"] = (_hwm_mb(pid), _cpu_s(pid) - cpu0[role])
    for s, pid in services.items():
        run.peaks[s] = (_hwm_mb(pid) if pid else 0.0, (_cpu_s(pid) - svc0[s]) if pid else 0.0)
    run.citizens, run.redirects = citizens_in_redis(settings)
    got = assignments(settings, since)
    run.assigned = len(got)
    run.scores = pairwise(got, truth_map)
    if argv[0] == "backfill":
        from hub.identity.evaluate import read_mapping

        run.plan_scores = pairwise(read_mapping(csv_path.with_suffix(".plan.csv")), truth_map)
    run.load = os.getloadavg()
    return run


def print_run(run: PathRun) -> None:
    print(f"{run.name}: {run.rows:,} rows of {run.people:,} people (truth); load at its end "
          f"{run.load[0]:.1f}/{run.load[1]:.1f}/{run.load[2]:.1f}" + (f"; {run.note}" if run.note else ""))
    for phase, wall, cpu in run.phases:
        cpu_text = f"  cpu {cpu:8.1f} s" if cpu else ""
        print(f"  {phase:<26} {wall:8.1f} s  {run.rows / wall:>9,.0f} rows/s{cpu_text}")
    cpu = sum(c for _, c in run.peaks.values())
    print(f"  CPU of all processes {cpu:,.0f} s = {cpu / run.rows * 1000:.2f} ms per row")
    print("  peak RSS / CPU   " + ", ".join(f"{name} {mb:,.0f} MB / {cpu:,.0f} s" for name, (mb, cpu) in
                                            run.peaks.items()))
    state = "" if run.caught_up else "  (identity + record NOT caught up: figures are partial)"
    print(f"  citizens in Redis {run.citizens:,} (+{run.redirects:,} merge redirects) vs {run.people:,} people "
          f"({run.citizens / max(run.people, 1):.3f}x){state}")
    s = run.scores
    print(f"  events.citizen: {run.assigned:,} rows resolved; pairwise precision {s.precision:.5f}  recall "
          f"{s.recall:.5f}  F1 {s.f1:.5f}  ({s.clusters:,} citizens for {s.persons:,} people)")
    if run.plan_scores is not None:
        s = run.plan_scores
        print(f"  the plan (batch linkage, every row): precision {s.precision:.5f}  recall {s.recall:.5f}  "
              f"F1 {s.f1:.5f}  ({s.clusters:,} citizens for {s.persons:,} people)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--baseline-rows", type=int, default=10_000, help="streaming-only import (0: skip)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="leave the bench stack running afterwards")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up waiting for the roles after N s")
    args = parser.parse_args()
    env = {**bench_env("backfill", PORT_OFFSET), "HSSK_START_TIMEOUT": "300"}  # a loaded machine starts slowly
    os.environ.update(env)
    settings = Settings.from_env()
    from hub.identity.population import write_files
    from hub.ops import local
    from hub.topics import ensure_topics

    load_start = os.getloadavg()
    for role in ROLES:
        local.stop_role(settings, role)
    local.stack("stop", settings)
    shutil.rmtree(settings.state_dir, ignore_errors=True)
    settings.state_dir.mkdir(parents=True)
    data = settings.state_dir / "data"
    data.mkdir()
    started = time.perf_counter()
    files = {"backfill": (data / "registry.csv", data / "truth.csv")}
    write_files(args.rows, *files["backfill"], seed=args.seed)
    if args.baseline_rows:
        files["baseline"] = (data / "baseline.csv", data / "baseline-truth.csv")
        write_files(args.baseline_rows, *files["baseline"], seed=args.seed + 1)
    generate_s = time.perf_counter() - started
    runs: list[PathRun] = []
    try:
        if local.stack("start", settings) != 0:
            return 1
        asyncio.run(ensure_topics(settings))
        pids = {role: local.start_role(settings, role) for role in ROLES}
        time.sleep(3)  # the roles join their groups before the first event arrives
        if args.baseline_rows:
            csv_path, truth = files["baseline"]
            runs.append(run_path(settings, env, "baseline: hub import, streaming MPI only", ["import", str(csv_path)],
                                 csv_path, truth, pids, args.timeout))
            for role in ROLES:
                local.stop_role(settings, role)
            client = redis.Redis.from_url(settings.redis_url)
            client.flushall()
            client.close()
            pids = {role: local.start_role(settings, role) for role in ROLES}
            time.sleep(3)
        csv_path, truth = files["backfill"]
        runs.append(run_path(settings, env, "hub backfill (batch linkage + MPI seed + import)",
                             ["backfill", "--input", str(csv_path), "--json"], csv_path, truth, pids, args.timeout))
    finally:
        if not args.keep:
            for role in ROLES:
                local.stop_role(settings, role)
            local.stack("stop", settings)
    load_end = os.getloadavg()
    print(f"Registry backfill ({args.rows:,} generated rows, seed {args.seed}; generated in {generate_s:.0f} s)")
    print(f"conditions: {os.cpu_count()} cores shared with other work; load average (1/5/15 min) "
          f"at start {load_start[0]:.1f}/{load_start[1]:.1f}/{load_start[2]:.1f}, "
          f"at the end {load_end[0]:.1f}/{load_end[1]:.1f}/{load_end[2]:.1f}; single-node Kafka and Redis")
    for run in runs:
        print_run(run)
    main_run = runs[-1]
    total = main_run.phases[-1][1]
    if len(runs) == 2:
        base = runs[0]
        ratio = (main_run.rows / total) / (base.rows / base.phases[-1][1])
        cpu_row = [sum(c for _, c in r.peaks.values()) / r.rows * 1000 for r in (main_run, base)]
        print(f"same-run ratio: backfill {main_run.rows / total:,.0f} rows/s vs streaming import "
              f"{base.rows / base.phases[-1][1]:,.0f} rows/s = {ratio:.2f}x, CPU per row {cpu_row[0]:.2f} vs "
              f"{cpu_row[1]:.2f} ms (on {main_run.rows:,} vs {base.rows:,} rows: the streaming MPI slows as its "
              f"index grows); citizens/people {main_run.citizens / main_run.people:.3f}x vs "
              f"{base.citizens / max(base.people, 1):.3f}x")
    if args.rows < CITY_ROWS:
        factor = CITY_ROWS / args.rows
        print(f"EXTRAPOLATION (not a run): {CITY_ROWS:,} rows, linear in this run's phases: "
              + ", ".join(f"{phase} {wall * factor / 60:,.0f} min" for phase, wall, _ in main_run.phases)
              + " (batch linkage grows ~N^1.13: hub link took 70 min wall / 1,226 CPU s at 9.1M)")
    return 0 if all(r.caught_up for r in runs) else 2


if __name__ == "__main__":
    sys.exit(main())
