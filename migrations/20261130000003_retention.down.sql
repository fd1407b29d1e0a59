DROP INDEX jobs_done;
DROP INDEX tasks_finished;
