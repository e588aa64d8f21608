"""Review cases for the data steward, and the merges and unmerges that follow from them (or from HL7 A40).

Redis layout (one hash tag, so a Redis Cluster keeps it on one node; the volume is a steward's, not a
stream's)::

    mpi:{review}:cases        HASH  case id -> case JSON (citizens, compared fields, weights, flags, status)
    mpi:{review}:cases:open   ZSET  open case ids by created time (its size is the queue gauge)
    mpi:{review}:alias        HASH  retired citizen id -> "survivor|cause" (what a merge did, for unmerge)
    mpi:{review}:merges       HASH  merge marker of an A40 event -> "survivor|retired" (replays re-emit it)

A case id is a keyed hash of the two citizen ids, and a case is only opened if none exists for the pair:
a rejected pair is never proposed again. Merging re-points the retired citizen's records and links to
the survivor (the hot path never follows aliases); unmerging re-points them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import orjson

from hub.identity.indexed import Indexed, unpack, with_citizen
from hub.identity.model import Decision, MatchModel
from hub.identity.mpi_store import REVIEW_TAG, Op, RedisMpiStore, citizen_slot, link_slot, record_slot, split_refs
from hub.identity.resolve import Merge, Proposal, merge_marker_slot
from hub.pseudonym import keyed_hash

CASES = f"{REVIEW_TAG}:cases"
OPEN = f"{CASES}:open"
ALIAS = f"{REVIEW_TAG}:alias"
OPEN_STATUS, ACCEPTED, REJECTED, UNMERGED = "open", "accepted", "rejected", "unmerged"


class ReviewError(Exception):
    """A steward's command that cannot be carried out (unknown case, already decided, not merged)."""


def case_id(secret: bytes, a: str, b: str) -> str:
    return keyed_hash(secret, "review", *sorted((a, b)))[:16]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def shown(rec: Indexed | None) -> dict[str, object]:
    """The compared fields of one side, as the steward sees them (personal data: ``show`` audits reads)."""
    if rec is None:
        return {}
    p = rec.p
    return {"name": rec.name_text, "birth_date": rec.birth_text, "sex": p.sex, "phone": p.phone, "ward": p.ward,
            "address": p.address, "cccd": p.cccd, "cmnd": p.cmnd, "bhxh": p.bhxh, "passport": p.passport,
            "mrn": p.mrn_key, "flags": list(p.flags)}


def case_document(secret: bytes, model: MatchModel, proposal: Proposal, created: str) -> dict:
    a, b = proposal.existing_record, proposal.other_record
    decision: Decision | None = model.score(a.p, b.p) if a is not None and b is not None else proposal.decision
    return {
        "id": case_id(secret, proposal.existing, proposal.other), "status": OPEN_STATUS, "created": created,
        "reason": proposal.reason, "cause": proposal.cause,
        "citizens": {"existing": proposal.existing, "other": proposal.other},
        "weight": round(decision.weight, 2) if decision else None,
        "outcome": decision.outcome if decision else None,
        "flags": list(decision.flags) if decision else [],
        "comparisons": [{"comparison": c.comparison, "level": c.level, "weight": round(c.weight, 2)}
                        for c in decision.contributions] if decision else [],
        "records": {"existing": shown(a), "other": shown(b)},
    }


def summary(doc: dict) -> dict:
    """A case without its personal data (``list``): ids, reason, weight, flags, status, times."""
    return {k: doc.get(k) for k in ("id", "status", "created", "reason", "weight", "flags", "citizens", "decided")}


@dataclass(frozen=True, slots=True)
class MergeResult:
    survivor: str
    retired: str
    cause: str


class Mpi:
    """The MPI's steward-side operations on Redis: cases, merges, unmerges."""

    def __init__(self, redis, secret: bytes, model: MatchModel | None = None) -> None:  # redis.asyncio.Redis
        self.redis = redis
        self.store = RedisMpiStore(redis)
        self.secret = secret
        self.model = model or MatchModel()

    # ---------------------------------------------------------------- cases
    async def open_cases(self, proposals: list[Proposal]) -> int:
        """Open a case per new pair (an existing or decided pair is left alone); return how many opened."""
        if not proposals:
            return 0
        created = now_iso()
        score = datetime.now(timezone.utc).timestamp()
        ops: list[Op] = []
        for pr in dict((case_id(self.secret, p.existing, p.other), p) for p in proposals
                       if p.existing != p.other).values():
            doc = case_document(self.secret, self.model, pr, created)
            ops.append(((-1, "cases", doc["id"]), "Q", f"{score}|{orjson.dumps(doc).decode()}"))
        return sum(1 for r in await self.store.write(ops) if r is None)

    async def queue_size(self) -> int:
        return int(await self.redis.zcard(OPEN))

    async def cases(self, status: str = OPEN_STATUS, limit: int = 100) -> list[dict]:
        if status == OPEN_STATUS:
            ids = [i.decode() for i in await self.redis.zrange(OPEN, 0, limit - 1)]
            docs = await self.redis.hmget(CASES, ids) if ids else []
        else:
            docs = list((await self.redis.hgetall(CASES)).values())
        out = [orjson.loads(d) for d in docs if d]
        return [d for d in out if status in ("all", d["status"])][:limit]

    async def case(self, cid: str) -> dict:
        raw = await self.redis.hget(CASES, cid)
        if raw is None:
            raise ReviewError(f"no review case {cid}")
        return orjson.loads(raw)

    async def decide(self, doc: dict, status: str, actor: str) -> dict:
        doc = {**doc, "status": status, "decided": {"by": actor, "at": now_iso()}}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(CASES, doc["id"], orjson.dumps(doc))
            pipe.zrem(OPEN, doc["id"])
            await pipe.execute()
        return doc

    # ---------------------------------------------------------------- merges
    async def survivor_of(self, cid: str) -> str:
        """Follow merges to the citizen that holds ``cid``'s records now."""
        seen = {cid}
        while True:
            raw = await self.redis.hget(ALIAS, cid)
            if raw is None:
                return cid
            cid = raw.decode().split("|")[0]
            if cid in seen:
                return cid
            seen.add(cid)

    async def merge(self, survivor: str, retired: str, cause: str) -> MergeResult:
        """Fold ``retired`` into ``survivor``: its records and links now name the survivor. Idempotent."""
        survivor, retired = await self.survivor_of(survivor), await self.survivor_of(retired)
        if survivor == retired:
            return MergeResult(survivor, retired, cause)
        await self.store.write([(merge_marker_slot(self.secret, cause), "L", f"{survivor}|{retired}")])
        await self._repoint(await self._refs(retired), retired, survivor)
        await self.redis.hset(ALIAS, retired, f"{survivor}|{cause}")
        return MergeResult(survivor, retired, cause)

    async def apply_merges(self, merges: list[Merge]) -> list[MergeResult]:
        """The A40 merges of a batch, in order; a merge already made (a replay) is returned again."""
        done = []
        for m in merges:
            raw = await self.redis.hget(ALIAS, m.retired)
            if raw is not None and raw.decode() == f"{m.survivor}|{m.cause}":
                done.append(MergeResult(m.survivor, m.retired, m.cause))
            else:
                result = await self.merge(m.survivor, m.retired, m.cause)
                if result.survivor != result.retired:
                    done.append(result)
        return done

    async def unmerge(self, survivor: str, other: str) -> str:
        """Undo the merge of ``other`` into ``survivor``; return the cause of the merge undone."""
        raw = await self.redis.hget(ALIAS, other)
        if raw is None or raw.decode().split("|")[0] != survivor:
            raise ReviewError(f"{other} is not merged into {survivor}")
        cause = raw.decode().split("|", 1)[1]
        refs = await self._refs(other)
        await self._repoint(refs, survivor, other)
        [kept] = await self.store.get([citizen_slot(survivor)])
        remaining = "".join(r for r in split_refs(kept) if r not in set(refs))
        await self.store.write([(citizen_slot(survivor), "S", remaining)])
        await self.redis.hdel(ALIAS, other)
        doc_id = case_id(self.secret, survivor, other)
        if await self.redis.hexists(CASES, doc_id):
            await self.decide(await self.case(doc_id), UNMERGED, "unmerge")
        return cause

    async def _refs(self, cid: str) -> list[str]:
        [raw] = await self.store.get([citizen_slot(cid)])
        return split_refs(raw)

    async def _repoint(self, refs: list[str], old: str, new: str) -> None:
        await self.store.write(repoint_ops(refs, await self.store.get([record_slot(r) for r in refs]), old, new))


def repoint_ops(refs: list[str], raws: list[bytes | None], old: str, new: str) -> list[Op]:
    """The writes that move source records ``refs`` (packed as ``raws``) and their links from ``old`` to ``new``."""
    ops: list[Op] = []
    for ref, raw in zip(refs, raws, strict=True):
        if raw is None:
            continue
        rec = unpack(raw)
        if rec.citizen_id == old:
            ops.append((record_slot(ref), "S", with_citizen(raw, new).decode()))
        for ikey in rec.links:
            ops.append((link_slot(ikey), "C", f"{old}|{new}"))
        ops.append((citizen_slot(new), "A", ref))
    return ops
