"""Errors of the BHYT XML reader, as subclasses of the hub's tree (``hub.errors``).

    ParseError (parse)
    └── TableError          a table or the export cannot be read safely; ``kind`` says why:
                            envelope, dtd, entity, external-entity, size, base64, truncated, not-xml,
                            encoding, table
    TranslateError (translate)
    └── MappingError        a record was read but a field cannot become FHIR; ``kind``: missing, date, value

Two more Failure kinds have no exception class: ``parse.io`` (the file cannot be opened or read) and
``translate.internal`` (an unexpected exception in the reader: a bug, contained to one table or encounter).

The reader never lets these escape: each becomes a ``Failure`` (see ``results``) naming the stage, the kind,
the position and the original bytes, and reading goes on with the next record. Reasons name fields and
problems, never values (they may be personal data: ARCHITECTURE invariant 6).
"""

from __future__ import annotations

from hub.errors import ParseError, TranslateError


class TableError(ParseError):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


class MappingError(TranslateError):
    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
