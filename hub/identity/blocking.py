"""Blocking: which pairs are worth scoring. Rules that work for Vietnamese names, and stay linear.

The surname is nearly useless as a key (Nguyễn is ~38% of people), so no rule starts with it alone. Each
rule is a key function; two records are a candidate pair when any rule gives them the same key. A rule's
pair count grows like N²/K (K: how many distinct keys), so every key holds something near-unique at city
scale (a full birth date, a household address, an identifier); the loose "name + birth year" key is a
probe rule: only records whose birth date is incomplete (00/00, 01/01) pair on it. Keys shared by more
than ``max_block_size`` records are skipped (counted), so one junk value cannot blow up the run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hub.identity.records import Prepared

KeyFn = Callable[[Prepared], str]
Probe = Callable[[Prepared], bool]


def _name_year_dm(p: Prepared) -> str:  # exact, or day and month swapped
    if not p.dob8 or not p.name.given_ascii:
        return ""
    lo, hi = (p.day, p.month) if p.day < p.month else (p.month, p.day)
    return f"{p.name.full_ascii}|{p.year}|{lo}|{hi}"


def _name_year_month(p: Prepared) -> str:  # a mistyped day
    return f"{p.name.full_ascii}|{p.year}|m{p.month}" if p.dob8 and p.name.given_ascii else ""


def _name_year_day(p: Prepared) -> str:  # a mistyped month
    return f"{p.name.full_ascii}|{p.year}|d{p.day}" if p.dob8 and p.name.given_ascii else ""


def _family_given_dob(p: Prepared) -> str:  # a dropped or changed middle name
    n = p.name
    return f"{n.family_variant}|{n.given_ascii}|{p.dob8}" if p.dob8 and n.given_ascii else ""


def _ward_dob(p: Prepared) -> str:  # a misspelt or changed name
    return f"{p.ward}|{p.dob8}" if p.ward and p.dob8 else ""


def _home_given(p: Prepared) -> str:  # any birth-date error (a wrong year), at a stable address
    return f"{p.ward}|{p.address}|{p.name.given_ascii}" if p.ward and p.address and p.name.given_ascii else ""


def _name_year(p: Prepared) -> str:
    return f"{p.name.full_ascii}|{p.year}" if p.name.given_ascii and p.year else ""


def _incomplete_birth_date(p: Prepared) -> bool:
    return bool(p.year) and (not p.dob8 or p.dob_default)


RULES: dict[str, KeyFn] = {
    "cccd": lambda p: p.cccd,
    "cmnd": lambda p: p.cmnd,
    "bhxh": lambda p: p.bhxh,
    "passport": lambda p: p.passport,
    "mrn": lambda p: p.mrn_key,
    "phone": lambda p: p.phone,
    "name_year_dm": _name_year_dm,
    "name_year_month": _name_year_month,
    "name_year_day": _name_year_day,
    "family_given_dob": _family_given_dob,
    "ward_dob": _ward_dob,
    "home_given": _home_given,
}

# Loose keys paired only when one side is a probe: name + birth year, for rows without a full birth date.
PROBE_RULES: dict[str, tuple[KeyFn, Probe]] = {
    "name_year_incomplete": (_name_year, _incomplete_birth_date),
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
    every: Probe = lambda p: True  # noqa: E731
    plan = [(rule, key_fn, None) for rule, key_fn in (rules or RULES).items()]
    if rules is None:
        plan += [(rule, key_fn, probe) for rule, (key_fn, probe) in PROBE_RULES.items()]
    for rule, key_fn, probe in plan:
        before = len(pairs)
        index: dict[str, list[int]] = {}
        for p in records:
            key = key_fn(p)
            if key:
                index.setdefault(key, []).append(p.index)
        skipped = 0
        is_probe = probe or every
        for members in index.values():
            size = len(members)
            if size < 2:
                continue
            if size > max_block_size:
                skipped += 1
                continue
            for x in range(size):
                mx = members[x]
                x_probe = probe is None or is_probe(records[mx])
                for y in range(x + 1, size):
                    my = members[y]
                    if x_probe or is_probe(records[my]):
                        pairs.add(mx * n + my if mx < my else my * n + mx)
        del index
        if stats is not None:
            stats.pairs_by_rule[rule] = len(pairs) - before
            stats.skipped_blocks[rule] = skipped
    return pairs

