"""Strong identifiers as sources write them, classified and checked against the demographics.

``SO_CCCD``-style fields hold a 12-digit CCCD, an old 9-digit CMND, a passport number or junk with no type
marker; insurance fields hold a 15-character BHYT card or the bare 10-digit BHXH number. People are matched
on the BHXH number (the card's last 10 digits), because the card's group letters change over a life.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CLEAN = re.compile(r"[\s.\-]")
_PASSPORT = re.compile(r"^[A-Z]\d{7,8}$")
_BHYT_CARD = re.compile(r"^[A-Z]{2}\d{13}$")


@dataclass(frozen=True, slots=True)
class PersonalIds:
    """What one identity field said, by kind; empty strings where it said nothing of that kind."""

    cccd: str = ""
    cmnd: str = ""
    passport: str = ""


def classify_personal_id(text: str) -> PersonalIds:
    """CCCD (12 digits), CMND (9 digits) or passport (letter + 7-8 digits); anything else is dropped."""
    value = _CLEAN.sub("", text).upper()
    if value.isdigit():
        if len(value) == 12:
            return PersonalIds(cccd=value)
        if len(value) == 9:
            return PersonalIds(cmnd=value)
        return PersonalIds()
    if _PASSPORT.match(value):
        return PersonalIds(passport=value)
    return PersonalIds()


def bhxh_number(text: str) -> str:
    """The lifelong 10-digit BHXH number from a 15-character BHYT card or a bare number; '' otherwise.

    The field may hold several cards joined by ``;``: the first usable one wins.
    """
    for part in text.split(";"):
        value = _CLEAN.sub("", part).upper()
        if _BHYT_CARD.match(value):
            return value[5:]
        if len(value) == 10 and value.isdigit():
            return value
    return ""


def cccd_century_sex(cccd: str) -> tuple[int, str] | None:
    """(century start year, 'M'/'F') from the CCCD's fourth digit; None if the digit is not a valid code."""
    digit = ord(cccd[3]) - 48
    if digit in (0, 1):
        century = 1900
    elif digit in (2, 3):
        century = 2000
    elif digit in (4, 5):
        century = 2100
    elif digit in (8, 9):
        century = 1800
    else:
        return None
    return century, "F" if digit % 2 else "M"


def cccd_conflicts(cccd: str, sex: str, birth_year: int) -> tuple[str, ...]:
    """Which of the record's own demographics the CCCD contradicts: ``cccd_sex``, ``cccd_birth_year``.

    A CCCD that contradicts its own record (a mother's number on her newborn's row, a mistyped digit) is not
    trusted for a deterministic link.
    """
    decoded = cccd_century_sex(cccd)
    if decoded is None:
        return ("cccd_century",)
    century, cccd_sex = decoded
    out: list[str] = []
    if sex and sex != cccd_sex:
        out.append("cccd_sex")
    if birth_year and birth_year != century + int(cccd[4:6]):
        out.append("cccd_birth_year")
    return tuple(out)
