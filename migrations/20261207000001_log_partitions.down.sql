-- Back to one unpartitioned log, referencing its task with a cascade.
-- Rows whose task is gone (waiting for their window to be dropped) are
-- left behind.
ALTER TABLE task_events RENAME TO task_events_partitioned;
ALTER INDEX task_events_pkey RENAME TO task_events_partitioned_pkey;

CREATE TABLE task_events (
    task_id     uuid        NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq         bigint      NOT NULL CONSTRAINT task_events_seq_check CHECK (seq >= 1),
    kind        text        NOT NULL
                            CONSTRAINT task_events_kind_check CHECK (kind IN ('message', 'status', 'artifact')),
    payload     jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, seq)
);

INSERT INTO task_events (task_id, seq, kind, payload, created_at)
SELECT e.task_id, e.seq, e.kind, e.payload, e.created_at FROM task_events_partitioned e
WHERE EXISTS (SELECT 1 FROM tasks t WHERE t.id = e.task_id);
DROP TABLE task_events_partitioned;

CREATE TRIGGER task_events_append_only
    BEFORE UPDATE ON task_events
    FOR EACH ROW EXECUTE FUNCTION task_events_append_only();
