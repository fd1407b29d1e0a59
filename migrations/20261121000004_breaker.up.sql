-- A circuit breaker per agent, shared by every worker through this row:
-- while `breaker_open_until` is in the future no work is sent to the agent;
-- once it has passed, one worker claims the probe by moving it forward.
ALTER TABLE agents ADD COLUMN breaker_open_until timestamptz;
