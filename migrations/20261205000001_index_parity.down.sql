DROP INDEX idempotency_keys_task;
