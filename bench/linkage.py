"""Batch linkage benchmark: ``hub link``'s matcher against Splink (DuckDB) on the same generated records.

    .venv/bin/python -m bench.linkage [--records 100000] [--seed 1] [--no-splink] [--sizes 1000000 ...]

A synthetic registry (``hub.identity.population``) is written once with its hidden truth; each engine runs in
its own child process, so wall time and peak resident memory are its own; both clusterings are scored
against the truth with the same pairwise precision / recall / F1 (``hub.identity.evaluate``).

Splink gets a reasonable model and a fair start: the same normalised columns our matcher sees (ASCII names
split family / middle / given, ISO birth date, normalised phone, ward, CCCD, BHXH number), comparisons from
its library with term-frequency adjustment on names, u by random sampling, λ from CCCD agreement, m by EM
on two blocking rules, prediction blocked like ours, clusters at match probability ≥ 0.95. Needs the
``bench`` extra (``pip install -e .[bench]``).

``--sizes``: ``hub link`` alone on larger generated files (wall time, peak memory, rows/s), and a linear
extrapolation to the city's 9,148,769 rows from the largest size — stated as an extrapolation, not a run.
Other processes may share this machine: the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hub.identity.evaluate import PairwiseScores, pairwise, read_mapping
from hub.identity.population import write_files

CITY_ROWS = 9_148_769
CITY_PEOPLE = 6_593_186


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- engines (run in a child process) --------------------------------------------------------------------

def run_ours(input_path: Path, output: Path) -> dict:
    from hub.identity.linkage import citizen_ids, link_prepared, paused_gc
    from hub.identity.records import prepare
    from hub.identity.registry import read_records
    from hub.settings import Settings

    started = time.perf_counter()
    with paused_gc():  # as hub link runs it
        with open(input_path, encoding="utf-8-sig", newline="") as f:
            prepared = [prepare(r, i) for i, r in enumerate(read_records(f))]
        read_s = time.perf_counter() - started
        result = link_prepared(prepared)
    ids = citizen_ids(result, prepared, Settings().pseudonym_key)
    with open(output, "w", encoding="utf-8", newline="") as out:
        w = csv.writer(out, lineterminator="\n")
        w.writerow(("record_id", "citizen_id"))
        w.writerows(zip(result.record_ids, ids))
    return {"seconds": time.perf_counter() - started, "read_seconds": read_s, "peak_mb": _peak_mb(),
            "pairs": sum(result.blocking.pairs_by_rule.values()), "review": len(result.review),
            "pairs_by_rule": result.blocking.pairs_by_rule, "skipped_blocks": result.blocking.skipped_blocks}


def _splink_rows(input_path: Path) -> list[dict]:
    """The registry rows as the columns Splink compares, normalised by the hub's own normaliser."""
    from hub.identity.records import prepare
    from hub.identity.registry import read_records

    rows = []
    with open(input_path, encoding="utf-8-sig", newline="") as f:
        for i, rec in enumerate(read_records(f)):
            p = prepare(rec, i)
            n = p.name
            rows.append({
                "unique_id": rec.record_id, "family_name": n.family_variant or None,
                "middle_name": n.middle_ascii or None, "given_name": n.given_ascii or None,
                "full_name": n.full_ascii or None,
                "dob": f"{p.year:04d}-{p.month:02d}-{p.day:02d}" if p.dob8 else None,
                "birth_year": str(p.year) if p.year else None, "sex": p.sex or None, "phone": p.phone or None,
                "ward": p.ward or None, "cccd": p.cccd or p.cmnd or None, "bhxh": p.bhxh or None,
            })
    return rows


def run_splink(input_path: Path, output: Path) -> dict:
    import logging

    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    started = time.perf_counter()
    rows = _splink_rows(input_path)
    prep_s = time.perf_counter() - started
    db_api = DuckDBAPI()
    table = db_api.register({k: [r[k] for r in rows] for k in rows[0]}, table_name="registry")
    del rows
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("middle_name"),
            cl.ExactMatch("family_name").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("dob", input_is_string=True),
            cl.ExactMatch("sex"),
            cl.ExactMatch("phone"),
            cl.ExactMatch("ward"),
            cl.LevenshteinAtThresholds("cccd", 1),
            cl.ExactMatch("bhxh"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("cccd"), block_on("bhxh"), block_on("phone"), block_on("full_name", "birth_year"),
            block_on("given_name", "dob"), block_on("ward", "dob"), block_on("full_name", "ward"),
        ],
        retain_matching_columns=False,
    )
    linker = Linker(table, settings, log_level=logging.WARNING)
    linker.training.estimate_probability_two_random_records_match([block_on("cccd")], recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6, seed=1)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("dob"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("full_name", "ward"))
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    pairs = predictions.as_duckdbpyrelation().count("*").fetchall()[0][0]
    seconds = 0.0
    for threshold, path in ((0.95, output), (STRICT, _strict(output))):
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(predictions, threshold)
        mapping = clusters.as_duckdbpyrelation().select("unique_id, cluster_id").fetchall()
        with open(path, "w", encoding="utf-8", newline="") as out:
            w = csv.writer(out, lineterminator="\n")
            w.writerow(("record_id", "citizen_id"))
            w.writerows(mapping)
        seconds = seconds or time.perf_counter() - started  # the run at 0.95, as a user would time it
    return {"seconds": seconds, "read_seconds": prep_s, "peak_mb": _peak_mb(), "pairs": pairs, "review": 0}


STRICT = 0.999  # Splink's clusters also at a stricter threshold: what a user would try to raise precision


def _strict(output: Path) -> Path:
    return output.with_name(output.stem + "-strict.csv")


ENGINES = {"ours": run_ours, "splink": run_splink}


def child(engine: str, input_path: Path, output: Path) -> dict:
    """Run one engine in a fresh interpreter: its own wall time and peak memory."""
    proc = subprocess.run([sys.executable, "-m", "bench.linkage", "--child", engine, "--input", str(input_path),
                           "--output", str(output)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- report ----------------------------------------------------------------------------------------------

def _line(name: str, s: PairwiseScores | None, run: dict) -> str:
    if s is None:
        return f"{name:<28} {'-':>9} {'-':>9} {'-':>9} {'-':>9} {run['seconds']:>9.1f} {run['peak_mb']:>9,.0f}"
    return (f"{name:<28} {s.precision:>9.5f} {s.recall:>9.5f} {s.f1:>9.5f} {s.clusters:>9,} {run['seconds']:>9.1f} "
            f"{run['peak_mb']:>9,.0f}")


HEADER = f"{'engine':<28} {'precision':>9} {'recall':>9} {'F1':>9} {'clusters':>9} {'wall s':>9} {'peak MB':>9}"


def compare(records: int, seed: int, workdir: Path, with_splink: bool) -> str:
    reg, truth = workdir / f"registry-{records}.csv", workdir / f"truth-{records}.csv"
    t = time.perf_counter()
    write_files(records, reg, truth, seed=seed)
    gen_s = time.perf_counter() - t
    truth_map = read_mapping(truth)
    persons = len(set(truth_map.values()))
    out = [f"Batch linkage on {records:,} generated registry rows ({persons:,} people, "
           f"{records / persons:.3f} rows/person; seed {seed}; generated in {gen_s:.1f} s)",
           f"conditions: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start", HEADER]
    engines = ["ours"] + (["splink"] if with_splink else [])
    for engine in engines:
        clusters = workdir / f"clusters-{engine}-{records}.csv"
        run = child(engine, reg, clusters)
        s = pairwise(read_mapping(clusters), truth_map)
        label = "hub link (hub.identity)" if engine == "ours" else "Splink 5 + DuckDB, p >= 0.95"
        out.append(_line(label, s, run))
        if engine == "splink":
            strict = pairwise(read_mapping(_strict(clusters)), truth_map)
            out.append(_line(f"Splink 5 + DuckDB, p >= {STRICT}", strict, run))
        out.append(f"    pairs scored {run['pairs']:,}; review pairs {run['review']:,}; "
                   f"read+normalise {run['read_seconds']:.1f} s; predicted pairs {s.predicted_pairs:,}, "
                   f"true {s.true_pairs:,}, correct {s.true_positive:,}")
    out.append(f"load average {os.getloadavg()[0]:.1f} at end")
    return "\n".join(out)


def scale(sizes: list[int], seed: int, workdir: Path) -> str:
    out = ["hub link alone on larger generated files", f"{'rows':>12} {'wall s':>9} {'rows/s':>9} {'peak MB':>9} "
           f"{'precision':>9} {'recall':>9}"]
    runs: list[tuple[int, dict]] = []
    for n in sizes:
        reg, truth = workdir / f"registry-{n}.csv", workdir / f"truth-{n}.csv"
        write_files(n, reg, truth, seed=seed)
        clusters = workdir / f"clusters-ours-{n}.csv"
        run = child("ours", reg, clusters)
        s = pairwise(read_mapping(clusters), read_mapping(truth))
        out.append(f"{n:>12,} {run['seconds']:>9.1f} {n / run['seconds']:>9,.0f} {run['peak_mb']:>9,.0f} "
                   f"{s.precision:>9.5f} {s.recall:>9.5f}")
        out.append(f"{'':>12} pairs by rule: {run['pairs_by_rule']}; skipped blocks: "
                   f"{ {k: v for k, v in run['skipped_blocks'].items() if v} }")
        runs.append((n, run))
        for p in (reg, truth, clusters):
            p.unlink(missing_ok=True)
    if runs:
        n, run = runs[-1]
        factor = CITY_ROWS / n
        out.append(f"extrapolated, linear from {n:,} rows (not a run): {CITY_ROWS:,} rows ≈ "
                   f"{run['seconds'] * factor / 60:.0f} min and ≈ {run['peak_mb'] * factor / 1024:.1f} GB peak "
                   f"in one process; load average {os.getloadavg()[0]:.1f}")
    if len(runs) >= 2:
        (n0, r0), (n1, r1) = runs[-2], runs[-1]
        b = math.log(r1["seconds"] / r0["seconds"]) / math.log(n1 / n0)
        out.append(f"extrapolated with the measured growth t ∝ N^{b:.2f} between {n0:,} and {n1:,} rows (not a run): "
                   f"{CITY_ROWS:,} rows ≈ {r1['seconds'] * (CITY_ROWS / n1) ** b / 60:.0f} min; memory at the "
                   f"marginal {(r1['peak_mb'] - r0['peak_mb']) * 1024 / (n1 - n0):.2f} kB/row ≈ "
                   f"{(r1['peak_mb'] + (r1['peak_mb'] - r0['peak_mb']) * (CITY_ROWS - n1) / (n1 - n0)) / 1024:.1f} GB")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-splink", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="*", default=[], help="also time hub link alone at these sizes")
    parser.add_argument("--workdir", type=Path, help="keep generated files here (default: a temporary folder)")
    parser.add_argument("--child", choices=sorted(ENGINES), help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(ENGINES[args.child](args.input, args.output)))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-linkage-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        print(compare(args.records, args.seed, workdir, not args.no_splink), flush=True)
        if args.sizes:
            print(scale(args.sizes, args.seed, workdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
