"""Translators for the clinical (non-ADT) messages, one per trigger event.

They walk the segments in order and keep the current patient (PID, with PV1-19 as its encounter) and order
(ORC), so messages with several orders or patients come out right. These messages do not emit
``patient.updated``: the envelope subject carries the PID identifiers and demographics for the MPI, and ADT
remains the source of demographics.
"""

from __future__ import annotations

from typing import Any

from connectors.hl7v2 import sensitivity
from connectors.hl7v2.clinical import add_note, observation, observation_category, problem
from connectors.hl7v2.context import Context, PatientRef, encounter_reference
from connectors.hl7v2.datatypes import first_repetition, part, ts_field
from connectors.hl7v2.documents import appointment, document_reference
from connectors.hl7v2.orders import (
    OrderNumbers, dose_number, immunization, medication_dispense, medication_request, report, service_request,
)
from connectors.hl7v2.parse import Segment
from connectors.hl7v2.patient import related_person, subject_of
from hub.envelope import Envelope
from hub.errors import TranslateError


def _patient_ref(pid: Segment, ctx: Context) -> tuple[PatientRef, str]:
    patient_key, subject = subject_of(pid, ctx.facility)
    return PatientRef(f"Patient/{patient_key}", subject, None, f"message|{ctx.header.control_id}"), patient_key


def _with_visit(ref: PatientRef, pv1: Segment, ctx: Context) -> PatientRef:
    encounter, visit_key = encounter_reference(pv1, ctx)
    return PatientRef(ref.reference, ref.subject, encounter, visit_key)  # not dataclasses.replace: 5x slower


def _require(ref: PatientRef | None, what: str) -> PatientRef:
    if ref is None:
        raise TranslateError(f"PID segment missing before {what}")
    return ref


# --- ORU^R01, OUL^R22 ---------------------------------------------------------------------------------------

class _Report:
    """One OBR and the OBX/NTE that follow it, until the next OBR, ORC or PID."""

    __slots__ = ("orc", "obr", "index", "ref", "observations", "category", "effective", "scope")

    def __init__(self, orc: Segment | None, obr: Segment, index: int, ref: PatientRef, default_section: str) -> None:
        self.orc, self.obr, self.index, self.ref = orc, obr, index, ref
        self.observations: list[tuple[int, dict[str, Any], tuple[str, ...]]] = []
        self.category = observation_category(part(first_repetition(obr, 24), 1, obr.seps) or default_section)
        self.effective = ts_field(obr, 7)
        self.scope = ""  # set by _results (needs the ORC that may follow in OUL)


def _results(ctx: Context, default_section: str, orc_after_obr: bool = False) -> list[Envelope]:
    """``orc_after_obr``: OUL^R22 sends each order as OBR then ORC, so an ORC before any OBX is the OBR's."""
    events: list[Envelope] = []
    ref: PatientRef | None = None
    orc: Segment | None = None
    current: _Report | None = None
    loose: list[Envelope] = []  # OBX before any OBR (OUL specimen results): no report names them
    last: dict[str, Any] | None = None
    loose_category = observation_category(default_section)

    def flush() -> None:
        nonlocal current
        if current is None:
            return
        resource = report(current.orc, current.obr, ctx, current.ref, current.index,
                          [o[1]["id"] for o in current.observations], default_section)
        own = sensitivity.flags(resource)
        flags = sensitivity.union(own, *(o[2] for o in current.observations))
        events.append(ctx.event(resource, current.ref.subject, current.index, flags))
        # A result inherits its report's own flags: a CD4 count in an HIV panel is HIV data too.
        events.extend(ctx.event(o[1], current.ref.subject, o[0], sensitivity.union(own, o[2]) if own else o[2])
                      for o in current.observations)
        current = None

    for index, seg in enumerate(ctx.message.segments):
        name = seg.name
        if name == "PID":
            flush()
            ref, _ = _patient_ref(seg, ctx)
            orc = None
        elif name == "PV1" and ref is not None:
            ref = _with_visit(ref, seg, ctx)
        elif name == "ORC" and orc_after_obr and current is not None and current.orc is None \
                and not current.observations:
            current.orc = seg
        elif name == "ORC":
            flush()
            orc = seg
        elif name == "OBR":
            flush()
            current = _Report(orc, seg, index, _require(ref, "OBR"), default_section)
            last = None
        elif name == "OBX":
            owner = _require(ref if current is None else current.ref, "OBX")
            scope = _scope(ctx, current)
            effective = current.effective if current is not None else None
            category = current.category if current is not None else loose_category
            resource, flags = observation(seg, ctx, owner, scope, effective, category)
            if current is not None:
                current.observations.append((index, resource, flags))
            else:
                loose.append(ctx.event(resource, owner.subject, index, flags))
            last = resource
        elif name == "NTE" and last is not None:
            add_note(last, seg)
    flush()
    if ref is None:
        raise TranslateError("PID segment missing")
    events += loose
    if not events:
        raise TranslateError("OBR segment missing")
    return events


def _scope(ctx: Context, current: _Report | None) -> str:
    """The id scope of an OBX: its order's filler (else placer) number, else the message (once per order)."""
    if current is None:
        return f"message|{ctx.header.control_id}"
    if not current.scope:
        current.scope = OrderNumbers(current.orc, current.obr, ctx.facility).key(
            "filler", f"message|{ctx.header.control_id}|{current.index}")
    return current.scope


def oru_r01(ctx: Context) -> list[Envelope]:
    """Unsolicited results: one DiagnosticReport per OBR, one Observation per OBX."""
    return _results(ctx, "")


def oul_r22(ctx: Context) -> list[Envelope]:
    """Specimen-oriented lab results: as ORU, category laboratory."""
    return _results(ctx, "LAB", orc_after_obr=True)


# --- VXU^V04 ------------------------------------------------------------------------------------------------

def vxu_v04(ctx: Context) -> list[Envelope]:
    """Vaccination record update: one Immunization per RXA (RXR route/site, OBX 30973-4 dose number), and a
    RelatedPerson per NK1 (mother or guardian of a child, the usual case). Other OBX document the
    administration (VIS, funding) and are not mapped."""
    events: list[Envelope] = []
    ref: PatientRef | None = None
    patient_key = ""
    orc: Segment | None = None
    pending: list[Any] = []  # [index, rxa, rxr, obx...] of the current administration

    def flush() -> None:
        if not pending:
            return
        index, rxa, rxr, *obx = pending
        resource = immunization(orc, rxa, rxr, ctx, _require(ref, "RXA"), patient_key)
        for seg in obx:
            dose_number(seg, resource)
        events.append(ctx.event(resource, _require(ref, "RXA").subject, index, sensitivity.flags(resource)))
        pending.clear()

    for index, seg in enumerate(ctx.message.segments):
        name = seg.name
        if name == "PID":
            flush()
            ref, patient_key = _patient_ref(seg, ctx)
        elif name == "PV1" and ref is not None:
            ref = _with_visit(ref, seg, ctx)
        elif name == "NK1" and ref is not None:
            if person := related_person(seg, ctx.facility, ref.reference, patient_key):
                events.append(ctx.event(person, ref.subject, index))
        elif name == "ORC":
            flush()
            orc = seg
        elif name == "RXA":
            flush()
            pending.extend([index, seg, None])
        elif name == "RXR" and pending:
            pending[2] = seg
        elif name == "OBX" and pending:
            pending.append(seg)
    flush()
    if ref is None:
        raise TranslateError("PID segment missing")
    if not any(e.payload["resourceType"] == "Immunization" for e in events):
        raise TranslateError("RXA segment missing")
    return events


# --- ORM^O01, OML^O21 ---------------------------------------------------------------------------------------

def _orders(ctx: Context) -> list[Envelope]:
    """ORC + OBR -> ServiceRequest; ORC + RXO (+ RXR) -> MedicationRequest (pharmacy orders sent as ORM)."""
    events: list[Envelope] = []
    ref: PatientRef | None = None
    orc: Segment | None = None
    last: dict[str, Any] | None = None
    pending: list[Any] = []  # [index, rxo, rxr] of a pharmacy order

    def flush() -> None:
        if not pending:
            return
        index, rxo, rxr = pending
        owner = _require(ref, "RXO")
        resource = medication_request(orc, rxo, rxr, ctx, owner, index)
        events.append(ctx.event(resource, owner.subject, index, sensitivity.flags(resource)))
        pending.clear()

    for index, seg in enumerate(ctx.message.segments):
        name = seg.name
        if name == "PID":
            flush()
            ref, _ = _patient_ref(seg, ctx)
        elif name == "PV1" and ref is not None:
            ref = _with_visit(ref, seg, ctx)
        elif name == "ORC":
            flush()
            orc = seg
            last = None
        elif name == "OBR":
            flush()
            owner = _require(ref, "OBR")
            last = service_request(orc, seg, ctx, owner, index)
            events.append(ctx.event(last, owner.subject, index, sensitivity.flags(last)))
            orc = None
        elif name == "RXO":
            flush()
            pending.extend([index, seg, None])
            last = None
        elif name == "RXR" and pending and pending[2] is None:
            pending[2] = seg
        elif name == "NTE" and last is not None:
            add_note(last, seg)
    flush()
    if ref is None:
        raise TranslateError("PID segment missing")
    if not events:
        raise TranslateError("OBR or RXO segment missing")
    return events


def orm_o01(ctx: Context) -> list[Envelope]:
    """General order: one ServiceRequest per ORC/OBR, one MedicationRequest per ORC/RXO."""
    return _orders(ctx)


def oml_o21(ctx: Context) -> list[Envelope]:
    """Laboratory order: one ServiceRequest per ORC/OBR."""
    return _orders(ctx)


# --- RDE^O11, RDS^O13 ---------------------------------------------------------------------------------------

def _pharmacy(ctx: Context, detail: str) -> list[Envelope]:
    """ORC + RXE (order) or RXD (dispense), each with the RXR that follows it."""
    events: list[Envelope] = []
    ref: PatientRef | None = None
    orc: Segment | None = None
    pending: list[Any] = []  # [index, detail segment, rxr]

    def flush() -> None:
        if not pending:
            return
        index, seg, rxr = pending
        owner = _require(ref, detail)
        build = medication_request if detail == "RXE" else medication_dispense
        resource = build(orc, seg, rxr, ctx, owner, index)
        events.append(ctx.event(resource, owner.subject, index, sensitivity.flags(resource)))
        pending.clear()

    for index, seg in enumerate(ctx.message.segments):
        name = seg.name
        if name == "PID":
            flush()
            ref, _ = _patient_ref(seg, ctx)
        elif name == "PV1" and ref is not None:
            ref = _with_visit(ref, seg, ctx)
        elif name == "ORC":
            flush()
            orc = seg
        elif name == detail:
            flush()
            pending.extend([index, seg, None])
        elif name == "RXR" and pending and pending[2] is None:
            pending[2] = seg
    flush()
    if ref is None:
        raise TranslateError("PID segment missing")
    if not events:
        raise TranslateError(f"{detail} segment missing")
    return events


def rde_o11(ctx: Context) -> list[Envelope]:
    """Pharmacy encoded order: one MedicationRequest per ORC/RXE."""
    return _pharmacy(ctx, "RXE")


def rds_o13(ctx: Context) -> list[Envelope]:
    """Pharmacy dispense: one MedicationDispense per ORC/RXD, pointing at the order (ORC-2)."""
    return _pharmacy(ctx, "RXD")


# --- PPR^PC1/PC2/PC3 ----------------------------------------------------------------------------------------

def _problems(ctx: Context, delete: bool) -> list[Envelope]:
    events: list[Envelope] = []
    ref: PatientRef | None = None
    patient_key = ""
    last: dict[str, Any] | None = None
    for index, seg in enumerate(ctx.message.segments):
        name = seg.name
        if name == "PID":
            ref, patient_key = _patient_ref(seg, ctx)
        elif name == "PV1" and ref is not None:
            ref = _with_visit(ref, seg, ctx)
        elif name == "PRB":
            owner = _require(ref, "PRB")
            last = problem(seg, ctx, owner, patient_key, delete)
            events.append(ctx.event(last, owner.subject, index, sensitivity.flags(last)))
        elif name == "NTE" and last is not None:
            add_note(last, seg)
        elif name in ("OBX", "GOL", "PTH", "VAR", "ROL"):
            last = None  # notes after these belong to them, not to the problem
    if ref is None:
        raise TranslateError("PID segment missing")
    if not events:
        raise TranslateError("PRB segment missing")
    return events


def ppr_pc1(ctx: Context) -> list[Envelope]:
    """Problem add."""
    return _problems(ctx, False)


def ppr_pc2(ctx: Context) -> list[Envelope]:
    """Problem update."""
    return _problems(ctx, False)


def ppr_pc3(ctx: Context) -> list[Envelope]:
    """Problem delete: the Condition is marked entered-in-error (same id, so it replaces the original)."""
    return _problems(ctx, True)


# --- MDM^T02 ------------------------------------------------------------------------------------------------

def _document(ctx: Context, relation: str | None = None, status: str | None = None) -> list[Envelope]:
    """One DocumentReference from TXA, content from the OBX segments."""
    message = ctx.message
    pid, txa = message.first("PID"), message.first("TXA")
    if pid is None:
        raise TranslateError("PID segment missing")
    if txa is None:
        raise TranslateError("TXA segment missing")
    ref, _ = _patient_ref(pid, ctx)
    if (pv1 := message.first("PV1")) is not None:
        ref = _with_visit(ref, pv1, ctx)
    resource = document_reference(txa, message.all("OBX"), ctx, ref, relation, status)
    index = message.segments.index(txa)
    return [ctx.event(resource, ref.subject, index, sensitivity.flags(resource))]


def mdm_t02(ctx: Context) -> list[Envelope]:
    """Original document notification and content."""
    return _document(ctx)


def mdm_t04(ctx: Context) -> list[Envelope]:
    """Document status change notification and content (e.g. now authenticated): the same document."""
    return _document(ctx)


def mdm_t06(ctx: Context) -> list[Envelope]:
    """Addendum notification and content: a new document that appends to its parent (TXA-13)."""
    return _document(ctx, relation="appends")


def mdm_t08(ctx: Context) -> list[Envelope]:
    """Edit notification and content: the same document, edited."""
    return _document(ctx)


def mdm_t10(ctx: Context) -> list[Envelope]:
    """Replacement notification and content: a new document that replaces its parent (TXA-13)."""
    return _document(ctx, relation="replaces")


def mdm_t11(ctx: Context) -> list[Envelope]:
    """Document cancel notification: the document is entered-in-error (no content; TXA-2 gives the title)."""
    return _document(ctx, status="entered-in-error")


# --- SIU^S12 ------------------------------------------------------------------------------------------------

def _schedule(ctx: Context, status: str | None) -> list[Envelope]:
    """One Appointment from SCH and its resource segments (same id for every trigger about it)."""
    message = ctx.message
    sch, pid = message.first("SCH"), message.first("PID")
    if sch is None:
        raise TranslateError("SCH segment missing")
    if pid is None:
        raise TranslateError("PID segment missing")
    ref, _ = _patient_ref(pid, ctx)
    if (pv1 := message.first("PV1")) is not None:
        ref = _with_visit(ref, pv1, ctx)
    resources = [s for s in message.segments if s.name in ("TQ1", "AIS", "AIG", "AIL", "AIP")]
    resource = appointment(sch, ctx, ref, resources, status)
    return [ctx.event(resource, ref.subject, message.segments.index(sch), sensitivity.flags(resource))]


def siu_s12(ctx: Context) -> list[Envelope]:
    """New appointment booking (status from SCH-25, booked when empty)."""
    return _schedule(ctx, None)


def siu_s13(ctx: Context) -> list[Envelope]:
    """Rescheduled: the same Appointment with its new time."""
    return _schedule(ctx, None)


def siu_s14(ctx: Context) -> list[Envelope]:
    """Modified (resources, reason...): the same Appointment."""
    return _schedule(ctx, None)


def siu_s15(ctx: Context) -> list[Envelope]:
    """Cancelled: the same Appointment, status cancelled."""
    return _schedule(ctx, "cancelled")


def siu_s17(ctx: Context) -> list[Envelope]:
    """Deleted (booked in error): the same Appointment, entered-in-error."""
    return _schedule(ctx, "entered-in-error")
