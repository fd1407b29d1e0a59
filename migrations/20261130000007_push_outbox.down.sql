DROP INDEX jobs_one_live_push;
DROP TABLE push_deliveries;
ALTER TABLE push_configs DROP CONSTRAINT push_configs_auth_size;
ALTER TABLE push_configs DROP CONSTRAINT push_configs_token_size;
ALTER TABLE push_configs DROP COLUMN version;
