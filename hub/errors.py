"""The hub's exception tree. Each stage has a stable code; DLQ entries and NAKs carry it.

    HubError                      code
    ├── FrameError                frame       MLLP framing (oversized, malformed)
    ├── ParseError                parse       not a readable HL7 v2 message / undecodable text
    ├── TranslateError            translate   readable, but cannot become canonical events
    │   └── UnsupportedMessage    translate   a message type the hub does not map
    ├── IdentityError             identity    no identifier the MPI can resolve
    ├── RecordError               record      hub/record/errors.py: an event the record cannot apply
    ├── WarehouseError            warehouse   hub/warehouse/errors.py: an event the warehouse refuses
    │   └── MappingError          warehouse   ... because it cannot be mapped to rows
    └── DeliveryError             deliver     a write to Kafka, Redis or a subscriber failed
"""

from __future__ import annotations


class HubError(Exception):
    """Base of every error the hub raises on purpose; ``code`` names the stage."""

    code = "hub"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OutputRefused(HubError):
    """Kafka refused one of a stage's outputs for good (e.g. a record over the size limit): the input goes to
    hub.dlq instead of stalling the stage."""

    code = "output-refused"


class FrameError(HubError):
    code = "frame"


class ParseError(HubError):
    code = "parse"


class TranslateError(HubError):
    code = "translate"


class UnsupportedMessage(TranslateError):
    pass


class IdentityError(HubError):
    code = "identity"


class DeliveryError(HubError):
    code = "deliver"
