"""The vaccination-registry backfill: generated registry rows through ``hub import``, identity and record.

    .venv/bin/python -m bench.backfill [--rows 100000] [--seed 7] [--keep]

The city's export is 9,148,769 rows for 6,593,186 people. This bench generates ``--rows`` of them with their
hidden truth (``hub.identity.population``: households, twins, newborns under the mother's name, typos,
missing and re-issued ID numbers), starts its own stack (bench ports + 750, ``.hub-bench-backfill``: Kafka,
Redis and the identity and record roles only), runs ``hub import`` on the file in a child process, and waits
until the identity and record roles have consumed everything the import wrote (their consumer groups at lag 0).

It prints, with the machine's load average: wall time of the import alone and of the whole backfill (until
the record role caught up), rows/s of each, the peak resident memory of every process involved (import,
identity, record, Kafka, Redis; VmHWM from /proc), and the citizens in Redis (records the record role keeps,
merge redirects not counted) against the generator's true number of people. When ``--rows`` is below the
city's size, the wall time for the full size is extrapolated linearly from the backfill's rows/s and printed
as an extrapolation, not a measurement (identity gets slower as the MPI grows, so it is a lower bound).
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
from pathlib import Path

import redis

from bench.stack import bench_env
from hub.settings import REPO_ROOT, Settings

CITY_ROWS = 9_148_769
CITY_PEOPLE = 6_593_186
ROLES = ("identity", "record")
PORT_OFFSET = 750


def _hwm_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a live process, in MB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _service_pid(settings: Settings, name: str) -> int | None:
    try:
        return int((settings.state_dir / name / f"{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None


class PeakWatcher:
    """Samples the peak memory of a child (the import) while it runs: its /proc entry goes when it exits."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_mb = pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.peak_mb = max(self.peak_mb, _hwm_mb(self.pid), *self._children())

    def _children(self) -> list[float]:
        try:
            kids = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            return []
        return [_hwm_mb(int(k)) for k in kids]  # the import's mapping workers (each counted on its own)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_mb


def people_in_truth(truth: Path) -> int:
    with open(truth, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        next(reader, None)
        return len({row[1] for row in reader if len(row) > 1})


def citizens_in_redis(settings: Settings) -> tuple[int, int]:
    """(citizens with a record, merge redirects) among the record role's keys."""
    from hub.record.merge import is_redirect
    import orjson

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


async def caught_up(settings: Settings) -> tuple[bool, dict[str, int]]:
    """Whether identity and record have consumed every partition to its end; their lag by group."""
    from hub.ops.lag import group_of, measure

    rows = await measure(settings, [group_of(r) for r in ROLES], seconds=False)
    lag: dict[str, int] = {group_of(r): 0 for r in ROLES}
    seen: dict[str, int] = {group_of(r): 0 for r in ROLES}
    for row in rows:
        lag[row.group] += row.lag
        seen[row.group] += 1
    done = all(seen[g] >= settings.topic_partitions and lag[g] == 0 for g in lag)
    return done, lag


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
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
    csv_path, truth_path = settings.state_dir / "registry.csv", settings.state_dir / "truth.csv"
    started = time.perf_counter()
    rows = write_files(args.rows, csv_path, truth_path, seed=args.seed)
    people = people_in_truth(truth_path)
    generate_s = time.perf_counter() - started
    try:
        if local.stack("start", settings) != 0:
            return 1
        asyncio.run(ensure_topics(settings))
        pids = {role: local.start_role(settings, role) for role in ROLES}
        time.sleep(3)  # the roles join their groups before the first event arrives
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "hub.cli", "import", str(csv_path)], env={**os.environ, **env},
                                 cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        watcher = PeakWatcher(child.pid)
        out, _ = child.communicate()
        import_s = time.perf_counter() - started
        import_peak = watcher.stop()
        if child.returncode != 0:
            print(f"hub import failed ({child.returncode}):\n{out}", file=sys.stderr)
            return 1
        deadline = started + args.timeout
        done, lag = asyncio.run(caught_up(settings))
        while not done and time.perf_counter() < deadline:
            time.sleep(2)
            done, lag = asyncio.run(caught_up(settings))
        total_s = time.perf_counter() - started
        peaks = {f"{role} role": _hwm_mb(pid) for role, pid in pids.items()}
        for service in ("kafka", "redis"):
            pid = _service_pid(settings, service)
            peaks[service] = _hwm_mb(pid) if pid else 0.0
        live, redirects = citizens_in_redis(settings)
        load_end = os.getloadavg()
    finally:
        if not args.keep:
            for role in ROLES:
                local.stop_role(settings, role)
            local.stack("stop", settings)
    summary = out.strip().splitlines()[0] if out.strip() else "?"
    print(f"Registry backfill through import, identity and record ({rows:,} generated rows, seed {args.seed})")
    print(f"conditions: {os.cpu_count()} cores shared with other work; load average (1/5/15 min) "
          f"at start {load_start[0]:.1f}/{load_start[1]:.1f}/{load_start[2]:.1f}, "
          f"at the end {load_end[0]:.1f}/{load_end[1]:.1f}/{load_end[2]:.1f}; single-node Kafka and Redis")
    print(f"  generated in {generate_s:.1f} s: {rows:,} rows of {people:,} people (truth)")
    print(f"  import     {import_s:8.1f} s  {rows / import_s:>9,.0f} rows/s   {summary}")
    state = "caught up" if done else f"NOT caught up after {args.timeout:g} s (lag {lag})"
    print(f"  backfill   {total_s:8.1f} s  {rows / total_s:>9,.0f} rows/s   identity + record {state}")
    print("  peak RSS   " + ", ".join(f"{name} {mb:,.0f} MB" for name, mb in
                                      [("import (largest process)", import_peak), *peaks.items()]))
    print(f"  citizens in Redis {live:,} (+{redirects:,} merge redirects) vs {people:,} people in the truth "
          f"({live / people:.3f}x)")
    if rows < CITY_ROWS:
        factor = CITY_ROWS / rows
        print(f"  EXTRAPOLATION (not a run): {CITY_ROWS:,} rows at this run's rows/s -> import "
              f"{import_s * factor / 60:,.0f} min, backfill {total_s * factor / 60:,.0f} min (a lower bound: the "
              "MPI's lookups grow with it)")
    return 0 if done else 2


if __name__ == "__main__":
    sys.exit(main())
