-- Webhook (push notification) configurations, one or more per task. The
-- secrets a client registers (`token`, `authentication`) are stored so the
-- delivery outbox can present them; they are never returned to other callers
-- because every read is scoped through the owning task.
CREATE TABLE push_configs (
    task_id         uuid        NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    id              text        NOT NULL CHECK (length(id) BETWEEN 1 AND 256),
    url             text        NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    token           text,
    authentication  jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, id)
);
