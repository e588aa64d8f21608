"""BHYT XML exports (QD 130/QD-BYT, amended by QD 4750 and QD 3176; the older QD 4210 layout too) ->
canonical events.

    from connectors.xml130 import read_export, Summary
    summary = Summary()
    for result in read_export("79048_202611.xml", received_at="2026-12-01T08:00:00+07:00"):
        summary.add(result)   # a Record (one encounter: events, failures, counts) or a file-level Failure

Tables: XML1 -> Patient, Encounter, Conditions (ICD-10); XML2 -> MedicationDispense; XML3 -> Procedure
(supplies, beds, transport and visit fees counted, not mapped); XML4 -> Observation + DiagnosticReport;
XML5 -> progress-note DocumentReference; XML7 / XML8 -> DocumentReference with the original document;
XML6 (HIV care) and an HIV diagnosis -> every event of the encounter flagged ``hiv`` (envelope sensitivity
and meta.security); XML9-XML15 -> kept raw on the Record, counted, not mapped.

Event types: ``procedure.recorded`` and ``document.recorded`` are not yet in the canonical schema's type
list (schemas/canonical-event.v1.json, hub.envelope.EVENT_TYPES); the other types are.
"""

from connectors.xml130.context import EVENT_TYPE, SENSITIVITY_HIV, SOURCE_SYSTEM
from connectors.xml130.reader import read_export, read_hoso, translate_hoso
from connectors.xml130.results import Failure, Record, Result, Summary
from connectors.xml130.source import Limits, RawHoso

__all__ = [
    "EVENT_TYPE", "SENSITIVITY_HIV", "SOURCE_SYSTEM", "Failure", "Limits", "RawHoso", "Record", "Result",
    "Summary", "read_export", "read_hoso", "translate_hoso",
]
