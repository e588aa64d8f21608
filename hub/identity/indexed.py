"""An indexed record as the MPI stores it: the prepared comparison keys, its citizen, the links it holds.

Stored prepared (not as source text) so a candidate fetched from Redis is scored without running
``prepare`` again: unpacking is one ``orjson.loads`` and a constructor (~4 µs against ~25 µs). The source's
own name and birth date text are kept too, for the data steward's review screen.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from hub.identity.normalize import Name
from hub.identity.records import Prepared


@dataclass(slots=True)
class Indexed:
    citizen_id: str
    p: Prepared
    links: tuple[str, ...]  # identity keys this record linked (current and old identifiers)
    name_text: str = ""
    birth_text: str = ""
    # The citizen the record was filed under before a merge re-pointed it to ``citizen_id`` ("" when it was
    # never moved): the identity stage names it on the record's events (Envelope.member_id).
    origin: str = ""

    def body(self) -> list:
        """Everything but the citizen: two records with equal bodies say the same about a person."""
        p, n = self.p, self.p.name
        return [p.record_id, n.family, n.middle, n.given, n.family_ascii, n.middle_ascii, n.given_ascii,
                n.family_variant, n.newborn_alias, p.year, p.month, p.day, p.sex, p.phone, p.ward, p.address,
                p.cccd, p.cccd_ok, p.cmnd, p.passport, p.bhxh, p.mrn_key, p.infant, p.birth_row, list(p.flags),
                list(self.links), self.name_text, self.birth_text]

    def pack(self) -> bytes:
        body = [self.citizen_id, *self.body()]
        if self.origin:
            body.append(self.origin)  # only on moved records: the others keep the layout written before it
        return orjson.dumps(body)


_NAMES: dict[tuple, Name] = {}  # names repeat across candidates: one Name each (a frozen dataclass is slow to build)


_FIELDS = 29  # a packed record without its origin


def unpack(raw: bytes) -> Indexed:
    data = orjson.loads(raw)
    origin = data.pop() if len(data) > _FIELDS else ""
    (cid, rid, fam, mid, giv, fam_a, mid_a, giv_a, fam_v, alias, y, m, d, sex, phone, ward, address, cccd, cccd_ok,
     cmnd, passport, bhxh, mrn_key, infant, birth_row, flags, links, name_text, birth_text) = data
    parts = (fam, mid, giv, fam_a, mid_a, giv_a, fam_v, alias)
    name = _NAMES.get(parts)
    if name is None:
        if len(_NAMES) > 100_000:
            _NAMES.clear()
        name = _NAMES[parts] = Name(*parts)
    p = Prepared(index=0, record_id=rid, name=name, year=y,
                 month=m, day=d, dob8=f"{y:04d}{m:02d}{d:02d}" if y and m and d else "", dob_default=(m, d) == (1, 1),
                 sex=sex, phone=phone, ward=ward, address=address, cccd=cccd, cccd_ok=cccd_ok, cmnd=cmnd,
                 passport=passport, bhxh=bhxh, mrn_key=mrn_key, infant=infant, birth_row=birth_row,
                 flags=tuple(flags))
    return Indexed(cid, p, tuple(links), name_text, birth_text, origin)


def with_citizen(raw: bytes, citizen_id: str) -> bytes:
    """The same packed record filed under another citizen (merge, unmerge), remembering the citizen it was
    first filed under until it is filed there again: A merged into B, B into C leaves A's records with C and
    origin A; unmerging B gives them back to B, still origin A; unmerging A clears it."""
    data = orjson.loads(raw)
    if len(data) == _FIELDS:
        data.append(data[0])
    data[0] = citizen_id
    if data[-1] == citizen_id:
        data.pop()
    return orjson.dumps(data)
