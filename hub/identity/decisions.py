"""A data steward's decisions on review cases, and undoing a merge: one implementation for ``hub review`` /
``hub unmerge`` and the API's review queue.

Redis is changed first, then the event is written to events.citizen (acks=all). A failed write after an
accept can be retried: the rerun finds the pair merged and sends the same event again (deterministic id).
"""

from __future__ import annotations

from typing import Protocol

from hub.identity.events import merged_event, unmerged_event
from hub.identity.review import ACCEPTED, OPEN_STATUS, REJECTED, Mpi, ReviewError, now_iso
from hub.pseudonym import keyed_hash
from hub.topics import EVENTS_CITIZEN


class Producer(Protocol):
    async def write(self, topic: str, value: bytes, key: bytes | None = None, headers=()) -> tuple[int, int]: ...


class CaseDecided(ReviewError):
    """The case is no longer open (the API answers 409)."""


async def open_case(mpi: Mpi, case_id: str) -> dict:
    doc = await mpi.case(case_id)
    if doc["status"] != OPEN_STATUS:
        raise CaseDecided(f"case {case_id} is already {doc['status']}")
    return doc


async def accept(mpi: Mpi, producer: Producer, case_id: str, actor: str) -> tuple[str, str]:
    """One person: merge the case's other citizen into the existing one; return (survivor, retired)."""
    doc = await open_case(mpi, case_id)
    merge = await mpi.merge(doc["citizens"]["existing"], doc["citizens"]["other"], cause=doc["id"])
    retired = merge.retired if merge.retired != merge.survivor else doc["citizens"]["other"]
    if retired != merge.survivor:
        now = now_iso()
        event = merged_event(merge.survivor, retired, doc["id"], now, now)
        await producer.write(EVENTS_CITIZEN.name, event.to_json(), key=merge.survivor.encode())
    await mpi.decide(doc, ACCEPTED, actor)
    return merge.survivor, retired


async def reject(mpi: Mpi, case_id: str, actor: str) -> None:
    """Two people: record it, so the pair is never proposed again."""
    await mpi.decide(await open_case(mpi, case_id), REJECTED, actor)


async def unmerge(mpi: Mpi, producer: Producer, secret: bytes, survivor: str, other: str) -> None:
    """``other`` is a separate citizen again: links re-pointed back, then citizen.unmerged on events.citizen."""
    cause = await mpi.unmerge(survivor, other)
    now = now_iso()
    decision = keyed_hash(secret, "unmerge", survivor, other, cause)[:16]
    event = unmerged_event(survivor, other, decision, now, now)
    await producer.write(EVENTS_CITIZEN.name, event.to_json(), key=survivor.encode())
