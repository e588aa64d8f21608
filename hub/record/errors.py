"""The record stage's errors, under the hub's tree (hub/errors.py), with the stage code ``record``.

    HubError
    └── RecordError     record   an event the record cannot take (a merge naming no citizen), or records
                                 that stayed contended past every retry
"""

from __future__ import annotations

from hub.errors import HubError


class RecordError(HubError):
    code = "record"
