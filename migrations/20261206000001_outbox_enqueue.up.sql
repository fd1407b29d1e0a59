-- The webhook outbox, written in one place. Every statement that logs
-- events a webhook is owed (a task's fold, a delegation's fold, a write
-- that is not a fold) calls this: one delivery row per (webhook of the task, event),
-- one live push job per webhook (a job already waiting or running picks the
-- new rows up), and a wake-up for the workers when a job was queued.
-- Returns how many jobs it queued.
CREATE FUNCTION outbox_enqueue(for_task uuid, seqs bigint[], jobs_channel text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    queued integer;
BEGIN
    IF cardinality(seqs) = 0 THEN
        RETURN 0;
    END IF;
    WITH pushed AS (
        INSERT INTO push_deliveries (task_id, config_id, seq)
        SELECT for_task, c.id, s.seq FROM push_configs c, UNNEST(seqs) AS s(seq)
        WHERE c.task_id = for_task
        RETURNING config_id
    ),
    jobbed AS (
        INSERT INTO jobs (task_id, kind, payload, max_attempts)
        SELECT DISTINCT for_task, 'push', jsonb_build_object('config', config_id), 1000 FROM pushed
        ON CONFLICT (task_id, (payload->>'config')) WHERE kind = 'push' AND state IN ('ready', 'leased')
        DO NOTHING
        RETURNING id
    )
    SELECT count(*) INTO queued FROM jobbed;
    IF queued > 0 THEN
        PERFORM pg_notify(jobs_channel, 'push');
    END IF;
    RETURN queued;
END
$$;
