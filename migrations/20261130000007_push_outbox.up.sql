-- Webhook delivery: an outbox row per (event, webhook), written in the
-- transaction that writes the event, and delivered in log order per
-- webhook by a `push` job (one live per webhook).

-- The protocol version of the binding a config was created through: its
-- deliveries take that version's payload shape.
ALTER TABLE push_configs ADD COLUMN version text NOT NULL DEFAULT '1.0'
    CONSTRAINT push_configs_version_known CHECK (version IN ('1.0', '0.3'));
ALTER TABLE push_configs ADD CONSTRAINT push_configs_token_size CHECK (length(token) <= 4096);
ALTER TABLE push_configs ADD CONSTRAINT push_configs_auth_size CHECK (pg_column_size(authentication) <= 8192);

-- `seq` is the task event the delivery announces; its payload is built from
-- that event when it is sent. `attempts` counts failed tries; past the last
-- one the delivery is `dead`, and later ones for the webhook go on.
CREATE TABLE push_deliveries (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id     uuid        NOT NULL,
    config_id   text        NOT NULL,
    seq         bigint      NOT NULL,
    state       text        NOT NULL DEFAULT 'pending',
    attempts    integer     NOT NULL DEFAULT 0,
    next_at     timestamptz NOT NULL DEFAULT now(),
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    CONSTRAINT push_deliveries_state_known CHECK (state IN ('pending', 'delivered', 'dead')),
    CONSTRAINT push_deliveries_finished_iff_final CHECK ((state <> 'pending') = (finished_at IS NOT NULL)),
    -- Deleting a webhook stops its deliveries (PROTOCOL.md P6).
    FOREIGN KEY (task_id, config_id) REFERENCES push_configs (task_id, id) ON DELETE CASCADE,
    UNIQUE (task_id, config_id, seq)
);
CREATE INDEX push_deliveries_pending ON push_deliveries (task_id, config_id, seq) WHERE state = 'pending';
CREATE INDEX push_deliveries_dead ON push_deliveries (finished_at DESC) WHERE state = 'dead';
CREATE INDEX push_deliveries_done ON push_deliveries (finished_at) WHERE state = 'delivered';

-- One live delivery job per webhook: it drains that webhook's outbox in order.
CREATE UNIQUE INDEX jobs_one_live_push ON jobs (task_id, (payload->>'config'))
    WHERE kind = 'push' AND state IN ('ready', 'leased');
