"""``hub link`` at city scale: one real run on generated registry rows, against the truth.

    .venv/bin/python -m bench.linkage_scale [--rows 9148769] [--seed 1] [--workdir /tmp/linkage-scale]
                                            [--nice 5] [--keep]

Generates the rows with ``hub population`` (or reuses ``registry-<rows>.csv`` / ``truth-<rows>.csv`` already in
``--workdir``), runs ``hub link`` on them in a child process — so wall time, CPU time (user + sys) and peak
resident memory are that process's own, from ``getrusage(RUSAGE_CHILDREN)`` — then scores the clusters with
``hub evaluate``'s pairwise precision / recall / F1 and counts clusters against the truth's people.

The reference line is Splink's own published claim, about a million records a minute on a laptop (not a run
here: ``bench.linkage`` runs Splink side by side at 100,000 rows). This machine has 2 cores shared with other
work; the load average is printed, and ``--nice`` lowers the child's priority so it yields to others.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from hub.identity.evaluate import pairwise, read_mapping
from hub.identity.population import write_files

CITY_ROWS = 9_148_769
SPLINK_CLAIM_ROWS_PER_S = 1_000_000 / 60  # "about a million records a minute on a laptop" (Splink's docs)


def _rows(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f) - 1


def run_link(registry: Path, clusters: Path, niceness: int) -> dict:
    """``hub link`` in a child process: wall, CPU and peak RSS of that process alone."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "hub.cli", "link", "--input", str(registry), "--output",
                           str(clusters)], capture_output=True, text=True,
                          preexec_fn=(lambda: os.nice(niceness)) if niceness else None)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"hub link failed:\n{proc.stderr[-3000:]}")
    return {"wall": wall, "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "peak_mb": after.ru_maxrss / 1024, "log": proc.stderr.strip()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=CITY_ROWS)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/linkage-scale"))
    parser.add_argument("--nice", type=int, default=5, help="niceness of the hub link child (0: none)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files and clusters")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    registry, truth = args.workdir / f"registry-{args.rows}.csv", args.workdir / f"truth-{args.rows}.csv"
    clusters = args.workdir / f"clusters-{args.rows}.csv"
    gen_s = 0.0
    if not (registry.exists() and truth.exists() and _rows(truth) == args.rows):
        t = time.perf_counter()
        write_files(args.rows, registry, truth, seed=args.seed)
        gen_s = time.perf_counter() - t
    load0 = os.getloadavg()[0]
    run = run_link(registry, clusters, args.nice)
    load1 = os.getloadavg()[0]
    s = pairwise(read_mapping(clusters), read_mapping(truth))
    print(f"hub link on {args.rows:,} generated registry rows (seed {args.seed}"
          f"{f'; generated in {gen_s:.0f} s' if gen_s else '; reused files'}); {os.cpu_count()} cores shared with "
          f"other work, child at nice {args.nice}, load average {load0:.1f} at start, {load1:.1f} at end")
    header = (f"{'':<38} {'rows':>11} {'wall s':>8} {'CPU s':>8} {'peak MB':>8} {'rows/s':>8} {'clusters':>10} "
              f"{'people':>10} {'precision':>9} {'recall':>8} {'F1':>8}")
    print(header)
    print(f"{'hub link (hub.identity)':<38} {args.rows:>11,} {run['wall']:>8.0f} {run['cpu']:>8.0f} "
          f"{run['peak_mb']:>8,.0f} {args.rows / run['wall']:>8,.0f} {s.clusters:>10,} {s.persons:>10,} "
          f"{s.precision:>9.5f} {s.recall:>8.5f} {s.f1:>8.5f}")
    claim_s = args.rows / SPLINK_CLAIM_ROWS_PER_S
    print(f"{'Splink claim (~1M records/min, laptop)':<38} {args.rows:>11,} {claim_s:>8.0f} {'-':>8} {'-':>8} "
          f"{SPLINK_CLAIM_ROWS_PER_S:>8,.0f} {'-':>10} {'-':>10} {'-':>9} {'-':>8} {'-':>8}")
    print(f"ratio: hub link wall time / Splink's claimed time = {run['wall'] / claim_s:.2f}; "
          f"clusters / people = {s.clusters / s.persons:.4f}; pairs predicted {s.predicted_pairs:,}, "
          f"true {s.true_pairs:,}, correct {s.true_positive:,}")
    print("hub link's own summary:\n  " + run["log"].replace("\n", "\n  "))
    if not args.keep:
        for p in (registry, truth, clusters):
            p.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
