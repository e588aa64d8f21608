-- Version 2: unmerges (citizen.unmerged) can be undone in the warehouse as in the record.
--
-- A merge re-points facts to the survivor, which loses whose they were. So each fact now keeps the citizen
-- its event named (source_citizen_id); an unmerge moves back the facts whose source left the group. Facts
-- loaded before this version get their current citizen: facts merged before it stay with the survivor.
-- The partial indexes hold only facts that were moved (source differs from owner): unmerges find them at
-- once, and the common write, a fact of an unmerged citizen, adds nothing to any index.
ALTER TABLE fact_encounter ADD COLUMN source_citizen_id text;
ALTER TABLE fact_diagnosis ADD COLUMN source_citizen_id text;
ALTER TABLE fact_immunization ADD COLUMN source_citizen_id text;
ALTER TABLE fact_observation ADD COLUMN source_citizen_id text;
ALTER TABLE fact_medication ADD COLUMN source_citizen_id text;
ALTER TABLE fact_procedure ADD COLUMN source_citizen_id text;
UPDATE fact_encounter SET source_citizen_id = citizen_id;
UPDATE fact_diagnosis SET source_citizen_id = citizen_id;
UPDATE fact_immunization SET source_citizen_id = citizen_id;
UPDATE fact_observation SET source_citizen_id = citizen_id;
UPDATE fact_medication SET source_citizen_id = citizen_id;
UPDATE fact_procedure SET source_citizen_id = citizen_id;
CREATE INDEX fact_encounter_moved ON fact_encounter (source_citizen_id) WHERE source_citizen_id IS DISTINCT FROM citizen_id;
CREATE INDEX fact_diagnosis_moved ON fact_diagnosis (source_citizen_id) WHERE source_citizen_id IS DISTINCT FROM citizen_id;
CREATE INDEX fact_immunization_moved ON fact_immunization (source_citizen_id) WHERE source_citizen_id IS DISTINCT FROM citizen_id;
CREATE INDEX fact_observation_moved ON fact_observation (source_citizen_id) WHERE source_citizen_id IS DISTINCT FROM citizen_id;
CREATE INDEX fact_medication_moved ON fact_medication (source_citizen_id) WHERE source_citizen_id IS DISTINCT FROM citizen_id;
CREATE INDEX fact_procedure_moved ON fact_procedure (source_citizen_id) WHERE source_citizen_id IS DISTINCT FROM citizen_id;

-- The citizen a merge event named as survivor (survivor_id is where the chain of merges ends): splitting B
-- out of C after A -> B -> C takes A along, as the record does.
ALTER TABLE citizen_merge ADD COLUMN via text;
UPDATE citizen_merge SET via = survivor_id;

-- Unmerges applied, so a merge replayed after its unmerge (older than it) is not applied again.
CREATE TABLE citizen_unmerge (
    event_id          text PRIMARY KEY,
    restored_id       text NOT NULL,
    survivor_id       text NOT NULL,
    event_occurred_at timestamptz NOT NULL,
    loaded_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX citizen_unmerge_restored ON citizen_unmerge (restored_id);
