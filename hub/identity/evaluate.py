"""Pairwise precision, recall and F1 of a clustering against the truth.

A pair of records is predicted when they share a cluster and true when they share a person. Counted from
the contingency table (cluster × person), so it is O(records), not O(pairs).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class PairwiseScores:
    true_positive: int
    predicted_pairs: int
    true_pairs: int
    records: int
    clusters: int
    persons: int

    @property
    def precision(self) -> float:
        return self.true_positive / self.predicted_pairs if self.predicted_pairs else 1.0

    @property
    def recall(self) -> float:
        return self.true_positive / self.true_pairs if self.true_pairs else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def summary(self) -> str:
        return (f"records {self.records:,}  clusters {self.clusters:,}  persons {self.persons:,}\n"
                f"pairs: predicted {self.predicted_pairs:,}  true {self.true_pairs:,}  "
                f"correct {self.true_positive:,}\n"
                f"precision {self.precision:.5f}  recall {self.recall:.5f}  F1 {self.f1:.5f}")


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def pairwise(clusters: Mapping[str, str], truth: Mapping[str, str]) -> PairwiseScores:
    """Scores over the records present in both mappings (record_id → cluster id, record_id → person id)."""
    common = [r for r in truth if r in clusters]
    cells = Counter((clusters[r], truth[r]) for r in common)
    by_cluster = Counter(clusters[r] for r in common)
    by_person = Counter(truth[r] for r in common)
    return PairwiseScores(
        true_positive=sum(_pairs(c) for c in cells.values()),
        predicted_pairs=sum(_pairs(c) for c in by_cluster.values()),
        true_pairs=sum(_pairs(c) for c in by_person.values()),
        records=len(common), clusters=len(by_cluster), persons=len(by_person),
    )


def read_mapping(path: Path) -> dict[str, str]:
    """A two-column CSV with header (record_id, then cluster or person id)."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        next(reader, None)
        return {row[0]: row[1] for row in reader if len(row) >= 2}
