"""Blocking: which pairs are worth scoring. Rules that work for Vietnamese names.

The surname is nearly useless as a key (Nguyễn is ~38% of people), so no rule starts with it alone. Each
rule is a key function; two records are a candidate pair when any rule gives them the same key. Keys shared
by more than ``max_block_size`` records are skipped (counted), so one junk value cannot blow up the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from hub.identity.records import Prepared

KeyFn = Callable[[Prepared], str]


def _name_year(p: Prepared) -> str:  # survives an unknown or swapped day and month
    return f"{p.name.full_ascii}|{p.year}" if p.name.given_ascii and p.year else ""


def _given_dob(p: Prepared) -> str:
    return f"{p.name.given_ascii}|{p.dob8}" if p.name.given_ascii and p.dob8 else ""


def _name_day_month(p: Prepared) -> str:  # survives a wrong year and a day/month swap
    if not p.dob8 or not p.name.given_ascii:
        return ""
    lo, hi = sorted((p.day, p.month))
    return f"{p.name.full_ascii}|{lo}|{hi}"


def _ward_dob(p: Prepared) -> str:  # survives a misspelt or changed name
    return f"{p.ward}|{p.dob8}" if p.ward and p.dob8 else ""


def _name_ward(p: Prepared) -> str:  # survives a wrong or missing birth date
    return f"{p.name.full_ascii}|{p.ward}" if p.ward and p.name.given_ascii else ""


RULES: dict[str, KeyFn] = {
    "cccd": lambda p: p.cccd,
    "cmnd": lambda p: p.cmnd,
    "bhxh": lambda p: p.bhxh,
    "passport": lambda p: p.passport,
    "mrn": lambda p: p.mrn_key,
    "phone": lambda p: p.phone,
    "name_year": _name_year,
    "given_dob": _given_dob,
    "name_day_month": _name_day_month,
    "ward_dob": _ward_dob,
    "name_ward": _name_ward,
}


@dataclass
class BlockingStats:
    pairs_by_rule: dict[str, int] = field(default_factory=dict)  # new pairs each rule added
    skipped_blocks: dict[str, int] = field(default_factory=dict)


def candidate_pairs(records: Sequence[Prepared], max_block_size: int = 1000,
                    rules: dict[str, KeyFn] | None = None, stats: BlockingStats | None = None) -> set[int]:
    """Distinct candidate pairs, each encoded as ``i * n + j`` (i < j, indices into ``records``).

    Rules run one at a time so only one key index is in memory at once.
    """
    n = len(records)
    pairs: set[int] = set()
    for rule, key_fn in (rules or RULES).items():
        before = len(pairs)
        index: dict[str, list[int]] = {}
        for p in records:
            key = key_fn(p)
            if key:
                index.setdefault(key, []).append(p.index)
        skipped = 0
        for members in index.values():
            size = len(members)
            if size < 2:
                continue
            if size > max_block_size:
                skipped += 1
                continue
            for x in range(size):
                base = members[x] * n
                for y in range(x + 1, size):
                    pairs.add(base + members[y])
        del index
        if stats is not None:
            stats.pairs_by_rule[rule] = len(pairs) - before
            stats.skipped_blocks[rule] = skipped
    return pairs


def decode(pair: int, n: int) -> tuple[int, int]:
    return divmod(pair, n)


def iter_pairs(pairs: set[int], n: int) -> Iterator[tuple[int, int]]:
    for pair in pairs:
        yield divmod(pair, n)
