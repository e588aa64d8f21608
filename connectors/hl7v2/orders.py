"""Orders and what follows them -> FHIR: ORC/OBR -> ServiceRequest and DiagnosticReport, ORC/RXE ->
MedicationRequest, ORC/RXD -> MedicationDispense, ORC/RXA/RXR -> Immunization."""

from __future__ import annotations

from typing import Any, NamedTuple

from connectors.hl7v2.context import Context, PatientRef
from connectors.hl7v2.datatypes import (
    cwe_field, cwe_list, ei, first_repetition, number, part, quantity, to_iso, ts_field, xcn_field,
)
from connectors.hl7v2.ids import (
    immunization_id, medication_dispense_id, medication_request_id, report_id, service_request_id,
)
from connectors.hl7v2.maps import MAPS
from connectors.hl7v2.parse import Segment, Separators
from hub.envelope import VN_FHIR_BASE
from hub.errors import TranslateError

IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
DIAGNOSTIC_SECTION = "http://terminology.hl7.org/CodeSystem/v2-0074"
PERFORMER_FUNCTION = "http://terminology.hl7.org/CodeSystem/v2-0443"
DOSE_NUMBER_LOINC = "30973-4"  # "Dose number in series" (VXU OBX)
UNKNOWN_AMOUNT = "999"  # RXA-6 when the amount given is not known (CDC IG)


def order_system(namespace: str) -> str:
    """Order numbers are only unique inside the application (EI.2) or facility that assigned them."""
    return f"{VN_FHIR_BASE}/sid/order/{namespace}"


class OrderNumbers:
    """Placer and filler order numbers of one order: ORC-2/ORC-3, else OBR-2/OBR-3 (or RXA's ORC)."""

    __slots__ = ("placer", "filler", "facility")

    def __init__(self, orc: Segment | None, detail: Segment | None, facility: str) -> None:
        self.facility = facility
        placer = ei(orc, 2) if orc is not None else ("", "")
        filler = ei(orc, 3) if orc is not None else ("", "")
        if detail is not None and detail.name == "OBR":
            placer = placer if placer[0] else ei(detail, 2)
            filler = filler if filler[0] else ei(detail, 3)
        self.placer, self.filler = placer, filler

    def key(self, prefer: str, fallback: str) -> str:
        """The order key for ids: ``prefer`` ('placer' or 'filler') number first, then the other, then
        ``fallback`` (the message and segment)."""
        pairs = [("placer", self.placer), ("filler", self.filler)]
        if prefer == "filler":
            pairs.reverse()
        for kind, (value, namespace) in pairs:
            if value:
                return f"{kind}|{namespace or self.facility}|{value}"
        return fallback

    def identifiers(self) -> list[dict[str, Any]]:
        out = []
        for code, (value, namespace) in (("PLAC", self.placer), ("FILL", self.filler)):
            if value:
                out.append({"type": {"coding": [{"system": IDENTIFIER_TYPE, "code": code}]},
                            "system": order_system(namespace or self.facility), "value": value})
        return out


def _status(orc: Segment | None, kind: str) -> str:
    """Order status from ORC-5, else from the order control code ORC-1 (tables in maps.json)."""
    if orc is None:
        return "active" if kind == "service" else "unknown"
    status = part(first_repetition(orc, 5), 1, orc.seps)
    key = status if status else f"control:{part(first_repetition(orc, 1), 1, orc.seps)}"
    return MAPS.order_status(key)[kind]


def _links(resource: dict[str, Any], ref: PatientRef, encounter_key: str = "encounter") -> None:
    resource["subject"] = {"reference": ref.reference}
    if ref.encounter:
        resource[encounter_key] = {"reference": ref.encounter}


# --- ORC/OBR -> ServiceRequest ------------------------------------------------------------------------------

def service_request(orc: Segment | None, obr: Segment, ctx: Context, ref: PatientRef, position: int) -> dict[str, Any]:
    code = cwe_field(obr, 4)
    if code is None:
        raise TranslateError("OBR-4: universal service identifier missing")
    numbers = OrderNumbers(orc, obr, ctx.facility)
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": service_request_id(ctx.facility, numbers.key("placer", f"message|{ctx.header.control_id}|{position}")),
    }
    if idents := numbers.identifiers():
        resource["identifier"] = idents
    resource.update(status=_status(orc, "service"), intent="order", code=code)
    _links(resource, ref)
    if authored := (ts_field(orc, 9) if orc is not None else None) or ts_field(obr, 6):
        resource["authoredOn"] = authored
    if requester := (xcn_field(orc, 12, ctx.facility) if orc is not None else None) or xcn_field(obr, 16, ctx.facility):
        resource["requester"] = requester
    if reasons := cwe_list(obr, 31):
        resource["reasonCode"] = reasons
    return resource


# --- OBR + OBX -> DiagnosticReport --------------------------------------------------------------------------

def report(orc: Segment | None, obr: Segment, ctx: Context, ref: PatientRef, position: int,
           observation_ids: list[str], default_section: str) -> dict[str, Any]:
    """OBR -> DiagnosticReport naming its Observations; ``basedOn`` the ServiceRequest when a placer number
    is sent (the ServiceRequest id is derived the same way as for ORM/OML)."""
    code = cwe_field(obr, 4)
    if code is None:
        raise TranslateError("OBR-4: universal service identifier missing")
    numbers = OrderNumbers(orc, obr, ctx.facility)
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": report_id(ctx.facility, numbers.key("filler", f"message|{ctx.header.control_id}|{position}")),
    }
    if idents := numbers.identifiers():
        resource["identifier"] = idents
    if numbers.placer[0]:
        resource["basedOn"] = [{"reference": "ServiceRequest/" + service_request_id(
            ctx.facility, numbers.key("placer", ""))}]
    status_code = part(first_repetition(obr, 25), 1, obr.seps)
    resource["status"] = MAPS.report_status(status_code)
    if section := part(first_repetition(obr, 24), 1, obr.seps) or default_section:
        resource["category"] = [{"coding": [{"system": DIAGNOSTIC_SECTION, "code": section}]}]
    resource["code"] = code
    _links(resource, ref)
    if effective := ts_field(obr, 7):
        resource["effectiveDateTime"] = effective
    issued = ts_field(obr, 22)
    if issued and "T" in issued:  # instant: a date alone is not enough
        resource["issued"] = issued
    if observation_ids:
        resource["result"] = [{"reference": f"Observation/{i}"} for i in observation_ids]
    return resource


# --- ORC/RXE -> MedicationRequest ---------------------------------------------------------------------------

def _dose(amount: str, max_amount: str, unit_rep: str, seps: Separators) -> dict[str, Any] | None:
    low = quantity(amount, unit_rep, seps) if amount else None
    high = quantity(max_amount, unit_rep, seps) if max_amount else None
    if low and high and high["value"] != low["value"]:
        return {"doseRange": {"low": low, "high": high}}
    return {"doseQuantity": low} if low else None


def _route(rxr: Segment | None) -> dict[str, Any]:
    """RXR-1 route and RXR-2 site as CodeableConcepts: a mapped v3 Coding first, then the codes as sent."""
    out: dict[str, Any] = {}
    if rxr is None:
        return out
    for key, field, table in (("route", 1, MAPS.route), ("site", 2, MAPS.site)):
        concept = cwe_field(rxr, field)
        if concept is None:
            continue
        code = part(first_repetition(rxr, field), 1, rxr.seps)
        mapped = table(code) if code else None
        if mapped is not None:
            concept = dict(concept, coding=[dict(mapped), *concept.get("coding", ())])
        out[key] = concept
    return out


class _Layout(NamedTuple):
    """Where a pharmacy order segment keeps each part (RXE in RDE, RXO in ORM); 0 means "not in it"."""

    timing: int
    code: int
    minimum: int
    maximum: int
    units: int
    instructions: int
    dispense: int
    dispense_units: int
    refills: int


_RXE = _Layout(timing=1, code=2, minimum=3, maximum=4, units=5, instructions=7, dispense=10, dispense_units=11,
               refills=12)
_RXO = _Layout(timing=0, code=1, minimum=2, maximum=3, units=4, instructions=7, dispense=11, dispense_units=12,
               refills=13)


def medication_request(orc: Segment | None, rxe: Segment, rxr: Segment | None, ctx: Context, ref: PatientRef,
                       position: int) -> dict[str, Any]:
    """ORC + RXE (RDE^O11), or ORC + RXO (a pharmacy order sent as ORM^O01) -> MedicationRequest."""
    seps = rxe.seps
    layout = _RXO if rxe.name == "RXO" else _RXE
    medication = cwe_field(rxe, layout.code)
    if medication is None:
        what = "requested give code" if rxe.name == "RXO" else "give code"
        raise TranslateError(f"{rxe.name}-{layout.code}: {what} missing")
    numbers = OrderNumbers(orc, None, ctx.facility)
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": medication_request_id(ctx.facility, numbers.key("placer", f"message|{ctx.header.control_id}|{position}")),
    }
    if idents := numbers.identifiers():
        resource["identifier"] = idents
    resource.update(status=_status(orc, "medication"), intent="order", medicationCodeableConcept=medication)
    _links(resource, ref)
    if orc is not None and (authored := ts_field(orc, 9)):
        resource["authoredOn"] = authored
    if orc is not None and (requester := xcn_field(orc, 12, ctx.facility)):
        resource["requester"] = requester
    dosage: dict[str, Any] = {}
    if instructions := cwe_field(rxe, layout.instructions):
        dosage["text"] = instructions.get("text") or instructions["coding"][0]["code"]
    timing = first_repetition(rxe, layout.timing) if layout.timing else (
        first_repetition(orc, 7) if orc is not None else [])  # TQ.2 interval (v2.3-2.4 timing; ORC-7 for RXO)
    if interval := part(timing, 2, seps):
        dosage["timing"] = {"code": {"text": interval}}
    dosage.update(_route(rxr))
    unit_rep = rxe[layout.units].split(seps.repetition, 1)[0]
    if dose := _dose(part(first_repetition(rxe, layout.minimum), 1, seps),
                     part(first_repetition(rxe, layout.maximum), 1, seps), unit_rep, seps):
        dosage["doseAndRate"] = [dose]
    if dosage:
        resource["dosageInstruction"] = [dosage]
    dispense: dict[str, Any] = {}
    if amount := quantity(part(first_repetition(rxe, layout.dispense), 1, seps),
                          rxe[layout.dispense_units].split(seps.repetition, 1)[0], seps):
        dispense["quantity"] = amount
    refills = number(part(first_repetition(rxe, layout.refills), 1, seps))
    if isinstance(refills, int) and refills >= 0:
        dispense["numberOfRepeatsAllowed"] = refills
    if dispense:
        resource["dispenseRequest"] = dispense
    return resource


# --- ORC/RXD -> MedicationDispense --------------------------------------------------------------------------

def medication_dispense(orc: Segment | None, rxd: Segment, rxr: Segment | None, ctx: Context, ref: PatientRef,
                        position: int) -> dict[str, Any]:
    seps = rxd.seps
    medication = cwe_field(rxd, 2)
    if medication is None:
        raise TranslateError("RXD-2: dispense/give code missing")
    numbers = OrderNumbers(orc, None, ctx.facility)
    prescription = part(first_repetition(rxd, 7), 1, seps)
    order_key = numbers.key("placer", f"prescription|{prescription}" if prescription
                            else f"message|{ctx.header.control_id}|{position}")
    dispensed_raw = part(first_repetition(rxd, 3), 1, seps)
    resource: dict[str, Any] = {
        "resourceType": "MedicationDispense",
        "id": medication_dispense_id(ctx.facility, order_key, dispensed_raw, part(first_repetition(rxd, 1), 1, seps)),
    }
    if prescription:
        resource["identifier"] = [{"system": order_system(ctx.facility) + "/prescription", "value": prescription}]
    resource.update(status="completed", medicationCodeableConcept=medication)
    _links(resource, ref, "context")
    if numbers.placer[0]:
        resource["authorizingPrescription"] = [{"reference": "MedicationRequest/" + medication_request_id(
            ctx.facility, numbers.key("placer", ""))}]
    if performer := xcn_field(rxd, 10, ctx.facility):
        resource["performer"] = [{"actor": performer}]
    if amount := quantity(part(first_repetition(rxd, 4), 1, seps), rxd[5].split(seps.repetition, 1)[0], seps):
        resource["quantity"] = amount
    if handed := ts_field(rxd, 3):
        resource["whenHandedOver"] = handed
    if route := _route(rxr):
        resource["dosageInstruction"] = [route]
    return resource


# --- ORC/RXA/RXR -> Immunization ----------------------------------------------------------------------------

def immunization(orc: Segment | None, rxa: Segment, rxr: Segment | None, ctx: Context, ref: PatientRef,
                 patient_key: str) -> dict[str, Any]:
    """RXA -> Immunization: vaccine (RXA-5), when (RXA-3), dose (RXA-6/7, 999 = unknown), lot (RXA-15),
    expiry (RXA-16), manufacturer (RXA-17), performer (RXA-10), status (RXA-20/21), route and site (RXR)."""
    seps = rxa.seps
    vaccine = cwe_field(rxa, 5)
    if vaccine is None:
        raise TranslateError("RXA-5: administered code missing")
    when = ts_field(rxa, 3)
    if when is None:
        raise TranslateError("RXA-3: date/time start of administration missing")
    action = part(first_repetition(rxa, 21), 1, seps)
    status = "entered-in-error" if action == "D" else MAPS.immunization_status(part(first_repetition(rxa, 20), 1, seps))
    resource: dict[str, Any] = {
        "resourceType": "Immunization",
        "id": immunization_id(ctx.facility, patient_key,
                              vaccine.get("coding", [{}])[0].get("code", vaccine.get("text", "")),
                              part(first_repetition(rxa, 3), 1, seps)),
    }
    if orc is not None and (idents := OrderNumbers(orc, None, ctx.facility).identifiers()):
        resource["identifier"] = idents
    resource.update(status=status, vaccineCode=vaccine, patient={"reference": ref.reference})
    if ref.encounter:
        resource["encounter"] = {"reference": ref.encounter}
    resource["occurrenceDateTime"] = when
    source = part(first_repetition(rxa, 9), 1, seps)
    if source in ("00", "01"):
        resource["primarySource"] = source == "00"
    if manufacturer := cwe_field(rxa, 17):
        resource["manufacturer"] = {"display": manufacturer.get("text") or manufacturer["coding"][0]["code"]}
    if lot := part(first_repetition(rxa, 15), 1, seps):
        resource["lotNumber"] = lot
    if expiry := part(first_repetition(rxa, 16), 1, seps):
        expiry_iso = to_iso(expiry, "RXA-16")
        if expiry_iso and len(expiry_iso) >= 10:
            resource["expirationDate"] = expiry_iso[:10]
    resource.update(_route(rxr))
    amount = part(first_repetition(rxa, 6), 1, seps)
    if amount and amount != UNKNOWN_AMOUNT and (
            dose := quantity(amount, rxa[7].split(seps.repetition, 1)[0], seps)):
        resource["doseQuantity"] = dose
    if performer := xcn_field(rxa, 10, ctx.facility):
        resource["performer"] = [{"function": {"coding": [{"system": PERFORMER_FUNCTION, "code": "AP",
                                                           "display": "Administering Provider"}]},
                                  "actor": performer}]
    if status == "not-done" and (reason := cwe_field(rxa, 18)):
        resource["statusReason"] = reason
    return resource


def dose_number(obx: Segment, resource: dict[str, Any]) -> None:
    """A VXU OBX with LOINC 30973-4 (dose number in series) sets protocolApplied.doseNumber."""
    if part(first_repetition(obx, 3), 1, obx.seps) != DOSE_NUMBER_LOINC:
        return
    dose = number(part(first_repetition(obx, 5), 1, obx.seps))
    if isinstance(dose, int) and dose > 0:
        resource["protocolApplied"] = [{"doseNumberPositiveInt": dose}]
