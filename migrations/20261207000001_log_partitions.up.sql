-- The event log, partitioned by when its task was created, so that
-- retention drops a whole window of the log at once instead of deleting
-- its rows one by one (the log is most of what a task writes: five of the
-- nine rows of a simple task, dozens for a streamed one, and nearly all
-- of the bytes).
--
-- The partition key is the task's id: task ids are UUIDv7, whose first 48
-- bits are the creation time in milliseconds, and PostgreSQL orders uuids
-- bytewise, so a range of ids is a window of creation time. Keying by the
-- task keeps every event of a task in one partition and keeps the primary
-- key (task_id, seq) — the gap-free per-task sequence replay reads by —
-- enforceable, which a key on the event's own time would not.
--
-- Windows are created ahead of time by the store (at migration and by
-- the workers' sweep); `task_events_default` takes what no window covers
-- (ids that are not UUIDv7, a window that could not be created), and
-- `task_events_history` holds what was logged before this migration: the
-- existing table itself, attached as a partition, so that migrating a
-- large log reads it once (to check its range) instead of copying it.
--
-- The log no longer references `tasks` with a cascade: a dropped window
-- cannot be matched to task rows one by one, and the cascade is exactly
-- the per-row delete this replaces. Every write of the log happens in the
-- transaction that holds its task's row, and every read starts from the
-- task, so a log row whose task was deleted is never read; it goes with
-- its window (or, in the default partition, with the sweep's orphan pass).
-- The existing log becomes the history partition.
ALTER TABLE task_events RENAME TO task_events_history;
ALTER INDEX task_events_pkey RENAME TO task_events_history_pkey;
ALTER TABLE task_events_history DROP CONSTRAINT task_events_task_id_fkey;
DROP TRIGGER task_events_append_only ON task_events_history;

-- The check constraints are named as the history's are, which attaching
-- it requires (and every window copies).
CREATE TABLE task_events (
    task_id     uuid        NOT NULL,
    seq         bigint      NOT NULL CONSTRAINT task_events_seq_check CHECK (seq >= 1),
    kind        text        NOT NULL
                            CONSTRAINT task_events_kind_check CHECK (kind IN ('message', 'status', 'artifact')),
    payload     jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, seq)
) PARTITION BY RANGE (task_id);

CREATE TABLE task_events_default PARTITION OF task_events DEFAULT;

-- The history covers ids below this moment's (UUIDv7 of now); rows of ids
-- at or above it (not UUIDv7 of the past) move to the default partition.
DO $$
DECLARE
    upto uuid := (lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
                  || repeat('0', 20))::uuid;
BEGIN
    INSERT INTO task_events_default SELECT * FROM task_events_history WHERE task_id >= upto;
    DELETE FROM task_events_history WHERE task_id >= upto;
    EXECUTE format('ALTER TABLE task_events ATTACH PARTITION task_events_history FOR VALUES FROM (%L) TO (%L)',
                   '00000000-0000-0000-0000-000000000000', upto);
END
$$;

-- The append-only guard, on the partitioned table: PostgreSQL clones it
-- onto every partition, present and future.
CREATE TRIGGER task_events_append_only
    BEFORE UPDATE ON task_events
    FOR EACH ROW EXECUTE FUNCTION task_events_append_only();
