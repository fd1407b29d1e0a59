-- Artifacts are read from the log, not kept in the task row: appending a
-- chunk to a long artifact then writes one log row and a row of constant
-- size, where rewriting the snapshot cost the whole artifact every time
-- (O(N²) over a stream of N chunks). The row keeps only the ids of the
-- artifacts that exist, which is all a writer needs to refuse an append to
-- an artifact that does not. Every artifact was written through the log, so
-- nothing is lost with the column.
ALTER TABLE tasks ADD COLUMN artifact_ids text[] NOT NULL DEFAULT '{}';
ALTER TABLE tasks DISABLE TRIGGER tasks_terminal_is_final;
UPDATE tasks SET artifact_ids = ARRAY(SELECT a->>'artifactId' FROM jsonb_array_elements(artifacts) a)
WHERE jsonb_array_length(artifacts) > 0;
ALTER TABLE tasks ENABLE TRIGGER tasks_terminal_is_final;
ALTER TABLE tasks DROP COLUMN artifacts;
