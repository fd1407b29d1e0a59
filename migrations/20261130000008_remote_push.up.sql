-- A delegation parked on an agent that pushes registers a webhook on the
-- remote task pointing back at us, with this secret as its token; a push
-- that presents it wakes the parked job early.
ALTER TABLE delegations ADD COLUMN push_token text;
