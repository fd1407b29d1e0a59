CREATE INDEX tasks_parent ON tasks (parent_id) WHERE parent_id IS NOT NULL;
DROP INDEX tasks_child_position;
ALTER TABLE tasks DROP COLUMN position;
DROP TABLE task_plans;
DROP TABLE plans;
