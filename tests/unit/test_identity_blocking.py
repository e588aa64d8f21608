"""Blocking rules that work for Vietnamese names: which pairs get scored at all."""

from __future__ import annotations

import math

from hub.identity.blocking import PROBE_RULES, RULES, BlockingStats, candidate_pairs, iter_candidate_pairs
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


def test_a_household_phone_pairs_only_rows_with_one_birth_year() -> None:
    """Parents and children share a phone; with the birth year it is one person's (or twins')."""
    home = dict(phone="0909 111 222")
    father = SourceRecord("f", name="Nguyễn Văn Hải", birth_date="02/02/1975", **home)
    son = SourceRecord("s", name="Nguyễn Minh Khang", birth_date="09/10/2005", **home)
    father_again = SourceRecord("g", name="Nguyen Van Hai", birth_date="00/00/1975", phone="+84909111222")
    assert pairs_of(father, son, father_again) == {("f", "g")}


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


def test_regional_surname_spellings_and_missing_diacritics_share_the_name_and_birth_date_key() -> None:
    """Hoàng/Huỳnh and Vũ/Võ are one surname written two ways: the same person in any ward."""
    a = SourceRecord("a", name="Hoàng Văn Nam", birth_date="03/04/1985", ward="26734")
    b = SourceRecord("b", name="HUYNH VAN NAM", birth_date="1985-04-03", ward="27301")
    c = SourceRecord("c", name="Vũ Thị Mai", birth_date="21/10/1999")
    d = SourceRecord("d", name="Vo Thi Mai", birth_date="21/10/1999")
    assert pairs_of(a, b, c, d) == {("a", "b"), ("c", "d")}


def test_a_dropped_middle_name_or_a_given_name_typo_pairs_on_surname_ward_and_birth_date() -> None:
    a = SourceRecord("a", name="Trần Thị Bích Ngọc", birth_date="17/02/1978", ward="26740")
    b = SourceRecord("b", name="Trần Ngọc", birth_date="17/02/1978", ward="26740")
    c = SourceRecord("c", name="Trần Thị Bích Ngcọ", birth_date="17/02/1978", ward="26740")
    d = SourceRecord("d", name="Trần Ngọc", birth_date="17/02/1978", ward="26743")  # another ward: not by this key
    assert pairs_of(a, b, c, d) == {("a", "b"), ("a", "c"), ("b", "c"), ("b", "d")}


def test_a_common_name_and_birth_year_alone_never_make_a_candidate() -> None:
    """Nguyễn Thị Anh born in 1990 in two wards, full dates differing: the city holds hundreds of those."""
    a = SourceRecord("a", name="Nguyễn Thị Anh", birth_date="05/06/1990", ward="26734")
    b = SourceRecord("b", name="Nguyễn Thị Anh", birth_date="19/11/1990", ward="27301")
    c = SourceRecord("c", name="Nguyễn Thị Anh", birth_date="00/00/1990", ward="26740")
    assert pairs_of(a, b, c) == set()


def test_a_wrong_birth_year_without_a_ward_code_is_found_by_name_and_street_address() -> None:
    a = SourceRecord("a", name="Lê Văn Hùng", birth_date="08/08/1966", address="88 Lê Lợi, P. Bến Thành, TP.HCM")
    b = SourceRecord("b", name="LE VAN HUNG", birth_date="08/08/1968", address="88 Lê Lợi, Phường Bến Thành")
    assert pairs_of(a, b) == {("a", "b")}


def test_a_newborns_row_under_the_mothers_name_pairs_with_its_own_rows_but_adults_need_more_than_ward_and_date() -> None:
    """Ward + birth date pairs a newborn's rows (seen within a year of birth), whatever the names say; two
    adults sharing only a ward and a birth date are not a candidate (a city ward has many such)."""
    under_mother = SourceRecord("m", name="Con của Lê Thị Hoa", birth_date="02/01/2026", ward="26734",
                                event_date="02/01/2026")
    own = SourceRecord("k", name="Trần Minh Khôi", birth_date="02/01/2026", ward="26734", event_date="03/02/2026")
    adult_a = SourceRecord("x", name="Phạm Văn Long", birth_date="12/12/1970", ward="26734")
    adult_b = SourceRecord("y", name="Đỗ Thị Thu", birth_date="12/12/1970", ward="26734")
    assert pairs_of(under_mother, own, adult_a, adult_b) == {("m", "k")}


def test_keys_of_different_rules_never_collide() -> None:
    """The real-time index keeps every rule's keys in one namespace: each rule's keys are prefixed."""
    p = prepare(SourceRecord("a", name="Võ Thị Tuyết", birth_date="09/09/2025", ward="26734", event_date="09/09/2025",
                             address="5 Âu Cơ, P. Tân Sơn Nhì", phone="0909111222", personal_id="079325004321"), 0)
    keys = [key_fn(p) for key_fn in RULES.values() if key_fn(p)]
    assert len(keys) == len(set(keys)) >= 7


def test_a_pair_found_by_several_rules_is_given_once_and_counted_under_the_first() -> None:
    records = [prepare(SourceRecord(str(i), name="Nguyễn Văn Toàn", birth_date="01/02/1983", ward="26734",
                                    phone="0912000111", personal_id="079083001122"), i) for i in range(3)]
    stats = BlockingStats()
    pairs = list(iter_candidate_pairs(records, stats=stats))
    assert sorted(pairs) == [(0, 1), (0, 2), (1, 2)]
    assert stats.pairs_by_rule["cccd"] == 3 and sum(stats.pairs_by_rule.values()) == 3
    assert PROBE_RULES == {} or all(callable(k) and callable(p) for k, p in PROBE_RULES.values())


def test_a_probe_rule_pairs_a_probe_with_anything_and_nothing_else() -> None:
    """The probe mechanism, for loose keys: rows are paired on it only when one side is a probe."""
    records = [prepare(SourceRecord(str(i), name="Lê Thị Hạnh", birth_date=dob), i)
               for i, dob in enumerate(("00/00/1970", "05/03/1970", "06/04/1970"))]
    loose = {"name_year": lambda p: f"{p.name.full_ascii}|{p.year}"}
    every = set(iter_candidate_pairs(records, rules=loose))
    assert every == {(0, 1), (0, 2), (1, 2)}
    probed = set(iter_candidate_pairs(records, rules={}, probes={"name_year": (loose["name_year"],
                                                                             lambda p: not p.dob8)}))
    assert probed == {(0, 1), (0, 2)}
