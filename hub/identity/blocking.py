"""Blocking: which pairs are worth scoring. Rules that work for Vietnamese names, and stay linear at city scale.

The surname is nearly useless as a key (Nguyễn is ~38% of people), so no rule starts with it alone. Each
rule is a key function; two records are a candidate pair when any rule gives them the same key. A rule's
pair count is its true pairs (linear in N) plus about N²/(2K) chance pairs, K being how many distinct keys
the population spreads over. A key that does not grow with the city (a name and a birth date: the names
and the days of a century are fixed) has a fixed K, so its chance pairs grow like N²: at 9.1 M rows a
"name + birth year" key holds ~700 rows for a common name. So every key here pairs a name or date part
with something that grows with the city — an identifier, a phone, a full birth date *and* a ward, a
household address — or is the exact full name and birth date, which stays near-unique. Measured on 1 M
generated rows (328k true pairs): the previous keys gave 1.71 M candidate pairs, growing 9x for 3x the rows;
these give 0.94 M (with a bare phone key) and find 99.2% of the true pairs (previously 99.3%); on 100k rows
``phone_year`` takes them from 89,292 to 39,175. ``hub link`` prints each rule's count.

What each rule is for (the registry's error model, ``vaccination-registry-export.md``):

- ``cccd`` … ``mrn``: the identifiers;
- ``phone_year``: a phone and birth year. A phone alone is shared by a household: on 100k rows it made
  51,029 chance pairs for 154 true ones no other key finds; with the birth year, 930 for 136;
- ``name_dob``: the whole name (ASCII, regional surname variant) and birth date, exact or day/month swapped;
- ``name_year_ward``: the whole name, birth year and ward — a mistyped, unknown (00/00) or defaulted (01/01)
  day or month, in the same ward;
- ``family_ward_dob``: surname, ward and birth date — a misspelt, shortened or dropped middle or given name;
- ``home_given``: ward, street address and given name — any birth-date error at a stable address;
- ``name_address``: the whole name and street address — a birth-date error where the ward code is missing;
- ``newborn_ward_dob``: ward and birth date of a newborn's rows (seen within a year of birth) — the first
  row is often under the mother's name, so it shares nothing else with the child's own rows.

``PROBE_RULES`` are keys paired only when one side is a probe. The old loose "name + birth year" probe
(rows without a full birth date) was the largest quadratic term and found 0.06% of true pairs on its own;
``name_year_ward`` covers those rows in their ward. The probe mechanism stays for loose keys that need it.
Keys shared by more than ``max_block_size`` records are skipped (counted), so one junk value (a facility's
placeholder phone) cannot blow up the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from hub.identity.records import Prepared

KeyFn = Callable[[Prepared], str]
Probe = Callable[[Prepared], bool]


def _name_dob(p: Prepared) -> str:  # exact, or day and month swapped
    if not p.dob8 or not p.name.given_ascii:
        return ""
    lo, hi = (p.day, p.month) if p.day < p.month else (p.month, p.day)
    return f"n|{p.name.full_ascii}|{p.year}|{lo}|{hi}"


def _name_year_ward(p: Prepared) -> str:  # a wrong, unknown or defaulted day or month, in the same ward
    return f"y|{p.name.full_ascii}|{p.year}|{p.ward}" if p.year and p.ward and p.name.given_ascii else ""


def _family_ward_dob(p: Prepared) -> str:  # a misspelt or dropped middle or given name, in the same ward
    return f"f|{p.name.family_variant}|{p.ward}|{p.dob8}" if p.ward and p.dob8 and p.name.family_variant else ""


def _home_given(p: Prepared) -> str:  # any birth-date error (a wrong year), at a stable address
    return f"h|{p.ward}|{p.address}|{p.name.given_ascii}" if p.ward and p.address and p.name.given_ascii else ""


def _name_address(p: Prepared) -> str:  # any birth-date error and a new ward code, same name and street address
    return f"a|{p.name.full_ascii}|{p.address}" if p.address and p.name.given_ascii else ""


def _newborn_ward_dob(p: Prepared) -> str:  # a newborn's row under the mother's name against its own rows
    return f"b|{p.ward}|{p.dob8}" if p.infant and p.ward and p.dob8 else ""


RULES: dict[str, KeyFn] = {
    "cccd": lambda p: p.cccd,
    "cmnd": lambda p: p.cmnd,
    "bhxh": lambda p: p.bhxh,
    "passport": lambda p: p.passport,
    "mrn": lambda p: p.mrn_key,
    "phone_year": lambda p: f"p|{p.phone}|{p.year}" if p.phone else "",
    "name_dob": _name_dob,
    "name_year_ward": _name_year_ward,
    "family_ward_dob": _family_ward_dob,
    "home_given": _home_given,
    "name_address": _name_address,
    "newborn_ward_dob": _newborn_ward_dob,
}

# Loose keys paired only when one side is a probe: none is needed at present (see the module docstring).
PROBE_RULES: dict[str, tuple[KeyFn, Probe]] = {}


@dataclass
class BlockingStats:
    pairs_by_rule: dict[str, int] = field(default_factory=dict)  # new pairs each rule added
    skipped_blocks: dict[str, int] = field(default_factory=dict)


def _plan(rules: dict[str, KeyFn] | None,
          probes: dict[str, tuple[KeyFn, Probe]] | None) -> list[tuple[str, KeyFn, Probe | None]]:
    """Given rules (default: RULES, and then PROBE_RULES unless other rules are given)."""
    if probes is None:
        probes = PROBE_RULES if rules is None else {}
    plan: list[tuple[str, KeyFn, Probe | None]] = [(rule, key_fn, None)
                                                   for rule, key_fn in (RULES if rules is None else rules).items()]
    return plan + [(rule, key_fn, probe) for rule, (key_fn, probe) in probes.items()]


def blocks(records: Sequence[Prepared], key_fn: KeyFn) -> Iterator[list[int]]:
    """Groups of two or more record indices sharing a key.

    Keys are kept as their hash, the first index of each as a plain int: most keys are unique, so no list is
    made for them. (Two keys with one 64-bit hash only add a pair to score, never lose one.)
    """
    first: dict[int, int] = {}
    multi: dict[int, list[int]] = {}
    for i, p in enumerate(records):
        key = key_fn(p)
        if key:
            h = hash(key)
            j = first.setdefault(h, i)
            if j != i:
                members = multi.get(h)
                if members is None:
                    multi[h] = [j, i]
                else:
                    members.append(i)
    del first
    yield from multi.values()


def iter_candidate_pairs(records: Sequence[Prepared], max_block_size: int = 1000,
                         rules: dict[str, KeyFn] | None = None, stats: BlockingStats | None = None,
                         probes: dict[str, tuple[KeyFn, Probe]] | None = None,
                         progress: Callable[[str], None] | None = None) -> Iterator[tuple[int, int]]:
    """Each distinct candidate pair once, as (i, j) with i < j (indices into ``records``), rule by rule.

    Only one rule's key index is in memory at once; what persists is the set of pairs already given.
    ``progress`` is told each rule's count when it is done (counts only: safe to log).
    """
    n = len(records)
    seen: set[int] = set()
    for rule, key_fn, probe in _plan(rules, probes):
        added = skipped = 0
        for members in blocks(records, key_fn):
            size = len(members)
            if size > max_block_size:
                skipped += 1
                continue
            for x in range(size):
                mx = members[x]
                x_probe = probe is None or probe(records[mx])
                for y in range(x + 1, size):
                    my = members[y]
                    if x_probe or probe(records[my]):  # type: ignore[misc]
                        code = mx * n + my  # members are in input order: mx < my
                        if code not in seen:
                            seen.add(code)
                            added += 1
                            yield mx, my
        if stats is not None:
            stats.pairs_by_rule[rule] = added
            stats.skipped_blocks[rule] = skipped
        if progress is not None:
            progress(f"blocking rule {rule}: {added:,} new pairs, {skipped:,} oversized blocks skipped")


def candidate_pairs(records: Sequence[Prepared], max_block_size: int = 1000,
                    rules: dict[str, KeyFn] | None = None, stats: BlockingStats | None = None) -> set[int]:
    """Distinct candidate pairs, each encoded as ``i * n + j`` (i < j): ``iter_candidate_pairs`` collected."""
    n = len(records)
    return {i * n + j for i, j in iter_candidate_pairs(records, max_block_size, rules, stats)}
