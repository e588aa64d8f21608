"""Batch linkage: blocked pairs scored by the same ``MatchModel`` as the real-time MPI, then clustered.

Clustering is union-find over accepted pairs, strongest first, with cannot-link constraints: a pair the
model vetoed (different given names, different birth dates, newborn against an older person) is never put
in one cluster by a chain of other links; such a chained union is reported for review instead.
"""

from __future__ import annotations

import gc
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from hub.envelope import SYSTEM_CCCD
from hub.identity.blocking import BlockingStats, iter_candidate_pairs
from hub.identity.model import LINK, REVIEW, VETOES, MatchModel, MatchSettings
from hub.identity.records import Prepared, SourceRecord, prepare
from hub.pseudonym import citizen_id_for

VETO_FLAGS = VETOES


@dataclass(frozen=True, slots=True)
class ReviewPair:
    record_a: str
    record_b: str
    weight: float
    reason: str  # the rule or flags that sent it to review


@dataclass
class LinkResult:
    """Clusters as one label per record (numbered in order of their first record): 4 bytes a record."""

    labels: array  # cluster number per record index
    cluster_count: int
    review: list[ReviewPair]
    record_ids: list[str]
    blocking: BlockingStats = field(default_factory=BlockingStats)
    decisions: Counter = field(default_factory=Counter)

    def cluster_of(self) -> list[int]:
        """Cluster number for every record index."""
        return self.labels.tolist()

    def members(self) -> tuple[array, array]:
        """(offsets, members): cluster c's record indices, in input order, are
        ``members[offsets[c]:offsets[c + 1]]``. A counting sort: O(records), two int arrays."""
        offsets = array("q", bytes(8 * (self.cluster_count + 1)))
        for c in self.labels:
            offsets[c + 1] += 1
        for c in range(self.cluster_count):
            offsets[c + 1] += offsets[c]
        fill = array("q", offsets)
        members = array("i", bytes(4 * len(self.labels)))
        for i, c in enumerate(self.labels):
            members[fill[c]] = i
            fill[c] += 1
        return offsets, members

    @property
    def clusters(self) -> list[list[int]]:
        """Record indices per cluster, in input order (lists: for small inputs and tests)."""
        offsets, members = self.members()
        return [members[offsets[c]:offsets[c + 1]].tolist() for c in range(self.cluster_count)]


def name_frequencies(records: Sequence[Prepared]) -> dict[str, dict[str, float]]:
    """Share of records with each ASCII family, middle and given name: the u of an exact match on that value
    (term-frequency adjustment), keyed like the comparisons."""
    out: dict[str, dict[str, float]] = {}
    for comparison, attr in (("family_name", "family_ascii"), ("middle_name", "middle_ascii"),
                             ("given_name", "given_ascii")):
        counts = Counter(getattr(p.name, attr) for p in records)
        counts.pop("", None)
        total = sum(counts.values()) or 1
        out[comparison] = {value: c / total for value, c in counts.items()}
    return out


class _Clusters:
    """Union-find over int arrays (4 bytes a record, not a Python int object each), with per-root
    cannot-link sets of record indices."""

    def __init__(self, n: int) -> None:
        self.parent = array("i", range(n))
        self.size = array("i", [1]) * n
        self.forbid: dict[int, set[int]] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def forbid_pair(self, i: int, j: int) -> None:
        self.forbid.setdefault(i, set()).add(j)
        self.forbid.setdefault(j, set()).add(i)

    def union(self, i: int, j: int) -> bool:
        """Join the clusters of i and j unless a cannot-link pair would end up inside; True if joined."""
        ri, rj = self.find(i), self.find(j)
        if ri == rj:
            return True
        fi, fj = self.forbid.get(ri, ()), self.forbid.get(rj, ())
        if any(self.find(x) == rj for x in fi) or any(self.find(x) == ri for x in fj):
            return False
        if self.size[ri] < self.size[rj]:
            ri, rj, fi, fj = rj, ri, fj, fi
        self.parent[rj] = ri
        self.size[ri] += self.size[rj]
        if fj:
            self.forbid.setdefault(ri, set()).update(fj)
            self.forbid.pop(rj, None)
        return True

    def labels(self) -> tuple[array, int]:
        """A cluster number per record, clusters numbered in order of their first record."""
        n = len(self.parent)
        label_of_root = array("i", [-1]) * n
        labels = array("i", bytes(4 * n))
        count = 0
        find = self.find
        for i in range(n):
            r = find(i)
            c = label_of_root[r]
            if c < 0:
                c = label_of_root[r] = count
                count += 1
            labels[i] = c
        return labels, count


def link_prepared(prepared: Sequence[Prepared], settings: MatchSettings | None = None,
                  progress: Callable[[str], None] | None = None) -> LinkResult:
    """Score each candidate pair as blocking yields it (no list of pairs is kept), then cluster.

    Links and vetoes are kept in flat arrays (a weight and an ``i * n + j`` code each), so memory grows with
    the number of links, in bytes, not Python objects."""
    settings = settings or MatchSettings()
    settings = settings.with_(prior_weight=settings.batch_prior(len(prepared)))
    model = MatchModel(settings, name_frequencies(prepared) if settings.term_frequencies else None)
    n = len(prepared)
    stats = BlockingStats()
    link_weight, link_code = array("d"), array("q")
    vetoed = array("q")  # pairs that must not end up in one cluster
    review: list[ReviewPair] = []
    decisions: Counter = Counter()
    score = model.score
    for i, j in iter_candidate_pairs(prepared, settings.max_block_size, stats=stats, progress=progress):
        a, b = prepared[i], prepared[j]
        d = score(a, b, explain=False)
        decisions[d.outcome] += 1
        if d.outcome == LINK:
            # deterministic links first, then by weight: the strongest evidence shapes the clusters
            link_weight.append(1e6 if d.rule != "probabilistic" else d.weight)
            link_code.append(i * n + j)
        else:
            if d.outcome == REVIEW:
                review.append(ReviewPair(a.record_id, b.record_id, d.weight, ",".join((d.rule,) + d.flags)))
            if VETO_FLAGS.intersection(d.flags):
                vetoed.append(i * n + j)
    clusters = _Clusters(n)
    # only records that take part in some link can be chained together: constrain just those pairs
    linked = bytearray(n)
    for code in link_code:
        i, j = divmod(code, n)
        linked[i] = linked[j] = 1
    for code in vetoed:
        i, j = divmod(code, n)
        if linked[i] and linked[j]:
            clusters.forbid_pair(i, j)
    del vetoed, linked
    if progress is not None:
        progress(f"scored: {decisions['link']:,} links, {decisions['review']:,} review, {decisions['new']:,} new")
    order = sorted(range(len(link_code)), key=lambda k: (link_weight[k], link_code[k]), reverse=True)
    for k in order:
        i, j = divmod(link_code[k], n)
        if not clusters.union(i, j):
            decisions["link_blocked_by_constraint"] += 1
            review.append(ReviewPair(prepared[i].record_id, prepared[j].record_id, link_weight[k], "chain_conflict"))
    del order, link_weight, link_code
    labels, count = clusters.labels()
    return LinkResult(labels, count, review, [p.record_id for p in prepared], stats, decisions)


def link(records: Iterable[SourceRecord], settings: MatchSettings | None = None) -> LinkResult:
    """Cluster records into citizens; pairs the model could not decide are in ``review``, not merged."""
    with paused_gc():
        return link_prepared([prepare(r, i) for i, r in enumerate(records)], settings)


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while millions of long-lived, acyclic objects are made.

    Each full collection walks every live object, so a batch of N rows pays O(N) per collection and
    O(N²/threshold) overall; the objects made here hold no cycles. Restored on exit.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def citizen_ids(result: LinkResult, prepared: Sequence[Prepared], secret: bytes) -> list[str]:
    """A citizen id per record: minted from the cluster's first consistent CCCD as the streaming resolver
    mints it (``citizen_id_for``), else from its first record id; never the same id for two clusters."""
    out = [""] * len(prepared)
    used: set[str] = set()
    offsets, members = result.members()
    for c in range(result.cluster_count):
        group = members[offsets[c]:offsets[c + 1]]
        cid = ""
        for i in group:
            if prepared[i].cccd and prepared[i].cccd_ok:
                candidate = citizen_id_for(secret, SYSTEM_CCCD, prepared[i].cccd)
                if candidate not in used:
                    cid = candidate
                    break
        if not cid:
            cid = citizen_id_for(secret, "urn:hssk:batch-record", prepared[group[0]].record_id)
        used.add(cid)
        for i in group:
            out[i] = cid
    return out
