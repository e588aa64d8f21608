"""Versioned schema migrations: numbered SQL files in migrations/, applied in order, recorded in schema_version.

Applying is idempotent (what schema_version lists is skipped) and safe with several workers starting at
once (a transaction-scoped advisory lock serialises them). A migration that was applied and then edited
is refused: its checksum no longer matches, and silently diverging schemas are worse than a clear stop.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from hub.warehouse.errors import WarehouseError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# pg_advisory_xact_lock key: any constant the hub does not use elsewhere ("HSSKWH" in ASCII).
_LOCK_KEY = 0x485353_4B5748

_CREATE_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def ordered(files: Iterable[tuple[str, str]]) -> list[Migration]:
    """(file name, SQL) pairs -> migrations in version order. Versions must be 1, 2, 3 ... with no gap or twin:
    a gap usually means a file missing from a merge, and the order must not depend on luck."""
    migrations = []
    for filename, sql in files:
        match = _NAME.match(filename)
        if match is None:
            raise WarehouseError(f"migration file {filename!r} is not named NNNN_name.sql")
        migrations.append(Migration(int(match.group(1)), match.group(2), sql))
    migrations.sort(key=lambda m: m.version)
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise WarehouseError(f"migration versions must run 1, 2, 3 ...: found {migration.version} "
                                 f"where {expected} was expected")
    return migrations


def discover(folder: Path = MIGRATIONS_DIR) -> list[Migration]:
    return ordered((p.name, p.read_text(encoding="utf-8")) for p in folder.glob("*.sql"))


def pending(migrations: list[Migration], applied: dict[int, str]) -> list[Migration]:
    """The migrations still to apply, given ``applied`` (version -> checksum) from schema_version."""
    for migration in migrations:
        if migration.version in applied and applied[migration.version] != migration.checksum:
            raise WarehouseError(f"migration {migration.version:04d}_{migration.name} was changed after it was "
                                 "applied; add a new migration instead")
    known = {m.version for m in migrations}
    unknown = sorted(set(applied) - known)
    if unknown:
        raise WarehouseError(f"the database has migrations this code does not know: {unknown} (older code?)")
    return [m for m in migrations if m.version not in applied]


async def migrate(conn: Any, migrations: list[Migration] | None = None) -> list[int]:
    """Apply what is pending on an asyncpg connection, in one transaction; return the versions applied."""
    migrations = discover() if migrations is None else migrations
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(_CREATE_VERSION_TABLE)
        applied = {r["version"]: r["checksum"] for r in await conn.fetch("SELECT version, checksum FROM schema_version")}
        todo = pending(migrations, applied)
        for migration in todo:
            await conn.execute(migration.sql)
            await conn.execute("INSERT INTO schema_version (version, name, checksum) VALUES ($1, $2, $3)",
                               migration.version, migration.name, migration.checksum)
    return [m.version for m in todo]
