"""Helpers per HL7 v2 data type (TS/DTM, CX, XPN, XAD, XTN, PL): one repetition's ER7 text in, plain values
or FHIR-shaped dicts out.

Each helper gets the raw (still escaped) text of one field repetition and the message's separators, splits
components and subcomponents itself and unescapes last, so an escaped ``\\T\\`` never splits a value. The HL7
null ``""`` reads as empty. Values come back NFC (``decode`` normalises the message; unescaped ``\\X..\\``
bytes are normalised here).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from datetime import date
from typing import Any, NamedTuple, TypeVar
from urllib.parse import quote

import orjson

from connectors.hl7v2.maps import MAPS
from connectors.hl7v2.parse import Segment, Separators, unescape
from hub.envelope import VN_FHIR_BASE
from hub.errors import TranslateError

HL7_NULL = '""'
LOCAL_OFFSET = "+07:00"  # Asia/Ho_Chi_Minh has no daylight saving time (ARCHITECTURE invariant 7)

_TS = re.compile(
    r"([0-9]{4})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:\.([0-9]{1,4}))?)?)?)?)?)?"
    r"(?:([+-])([0-9]{2})([0-9]{2}))?"
)
_TS_FORMAT = "YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]"
MEMO_SIZE = 20_000  # entries per memoised helper (~12 MB at most for OBX parts); cleared when full

F = TypeVar("F", bound=Callable[..., Any])


def memo(fn: F) -> F:
    """Memoise a pure helper of ER7 strings (and interned Separators). A nested dict or list result is kept as
    JSON bytes and decoded afresh for every caller (orjson: twice as fast as copying it in Python), a flat
    dict is copied, so callers may change what they get. The hot path meets the same codes, units, ranges
    and clinicians message after message; the cost is that a code-map miss is counted once per distinct
    value, not per occurrence."""
    cache: dict[tuple[Any, ...], Any] = {}

    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        try:
            hit = cache[args]
        except KeyError:
            if len(cache) >= MEMO_SIZE:
                cache.clear()
            value = fn(*args)
            if isinstance(value, dict) and not any(isinstance(v, (dict, list)) for v in value.values()):
                hit = _Flat(value)  # a flat dict: dict.copy is cheaper than decoding
            elif isinstance(value, (dict, list)):
                hit = _Json(orjson.dumps(value))
            else:
                hit = value
            cache[args] = hit
        kind = type(hit)
        if kind is _Json:
            return orjson.loads(hit.data)
        return hit.data.copy() if kind is _Flat else hit

    return wrapper  # type: ignore[return-value]


class _Json:
    """A memoised dict/list, serialised (distinguishes it from a memoised plain value)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class _Flat:
    """A memoised dict of plain values, copied out with dict.copy."""

    __slots__ = ("data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data


def part(components: list[str], n: int, seps: Separators) -> str:
    """Component ``n`` (1-based) of a split repetition: its first subcomponent, unescaped and stripped."""
    if n > len(components):
        return ""
    value = components[n - 1]
    if not value:
        return value
    if seps.subcomponent in value:
        value = value.split(seps.subcomponent, 1)[0]
    if value == HL7_NULL:
        return ""
    if seps.escape in value:
        value = unicodedata.normalize("NFC", unescape(value, seps))
    return value.strip()


def simple(seg: Segment, n: int) -> str:
    """Field ``n`` read as a simple value (ID, SI, ST): its first component, unescaped. The common case, a
    plain value without separators or escapes, costs a few comparisons."""
    value = seg[n]
    if not value:
        return value
    seps = seg.seps
    if seps.component in value or seps.repetition in value or seps.escape in value or \
            seps.subcomponent in value or value == HL7_NULL:
        return part(first_repetition(seg, n), 1, seps)
    return value.strip()


def first_repetition(seg: Segment, n: int) -> list[str]:
    """Components of the first repetition of field ``n`` (still escaped); [] when the field is empty."""
    value = seg[n]
    if not value:
        return []
    return value.split(seg.seps.repetition, 1)[0].split(seg.seps.component)


# --- TS / DTM -------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=MEMO_SIZE)
def _iso(value: str) -> str:
    """The conversion behind ``to_iso``; ValueError says what is wrong."""
    m = _TS.fullmatch(value)
    if m is None:
        raise ValueError(f"expected {_TS_FORMAT}")
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = m.groups()
    if year == "0000":
        raise ValueError("year 0000")
    if month is None:
        return year
    if not "01" <= month <= "12":
        raise ValueError(f"month {month}")
    if day is None:
        return f"{year}-{month}"
    try:
        date(int(year), int(month), int(day))
    except ValueError:
        raise ValueError(f"day {day} is not in {year}-{month}") from None
    if hour is None:
        return f"{year}-{month}-{day}"
    if hour > "23" or (minute or "00") > "59" or (second or "00") > "59":
        raise ValueError("time out of range")
    if sign is None:
        offset = LOCAL_OFFSET
    elif off_m > "59" or off_h > "14" or (off_h == "14" and off_m != "00"):
        raise ValueError(f"offset {sign}{off_h}{off_m}")
    else:
        offset = f"{sign}{off_h}:{off_m}"
    frac = f".{fraction}" if fraction else ""
    return f"{year}-{month}-{day}T{hour}:{minute or '00'}:{second or '00'}{frac}{offset}"


def _invalid(field: str, value: str, exc: ValueError) -> TranslateError:
    return TranslateError(f"{field}: {value!r} is not a valid HL7 timestamp ({exc})")


def to_iso(value: str, field: str) -> str | None:
    """An HL7 TS/DTM value as ISO 8601 at the precision sent; None when empty.

    Date-only values stay dates (``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD``; an offset on a date is dropped).
    A value with a time always gets an offset, ``+07:00`` when the sender gave none, and a missing minute or
    second becomes ``00`` (FHIR dateTime needs both). ``field`` (e.g. ``"PID-7"``) names the field in errors.
    """
    if not value or value == HL7_NULL:
        return None
    try:
        return _iso(value)
    except ValueError as exc:
        raise _invalid(field, value, exc) from None


def ts_field(seg: Segment, n: int) -> str | None:
    """Field ``n`` of ``seg`` (TS: time^precision, or DTM) as ISO 8601; errors name e.g. ``PV1-44``."""
    components = first_repetition(seg, n)
    return to_iso(part(components, 1, seg.seps), f"{seg.name}-{n}") if components else None


def birth_date(value: str, field: str) -> str | None:
    """A birth date (FHIR date): the date part of a TS, without converting its offset.

    Vietnamese systems write an unknown day or month as ``00`` (``19900000``, ``19900500``, see
    reference/vietnam-health-data.md); those are read as the reduced precision ``1990`` / ``1990-05``.
    """
    if not value or value == HL7_NULL:
        return None
    reduced = value
    if len(value) >= 8 and value[:8].isdigit():
        if value[4:8] == "0000":
            reduced = value[:4]
        elif value[6:8] == "00":
            reduced = value[:6]
    try:
        return _iso(reduced)[:10]
    except ValueError as exc:
        raise _invalid(field, value, exc) from None


# --- CX: extended composite identifier --------------------------------------------------------------------

class CX(NamedTuple):
    value: str  # CX.1
    assigner: str  # CX.4 (HD namespace id)
    type_code: str  # CX.5


def cx(rep: str, seps: Separators) -> CX:
    c = rep.split(seps.component)
    return CX(part(c, 1, seps), part(c, 4, seps), part(c, 5, seps))


# --- XPN: person name -> FHIR HumanName --------------------------------------------------------------------

def xpn(rep: str, seps: Separators) -> dict[str, Any] | None:
    """XPN to HumanName. Vietnamese order: ``Nguyễn^An^Văn`` (family^given^middle) is "Nguyễn Văn An",
    given ``["Văn", "An"]`` (middle first, as the name is said). Components are kept as sent, not split on
    spaces. None when the name has no family, given or middle part.
    """
    c = rep.split(seps.component)
    family, given, middle = part(c, 1, seps), part(c, 2, seps), part(c, 3, seps)
    if not (family or given or middle):
        return None
    name: dict[str, Any] = {
        "use": MAPS.name_use(part(c, 7, seps)),
        "text": " ".join(p for p in (family, middle, given) if p),
    }
    if family:
        name["family"] = family
    givens = [p for p in (middle, given) if p]
    if givens:
        name["given"] = givens
    if prefix := part(c, 5, seps):
        name["prefix"] = [prefix]
    if suffix := part(c, 4, seps):
        name["suffix"] = [suffix]
    return name


# --- XAD: address -> FHIR Address -----------------------------------------------------------------------

def _street(component: str, seps: Separators) -> str:
    """XAD.1 (SAD): the street address, or "dwelling street name" when only those subcomponents are sent."""
    subs = component.split(seps.subcomponent)
    street = part(subs, 1, seps)
    if street:
        return street
    return " ".join(p for p in (part(subs, 3, seps), part(subs, 2, seps)) if p)


def xad(rep: str, seps: Separators) -> dict[str, Any] | None:
    """XAD to Address. Vietnamese senders fill street^ward^city^province^postal code^country^type; the
    district (before 07/2025) goes in XAD.9 (county/parish). ``line`` is [street, ward]; ``text`` joins
    line, district, city and province. None when nothing is filled.
    """
    c = rep.split(seps.component)
    line = [p for p in (_street(c[0], seps), part(c, 2, seps)) if p]
    district, city, state = part(c, 9, seps), part(c, 3, seps), part(c, 4, seps)
    postal, country = part(c, 5, seps), part(c, 6, seps)
    if not (line or district or city or state or postal or country):
        return None
    address: dict[str, Any] = {}
    if use := MAPS.address_use(part(c, 7, seps)):
        address["use"] = use
    text_parts: list[str] = []
    for p in (*line, district, city, state):
        if p and (not text_parts or text_parts[-1] != p):  # HCMC is city and province: say it once
            text_parts.append(p)
    if text_parts:
        address["text"] = ", ".join(text_parts)
    if line:
        address["line"] = line
    for key, value in (("city", city), ("district", district), ("state", state), ("postalCode", postal),
                       ("country", country)):
        if value:
            address[key] = value
    return address


# --- XTN: telecom -> FHIR ContactPoint --------------------------------------------------------------------

def xtn(rep: str, seps: Separators, default_use: str | None = None) -> dict[str, Any] | None:
    """XTN to ContactPoint: phone numbers kept as sent (XTN.1, else XTN.12, else +country area local, with
    XTN.8 as " ext. n"); e-mail from XTN.4 when XTN.2 is NET or XTN.3 Internet. Cell phones (XTN.3 CP) are
    ``mobile``. None when there is no value.
    """
    c = rep.split(seps.component)
    use_code, equipment = part(c, 2, seps), part(c, 3, seps)
    system = "email" if use_code == "NET" else MAPS.telecom_system(equipment)
    if system == "email":
        value = part(c, 4, seps) or part(c, 1, seps)
    else:
        value = part(c, 1, seps) or part(c, 12, seps)
        if not value:
            country, area, local = part(c, 5, seps), part(c, 6, seps), part(c, 7, seps)
            if local:
                value = " ".join(p for p in (f"+{country}" if country else "", area, local) if p)
        if value and (extension := part(c, 8, seps)):
            value = f"{value} ext. {extension}"
    if not value:
        return None
    point: dict[str, Any] = {"system": system, "value": value}
    use = "mobile" if equipment == "CP" else MAPS.telecom_use(use_code) or default_use
    if use:
        point["use"] = use
    return point


# --- PL: person location --------------------------------------------------------------------------------

def pl_text(components: list[str], seps: Separators) -> str:
    """PL as text: point of care, then room and bed when sent (``Khoa Nội / P.201 / G.05``)."""
    return " / ".join(p for p in (part(components, 1, seps), part(components, 2, seps),
                                  part(components, 3, seps)) if p)


# --- CWE / CE / CNE: coded values -> FHIR CodeableConcept -------------------------------------------------

def _coding(code: str, display: str, system_name: str) -> dict[str, str]:
    coding: dict[str, str] = {}
    if system_name and (system := MAPS.coding_system(system_name)):
        coding["system"] = system
    coding["code"] = code
    if display:
        coding["display"] = display
    return coding


@memo
def cwe(rep: str, seps: Separators) -> dict[str, Any] | None:
    """CWE/CE to CodeableConcept: the identifier triplet and the alternate triplet as codings (CWE.3/.6 map
    to a system URI, unknown names pass through), text from CWE.9 (original text) or the first display.
    None when nothing is sent."""
    if not rep:
        return None
    c = rep.split(seps.component)
    code, display = part(c, 1, seps), part(c, 2, seps)
    alt_code, alt_display = part(c, 4, seps), part(c, 5, seps)
    codings = []
    if code:
        codings.append(_coding(code, display, part(c, 3, seps)))
    if alt_code and alt_code != code:
        codings.append(_coding(alt_code, alt_display, part(c, 6, seps)))
    text = part(c, 9, seps) or display or alt_display
    if not codings and not text:
        return None
    concept: dict[str, Any] = {}
    if codings:
        concept["coding"] = codings
    if text:
        concept["text"] = text
    return concept


def cwe_field(seg: Segment, n: int) -> dict[str, Any] | None:
    """The first repetition of field ``n`` as a CodeableConcept."""
    value = seg[n]
    return cwe(value.split(seg.seps.repetition, 1)[0], seg.seps) if value else None


def cwe_list(seg: Segment, n: int) -> list[dict[str, Any]]:
    """Every repetition of field ``n`` as CodeableConcepts (empty ones left out)."""
    return [c for c in (cwe(rep, seg.seps) for rep in seg.repetitions(n)) if c]


def coded(table_value: dict[str, str] | None, code: str, v2_table: str) -> dict[str, str]:
    """A mapped Coding, or the code as sent in its HL7 v2 table (unmapped codes pass through)."""
    if table_value is not None:
        return dict(table_value)
    return {"system": f"http://terminology.hl7.org/CodeSystem/v2-{v2_table}", "code": code}


# --- XCN: a person (practitioner) -> FHIR Reference ---------------------------------------------------------

def practitioner_system(scope: str) -> str:
    """Staff numbers (XCN.1) are only unique inside their assigning authority or facility."""
    return f"{VN_FHIR_BASE}/sid/practitioner/{scope}"


@memo
def xcn(rep: str, seps: Separators, facility: str) -> dict[str, Any] | None:
    """XCN to a Reference by identifier and display: ``display`` is prefix, family, middle, given (the
    Vietnamese spoken order); ``identifier`` is XCN.1 scoped by XCN.9 or the facility. None when empty."""
    if not rep:
        return None
    c = rep.split(seps.component)
    ident, family, given, middle = part(c, 1, seps), part(c, 2, seps), part(c, 3, seps), part(c, 4, seps)
    prefix = part(c, 6, seps)
    display = " ".join(p for p in (prefix, family, middle, given) if p)
    if not (ident or display):
        return None
    ref: dict[str, Any] = {}
    if ident:
        scope = part(c, 9, seps) or facility
        ref["identifier"] = {"system": practitioner_system(quote(scope, safe="")), "value": ident}
    if display:
        ref["display"] = display
    return ref


def xcn_field(seg: Segment, n: int, facility: str) -> dict[str, Any] | None:
    value = seg[n]
    return xcn(value.split(seg.seps.repetition, 1)[0], seg.seps, facility) if value else None


# --- EI: entity identifier ---------------------------------------------------------------------------------

def ei(seg: Segment, n: int) -> tuple[str, str]:
    """EI field ``n``: (entity id, namespace id); ("", "") when empty."""
    c = first_repetition(seg, n)
    return part(c, 1, seg.seps), part(c, 2, seg.seps)


# --- NM / numbers and quantities ---------------------------------------------------------------------------

def number(text: str) -> int | float | None:
    """An HL7 NM (``[+-]digits[.digits]``) as a JSON number (int when there is no decimal point); None when it
    is not one. Exponents, ``nan``/``inf``, digit separators and non-ASCII digits are not NM, though float()
    would take them."""
    text = text.strip()
    body = text[1:] if text[:1] in ("+", "-") else text
    if not body.isascii():
        return None
    if body.isdigit():
        return int(text)
    whole, dot, fraction = body.partition(".")
    if dot and (whole or fraction) and (not whole or whole.isdigit()) and (not fraction or fraction.isdigit()):
        return float(text)
    return None


UCUM = "http://unitsofmeasure.org"


@memo
def units(rep: str, seps: Separators) -> dict[str, str]:
    """CE/CWE units (OBX-6, RXE-5...) as Quantity unit fields: ``unit`` is the unit as sent; ``system`` and
    ``code`` are added only when CWE.3 names UCUM, so an unverified local unit is never presented as UCUM."""
    if not rep:
        return {}
    c = rep.split(seps.component)
    code, text, system_name = part(c, 1, seps), part(c, 2, seps), part(c, 3, seps)
    out: dict[str, str] = {}
    if code or text:
        out["unit"] = code or text
    if code and system_name.upper() == "UCUM":
        out["system"] = UCUM
        out["code"] = code
    return out


def quantity(value: str, unit_rep: str, seps: Separators) -> dict[str, Any] | None:
    """A number (optionally with a leading comparator ``<``, ``<=``, ``>=``, ``>``) and units -> Quantity."""
    comparator = ""
    if value[:1] in ("<", ">"):
        comparator = value[:2] if value[1:2] == "=" else value[:1]
        value = value[len(comparator):]
    num = number(value)
    if num is None:
        return None
    q: dict[str, Any] = {"value": num}
    if comparator:
        q["comparator"] = comparator
    q.update(units(unit_rep, seps))
    return q
