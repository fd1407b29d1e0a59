-- The snapshot column comes back empty: the artifacts stay in the log, and
-- this does not fold them back into it.
ALTER TABLE tasks ADD COLUMN artifacts jsonb NOT NULL DEFAULT '[]'
    CONSTRAINT tasks_artifacts_array CHECK (jsonb_typeof(artifacts) = 'array');
ALTER TABLE tasks DROP COLUMN artifact_ids;
