"""Blocking rules that work for Vietnamese names: which pairs get scored at all."""

from __future__ import annotations

import math

from hub.identity.blocking import BlockingStats, candidate_pairs
from hub.identity.model import MatchSettings
from hub.identity.records import SourceRecord, prepare


def pairs_of(*records: SourceRecord, max_block_size: int = 1000) -> set[tuple[str, str]]:
    prepared = [prepare(r, i) for i, r in enumerate(records)]
    n = len(prepared)
    return {(prepared[p // n].record_id, prepared[p % n].record_id) for p in candidate_pairs(prepared, max_block_size)}


def test_a_swapped_day_and_month_without_ids_or_phone_is_still_a_candidate() -> None:
    a = SourceRecord("a", name="Lê Thị Hạnh", birth_date="05/03/1970")
    b = SourceRecord("b", name="LE THI HANH", birth_date="03/05/1970")
    assert pairs_of(a, b) == {("a", "b")}


def test_an_unknown_day_and_month_pairs_on_name_and_year_within_one_ward() -> None:
    """Name + birth year alone holds ~700 rows for a common name at city scale: it pairs only in one ward."""
    a = SourceRecord("a", name="Phạm Văn Đức", birth_date="00/00/1962", ward="27301")
    b = SourceRecord("b", name="Phạm Văn Đức", birth_date="14/08/1962", ward="27301")
    c = SourceRecord("c", name="Phạm Văn Đức", birth_date="02/03/1962", ward="26734")
    d = SourceRecord("d", name="Phạm Văn Đức", birth_date="00/00/1962")  # no ward: nothing to pair on
    assert pairs_of(a, b, c, d) == {("a", "b")}


def test_a_wrong_birth_year_is_found_at_a_stable_address() -> None:
    home = dict(address="45 Nguyễn Trãi, P. Chợ Quán", ward="27301")
    b = SourceRecord("b", name="Phạm Văn Đức", birth_date="14/08/1962", **home)
    c = SourceRecord("c", name="PHAM VAN DUC", birth_date="14/08/1963", **home)
    assert pairs_of(b, c) == {("b", "c")}


def test_the_surname_alone_never_makes_a_candidate() -> None:
    """Nguyễn is ~38% of people: sharing it (and a birth year) says nothing."""
    a = SourceRecord("a", name="Nguyễn Văn An", birth_date="01/01/1980")
    b = SourceRecord("b", name="Nguyễn Thị Mai", birth_date="02/02/1980")
    assert pairs_of(a, b) == set()


def test_a_misspelt_name_is_found_by_ward_and_birth_date_or_by_phone() -> None:
    a = SourceRecord("a", name="Võ Thị Tuyết", birth_date="09/09/1991", ward="26734")
    b = SourceRecord("b", name="Võ Thị Tuyêt Nhi", birth_date="09/09/1991", ward="26734")
    c = SourceRecord("c", name="Vo Thi Tuyet", birth_date="", phone="+84 909 111 222")
    d = SourceRecord("d", name="Võ Tuyết", birth_date="", phone="0909111222")
    assert pairs_of(a, b, c, d) == {("a", "b"), ("c", "d")}


def test_oversized_blocks_are_skipped_and_counted() -> None:
    junk = [prepare(SourceRecord(str(i), personal_id="079185004321"), i) for i in range(5)]
    stats = BlockingStats()
    assert candidate_pairs(junk, max_block_size=4, stats=stats) == set()
    assert stats.skipped_blocks["cccd"] == 1


def test_the_batch_prior_follows_the_input_size() -> None:
    """About n·(1 − 1/1.39) true pairs among n²/2: a larger file makes any one pair less likely a match."""
    s = MatchSettings()
    assert s.batch_prior(100_000) > s.batch_prior(9_148_769)
    lam = 100_000 * (1 - 1 / 1.39) / (100_000 * 99_999 / 2)
    assert math.isclose(s.batch_prior(100_000), math.log2(lam / (1 - lam)))
