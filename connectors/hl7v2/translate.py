"""HL7 v2 message -> canonical events: the pure step of the ``translator`` role.

``translate`` decodes, parses and reads MSH, then hands the message to the one translator registered for
its (message code, trigger event) in ``TRANSLATORS`` (FHIR-Converter style: one root per trigger event in
``adt`` and ``messages``, resource builders in ``patient``, ``clinical``, ``orders`` and ``documents``,
helpers per data type in ``datatypes``, code maps as data in ``maps.json``, one id function per resource
type in ``ids``).

The payloads are plain dicts, built directly. fhir.resources models are about 100x slower to build and dump
than dicts (``bench.translate`` measures it), so they stay off this per-message path; the unit tests validate
every payload they produce with the R4B models instead.

Translation is deterministic: no clock, no randomness. Resource ids are uuid5 of the facility and the
source's own keys (never the raw id numbers), event ids come from ``envelope.event_id``, so a replayed
message gives byte-identical events (ARCHITECTURE invariant 3).
"""

from __future__ import annotations

from collections.abc import Callable

from connectors.hl7v2 import adt, messages
from connectors.hl7v2.context import Context, build_context
from connectors.hl7v2.ids import encounter_id, patient_id
from connectors.hl7v2.parse import decode, parse, read_header
from connectors.hl7v2.patient import SYSTEM_BHXH, encounter, patient, visit_system
from hub.envelope import Envelope, RawCoordinates
from hub.errors import UnsupportedMessage

__all__ = ["SYSTEM_BHXH", "TRANSLATORS", "Context", "Translator", "encounter", "encounter_id", "patient",
           "patient_id", "translate", "visit_system"]

Translator = Callable[[Context], list[Envelope]]

TRANSLATORS: dict[tuple[str, str], Translator] = {
    ("ADT", "A01"): adt.adt_a01,
    ("ADT", "A02"): adt.adt_a02,
    ("ADT", "A03"): adt.adt_a03,
    ("ADT", "A04"): adt.adt_a04,
    ("ADT", "A05"): adt.adt_a05,
    ("ADT", "A06"): adt.adt_a06,
    ("ADT", "A07"): adt.adt_a07,
    ("ADT", "A08"): adt.adt_a08,
    ("ADT", "A11"): adt.adt_a11,
    ("ADT", "A12"): adt.adt_a12,
    ("ADT", "A13"): adt.adt_a13,
    ("ADT", "A28"): adt.adt_a28,
    ("ADT", "A31"): adt.adt_a31,
    ("ADT", "A40"): adt.adt_a40,
    ("ORU", "R01"): messages.oru_r01,
    ("OUL", "R22"): messages.oul_r22,
    ("VXU", "V04"): messages.vxu_v04,
    ("ORM", "O01"): messages.orm_o01,
    ("OML", "O21"): messages.oml_o21,
    ("RDE", "O11"): messages.rde_o11,
    ("RDS", "O13"): messages.rds_o13,
    ("PPR", "PC1"): messages.ppr_pc1,
    ("PPR", "PC2"): messages.ppr_pc2,
    ("PPR", "PC3"): messages.ppr_pc3,
    ("MDM", "T02"): messages.mdm_t02,
    ("MDM", "T04"): messages.mdm_t04,
    ("MDM", "T06"): messages.mdm_t06,
    ("MDM", "T08"): messages.mdm_t08,
    ("MDM", "T10"): messages.mdm_t10,
    ("MDM", "T11"): messages.mdm_t11,
    ("SIU", "S12"): messages.siu_s12,
    ("SIU", "S13"): messages.siu_s13,
    ("SIU", "S14"): messages.siu_s14,
    ("SIU", "S15"): messages.siu_s15,
    ("SIU", "S17"): messages.siu_s17,
}


def translate(raw: bytes, *, received_at: str, charset: str = "utf-8",
              raw_coords: RawCoordinates | None = None) -> list[Envelope]:
    """One HL7 v2 message (exact bytes) -> its canonical events, in order.

    Raises ParseError (undecodable or not HL7), UnsupportedMessage (no translator for the type; its reason
    starts with "unsupported message type", which the DLQ keeps) or TranslateError (a required part is
    missing or invalid; the reason names the field).

    Payloads are read-only: parts that do not depend on the result (an Observation's code, range, flags) are
    shared between events and across messages. Serialise them, or copy before changing one.
    """
    message = parse(decode(raw, charset))
    header = read_header(message)
    trigger = header.trigger
    if not trigger and (evn := message.first("EVN")) is not None:
        trigger = evn.component(1, 1)  # v2.2/v2.3 senders may put the trigger only in EVN-1
    translator = TRANSLATORS.get((header.message_code, trigger))
    if translator is None:
        raise UnsupportedMessage(f"unsupported message type {header.message_code}^{trigger}")
    return translator(build_context(message, header, received_at, raw_coords))
