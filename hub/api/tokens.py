"""Bearer tokens for the record API: random, shown once, stored only as a SHA-256 hash.

The token file (JSON, mode 0600) maps token hash -> client id, scopes, revoked flag, issue time. A plain
SHA-256 is enough: a token carries 256 random bits, so nobody can enumerate hashes back to tokens (unlike a
12-digit CCCD, which needs the keyed hash of hub.pseudonym). The server re-reads the file when it changes, so
``hub api token revoke`` takes effect on the next request without a restart. A file that cannot be read
fails closed: no token is accepted until it is fixed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import orjson

from hub.filestamp import file_stamp
from hub.logging import get_logger

SCOPE_RECORD_READ = "record:read"
SCOPE_SUBSCRIPTIONS_ADMIN = "subscriptions:admin"
SCOPE_REVIEW_WRITE = "review:write"
SCOPE_OPS_READ = "ops:read"
SCOPES = frozenset({SCOPE_RECORD_READ, SCOPE_SUBSCRIPTIONS_ADMIN, SCOPE_REVIEW_WRITE, SCOPE_OPS_READ})
TOKEN_PREFIX = "hssk_"  # lets secret scanners and people recognise a leaked token
log = get_logger("api.tokens")


class TokenFileError(Exception):
    """The token file cannot be read or written, or an admin request is invalid."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Client:
    """Who a valid token belongs to and what it may do."""

    client_id: str
    scopes: frozenset[str]
    revoked: bool = False

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


def parse_bearer(header: str | None) -> str | None:
    """The token from an ``Authorization: Bearer <token>`` header; None if absent or another scheme."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def _load(path: Path) -> dict[str, dict]:
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, orjson.JSONDecodeError) as exc:
        raise TokenFileError(f"reading the token file: {type(exc).__name__}") from exc
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(tokens, dict):
        raise TokenFileError("reading the token file: no 'tokens' object")
    return tokens


def _save(path: Path, tokens: dict[str, dict]) -> None:
    """Write atomically (temp file + rename), so a running server never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".api-tokens.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(orjson.dumps({"tokens": tokens}, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _locked(path: Path):
    """One admin change at a time: two concurrent ``issue`` runs must not lose each other's token."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def issue(path: Path, client_id: str, scopes: list[str]) -> str:
    """Add a token for ``client_id`` and return it: the only time it exists in clear."""
    unknown = sorted(set(scopes) - SCOPES)
    if unknown:
        raise TokenFileError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(sorted(SCOPES))}")
    if not scopes:
        raise TokenFileError("a token needs at least one scope")
    if not client_id or not client_id.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise TokenFileError("a client id is letters, digits, '-', '_' or '.'")
    token = new_token()
    with _locked(path):
        tokens = _load(path)
        tokens[hash_token(token)] = {
            "client_id": client_id, "scopes": sorted(set(scopes)), "revoked": False,
            "issued_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        _save(path, tokens)
    return token


def revoke(path: Path, client_id: str) -> int:
    """Revoke every token of ``client_id`` (kept, flagged, for the audit trail); return how many."""
    with _locked(path):
        tokens = _load(path)
        count = 0
        for entry in tokens.values():
            if entry.get("client_id") == client_id and not entry.get("revoked"):
                entry["revoked"] = True
                entry["revoked_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
                count += 1
        if count:
            _save(path, tokens)
    return count


def listing(path: Path) -> list[dict]:
    """Clients, scopes and state, with only a short hash prefix to tell tokens apart."""
    return [{"client_id": e.get("client_id"), "scopes": e.get("scopes", []), "revoked": bool(e.get("revoked")),
             "issued_at": e.get("issued_at"), "hash_prefix": h[:8]} for h, e in sorted(_load(path).items())]


class TokenFile:
    """The server's view of the token file: reloaded when the file changes, failing closed on errors."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int, int] | None = None
        self._clients: dict[str, Client] = {}
        self._reload_if_changed()

    def _reload_if_changed(self) -> None:
        stamp = file_stamp(self._path) or (0, 0, 0)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            raw = _load(self._path)
        except TokenFileError as exc:
            log.error("token file unreadable; every token refused until it is fixed", error=str(exc))
            self._clients = {}
            return
        self._clients = {
            h: Client(str(e.get("client_id", "")), frozenset(e.get("scopes", [])), bool(e.get("revoked")))
            for h, e in raw.items() if isinstance(e, dict) and e.get("client_id")
        }

    def authenticate(self, token: str) -> Client | None:
        """The client of a known, unrevoked token; None otherwise."""
        self._reload_if_changed()
        # Looked up by hash: a timing difference can only leak bits of a hash, which do not help forge a token.
        client = self._clients.get(hash_token(token))
        if client is None or client.revoked:
            return None
        return client
