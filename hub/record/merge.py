"""Merging and unmerging citizen records: pure functions over the record dicts (no Redis, no Kafka).

The design, and why it stays correct:

- A record's *content* (everything but ``version``, ``updated_at`` and the bookkeeping below) is a function
  of the set of events applied to it: every entry is the newest by ``(occurred_at, event_id)`` and the
  identifiers are a sorted union (hub.record.apply). ``combine`` joins two contents with the same rule, so
  ``combine(content(A), content(B)) == content(A ∪ B)``, whatever the order events or merges arrived in.
- A merge cannot be undone from the combined content alone (the survivor's older phone number is gone once
  the retired citizen's newer one wins). So a survivor keeps, next to its combined content, one *part* per
  citizen in its group: the content of the events that belong to that citizen (``_merge.parts``), and who
  each retired citizen was merged into (``_merge.via``, so a chain A→B→C can be split at any link). Only
  merged records pay for this (about twice their size); plain records have no ``_merge``.
- Every event applied to a survivor is applied to the combined content *and* to the part it is attributed to
  (``attribute``), which keeps ``combined == join(parts)``. Attribution, most certain first: the event's
  ``member_id`` names a retired member (the MPI filed the event's source record under that citizen before the
  merge moved it: it knows this whatever order the record applies events in); else its ``citizen_id`` does
  (the MPI resolved it to that citizen); else a facility MRN of the event's subject (or Patient payload) that
  exactly one part holds; else another identifier exactly one part holds; else the survivor itself. The shared
  CCCD that caused the merge is held by both parts and decides nothing. Only the last two rules read the parts
  as they are when the event is applied, and so depend on the retired citizen's events (on their own
  partition) having been applied first; they decide events written before ``member_id`` existed and events of
  a source record new since the merge. Limit: a source whose only events before the merge were clinical (no
  identifiers in the part) and that sends under the survivor's id afterwards is attributed to the survivor;
  ``hub rebuild`` interleaves partitions by record time, so it applies events in the order they were written.
- An unmerge gives the restored citizen the join of its part and the parts merged through it, and the survivor
  the join of what remains. With no events after the merge both equal what they were before it, under
  ``content`` equality (``version`` keeps growing, so readers and fan-out see a newer record).
- The retired record becomes a redirect ``{"citizen_id", "merged_into", "merged_by", "version",
  "updated_at"}``; readers and later events follow it to the survivor.

Merges that would not make sense are ignored (no change): the retired citizen already in the survivor's group
(a replayed or reversed merge) or already retired into another group (the MPI unmerges first).
"""

from __future__ import annotations

from typing import Any

from hub.envelope import VN_FHIR_BASE
from hub.identity.events import merged_through
from hub.record.apply import CLINICAL_SECTIONS, Record, apply_content, bump, copy_record, empty_record
from hub.record.event import Event

MERGE_KEY = "_merge"  # bookkeeping of a survivor; never shown to readers (store.visible)
META_KEYS = frozenset({"version", "updated_at", MERGE_KEY})
ENTRY_SECTIONS = ("encounters", *CLINICAL_SECTIONS.values())
_MRN_PREFIX = f"{VN_FHIR_BASE}/sid/mrn/"


def content(record: Record) -> Record:
    """What a record says about the citizen: the equality used for unmerge and for ``hub rebuild --compare``."""
    return {k: v for k, v in record.items() if k not in META_KEYS}


def is_redirect(record: Record | None) -> bool:
    return record is not None and "merged_into" in record


def _order(entry: dict[str, Any]) -> tuple[str, str]:
    seen = entry["provenance"]
    return seen["occurred_at"], seen["event_id"]


def combine(into: Record, other: Record) -> None:
    """Join ``other``'s content into ``into`` (in place): newest entry per key, union of identifiers."""
    known = {(i["system"], i["value"]) for i in into["identifiers"]}
    for ident in other.get("identifiers", []):
        if (ident["system"], ident["value"]) not in known:
            into["identifiers"].append(dict(ident))
            known.add((ident["system"], ident["value"]))
    into["identifiers"].sort(key=lambda i: (i["system"], i["value"]))
    theirs = other.get("demographics")
    if theirs is not None and (into.get("demographics") is None or _order(theirs) > _order(into["demographics"])):
        into["demographics"] = theirs
    for section in ENTRY_SECTIONS:
        if section not in other:
            continue
        mine = into.setdefault(section, {})
        for key, entry in other[section].items():
            if key not in mine or _order(entry) > _order(mine[key]):
                mine[key] = entry


def _join(parts: dict[str, Record], members: list[str], citizen_id: str) -> Record:
    """The combined content of ``members`` (first one's shape kept exactly), renamed to ``citizen_id``."""
    joined = copy_record(parts[members[0]])
    for member in members[1:]:
        combine(joined, parts[member])
    joined["citizen_id"] = citizen_id
    return joined


def _group(record: Record) -> tuple[dict[str, Record], dict[str, str]]:
    """(parts, via) of a record: a plain record is a group of one."""
    book = record.get(MERGE_KEY)
    if book:
        return book["parts"], book["via"]
    return {record["citizen_id"]: content(record)}, {}


def members(record: Record) -> set[str]:
    return set(_group(record)[0])


def merge(survivor: Record | None, survivor_id: str, retired: Record | None, retired_id: str,
          named_survivor: str, event: Event) -> tuple[Record, Record] | None:
    """Fold ``retired`` into ``survivor`` (the root of the named survivor's group).

    Returns (new survivor, redirect for the retired citizen), or None when the merge changes nothing.
    """
    survivor = survivor if survivor is not None else empty_record(survivor_id)
    if is_redirect(retired) or retired_id in members(survivor):
        return None
    retired = retired if retired is not None else empty_record(retired_id)
    parts, via = _group(survivor)
    their_parts, their_via = _group(retired)
    merged = copy_record(survivor)
    combine(merged, retired)
    merged[MERGE_KEY] = {"parts": {**parts, **their_parts}, "via": {**via, **their_via, retired_id: named_survivor}}
    bump(merged, event)
    redirect = {"citizen_id": retired_id, "merged_into": named_survivor, "merged_by": event.event_id,
                "version": retired.get("version", 0)}
    bump(redirect, event)
    return copy_record(merged), redirect  # one copy per merge: no list or dict shared with the inputs


def unmerge(survivor: Record, restored_id: str, restored: Record | None,
            event: Event) -> tuple[Record, Record] | None:
    """Split ``restored_id`` (and whoever was merged through it) out of ``survivor``'s group.

    Returns (new survivor, restored record), or None when ``restored_id`` is not a retired member.
    """
    parts, via = _group(survivor)
    root = survivor["citizen_id"]
    if restored_id == root or restored_id not in parts:
        return None
    leaving = sorted((m for m in parts if merged_through(via, m, restored_id)), key=lambda m: m != restored_id)
    staying = sorted((m for m in parts if m not in leaving), key=lambda m: m != root)
    back = _join(parts, leaving, restored_id)
    back["version"] = (restored or {}).get("version", 0)
    if len(leaving) > 1:
        back[MERGE_KEY] = {"parts": {m: parts[m] for m in leaving},
                           "via": {m: via[m] for m in leaving if m != restored_id}}
    bump(back, event)
    kept = _join(parts, staying, root)
    kept["version"] = survivor.get("version", 0)
    if len(staying) > 1:
        kept[MERGE_KEY] = {"parts": {m: parts[m] for m in staying}, "via": {m: via[m] for m in staying if m != root}}
    bump(kept, event)
    return copy_record(kept), copy_record(back)


def _identities(event: Event) -> set[tuple[str, str]]:
    found = {(i.system, i.value) for i in event.subject.identifiers}
    if event.type == "patient.updated":
        found |= {(i.get("system", ""), i.get("value", "")) for i in event.payload.get("identifier", [])}
    return {pair for pair in found if pair[1]}


def attribute(record: Record, event: Event) -> str:
    """The member of a survivor's group an event belongs to (see the module docstring for the order)."""
    parts, _ = _group(record)
    root = record["citizen_id"]
    for named in (event.member_id, event.citizen_id):
        if named in parts and named != root:
            return named
    mine = _identities(event)
    for strong in (True, False):
        wanted = {p for p in mine if p[0].startswith(_MRN_PREFIX) == strong}
        holders = [m for m, part in parts.items()
                   if wanted & {(i["system"], i["value"]) for i in part.get("identifiers", [])}]
        if len(holders) == 1:
            return holders[0]
        if holders:
            return root
    return root


def apply_to_group(record: Record, event: Event) -> bool:
    """Apply an event to a record in place, keeping a survivor's parts in step; True if the record changed."""
    changed = apply_content(record, event)
    book = record.get(MERGE_KEY)
    if book:
        apply_content(book["parts"][attribute(record, event)], event)
    if changed:
        bump(record, event)
    return changed
