"""Normalising the demographics sources send, once per record, so comparisons are cheap string equality.

Vietnamese names arrive NFC, NFD (Windows-1258 decodes to partly decomposed text), upper case, without
diacritics, with old or new tone placement ("hòa"/"hoà"), and with regional spellings of one surname
(Hoàng/Huỳnh, Vũ/Võ). Each name part is kept three ways: NFC with tone placement unified (``exact``),
folded to ASCII with đ→d (``ascii``), and for the family name a regional ``variant`` key.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

_TONES = "\u0300\u0301\u0303\u0309\u0323"  # grave, acute, tilde, hook above, dot below
# Old style puts the tone on the first vowel of an open oa/oe/uy syllable ("hòa"), new style on the second
# ("hoà"). Only open syllables differ; closed ones ("hoàng") are written the same both ways.
_OLD_TONE = re.compile(rf"(?:([oO])([{_TONES}])([aAeE])|([uU])([{_TONES}])([yY]))(?![^\W\d_])")
_SPACES = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[^\w\s]")

# Regional spellings of one surname, by ASCII form -> one key (north/south: Hoàng/Huỳnh, Vũ/Võ).
SURNAME_VARIANTS: dict[str, str] = {"huynh": "hoang", "hoang": "hoang", "vo": "vu", "vu": "vu"}

# Prefixes a facility puts before the mother's name when a newborn has no card of its own.
NEWBORN_PREFIXES: tuple[tuple[str, ...], ...] = (
    ("con", "cua"), ("con", "ba"), ("con", "me"), ("so", "sinh"), ("cb",), ("ss",), ("con",),
)


def _move_tone(m: re.Match[str]) -> str:
    return m[1] + m[3] + m[2] if m[1] else m[4] + m[6] + m[5]


@lru_cache(maxsize=65536)
def nfc(text: str) -> str:
    """NFC, single spaces, tone placement unified to the new style, lower case (names compare case-free)."""
    if text.isascii():  # no diacritics to place: the common case for registry exports is cheap
        return " ".join(text.lower().split())
    decomposed = unicodedata.normalize("NFD", " ".join(text.split()))
    decomposed = _OLD_TONE.sub(_move_tone, decomposed)
    return unicodedata.normalize("NFC", decomposed).lower()


def _fold_table() -> dict[int, str | None]:
    """Every precomposed Latin letter to its base letter, combining marks to nothing, đ to d: built once,
    so folding is one ``str.translate`` (C) instead of NFD plus a Python loop per character."""
    table: dict[int, str | None] = {0x0110: "D", 0x0111: "d"}
    for cp in range(0x00C0, 0x2000):
        ch = chr(cp)
        if unicodedata.combining(ch):
            table[cp] = None
            continue
        base = "".join(c for c in unicodedata.normalize("NFD", ch) if not unicodedata.combining(c))
        if base != ch and base.isascii():
            table[cp] = base
    return table


_FOLD = _fold_table()


@lru_cache(maxsize=65536)
def fold(text: str) -> str:
    """ASCII fold: diacritics dropped (precomposed or combining), đ→d, lower case, single spaces."""
    return " ".join(text.translate(_FOLD).lower().split())


@dataclass(frozen=True, slots=True)
class Name:
    """A full name split as Vietnamese orders it: family, middle (zero or more words), given."""

    family: str
    middle: str
    given: str
    family_ascii: str
    middle_ascii: str
    given_ascii: str
    family_variant: str
    newborn_alias: bool  # written as "Con của <mother>" or similar: the record is a newborn's
    # family variant, middle and given name in ASCII: computed once (three blocking keys of every event use it)
    full_ascii: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "full_ascii",
                           " ".join([p for p in (self.family_variant, self.middle_ascii, self.given_ascii) if p]))


EMPTY_NAME = Name("", "", "", "", "", "", "", False)


@lru_cache(maxsize=262144)
def parse_name(text: str) -> Name:
    """Split and normalise a full name (family name first). Cached: names repeat a lot across records."""
    words = _NOT_WORD.sub(" ", nfc(text)).split()
    if not words:
        return EMPTY_NAME
    words = [sys.intern(w) for w in words]  # name parts repeat across millions of rows: one copy each
    folded = [sys.intern(fold(w)) for w in words]
    alias = False
    for prefix in NEWBORN_PREFIXES:
        if len(words) > len(prefix) + 1 and tuple(folded[: len(prefix)]) == prefix:
            words, folded, alias = words[len(prefix):], folded[len(prefix):], True
            break
    if len(words) == 1:
        return Name("", "", words[0], "", "", folded[0], "", alias)
    family, given, middle = words[0], words[-1], sys.intern(" ".join(words[1:-1]))
    fam_a = folded[0]
    return Name(family, middle, given, fam_a, sys.intern(" ".join(folded[1:-1])), folded[-1],
                SURNAME_VARIANTS.get(fam_a, fam_a), alias)


# Mobile numbers moved from 11 to 10 digits in 2018: old prefix -> new prefix.
_OLD_MOBILE = {
    "0162": "032", "0163": "033", "0164": "034", "0165": "035", "0166": "036", "0167": "037", "0168": "038",
    "0169": "039", "0120": "070", "0121": "079", "0122": "077", "0126": "076", "0128": "078", "0123": "083",
    "0124": "084", "0125": "085", "0127": "081", "0129": "082", "0186": "056", "0188": "058", "0199": "059",
}
_DIGITS = re.compile(r"\D")


def phone(text: str) -> str:
    """A phone as 10 national digits (0xxxxxxxxx): +84/0084/84 prefixes and old 11-digit mobiles mapped."""
    digits = _DIGITS.sub("", text)
    if digits.startswith("0084"):
        digits = "0" + digits[4:]
    elif digits.startswith("84") and len(digits) in (11, 12):
        digits = "0" + digits[2:]
    elif len(digits) in (9, 10) and not digits.startswith("0"):
        digits = "0" + digits
    if len(digits) == 11 and digits[:4] in _OLD_MOBILE:
        digits = _OLD_MOBILE[digits[:4]] + digits[4:]
    return digits if len(digits) == 10 and digits.startswith("0") else ""


_ADDRESS_ABBREV = {
    "p": "phuong", "q": "quan", "tp": "thanh pho", "tx": "thi xa", "x": "xa", "h": "huyen", "kp": "khu pho",
    "ng": "nguyen", "d": "duong", "dg": "duong", "tt": "thi tran", "ap": "ap", "to": "to", "hcm": "ho chi minh",
}


_CITY = re.compile(r"[\s,]*(?:(?:thanh pho|tp)[\s.]*)?(?:ho chi minh|hcm)\s*$")


@lru_cache(maxsize=65536)
def address_tokens(text: str) -> frozenset[str]:
    """Address words, ASCII-folded with abbreviations expanded (``P.`` → phuong, ``Ng.`` → nguyen).

    The city at the end is dropped: every address in the hub's city has it, in four spellings.
    """
    folded = fold(text)
    if folded.endswith(("minh", "hcm")):  # the regex only can match there; most addresses skip its scan
        folded = _CITY.sub("", folded)
    words = _NOT_WORD.sub(" ", folded).split()
    out: list[str] = []
    for w in words:
        out.extend(_ADDRESS_ABBREV.get(w, w).split())
    return frozenset(out)


def address_key(text: str) -> str:
    """The address words as one sorted, space-joined string: a tenth of a frozenset's memory per record."""
    return sys.intern(" ".join(sorted(address_tokens(text)))) if text else ""


_SEX = {"nam": "M", "1": "M", "m": "M", "male": "M", "nu": "F", "2": "F", "f": "F", "female": "F"}


def sex(text: str) -> str:
    """M, F, or '' (unknown, other or undetermined: nothing to compare)."""
    return _SEX.get(fold(text), "")


_DMY = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})$")
_YMD = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")


class BadDate(ValueError):
    """A birth date that is not one of the accepted layouts, or impossible (31/02)."""


def birth_date(text: str) -> tuple[int, int, int]:
    """(year, month, day); 0 for unknown parts (``00/00/yyyy``); (0, 0, 0) when empty. Raises BadDate."""
    text = text.strip().split(" ")[0]
    if not text:
        return (0, 0, 0)
    if len(text) == 10 and text[2] == "/" and text[5] == "/" and text[:2].isdigit() and text[3:5].isdigit() \
            and text[6:].isdigit():  # dd/mm/yyyy, the registry's own layout: no regex
        d, mo, y = int(text[:2]), int(text[3:5]), int(text[6:])
    elif m := _DMY.match(text):
        d, mo, y = int(m[1]), int(m[2]), int(m[3])
    elif m := _YMD.match(text) or _COMPACT.match(text):
        y, mo, d = int(m[1]), int(m[2]), int(m[3])
    elif text.isdigit() and len(text) == 4:
        y, mo, d = int(text), 0, 0
    else:
        raise BadDate("birth date layout not recognised")
    if not 1850 <= y <= 2100 or not 0 <= mo <= 12 or not 0 <= d <= 31 or (mo == 0 and d != 0):
        raise BadDate("impossible birth date")
    if d and mo and d > _days_in(y, mo):
        raise BadDate("impossible birth date")
    return (y, mo, d)


def _days_in(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31
