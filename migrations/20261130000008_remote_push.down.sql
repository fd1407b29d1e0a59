ALTER TABLE delegations DROP COLUMN push_token;
