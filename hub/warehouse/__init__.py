"""The city data warehouse: canonical events on events.citizen -> a pseudonymous star schema in PostgreSQL.

    mapping   pure: one event -> the rows it stands for (or nothing, or a MappingError for the DLQ)
    plan      pure: a batch of events -> one deduplicated write plan
    migrate   versioned SQL migrations (migrations/NNNN_name.sql), recorded in schema_version
    writer    the batched writer (binary COPY into temp tables + INSERT ... ON CONFLICT) and the
              row-at-a-time baseline the benchmark compares it with

The stream shell is hub/stream/warehouse.py (role ``warehouse``).
"""

from hub.warehouse.errors import MappingError, WarehouseError
from hub.warehouse.mapping import Rows, map_event
from hub.warehouse.plan import Plan, plan_events

__all__ = ["MappingError", "Plan", "Rows", "WarehouseError", "map_event", "plan_events"]
