"""The warehouse tables as data: column order for COPY and the upsert SQL is written down once, here.

It mirrors migrations/; tests/unit/test_warehouse_migrate.py checks that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass

# Columns every fact table starts with, in this order.
FACT_COMMON = ("resource_id", "event_id", "event_occurred_at", "citizen_id", "facility_code", "encounter_id",
               "status", "sensitivity")


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    key: str
    columns: tuple[str, ...]


def _fact(name: str, *own: str) -> Table:
    return Table(name, "resource_id", FACT_COMMON + own)


ENCOUNTER = _fact("fact_encounter", "class_code", "period_start", "period_end")
DIAGNOSIS = _fact("fact_diagnosis", "code_system", "code", "display", "category", "verification", "onset_at",
                  "recorded_at")
IMMUNIZATION = _fact("fact_immunization", "code_system", "code", "display", "occurred_at", "dose_number", "route",
                     "status_reason", "primary_source")
OBSERVATION = _fact("fact_observation", "code_system", "code", "display", "category", "effective_at", "value_type",
                    "value_num", "value_unit", "value_comparator", "value_code", "interpretation")
MEDICATION = _fact("fact_medication", "kind", "code_system", "code", "display", "intent", "occurred_at",
                   "quantity_value", "quantity_unit")
PROCEDURE = _fact("fact_procedure", "code_system", "code", "display", "performed_at")
FACTS: tuple[Table, ...] = (ENCOUNTER, DIAGNOSIS, IMMUNIZATION, OBSERVATION, MEDICATION, PROCEDURE)

CITIZEN = Table("dim_citizen", "citizen_id", ("citizen_id", "birth_year", "sex", "ward", "province", "event_id",
                                               "event_occurred_at"))
FACILITY = Table("dim_facility", "facility_code", ("facility_code",))
MERGE = Table("citizen_merge", "retired_id", ("retired_id", "survivor_id", "event_id", "event_occurred_at"))

BY_NAME: dict[str, Table] = {t.name: t for t in (*FACTS, CITIZEN, FACILITY, MERGE)}
