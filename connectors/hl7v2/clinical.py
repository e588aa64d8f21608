"""Clinical segments -> FHIR resources: DG1 and PRB -> Condition, AL1 -> AllergyIntolerance, PR1 -> Procedure,
OBX -> Observation. Each builder takes one segment and the patient it is about and returns a plain dict."""

from __future__ import annotations

import copy

import re
from typing import Any


from connectors.hl7v2 import sensitivity
from connectors.hl7v2.context import Context, PatientRef
from connectors.hl7v2.datatypes import (
    HL7_NULL, MEMO_SIZE, coded, cwe, cwe_field, ei, first_repetition, memo, part, quantity, simple, to_iso,
    ts_field, units, xcn_field,
)
from connectors.hl7v2.ids import allergy_id, condition_id, observation_id, procedure_id
from connectors.hl7v2.maps import MAPS
from connectors.hl7v2.parse import Segment, Separators, unescape
from hub.errors import TranslateError

CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

_RANGE = re.compile(r"\s*([<>]=?)?\s*([+-]?[0-9.]+)?\s*(?:(?:-|–|\.\.)\s*([+-]?[0-9.]+))?\s*")


def _key(concept: dict[str, Any]) -> str:
    """The part of a CodeableConcept ids are derived from: the first code, else the text."""
    codings = concept.get("coding")
    return codings[0]["code"] if codings else concept.get("text", "")


def _links(resource: dict[str, Any], ref: PatientRef, subject_key: str = "subject",
           encounter_key: str = "encounter") -> dict[str, Any]:
    resource[subject_key] = {"reference": ref.reference}
    if ref.encounter and encounter_key:
        resource[encounter_key] = {"reference": ref.encounter}
    return resource


def _concept(seg: Segment, code_field: int, text_field: int | None, what: str,
             method_field: int | None = None) -> dict[str, Any]:
    """The coded field, with the description field (DG1-4, PR1-4 in older versions) as its text and the
    coding method field (DG1-2, PR1-2: v2.3 senders name the code system there, not in CE.3) as the system
    of a coding that has none. TranslateError if there is neither code nor text."""
    concept = cwe_field(seg, code_field)  # a fresh copy: changed below
    text = part(first_repetition(seg, text_field), 1, seg.seps) if text_field is not None else ""
    if concept is None:
        if not text:
            raise TranslateError(f"{seg.name}-{code_field}: {what} missing")
        return {"text": text}
    if text and "text" not in concept:
        concept["text"] = text
    method = part(first_repetition(seg, method_field), 1, seg.seps) if method_field is not None else ""
    if method and any("system" not in c for c in concept.get("coding", ())):
        system = MAPS.coding_system(method)
        concept["coding"] = [c if "system" in c else {"system": system, **c} for c in concept["coding"]]
    return concept


# --- DG1 -> Condition (+ the Encounter.diagnosis entry) ---------------------------------------------------

def diagnosis(dg1: Segment, ctx: Context, ref: PatientRef) -> tuple[dict[str, Any], dict[str, Any]]:
    """DG1 -> an encounter-diagnosis Condition, and the Encounter.diagnosis entry pointing at it (use from
    DG1-6, rank from DG1-15)."""
    code = _concept(dg1, 3, 4, "diagnosis code", 2)
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": condition_id(ctx.facility, ref.visit_key, _key(code)),
        "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": "encounter-diagnosis",
                                  "display": "Encounter Diagnosis"}]}],
        "code": code,
    }
    _links(resource, ref)
    if recorded := ts_field(dg1, 5):
        resource["recordedDate"] = recorded
    if recorder := xcn_field(dg1, 16, ctx.facility):
        resource["recorder"] = recorder
    entry: dict[str, Any] = {"condition": {"reference": f"Condition/{resource['id']}"}}
    use_code = part(first_repetition(dg1, 6), 1, dg1.seps)
    if use_code and (use := MAPS.diagnosis_use(use_code)):
        entry["use"] = {"coding": [dict(use)]}
    rank = part(first_repetition(dg1, 15), 1, dg1.seps)
    if rank.isdigit() and int(rank) > 0:
        entry["rank"] = int(rank)
    return resource, entry


# --- PRB -> Condition (problem list) ----------------------------------------------------------------------

def problem(prb: Segment, ctx: Context, ref: PatientRef, patient_key: str, delete: bool) -> dict[str, Any]:
    """PRB -> a problem-list Condition. PRB-1 ``DE`` (or a PC3 message, ``delete``) marks it entered in error."""
    seps = prb.seps
    code = _concept(prb, 3, None, "problem id")
    instance, _ns = ei(prb, 4)
    scope = f"problem|{instance}" if instance else f"patient|{patient_key}"
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": condition_id(ctx.facility, scope, _key(code)),
        "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": "problem-list-item",
                                  "display": "Problem List Item"}]}],
        "code": code,
    }
    if delete or part(first_repetition(prb, 1), 1, seps) == "DE":
        resource["verificationStatus"] = {"coding": [{"system": CONDITION_VERIFICATION, "code": "entered-in-error"}]}
    else:
        status_code = part(first_repetition(prb, 14), 1, seps).upper()
        clinical = (MAPS.condition_clinical(status_code) if status_code else None) or "active"
        resource["clinicalStatus"] = {"coding": [{"system": CONDITION_CLINICAL, "code": clinical}]}
    _links(resource, ref)
    if onset := ts_field(prb, 16):
        resource["onsetDateTime"] = onset
    if recorded := ts_field(prb, 7) or ts_field(prb, 2):
        resource["recordedDate"] = recorded
    return resource


# --- AL1 -> AllergyIntolerance ------------------------------------------------------------------------------

def allergy(al1: Segment, ctx: Context, ref: PatientRef, patient_key: str) -> dict[str, Any]:
    seps = al1.seps
    code = _concept(al1, 3, None, "allergen")
    resource: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "id": allergy_id(ctx.facility, patient_key, _key(code)),
        "clinicalStatus": {"coding": [{"system": ALLERGY_CLINICAL, "code": "active", "display": "Active"}]},
        "code": code,
    }
    type_code = part(first_repetition(al1, 2), 1, seps)
    if type_code and (category := MAPS.allergy_category(type_code)):
        resource["category"] = [category]
    severity = part(first_repetition(al1, 4), 1, seps)
    if severity and (criticality := MAPS.allergy_criticality(severity)):
        resource["criticality"] = criticality
    _links(resource, ref, "patient", "encounter")
    reactions = [{"text": t} for t in (part(rep.split(seps.component), 1, seps) for rep in al1.repetitions(5)) if t]
    if reactions:
        resource["reaction"] = [{"manifestation": reactions}]
    if onset := ts_field(al1, 6):
        resource["onsetDateTime"] = onset
    return resource


# --- PR1 -> Procedure ---------------------------------------------------------------------------------------

def procedure(pr1: Segment, ctx: Context, ref: PatientRef) -> dict[str, Any]:
    code = _concept(pr1, 3, 4, "procedure code", 2)
    when = part(first_repetition(pr1, 5), 1, pr1.seps)
    resource: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": procedure_id(ctx.facility, ref.visit_key, _key(code), when),
        "status": "completed",
        "code": code,
    }
    _links(resource, ref)
    if performed := ts_field(pr1, 5):
        resource["performedDateTime"] = performed
    performers = [p for p in (xcn_field(pr1, 11, ctx.facility), xcn_field(pr1, 12, ctx.facility)) if p]
    if performers:
        resource["performer"] = [{"actor": p} for p in performers]
    return resource


# --- OBX -> Observation -------------------------------------------------------------------------------------

def _text(obx: Segment) -> str:
    """OBX-5 as text: every repetition, unescaped whole (formatted text keeps its line breaks)."""
    return "\n".join(unescape(rep, obx.seps) for rep in obx.repetitions(5) if rep != HL7_NULL).strip()


def _time(value: str) -> str | None:
    digits = value.split("+")[0].split("-")[0].split(".")[0]
    if len(digits) < 4 or not digits.isdigit():
        return None
    hh, mm, ss = digits[:2], digits[2:4], digits[4:6] or "00"
    return f"{hh}:{mm}:{ss}" if hh <= "23" and mm <= "59" and ss <= "59" else None


def _structured_numeric(rep: str, obx: Segment) -> tuple[str, Any] | None:
    """SN: comparator^num1^separator^num2 -> a Quantity, a Range (``-``) or a Ratio (``:`` ``/``)."""
    seps = obx.seps
    c = rep.split(seps.component)
    comparator, first, sep, second = (part(c, i, seps) for i in (1, 2, 3, 4))
    unit_rep = obx[6].split(seps.repetition, 1)[0]
    if sep in (":", "/") and first and second:
        low, high = quantity(first, "", seps), quantity(second, "", seps)
        if low and high:
            return "valueRatio", {"numerator": low, "denominator": high}
    if sep in ("-", "+") and first and second:
        low, high = quantity(first, unit_rep, seps), quantity(second, unit_rep, seps)
        if low and high:
            return "valueRange", {"low": low, "high": high}
    if first and (q := quantity((comparator if comparator != "=" else "") + first, unit_rep, seps)):
        return "valueQuantity", q
    return None


def _value(obx: Segment) -> tuple[str, Any] | None:
    """OBX-5 read by its value type (OBX-2): NM -> Quantity, SN -> Quantity/Range/Ratio, CE/CWE -> concept,
    DT/TS -> dateTime, TM -> time, everything readable else -> string. A number that does not parse is kept
    as a string rather than lost. ED/RP (documents, pointers) carry no Observation value."""
    seps = obx.seps
    value_type = simple(obx, 2).upper()
    first = obx[5].split(seps.repetition, 1)[0]
    if not first or first == HL7_NULL or value_type in ("ED", "RP"):
        return None
    if value_type == "NM":
        unit_rep = obx[6].split(seps.repetition, 1)[0]
        q = quantity(part(first.split(seps.component), 1, seps), unit_rep, seps)
        return ("valueQuantity", q) if q else ("valueString", _text(obx))
    if value_type == "SN":
        return _structured_numeric(first, obx) or ("valueString", _text(obx))
    if value_type in ("CE", "CWE", "CNE", "CF"):
        concept = cwe(first, seps)
        return ("valueCodeableConcept", concept) if concept else None
    if value_type in ("DT", "TS", "DTM"):
        when = to_iso(part(first.split(seps.component), 1, seps), f"OBX-5 ({value_type})")
        return ("valueDateTime", when) if when else None
    if value_type == "TM":
        when = _time(part(first.split(seps.component), 1, seps))
        return ("valueTime", when) if when else ("valueString", _text(obx))
    text = _text(obx)
    return ("valueString", text) if text else None


def reference_range(obx: Segment) -> list[dict[str, Any]]:
    """OBX-7: ``3.5-5.0``, ``<5``, ``>=10`` become low/high Quantities in OBX-6's units; the text is kept."""
    seps = obx.seps
    text = part(first_repetition(obx, 7), 1, seps)
    if not text:
        return []
    return _range(text, obx[6].split(seps.repetition, 1)[0], seps)


@memo
def _range(text: str, unit_rep: str, seps: Separators) -> list[dict[str, Any]]:
    entry: dict[str, Any] = {}
    m = _RANGE.fullmatch(text)
    if m:
        comparator, low, high = m.groups()
        unit = units(unit_rep, seps)
        if comparator and low and not high:
            q = quantity(low, "", seps)
            if q:
                entry["high" if comparator.startswith("<") else "low"] = {**q, **unit}
        elif low and high and not comparator:
            lo, hi = quantity(low, "", seps), quantity(high, "", seps)
            if lo and hi:
                entry["low"], entry["high"] = {**lo, **unit}, {**hi, **unit}
    entry["text"] = text
    return [entry]


def _static(obx: Segment, facility: str, category: dict[str, Any] | None) -> dict[str, Any]:
    """The parts of an Observation that do not depend on the result value or the patient: status, category,
    code, performer, interpretation, method, reference range."""
    seps = obx.seps
    static: dict[str, Any] = {"status": MAPS.observation_status(simple(obx, 11))}
    if category is not None:
        static["category"] = [category]
    static["code"] = _concept(obx, 3, None, "observation identifier")
    if obx[16] and (performer := xcn_field(obx, 16, facility)):
        static["performer"] = [performer]
    if obx[8]:
        flags = [f for f in (part(rep.split(seps.component), 1, seps) for rep in obx.repetitions(8)) if f]
        if flags:
            static["interpretation"] = [{"coding": [coded(MAPS.interpretation(f), f, "0078")]} for f in flags]
    if obx[17] and (method := cwe_field(obx, 17)):
        static["method"] = method
    if obx[7] and (ranges := reference_range(obx)):
        static["referenceRange"] = ranges
    return static


_STATIC: dict[tuple[Any, ...], tuple[dict[str, Any], str, tuple[str, ...]]] = {}


class FrozenDict(dict):  # type: ignore[type-arg]
    """A dict that refuses changes; orjson serialises it as a plain object."""

    def _refuse(self, *_args: Any, **_kwargs: Any) -> None:
        raise TypeError("translated payload parts are shared and read-only: copy before changing")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]
    __ior__ = _refuse  # type: ignore[assignment]

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:  # a copy is the caller's: plain and mutable
        return {k: copy.deepcopy(v, memo) for k, v in self.items()}

    def __reduce__(self) -> tuple[Any, ...]:
        return dict, (dict(self),)


def frozen(value: Any) -> Any:
    """``value`` with every dict frozen and every list a tuple (JSON arrays either way)."""
    if isinstance(value, dict):
        return FrozenDict({k: frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(frozen(v) for v in value)
    return value


def _static_cached(obx: Segment, facility: str, category: dict[str, Any] | None) -> tuple[dict[str, Any], str,
                                                                                        tuple[str, ...]]:
    """``_static`` memoised on the raw fields it reads (a lab sends the same test, units, range and flags
    all day), with the code's id key and sensitivity flags.

    The parts are shared, not copied, between the Observations that use them: copying them (JSON round trip)
    was 13% of an ORU^R01's translation. They are frozen instead, so a consumer that tries to change one gets
    a TypeError rather than silently changing the same test in every later patient's result.
    """
    # OBX-3 to OBX-17 as sent, minus the per-result fields (OBX-4 sub-id, OBX-5 value, OBX-14 time).
    fields = obx.span(3, 17)
    section = category["coding"][0]["code"] if category else None
    key = (fields[0], fields[3:11], fields[12:], facility, obx.seps, section)
    hit = _STATIC.get(key)
    if hit is None:
        static = _static(obx, facility, category)
        if len(_STATIC) >= MEMO_SIZE:
            _STATIC.clear()
        hit = _STATIC[key] = (frozen(static), _key(static["code"]), sensitivity.flags(static))
    return hit


def observation(obx: Segment, ctx: Context, ref: PatientRef, scope: str, effective: str | None,
                category: dict[str, Any] | None) -> tuple[dict[str, Any], tuple[str, ...]]:
    """OBX -> Observation and its sensitivity flags. ``scope`` (order number or visit) keeps ids stable
    across corrected results; ``effective`` is the OBR time used when OBX-14 is empty. The busiest builder
    (ten per lab report): what does not depend on the value is memoised."""
    static, code_key, flags = _static_cached(obx, ctx.facility, category)
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": observation_id(ctx.facility, scope, code_key, f"{simple(obx, 4)}|{simple(obx, 1)}"),
        **static,
        "subject": {"reference": ref.reference},
    }
    if ref.encounter:
        resource["encounter"] = {"reference": ref.encounter}
    if when := (ts_field(obx, 14) if obx[14] else None) or effective:
        resource["effectiveDateTime"] = when
    if value := _value(obx):
        resource[value[0]] = value[1]
        if value[0] == "valueCodeableConcept":
            flags = sensitivity.union(flags, sensitivity.flags({"code": value[1]}))
    return resource, flags


def observation_category(section: str) -> dict[str, Any] | None:
    """The Observation category for a diagnostic service section (OBR-24), None when it maps to none."""
    code = MAPS.section_category(section) if section else None
    return {"coding": [{"system": OBSERVATION_CATEGORY, "code": code}]} if code else None


def add_note(resource: dict[str, Any], nte: Segment) -> None:
    """NTE-3 comments after a segment become an Annotation on the resource built from it."""
    text = "\n".join(unescape(rep, nte.seps) for rep in nte.repetitions(3)).strip()
    if text:
        resource.setdefault("note", []).append({"text": text})

