"""The real-time MPI's pure step: one incoming record against the citizens already known.

Candidates come from the same blocking keys as batch linkage, each scored by the same
``MatchModel.score``. The index is a narrow interface, so tests (and ``bench``) use the in-memory one and a
streaming worker can put Redis behind it. Outcomes:

- ``link``: exactly one citizen has a linking candidate and none of its records vetoes the pair;
- ``review``: the record links to two or more citizens (a possible merge, never made silently), or its best
  pair is in the review band, or a linking citizen also holds a record that vetoes it;
- ``new``: nothing links or needs review — a new citizen id is minted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from hub.envelope import SYSTEM_CCCD
from hub.identity.blocking import PROBE_RULES, RULES
from hub.identity.model import LINK, NEW, REVIEW, VETOES, Decision, MatchModel, MatchSettings
from hub.identity.records import Prepared, SourceRecord, prepare
from hub.pseudonym import citizen_id_for


class CandidateIndex(Protocol):
    def add(self, key: str, ref: int) -> None: ...

    def lookup(self, key: str) -> list[int]: ...


class InMemoryIndex:
    def __init__(self) -> None:
        self._keys: dict[str, list[int]] = {}

    def add(self, key: str, ref: int) -> None:
        self._keys.setdefault(key, []).append(ref)

    def lookup(self, key: str) -> list[int]:
        return self._keys.get(key, [])


@dataclass(frozen=True)
class Resolution:
    outcome: str  # link / review / new
    citizen_id: str  # the citizen the record was filed under (for review: a new, provisional one)
    candidates: tuple[tuple[str, Decision], ...] = field(default=())  # (citizen id, decision), best first


class Matcher:
    """Holds prepared records and their citizens; ``resolve`` files one more record."""

    def __init__(self, secret: bytes, settings: MatchSettings | None = None, expected_records: int | None = None,
                 index: CandidateIndex | None = None) -> None:
        settings = settings or MatchSettings()
        if expected_records:
            settings = settings.with_(prior_weight=settings.batch_prior(expected_records))
        self.model = MatchModel(settings)
        self.settings = settings
        self.index = index or InMemoryIndex()
        self.records: list[Prepared] = []
        self.citizen: list[str] = []
        self._secret = secret
        self._used: set[str] = set()

    def _candidates(self, p: Prepared) -> Iterable[int]:
        seen: set[int] = set()
        plan = [(rule, None) for rule in RULES.values()] + list(PROBE_RULES.values())
        for rule, probe in plan:
            key = rule(p)
            if not key:
                continue
            refs = self.index.lookup(key)
            if len(refs) > self.settings.max_block_size:
                continue
            only_probes = probe is not None and not probe(p)  # a loose key pairs a probe with anything
            for ref in refs:
                if ref not in seen and not (only_probes and not probe(self.records[ref])):  # type: ignore[misc]
                    seen.add(ref)
                    yield ref

    def _mint(self, p: Prepared) -> str:
        if p.cccd and p.cccd_ok:
            cid = citizen_id_for(self._secret, SYSTEM_CCCD, p.cccd)
            if cid not in self._used:
                return cid
        return citizen_id_for(self._secret, "urn:hssk:record", p.record_id)

    def resolve(self, record: SourceRecord) -> Resolution:
        p = prepare(record, len(self.records))
        scored = sorted(((self.citizen[ref], self.model.score(self.records[ref], p)) for ref in self._candidates(p)),
                        key=lambda cd: -cd[1].weight)
        linking = {cid for cid, d in scored if d.outcome == LINK}
        vetoed = {cid for cid, d in scored if VETOES.intersection(d.flags)}
        if len(linking) == 1 and not linking & vetoed:
            outcome, cid = LINK, next(iter(linking))
        elif linking or any(d.outcome == REVIEW for _, d in scored):
            outcome, cid = REVIEW, self._mint(p)
        else:
            outcome, cid = NEW, self._mint(p)
        self._used.add(cid)
        self.records.append(p)
        self.citizen.append(cid)
        for rule in [*RULES.values(), *(key_fn for key_fn, _ in PROBE_RULES.values())]:
            key = rule(p)
            if key:
                self.index.add(key, p.index)
        return Resolution(outcome, cid, tuple(scored[:5]))
