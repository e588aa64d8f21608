"""XML2 (drugs) -> MedicationDispense, XML3 (services) -> Procedure, XML4 (results) -> Observation and
DiagnosticReport. One function per table; each row is mapped on its own, so a bad row costs only itself.

Row keys: STT (the row's sequence number) when the source gives one, else the row's position; the
resource ids and event positions are derived from it, so a re-sent export gives the same ids.
MA_BAC_SI (the ordering doctor) has no place in MedicationDispense or Procedure and is not mapped; the
performers of a service are NGUOI_THUC_HIEN. XML3 rows that are billing lines rather than clinical acts (supplies, beds, transport, the consultation fee,
by MA_NHOM) are skipped and counted as ``XML3.<kind>``.
"""

from __future__ import annotations

from typing import Any

from connectors.xml130 import ids
from connectors.xml130.context import Context
from connectors.xml130.errors import MappingError
from connectors.xml130.maps import MAPS
from connectors.xml130.output import Output
from connectors.xml130.rows import Row, each, practitioners, when
from connectors.xml130.values import instant, maybe_number, number, text

SYSTEM_DRUG = "urn:hssk:xml130:ma-thuoc"
SYSTEM_ROUTE = "urn:hssk:xml130:duong-dung"
SYSTEM_SERVICE = "urn:hssk:xml130:ma-dich-vu"
SYSTEM_INDICATOR = "urn:hssk:xml130:ma-chi-so"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
LAB_GROUPS = frozenset({"1"})
IMAGING_GROUPS = frozenset({"2"})

def drugs(records: list[Row], ctx: Context, out: Output) -> None:
    """XML2: each drug line -> MedicationDispense (code, name and strength, route, dose, quantity, times)."""

    def one(f: dict[str, str], key: str) -> None:
        code, name = f.get("MA_THUOC"), f.get("TEN_THUOC")
        if not code and not name:
            raise MappingError("missing", "MA_THUOC and TEN_THUOC missing")
        name = text(name) if name else None
        strength = text(f["HAM_LUONG"]) if "HAM_LUONG" in f else None
        coding: dict[str, str] = {"system": SYSTEM_DRUG}
        if code:
            coding["code"] = code
        if name:
            coding["display"] = name
        medication: dict[str, Any] = {"coding": [coding]}
        if name or strength:
            medication["text"] = f"{name} {strength}" if name and strength else (name or strength)
        ordered, given = when(f, "NGAY_YL"), when(f, "NGAY_TH_YL")
        resource: dict[str, Any] = {
            "resourceType": "MedicationDispense",
            "id": ids.medication_dispense_id(ctx.facility, ctx.ma_lk, key),
            "status": "completed",
            "medicationCodeableConcept": medication,
            "subject": {"reference": ctx.patient_ref},
            "context": {"reference": ctx.encounter_ref},
        }
        if "SO_LUONG" in f:
            quantity: dict[str, Any] = {"value": number(f["SO_LUONG"], "SO_LUONG")}
            if "DON_VI_TINH" in f:
                quantity["unit"] = text(f["DON_VI_TINH"])
            resource["quantity"] = quantity
        if ordered:
            resource["whenPrepared"] = ordered
        if given or ordered:
            resource["whenHandedOver"] = given or ordered
        dosage: dict[str, Any] = {}
        dose, how = f.get("LIEU_DUNG"), f.get("CACH_DUNG")
        if dose or how:
            dosage["text"] = text(f"{dose} {how}" if dose and how else (dose or how or ""))
        if "DUONG_DUNG" in f:
            dosage["route"] = {"coding": [{"system": SYSTEM_ROUTE, "code": f["DUONG_DUNG"]}]}
        if dosage:
            resource["dosageInstruction"] = [dosage]
        out.events.append(ctx.event(resource, f"XML2/{key}/MedicationDispense", given or ordered))

    each("XML2", records, ctx, out, one)


def services(records: list[Row], ctx: Context, out: Output, groups: dict[str, str]) -> None:
    """XML3: each clinical service -> Procedure; supplies, beds, transport and visit fees are counted.

    ``groups`` collects MA_DICH_VU -> MA_NHOM, so XML4 can tell a lab result from an imaging report.
    """

    def one(f: dict[str, str], key: str) -> None:
        code, group = f.get("MA_DICH_VU"), f.get("MA_NHOM", "")
        kind = "supply" if f.get("MA_VAT_TU") and not code else MAPS.service_group(group)
        if kind != "procedure":
            out.counts[f"XML3.{kind}"] += 1
            return
        if not code:
            raise MappingError("missing", "MA_DICH_VU missing")
        groups.setdefault(code, group)
        name = text(f["TEN_DICH_VU"]) if "TEN_DICH_VU" in f else None
        coding = {"system": SYSTEM_SERVICE, "code": code}
        if name:
            coding["display"] = name
        resource: dict[str, Any] = {
            "resourceType": "Procedure",
            "id": ids.procedure_id(ctx.facility, ctx.ma_lk, key),
            "status": "completed",
            "category": {"coding": [dict(MAPS.procedure_category(group))]},
            "code": {"coding": [coding], **({"text": name} if name else {})},
            "subject": {"reference": ctx.patient_ref},
            "encounter": {"reference": ctx.encounter_ref},
        }
        start, end = when(f, "NGAY_TH_YL", "NGAY_YL"), when(f, "NGAY_KQ")
        if start and end and end != start:
            resource["performedPeriod"] = {"start": start, "end": end}
        elif start or end:
            resource["performedDateTime"] = start or end
        if performers := practitioners(f, "NGUOI_THUC_HIEN"):
            resource["performer"] = [{"actor": p} for p in performers]
        out.events.append(ctx.event(resource, f"XML3/{key}/Procedure", start or end))
        out.counts["XML3.procedure"] += 1

    each("XML3", records, ctx, out, one)


def _value(f: dict[str, str]) -> dict[str, Any]:
    value = f.get("GIA_TRI")
    if value is not None:
        numeric = maybe_number(value)
        if numeric is None:
            return {"valueString": text(value)}
        quantity: dict[str, Any] = {"value": numeric}
        if "DON_VI_DO" in f:
            quantity["unit"] = text(f["DON_VI_DO"])
        return {"valueQuantity": quantity}
    if "MO_TA" in f:
        return {"valueString": text(f["MO_TA"])}
    return {}


def results(records: list[Row], ctx: Context, out: Output, groups: dict[str, str]) -> None:
    """XML4: each indicator -> Observation; the indicators of one service -> one DiagnosticReport with the
    conclusion(s) KET_LUAN and the result time."""
    reports: dict[str, dict[str, Any]] = {}

    def one(f: dict[str, str], key: str) -> None:
        service = f.get("MA_DICH_VU", "")
        indicator = f.get("MA_CHI_SO") or service
        if not indicator:
            raise MappingError("missing", "MA_CHI_SO and MA_DICH_VU missing")
        name = text(f["TEN_CHI_SO"]) if "TEN_CHI_SO" in f else None
        issued = when(f, "NGAY_KQ")
        coding = {"system": SYSTEM_INDICATOR if f.get("MA_CHI_SO") else SYSTEM_SERVICE, "code": indicator}
        if name:
            coding["display"] = name
        group = groups.get(service, "")
        category = "laboratory" if group in LAB_GROUPS else "imaging" if group in IMAGING_GROUPS else None
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "id": ids.observation_id(ctx.facility, ctx.ma_lk, key),
            "status": "final",
            "code": {"coding": [coding], **({"text": name} if name else {})},
            "subject": {"reference": ctx.patient_ref},
            "encounter": {"reference": ctx.encounter_ref},
            **_value(f),
        }
        if category:
            resource["category"] = [{"coding": [{"system": OBSERVATION_CATEGORY, "code": category}]}]
        if issued:
            resource["effectiveDateTime"] = issued
            if stamp := instant(issued):
                resource["issued"] = stamp
        if performers := practitioners(f, "MA_BS_DOC_KQ"):
            resource["performer"] = performers
        if "KET_LUAN" in f and not service:
            resource["note"] = [{"text": text(f["KET_LUAN"])}]
        out.events.append(ctx.event(resource, f"XML4/{key}/Observation", issued))
        if service:
            report = reports.setdefault(service, {"results": [], "conclusions": {}, "issued": None,
                                                  "category": category, "readers": []})
            report["results"].append({"reference": f"Observation/{resource['id']}"})
            if "KET_LUAN" in f:
                report["conclusions"][text(f["KET_LUAN"])] = None
            if issued and (report["issued"] is None or issued > report["issued"]):
                report["issued"] = issued
            report["readers"] += [p for p in resource.get("performer", ()) if p not in report["readers"]]

    each("XML4", records, ctx, out, one)
    for service, report in reports.items():
        out.events.append(ctx.event(_report(ctx, service, report), f"XML4/{service}/DiagnosticReport",
                                    report["issued"]))


def _report(ctx: Context, service: str, report: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": ids.diagnostic_report_id(ctx.facility, ctx.ma_lk, service),
        "status": "final",
        "code": {"coding": [{"system": SYSTEM_SERVICE, "code": service}]},
        "subject": {"reference": ctx.patient_ref},
        "encounter": {"reference": ctx.encounter_ref},
        "result": report["results"],
    }
    if report["category"]:
        resource["category"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                                             "code": "LAB" if report["category"] == "laboratory" else "RAD"}]}]
    if issued := report["issued"]:
        resource["effectiveDateTime"] = issued
        if stamp := instant(issued):
            resource["issued"] = stamp
    if report["conclusions"]:
        resource["conclusion"] = "; ".join(report["conclusions"])
    if report["readers"]:
        resource["resultsInterpreter"] = report["readers"]
    return resource
