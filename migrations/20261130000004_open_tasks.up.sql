-- /metrics counts open tasks by state on every scrape: this index holds only
-- open tasks, so the count never scans the finished history.
CREATE INDEX tasks_open ON tasks (state)
    WHERE state IN ('submitted', 'working', 'input_required', 'auth_required');
