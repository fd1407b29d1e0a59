DROP INDEX push_deliveries_done;
DROP INDEX push_deliveries_pending;
