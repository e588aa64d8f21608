"""``hub link``, ``hub population`` and ``hub evaluate``: batch linkage of registry files, offline.

Registered by ``add_identity_commands`` so ``hub/cli.py`` only wires them in. Nothing here prints names or
ID numbers: summaries are counts, bad rows are line numbers with a reason.
"""

from __future__ import annotations

import argparse
import csv
import resource
import sys
import time
from pathlib import Path

from hub.identity import population
from hub.identity.evaluate import pairwise, read_mapping
from hub.identity.linkage import citizen_ids, link_prepared, paused_gc
from hub.identity.model import MatchSettings
from hub.identity.records import prepare
from hub.identity.registry import BadRow, RegistryFormatError, read_records
from hub.settings import Settings


def add_identity_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("link", help="cluster vaccination-registry rows into citizens (record_id,citizen_id)")
    p.add_argument("--input", type=Path, required=True, help="registry CSV (vaccination-registry-export format)")
    p.add_argument("--output", type=Path, required=True, help="CSV record_id,citizen_id, one row per input row")
    p.add_argument("--review", type=Path, help="also write pairs for a data steward: record_a,record_b,weight,reason")
    p.add_argument("--match-settings", type=Path, help="JSON file with MatchSettings (thresholds, m/u levels)")
    p.set_defaults(func=cmd_link)

    p = sub.add_parser("population", help="generate a synthetic registry CSV and its hidden truth")
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--output", type=Path, required=True, help="registry CSV to write")
    p.add_argument("--truth", type=Path, required=True, help="CSV record_id,person_id to write")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_population)

    p = sub.add_parser("evaluate", help="pairwise precision, recall and F1 of clusters against the truth")
    p.add_argument("--clusters", type=Path, required=True, help="CSV record_id,citizen_id (hub link's output)")
    p.add_argument("--truth", type=Path, required=True, help="CSV record_id,person_id")
    p.set_defaults(func=cmd_evaluate)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cmd_link(settings: Settings, args: argparse.Namespace) -> int:
    match = MatchSettings.from_json(args.match_settings) if args.match_settings else MatchSettings()
    started = time.perf_counter()
    bad: list[BadRow] = []
    with paused_gc():
        try:
            with open(args.input, encoding="utf-8-sig", newline="") as f:
                prepared = [prepare(r, i) for i, r in enumerate(read_records(f, bad))]
        except (OSError, RegistryFormatError) as exc:
            print(f"hub link: reading {args.input}: {exc}", file=sys.stderr)
            return 2
        return _link_and_write(args, match, settings, prepared, bad, started)


def _link_and_write(args: argparse.Namespace, match: MatchSettings, settings: Settings, prepared: list,
                    bad: list[BadRow], started: float) -> int:
    for row in bad[:20]:
        print(f"hub link: line {row.line} skipped: {row.reason}", file=sys.stderr)
    if len(bad) > 20:
        print(f"hub link: … and {len(bad) - 20} more unreadable rows", file=sys.stderr)
    read_s = time.perf_counter() - started
    result = link_prepared(prepared, match)
    ids = citizen_ids(result, prepared, settings.pseudonym_key)
    with open(args.output, "w", encoding="utf-8", newline="") as out:
        w = csv.writer(out, lineterminator="\n")
        w.writerow(("record_id", "citizen_id"))
        w.writerows(zip(result.record_ids, ids))
    if args.review:
        with open(args.review, "w", encoding="utf-8", newline="") as out:
            w = csv.writer(out, lineterminator="\n")
            w.writerow(("record_a", "record_b", "weight", "reason"))
            w.writerows((r.record_a, r.record_b, f"{r.weight:.2f}", r.reason) for r in result.review)
    flagged = sum(1 for p in prepared if p.flags)
    print(f"rows {len(prepared):,} (unreadable {len(bad):,}, flagged {flagged:,})  citizens {result.cluster_count:,}  "
          f"candidate pairs {sum(result.blocking.pairs_by_rule.values()):,}  links {result.decisions['link']:,}  "
          f"review {len(result.review):,}", file=sys.stderr)
    print(f"read {read_s:.1f} s  total {time.perf_counter() - started:.1f} s  peak memory {_peak_mb():,.0f} MB",
          file=sys.stderr)
    return 0


def cmd_population(settings: Settings, args: argparse.Namespace) -> int:
    n = population.write_files(args.records, args.output, args.truth, seed=args.seed)
    print(f"wrote {n:,} rows to {args.output} and the truth to {args.truth}", file=sys.stderr)
    return 0


def cmd_evaluate(settings: Settings, args: argparse.Namespace) -> int:
    scores = pairwise(read_mapping(args.clusters), read_mapping(args.truth))
    print(scores.summary())
    return 0
