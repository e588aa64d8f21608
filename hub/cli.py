"""The ``hub`` command: run the local hub, send HL7 feeds, read records, run single roles."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import orjson

from hub import logging as hub_logging
from hub.errors import DeliveryError, ParseError
from hub.ops.local import ROLES
from hub.settings import REPO_ROOT, Settings

DEMO_FILE = REPO_ROOT / "deploy" / "local" / "demo" / "adt-demo.hl7"
DEMO_CCCD = ("079090001234", "079185004321")


def _print_json(data: object) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n")


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from hub.ops import local, status
    from hub.topics import ensure_topics

    if local.stack("start", settings) != 0:
        print("hub up: the local stack did not start (see the message above)", file=sys.stderr)
        return 1
    created = asyncio.run(ensure_topics(settings))
    if created:
        print(f"topics created: {', '.join(created)}")
    for role in local.ROLES:
        local.start_role(settings, role)
    not_ready = asyncio.run(status.wait_ready(settings, local.ROLES, timeout_s=args.timeout))
    if not_ready:
        for role in not_ready:
            print(f"role {role} is not ready; see {local.log_file(settings, role)}", file=sys.stderr)
        return 1
    print("HSSK Hub is up:")
    print(f"  MLLP (HL7 v2)  {settings.mllp_host}:{settings.mllp_port}")
    print(f"  Kafka          {settings.kafka_bootstrap}")
    print(f"  Redis          {settings.redis_url}")
    print(f"  PostgreSQL     {settings.pg_dsn} (the warehouse)")
    print(f"  Record API     http://{settings.api_host}:{settings.api_port} (tokens: hub api token issue)")
    print(f"  roles          {', '.join(local.ROLES)} (logs in {settings.state_dir / 'logs'})")
    return 0


def cmd_down(settings: Settings, args: argparse.Namespace) -> int:
    from hub.ops import local

    for role in local.ROLES:  # the listener first: no new message is accepted while the rest stops
        if local.stop_role(settings, role):
            print(f"stopped {role}")
    return local.stack("stop", settings)


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from hub.ops import status

    result = asyncio.run(status.collect(settings))
    if args.json:
        _print_json(result.to_dict())
        return 0
    for name, svc in result.services.items():
        print(f"{name:<11} {'up' if svc['up'] else 'down':<5} {svc['address']}")
    for name, role in result.roles.items():
        pid = f"pid {role['pid']}" if role["pid"] else ""
        print(f"{name:<11} {'up' if role['up'] else 'down':<5} {role['address']}  {pid}")
    if result.topics:
        print("topics      " + ", ".join(result.topics))
    for lag in result.lag:
        print(f"lag         {lag['group']:<17} {lag['topic']:<17} {lag['lag']}")
    return 0


def read_messages(path: Path, charset: str) -> list[bytes]:
    """Messages in a file (any segment separator, BOM allowed, batches unwrapped), re-encoded for sending."""
    from connectors.hl7v2.parse import decode, split_messages

    return [m.encode(charset) for m in split_messages(decode(path.read_bytes(), charset))]


def cmd_send(settings: Settings, args: argparse.Namespace) -> int:
    from connectors.mllp.sender import send_messages

    messages: list[bytes] = []
    for name in args.files:
        try:
            messages += read_messages(Path(name), args.charset)
        except (OSError, ParseError) as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
    port = args.port or settings.mllp_port
    try:
        results = asyncio.run(send_messages(args.host or settings.mllp_host, port, messages, args.timeout))
    except OSError as exc:
        print(f"cannot reach the MLLP listener at {args.host or settings.mllp_host}:{port}: {exc}", file=sys.stderr)
        return 2
    for r in results:
        mismatch = "" if r.acked_control_id == r.control_id else f" (ACK names {r.acked_control_id!r})"
        print(f"{r.code or 'NO-ACK':<6} {r.control_id}{mismatch}{'  ' + r.text if r.text else ''}")
    return 0 if all(r.accepted for r in results) else 1


def cmd_record(settings: Settings, args: argparse.Namespace) -> int:
    from hub.audit import local_actor
    from hub.record.read import read_record

    try:
        record = asyncio.run(read_record(settings, citizen_id=args.citizen_id, cccd=args.cccd,
                                         actor=local_actor(), purpose=args.purpose, channel="cli"))
    except DeliveryError as exc:
        print(f"hub record: {exc.reason}", file=sys.stderr)
        return 2
    if record is None:
        print("no record for that citizen", file=sys.stderr)
        return 1
    _print_json(record)
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    """Send the demo feed, wait (polling) until both records reflect it, print one."""
    from hub.ops.demo import wait_for_records

    sent = cmd_send(settings, argparse.Namespace(files=[str(DEMO_FILE)], host=None, port=None,
                                                 charset="utf-8", timeout=15.0))
    if sent != 0:
        return sent
    if not asyncio.run(wait_for_records(settings, DEMO_CCCD, timeout_s=60.0)):
        print("the demo records did not appear within 60 s; see `hub status` and the logs", file=sys.stderr)
        return 1
    print(f"\nThe record of the citizen with CCCD {DEMO_CCCD[0]} (this read is audited on audit.access):")
    return cmd_record(settings, argparse.Namespace(citizen_id=None, cccd=DEMO_CCCD[0], purpose="demo"))


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    if args.role == "mllp":
        from connectors.mllp import service

        service.run(settings)
        return 0
    if args.role == "api":
        from hub.api import service as api_service

        api_service.run(settings)
        return 0
    if args.role == "receiver":  # the reference receiver ships in deploy/, which is not an installed package
        if str(REPO_ROOT) not in sys.path:
            sys.path.insert(0, str(REPO_ROOT))
        from deploy.local.receiver import service as receiver_service

        receiver_service.run(settings)
        return 0
    import importlib

    import faust

    app = importlib.import_module(f"hub.stream.{args.role}").build(settings)
    faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True).execute_from_commandline()
    return 0


def cmd_topics(settings: Settings, args: argparse.Namespace) -> int:
    from hub.topics import ensure_topics

    created = asyncio.run(ensure_topics(settings))
    print(f"created: {', '.join(created)}" if created else "all topics exist")
    return 0


def cmd_translate(settings: Settings, args: argparse.Namespace) -> int:
    """Offline: EMR files of any imported format -> canonical events as JSON lines (hub.ops.translate_files)."""
    from connectors.hl7v2.offline import now_received_at
    from hub.ops.translate_files import translate_files

    return translate_files(args.files, charset=args.charset, received_at=args.received_at or now_received_at(),
                           out=sys.stdout, err=sys.stderr, facility=args.facility)


def cmd_validate(settings: Settings, args: argparse.Namespace) -> int:
    """Offline: a strict hl7apy conformance report per message and segment (connectors.hl7v2.offline)."""
    from connectors.hl7v2.offline import validate_files

    return validate_files(args.files, charset=args.charset, warnings=args.warnings, out=sys.stdout, err=sys.stderr)


def cmd_retranslate(settings: Settings, args: argparse.Namespace) -> int:
    """Re-run translation over a range of hl7v2.raw and publish the events again (hub.ops.retranslate)."""
    from hub.ops.dlq import parse_time
    from hub.ops.retranslate import RawRange, retranslate

    try:
        selection = RawRange(since_ms=parse_time(args.since) if args.since else None,
                             until_ms=parse_time(args.until) if args.until else None,
                             partition=args.partition, from_offset=args.from_offset, to_offset=args.to_offset)
        summary = asyncio.run(retranslate(settings, selection, dry_run=args.dry_run))
    except ValueError as exc:
        print(f"hub retranslate: {exc}", file=sys.stderr)
        return 2
    except (DeliveryError, OSError, asyncio.TimeoutError) as exc:
        print(f"hub retranslate: Kafka not reachable or did not confirm: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 2
    verb = "would publish" if args.dry_run else "published"
    print(f"raw messages read: {summary.read}; events {verb}: {summary.events}; failed (to hub.dlq): {summary.failed}")
    for reason, n in sorted(summary.reasons.items(), key=lambda kv: -kv[1]):
        print(f"  {n:>6}  {reason}")
    return 0


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    """EMR export files (BHYT XML, registry CSV, HL7 v2, FHIR Bundles) into Kafka (hub.ops.file_import); a
    progress bar while reading (tqdm, terminals only) and a summary per file."""
    from hub.ops.file_import import import_files
    from hub.ops.progress import TqdmProgress

    try:
        reports = asyncio.run(import_files(settings, [Path(f) for f in args.files], TqdmProgress(),
                                           facility=args.facility))
    except (DeliveryError, OSError, asyncio.TimeoutError) as exc:
        print(f"hub import: Kafka not reachable or did not confirm: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 2
    for r in reports:
        print("\n".join(r.summary_lines()), file=sys.stderr if r.error else sys.stdout)
    return 0 if any(r.readable and r.read for r in reports) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hub", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start Kafka, Redis and every hub role; print the endpoints")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for every role to be ready")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop every role and the local stack this hub started").set_defaults(func=cmd_down)

    st = sub.add_parser("status", help="services and roles: up or down, addresses, topics, lag")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    send = sub.add_parser("send", help="send HL7 v2 messages over MLLP and print each ACK")
    send.add_argument("files", nargs="+", metavar="FILE")
    send.add_argument("--host")
    send.add_argument("--port", type=int)
    send.add_argument("--charset", default="utf-8", help="charset of the files (default utf-8)")
    send.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for each ACK")
    send.set_defaults(func=cmd_send)

    tr = sub.add_parser("translate", help="offline: print the canonical events of EMR files (HL7 v2, BHYT XML, "
                                          "registry CSV, FHIR Bundles), one JSON per line (failures on stderr; "
                                          "no Kafka or Redis needed)")
    tr.add_argument("files", nargs="+", metavar="FILE")
    tr.add_argument("--charset", default="utf-8", help="charset of the files (default utf-8; e.g. windows-1258)")
    tr.add_argument("--received-at", help="receipt time to stamp (ISO 8601 with offset; default now, +07:00)")
    tr.add_argument("--facility", help="facility code (MA_CSKCB) for BHYT XML / FHIR files that do not name one")
    tr.set_defaults(func=cmd_translate)

    va = sub.add_parser("validate", help="offline: strict HL7 v2 conformance report (hl7apy) per message and "
                                         "segment; exit 1 when a message has errors")
    va.add_argument("files", nargs="+", metavar="FILE")
    va.add_argument("--charset", default="utf-8", help="charset of the files (default utf-8)")
    va.add_argument("--warnings", action="store_true", help="also list warnings (table values, lengths)")
    va.set_defaults(func=cmd_validate)

    imp = sub.add_parser("import", help="import EMR export files (BHYT XML QD 130/4210, vaccination registry CSV, "
                                        "HL7 v2 files and batches, FHIR R4 Bundles) "
                                        "into Kafka; prints a summary per file; exit 1 only when nothing was read")
    imp.add_argument("files", nargs="+", metavar="FILE")
    imp.add_argument("--facility", help="facility code (MA_CSKCB) for BHYT XML / FHIR files that do not name one")
    imp.set_defaults(func=cmd_import)

    rt = sub.add_parser("retranslate", help="re-run translation over a range of hl7v2.raw (after a mapping fix); "
                                            "event ids are deterministic, so consumers absorb what they have")
    rt.add_argument("--since", help="from this time (ISO 8601, no offset = +07:00, or an age such as 2h)")
    rt.add_argument("--until", help="up to this time")
    rt.add_argument("--partition", type=int, help="only this partition of hl7v2.raw (needed for offsets)")
    rt.add_argument("--from-offset", type=int, help="first offset (inclusive)")
    rt.add_argument("--to-offset", type=int, help="last offset (inclusive)")
    rt.add_argument("--dry-run", action="store_true", help="translate and count, publish nothing")
    rt.set_defaults(func=cmd_retranslate)

    from hub.api.commands import add_api_commands
    from hub.fanout.commands import add_subscription_commands
    from hub.identity.commands import add_identity_commands, add_review_commands
    from hub.ops.commands import add_ops_commands
    from hub.ops.rebuild import add_rebuild_commands
    from hub.ops.watch import add_watch_commands

    add_ops_commands(sub)
    add_api_commands(sub)
    add_identity_commands(sub)
    add_watch_commands(sub)
    add_review_commands(sub)
    add_rebuild_commands(sub)
    add_subscription_commands(sub)

    rec = sub.add_parser("record", help="print a citizen's current record as JSON (the read is audited)")
    who = rec.add_mutually_exclusive_group(required=True)
    who.add_argument("--cccd", help="the citizen's 12-digit CCCD (exact match)")
    who.add_argument("citizen_id", nargs="?", help="the pseudonymous citizen id")
    rec.add_argument("--purpose", default="operator-lookup", help="why the record is read (audited)")
    rec.set_defaults(func=cmd_record)

    sub.add_parser("demo", help="send a short Vietnamese ADT feed and print the resulting record").set_defaults(
        func=cmd_demo)

    run = sub.add_parser("run", help="run one role in the foreground (what `hub up` starts)")
    run.add_argument("role", choices=list(ROLES))
    run.set_defaults(func=cmd_run)

    topics = sub.add_parser("topics", help="topic catalogue operations")
    topics.add_argument("action", choices=["create"])
    topics.set_defaults(func=cmd_topics)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings.from_env()
    hub_logging.configure(settings.log_level)
    return args.func(settings, args)


if __name__ == "__main__":
    sys.exit(main())
