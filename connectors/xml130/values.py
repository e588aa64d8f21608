"""Value rules of the BHYT tables: dates at +07:00 with unknown ``00`` parts, codes, numbers, lists, text.

Date-times are ``yyyyMMddHHmm`` local time (Asia/Ho_Chi_Minh, no daylight saving: ``+07:00``); card validity
dates are ``yyyyMMdd``. An unknown month or day is written ``00`` and becomes a reduced-precision FHIR date
(``1990``, ``1990-05``); in NGAY_SINH an unknown time is ``0000``. Codes stay strings (``01``, ``1.10``).
Parsed dates are cached: one export repeats the same few order and result times hundreds of times.
"""

from __future__ import annotations

import re
import unicodedata
from calendar import monthrange
from functools import lru_cache

from connectors.xml130.errors import MappingError

LOCAL_OFFSET = "+07:00"
_DIGITS = re.compile(r"[0-9]{8}(?:[0-9]{4}(?:[0-9]{2})?)?")
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


@lru_cache(maxsize=4096)
def _date(value: str, field: str) -> tuple[str, bool]:
    """``yyyyMMdd`` -> (FHIR date, whether the day is fully known); ``00`` month/day reduce the precision.

    Cached on its own: a month's export has a few dozen days but tens of thousands of date-times, more than
    ``date_time``'s cache holds."""
    year, month, day = int(value[0:4]), int(value[4:6]), int(value[6:8])
    if year < 1800:
        raise MappingError("date", f"{field}: year out of range")
    if month == 0:
        if day:
            raise MappingError("date", f"{field}: day given without a month")
        return f"{year:04d}", False
    if month > 12:
        raise MappingError("date", f"{field}: month out of range")
    if day == 0:
        return f"{year:04d}-{month:02d}", False
    if day > monthrange(year, month)[1]:
        raise MappingError("date", f"{field}: day out of range for the month")
    return f"{year:04d}-{month:02d}-{day:02d}", True


def _time(value: str, field: str) -> str:
    """The ``HHmm[ss]`` of an all-digit date-time: two-digit strings compare as their numbers do."""
    hour, minute, second = value[8:10], value[10:12], value[12:14] or "00"
    if hour > "23" or minute > "59" or second > "59":
        raise MappingError("date", f"{field}: time out of range")
    return f"T{hour}:{minute}:{second}{LOCAL_OFFSET}"


@lru_cache(maxsize=8192)
def date_time(value: str, field: str) -> str:
    """A date-time field -> FHIR dateTime with +07:00 (date-only or reduced precision when that is all there is).

    Outside NGAY_SINH a time of ``0000`` is read as midnight: admissions and results happen at night.
    """
    if not _DIGITS.fullmatch(value):
        raise MappingError("date", f"{field}: not a yyyyMMddHHmm date-time")
    day, complete = _date(value[:8], field)
    if len(value) == 8 or not complete:
        return day
    return day + _time(value, field)


@lru_cache(maxsize=8192)
def birth(value: str, field: str = "NGAY_SINH") -> tuple[str, str | None]:
    """NGAY_SINH -> (FHIR birthDate, birth time as dateTime or None). ``0000`` time or unknown day: no time."""
    if not _DIGITS.fullmatch(value):
        raise MappingError("date", f"{field}: not a yyyyMMdd[HHmm] date")
    day, complete = _date(value[:8], field)
    if len(value) == 8 or value[8:12] == "0000" or not complete:
        return day, None
    return day, day + _time(value, field)


def instant(when: str | None) -> str | None:
    """FHIR instant needs seconds and an offset: only a full date-time qualifies."""
    return when if when is not None and len(when) > 10 else None


def number(value: str, field: str) -> int | float:
    """A decimal with ``.`` -> int or float; anything else is a MappingError naming the field."""
    if not _NUMBER.fullmatch(value):
        raise MappingError("value", f"{field}: not a number")
    return float(value) if "." in value else int(value)


def maybe_number(value: str) -> int | float | None:
    if _NUMBER.fullmatch(value):
        return float(value) if "." in value else int(value)
    return None


def split(value: str) -> list[str]:
    """A multi-valued field (``;``-separated) -> its non-empty parts, stripped, in order, without repeats."""
    if ";" not in value:
        return [value] if value else []
    seen: dict[str, None] = {}
    for part in value.split(";"):
        if part := part.strip():
            seen[part] = None
    return list(seen)


def text(value: str) -> str:
    """Free text -> NFC (Windows-1258 sources decode to partly decomposed Vietnamese)."""
    return value if unicodedata.is_normalized("NFC", value) else unicodedata.normalize("NFC", value)
