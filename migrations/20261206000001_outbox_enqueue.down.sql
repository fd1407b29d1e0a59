DROP FUNCTION outbox_enqueue(uuid, bigint[], text);
