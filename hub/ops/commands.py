"""The operator commands ``hub lag`` and ``hub dlq list|show|replay|rebuild-ledger`` for the ``hub`` parser.

Exit codes: 0 done; 1 nothing found or some replay failed; 2 bad arguments or a service (Kafka, Redis)
not reachable, said in one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import orjson

from hub.errors import DeliveryError
from hub.ops import dlq, lag, replay
from hub.settings import Settings

def _print_json(data: object) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n")


def _fail(command: str, message: str, code: int = 2) -> int:
    print(f"hub {command}: {message}", file=sys.stderr)
    return code


def cmd_lag(settings: Settings, args: argparse.Namespace) -> int:
    """Print consumer lag (table, JSON or Prometheus text); with --watch, again every N seconds until Ctrl-C."""
    groups = args.group or None
    if args.serve is not None:
        return _serve_lag(settings, args.serve or settings.lag_exporter_port)
    try:
        while True:
            try:
                rows = asyncio.run(lag.measure(settings, groups))
            except DeliveryError as exc:
                if args.watch is None:
                    raise
                print(f"{time.strftime('%Y-%m-%d %H:%M:%S %z')} hub lag: {exc.reason}", file=sys.stderr, flush=True)
                time.sleep(args.watch)  # an outage is when lag is watched most: keep trying
                continue
            if args.prometheus:
                sys.stdout.write(lag.render_prometheus(rows))
            elif args.json:
                _print_json([r.to_dict() for r in rows])
            else:
                if args.watch is not None and sys.stdout.isatty():
                    sys.stdout.write("\x1b[H\x1b[2J")
                if args.watch is not None:
                    print(time.strftime("%Y-%m-%d %H:%M:%S %z"))
                sys.stdout.write(lag.render_table(rows) if rows else "no consumer groups\n")
            sys.stdout.flush()
            if args.watch is None:
                return 0
            time.sleep(args.watch)
    except DeliveryError as exc:
        return _fail("lag", exc.reason)
    except KeyboardInterrupt:
        return 0


def _serve_lag(settings: Settings, port: int) -> int:
    """Run the lag exporter (GET /metrics) in the foreground until Ctrl-C or SIGTERM."""
    from hub.ops import exporter

    print(f"lag exporter: http://{settings.metrics_host}:{port}/metrics", flush=True)
    try:
        asyncio.run(exporter.serve(settings, settings.metrics_host, port))
    except OSError as exc:
        return _fail("lag", f"cannot serve on {settings.metrics_host}:{port}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        pass
    return 0


def _filter(args: argparse.Namespace) -> dlq.Filter:
    return dlq.Filter(stage=args.stage, code=args.code, reason=args.reason, facility=args.facility,
                      since_ms=dlq.parse_time(args.since) if args.since else None,
                      until_ms=dlq.parse_time(args.until) if args.until else None)


def _dlq_topic(settings: Settings, args: argparse.Namespace) -> str:
    """hub.dlq, or with --subscription the dead letters of that subscription (ValueError if none is so named)."""
    if not getattr(args, "subscription", None):
        return dlq.DLQ.name
    from hub.fanout import config
    from hub.topics import subscription_dlq

    subscriptions = config.load(settings.subscriptions_file, config.settings_env(settings))  # ValueError if bad
    try:
        return subscription_dlq(config.find(subscriptions, args.subscription).name).name
    except KeyError:
        raise ValueError(f"no subscription {args.subscription!r} in {settings.subscriptions_file}") from None


def cmd_dlq_list(settings: Settings, args: argparse.Namespace) -> int:
    try:
        selection = _filter(args)
        found = asyncio.run(dlq.entries(settings, selection, limit=args.limit, topic=_dlq_topic(settings, args)))
    except ValueError as exc:
        return _fail("dlq list", str(exc))
    except DeliveryError as exc:
        return _fail("dlq list", exc.reason)
    if args.summary:
        rows = dlq.counts(found)
        if args.json:
            _print_json([{"stage": stage, "code": code, "entries": n} for stage, code, n in rows])
        else:
            print(f"{'STAGE':<10} {'CODE':<10} ENTRIES")
            for stage, code, n in rows:
                print(f"{stage:<10} {code:<10} {n:>7}")
            print(f"{len(found)} entr{'y' if len(found) == 1 else 'ies'}")
        return 0
    try:
        done = asyncio.run(replay.replayed(settings, found))
    except DeliveryError as exc:  # the list is still useful without the ledger
        print(f"hub dlq list: replay status unknown: {exc.reason}", file=sys.stderr)
        done = None
    if args.json:
        _print_json([{**e.summary(), "replayed": None if done is None else done.get(e.id)} for e in found])
        return 0
    print(render_entries(found, done))
    return 0


def render_entries(found: list[dlq.Entry], done: dict[str, str] | None) -> str:
    """One line per entry: id, time, stage, code, facility, source coordinates, replayed, reason."""
    header = ("ID", "FAILED-AT", "STAGE", "CODE", "FACILITY", "SOURCE", "REPLAYED", "REASON")
    rows = [header]
    for e in found:
        replayed = "?" if done is None else ("yes" if done.get(e.id, "").split(" ")[0] not in ("", "pending")
                                            else ("pending" if e.id in done else "no"))
        reason = e.reason if len(e.reason) <= 80 else e.reason[:77] + "..."
        rows.append((e.id, e.failed_at or "-", e.stage, e.code, e.facility or "-", e.source, replayed, reason))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(r[:-1], widths)), r[-1]]).rstrip() for r in rows]
    lines.append(f"{len(found)} entr{'y' if len(found) == 1 else 'ies'}")
    return "\n".join(lines)


def cmd_dlq_show(settings: Settings, args: argparse.Namespace) -> int:
    try:
        entry = asyncio.run(dlq.entry(settings, dlq.EntryId.parse(args.entry), topic=_dlq_topic(settings, args)))
    except ValueError as exc:
        return _fail("dlq show", str(exc))
    except dlq.EntryNotFound as exc:
        return _fail("dlq show", str(exc), 1)
    except DeliveryError as exc:
        return _fail("dlq show", exc.reason)
    if args.raw:
        sys.stdout.buffer.write(entry.original)
        return 0
    if args.json:
        _print_json({**entry.summary(), "headers": entry.headers, "original_text": dlq.decode_original(entry)})
        return 0
    info = entry.summary()
    for name in ("id", "failed_at", "stage", "code", "reason", "facility", "source", "replay_of", "size"):
        print(f"{name + ':':<11} {info[name] if info[name] is not None else '-'}")
    print(f"{'target:':<11} {dlq.STAGE_SOURCES[entry.stage].name if entry.stage in dlq.STAGE_SOURCES else '-'}"
          " (where a replay writes)")
    for name, value in sorted(entry.headers.items()):
        print(f"{'header:':<11} {name}={value}")
    print("original:")
    print(dlq.decode_original(entry))
    return 0


def cmd_dlq_replay(settings: Settings, args: argparse.Namespace) -> int:
    try:
        ids = [dlq.EntryId.parse(text) for text in args.entries]
        selection = _filter(args)
        if not ids and selection.empty:
            raise ValueError("name entries (e.g. 2/15) or give at least one filter (--stage, --code, ...)")
        if ids and not selection.empty:
            raise ValueError("give entry ids or filters, not both")
        found = ([asyncio.run(dlq.entry(settings, i)) for i in sorted(set(ids))] if ids
                 else asyncio.run(dlq.entries(settings, selection, limit=args.limit)))
        outcomes = asyncio.run(replay.replay(settings, found, dry_run=args.dry_run, force=args.force))
    except ValueError as exc:
        return _fail("dlq replay", str(exc))
    except dlq.EntryNotFound as exc:
        return _fail("dlq replay", str(exc), 1)
    except DeliveryError as exc:
        return _fail("dlq replay", exc.reason)
    if args.json:
        _print_json([o.to_dict() for o in outcomes])
    else:
        for o in outcomes:
            print(f"{o.status:<12} {o.entry:<10} {o.target}{'  ' + o.detail if o.detail else ''}")
        counts = {s: sum(o.status == s for o in outcomes) for s in ("replayed", "would-replay", "skipped", "failed")}
        print(", ".join(f"{n} {s}" for s, n in counts.items() if n) or "nothing to replay")
    return 1 if any(o.status == "failed" for o in outcomes) or not outcomes else 0


def cmd_dlq_rebuild_ledger(settings: Settings, args: argparse.Namespace) -> int:
    """Restore the replay ledger in Redis from the hssk.replay_of headers on the source topics."""
    try:
        found, restored = asyncio.run(replay.rebuild_ledger(settings))
    except DeliveryError as exc:
        return _fail("dlq rebuild-ledger", exc.reason)
    print(f"{found} replay{'' if found == 1 else 's'} found on the source topics, {restored} restored to the ledger")
    return 0


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", help=f"the stage that failed: {', '.join(dlq.STAGE_SOURCES)}")
    parser.add_argument("--code", help=f"the DLQ reason code: {', '.join(dlq.CODES)}")
    parser.add_argument("--reason", help="text the reason contains (case-insensitive)")
    parser.add_argument("--facility", help="facility code (MA_CSKCB) the message came from")
    parser.add_argument("--since", help="failed at or after: ISO 8601 (no offset: +07:00) or an age (30m, 2h, 7d)")
    parser.add_argument("--until", help="failed at or before: ISO 8601 or an age")
    parser.add_argument("--limit", type=int, help="at most this many entries (oldest first)")


def add_ops_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``lag`` and ``dlq`` on the ``hub`` command's subparsers."""
    lg = sub.add_parser("lag", help="consumer lag per group, topic and partition, in messages and seconds")
    lg.add_argument("--watch", type=float, nargs="?", const=2.0, metavar="SECONDS",
                    help="print again every SECONDS (default 2) until Ctrl-C")
    out = lg.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true")
    out.add_argument("--prometheus", action="store_true",
                     help="Prometheus text (kafka-lag-exporter names), as an HTTP /metrics endpoint serves it")
    out.add_argument("--serve", type=int, nargs="?", const=0, metavar="PORT",
                     help="serve GET /metrics (Prometheus) on PORT (default HSSK_LAG_EXPORTER_PORT, 9469)")
    lg.add_argument("--group", action="append", help="only this consumer group (repeatable)")
    lg.set_defaults(func=cmd_lag)

    dq = sub.add_parser("dlq", help="the dead-letter queue: list, show and replay entries")
    actions = dq.add_subparsers(dest="dlq_action", required=True)
    ls = actions.add_parser("list", help="entries with stage, reason code, facility and source coordinates")
    _add_filters(ls)
    ls.add_argument("--subscription", metavar="NAME", help="the dead letters of this subscription (dlq.NAME)")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--summary", action="store_true", help="count the entries by stage and reason code instead")
    ls.set_defaults(func=cmd_dlq_list)

    sh = actions.add_parser("show", help="one entry with its original bytes decoded (prints personal data)")
    sh.add_argument("entry", metavar="ID", help="<partition>/<offset> on hub.dlq, as `hub dlq list` prints it")
    sh.add_argument("--subscription", metavar="NAME", help="an entry of this subscription's dlq.NAME")
    fmt = sh.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--raw", action="store_true", help="write only the original bytes, unchanged")
    sh.set_defaults(func=cmd_dlq_show)

    rp = actions.add_parser("replay", help="re-inject entries into the failed stage's source topic (once each)")
    rp.add_argument("entries", nargs="*", metavar="ID", help="entries to replay; or select them with filters")
    _add_filters(rp)
    rp.add_argument("--dry-run", action="store_true", help="say what would be replayed, write nothing")
    rp.add_argument("--force", action="store_true", help="replay even entries the ledger says were replayed")
    rp.add_argument("--json", action="store_true")
    rp.set_defaults(func=cmd_dlq_replay)

    actions.add_parser("rebuild-ledger", help="restore the replay ledger (Redis) from the replays found on Kafka"
                       ).set_defaults(func=cmd_dlq_rebuild_ledger)
