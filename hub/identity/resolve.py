"""Identity resolution of canonical events: who is this citizen? The streaming MPI's decision, per batch.

Each event's subject (and Patient payload) becomes a prepared record (``hub.identity.subject``,
``records.prepare``), then:

1. A known facility + MRN is that citizen (the source's own identity for the person). An event with an
   MRN and no demographics resolves by the MRN alone, or mints a citizen for that MRN. An event that is not
   a Patient (the registry row's immunization, an ADT's encounter) with the source (system, facility, message,
   raw record) and subject of a Patient event earlier in its batch, or in the last batches this resolver
   resolved (a batch may end between a source record's events), is that Patient's citizen (outcome link):
   it says less about the person than its Patient, so it is neither matched nor filed as a record of its own.
2. Otherwise a strong identifier already linked (a CCCD consistent with the record's sex and birth year,
   the old 9-digit ID, the BHXH number, a passport) names the citizen — unless that citizen's own records
   clearly disagree (``MatchModel`` vetoes: another given name or birth date), then one identifier is
   claimed by two people: a review case, never a merge.
3. Otherwise the same ``MatchModel`` as batch linkage scores the candidates the blocking rules find in the
   Redis index: exactly one linking citizen -> link; several, or a pair in the review band -> review (filed
   under a new provisional citizen, a case for the data steward); nothing -> a new citizen.

A newborn under the mother's name carries the mother's CCCD inconsistently (birth year), so it is no
strong link and the model's newborn vetoes keep the two apart. Old identifiers (``use: old`` in the
Patient: a re-issued CCCD, the retired patient of an HL7 A40) keep linking to the citizen.
An event with no identifiers and no demographics cannot be resolved: IdentityError (the DLQ).

Four store round trips per batch, whatever its size: links + own records; the blocks of the events that need
matching and the record lists of the citizens their strong links name; the candidates' records; writes. (A fifth
only when another worker minted the same person's citizen between the first and the last.) An event its MRN
link or its unchanged own record decides (most of a hospital feed, and every row of a seeded backfill) neither
computes nor reads blocking keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hub.envelope import (SYSTEM_BHXH, SYSTEM_BHYT, SYSTEM_CCCD, SYSTEM_OLD_ID, SYSTEM_PASSPORT, Envelope,
                          Identifier, Source, Subject, mrn_system)
from hub.errors import IdentityError
from hub.identity import identifiers as ids
from hub.identity.blocking import PROBE_RULES, RULES
from hub.identity.indexed import Indexed, unpack
from hub.identity.model import LINK, NEW, REVIEW, VETOES, Decision, MatchModel, MatchSettings
from hub.identity.mpi_store import (MpiStore, Op, RedisLinkStore, Slot, block_slot, block_slots, citizen_slot,
                                    identity_key, link_slot, mpi_hash, record_slot, split_refs)
from hub.identity.records import Prepared, SourceRecord, prepare
from hub.identity.subject import record_from_envelope
from hub.pseudonym import citizen_id_for

__all__ = ["DLQ", "LINK", "NEW", "REVIEW", "BatchResolution", "Merge", "Proposal", "RedisLinkStore", "Resolver",
           "identity_key", "merge_marker_slot"]

DLQ = "dlq"
NO_SUBJECT = ("no identifiers and no demographics: no identifier the MPI links on (CCCD 12 digits, CMND 9, BHXH 10, "
              "passport, facility + MRN) and no name or birth date")
MERGED_TYPE = "patient.merged"
_MRN_PREFIX = mrn_system("")
_STRONG_SYSTEMS = (("cccd", SYSTEM_CCCD), ("cmnd", SYSTEM_OLD_ID), ("bhxh", SYSTEM_BHXH),
                   ("passport", SYSTEM_PASSPORT))
_INDEX_RULES = [(name, fn) for name, fn in RULES.items()]
_RECENT_LEADS = 4096  # Patient events remembered across batches: two full batches and more
_PROBE = [(name, key_fn, probe) for name, (key_fn, probe) in PROBE_RULES.items()]


@dataclass(frozen=True, slots=True)
class Proposal:
    """A pair for the data steward: ``existing`` would survive a merge of ``other`` into it."""

    existing: str
    other: str
    reason: str
    cause: str  # the event id that raised it
    decision: Decision | None = None
    existing_record: Indexed | None = None
    other_record: Indexed | None = None


@dataclass(frozen=True, slots=True)
class Merge:
    """An HL7 A40 said ``retired`` is ``survivor``: merged without review (the source decided)."""

    survivor: str
    retired: str
    cause: str


@dataclass
class BatchResolution:
    results: list[Envelope | IdentityError]
    outcomes: list[str]  # link / review / new / dlq, per event
    proposals: list[Proposal] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)


def merge_marker_slot(secret: bytes, cause: str) -> Slot:
    """Where the merge an A40 event caused is remembered, so a replay re-emits it (idempotent)."""
    return -1, "merges", mpi_hash(secret, "merge", cause)[:16]


def canonical_identifier(ident: Identifier) -> Identifier | None:
    """The identifier as the MPI links it (CCCD 12 digits, CMND 9, BHXH 10 from a card, passport, MRN)."""
    if ident.system.startswith(_MRN_PREFIX):
        return ident if ident.value.strip() else None
    if ident.system in (SYSTEM_BHYT, SYSTEM_BHXH):
        number = ids.bhxh_number(ident.value)
        return Identifier(SYSTEM_BHXH, number) if number else None
    if ident.system in (SYSTEM_CCCD, SYSTEM_OLD_ID, SYSTEM_PASSPORT):
        pid = ids.classify_personal_id(ident.value)
        for kind, system in _STRONG_SYSTEMS:
            value = getattr(pid, kind, "")
            if value:
                return Identifier(system, value)
    return None


class _Item:
    """One distinct subject of the batch (the events of one message share it)."""

    __slots__ = ("ref", "p", "name_text", "birth_text", "patient", "event_id", "cause", "links", "mrn_link", "old", "blocks",
                 "probe_read", "probe_index", "own_slot", "cid", "outcome", "minted", "unchanged", "member", "linked")

    def __init__(self) -> None:
        self.cid = ""
        self.linked: list[str] = []  # the citizens its strong links name: their records are always scored
        self.member = ""  # the merged-away citizen the source record was filed under (Envelope.member_id)
        self.outcome = ""
        self.minted = False
        self.unchanged: bool | None = None

    @property
    def has_demographics(self) -> bool:
        return bool(self.p.name.given_ascii or self.p.year)


class Resolver:
    """The per-batch resolution; state lives in the store (several workers share it)."""

    def __init__(self, store: MpiStore, secret: bytes, settings: MatchSettings | None = None) -> None:
        self.store = store
        self.secret = secret
        self.model = MatchModel(settings)
        self.max_block = self.model.settings.max_block_size
        self._ikeys: dict[tuple[str, str], str] = {}
        self._canon: dict[tuple[str, str], tuple[str, str, str]] = {}  # identifier -> canonical system, value, key
        # The Patient events of the last batches, by source and subject: (citizen, member). Kept over two batches
        # at least, so a batch run again (a failed Kafka write) answers as it did the first time.
        self._recent_leads: dict[tuple[Source, Subject], tuple[str, str]] = {}

    def _ikey(self, system: str, value: str) -> str:
        """``identity_key`` of (system, value), cached (a plain tuple: hashing an Identifier runs Python code)."""
        pair = (system, value)
        key = self._ikeys.get(pair)
        if key is None:
            if len(self._ikeys) > 200_000:
                self._ikeys.clear()
            key = self._ikeys[pair] = mpi_hash(self.secret, "id", system, value)  # identity_key, no Identifier
        return key

    # -------------------------------------------------------------- building the items
    def _item(self, envelope: Envelope, sr: SourceRecord, old: list[dict]) -> _Item:
        item = _Item()
        if sr.mrn:
            ref = mpi_hash(self.secret, "rec", "mrn", sr.facility, sr.mrn)[:16]
        else:
            ref = mpi_hash(self.secret, "rec", sr.name, sr.birth_date, sr.sex, sr.personal_id, sr.insurance,
                             sr.phone, sr.address, sr.ward)[:16]
        p = prepare(sr, record_id=ref)
        item.ref, item.p, item.name_text, item.birth_text = ref, p, sr.name, sr.birth_date
        item.patient = envelope.payload.get("resourceType") == "Patient"
        item.event_id = envelope.event_id
        item.cause = envelope.event_id if envelope.type == MERGED_TYPE else ""
        ikey = self._ikey
        strong: list[str] = []
        if p.cccd and p.cccd_ok:
            strong.append(ikey(SYSTEM_CCCD, p.cccd))
        if p.cmnd:  # _STRONG_SYSTEMS[1:], in its order
            strong.append(ikey(SYSTEM_OLD_ID, p.cmnd))
        if p.bhxh:
            strong.append(ikey(SYSTEM_BHXH, p.bhxh))
        if p.passport:
            strong.append(ikey(SYSTEM_PASSPORT, p.passport))
        item.mrn_link = ikey(mrn_system(sr.facility), sr.mrn) if sr.mrn else ""
        strong += self._linkable(envelope.subject.identifiers, p)
        if item.mrn_link:
            strong.append(item.mrn_link)
        item.links = list(dict.fromkeys(strong))
        item.old = [k for k in self._linkable(
            (Identifier(str(i.get("system", "")), str(i.get("value", ""))) for i in old), p) if k not in item.links
                    ] if old else []
        item.blocks = None  # computed when first needed (``_blocks``)
        item.own_slot = record_slot(ref)
        return item

    def _blocks(self, item: _Item) -> None:
        """The item's block slots: those it reads (``probe_read``) and those it is filed under (``probe_index``),
        besides the common ``blocks``. ~10 keyed hashes, so only for items that are matched or filed."""
        item.blocks, item.probe_read, item.probe_index = [], [], []
        if not item.has_demographics:
            return
        p = item.p
        item.blocks = block_slots(self.secret, [(name, key) for name, fn in _INDEX_RULES if (key := fn(p))])
        for name, key_fn, probe in _PROBE:
            key = key_fn(p)
            if key:
                every = block_slot(self.secret, name, key)  # every record with the key: probes read it
                probes = block_slot(self.secret, name + ":probe", key)  # probes only: the others read it
                is_probe = probe(p)
                item.probe_read.append(every if is_probe else probes)
                item.probe_index += [every, probes] if is_probe else [every]

    def _read_blocks(self, item: _Item) -> list[Slot]:
        if item.blocks is None:
            self._blocks(item)
        return item.blocks + item.probe_read

    def _index_blocks(self, item: _Item) -> list[Slot]:
        if item.blocks is None:
            self._blocks(item)
        return item.blocks + item.probe_index

    def _linkable(self, identifiers: Iterable[Identifier], p: Prepared) -> list[str]:
        out = []
        canon = self._canon
        for ident in identifiers:
            pair = (ident.system, ident.value)
            known = canon.get(pair)
            if known is None:
                if len(canon) > 200_000:
                    canon.clear()
                c = canonical_identifier(ident)
                known = canon[pair] = ("", "", "") if c is None else (c.system, c.value, self._ikey(c.system, c.value))
            system, value, ikey = known
            if not ikey:
                continue
            if system == SYSTEM_CCCD and ids.cccd_conflicts(value, p.sex, p.year):
                continue  # a CCCD contradicting the record may be a relative's: never a link
            out.append(ikey)
        return out

    def _lookups(self, item: _Item) -> list[Slot]:
        """The first round trip's slots: links and the record's own entry (blocks come after, if needed)."""
        slots = [link_slot(k) for k in (*item.links, *item.old)]
        slots.append(item.own_slot)
        if item.cause:
            slots.append(merge_marker_slot(self.secret, item.cause))
        return slots

    # -------------------------------------------------------------- resolving a batch
    async def resolve(self, envelopes: list[Envelope]) -> BatchResolution:
        """Every event with its citizen_id set (or the IdentityError saying why not), in order."""
        items: list[_Item] = []
        by_key: dict[Any, _Item] = {}
        per_event: list[_Item | IdentityError | tuple[str, str]] = []
        leads: dict[tuple[Source, Subject], _Item] = {}  # the batch's Patient events, by source and subject
        follows: set[int] = set()  # positions of the events that take their Patient's citizen
        for env in envelopes:
            old = [i for i in env.payload.get("identifier", ()) if isinstance(i, dict) and i.get("use") == "old"]
            patient = env.payload.get("resourceType") == "Patient"
            if not patient and not old and env.type != MERGED_TYPE:
                lead = leads.get((env.source, env.subject)) or self._recent_leads.get((env.source, env.subject))
                if lead is not None:
                    follows.add(len(per_event))
                    per_event.append(lead)
                    continue
            sr = record_from_envelope(env, record_id="")
            key = (sr.name, sr.birth_date, sr.sex, sr.personal_id, sr.insurance, sr.phone, sr.address, sr.ward,
                   sr.facility, sr.mrn, env.subject.identifiers, env.type == MERGED_TYPE and env.event_id, patient,
                   tuple((i.get("system"), i.get("value")) for i in old))
            item = by_key.get(key)
            if item is None:
                item = self._item(env, sr, old)
                if not item.links and not item.old and not item.has_demographics:
                    per_event.append(IdentityError(NO_SUBJECT))
                    continue
                by_key[key] = item
                items.append(item)
            if patient and env.type != MERGED_TYPE:
                leads.setdefault((env.source, env.subject), item)
            per_event.append(item)

        # round trip 1: links, own records
        slots = list(dict.fromkeys(s for item in items for s in self._lookups(item)))
        found = dict(zip(slots, await self.store.get(slots), strict=True))
        batch = _Batch(found)
        wanted: dict[str, Slot] = {}
        for item in items:
            own = found[item.own_slot]
            if own is not None:
                batch.records[item.ref] = unpack(own)
        matched = [item for item in items if self._needs_matching(item, batch)]
        # round trip 1b: the blocks of the events that need matching, and the record lists of the citizens their
        # strong links name (scored whatever the blocks find: a block over max_block_size is skipped, and a CCCD
        # shared by two people must still meet the vetoes)
        late: list[Slot] = []
        for item in matched:
            item.linked = [c for c in dict.fromkeys(batch.link_value(k) for k in item.links) if c]
            late += self._read_blocks(item)
            late += [citizen_slot(c) for c in item.linked]
        late = [s for s in dict.fromkeys(late) if s not in found]
        if late:
            found.update(zip(late, await self.store.get(late), strict=True))
        for item in matched:
            for ref in self._candidates(item, batch):
                if ref not in batch.records and ref not in wanted:
                    wanted[ref] = record_slot(ref)
        # round trip 2: the candidates' records
        if wanted:
            for ref, raw in zip(wanted, await self.store.get(list(wanted.values())), strict=True):
                if raw is not None:
                    batch.records[ref] = unpack(raw)

        out = BatchResolution([], [])
        for item in items:
            self._decide(item, batch, out)
        # round trip 3: links (first writer wins), records, blocks, citizens
        if batch.ops:
            replies = await self.store.write(batch.ops)
            await self._settle_races(batch, replies, items)
        for pos, (env, entry) in enumerate(zip(envelopes, per_event, strict=True)):
            if isinstance(entry, IdentityError):
                out.results.append(entry)
                out.outcomes.append(DLQ)
            elif isinstance(entry, tuple):  # the Patient was in an earlier batch
                out.results.append(env.with_citizen(entry[0], entry[1] or None))
                out.outcomes.append(LINK)
            else:
                out.results.append(env.with_citizen(entry.cid, entry.member or None))
                out.outcomes.append(LINK if pos in follows else entry.outcome)
        self._remember(leads)
        return out

    def _remember(self, leads: dict[tuple[Source, Subject], _Item]) -> None:
        """Keep this batch's Patient events for the followers the next batches may start with (bounded)."""
        recent = self._recent_leads
        if len(recent) > _RECENT_LEADS:
            for key in list(recent)[:len(recent) // 2]:  # the oldest half (dicts keep insertion order)
                del recent[key]
        for key, item in leads.items():
            recent[key] = (item.cid, item.member)

    def index_ops(self, envelope: Envelope, citizen_id: str) -> list[Op]:
        """The writes that file an event's record under a citizen decided elsewhere, with no reads: bulk
        loads of a known population (``bench.identity_stream`` indexes a million citizens this way)."""
        sr = record_from_envelope(envelope, record_id="")
        old = [i for i in envelope.payload.get("identifier", ()) if isinstance(i, dict) and i.get("use") == "old"]
        item = self._item(envelope, sr, old)
        batch = _Batch({})
        self._index(item, citizen_id, batch)
        for k in (*item.links, *item.old):
            batch.link(k, citizen_id, item)
        return batch.ops

    def _unchanged(self, item: _Item, own: Indexed | None) -> bool:
        """The batch's first view of the record says what the event says: nothing to match or write."""
        if item.unchanged is None:
            item.unchanged = own is not None and own.body() == self._indexed(item, own.citizen_id).body()
        return item.unchanged

    def _needs_matching(self, item: _Item, batch: "_Batch") -> bool:
        if not item.has_demographics or self._unchanged(item, batch.records.get(item.ref)):
            return False
        return not (item.mrn_link and batch.link_value(item.mrn_link) and not item.patient)

    def _indexed(self, item: _Item, cid: str) -> Indexed:
        return Indexed(cid, item.p, tuple(item.links + item.old), item.name_text, item.birth_text)

    def _decide(self, item: _Item, batch: "_Batch", out: BatchResolution) -> None:
        link_of = batch.link_value
        own = batch.records.get(item.ref)
        holders = [h for h in dict.fromkeys(link_of(k) for k in item.old) if h]
        cid, outcome = "", LINK
        if self._unchanged(item, own):
            cid = own.citizen_id  # type: ignore[union-attr]
        elif item.mrn_link and link_of(item.mrn_link):
            cid = link_of(item.mrn_link)  # type: ignore[assignment]
            if item.patient and item.has_demographics:
                for other, (d, rec) in self._score(item, batch).items():
                    if other != cid and d.outcome == LINK and not item.cause:
                        out.proposals.append(Proposal(cid, other, "possible duplicate", item.event_id, d, rec,
                                                      self._indexed(item, cid)))
                self._index(item, cid, batch)
        elif not item.has_demographics:
            linked = next((c for c in (*(link_of(k) for k in item.links), *holders) if c), None)
            cid, outcome = (linked, LINK) if linked else (self._mint(item, batch), NEW)
        elif item.cause and holders and not any(link_of(k) for k in item.links):
            cid = holders[0]  # an A40 whose surviving identity is new: it is the retired patient's citizen
            self._index(item, cid, batch)
        else:
            cid, outcome = self._choose(item, self._score(item, batch), batch, out)
            self._index(item, cid, batch)
        item.cid, item.outcome = cid, outcome
        item.member = _origin(own, cid)
        for k in item.links:
            batch.link(k, cid, item)
        for k in item.old:
            held = link_of(k)
            if held is None:
                batch.link(k, cid, item)
            elif held != cid and item.cause:
                if not any(m.retired == held for m in out.merges):
                    out.merges.append(Merge(cid, held, item.cause))
            elif held != cid:
                out.proposals.append(Proposal(cid, held, "old identifier held by another citizen",
                                              item.event_id))
        if item.cause:
            marker = batch.found.get(merge_marker_slot(self.secret, item.cause))
            if marker is not None:  # a replay: re-emit the merge this event made before
                survivor, retired = marker.decode().split("|")
                if not any(m.retired == retired for m in out.merges):
                    out.merges.append(Merge(survivor, retired, item.cause))

    def _score(self, item: _Item, batch: "_Batch") -> dict[str, tuple[Decision, Indexed]]:
        """Per candidate citizen: its best-ranked record's decision (a vetoing record outranks none)."""
        best: dict[str, tuple[Decision, Indexed]] = {}
        seen = {item.ref}
        score = self.model.score
        p = item.p
        records = batch.records
        for ref in self._candidates(item, batch):
            if ref in seen:
                continue
            seen.add(ref)
            rec = records.get(ref)
            if rec is None:
                continue
            d = score(rec.p, p, explain=False)
            cur = best.get(rec.citizen_id)
            if cur is None or _rank(d) > _rank(cur[0]):
                best[rec.citizen_id] = (d, rec)
        return best

    def _candidates(self, item: _Item, batch: "_Batch") -> list[str]:
        """The records an item is scored against: its blocks' and those of the citizens its strong links name
        (both read in round trip 1b)."""
        refs = [ref for slot in self._read_blocks(item) for ref in batch.block_refs(slot, self.max_block)]
        return refs + [ref for cid in item.linked for ref in batch.stored_refs(citizen_slot(cid))]

    def _choose(self, item: _Item, decisions: dict[str, tuple[Decision, Indexed]], batch: "_Batch",
                out: BatchResolution) -> tuple[str, str]:
        """Link, review or new for a record that no MRN or unchanged entry already decides."""
        cause = item.event_id
        strong = [c for c in dict.fromkeys(batch.link_value(k) for k in item.links) if c]
        disagreeing = [s for s in strong if s in decisions and decisions[s][0].outcome != LINK]
        agreeing = [s for s in strong if s not in disagreeing]
        proposals: list[tuple[str, str, str]] = []  # (existing, other, reason)
        if agreeing:
            cid, outcome = agreeing[0], LINK
            others = [*agreeing[1:], *(c for c, (d, _) in decisions.items() if d.outcome == LINK)]
            proposals += [(cid, o, "identifiers of two citizens") for o in dict.fromkeys(others) if o != cid]
            proposals += [(s, cid, "identifier claimed by two people") for s in disagreeing]
        else:
            linking = [c for c, (d, _) in decisions.items() if d.outcome == LINK and c not in disagreeing]
            if len(linking) == 1:
                cid, outcome = linking[0], LINK
                proposals += [(s, cid, "identifier claimed by two people") for s in disagreeing]
            elif linking or disagreeing or any(d.outcome == REVIEW for d, _ in decisions.values()):
                cid, outcome = self._mint(item, batch), REVIEW
                reason = ("identifier claimed by two people" if disagreeing else
                          "links two citizens" if len(linking) > 1 else "uncertain match")
                ranked = sorted(decisions, key=lambda c: -decisions[c][0].weight)
                picked = [c for c in dict.fromkeys([*disagreeing, *ranked])
                          if decisions[c][0].outcome != NEW or c in disagreeing][:3]
                proposals += [(c, cid, reason) for c in picked]
            else:
                return self._mint(item, batch), NEW
        mine = self._indexed(item, cid)
        for existing, other, reason in proposals:
            side = other if existing == cid else existing
            d, rec = decisions.get(side, (None, None))
            out.proposals.append(Proposal(existing, other, reason, cause, d, rec, mine))
        return cid, outcome

    def _mint(self, item: _Item, batch: "_Batch") -> str:
        """A new citizen id, deterministic in what the event says (a replay mints the same one)."""
        item.minted = True
        p = item.p
        if p.cccd and p.cccd_ok and batch.link_value(self._ikey(SYSTEM_CCCD, p.cccd)) is None:
            return citizen_id_for(self.secret, SYSTEM_CCCD, p.cccd)
        if p.mrn_key:
            facility, mrn = p.mrn_key.split("|", 1)
            return citizen_id_for(self.secret, mrn_system(facility), mrn)
        for kind, system in _STRONG_SYSTEMS[1:]:
            value = getattr(p, kind)
            if value and batch.link_value(self._ikey(system, value)) is None:
                return citizen_id_for(self.secret, system, value)
        return citizen_id_for(self.secret, "urn:hssk:record", item.ref)

    def _index(self, item: _Item, cid: str, batch: "_Batch") -> None:
        rec = self._indexed(item, cid)
        rec.origin = _origin(batch.records.get(item.ref), cid)  # an update keeps what a merge remembered
        batch.records[item.ref] = rec
        batch.ops.append((item.own_slot, "S", rec.pack().decode()))
        ops, blocks, ref = batch.ops, batch.blocks, item.ref
        ops.append((citizen_slot(cid), "A", ref))
        for slot in self._index_blocks(item):  # the batch's own view of the block, and the write (~8 per event)
            local = blocks.get(slot)
            if local is None:
                blocks[slot] = [ref]
            else:
                local.append(ref)
            ops.append((slot, "A", ref))

    async def _settle_races(self, batch: "_Batch", replies: list[bytes | None], items: list[_Item]) -> None:
        """Another worker linked an identifier between our read and write: adopt its citizen if we minted."""
        remap: dict[str, str] = {}
        for pos, item, cid in batch.link_ops:
            reply = replies[pos]
            if reply is not None and reply.decode() != cid and item.minted:
                remap.setdefault(cid, reply.decode())
        if not remap:
            return
        ops: list[Op] = []
        for item in items:
            if item.cid in remap:
                item.cid, item.outcome = remap[item.cid], LINK
                rec = batch.records.get(item.ref)
                if rec is not None:
                    rec.citizen_id = item.cid
                    ops += [(item.own_slot, "S", rec.pack().decode()), (citizen_slot(item.cid), "A", item.ref)]
        await self.store.write(ops)


def _origin(own: Indexed | None, cid: str) -> str:
    """The citizen a merge moved the source record away from, while the record is still filed under ``cid``."""
    return own.origin if own is not None and own.origin and own.citizen_id == cid else ""


def _rank(d: Decision) -> tuple[int, float]:
    vetoed = bool(VETOES.intersection(d.flags))
    return (2 if d.outcome == LINK and not vetoed else 1 if d.outcome == REVIEW or vetoed else 0, d.weight)


class _Batch:
    """What one batch knows: the first trip's values, the records, and its own writes (an overlay)."""

    def __init__(self, found: dict[Slot, bytes | None]) -> None:
        self.found = found
        self.records: dict[str, Indexed] = {}
        self.links: dict[str, str] = {}
        self.blocks: dict[Slot, list[str]] = {}
        self.ops: list[Op] = []
        self.link_ops: list[tuple[int, _Item, str]] = []  # (position in ops, item, citizen id)
        self._split: dict[Slot, list[str]] = {}  # the lists read (blocks, citizens' records), split into refs once
        self._found_links: dict[str, str | None] = {}  # the first trip's links, decoded once

    def link_value(self, ikey: str) -> str | None:
        local = self.links.get(ikey)
        if local is not None:
            return local
        try:
            return self._found_links[ikey]
        except KeyError:
            value = self.found.get(link_slot(ikey))
            decoded = self._found_links[ikey] = value.decode() if value is not None else None
            return decoded

    def link(self, ikey: str, cid: str, item: _Item) -> None:
        if self.link_value(ikey) is None:
            self.links[ikey] = cid
            self.link_ops.append((len(self.ops), item, cid))
            self.ops.append((link_slot(ikey), "L", cid))

    def stored_refs(self, slot: Slot) -> list[str]:
        """The refs a list slot (a block, a citizen's records) held when read, split once."""
        refs = self._split.get(slot)
        if refs is None:
            refs = self._split[slot] = split_refs(self.found.get(slot))
        return refs

    def block_refs(self, slot: Slot, limit: int) -> list[str]:
        refs = self.stored_refs(slot)
        if len(refs) > limit:
            return []
        local = self.blocks.get(slot)
        return refs + local if local else refs
