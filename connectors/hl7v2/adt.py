"""ADT translators, one per trigger event: A01-A13, A28, A31 and the A40 merge.

Every ADT gives ``patient.updated`` (PID), then ``related-person.recorded`` per NK1, ``encounter.recorded``
(PV1, except for the person-only A28/A31), and one event per DG1 (Condition, also listed in
Encounter.diagnosis), AL1 (AllergyIntolerance), PR1 (Procedure) and OBX (Observation, NTE as note).
Sensitivity: each clinical event carries the flags of its own codes; the Encounter those of its diagnoses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connectors.hl7v2 import sensitivity
from connectors.hl7v2.clinical import add_note, allergy, diagnosis, observation, procedure
from connectors.hl7v2.context import Context, PatientRef
from connectors.hl7v2.datatypes import first_repetition, part
from connectors.hl7v2.ids import encounter_id
from connectors.hl7v2.parse import Segment
from connectors.hl7v2.patient import encounter, patient, related_person, retired
from hub.envelope import Envelope
from hub.errors import TranslateError

Status = Callable[[str | None], str]


def _visit(pv1: Segment, ctx: Context) -> tuple[str, str]:
    visit = part(first_repetition(pv1, 19), 1, pv1.seps)
    key = f"visit|{visit}" if visit else f"message|{ctx.header.control_id}"
    return f"Encounter/{encounter_id(ctx.facility, visit, ctx.header.control_id)}", key


def _adt(ctx: Context, status: Status | None, transfer: bool = False) -> list[Envelope]:
    """The shared ADT walk; ``status`` None means a person-only message (no Encounter)."""
    message = ctx.message
    pid = message.first("PID")
    if pid is None:
        raise TranslateError("PID segment missing")
    patient_resource, subject = patient(pid, ctx.facility)
    patient_key = patient_resource["id"]
    reference = f"Patient/{patient_key}"
    pv1 = message.first("PV1") if status is not None else None
    if pv1 is not None:
        enc_ref, visit_key = _visit(pv1, ctx)
        ref = PatientRef(reference, subject, enc_ref, visit_key)
    else:
        ref = PatientRef(reference, subject, None, f"message|{ctx.header.control_id}")
    people: list[Envelope] = []
    clinical: list[Envelope] = []
    diagnoses: list[dict[str, Any]] = []
    diagnosis_flags: list[tuple[str, ...]] = []
    last: dict[str, Any] | None = None
    for index, seg in enumerate(message.segments):
        name = seg.name
        resource: dict[str, Any] | None = None
        if name == "NK1":
            if person := related_person(seg, ctx.facility, reference, patient_key):
                people.append(ctx.event(person, subject, index))
            continue
        if name == "DG1":
            resource, entry = diagnosis(seg, ctx, ref)
            diagnoses.append(entry)
        elif name == "AL1":
            resource = allergy(seg, ctx, ref, patient_key)
        elif name == "PR1":
            resource = procedure(seg, ctx, ref)
        elif name == "OBX":
            resource, flags = observation(seg, ctx, ref, ref.visit_key, None, None)
            clinical.append(ctx.event(resource, subject, index, flags))
            last = resource
            continue
        elif name == "NTE" and last is not None and last["resourceType"] == "Observation":
            add_note(last, seg)
            continue
        else:
            continue
        flags = sensitivity.flags(resource)
        if name == "DG1":
            diagnosis_flags.append(flags)
        clinical.append(ctx.event(resource, subject, index, flags))
        last = resource
    events = [ctx.event(patient_resource, subject), *people]
    if pv1 is not None and status is not None:
        resource = encounter(pv1, ctx, reference, status, diagnoses, transfer)
        events.append(ctx.event(resource, subject, sensitivity=sensitivity.union(*diagnosis_flags)))
    return events + clinical


def _fixed(status: str) -> Status:
    return lambda _end: status


def adt_a01(ctx: Context) -> list[Envelope]:
    """Admit: the patient is in hospital."""
    return _adt(ctx, _fixed("in-progress"))


def adt_a02(ctx: Context) -> list[Envelope]:
    """Transfer: PV1-3 is the new location (active), PV1-6 the prior one (completed)."""
    return _adt(ctx, _fixed("in-progress"), transfer=True)


def adt_a03(ctx: Context) -> list[Envelope]:
    """Discharge: the encounter is finished (PV1-45 the discharge time)."""
    return _adt(ctx, _fixed("finished"))


def adt_a04(ctx: Context) -> list[Envelope]:
    """Register (outpatient/emergency): the patient has arrived."""
    return _adt(ctx, _fixed("arrived"))


def adt_a05(ctx: Context) -> list[Envelope]:
    """Pre-admit: the encounter is planned."""
    return _adt(ctx, _fixed("planned"))


def adt_a06(ctx: Context) -> list[Envelope]:
    """Outpatient becomes inpatient: in progress, with the new class from PV1-2."""
    return _adt(ctx, _fixed("in-progress"))


def adt_a07(ctx: Context) -> list[Envelope]:
    """Inpatient becomes outpatient: in progress, with the new class from PV1-2."""
    return _adt(ctx, _fixed("in-progress"))


def adt_a08(ctx: Context) -> list[Envelope]:
    """Update patient information: finished once a discharge time (PV1-45) is sent."""
    return _adt(ctx, lambda end: "finished" if end else "in-progress")


def adt_a11(ctx: Context) -> list[Envelope]:
    """Cancel admit / visit: the encounter is cancelled."""
    return _adt(ctx, _fixed("cancelled"))


def adt_a12(ctx: Context) -> list[Envelope]:
    """Cancel transfer: still in progress, at the location PV1-3 names again."""
    return _adt(ctx, _fixed("in-progress"))


def adt_a13(ctx: Context) -> list[Envelope]:
    """Cancel discharge: back in progress."""
    return _adt(ctx, _fixed("in-progress"))


def adt_a28(ctx: Context) -> list[Envelope]:
    """Add person information: the person only, no Encounter (a PV1 here is a placeholder)."""
    return _adt(ctx, None)


def adt_a31(ctx: Context) -> list[Envelope]:
    """Update person information: the person only, no Encounter."""
    return _adt(ctx, None)


def adt_a40(ctx: Context) -> list[Envelope]:
    """Merge patient: each PID (surviving) + MRG (retired) pair -> ``patient.merged``.

    The payload is the surviving Patient with the retired identifiers added as ``use: old`` and a
    ``link`` of type ``replaces`` to the retired Patient's id; the subject is the surviving identity only,
    so the MPI resolves the survivor and reads the retired identifiers from the payload.
    """
    events: list[Envelope] = []
    current: tuple[dict[str, Any], Any] | None = None
    for index, seg in enumerate(ctx.message.segments):
        if seg.name == "PID":
            current = patient(seg, ctx.facility)
        elif seg.name == "MRG":
            if current is None:
                raise TranslateError("MRG without a preceding PID")
            survivor, subject = current
            old, old_id = retired(seg, ctx.facility)
            resource = dict(survivor)
            known = {(i["system"], i["value"]) for i in survivor["identifier"]}
            resource["identifier"] = survivor["identifier"] + [
                {"use": "old", **i} for i in old if (i["system"], i["value"]) not in known]
            resource["link"] = [{"other": {"reference": f"Patient/{old_id}"}, "type": "replaces"}]
            events.append(ctx.event(resource, subject, None if not events else index, event_type="patient.merged"))
            current = None
    if not events:
        raise TranslateError("MRG segment missing")
    return events
