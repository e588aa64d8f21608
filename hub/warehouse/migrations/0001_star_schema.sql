-- The city data warehouse, version 1: a star schema over the hub's canonical events.
-- Pseudonymous by construction: the citizen dimension holds the hub's citizen_id and non-identifying
-- attributes only (birth year, sex, ward, province); facts hold codes, times, statuses and numbers,
-- never names, ID numbers, addresses or free clinical text.
--
-- Every fact is keyed by its FHIR resource id. (event_occurred_at, event_id) says which event wrote the
-- row; an upsert only replaces a row with a strictly later one, so replays change nothing and a rebuild
-- in any order gives the same table.

CREATE TABLE dim_citizen (
    citizen_id        text PRIMARY KEY,
    birth_year        smallint,
    sex               text,            -- FHIR administrative gender
    ward              text,            -- phường / xã of the home address (no street, no house number)
    province          text,
    merged_into       text,            -- set when a citizen.merged event retired this citizen
    event_id          text,            -- the Patient event that wrote the attributes (NULL: seen in facts only)
    event_occurred_at timestamptz,
    loaded_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dim_facility (
    facility_code     text PRIMARY KEY,  -- MA_CSKCB of the sending facility
    loaded_at         timestamptz NOT NULL DEFAULT now()
);

-- A retired citizen and who survived it. Facts that arrive later for a retired citizen are written
-- to the survivor through this table.
CREATE TABLE citizen_merge (
    retired_id        text PRIMARY KEY,
    survivor_id       text NOT NULL,
    event_id          text NOT NULL,
    event_occurred_at timestamptz NOT NULL,
    loaded_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX citizen_merge_survivor ON citizen_merge (survivor_id);

CREATE TABLE fact_encounter (
    resource_id       text PRIMARY KEY,
    event_id          text NOT NULL,
    event_occurred_at timestamptz NOT NULL,
    citizen_id        text NOT NULL,
    facility_code     text NOT NULL,
    encounter_id      text,
    status            text,
    sensitivity       text[] NOT NULL DEFAULT '{}',
    class_code        text,            -- v3 ActCode: IMP, AMB, EMER ...
    period_start      timestamptz,
    period_end        timestamptz,
    loaded_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE fact_diagnosis (
    resource_id       text PRIMARY KEY,
    event_id          text NOT NULL,
    event_occurred_at timestamptz NOT NULL,
    citizen_id        text NOT NULL,
    facility_code     text NOT NULL,
    encounter_id      text,
    status            text,            -- clinical status
    sensitivity       text[] NOT NULL DEFAULT '{}',
    code_system       text,
    code              text,            -- ICD-10 ...
    display           text,            -- the code system's display, not free text
    category          text,
    verification      text,
    onset_at          timestamptz,
    recorded_at       timestamptz,
    loaded_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE fact_immunization (
    resource_id       text PRIMARY KEY,
    event_id          text NOT NULL,
    event_occurred_at timestamptz NOT NULL,
    citizen_id        text NOT NULL,
    facility_code     text NOT NULL,
    encounter_id      text,
    status            text,
    sensitivity       text[] NOT NULL DEFAULT '{}',
    code_system       text,
    code              text,            -- CVX or the national vaccine code
    display           text,
    occurred_at       timestamptz,
    dose_number       text,
    route             text,
    status_reason     text,
    primary_source    boolean,
    loaded_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE fact_observation (
    resource_id       text PRIMARY KEY,
    event_id          text NOT NULL,
    event_occurred_at timestamptz NOT NULL,
    citizen_id        text NOT NULL,
    facility_code     text NOT NULL,
    encounter_id      text,
    status            text,
    sensitivity       text[] NOT NULL DEFAULT '{}',
    code_system       text,
    code              text,            -- LOINC or a local lab code
    display           text,
    category          text,
    effective_at      timestamptz,
    value_type        text,            -- quantity, codeable, boolean, integer, range, ratio, string, ...
    value_num         double precision,
    value_unit        text,
    value_comparator  text,
    value_code        text,
    interpretation    text,
    loaded_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE fact_medication (
    resource_id       text PRIMARY KEY,
    event_id          text NOT NULL,
    event_occurred_at timestamptz NOT NULL,
    citizen_id        text NOT NULL,
    facility_code     text NOT NULL,
    encounter_id      text,
    status            text,
    sensitivity       text[] NOT NULL DEFAULT '{}',
    kind              text NOT NULL,   -- request, dispense, administration, statement
    code_system       text,
    code              text,            -- ATC ...
    display           text,
    intent            text,
    occurred_at       timestamptz,     -- authoredOn / whenHandedOver / effective
    quantity_value    double precision,
    quantity_unit     text,
    loaded_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE fact_procedure (
    resource_id       text PRIMARY KEY,
    event_id          text NOT NULL,
    event_occurred_at timestamptz NOT NULL,
    citizen_id        text NOT NULL,
    facility_code     text NOT NULL,
    encounter_id      text,
    status            text,
    sensitivity       text[] NOT NULL DEFAULT '{}',
    code_system       text,
    code              text,
    display           text,
    performed_at      timestamptz,
    loaded_at         timestamptz NOT NULL DEFAULT now()
);

-- Merges re-point facts by citizen, and dashboards slice by citizen and facility.
CREATE INDEX fact_encounter_citizen    ON fact_encounter (citizen_id);
CREATE INDEX fact_diagnosis_citizen    ON fact_diagnosis (citizen_id);
CREATE INDEX fact_immunization_citizen ON fact_immunization (citizen_id);
CREATE INDEX fact_observation_citizen  ON fact_observation (citizen_id);
CREATE INDEX fact_medication_citizen   ON fact_medication (citizen_id);
CREATE INDEX fact_procedure_citizen    ON fact_procedure (citizen_id);
