-- A wake-up that arrives while its job is leased (a remote agent's push
-- landing while the worker is still looking at the remote task) is kept
-- here until the job parks: the park then makes it due at once instead
-- of after its poll interval. Without it such a push was lost.
ALTER TABLE jobs ADD COLUMN woken_at timestamptz;
