-- Plans: named fan-outs and pipelines, each offered as a skill. The config
-- file's plans are written here at start; the admin API adds and removes
-- others. `spec` is the plan as configured (names of agents and plans).
CREATE TABLE plans (
    name        text        PRIMARY KEY,
    spec        jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The resolved plan a task runs (a tree of concrete agents), written in the
-- transaction that creates the task, with the attempts its children's
-- delegations get. Its children are tasks with `parent_id` set; their
-- place in the plan is `position`.
CREATE TABLE task_plans (
    task_id      uuid        PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    plan         jsonb       NOT NULL,
    max_attempts integer     NOT NULL CHECK (max_attempts >= 1)
);

-- A child's place among its siblings: the fan-out member or pipeline step.
-- Unique per parent, so a step is never created twice.
ALTER TABLE tasks ADD COLUMN position integer;
CREATE UNIQUE INDEX tasks_child_position ON tasks (parent_id, position) WHERE parent_id IS NOT NULL;
DROP INDEX tasks_parent;

