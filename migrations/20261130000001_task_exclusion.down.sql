ALTER TABLE delegations DROP COLUMN question_id, DROP COLUMN acked_seq, DROP COLUMN forwarded_seq;
DROP INDEX jobs_one_live_delegation;
