"""What the receiver accepted, durably, in SQLite: one row per idempotency key, numbered in order of arrival.

Rows are committed (WAL, ``synchronous=FULL``: on disk, not just in the OS) before the receiver answers 2xx,
so a push it acknowledged survives a crash of the receiver or of the machine. ``add_many`` stores the pushes
that arrived together in one transaction, one fsync for all of them (group commit: an fsync costs ~1-3 ms
here, one per push would cap the receiver near 300-1,000 pushes/s). A repeated idempotency key changes
nothing and reports the first row.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,  -- order of arrival
    idempotency_key TEXT NOT NULL UNIQUE,
    subscription    TEXT NOT NULL,
    citizen_id      TEXT,                               -- pseudonymous; NULL when the body names none
    format          TEXT,                               -- the document's "format" (health-book, merged, ...)
    signed_at       INTEGER NOT NULL,                   -- the X-HSSK-Timestamp of the request
    received_at     TEXT NOT NULL,                      -- ISO 8601 with offset
    body            BLOB NOT NULL                       -- the exact bytes that were signed
);
CREATE INDEX IF NOT EXISTS deliveries_by_citizen ON deliveries (citizen_id, seq);
"""
_FIELDS = "idempotency_key, subscription, citizen_id, format, signed_at, received_at, body"
_COLUMNS = "seq, " + _FIELDS


@dataclass(frozen=True, slots=True)
class Push:
    """One verified request, as it is stored."""

    idempotency_key: str
    subscription: str
    citizen_id: str | None
    format: str | None
    signed_at: int
    received_at: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Delivery(Push):
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Stored:
    """The outcome of one push: the row that holds its key, and whether this push created it."""

    seq: int
    duplicate: bool
    same_body: bool = True  # False: the key was seen before with other bytes (kept: the first body)


def _row(push: Push) -> tuple:
    """The INSERT parameters in _FIELDS order (dataclasses.astuple deep-copies every field: 2% of a push)."""
    return (push.idempotency_key, push.subscription, push.citizen_id, push.format, push.signed_at, push.received_at,
            push.body)


def _delivery(row: tuple) -> Delivery:
    seq, *fields = row
    return Delivery(*fields[:-1], bytes(fields[-1]), seq=seq)


class DeliveryStore:
    """One SQLite file, one writer. Calls are synchronous: the app runs them on one thread of their own."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def add_many(self, pushes: list[Push]) -> list[Stored]:
        """Store the pushes in one transaction, in list order (a key repeated inside the list is stored once)."""
        results = []
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for push in pushes:
                cursor = self._db.execute(f"INSERT INTO deliveries ({_FIELDS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
                                          " ON CONFLICT (idempotency_key) DO NOTHING", _row(push))
                if cursor.rowcount == 1:
                    results.append(Stored(seq=cursor.lastrowid, duplicate=False))
                    continue
                seq, first_body = self._db.execute("SELECT seq, body FROM deliveries WHERE idempotency_key = ?",
                                                   (push.idempotency_key,)).fetchone()
                results.append(Stored(seq=seq, duplicate=True, same_body=bytes(first_body) == push.body))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return results

    def add(self, push: Push) -> Stored:
        return self.add_many([push])[0]

    def deliveries(self, *, citizen_id: str | None = None, subscription: str | None = None, after: int = 0,
                   limit: int = 1000) -> list[Delivery]:
        """Rows in order of arrival, optionally for one citizen and/or subscription, after ``seq``."""
        where, args = ["seq > ?"], [after]
        if citizen_id is not None:
            where.append("citizen_id = ?")
            args.append(citizen_id)
        if subscription is not None:
            where.append("subscription = ?")
            args.append(subscription)
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM deliveries WHERE {' AND '.join(where)}"
                                " ORDER BY seq LIMIT ?", (*args, limit))
        return [_delivery(row) for row in rows]

    def latest(self, citizen_id: str, formats: tuple[str, ...], subscription: str | None = None) -> Delivery | None:
        """The last push of one of ``formats`` that arrived for a citizen (the sender keeps per-citizen order)."""
        sql = (f"SELECT {_COLUMNS} FROM deliveries WHERE citizen_id = ?"
               f" AND format IN ({', '.join('?' * len(formats))})")
        args: list[object] = [citizen_id, *formats]
        if subscription is not None:
            sql += " AND subscription = ?"
            args.append(subscription)
        row = self._db.execute(sql + " ORDER BY seq DESC LIMIT 1", args).fetchone()
        return _delivery(row) if row else None

    def count(self) -> int:
        return self._db.execute("SELECT count(*) FROM deliveries").fetchone()[0]

    def close(self) -> None:
        self._db.close()
