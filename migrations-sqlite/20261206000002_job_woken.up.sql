-- A wake-up that arrives while its job is leased is kept until the job
-- parks (see the PostgreSQL migration of the same name).
ALTER TABLE jobs ADD COLUMN woken_at INTEGER;
