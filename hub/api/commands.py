"""``hub api serve`` and ``hub api token issue|revoke|list``, registered on the ``hub`` parser.

Exit codes: 0 done; 1 nothing to revoke; 2 bad arguments or an unreadable token file (one line on stderr).
A token is printed once, on stdout, and never stored: only its SHA-256 is written to the token file.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from hub.api import tokens
from hub.settings import Settings


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from hub.api import service

    if args.port is not None:
        from dataclasses import replace

        settings = replace(settings, api_port=args.port)
    service.run(settings)
    return 0


def cmd_token_issue(settings: Settings, args: argparse.Namespace) -> int:
    try:
        token = tokens.issue(settings.api_token_file, args.client, args.scope)
    except (tokens.TokenFileError, OSError) as exc:
        print(f"hub api token issue: {exc}", file=sys.stderr)
        return 2
    print(token)
    print(f"issued for client {args.client!r} with {', '.join(sorted(set(args.scope)))}; shown once, "
          f"store it now (only its hash is kept in {settings.api_token_file})", file=sys.stderr)
    return 0


def cmd_token_revoke(settings: Settings, args: argparse.Namespace) -> int:
    try:
        count = tokens.revoke(settings.api_token_file, args.client)
    except (tokens.TokenFileError, OSError) as exc:
        print(f"hub api token revoke: {exc}", file=sys.stderr)
        return 2
    if not count:
        print(f"hub api token revoke: client {args.client!r} has no active token", file=sys.stderr)
        return 1
    print(f"revoked {count} token(s) of client {args.client!r}")
    return 0


def cmd_token_list(settings: Settings, args: argparse.Namespace) -> int:
    try:
        rows = tokens.listing(settings.api_token_file)
    except tokens.TokenFileError as exc:
        print(f"hub api token list: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def add_api_commands(sub: argparse._SubParsersAction) -> None:
    api = sub.add_parser("api", help="the record API: serve it, manage its bearer tokens")
    api_sub = api.add_subparsers(dest="api_command", required=True)

    serve = api_sub.add_parser("serve", help="serve the record API in the foreground (HSSK_API_PORT, default 8080)")
    serve.add_argument("--port", type=int, help="listen on this port instead of HSSK_API_PORT")
    serve.set_defaults(func=cmd_serve)

    token = api_sub.add_parser("token", help="issue, revoke or list API tokens (HSSK_API_TOKEN_FILE)")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    issue = token_sub.add_parser("issue", help="issue a token for a client; it is printed once, only its hash kept")
    issue.add_argument("--client", required=True, help="the client id that audit events name as the actor")
    issue.add_argument("--scope", required=True, action="append", choices=sorted(tokens.SCOPES),
                       help="a scope the token carries (repeat for several)")
    issue.set_defaults(func=cmd_token_issue)
    revoke = token_sub.add_parser("revoke", help="revoke every token of a client (takes effect on the next request)")
    revoke.add_argument("--client", required=True)
    revoke.set_defaults(func=cmd_token_revoke)
    token_sub.add_parser("list", help="clients, scopes, revoked flags and hash prefixes (never tokens)").set_defaults(
        func=cmd_token_list)
