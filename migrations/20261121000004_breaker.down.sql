ALTER TABLE agents DROP COLUMN IF EXISTS breaker_open_until;
