"""The MPI's own events on ``events.citizen``: merges and unmerges, so every consumer can follow them.

One place for their shape (the record, the warehouse, fan-out and the health book all read them):

- ``citizen.merged``: ``citizen_id`` is the survivor; the payload is a Patient with ``id`` = survivor and one
  ``link`` of type ``replaces`` per retired citizen (``Patient/<retired citizen_id>``).
- ``citizen.unmerged``: ``citizen_id`` is the citizen the merge kept (so the event lands on the partition
  that holds the merged record); the payload is a Patient with ``id`` = survivor and one ``link`` of type
  ``seealso`` naming the citizen restored as separate (``Patient/<restored citizen_id>``).

Both are keyed by the survivor on ``events.citizen``. Their ids are deterministic in (kind, survivor, other,
cause): the cause is whatever decided it (the A40 event id, a review decision id), so a replay of the
decision yields the same event and consumers absorb it.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.envelope import Envelope, Source, Subject, event_id

MERGED = "citizen.merged"
UNMERGED = "citizen.unmerged"
MPI_SYSTEM = "urn:hssk:mpi"


@dataclass(frozen=True, slots=True)
class MergeLink:
    survivor: str
    other: str  # retired (merged) or restored (unmerged) citizen id


def _event(kind: str, link_type: str, survivor: str, other: str, cause: str, occurred_at: str,
           recorded_at: str, facility: str) -> Envelope:
    payload = {"resourceType": "Patient", "id": survivor,
               "link": [{"other": {"reference": f"Patient/{other}"}, "type": link_type}]}
    return Envelope(
        event_id=event_id(MPI_SYSTEM, kind, f"{survivor}|{other}", cause), type=kind,
        occurred_at=occurred_at, recorded_at=recorded_at,
        source=Source(system=MPI_SYSTEM, facility=facility, message_id=cause),
        subject=Subject(), payload=payload, citizen_id=survivor,
    )


def merged_event(survivor: str, retired: str, cause: str, occurred_at: str, recorded_at: str,
                 facility: str = "") -> Envelope:
    """``retired`` is folded into ``survivor``; ``cause`` is the id of what decided it."""
    if survivor == retired:
        raise ValueError("a citizen cannot be merged into itself")
    return _event(MERGED, "replaces", survivor, retired, cause, occurred_at, recorded_at, facility)


def unmerged_event(survivor: str, restored: str, cause: str, occurred_at: str, recorded_at: str,
                   facility: str = "") -> Envelope:
    """Undo a merge: ``restored`` is a separate citizen again; ``cause`` is the id of the decision."""
    if survivor == restored:
        raise ValueError("a citizen cannot be unmerged from itself")
    return _event(UNMERGED, "seealso", survivor, restored, cause, occurred_at, recorded_at, facility)


def merge_link(event: Envelope) -> MergeLink:
    """The (survivor, other) pair of a citizen.merged / citizen.unmerged event; ValueError if it names none."""
    wanted = "replaces" if event.type == MERGED else "seealso"
    for link in event.payload.get("link", []):
        ref = (link.get("other") or {}).get("reference", "")
        if link.get("type") == wanted and ref.startswith("Patient/") and event.citizen_id:
            return MergeLink(event.citizen_id, ref.removeprefix("Patient/"))
    raise ValueError(f"{event.type} names no other citizen (link type {wanted!r})")


def merged_through(via: dict[str, str], member: str, ancestor: str) -> bool:
    """Whether ``member``'s chain of merges (``via``: each retired citizen -> the one it was merged into) passes
    through ``ancestor``: splitting ``ancestor`` out of a group takes these members along (record, warehouse)."""
    seen = set()
    while member != ancestor and member in via and member not in seen:
        seen.add(member)
        member = via[member]
    return member == ancestor
