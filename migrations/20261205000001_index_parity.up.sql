-- Deleting a task (the retention sweep) cascades into its idempotency keys;
-- without this index every such delete scanned the whole key table. The
-- embedded store has had it from the start.
CREATE INDEX idempotency_keys_task ON idempotency_keys (task_id);
