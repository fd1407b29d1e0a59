-- Remote A2A agents tasks are delegated to, and each task's delegation:
-- which agent holds it and under which remote ids, checkpointed the moment
-- they are known so a resumed job continues the same remote task.
CREATE TABLE agents (
    name                 text        PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'),
    url                  text        NOT NULL CHECK (url ~ '^https?://'),
    card                 jsonb,
    card_fetched_at      timestamptz,
    consecutive_failures integer     NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    created_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE delegations (
    task_id            uuid        PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    agent              text        NOT NULL,
    remote_task_id     text,
    remote_context_id  text,
    -- The last of our messages the remote agent has been sent: a resumed
    -- job that finds it equal to the task's latest message re-attaches
    -- instead of sending it again.
    forwarded_message_id text,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
