DROP TABLE IF EXISTS jobs;
DROP TABLE IF EXISTS idempotency_keys;
DROP TRIGGER IF EXISTS task_events_append_only ON task_events;
DROP TABLE IF EXISTS task_events;
DROP FUNCTION IF EXISTS task_events_append_only();
DROP TRIGGER IF EXISTS tasks_terminal_is_final ON tasks;
DROP TABLE IF EXISTS tasks;
DROP FUNCTION IF EXISTS tasks_terminal_is_final();
