"""One source's view of a person, and the same view prepared once for fast comparison.

Everything the comparisons look at is computed in ``prepare`` (one pass per record), so scoring a pair is
string and integer equality with no parsing on the hot path.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import lru_cache

from hub.identity import identifiers as ids
from hub.identity import normalize as norm


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """What a source said about a person (registry row, HL7 PID, XML1 row), as text."""

    record_id: str
    name: str = ""
    birth_date: str = ""  # dd/mm/yyyy, yyyy-mm-dd or yyyymmdd; 00/00/yyyy for unknown day and month
    sex: str = ""
    personal_id: str = ""  # CCCD, CMND or passport, untyped as sources send it
    insurance: str = ""  # BHYT card(s) or BHXH number
    phone: str = ""
    address: str = ""
    ward: str = ""
    facility: str = ""
    mrn: str = ""
    event_date: str = ""  # when the source saw the person (dose date): tells a newborn's row apart


class Prepared:
    """Normalised keys of one record. Slots, no methods on the hot path."""

    __slots__ = ("index", "record_id", "name", "year", "month", "day", "dob8", "dob_default", "sex", "phone",
                 "ward", "address", "cccd", "cccd_ok", "cmnd", "passport", "bhxh", "mrn_key", "infant",
                 "birth_row", "flags")

    def __init__(self, *, index: int, record_id: str, name: norm.Name, year: int, month: int, day: int, dob8: str,
                 dob_default: bool, sex: str, phone: str, ward: str, address: str, cccd: str, cccd_ok: bool,
                 cmnd: str, passport: str, bhxh: str, mrn_key: str, infant: bool, birth_row: bool,
                 flags: tuple[str, ...]) -> None:
        # Written out, not a loop over __slots__ with setattr: built for every event and every fetched candidate.
        self.index, self.record_id, self.name, self.year, self.month, self.day = index, record_id, name, year, month, day
        self.dob8, self.dob_default, self.sex, self.phone, self.ward = dob8, dob_default, sex, phone, ward
        self.address, self.cccd, self.cccd_ok, self.cmnd, self.passport = address, cccd, cccd_ok, cmnd, passport
        self.bhxh, self.mrn_key, self.infant, self.birth_row, self.flags = bhxh, mrn_key, infant, birth_row, flags

    def __repr__(self) -> str:  # never the values: they are personal data
        return f"Prepared(record_id={self.record_id!r})"


# Birth and event dates repeat (a century has ~37k days; a batch's events share a few): parsed once each. A bad
# date raises every time (lru_cache keeps no exceptions).
_date = lru_cache(maxsize=1 << 17)(norm.birth_date)


def prepare(rec: SourceRecord, index: int = 0, record_id: str | None = None) -> Prepared:
    """Normalise once. Unreadable birth dates count as unknown and are flagged (``bad_birth_date``).
    ``record_id`` replaces the record's own (the MPI names records by a keyed hash)."""
    flags: list[str] = []
    name = norm.parse_name(rec.name)
    try:
        y, m, d = _date(rec.birth_date)
    except norm.BadDate:
        y, m, d = 0, 0, 0
        flags.append("bad_birth_date")
    sex = norm.sex(rec.sex)
    pid = ids.classify_personal_id(rec.personal_id)
    cccd_ok = False
    if pid.cccd:
        conflicts = ids.cccd_conflicts(pid.cccd, sex, y)
        flags.extend(conflicts)
        cccd_ok = not conflicts
    if name.newborn_alias:
        flags.append("newborn_alias")
    infant = name.newborn_alias
    birth_row = False
    if y and rec.event_date:
        try:
            ey, em, ed = _date(rec.event_date)
            infant = infant or (ey - y) * 12 + (em - (m or em)) <= 12
            # seen on the day of birth (birth dose): the name may well be the mother's
            birth_row = (ey, em) == (y, m) and 0 <= ed - d <= 2
        except norm.BadDate:
            pass
    return Prepared(
        index=index, record_id=rec.record_id if record_id is None else record_id, name=name, year=y, month=m, day=d,
        dob8=sys.intern(f"{y:04d}{m:02d}{d:02d}") if y and m and d else "", dob_default=(m, d) == (1, 1), sex=sex,
        phone=norm.phone(rec.phone), ward=sys.intern(rec.ward.strip()), address=norm.address_key(rec.address),
        cccd=pid.cccd, cccd_ok=cccd_ok, cmnd=pid.cmnd, passport=pid.passport, bhxh=ids.bhxh_number(rec.insurance),
        mrn_key=f"{rec.facility.strip()}|{rec.mrn.strip()}" if rec.mrn.strip() else "", infant=infant,
        birth_row=birth_row,
        flags=tuple(flags) if flags else (),
    )
