-- The task, not the job, is the unit of exclusion for delegation.
--
-- At most one delegate job per task is live (ready or leased) at any moment:
-- a client's follow-up is appended to the log and picked up by that job
-- rather than starting a second delegation beside it. The job settles only
-- when no client message is left to forward (checked under the task's row
-- lock, the same lock a follow-up takes), so none is stranded.
UPDATE jobs SET state = 'done', finished_at = now(), lease_owner = NULL, lease_expires_at = NULL,
                last_error = 'merged into the task''s one live delegation'
WHERE kind = 'delegate' AND state IN ('ready', 'leased')
  AND id NOT IN (SELECT min(id) FROM jobs WHERE kind = 'delegate' AND state IN ('ready', 'leased')
                 GROUP BY task_id);
CREATE UNIQUE INDEX jobs_one_live_delegation ON jobs (task_id)
    WHERE kind = 'delegate' AND state IN ('ready', 'leased');

-- Which client messages the remote task has been handed, by log sequence
-- number. `forwarded_seq` is written BEFORE a message is sent (the intent);
-- `acked_seq` once the agent answered that send (it arrived). A worker that
-- finds them different after a crash does not know whether the message
-- arrived, and looks at the remote task before sending it again:
-- `question_id` is the remote question (status message id) the forwarded
-- message answers, so an unchanged question means it did not arrive.
ALTER TABLE delegations
    ADD COLUMN forwarded_seq bigint,
    ADD COLUMN acked_seq     bigint,
    ADD COLUMN question_id   text;
UPDATE delegations d SET
    forwarded_seq = (SELECT max(seq) FROM task_events e
                     WHERE e.task_id = d.task_id AND e.kind = 'message'
                       AND e.payload->>'messageId' = d.forwarded_message_id),
    acked_seq = (SELECT max(seq) FROM task_events e
                 WHERE e.task_id = d.task_id AND e.kind = 'message'
                   AND e.payload->>'messageId' = d.forwarded_message_id);
