"""Writing plans to PostgreSQL: the batched writers, and the row-at-a-time baseline bench/warehouse.py measures.

Batched (``write``): per table, one ``INSERT ... SELECT FROM json_populate_recordset($1) ON CONFLICT (key)
DO UPDATE ... WHERE newer`` with the batch's rows as one JSON parameter: one round trip per table instead
of one per row, and the server does the upsert as a set. ``write_copy`` does the same from a binary COPY
into temp tables; the benchmark keeps it to show why ``write`` does not use it (at the stage's batch size,
emptying the temp tables at every commit costs more than COPY saves). The whole plan is one transaction, so
a batch is in the warehouse entirely or not at all, before the stage lets its offsets be committed.

Facts of a citizen that was merged away are written to the survivor (joined through citizen_merge), and
each merge re-points what the retired citizen already had. Rows only ever move forward: the WHERE of the
upsert keeps the row whose ``(event_occurred_at, event_id)`` is larger, so replays change nothing.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from hub.identity.events import merged_through
from hub.warehouse import schema
from hub.warehouse.migrate import migrate
from hub.warehouse.plan import Plan
from hub.warehouse.schema import Table

# Errors that say "the database is not reachable right now", as opposed to "this data cannot be written".
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ConnectionError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError, asyncpg.CrashShutdownError,
)


SOURCE = "source_citizen_id"


def _tmp(table: Table) -> str:
    return f"tmp_{table.name}"


def _newer(table: Table, dim: bool = False) -> str:
    cond = "(EXCLUDED.event_occurred_at, EXCLUDED.event_id) > (t.event_occurred_at, t.event_id)"
    return f"t.event_id IS NULL OR {cond}" if dim else cond


def _source(table: Table) -> tuple[str, str, str]:
    """A fact's extra column (migration 0002): the citizen its event named, kept when a merge moves the fact
    so an unmerge can move it back. Returns (column, value, set) to append to an upsert; nothing for a
    dimension."""
    if table not in schema.FACTS:
        return "", "", ""
    return f", {SOURCE}", ", s.citizen_id", f", {SOURCE} = EXCLUDED.{SOURCE}"


def _upsert_from_tmp(table: Table) -> str:
    fact = table in schema.FACTS
    extra_col, extra_val, extra_set = _source(table)
    cols = ", ".join(table.columns) + extra_col
    picked = ", ".join("coalesce(m.survivor_id, s.citizen_id)" if fact and c == "citizen_id" else f"s.{c}"
                       for c in table.columns) + extra_val
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in table.columns if c != table.key) + extra_set
    join = " LEFT JOIN citizen_merge m ON m.retired_id = s.citizen_id" if fact else ""
    return (f"INSERT INTO {table.name} AS t ({cols}) SELECT {picked} FROM {_tmp(table)} s{join} "
            f"ON CONFLICT ({table.key}) DO UPDATE SET {sets} WHERE {_newer(table, table not in schema.FACTS)}")


def _upsert_one(table: Table) -> str:
    fact = table in schema.FACTS
    cols = ", ".join(table.columns) + (f", {SOURCE}" if fact else "")
    at = table.columns.index("citizen_id") + 1
    values = ", ".join(
        f"coalesce((SELECT survivor_id FROM citizen_merge WHERE retired_id = ${i}), ${i})"
        if c == "citizen_id" and fact else f"${i}"
        for i, c in enumerate(table.columns, start=1)) + (f", ${at}" if fact else "")
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in table.columns if c != table.key) + _source(table)[2]
    return (f"INSERT INTO {table.name} AS t ({cols}) VALUES ({values}) "
            f"ON CONFLICT ({table.key}) DO UPDATE SET {sets} WHERE {_newer(table, table not in schema.FACTS)}")


def _upsert_from_json(table: Table) -> str:
    """One statement for the whole batch, fed one JSON array of row objects; json_populate_recordset turns it
    into rows of the table's own type (JSON arrays become text[]), so no column type is written here."""
    cols = ", ".join(table.columns)

    def pick(c: str) -> str:
        if c == "citizen_id" and table in schema.FACTS:
            return "coalesce(m.survivor_id, s.citizen_id)"
        if c == "sensitivity":
            return "coalesce(s.sensitivity, '{}')"
        return f"s.{c}"

    join = " LEFT JOIN citizen_merge m ON m.retired_id = s.citizen_id" if table in schema.FACTS else ""
    extra_col, extra_val, extra_set = _source(table)
    cols += extra_col
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in table.columns if c != table.key) + extra_set
    return (f"INSERT INTO {table.name} AS t ({cols}) SELECT {', '.join(pick(c) for c in table.columns)}{extra_val} "
            f"FROM json_populate_recordset(NULL::{table.name}, $1::json) AS s{join} "
            f"ON CONFLICT ({table.key}) DO UPDATE SET {sets} WHERE {_newer(table, table not in schema.FACTS)}")


def _json_rows(table: Table, rows: list[tuple[Any, ...]]) -> str:
    cols = table.columns
    return orjson.dumps([dict(zip(cols, row)) for row in rows]).decode()


_UPSERT_FROM_JSON = {t.name: _upsert_from_json(t) for t in (*schema.FACTS, schema.CITIZEN)}


_UPSERT_FROM_TMP = {t.name: _upsert_from_tmp(t) for t in (*schema.FACTS, schema.CITIZEN)}
_UPSERT_ONE = {t.name: _upsert_one(t) for t in (*schema.FACTS, schema.CITIZEN)}
_PLACEHOLDER_CITIZENS = "INSERT INTO dim_citizen (citizen_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING"
_PLACEHOLDER_FACILITIES = "INSERT INTO dim_facility (facility_code) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING"


class Warehouse:
    """One connection to the warehouse database; ``write`` takes a whole plan in one transaction."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._temp_ready = False

    @classmethod
    async def connect(cls, dsn: str, timeout_s: float = 10.0) -> "Warehouse":
        return cls(await asyncpg.connect(dsn, timeout=timeout_s))

    async def migrate(self) -> list[int]:
        return await migrate(self.conn)

    async def close(self) -> None:
        await self.conn.close()

    async def _ensure_temp_tables(self) -> None:
        # Per connection, emptied at every commit: created once, reused by every batch.
        if self._temp_ready:
            return
        for table in (*schema.FACTS, schema.CITIZEN):
            await self.conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_tmp(table)} "
                                    f"(LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        self._temp_ready = True

    async def write(self, plan: Plan) -> None:
        """The batched writer the stage uses: per table, one INSERT ... SELECT FROM json_populate_recordset(the
        batch as one JSON parameter) ... ON CONFLICT. One round trip per table; orjson encodes the batch in C
        (asyncpg's per-element array encoding cost more), and no temp table needs emptying at every commit
        (bench/warehouse.py measures both alternatives)."""
        if not plan:
            return
        conn = self.conn
        async with conn.transaction():
            await self._dimensions_and_merges(plan)
            if plan.citizens:
                await conn.execute(_UPSERT_FROM_JSON[schema.CITIZEN.name],
                                   _json_rows(schema.CITIZEN, list(plan.citizens.values())))
            for table in schema.FACTS:
                rows = plan.facts.get(table.name)
                if rows:
                    await conn.execute(_UPSERT_FROM_JSON[table.name], _json_rows(table, list(rows.values())))

    async def write_copy(self, plan: Plan) -> None:
        """The same upserts fed by binary COPY into per-connection temp tables (ON COMMIT DELETE ROWS)."""
        if not plan:
            return
        await self._ensure_temp_tables()
        conn = self.conn
        async with conn.transaction():
            await self._dimensions_and_merges(plan)
            if plan.citizens:
                await conn.copy_records_to_table(_tmp(schema.CITIZEN), records=list(plan.citizens.values()),
                                                 columns=list(schema.CITIZEN.columns))
                await conn.execute(_UPSERT_FROM_TMP[schema.CITIZEN.name])
            for table in schema.FACTS:
                rows = plan.facts.get(table.name)
                if rows:
                    await conn.copy_records_to_table(_tmp(table), records=list(rows.values()),
                                                     columns=list(table.columns))
                    await conn.execute(_UPSERT_FROM_TMP[table.name])

    async def write_row_at_a_time(self, plan: Plan) -> None:
        """The baseline: the same upserts, one INSERT statement (one round trip) per row."""
        if not plan:
            return
        conn = self.conn
        async with conn.transaction():
            await self._dimensions_and_merges(plan)
            for row in plan.citizens.values():
                await conn.execute(_UPSERT_ONE[schema.CITIZEN.name], *row)
            for table in schema.FACTS:
                sql = _UPSERT_ONE[table.name]
                for row in plan.facts.get(table.name, {}).values():
                    await conn.execute(sql, *row)

    async def _dimensions_and_merges(self, plan: Plan) -> None:
        conn = self.conn
        await conn.execute(_PLACEHOLDER_FACILITIES, sorted(plan.facilities))
        await conn.execute(_PLACEHOLDER_CITIZENS, sorted(plan.citizen_ids | {link[1] for _, link in plan.links}))
        for kind, link in plan.links:
            if kind == "merge":
                await self._merge(*link)
            else:
                await self._unmerge(*link)

    async def _merge(self, retired: str, survivor: str, event_id: str, occurred: Any) -> None:
        """Retire ``retired`` into ``survivor`` (or whoever ``survivor`` was itself merged into). Idempotent."""
        conn = self.conn
        if await conn.fetchval("SELECT 1 FROM citizen_unmerge WHERE restored_id = $1 AND "
                               "(event_occurred_at, event_id) > ($2, $3)", retired, occurred, event_id):
            return  # undone by a later unmerge (this merge is a replay, or arrived late)
        final = await conn.fetchval(
            "SELECT coalesce((SELECT survivor_id FROM citizen_merge WHERE retired_id = $1), $1)", survivor)
        if final == retired:  # a merge back into itself (A -> B after B -> A): keep the first
            return
        await conn.execute("INSERT INTO citizen_merge (retired_id, survivor_id, event_id, event_occurred_at, via) "
                           "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (retired_id) DO NOTHING",
                           retired, final, event_id, occurred, survivor)
        final = await conn.fetchval("SELECT survivor_id FROM citizen_merge WHERE retired_id = $1", retired)
        await conn.execute("UPDATE citizen_merge SET survivor_id = $2 WHERE survivor_id = $1", retired, final)
        for table in schema.FACTS:
            await conn.execute(f"UPDATE {table.name} SET citizen_id = $2 WHERE citizen_id = $1", retired, final)
        await conn.execute("UPDATE dim_citizen SET merged_into = $2 WHERE (citizen_id = $1 OR merged_into = $1) "
                           "AND merged_into IS DISTINCT FROM $2", retired, final)

    async def _unmerge(self, restored: str, survivor: str, event_id: str, occurred: Any) -> None:
        """Split ``restored``, and whoever was merged through it, back out of its group; its facts (those whose
        events named one of them) go back to it. Idempotent and order-safe: a citizen that is not merged, or was
merged again by a later event, is left alone.
        Facts that arrived after the merge under the survivor's own id stay with the survivor (the record
        attributes those by identifiers, which the pseudonymous warehouse does not hold)."""
        conn = self.conn
        await conn.execute("INSERT INTO citizen_unmerge (event_id, restored_id, survivor_id, event_occurred_at) "
                           "VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING",
                           event_id, restored, survivor, occurred)
        merge = await conn.fetchrow("SELECT survivor_id, event_occurred_at, event_id FROM citizen_merge "
                                    "WHERE retired_id = $1", restored)
        if merge is None or (merge["event_occurred_at"], merge["event_id"]) > (occurred, event_id):
            return  # not merged (a replay), or merged again after this unmerge
        final = merge["survivor_id"]
        via = dict(await conn.fetch("SELECT retired_id, via FROM citizen_merge WHERE survivor_id = $1", final))
        leaving = [m for m in via if merged_through(via, m, restored)]
        others = [m for m in leaving if m != restored]
        await conn.execute("DELETE FROM citizen_merge WHERE retired_id = $1", restored)
        await conn.execute("UPDATE citizen_merge SET survivor_id = $1 WHERE retired_id = ANY($2::text[])",
                           restored, others)
        for table in schema.FACTS:  # the WHERE repeats the partial index's predicate so the planner uses it
            await conn.execute(f"UPDATE {table.name} SET citizen_id = $1 WHERE {SOURCE} = ANY($2::text[]) "
                               f"AND citizen_id = $3 AND {SOURCE} IS DISTINCT FROM citizen_id",
                               restored, leaving, final)
        await conn.execute("UPDATE dim_citizen SET merged_into = NULL WHERE citizen_id = $1", restored)
        await conn.execute("UPDATE dim_citizen SET merged_into = $1 WHERE citizen_id = ANY($2::text[])",
                           restored, others)

