-- The claim walks ready jobs in due order and stops at the first one not
-- yet due. Led by `priority` (which nothing sets), the old index made it
-- walk every future-dated ready job (retry backoffs, parked delegations,
-- deadline timers) on every claim; led by `run_at`, the scan is bounded by
-- `run_at <= now()` and future jobs cost it nothing.
DROP INDEX jobs_claimable;
CREATE INDEX jobs_claimable ON jobs (run_at, id) WHERE state = 'ready';
