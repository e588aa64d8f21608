"""The warehouse's errors, under the hub's tree (hub/errors.py): both carry the stage code ``warehouse``.

    HubError
    └── WarehouseError      warehouse   a warehouse write failed for this event
        └── MappingError    warehouse   an event of a warehouse type whose payload cannot become rows
"""

from __future__ import annotations

from hub.errors import HubError


class WarehouseError(HubError):
    code = "warehouse"


class MappingError(WarehouseError):
    pass
