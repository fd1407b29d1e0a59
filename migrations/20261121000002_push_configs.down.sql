DROP TABLE IF EXISTS push_configs;
