"""``hub subscriptions list|show|pause|resume|replay``: operate the fan-out's subscriptions (hub.fanout.admin).

Exit codes: 0 done; 1 no such subscription; 2 a bad subscriptions file, bad arguments, or Kafka/Redis not
reachable, said on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime, timezone
from typing import Any, Callable

import orjson
from redis.exceptions import RedisError

from hub.errors import DeliveryError
from hub.fanout import admin
from hub.fanout.config import SubscriptionConfigError
from hub.ops.dlq import parse_time
from hub.settings import Settings


def add_subscription_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("subscriptions", help="fan-out subscriptions: list, show, pause, resume, replay")
    actions = p.add_subparsers(dest="action", required=True)
    ls = actions.add_parser("list", help="every subscription of the file: delivery, format, paused, lag, DLQ size")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    show = actions.add_parser("show", help="one subscription: configuration, lag per partition, retries, freshness")
    show.add_argument("name")
    show.set_defaults(func=cmd_show)
    for verb, paused in (("pause", True), ("resume", False)):
        a = actions.add_parser(verb, help=f"{verb} deliveries (state in Redis; the fanout role follows within 1 s)")
        a.add_argument("name")
        a.set_defaults(func=_pauser(paused))
    rp = actions.add_parser("replay", help="deliver again from a point in time (same idempotency keys)")
    rp.add_argument("name")
    rp.add_argument("--since", required=True, help="ISO 8601 (no offset = +07:00) or an age such as 30m, 2h, 7d")
    rp.add_argument("--wait", type=float, default=10.0,
                    help="seconds to wait for the running workers to apply it (0: just ask)")
    rp.set_defaults(func=cmd_replay)


def _print_json(data: object) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _run(action: Callable[[], Any]) -> tuple[int, Any]:
    """Run one admin call; a bad file, an unknown name or an unreachable service becomes a message and a code."""
    try:
        return 0, asyncio.run(action())
    except SubscriptionConfigError as exc:
        print(f"hub subscriptions: {exc.source} is not valid:", *exc.problems, sep="\n  ", file=sys.stderr)
        return 2, None
    except KeyError as exc:
        print(f"hub subscriptions: no subscription named {exc.args[0]!r}", file=sys.stderr)
        return 1, None
    except admin.NotManaged as exc:
        print(f"hub subscriptions: {exc}", file=sys.stderr)
        return 2, None
    except (DeliveryError, RedisError, OSError) as exc:
        print(f"hub subscriptions: Kafka or Redis not reachable: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 2, None


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    code, rows = _run(lambda: admin.status(settings, admin.load(settings)))
    if code:
        return code
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no subscriptions")
        return 0
    header = ("NAME", "DELIVERY", "FORMAT", "STATE", "LAG", "DLQ")
    lines = [header] + [(r["name"], r["delivery"]["kind"], r["format"],
                         "paused" if r.get("paused") else ("running" if "paused" in r else "warehouse role"),
                         "-" if r["lag"] is None else str(r["lag"]), str(r.get("dlq_records", "-"))) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
    return 0


def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    async def one() -> Any:
        return (await admin.status(settings, (admin.find(settings, args.name),), detail=True))[0]

    code, row = _run(one)
    if not code:
        _print_json(row)
    return code


def _pauser(paused: bool) -> Callable[[Settings, argparse.Namespace], int]:
    def cmd(settings: Settings, args: argparse.Namespace) -> int:
        code, _ = _run(lambda: admin.set_paused(settings, admin.find(settings, args.name), paused))
        if not code:
            print(f"{args.name}: {'paused' if paused else 'resumed'}")
        return code

    return cmd


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    try:
        since_ms = parse_time(args.since)
    except ValueError as exc:
        print(f"hub subscriptions replay: {exc}", file=sys.stderr)
        return 2
    code, result = _run(lambda: admin.replay(settings, admin.find(settings, args.name), since_ms, args.wait))
    if code:
        return code
    since = datetime.fromtimestamp(since_ms / 1000, timezone.utc).isoformat(timespec="seconds")
    applied = result["applied_partitions"]
    if args.wait and applied:
        print(f"{args.name}: replaying from {since}; applied on partitions {', '.join(map(str, applied))}")
    elif args.wait:
        print(f"{args.name}: replay from {since} asked; no running worker took it within {args.wait:g} s "
              "(it is applied when the fanout role runs)")
    else:
        print(f"{args.name}: replay from {since} asked")
    return 0
