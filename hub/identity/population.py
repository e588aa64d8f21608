"""A synthetic Vietnamese population and its vaccination-registry rows, with the truth kept apart.

People live in households (a couple shares an address and often a phone; children take the father's
surname; a wife keeps her own), some births are twins, infants are first recorded under their mother's
name. Each person gets 1 + Poisson(0.39) rows (the city's 9,148,769 rows for 6,593,186 people is 1.39),
and each row passes through an error model shaped by the registry's known data quality
(``vaccination-registry-export.md``): missing diacritics, upper case, NFD text, typos, a dropped middle
name, regional surname spelling, swapped day/month, unknown or defaulted day and month, missing or old
ID numbers, mistyped or re-issued CCCDs, a relative's CCCD, changed phones, moves.

Seeded and deterministic: the same seed and size give the same file. Never real people.
"""

from __future__ import annotations

import csv
import math
import random
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from hub.identity import names_vi as nv
from hub.identity.normalize import fold

COLUMNS = ("record_id", "ho_ten", "ngay_sinh", "gioi_tinh", "so_cccd", "so_bhyt", "so_dien_thoai", "dia_chi",
           "ma_xa", "ma_vaccine", "ten_vaccine", "so_lo", "mui_thu", "ngay_tiem", "ma_co_so")
EXTRA_ROWS_PER_PERSON = 0.365  # plus a second row for every newborn: 1.39 rows per person overall


@dataclass(frozen=True)
class ErrorModel:
    """Per-row probabilities of each kind of error (and of each way of writing a value)."""

    no_diacritics: float = 0.15
    upper_case: float = 0.10
    nfd: float = 0.05
    name_typo: float = 0.03
    drop_middle: float = 0.02
    surname_variant: float = 0.03
    dob_swap: float = 0.02
    dob_unknown_day_month: float = 0.02
    dob_default_0101: float = 0.01
    dob_typo: float = 0.012
    sex_missing: float = 0.01
    sex_wrong: float = 0.002
    cccd_missing: float = 0.20
    cmnd_instead: float = 0.05  # of people who had one
    cccd_typo: float = 0.01
    relative_cccd: float = 0.003
    bhyt_missing: float = 0.45
    phone_missing: float = 0.15
    phone_changed: float = 0.12  # a later row with a new phone
    address_missing: float = 0.05
    moved: float = 0.03
    ward_missing: float = 0.01
    reissued_cccd_people: float = 0.005
    newborn_under_mother: float = 0.6
    newborn_mother_cccd: float = 0.2
    twins: float = 0.015


@dataclass
class Person:
    person_id: str
    family: str
    middle: str
    given: str
    sex: str  # M / F
    year: int
    month: int
    day: int
    cccd: str
    cmnd: str
    bhxh: str
    phone: str
    ward: str
    ward_name: str
    street: str
    house: str
    household: list["Person"] = field(default_factory=list, repr=False)
    mother: "Person | None" = field(default=None, repr=False)
    reissued_cccd: str = ""

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.family, self.middle, self.given) if p)


def _weighted(table: tuple[tuple[str, float], ...]) -> tuple[list[str], list[float]]:
    values = [v for v, _ in table]
    total = 0.0
    cum = []
    for _, w in table:
        total += w
        cum.append(total)
    return values, cum


class PopulationGenerator:
    """Makes households and people, then rows. ``rows(n)`` yields about n rows with their person ids."""

    def __init__(self, seed: int = 0, errors: ErrorModel | None = None, wards: int = 300) -> None:
        self.rng = random.Random(seed)
        self.err = errors or ErrorModel()
        self._family = _weighted(nv.FAMILY)
        self._mid = {k: _weighted(t) for k, t in (("M0", nv.MIDDLE_M_OLD), ("F0", nv.MIDDLE_F_OLD),
                                                  ("M1", nv.MIDDLE_M_NEW), ("F1", nv.MIDDLE_F_NEW))}
        self._given = {"M": _weighted(tuple((g, 1 / (i + 3) ** 0.9) for i, g in enumerate(nv.GIVEN_M))),
                       "F": _weighted(tuple((g, 1 / (i + 3) ** 0.9) for i, g in enumerate(nv.GIVEN_F)))}
        self._province = _weighted(tuple((p, float(w)) for p, w in nv.PROVINCES))
        rng = self.rng
        self.wards = [(f"{26700 + i * 3:05d}", nv.WARD_NAMES[i % len(nv.WARD_NAMES)]
                       + (f" {i // len(nv.WARD_NAMES) + 1}" if i >= len(nv.WARD_NAMES) else ""))
                      for i in range(wards)]
        self._ids: set[str] = set()
        self._serial = 0
        self._row = 0
        self._rng_state = rng

    # -- people ---------------------------------------------------------------------------------------

    def _pick(self, table: tuple[list[str], list[float]]) -> str:
        values, cum = table
        x = self.rng.random() * cum[-1]
        lo, hi = 0, len(cum) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if cum[mid] < x:
                lo = mid + 1
            else:
                hi = mid
        return values[lo]

    def _unique(self, make) -> str:
        while True:
            value = make()
            if value not in self._ids:
                self._ids.add(value)
                return value

    def _cccd(self, sex: str, year: int) -> str:
        century = (year // 100 - 19) * 2 + (1 if sex == "F" else 0)
        province = self._pick(self._province)
        return self._unique(lambda: f"{province}{century}{year % 100:02d}{self.rng.randint(0, 999_999):06d}")

    def _phone(self) -> str:
        prefix = self.rng.choice(("090", "091", "093", "094", "096", "097", "098", "032", "033", "035", "038",
                                  "070", "077", "079", "081", "083", "085", "056", "058"))
        return self._unique(lambda: f"{prefix}{self.rng.randint(0, 9_999_999):07d}")

    def _person(self, family: str, sex: str, year: int, home: tuple[str, str, str, str], phone: str,
                middle: str | None = None, given: str | None = None, dob: tuple[int, int] | None = None) -> Person:
        rng = self.rng
        self._serial += 1
        era = "1" if year >= 1995 else "0"
        if middle is None:
            middle = self._pick(self._mid[sex + era])
        if given is None:
            given = self._pick(self._given[sex])
            while given in middle.split():
                given = self._pick(self._given[sex])
        month, day = dob or (rng.randint(1, 12), rng.randint(1, 28))
        cccd = self._cccd(sex, year)
        cmnd = self._unique(lambda: f"02{rng.randint(0, 9_999_999):07d}") if year <= 2006 and rng.random() < 0.5 else ""
        bhxh = self._unique(lambda: f"79{rng.randint(0, 99_999_999):08d}")
        p = Person(f"P{self._serial:08d}", family, middle, given, sex, year, month, day, cccd, cmnd, bhxh, phone,
                   *home)
        if rng.random() < self.err.reissued_cccd_people:
            p.reissued_cccd = self._cccd(sex, year)
        return p

    def household(self) -> list[Person]:
        """One household: a single adult, or a couple with children (twins sometimes) and maybe a grandparent."""
        rng = self.rng
        ward, ward_name = rng.choice(self.wards)
        home = (ward, ward_name, rng.choice(nv.STREETS), f"{rng.randint(1, 499)}"
                + (f"/{rng.randint(1, 60)}" if rng.random() < 0.4 else ""))
        shared_phone = self._phone()
        if rng.random() < 0.22:
            sex = rng.choice("MF")
            members = [self._person(self._pick(self._family), sex, rng.randint(1935, 2007), home, shared_phone)]
        else:
            fam = self._pick(self._family)
            father_year = rng.randint(1940, 2003)
            mother_year = min(2006, father_year + rng.randint(-1, 6))
            father = self._person(fam, "M", father_year, home, shared_phone)
            mother = self._person(self._pick(self._family), "F", mother_year, home,
                                  self._phone() if rng.random() < 0.7 else shared_phone)
            members = [father, mother]
            if rng.random() < 0.15:
                members.append(self._person(fam, rng.choice("MF"), max(1925, father_year - rng.randint(22, 32)),
                                            home, shared_phone))
            first, last = mother_year + 19, min(2026, mother_year + 42)
            kids = rng.choice((0, 1, 1, 2, 2, 2, 3)) if first <= last else 0
            for year in sorted(rng.sample(range(first, last + 1), min(kids, last - first + 1))):
                sex = rng.choice("MF")
                kid_phone = shared_phone if year > 2008 or rng.random() < 0.3 else self._phone()
                kid = self._person(fam, sex, year, home, kid_phone)
                kid.mother = mother
                members.append(kid)
                if rng.random() < self.err.twins:
                    twin_sex = rng.choice("MF")
                    twin = self._person(fam, twin_sex, year, home, kid_phone,
                                        middle=kid.middle if twin_sex == sex else None, dob=(kid.month, kid.day))
                    while twin.given == kid.given:
                        twin.given = self._pick(self._given[twin_sex])
                    twin.mother = mother
                    members.append(twin)
        for p in members:
            p.household = members
        return members

    # -- rows -----------------------------------------------------------------------------------------

    def _name_text(self, p: Person, r: random.Random) -> str:
        e = self.err
        family, middle, given = p.family, p.middle, p.given
        if r.random() < e.surname_variant:
            family = {"Hoàng": "Huỳnh", "Huỳnh": "Hoàng", "Vũ": "Võ", "Võ": "Vũ"}.get(family, family)
        if middle and r.random() < e.drop_middle:
            words = middle.split()
            middle = " ".join(words[1:]) if len(words) > 1 else ""
        if r.random() < e.name_typo:
            if r.random() < 0.7:
                given = _typo(given, r)
            elif middle:
                middle = _typo(middle, r)
        text = " ".join(x for x in (family, middle, given) if x)
        if r.random() < e.no_diacritics:
            text = " ".join(w.capitalize() for w in fold(text).split())
        if r.random() < e.upper_case:
            text = text.upper()
        if r.random() < e.nfd:
            text = unicodedata.normalize("NFD", text)
        return text

    def _dob_text(self, y: int, m: int, d: int, r: random.Random) -> str:
        e = self.err
        x = r.random()
        if x < e.dob_swap and d <= 12 and d != m:
            m, d = d, m
        elif x < e.dob_swap + e.dob_unknown_day_month:
            m, d = 0, 0
        elif x < e.dob_swap + e.dob_unknown_day_month + e.dob_default_0101:
            m, d = 1, 1
        elif x < e.dob_swap + e.dob_unknown_day_month + e.dob_default_0101 + e.dob_typo:
            which = r.randrange(3)
            if which == 0:
                d = d - d % 10 + r.choice([k for k in range(10) if k != d % 10 and 1 <= d - d % 10 + k <= 28])
            elif which == 1:
                y = y - y % 10 + r.choice([k for k in range(10) if k != y % 10])
            else:
                m = m - m % 10 + r.choice([k for k in range(1, 10) if k != m % 10 and m - m % 10 + k <= 12] or [m % 10])
        if r.random() < 0.8:
            return f"{d:02d}/{m:02d}/{y:04d}"
        return f"{y:04d}-{m:02d}-{d:02d}" if m else f"00/00/{y:04d}"

    def _phone_text(self, phone: str, r: random.Random) -> str:
        x = r.random()
        if x < 0.6:
            return phone
        if x < 0.75:
            return "+84" + phone[1:]
        if x < 0.85:
            return f"84 {phone[1:4]} {phone[4:7]} {phone[7:]}"
        return f"{phone[:4]}.{phone[4:7]}.{phone[7:]}"

    def _address_text(self, p: Person, r: random.Random) -> str:
        street = p.street
        if street.startswith("Nguyễn ") and r.random() < 0.3:
            street = "Ng. " + street[7:]
        ward = ("P. " if r.random() < 0.5 else "Phường ") + p.ward_name
        city = r.choice(("TP. Hồ Chí Minh", "TP.HCM", "Thành phố Hồ Chí Minh", "Hồ Chí Minh"))
        return f"{p.house} {street}, {ward}, {city}"

    def person_rows(self, p: Person, count: int) -> list[dict[str, str]]:
        """``count`` registry rows about one person, each through the error model."""
        r, e = self.rng, self.err
        rows: list[dict[str, str]] = []
        phone = p.phone
        ward, ward_name, street, house = p.ward, p.ward_name, p.street, p.house
        infant = p.year >= 2025
        covid = p.year <= 2016
        for k in range(count):
            if k and r.random() < e.phone_changed:
                phone = self._phone()
            if k and r.random() < e.moved:
                ward, ward_name = r.choice(self.wards)
                street, house = r.choice(nv.STREETS), str(r.randint(1, 499))
            view = Person(p.person_id, p.family, p.middle, p.given, p.sex, p.year, p.month, p.day, p.cccd, p.cmnd,
                          p.bhxh, phone, ward, ward_name, street, house)
            under_mother = infant and k == 0 and p.mother is not None and r.random() < e.newborn_under_mother
            if under_mother:
                assert p.mother is not None
                name = self._name_text(p.mother, r)
                if r.random() < 0.3:
                    name = r.choice(("Con của ", "Con bà ", "CB ")) + name
                personal = p.mother.cccd if r.random() < e.newborn_mother_cccd else ""
                bhyt = ""
                phone_out = p.mother.phone
            else:
                name = self._name_text(p, r)
                personal = self._personal_id(p, k, count, r)
                bhyt = self._bhyt(p, r)
                phone_out = "" if r.random() < e.phone_missing else phone
            sex = "" if r.random() < e.sex_missing else (("F" if p.sex == "M" else "M") if r.random() < e.sex_wrong
                                                           else p.sex)
            sex_text = {"M": ("Nam", "1"), "F": ("Nữ", "2"), "": ("", "")}[sex][0 if r.random() < 0.7 else 1]
            if covid:
                code, vname = r.choice(nv.COVID_VACCINES)
                given = f"{r.randint(1, 28):02d}/{r.randint(1, 12):02d}/{r.choice((2021, 2022))}"
            elif infant:
                code, vname = nv.NEWBORN_VACCINES[0] if k == 0 else r.choice(nv.NEWBORN_VACCINES + nv.CHILD_VACCINES[:3])
                given = f"{p.day:02d}/{p.month:02d}/{p.year}" if k == 0 else \
                    f"{min(28, p.day):02d}/{(p.month % 12) + 1:02d}/{p.year + (p.month == 12)}"
            else:
                code, vname = r.choice(nv.CHILD_VACCINES)
                given = f"{r.randint(1, 28):02d}/{r.randint(1, 12):02d}/{min(2026, p.year + r.randint(1, 6))}"
            self._row += 1
            rows.append({
                "record_id": "", "ho_ten": name, "ngay_sinh": self._dob_text(p.year, p.month, p.day, r),
                "gioi_tinh": sex_text, "so_cccd": personal, "so_bhyt": bhyt,
                "so_dien_thoai": self._phone_text(phone_out, r) if phone_out else "",
                "dia_chi": "" if r.random() < e.address_missing else self._address_text(view, r),
                "ma_xa": "" if r.random() < e.ward_missing else ward, "ma_vaccine": code, "ten_vaccine": vname,
                "so_lo": f"{code}{r.randint(1000, 9999)}", "mui_thu": str(k + 1), "ngay_tiem": given,
                "ma_co_so": r.choice(nv.FACILITIES),
            })
        return rows

    def _personal_id(self, p: Person, k: int, count: int, r: random.Random) -> str:
        e = self.err
        x = r.random()
        if x < e.cccd_missing:
            return ""
        if x < e.cccd_missing + e.cmnd_instead and p.cmnd:
            return p.cmnd
        if r.random() < e.relative_cccd and len(p.household) > 1:
            return r.choice([m for m in p.household if m is not p]).cccd
        cccd = p.reissued_cccd if p.reissued_cccd and k >= max(1, count // 2) else p.cccd
        if r.random() < e.cccd_typo:
            i = r.randrange(6, 12)
            cccd = cccd[:i] + str((int(cccd[i]) + r.randint(1, 9)) % 10) + cccd[i + 1:]
        return cccd

    def _bhyt(self, p: Person, r: random.Random) -> str:
        if r.random() < self.err.bhyt_missing:
            return ""
        if r.random() < 0.6:
            return f"{r.choice(nv.BHYT_GROUPS)}{r.randint(1, 5)}{p.bhxh[:2]}{p.bhxh}"
        return p.bhxh

    def rows(self, n: int, shuffle_window: int = 200_000) -> Iterator[tuple[dict[str, str], str]]:
        """About ``n`` rows as (row, person_id), shuffled within a window so a person's rows are apart.

        Record ids are assigned in output order. The last household may overshoot n by a few rows; the
        output stops at exactly n.
        """
        buffer: list[tuple[dict[str, str], str]] = []
        emitted = 0
        r = self.rng
        while emitted < n:
            for p in self.household():
                count = 1 + _poisson(r, EXTRA_ROWS_PER_PERSON)
                if p.year >= 2025 and p.mother is not None:
                    count = max(count, 2)  # a newborn gets the birth dose and at least one more
                for row in self.person_rows(p, count):
                    buffer.append((row, p.person_id))
            if len(buffer) >= shuffle_window or emitted + len(buffer) >= n:
                r.shuffle(buffer)
                for row, pid in buffer:
                    if emitted >= n:
                        break
                    emitted += 1
                    row["record_id"] = f"VR{emitted:09d}"
                    yield row, pid
                buffer = []


def _poisson(r: random.Random, lam: float) -> int:
    threshold, k, prod = math.exp(-lam), 0, r.random()
    while prod > threshold:
        k += 1
        prod *= r.random()
    return k


_LETTERS = "abcdefghiklmnopqrstuvxy"


def _typo(word: str, r: random.Random) -> str:
    """One keyboard-style slip: a letter substituted, dropped or two swapped."""
    if len(word) < 3:
        return word
    i = r.randrange(1, len(word) - 1)
    kind = r.randrange(3)
    if kind == 0:
        return word[:i] + r.choice(_LETTERS) + word[i + 1:]
    if kind == 1:
        return word[:i] + word[i + 1:]
    return word[:i - 1] + word[i] + word[i - 1] + word[i + 1:]


def write(n: int, out: TextIO, truth: TextIO, seed: int = 0, errors: ErrorModel | None = None) -> int:
    """Write n registry rows (CSV with header) and the hidden truth (record_id,person_id). Returns n."""
    w = csv.writer(out, lineterminator="\r\n")
    t = csv.writer(truth, lineterminator="\n")
    w.writerow(COLUMNS)
    t.writerow(("record_id", "person_id"))
    count = 0
    for row, pid in PopulationGenerator(seed, errors).rows(n):
        w.writerow([row[c] for c in COLUMNS])
        t.writerow((row["record_id"], pid))
        count += 1
    return count


def write_files(n: int, out_path: Path, truth_path: Path, seed: int = 0) -> int:
    with open(out_path, "w", encoding="utf-8", newline="") as out, \
            open(truth_path, "w", encoding="utf-8", newline="") as truth:
        return write(n, out, truth, seed)
