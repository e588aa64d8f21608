"""The matching model: settings (loadable from JSON), deterministic rules, and the one pair-scoring function.

``MatchModel.score(a, b)`` decides one pair for the real-time MPI; batch linkage calls the same model on
every blocked pair. A decision is ``link``, ``review`` or ``new``, with its match weight (prior plus the sum
of each comparison's log2 Bayes factor), the rule that decided it and the flags raised on the way.

Rules, in order:
0. Names written for a newborn ("Con của <mother>", or a row seen on the day of birth whose name is not the
   child's own) are the parent's: the three name comparisons count as null for that pair.
1. Vetoes, which no score overrides into a link: the given names differ outright (twins, siblings, a
   newborn's row under the mother's name against the child's own rows); the birth dates differ outright
   (mother against the newborn recorded under her name); a newborn's row against an older person's.
2. Strong identifier agrees (CCCD consistent with both records, BHXH number, CMND, passport, facility+MRN):
   link — unless a veto fired, then review (one CCCD claimed by two clearly different people). A CCCD that
   contradicts its own record's sex or birth year is no strong identifier: it only adds a smaller weight.
3. Otherwise the match weight against the link and review thresholds; a vetoed pair can reach review, never
   link — and a vetoed pair whose two valid strong identifiers differ, or a newborn's row against a person
   born years earlier, is new (clearly two people).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from hub.identity.comparisons import (BirthDate, Comparison, FamilyName, GivenName, MiddleName, Phone, Residence,
                                      Sex, StrongId)
from hub.identity.records import Prepared

LINK, REVIEW, NEW = "link", "review", "new"

# m, u per level. m: from the error model of registry data (vaccination-registry-export.md); u: from random
# pairs of a city-sized population. ``bench.linkage`` prints the resulting weights.
DEFAULT_LEVELS: dict[str, dict[str, tuple[float, float]]] = {
    "family_name": {"exact": (0.72, 0.10), "ascii": (0.24, 0.035), "variant": (0.02, 0.01),
                    "typo": (0.01, 0.01), "else": (0.01, 0.845)},
    "middle_name": {"exact": (0.70, 0.12), "ascii": (0.20, 0.04), "part": (0.06, 0.03), "typo": (0.02, 0.01),
                    "else": (0.02, 0.80)},
    "given_name": {"exact": (0.74, 0.012), "ascii": (0.23, 0.004), "typo": (0.025, 0.003), "else": (0.005, 0.98)},
    "birth_date": {"exact": (0.92, 0.00005), "swapped": (0.02, 0.00002), "one_digit": (0.025, 0.0006),
                   "year_only": (0.033, 0.011), "else": (0.002, 0.988)},
    "sex": {"exact": (0.995, 0.5), "else": (0.005, 0.5)},
    "phone": {"exact": (0.55, 0.0002), "one_digit": (0.01, 0.0002), "else": (0.44, 0.9996)},
    "residence": {"address_ward": (0.82, 0.00002), "ward": (0.1, 0.006), "address_only": (0.02, 0.0005),
                  "else": (0.06, 0.993)},
    "cccd": {"exact": (0.975, 1e-7), "exact_inconsistent": (0.005, 1e-6), "one_digit": (0.01, 1e-6),
             "else": (0.01, 0.999999)},
    "cmnd": {"exact": (0.98, 1e-6), "exact_inconsistent": (0.001, 1e-6), "one_digit": (0.01, 1e-5),
             "else": (0.01, 0.99999)},
    "bhxh": {"exact": (0.98, 1e-7), "exact_inconsistent": (0.001, 1e-7), "one_digit": (0.01, 1e-6),
             "else": (0.01, 0.999999)},
    "passport": {"exact": (0.98, 1e-7), "exact_inconsistent": (0.001, 1e-7), "one_digit": (0.01, 1e-6),
                 "else": (0.05, 0.999999)},
    "mrn": {"exact": (0.98, 1e-7), "exact_inconsistent": (0.001, 1e-7), "one_digit": (0.001, 1e-6),
            "else": (0.3, 0.999999)},
}

VETOES = frozenset({"given_name_differs", "birth_date_differs", "newborn_vs_older"})
STRONG = (("cccd", "cccd"), ("cmnd", "cmnd"), ("bhxh", "bhxh"), ("passport", "passport"), ("mrn", "mrn_key"))


@dataclass(frozen=True)
class MatchSettings:
    """Thresholds are on the match weight in bits: log2 of the posterior odds that the pair is one person."""

    # log2 prior odds that two records are one person. Real time: a new record against a city of 6.6 M
    # people. Batch: derived from the input size (``batch_prior``), as Splink estimates λ from the data.
    prior_weight: float = -22.6
    rows_per_person: float = 1.39
    link_weight: float = 4.0  # posterior ≥ 0.94 (bench.linkage: precision 0.998 on 100k generated rows)
    review_weight: float = -2.0  # posterior ≥ 0.2: a steward looks at it
    term_frequencies: bool = True  # batch: weigh exact name parts by their frequency in the input
    tf_floor: float = 0.0005
    max_block_size: int = 400  # a blocking key shared by more records is skipped as uninformative
    levels: dict[str, dict[str, tuple[float, float]]] = field(default_factory=lambda: DEFAULT_LEVELS)

    def __post_init__(self) -> None:
        if self.review_weight > self.link_weight:
            raise ValueError("review_weight must not exceed link_weight")

    @classmethod
    def from_json(cls, source: str | Path | Mapping) -> "MatchSettings":
        """From a JSON file, a JSON string or a mapping; ``levels`` given there are merged over the defaults."""
        if isinstance(source, Mapping):
            data = dict(source)
        else:
            text = Path(source).read_text() if isinstance(source, Path) or not str(source).lstrip().startswith("{") \
                else str(source)
            data = json.loads(text)
        levels = {k: dict(v) for k, v in DEFAULT_LEVELS.items()}
        for comp, lv in (data.pop("levels", None) or {}).items():
            levels.setdefault(comp, {}).update({k: tuple(v) for k, v in lv.items()})
        unknown = set(data) - {f for f in cls.__dataclass_fields__ if f != "levels"}
        if unknown:
            raise ValueError(f"unknown match settings: {sorted(unknown)}")
        return cls(levels=levels, **data)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    def batch_prior(self, n: int) -> float:
        """log2 prior odds for a batch of n rows: about n·(1 − 1/rows_per_person) true pairs among n²/2."""
        if n < 2:
            return self.prior_weight
        lam = min(0.5, n * (1 - 1 / self.rows_per_person) / (n * (n - 1) / 2))
        return math.log2(lam / (1 - lam))

    def with_(self, **changes: object) -> "MatchSettings":
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class Contribution:
    comparison: str
    level: str
    weight: float


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: str  # link / review / new
    weight: float  # match weight in bits (prior included)
    rule: str  # which rule decided: cccd, bhxh, ..., probabilistic
    flags: tuple[str, ...]
    contributions: tuple[Contribution, ...] = ()

    @property
    def probability(self) -> float:
        return 1.0 / (1.0 + 2.0 ** -self.weight) if self.weight > -1000 else 0.0


class MatchModel:
    """Built once from settings (validates every comparison), then scores pairs."""

    def __init__(self, settings: MatchSettings | None = None,
                 frequencies: Mapping[str, Mapping[str, float]] | None = None) -> None:
        """``frequencies``: per name comparison (family_name, middle_name, given_name), value → share."""
        self.settings = s = settings or MatchSettings()
        lv = s.levels
        tf = frequencies if frequencies and s.term_frequencies else {}
        self.family = FamilyName(lv["family_name"], tf.get("family_name"), s.tf_floor)
        self.middle = MiddleName(lv["middle_name"], tf.get("middle_name"), s.tf_floor)
        self.given = GivenName(lv["given_name"], tf.get("given_name"), s.tf_floor)
        self.birth = BirthDate(lv["birth_date"])
        self.sex = Sex(lv["sex"])
        self.phone = Phone(lv["phone"])
        self.residence = Residence(lv["residence"])
        self.strong = tuple(StrongId(name, attr, lv[name]) for name, attr in STRONG)
        self.comparisons: tuple[Comparison, ...] = (self.family, self.middle, self.given, self.birth, self.sex,
                                                    self.phone, self.residence, *self.strong)
        # Looked up once, not per pair: every candidate of every event is scored here.
        self._levels = tuple(c.level for c in self.comparisons)
        self._weights = tuple(c.weights for c in self.comparisons)
        self._tf = any(c.tf is not None for c in (self.family, self.middle, self.given))

    def score(self, a: Prepared, b: Prepared, explain: bool = True) -> Decision:
        """Decide one pair: the real-time entry point, and what batch linkage calls per blocked pair."""
        levels = [level(a, b) for level in self._levels]
        alias = a.name.newborn_alias or b.name.newborn_alias
        if not alias and (a.birth_row or b.birth_row) and a.infant and b.infant and levels[3] == 1 \
                and levels[2] == 4:
            alias = True  # a birth-day row whose name is not the child's: written under a parent's name
        if alias:  # the name on a "Con của …" row is the mother's: it says nothing about the child
            levels[0] = levels[1] = levels[2] = 0
        weights = [w[lvl] for w, lvl in zip(self._weights, levels)]
        if self._tf:  # the name comparisons' weights depend on the value (term frequencies)
            weights[0] = self.family.weight(a, b, levels[0])
            weights[1] = self.middle.weight(a, b, levels[1])
            weights[2] = self.given.weight(a, b, levels[2])
        total = self.settings.prior_weight + sum(weights)
        flags: list[str] = []
        if levels[2] == 4:
            flags.append("given_name_differs")
        if levels[3] == 5:
            flags.append("birth_date_differs")
        if a.infant != b.infant and (a.year != b.year or not a.year):
            flags.append("newborn_vs_older")
        if levels[4] == 2:
            flags.append("sex_differs")
        if alias:
            flags.append("newborn_alias")
        vetoed = any(f in VETOES for f in flags)
        for flag in a.flags + b.flags:
            if flag.startswith("cccd_") and flag not in flags:
                flags.append(flag)  # a CCCD contradicting its own record: shown to the steward
        rule = "probabilistic"
        for comp, lvl in zip(self.strong, levels[7:]):
            if lvl == 1:
                rule = comp.name
                break
        s = self.settings
        if rule != "probabilistic":
            outcome = REVIEW if vetoed else LINK
            if vetoed:
                flags.append("strong_id_conflict")
        elif total >= s.link_weight and not vetoed:
            outcome = LINK
        elif vetoed and (any(lvl == 4 for lvl in levels[7:])
                         or ("newborn_vs_older" in flags and "birth_date_differs" in flags)):
            # clearly two people, nothing to review: a veto and two different valid strong ids, or a newborn's
            # row against someone born years earlier (the mother whose name it carries)
            outcome = NEW
        elif total >= s.review_weight:
            outcome = REVIEW
        else:
            outcome = NEW
        contributions = tuple(Contribution(c.name, c.levels[lvl].name, w)
                              for c, lvl, w in zip(self.comparisons, levels, weights)) if explain else ()
        return Decision(outcome, total, rule, tuple(flags), contributions)

    def weights_table(self) -> list[tuple[str, str, float, float, float]]:
        """(comparison, level, m, u, weight) for every level: the model, explained."""
        return [(c.name, lvl.name, lvl.m, lvl.u, lvl.weight) for c in self.comparisons for lvl in c.levels[1:]]


def probability(weight: float) -> float:
    return 1.0 / (1.0 + math.pow(2.0, -weight))
