"""``hub link``, ``hub population``, ``hub evaluate`` (batch linkage of registry files, offline) and
``hub backfill`` (a registry export through batch linkage into the live hub: ``hub.ops.backfill``).

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

    p = sub.add_parser("backfill", help="import a vaccination-registry export with batch linkage: link the whole "
                                        "file, seed the MPI with its citizens, then import the rows as events")
    p.add_argument("--input", type=Path, required=True, help="registry CSV (vaccination-registry-export format)")
    p.add_argument("--output", type=Path, help="also write the plan: CSV record_id,citizen_id, one row per row")
    p.add_argument("--match-settings", type=Path, help="JSON file with MatchSettings (thresholds, m/u levels)")
    p.add_argument("--seed-only", action="store_true", help="plan and seed the MPI, do not import the rows")
    p.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                   help="then wait up to SECONDS for the identity and record roles to consume everything")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.set_defaults(func=cmd_backfill)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cmd_link(settings: Settings, args: argparse.Namespace) -> int:
    match = MatchSettings.from_json(args.match_settings) if args.match_settings else MatchSettings()
    started = time.perf_counter()
    bad: list[BadRow] = []
    with paused_gc():
        try:
            with open(args.input, encoding="utf-8-sig", newline="") as f:
                prepared = []
                for i, r in enumerate(read_records(f, bad)):
                    prepared.append(prepare(r, i))
                    if i % 1_000_000 == 999_999:
                        _progress(started, f"read {i + 1:,} rows")
        except (OSError, RegistryFormatError) as exc:
            print(f"hub link: reading {args.input}: {exc}", file=sys.stderr)
            return 2
        return _link_and_write(args, match, settings, prepared, bad, started)


def _progress(started: float, what: str, who: str = "hub link") -> None:
    """A progress line on stderr for long runs: counts, time and memory only."""
    print(f"{who}: {time.perf_counter() - started:7.0f} s {_peak_mb():8,.0f} MB  {what}", file=sys.stderr, flush=True)


def _link_and_write(args: argparse.Namespace, match: MatchSettings, settings: Settings, prepared: list,
                    bad: list[BadRow], started: float) -> int:
    for row in bad[:20]:
        print(f"hub link: line {row.line} skipped: {row.reason}", file=sys.stderr)
    if len(bad) > 20:
        print(f"hub link: … and {len(bad) - 20} more unreadable rows", file=sys.stderr)
    read_s = time.perf_counter() - started
    result = link_prepared(prepared, match, progress=lambda what: _progress(started, what))
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
    print("candidate pairs by rule: " + ", ".join(f"{rule} {count:,}" for rule, count in
                                                  result.blocking.pairs_by_rule.items())
          + "".join(f"; {rule}: {k:,} oversized blocks skipped" for rule, k in result.blocking.skipped_blocks.items()
                    if k), file=sys.stderr)
    print(f"read {read_s:.1f} s  total {time.perf_counter() - started:.1f} s  peak memory {_peak_mb():,.0f} MB",
          file=sys.stderr)
    return 0


def cmd_backfill(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 when done (and caught up, with --wait), 1 when the roles did not catch up in time, 2 when the
    file, Redis or Kafka failed."""
    import asyncio

    import orjson
    from redis.exceptions import ConnectionError as RedisConnectionError

    from hub.errors import DeliveryError
    from hub.ops.backfill import BackfillError, backfill, wait_caught_up
    from hub.ops.progress import TqdmProgress

    match = MatchSettings.from_json(args.match_settings) if args.match_settings else MatchSettings()
    started = time.perf_counter()

    async def run():
        report = await backfill(settings, args.input, match=match, output=args.output, import_file=not args.seed_only,
                                progress=TqdmProgress(), say=lambda what: _progress(started, what, "hub backfill"))
        caught = True
        if args.wait and not args.seed_only:
            t = time.perf_counter()
            caught = await wait_caught_up(settings, args.wait, lambda w: _progress(started, w, "hub backfill"))
            report.seconds["stages"] = time.perf_counter() - t
        return report, caught

    try:
        report, caught = asyncio.run(run())
    except (OSError, RegistryFormatError, BackfillError) as exc:
        print(f"hub backfill: {args.input}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 2
    except RedisConnectionError:
        print(f"hub backfill: Redis at {settings.redis_url} is unreachable", file=sys.stderr)
        return 2
    except DeliveryError as exc:
        print(f"hub backfill: Kafka not reachable or did not confirm: {exc.reason}", file=sys.stderr)
        return 2
    for line in report.summary_lines():
        print(line, file=sys.stderr)
    if args.json:
        sys.stdout.write(orjson.dumps(report.as_dict()).decode() + "\n")
    if not caught:
        print(f"hub backfill: the identity and record roles had not caught up after {args.wait:g} s", file=sys.stderr)
        return 1
    return 0


def cmd_population(settings: Settings, args: argparse.Namespace) -> int:
    n = population.write_files(args.records, args.output, args.truth, seed=args.seed)
    print(f"wrote {n:,} rows to {args.output} and the truth to {args.truth}", file=sys.stderr)
    return 0


def cmd_evaluate(settings: Settings, args: argparse.Namespace) -> int:
    scores = pairwise(read_mapping(args.clusters), read_mapping(args.truth))
    print(scores.summary())
    return 0


def add_review_commands(sub: argparse._SubParsersAction) -> None:
    """``hub review list|show|accept|reject`` and ``hub unmerge``: the data steward's side of the MPI."""
    review = sub.add_parser("review", help="identity review cases: pairs the MPI would not merge on its own")
    rsub = review.add_subparsers(dest="review_action", required=True)
    p = rsub.add_parser("list", help="cases without personal data: id, reason, weight, flags, citizen ids")
    p.add_argument("--status", default="open", choices=["open", "accepted", "rejected", "unmerged", "all"])
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=cmd_review_list)
    p = rsub.add_parser("show", help="one case with both records' compared fields (personal data: the read "
                                     "is audited to audit.access)")
    p.add_argument("case")
    p.add_argument("--purpose", default="identity-review", help="why the case is read (audited)")
    p.set_defaults(func=cmd_review_show)
    p = rsub.add_parser("accept", help="one person: merge the other citizen into the existing one "
                                       "(emits citizen.merged)")
    p.add_argument("case")
    p.set_defaults(func=cmd_review_decide, accept=True)
    p = rsub.add_parser("reject", help="two people: record it, so the pair is never proposed again")
    p.add_argument("case")
    p.set_defaults(func=cmd_review_decide, accept=False)
    p = sub.add_parser("unmerge", help="undo a merge: OTHER is a separate citizen again (emits citizen.unmerged)")
    p.add_argument("survivor", help="the citizen id the merge kept")
    p.add_argument("other", help="the citizen id that was merged into it")
    p.set_defaults(func=cmd_unmerge)


def _run(settings: Settings, work) -> int:
    """Run ``work(mpi, producer_factory)`` with a Redis client; print a ReviewError or DeliveryError, exit 1/2."""
    import asyncio

    import redis.asyncio as aioredis
    from redis.exceptions import ConnectionError as RedisConnectionError

    from hub.errors import DeliveryError
    from hub.identity.review import Mpi, ReviewError

    async def main() -> int:
        client = aioredis.from_url(settings.redis_url)
        try:
            return await work(Mpi(client, settings.pseudonym_key))
        finally:
            await client.aclose()

    try:
        return asyncio.run(main())
    except ReviewError as exc:
        print(f"hub: {exc}", file=sys.stderr)
        return 1
    except DeliveryError as exc:
        print(f"hub: {exc.reason}", file=sys.stderr)
        return 2
    except RedisConnectionError:
        print(f"hub: Redis at {settings.redis_url} is unreachable: nothing was read or changed", file=sys.stderr)
        return 2


async def _producer(settings: Settings):
    import asyncio

    from hub.errors import DeliveryError
    from hub.kafka import DurableProducer

    producer = DurableProducer(settings, client_id="hssk-review")
    try:
        async with asyncio.timeout(settings.ack_timeout_s):
            await producer.connect(retry_every_s=0.5)
    except TimeoutError as exc:
        await producer.stop()
        raise DeliveryError("Kafka is unreachable: nothing was changed") from exc
    return producer


def _print(doc: object) -> None:
    import orjson

    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")


def cmd_review_list(settings: Settings, args: argparse.Namespace) -> int:
    from hub.identity.review import summary

    async def work(mpi) -> int:
        for doc in await mpi.cases(args.status, args.limit):
            _print(summary(doc))
        return 0

    return _run(settings, work)


def cmd_review_show(settings: Settings, args: argparse.Namespace) -> int:
    from hub.audit import audit_read, local_actor

    async def work(mpi) -> int:
        doc = await mpi.case(args.case)
        producer = await _producer(settings)
        try:  # audited before anything is shown; a failed audit shows nothing
            for cid in doc["citizens"].values():
                await audit_read(producer, actor=local_actor(), citizen_id=cid, purpose=args.purpose,
                                 channel="cli-review")
        finally:
            await producer.stop()
        _print(doc)
        return 0

    return _run(settings, work)


def cmd_review_decide(settings: Settings, args: argparse.Namespace) -> int:
    from hub.audit import local_actor
    from hub.identity import decisions

    async def work(mpi) -> int:
        if not args.accept:
            await decisions.reject(mpi, args.case, local_actor())
            print(f"case {args.case} rejected: the pair will not be proposed again", file=sys.stderr)
            return 0
        await decisions.open_case(mpi, args.case)  # before connecting to Kafka: a decided case says so at once
        producer = await _producer(settings)
        try:
            survivor, retired = await decisions.accept(mpi, producer, args.case, local_actor())
        finally:
            await producer.stop()
        print(f"case {args.case} accepted: {retired} merged into {survivor}", file=sys.stderr)
        return 0

    return _run(settings, work)


def cmd_unmerge(settings: Settings, args: argparse.Namespace) -> int:
    from hub.identity import decisions

    async def work(mpi) -> int:
        producer = await _producer(settings)
        try:
            await decisions.unmerge(mpi, producer, settings.pseudonym_key, args.survivor, args.other)
        finally:
            await producer.stop()
        print(f"{args.other} is a separate citizen again (was merged into {args.survivor})", file=sys.stderr)
        return 0

    return _run(settings, work)
