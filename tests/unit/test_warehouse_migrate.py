"""Migrations: numbered files in order, gaps and twins refused, edited migrations refused, schema.py in step."""

from __future__ import annotations

import re

import pytest

from hub.warehouse import schema
from hub.warehouse.errors import WarehouseError
from hub.warehouse.migrate import Migration, discover, ordered, pending


class TestOrdered:
    def test_sorted_by_number_not_by_listing(self) -> None:
        got = ordered([("0003_c.sql", "C"), ("0001_a.sql", "A"), ("0002_b.sql", "B")])
        assert [(m.version, m.name, m.sql) for m in got] == [(1, "a", "A"), (2, "b", "B"), (3, "c", "C")]

    @pytest.mark.parametrize(("files", "reason"), [
        ([("0001_a.sql", ""), ("0003_c.sql", "")], "found 3 where 2"),
        ([("0001_a.sql", ""), ("0001_b.sql", "")], "found 1 where 2"),
        ([("0002_b.sql", "")], "found 2 where 1"),
        ([("1_a.sql", "")], "NNNN_name"),
        ([("0001_A-b.sql", "")], "NNNN_name"),
    ])
    def test_gaps_twins_and_bad_names_are_refused(self, files: list[tuple[str, str]], reason: str) -> None:
        with pytest.raises(WarehouseError, match=reason):
            ordered(files)


class TestPending:
    m1, m2 = Migration(1, "a", "CREATE TABLE a ()"), Migration(2, "b", "CREATE TABLE b ()")

    def test_only_what_is_not_applied(self) -> None:
        assert pending([self.m1, self.m2], {}) == [self.m1, self.m2]
        assert pending([self.m1, self.m2], {1: self.m1.checksum}) == [self.m2]
        assert pending([self.m1, self.m2], {1: self.m1.checksum, 2: self.m2.checksum}) == []

    def test_an_applied_migration_that_was_edited_is_refused(self) -> None:
        with pytest.raises(WarehouseError, match="changed after it was applied"):
            pending([self.m1, self.m2], {1: "0" * 64})

    def test_a_database_ahead_of_the_code_is_refused(self) -> None:
        with pytest.raises(WarehouseError, match=r"does not know: \[3\]"):
            pending([self.m1, self.m2], {1: self.m1.checksum, 2: self.m2.checksum, 3: "x"})


def _sql_columns() -> dict[str, tuple[str, ...]]:
    tables = {}
    for m in discover():
        for name, body in re.findall(r"CREATE TABLE (\w+) \((.*?)\n\);", m.sql, re.S):
            cols = [line.strip().split()[0] for line in body.splitlines()
                    if line.strip() and not line.strip().startswith("--")]
            tables[name] = tuple(cols)
    return tables


def test_the_shipped_migrations_are_in_order() -> None:
    assert [m.version for m in discover()] == list(range(1, len(discover()) + 1))


def test_schema_py_lists_the_migrated_columns_in_order() -> None:
    """COPY and the upserts are built from schema.py: its columns must be the tables' (loaded_at aside)."""
    sql = _sql_columns()
    for table in schema.BY_NAME.values():
        written = tuple(c for c in sql[table.name] if c not in ("loaded_at", "merged_into"))
        assert written == table.columns, table.name
