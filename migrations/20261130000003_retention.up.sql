-- Retention: finished tasks (with their log, jobs, checkpoint, push configs
-- and idempotency keys, which cascade) and done jobs are deleted after a
-- configurable period, oldest first, in small batches. These indexes cover
-- only the rows a sweep may delete, so it never scans the live ones.
CREATE INDEX tasks_finished ON tasks (status_at)
    WHERE state IN ('completed', 'failed', 'canceled', 'rejected');
CREATE INDEX jobs_done ON jobs (finished_at) WHERE state = 'done';
