-- The durable core: tasks (snapshots), their append-only event log, the job
-- queue and idempotency keys. Every name is unqualified: the store runs with
-- `search_path` set to its own schema (`switchyard` unless configured), so one
-- database can hold several isolated deployments (and parallel test runs).

-- A task is a snapshot folded from its event log; `version` is the sequence
-- number of the last event folded into it.
CREATE TABLE tasks (
    id              uuid        PRIMARY KEY,
    tenant          text        NOT NULL,
    owner           text        NOT NULL,
    context_id      text        NOT NULL,
    parent_id       uuid        REFERENCES tasks (id) ON DELETE CASCADE,
    state           text        NOT NULL,
    status          jsonb       NOT NULL,
    artifacts       jsonb       NOT NULL DEFAULT '[]',
    metadata        jsonb,
    trace_context   jsonb,
    version         bigint      NOT NULL CHECK (version >= 1),
    created_at      timestamptz NOT NULL DEFAULT now(),
    status_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tasks_state_known CHECK (state IN (
        'submitted', 'working', 'input_required', 'auth_required',
        'completed', 'failed', 'canceled', 'rejected')),
    CONSTRAINT tasks_artifacts_array CHECK (jsonb_typeof(artifacts) = 'array'),
    CONSTRAINT tasks_status_has_state CHECK (status ? 'state')
);

-- ListTasks: a caller's tasks, newest status first, keyset-paginated.
CREATE INDEX tasks_owner_recent ON tasks (tenant, owner, status_at DESC, id DESC);
CREATE INDEX tasks_context ON tasks (tenant, context_id, status_at DESC);
CREATE INDEX tasks_parent ON tasks (parent_id) WHERE parent_id IS NOT NULL;

-- The database's own guard behind the code's transition table: a terminal
-- task never changes state again, and its snapshot is frozen. A late or
-- stale writer that slipped past every check in code still cannot reopen it.
CREATE FUNCTION tasks_terminal_is_final() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state IN ('completed', 'failed', 'canceled', 'rejected') THEN
        RAISE EXCEPTION 'task % is % and cannot change', OLD.id, OLD.state
            USING ERRCODE = 'check_violation', CONSTRAINT = 'tasks_terminal_is_final';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER tasks_terminal_is_final
    BEFORE UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION tasks_terminal_is_final();

-- The append-only log. (task_id, seq) orders a task's events; `seq` starts
-- at 1 and has no gaps, so a reader that saw seq N knows exactly what it
-- missed. Rows are never updated or deleted while their task exists.
CREATE TABLE task_events (
    task_id     uuid        NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq         bigint      NOT NULL CHECK (seq >= 1),
    kind        text        NOT NULL CHECK (kind IN ('message', 'status', 'artifact')),
    payload     jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, seq)
);

CREATE FUNCTION task_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'task_events is append-only'
        USING ERRCODE = 'check_violation', CONSTRAINT = 'task_events_append_only';
END;
$$;

CREATE TRIGGER task_events_append_only
    BEFORE UPDATE ON task_events
    FOR EACH ROW EXECUTE FUNCTION task_events_append_only();

-- Idempotency: one key (a message's messageId, or an Idempotency-Key header)
-- per caller maps to the task it produced.
CREATE TABLE idempotency_keys (
    tenant      text        NOT NULL,
    owner       text        NOT NULL,
    key         text        NOT NULL,
    -- Deferred, so a submit claims its key first and a duplicate stops
    -- before any task row is written.
    task_id     uuid        NOT NULL REFERENCES tasks (id) ON DELETE CASCADE
                            DEFERRABLE INITIALLY DEFERRED,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, owner, key)
);

-- The queue. A job is work on one task; its lifecycle is
--   ready --claim--> leased --complete--> done
--                   leased --retry-----> ready (run_at in the future)
--                   leased --dead------> dead  --requeue--> ready
--                   leased --release---> ready (graceful shutdown, attempt refunded)
--                   leased --expire----> ready | dead (lease lost with its worker)
-- `lease_token` is the fencing token: it grows on every claim and never
-- resets, so a write carrying an older token is recognisably stale.
CREATE TABLE jobs (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id          uuid        NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    kind             text        NOT NULL,
    payload          jsonb       NOT NULL DEFAULT '{}',
    state            text        NOT NULL DEFAULT 'ready',
    priority         smallint    NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL DEFAULT now(),
    attempt          integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL,
    lease_owner      text,
    lease_token      bigint      NOT NULL DEFAULT 0,
    lease_expires_at timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    CONSTRAINT jobs_state_known CHECK (state IN ('ready', 'leased', 'done', 'dead')),
    CONSTRAINT jobs_attempts_bounded CHECK (attempt >= 0 AND max_attempts >= 1 AND attempt <= max_attempts),
    CONSTRAINT jobs_lease_iff_leased CHECK (
        (state = 'leased') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CONSTRAINT jobs_finished_iff_final CHECK (
        (state IN ('done', 'dead')) = (finished_at IS NOT NULL))
);

-- Only claimable rows are indexed for the claim, only leased rows for the
-- expiry sweep: both indexes stay small however long the history grows.
CREATE INDEX jobs_claimable ON jobs (priority DESC, run_at, id) WHERE state = 'ready';
CREATE INDEX jobs_lease_expiry ON jobs (lease_expires_at) WHERE state = 'leased';
CREATE INDEX jobs_dead ON jobs (finished_at DESC) WHERE state = 'dead';
CREATE INDEX jobs_task ON jobs (task_id);
