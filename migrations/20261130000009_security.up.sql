-- API keys: a key is `sy_<id>_<secret>`; only the SHA-256 of the secret is
-- kept. The id is public (it names the key in listings and the audit log).
CREATE TABLE api_keys (
    id             text PRIMARY KEY,
    secret_sha256  bytea NOT NULL,
    tenant         text NOT NULL,
    principal      text NOT NULL,
    scopes         text[] NOT NULL DEFAULT '{}',
    -- Requests per second and burst; NULL takes the deployment's default.
    rate_per_sec   double precision,
    burst          integer,
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz
);

-- Who did what: task changes other than creation (the task row names its
-- owner), push configs, admin changes and key management.
CREATE TABLE audit_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    tenant     text,
    principal  text NOT NULL,
    credential text,
    action     text NOT NULL,
    task_id    uuid,
    detail     jsonb
);
CREATE INDEX audit_log_task ON audit_log (task_id, id) WHERE task_id IS NOT NULL;
CREATE INDEX audit_log_at ON audit_log (at);
