"""Synthetic Vietnamese HL7 test data for tests, benchmarks and demos (never real people).

CCCD numbers follow the real layout (province 079, century+sex digit, birth-year digits, six random
digits), so identity checks that look at those digits see consistent data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô"]
MIDDLE_M = ["Văn", "Hữu", "Đức", "Minh", "Quốc", "Thành"]
MIDDLE_F = ["Thị", "Ngọc", "Thị Bích", "Thu", "Kim", "Mỹ"]
GIVEN_M = ["An", "Bảo", "Cường", "Dũng", "Hùng", "Khánh", "Long", "Phúc", "Quân", "Tuấn"]
GIVEN_F = ["Anh", "Châu", "Hà", "Hương", "Lan", "Linh", "Mai", "Ngọc", "Thảo", "Yến"]
WARDS = ["Phường Bến Thành", "Phường Sài Gòn", "Phường Chợ Lớn", "Phường Tân Định", "Phường Gia Định"]
FACILITIES = ["79048", "79033", "79001", "79015"]


@dataclass(frozen=True)
class Person:
    cccd: str
    family: str
    middle: str
    given: str
    birth_date: str  # YYYYMMDD
    sex: str  # M / F
    mrn: str
    facility: str
    phone: str

    @property
    def full_name(self) -> str:
        return f"{self.family} {self.middle} {self.given}"


def person(rng: random.Random, serial: int | None = None) -> Person:
    sex = rng.choice("MF")
    year = rng.randint(1940, 2020)
    century_digit = (0 if year < 2000 else 2) + (1 if sex == "F" else 0)
    numbered = serial is not None
    serial = rng.randint(0, 999_999) if serial is None else serial
    cccd = f"079{century_digit}{year % 100:02d}{serial:06d}"
    middle = rng.choice(MIDDLE_M if sex == "M" else MIDDLE_F)
    given = rng.choice(GIVEN_M if sex == "M" else GIVEN_F)
    family, birth_date = rng.choice(FAMILY), f"{year}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    drawn = rng.randint(0, 99_999_999)  # drawn either way, so the fields after it stay what a seed gave before
    # People numbered by the caller get an MRN from that number: random ones collided (60,000 people over 4
    # facilities gave ~5 pairs of different patients under one hospital MRN, which the MPI rightly links).
    return Person(
        cccd=cccd, family=family, middle=middle, given=given, birth_date=birth_date, sex=sex,
        mrn=f"BN{serial if numbered else drawn:08d}", facility=rng.choice(FACILITIES),
        phone=f"09{rng.randint(0, 99_999_999):08d}",
    )


def adt(p: Person, trigger: str, control_id: str, *, visit: str = "V1", when: str = "20261122083000",
        discharge: str = "", phone: str | None = None, patient_class: str = "I", version: str = "2.5") -> bytes:
    """One ADT message (CR separators, UTF-8) about person ``p``."""
    segments = [
        f"MSH|^~\\&|HIS|{p.facility}|HSSK|SYT_HCM|{when}||ADT^{trigger}^ADT_A01|{control_id}|P|{version}",
        f"EVN|{trigger}|{when}",
        f"PID|1||{p.mrn}^^^{p.facility}^MR~{p.cccd}^^^BCA^NNVNM||{p.family}^{p.given}^{p.middle}||"
        f"{p.birth_date}|{p.sex}|||12 Lê Lợi^{random.Random(p.cccd).choice(WARDS)}^Hồ Chí Minh^^700000^VN||"
        f"{phone or p.phone}",
        f"PV1|1|{patient_class}|NOI^301^2^{p.facility}||||||||||||||||{visit}|||||||||||||||||||||||||{when}|{discharge}",
    ]
    return ("\r".join(segments) + "\r").encode("utf-8")
