-- The embedded store's schema: the same tables, constraints and guards as
-- the PostgreSQL migrations leave, in SQLite's terms. Ids are 16-byte blobs,
-- JSON is text, times are microseconds since the epoch (integers compare
-- and sort exactly), arrays are JSON arrays.

CREATE TABLE tasks (
    id              BLOB    PRIMARY KEY,
    tenant          TEXT    NOT NULL,
    owner           TEXT    NOT NULL,
    context_id      TEXT    NOT NULL,
    parent_id       BLOB    REFERENCES tasks (id) ON DELETE CASCADE,
    position        INTEGER,
    state           TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    artifact_ids    TEXT    NOT NULL DEFAULT '[]',
    metadata        TEXT,
    trace_context   TEXT,
    version         INTEGER NOT NULL CHECK (version >= 1),
    created_at      INTEGER NOT NULL,
    status_at       INTEGER NOT NULL,
    CONSTRAINT tasks_state_known CHECK (state IN (
        'submitted', 'working', 'input_required', 'auth_required',
        'completed', 'failed', 'canceled', 'rejected')),
    CONSTRAINT tasks_status_has_state CHECK (json_extract(status, '$.state') IS NOT NULL)
);
CREATE INDEX tasks_owner_recent ON tasks (tenant, owner, status_at DESC, id DESC);
CREATE INDEX tasks_context ON tasks (tenant, context_id, status_at DESC);
CREATE UNIQUE INDEX tasks_child_position ON tasks (parent_id, position) WHERE parent_id IS NOT NULL;
CREATE INDEX tasks_finished ON tasks (status_at)
    WHERE state IN ('completed', 'failed', 'canceled', 'rejected');
CREATE INDEX tasks_open ON tasks (state)
    WHERE state IN ('submitted', 'working', 'input_required', 'auth_required');

-- A terminal task never changes again, whatever slipped past the code.
CREATE TRIGGER tasks_terminal_is_final BEFORE UPDATE ON tasks
WHEN OLD.state IN ('completed', 'failed', 'canceled', 'rejected')
BEGIN
    SELECT RAISE(ABORT, 'tasks_terminal_is_final: a terminal task cannot change');
END;

CREATE TABLE task_events (
    task_id     BLOB    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL CHECK (seq >= 1),
    kind        TEXT    NOT NULL CHECK (kind IN ('message', 'status', 'artifact')),
    payload     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (task_id, seq)
) WITHOUT ROWID;

CREATE TRIGGER task_events_append_only BEFORE UPDATE ON task_events
BEGIN
    SELECT RAISE(ABORT, 'task_events_append_only: the log is append-only');
END;

CREATE TABLE idempotency_keys (
    tenant      TEXT    NOT NULL,
    owner       TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    task_id     BLOB    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, owner, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_task ON idempotency_keys (task_id);

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id          BLOB    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    kind             TEXT    NOT NULL,
    payload          TEXT    NOT NULL DEFAULT '{}',
    state            TEXT    NOT NULL DEFAULT 'ready',
    priority         INTEGER NOT NULL DEFAULT 0,
    run_at           INTEGER NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_token      INTEGER NOT NULL DEFAULT 0,
    lease_expires_at INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    CONSTRAINT jobs_state_known CHECK (state IN ('ready', 'leased', 'done', 'dead')),
    CONSTRAINT jobs_attempts_bounded CHECK (attempt >= 0 AND max_attempts >= 1 AND attempt <= max_attempts),
    CONSTRAINT jobs_lease_iff_leased CHECK (
        (state = 'leased') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CONSTRAINT jobs_finished_iff_final CHECK (
        (state IN ('done', 'dead')) = (finished_at IS NOT NULL))
);
CREATE INDEX jobs_claimable ON jobs (run_at, id) WHERE state = 'ready';
CREATE INDEX jobs_lease_expiry ON jobs (lease_expires_at) WHERE state = 'leased';
CREATE INDEX jobs_dead ON jobs (finished_at DESC) WHERE state = 'dead';
CREATE INDEX jobs_done ON jobs (finished_at) WHERE state = 'done';
CREATE INDEX jobs_task ON jobs (task_id);
CREATE UNIQUE INDEX jobs_one_live_delegation ON jobs (task_id)
    WHERE kind = 'delegate' AND state IN ('ready', 'leased');
CREATE UNIQUE INDEX jobs_one_live_push ON jobs (task_id, json_extract(payload, '$.config'))
    WHERE kind = 'push' AND state IN ('ready', 'leased');

CREATE TABLE push_configs (
    task_id         BLOB    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    id              TEXT    NOT NULL CHECK (length(id) BETWEEN 1 AND 256),
    url             TEXT    NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    token           TEXT    CHECK (length(token) <= 4096),
    authentication  TEXT    CHECK (length(authentication) <= 8192),
    version         TEXT    NOT NULL DEFAULT '1.0' CHECK (version IN ('1.0', '0.3')),
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (task_id, id)
) WITHOUT ROWID;

CREATE TABLE push_deliveries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id     BLOB    NOT NULL,
    config_id   TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    state       TEXT    NOT NULL DEFAULT 'pending',
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     INTEGER NOT NULL,
    last_error  TEXT,
    created_at  INTEGER NOT NULL,
    finished_at INTEGER,
    CONSTRAINT push_deliveries_state_known CHECK (state IN ('pending', 'delivered', 'dead')),
    CONSTRAINT push_deliveries_finished_iff_final CHECK ((state <> 'pending') = (finished_at IS NOT NULL)),
    FOREIGN KEY (task_id, config_id) REFERENCES push_configs (task_id, id) ON DELETE CASCADE,
    UNIQUE (task_id, config_id, seq)
);
CREATE INDEX push_deliveries_dead ON push_deliveries (finished_at DESC) WHERE state = 'dead';

CREATE TABLE agents (
    name                 TEXT    PRIMARY KEY CHECK (
        length(name) BETWEEN 1 AND 63 AND name GLOB '[A-Za-z0-9]*' AND NOT name GLOB '*[^A-Za-z0-9_.-]*'),
    url                  TEXT    NOT NULL CHECK (url GLOB 'http://*' OR url GLOB 'https://*'),
    card                 TEXT,
    card_fetched_at      INTEGER,
    consecutive_failures INTEGER NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    breaker_open_until   INTEGER,
    created_at           INTEGER NOT NULL
);

CREATE TABLE delegations (
    task_id              BLOB    PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    agent                TEXT    NOT NULL,
    remote_task_id       TEXT,
    remote_context_id    TEXT,
    forwarded_message_id TEXT,
    forwarded_seq        INTEGER,
    acked_seq            INTEGER,
    question_id          TEXT,
    push_token           TEXT,
    updated_at           INTEGER NOT NULL
);

CREATE TABLE plans (
    name        TEXT    PRIMARY KEY,
    spec        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE task_plans (
    task_id      BLOB    PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    plan         TEXT    NOT NULL,
    max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1)
);

CREATE TABLE api_keys (
    id             TEXT    PRIMARY KEY,
    secret_sha256  BLOB    NOT NULL,
    tenant         TEXT    NOT NULL,
    principal      TEXT    NOT NULL,
    scopes         TEXT    NOT NULL DEFAULT '[]',
    rate_per_sec   REAL,
    burst          INTEGER,
    created_at     INTEGER NOT NULL,
    revoked_at     INTEGER
);

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    tenant     TEXT,
    principal  TEXT    NOT NULL,
    credential TEXT,
    action     TEXT    NOT NULL,
    task_id    BLOB,
    detail     TEXT
);
CREATE INDEX audit_log_task ON audit_log (task_id, id) WHERE task_id IS NOT NULL;
CREATE INDEX audit_log_at ON audit_log (at);
