-- The outbox's indexes PostgreSQL has had from the start: a webhook's
-- pending deliveries in order (the push job and the orphan sweep read
-- them), and delivered rows by age (the retention sweep deletes them).
CREATE INDEX push_deliveries_pending ON push_deliveries (task_id, config_id, seq) WHERE state = 'pending';
CREATE INDEX push_deliveries_done ON push_deliveries (finished_at) WHERE state = 'delivered';
