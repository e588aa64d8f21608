"""Comparisons in the Splink style: each maps a pair of prepared records to one of its ordered levels.

Level 0 is always ``null`` (one side has nothing to compare, weight 0); the last is ``else``. Each level
has m (how often true matches land there) and u (how often non-matches do); its weight is log2(m/u), the
Bayes factor in bits, so a decision can be explained as a sum of named contributions.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass

from hub.identity.records import Prepared


class ModelError(ValueError):
    """A comparison's settings are incomplete or out of range (found when the model is built)."""


@dataclass(frozen=True, slots=True)
class Level:
    name: str
    m: float
    u: float

    @property
    def weight(self) -> float:
        return 0.0 if self.name == "null" else math.log2(self.m / self.u)


def within_one_edit(a: str, b: str) -> bool:
    """Levenshtein distance ≤ 1 (one substitution, insertion or deletion), without building a matrix."""
    la, lb = len(a), len(b)
    if la > lb:
        a, b, la, lb = b, a, lb, la
    if lb - la > 1:
        return False
    i = 0
    while i < la and a[i] == b[i]:
        i += 1
    if la == lb:
        return a[i + 1:] == b[i + 1:]
    return a[i:] == b[i + 1:]


def transposed(a: str, b: str) -> bool:
    """Two adjacent characters swapped ("Hnug" for "Hung")."""
    if len(a) != len(b) or a == b:
        return False
    diff = [i for i in range(len(a)) if a[i] != b[i]]
    return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]


class Comparison:
    """Base: subclasses set ``name`` and ``level_names`` and implement ``level``."""

    name: str = ""
    level_names: tuple[str, ...] = ()

    def __init__(self, params: Mapping[str, tuple[float, float]]) -> None:
        missing = [n for n in self.level_names[1:] if n not in params]
        if missing:
            raise ModelError(f"comparison {self.name}: no m/u for levels {missing}")
        for lvl, (m, u) in params.items():
            if lvl not in self.level_names:
                raise ModelError(f"comparison {self.name}: unknown level {lvl!r}")
            if not (0 < m <= 1 and 0 < u <= 1):
                raise ModelError(f"comparison {self.name}: m and u of {lvl!r} must be in (0, 1]")
        self.levels = (Level("null", 1.0, 1.0),) + tuple(Level(n, *params[n]) for n in self.level_names[1:])
        self.weights = tuple(level.weight for level in self.levels)

    def level(self, a: Prepared, b: Prepared) -> int:
        raise NotImplementedError

    def weight(self, a: Prepared, b: Prepared, level: int) -> float:
        return self.weights[level]


class TermFrequencies(Comparison):
    """Exact and ASCII agreement weighed by how common the value is, as Splink's term-frequency adjustment.

    With a frequency table, the u of an exact (or ASCII) match on value v is the share of records with v
    (floored), so agreeing on Nguyễn (~38%) counts for far less than agreeing on Quách, and "Anh" less than
    "Khuê". Without a table (real time, before one is loaded) the level's own u is used.
    """

    def __init__(self, params: Mapping[str, tuple[float, float]], tf: Mapping[str, float] | None = None,
                 tf_floor: float = 0.0005) -> None:
        super().__init__(params)
        self.tf = tf
        self._cache: dict[str, tuple[float, float]] = {}
        self._floor = tf_floor

    def tf_value(self, a: Prepared) -> str:
        raise NotImplementedError

    def weight(self, a: Prepared, b: Prepared, level: int) -> float:
        if self.tf is None or level not in (1, 2):
            return self.weights[level]
        value = self.tf_value(a)
        cached = self._cache.get(value)
        if cached is None:
            u = max(self.tf.get(value, self._floor), self._floor)
            cached = (math.log2(self.levels[1].m / u), math.log2(self.levels[2].m / u))
            self._cache[value] = cached
        return cached[level - 1]


class FamilyName(TermFrequencies):
    """Weak on its own (Nguyễn is ~38%): exact, without diacritics, regional variant (Hoàng/Huỳnh), typo."""

    name = "family_name"
    level_names = ("null", "exact", "ascii", "variant", "typo", "else")

    def tf_value(self, a: Prepared) -> str:
        return a.name.family_ascii

    def level(self, a: Prepared, b: Prepared) -> int:
        x, y = a.name, b.name
        if not x.family_ascii or not y.family_ascii:
            return 0
        if x.family == y.family:
            return 1
        if x.family_ascii == y.family_ascii:
            return 2
        if x.family_variant == y.family_variant:
            return 3
        return 4 if within_one_edit(x.family_ascii, y.family_ascii) else 5


class MiddleName(TermFrequencies):
    """Middle names are often dropped or shortened ("Thị Bích" / "Bích"): a ``part`` level for that."""

    name = "middle_name"
    level_names = ("null", "exact", "ascii", "part", "typo", "else")

    def tf_value(self, a: Prepared) -> str:
        return a.name.middle_ascii

    def level(self, a: Prepared, b: Prepared) -> int:
        x, y = a.name, b.name
        if not x.middle_ascii or not y.middle_ascii:
            return 0
        if x.middle == y.middle:
            return 1
        if x.middle_ascii == y.middle_ascii:
            return 2
        wx, wy = x.middle_ascii.split(), y.middle_ascii.split()
        if set(wx) <= set(wy) or set(wy) <= set(wx):
            return 3
        return 4 if within_one_edit(x.middle_ascii, y.middle_ascii) else 5


class GivenName(TermFrequencies):
    """The discriminating part of a Vietnamese name; exact levels weighed by frequency when a table is given."""

    name = "given_name"
    level_names = ("null", "exact", "ascii", "typo", "else")

    def tf_value(self, a: Prepared) -> str:
        return a.name.given_ascii

    def level(self, a: Prepared, b: Prepared) -> int:
        x, y = a.name, b.name
        if not x.given_ascii or not y.given_ascii:
            return 0
        if x.given == y.given:
            return 1
        if x.given_ascii == y.given_ascii:
            return 2
        gx, gy = x.given_ascii, y.given_ascii
        return 3 if max(len(gx), len(gy)) > 2 and (within_one_edit(gx, gy) or transposed(gx, gy)) else 4


def one_differs(x: str, y: str) -> bool:
    """Equal-length texts that differ in exactly one position (a mistyped digit); map over C comparisons: 4x
    faster than a generator over the positions, and it runs for every candidate pair scored."""
    return sum(map(operator.ne, x, y)) == 1


class BirthDate(Comparison):
    """Exact; day and month swapped; one digit wrong; same year where one side lacks day/month (00/00 or the
    01/01 default); else."""

    name = "birth_date"
    level_names = ("null", "exact", "swapped", "one_digit", "year_only", "else")

    def level(self, a: Prepared, b: Prepared) -> int:
        if not a.year or not b.year:
            return 0
        if a.dob8 and a.dob8 == b.dob8:
            return 1
        if a.dob8 and b.dob8:
            if a.year == b.year and a.day == b.month and a.month == b.day:
                return 2
            if one_differs(a.dob8, b.dob8):
                return 3
        if a.year == b.year and (not a.dob8 or not b.dob8 or a.dob_default or b.dob_default):
            return 4
        return 5


class Sex(Comparison):
    name = "sex"
    level_names = ("null", "exact", "else")

    def level(self, a: Prepared, b: Prepared) -> int:
        if not a.sex or not b.sex:
            return 0
        return 1 if a.sex == b.sex else 2


class Phone(Comparison):
    """Shared within households and changed over time: a match helps, a mismatch hurts little."""

    name = "phone"
    level_names = ("null", "exact", "one_digit", "else")

    def level(self, a: Prepared, b: Prepared) -> int:
        if not a.phone or not b.phone:
            return 0
        if a.phone == b.phone:
            return 1
        return 2 if one_differs(a.phone, b.phone) else 3


def _jaccard(x: str, y: str) -> float:
    """Word overlap of two address keys (``normalize.address_key``)."""
    if not x or not y:
        return 0.0
    if x == y:
        return 1.0
    sx, sy = set(x.split()), set(y.split())
    return len(sx & sy) / len(sx | sy)


class Residence(Comparison):
    """Ward code and address words together (they are not independent, so one comparison, not two)."""

    name = "residence"
    level_names = ("null", "address_ward", "ward", "address_only", "else")

    def level(self, a: Prepared, b: Prepared) -> int:
        if not a.ward and not a.address or not b.ward and not b.address:
            return 0
        same_ward = bool(a.ward) and a.ward == b.ward
        close = _jaccard(a.address, b.address) >= 0.8
        if same_ward:
            return 1 if close else 2
        return 3 if close else 4


class StrongId(Comparison):
    """One strong identifier (CCCD, CMND, BHXH number, passport, facility+MRN): exact, one digit off, else.

    A CCCD that contradicts its own record's sex or birth year lands in ``exact_inconsistent``: the number
    still agrees, but it may be a relative's, so it weighs less and never links on its own.
    """

    level_names = ("null", "exact", "exact_inconsistent", "one_digit", "else")

    def __init__(self, name: str, attr: str, params: Mapping[str, tuple[float, float]]) -> None:
        self.name = name
        self.attr = attr
        self._get = operator.attrgetter(attr)
        self._cccd = attr == "cccd"
        super().__init__(params)

    def level(self, a: Prepared, b: Prepared) -> int:
        get = self._get
        x = get(a)
        if not x:
            return 0
        y = get(b)
        if not y:
            return 0
        if self._cccd and not (a.cccd_ok and b.cccd_ok):
            # a CCCD contradicting its own record may be a relative's: agreeing counts for less, and
            # disagreeing says nothing
            return 2 if x == y else 0
        if x == y:
            return 1
        if len(x) == len(y) and one_differs(x, y):
            return 3
        return 4
