//! Tasks and their event log: submit, fold, cancel, scoping, and the
//! database's own guards. The store conformance suite: the tests listed in
//! `on_both_drivers!` run on PostgreSQL and on SQLite; the others look at
//! what only PostgreSQL has (row sizes, its clock).

use a2a::{Artifact, Part};
use switchyard_engine::{ArtifactUpdate, Caller, FoldError, StoreError, TaskEvent, TaskState};

use crate::harness::{TestDb, caller, new_task, on_both_drivers, status_trail, submit, user_message};

async fn submit_writes_task_log_and_job_in_one_go(db: TestDb) {
    let mut new = new_task("hello");
    new.context_id = Some("ctx-1".into());
    let submitted = db.store.task_submit(new.clone()).await.expect("submit");
    assert!(submitted.created);
    let task = submitted.task;
    assert_eq!(task.state, TaskState::Submitted);
    assert_eq!(task.context_id, "ctx-1");
    assert_eq!(task.version, 2);

    let events = db.store.task_events(task.id, 0, 100).await.expect("events");
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
    let TaskEvent::Message(stored) = &events[1].event else { panic!("second event is the message") };
    assert_eq!(stored.message_id, new.message.message_id);
    assert_eq!(stored.task_id.as_deref(), Some(task.id.to_string().as_str()));
    assert_eq!(stored.context_id.as_deref(), Some("ctx-1"));

    let jobs = db.store.task_jobs(task.id).await.expect("jobs");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].kind, "delegate");

    let again = db.store.task_submit(new).await.expect("resubmit");
    assert!(!again.created, "the same messageId from the same caller is the same task");
    assert_eq!(again.task.id, task.id);
    assert_eq!(db.store.task_jobs(task.id).await.expect("jobs").len(), 1);
}

async fn idempotency_keys_are_per_caller(db: TestDb) {
    let mine = new_task("x");
    let mut theirs = mine.clone();
    theirs.caller = Caller::new("acme", "bob");
    let a = db.store.task_submit(mine).await.expect("alice");
    let b = db.store.task_submit(theirs).await.expect("bob");
    assert!(a.created && b.created);
    assert_ne!(a.task.id, b.task.id);
}

async fn a_task_rejected_at_creation_gets_no_job(db: TestDb) {
    let mut new = new_task("nobody can do this");
    new.reject_reason = Some("no route".into());
    let task = db.store.task_submit(new).await.expect("submit").task;
    assert_eq!(task.state, TaskState::Rejected);
    assert!(db.store.task_jobs(task.id).await.expect("jobs").is_empty());
    assert_eq!(status_trail(&db.store, task.id).await, ["submitted", "rejected"]);
}

async fn appends_fold_into_the_snapshot_in_log_order(db: TestDb) {
    let id = submit(&db.store, "work").await;
    let artifact = |text: &str| Artifact {
        artifact_id: "out".into(),
        name: Some("result".into()),
        description: None,
        parts: vec![Part::text(text)],
        metadata: None,
        extensions: None,
    };
    db.store.task_append(id, &[TaskEvent::status(TaskState::Working, None)], None).await.expect("working");
    db.store
        .task_append(
            id,
            &[
                TaskEvent::Artifact(ArtifactUpdate { artifact: artifact("a"), append: false, last_chunk: false }),
                TaskEvent::Artifact(ArtifactUpdate { artifact: artifact("b"), append: true, last_chunk: true }),
                TaskEvent::status_with_text(TaskState::Completed, "done"),
            ],
            None,
        )
        .await
        .expect("finish");

    let task = db.store.task_get(&caller(), id).await.expect("get");
    assert_eq!(task.state, TaskState::Completed);
    assert_eq!(task.version, 6);
    assert_eq!(task.artifacts.len(), 1);
    assert_eq!(task.artifacts[0].parts.len(), 2);
    let seqs: Vec<i64> = db.store.task_events(id, 0, 100).await.expect("events").iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>());
    assert_eq!(db.store.task_events(id, 4, 100).await.expect("tail").len(), 2, "reads resume after a seq");
    assert_eq!(status_trail(&db.store, id).await, ["submitted", "working", "completed"]);
}

#[tokio::test]
async fn an_appended_chunk_writes_a_log_row_and_a_task_row_of_constant_size() {
    let Some(db) = TestDb::new().await else { return };
    let id = submit(&db.store, "work").await;
    let chunk = |i: usize, append| {
        TaskEvent::Artifact(ArtifactUpdate {
            artifact: Artifact {
                artifact_id: "long".into(),
                name: None,
                description: None,
                parts: vec![Part::text(format!("{i:04}:{}", "x".repeat(200)))],
                metadata: None,
                extensions: None,
            },
            append,
            last_chunk: false,
        })
    };
    db.store.task_append(id, &[TaskEvent::status(TaskState::Working, None)], None).await.expect("working");
    let row_size = || async {
        sqlx::query_scalar::<_, i32>("SELECT pg_column_size(t.*) FROM tasks t WHERE id = $1")
            .bind(id.0)
            .fetch_one(db.pool())
            .await
            .expect("size")
    };
    db.store.task_append(id, &[chunk(0, false)], None).await.expect("first chunk");
    let after_first = row_size().await;
    for i in 1..300 {
        let written = db.store.task_append(id, &[chunk(i, true)], None).await.expect("chunk");
        assert!(written.artifacts.is_empty(), "a write does not read the artifact back");
    }
    // 300 chunks of 200 bytes are in the log; the task row did not grow with them.
    assert_eq!(row_size().await, after_first);
    let task = db.store.task_get(&caller(), id).await.expect("get");
    assert_eq!(task.artifact_ids, ["long"]);
    let texts: Vec<String> =
        task.artifacts[0].parts.iter().filter_map(|p| p.as_text()).map(|t| t[..4].to_owned()).collect();
    assert_eq!(texts, (0..300).map(|i| format!("{i:04}")).collect::<Vec<_>>(), "every chunk, in order");
}

async fn illegal_transitions_and_terminal_writes_are_refused_and_change_nothing(db: TestDb) {
    let id = submit(&db.store, "x").await;
    let err = db.store.task_append(id, &[TaskEvent::status(TaskState::Completed, None)], None).await;
    assert!(err.is_ok());
    let before = db.store.task_load(id).await.expect("load");

    for event in [TaskEvent::status(TaskState::Working, None), TaskEvent::Message(user_message("late"))] {
        let err = db.store.task_append(id, &[event], None).await.expect_err("terminal");
        assert!(
            matches!(err, StoreError::Rejected { source: FoldError::Terminal(TaskState::Completed), .. }),
            "{err:?}"
        );
    }
    assert_eq!(db.store.task_load(id).await.expect("load"), before);

    // A batch is all or nothing: a bad event at the end rolls back the good ones.
    let other = submit(&db.store, "y").await;
    let err = db
        .store
        .task_append(
            other,
            &[TaskEvent::status(TaskState::Working, None), TaskEvent::status(TaskState::Submitted, None)],
            None,
        )
        .await
        .expect_err("back to submitted");
    assert!(matches!(err, StoreError::Rejected { source: FoldError::InvalidTransition { .. }, .. }));
    assert_eq!(db.store.task_events(other, 0, 100).await.expect("events").len(), 2);
}

async fn the_database_itself_refuses_to_reopen_a_terminal_task_or_edit_the_log(db: TestDb) {
    let id = submit(&db.store, "x").await;
    db.store.task_append(id, &[TaskEvent::status(TaskState::Failed, None)], None).await.expect("fail");
    let reopen = "UPDATE tasks SET state = 'working' WHERE id = $1";
    assert!(db.exec(reopen, reopen, id.0).await.is_err(), "the trigger must refuse");
    let edit = "UPDATE task_events SET kind = 'status' WHERE task_id = $1";
    assert!(db.exec(edit, edit, id.0).await.is_err(), "the log is append-only");
    let open = submit(&db.store, "y").await;
    let bogus = "UPDATE tasks SET state = 'paused' WHERE id = $1";
    assert!(db.exec(bogus, bogus, open.0).await.is_err(), "only known states");
    assert_eq!(db.store.task_load(id).await.expect("load").state, TaskState::Failed);
}

async fn callers_see_only_their_own_tasks(db: TestDb) {
    let id = submit(&db.store, "private").await;
    for stranger in [Caller::new("acme", "mallory"), Caller::new("other-tenant", "alice")] {
        assert!(matches!(db.store.task_get(&stranger, id).await, Err(StoreError::TaskNotFound(_))));
        assert!(matches!(db.store.task_cancel(&stranger, id, None).await, Err(StoreError::TaskNotFound(_))));
    }
    assert_eq!(db.store.task_get(&caller(), id).await.expect("owner").state, TaskState::Submitted);
}

async fn cancel_is_idempotent_and_refused_on_other_terminal_states(db: TestDb) {
    let id = submit(&db.store, "x").await;
    let canceled = db.store.task_cancel(&caller(), id, None).await.expect("cancel");
    assert_eq!(canceled.state, TaskState::Canceled);
    let again = db.store.task_cancel(&caller(), id, None).await.expect("re-cancel");
    assert_eq!(again.version, canceled.version, "a repeat cancel writes nothing");
    let jobs = db.store.task_jobs(id).await.expect("jobs");
    assert!(jobs.iter().all(|j| j.state == switchyard_engine::JobState::Done), "waiting jobs retire with the task");

    let done = submit(&db.store, "y").await;
    db.store.task_append(done, &[TaskEvent::status(TaskState::Completed, None)], None).await.expect("complete");
    let err = db.store.task_cancel(&caller(), done, None).await.expect_err("completed");
    assert_eq!(err.terminal_state(), Some(TaskState::Completed));
}

async fn history_returns_the_latest_messages_oldest_first(db: TestDb) {
    let id = submit(&db.store, "first").await;
    for text in ["second", "third"] {
        db.store.task_append(id, &[TaskEvent::Message(user_message(text))], None).await.expect("message");
    }
    let texts =
        |msgs: Vec<a2a::Message>| msgs.iter().map(|m| m.text().unwrap_or_default().to_owned()).collect::<Vec<_>>();
    assert_eq!(texts(db.store.task_history(id, 10).await.expect("all")), ["first", "second", "third"]);
    assert_eq!(texts(db.store.task_history(id, 2).await.expect("two")), ["second", "third"]);
    assert!(db.store.task_history(id, 0).await.expect("none").is_empty());
}

async fn migrations_revert_and_reapply(db: TestDb) {
    db.store.migrate_undo(0).await.expect("undo");
    let tables = db
        .count(
            &format!(
                "SELECT count(*) FROM pg_tables WHERE schemaname = '{}' AND tablename <> '_sqlx_migrations' \
                 AND $1 IS NOT NULL",
                db.schema
            ),
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' \
             AND name <> 'sqlite_sequence' AND $1 IS NOT NULL",
            uuid::Uuid::nil(),
        )
        .await;
    assert_eq!(tables, 0);
    db.store.migrate().await.expect("redo");
    submit(&db.store, "works again").await;
}

/// One clock: a task's creation, its statuses and its log rows carry the
/// database's time, whichever host wrote them.
#[tokio::test]
async fn every_stored_timestamp_is_the_databases() {
    let Some(db) = TestDb::new().await else { return };
    let task = submit(&db.store, "what time is it").await;
    // Written in the submit's transaction by the database itself.
    let (key_at, created_at): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "SELECT k.created_at, t.created_at FROM idempotency_keys k JOIN tasks t ON t.id = k.task_id WHERE t.id = $1",
    )
    .bind(task.0)
    .fetch_one(db.pool())
    .await
    .expect("times");
    assert_eq!(created_at, key_at, "created_at is the database's");

    // A status built on this host with this host's clock...
    let mut working = TaskEvent::status(TaskState::Working, None);
    if let TaskEvent::Status(status) = &mut working {
        status.timestamp = Some(chrono::Utc::now() - chrono::Duration::hours(3));
    }
    let folded = db.store.task_append(task, &[working], None).await.expect("append");
    // ...is stamped with the database's time, as its log row is.
    let (logged_at, status_at): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "SELECT e.created_at, t.status_at FROM task_events e JOIN tasks t ON t.id = e.task_id
         WHERE t.id = $1 AND e.seq = t.version",
    )
    .bind(task.0)
    .fetch_one(db.pool())
    .await
    .expect("times");
    assert_eq!(status_at, logged_at);
    assert_eq!(folded.status.timestamp, Some(logged_at));
    assert_eq!(folded.status_at, logged_at);
}

/// Retention deletes what finished long enough ago, with everything that
/// hangs off it, and nothing else.
async fn retention_deletes_long_finished_tasks_with_their_rows_and_nothing_else(db: TestDb) {
    let old_done = submit(&db.store, "old and done").await;
    let recent_done = submit(&db.store, "recently done").await;
    let old_open = submit(&db.store, "old but open").await;
    for task in [old_done, recent_done] {
        db.store.task_append(task, &[TaskEvent::status(TaskState::Completed, None)], None).await.expect("finish");
    }
    for task in [old_done, recent_done] {
        db.exec(
            "UPDATE jobs SET state = 'done', finished_at = now() WHERE task_id = $1",
            "UPDATE jobs SET state = 'done', finished_at = run_at WHERE task_id = $1",
            task.0,
        )
        .await
        .expect("jobs done");
    }
    // Age two of them by 40 days. The database freezes finished tasks, so
    // this test-only rewrite of history is made with that trigger off.
    match db.driver {
        crate::harness::Driver::Postgres => {
            sqlx::query("ALTER TABLE tasks DISABLE TRIGGER tasks_terminal_is_final")
                .execute(db.pool())
                .await
                .expect("off");
            sqlx::query("UPDATE tasks SET status_at = now() - interval '40 days' WHERE id = ANY($1)")
                .bind(vec![old_done.0, old_open.0])
                .execute(db.pool())
                .await
                .expect("age");
            sqlx::query("ALTER TABLE tasks ENABLE TRIGGER tasks_terminal_is_final")
                .execute(db.pool())
                .await
                .expect("on");
        }
        crate::harness::Driver::Sqlite => {
            // No DISABLE TRIGGER: dropped and created again as it was.
            let pool = db.store.sqlite_pool().expect("embedded");
            let trigger: String = sqlx::query_scalar(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'tasks_terminal_is_final'",
            )
            .fetch_one(pool)
            .await
            .expect("trigger");
            sqlx::query("DROP TRIGGER tasks_terminal_is_final").execute(pool).await.expect("off");
            for task in [old_done, old_open] {
                sqlx::query("UPDATE tasks SET status_at = status_at - 40 * 86400000000 WHERE id = $1")
                    .bind(task.0)
                    .execute(pool)
                    .await
                    .expect("age");
            }
            sqlx::query(sqlx::AssertSqlSafe(trigger)).execute(pool).await.expect("on");
        }
    }

    let swept = db.store.retention_sweep(std::time::Duration::from_secs(30 * 86_400), 500, 20).await.expect("sweep");
    assert_eq!(swept.tasks, 1);
    let count = |sql: &'static str, id: uuid::Uuid| {
        let db = &db;
        async move { db.count(sql, sql, id).await }
    };
    for (table, sql) in [
        ("tasks", "SELECT count(*) FROM tasks WHERE id = $1"),
        ("task_events", "SELECT count(*) FROM task_events WHERE task_id = $1"),
        ("jobs", "SELECT count(*) FROM jobs WHERE task_id = $1"),
        ("idempotency_keys", "SELECT count(*) FROM idempotency_keys WHERE task_id = $1"),
    ] {
        // On PostgreSQL the log is partitioned by creation time and a
        // deleted task's events go with their window (log_windows.rs).
        if table == "task_events" && db.driver == crate::harness::Driver::Postgres {
            assert!(count(sql, recent_done.0).await > 0 && count(sql, old_open.0).await > 0);
            continue;
        }
        assert_eq!(count(sql, old_done.0).await, 0, "{table}: the old finished task's rows are gone");
        assert!(count(sql, recent_done.0).await > 0, "{table}: a recent one is kept");
        assert!(count(sql, old_open.0).await > 0, "{table}: an open task is kept however old");
    }
}

/// Submits arriving together: on PostgreSQL they share transactions (the
/// new-task batcher), on the embedded store its writer groups them. Either
/// way a key creates one task, a key used twice at once and a key already
/// taken answer with that task, and nothing else is written for them.
async fn concurrent_submits_create_one_task_per_key(db: TestDb) {
    let first = new_task("first");
    let taken = db.store.task_submit(first.clone()).await.expect("submit");
    let mut submits = Vec::new();
    for i in 0..48 {
        submits.push((format!("unique-{i}"), new_task(&format!("task {i}"))));
    }
    for i in 0..8 {
        let mut twin = new_task(&format!("twin {i}"));
        twin.idempotency_key = "twin".into();
        submits.push(("twin".into(), twin));
        let mut again = new_task(&format!("again {i}"));
        again.idempotency_key = first.idempotency_key.clone();
        submits.push(("taken".into(), again));
    }
    let running: Vec<_> = submits
        .into_iter()
        .map(|(label, new)| {
            let store = db.store.clone();
            tokio::spawn(async move { (label, store.task_submit(new).await.expect("submit")) })
        })
        .collect();
    let mut by_key: std::collections::HashMap<String, Vec<switchyard_engine::Submission>> = Default::default();
    for handle in running {
        let (label, submission) = handle.await.expect("joins");
        by_key.entry(label).or_default().push(submission);
    }
    for (label, submissions) in &by_key {
        let created = submissions.iter().filter(|s| s.created).count();
        let expected = usize::from(label != "taken");
        assert_eq!(created, expected, "{label}: {created} created");
        let ids: std::collections::HashSet<_> = submissions.iter().map(|s| s.task.id).collect();
        assert_eq!(ids.len(), 1, "{label}: every submit of one key answers with one task");
    }
    assert_eq!(by_key["taken"][0].task.id, taken.task.id);
    let created: Vec<_> = by_key.values().flatten().filter(|s| s.created).collect();
    for submission in &created {
        assert_eq!(db.store.task_jobs(submission.task.id).await.expect("jobs").len(), 1, "one job each");
        assert_eq!(status_trail(&db.store, submission.task.id).await, ["submitted"]);
    }
    if db.driver == crate::harness::Driver::Postgres {
        // Tasks written in one transaction share its start time.
        let times: std::collections::HashSet<_> = created.iter().map(|s| s.task.created_at).collect();
        assert!(
            times.len() < created.len(),
            "{} tasks in {} transactions: nothing was batched",
            created.len(),
            times.len()
        );
        let pool = db.store.pg_pool().expect("PostgreSQL");
        let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks").fetch_one(pool).await.expect("count");
        let keys: i64 =
            sqlx::query_scalar("SELECT count(*) FROM idempotency_keys").fetch_one(pool).await.expect("count");
        assert_eq!((tasks, keys), (50, 50), "the first, 48 unique and the twin: nothing else");
    }
}

/// A batch the database refuses for one member's value is written again a
/// member at a time: that member fails, every other is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_the_database_refuses_fails_alone_not_its_batch() {
    let Some(db) = TestDb::new().await else { return };
    let running: Vec<_> = (0..24)
        .map(|i| {
            let store = db.store.clone();
            // PostgreSQL stores no NUL in JSON text: this one is refused.
            let text = if i == 11 { "bad\u{0}value".to_owned() } else { format!("fine {i}") };
            tokio::spawn(async move { (i, store.task_submit(new_task(&text)).await) })
        })
        .collect();
    for handle in running {
        let (i, outcome) = handle.await.expect("joins");
        match outcome {
            Ok(submission) if i != 11 => assert!(submission.created, "{i}"),
            Err(error) if i == 11 => assert!(error.is_unstorable_input(), "refused for its value: {error}"),
            other => panic!("submit {i}: {other:?}"),
        }
    }
    let pool = db.store.pg_pool().expect("PostgreSQL");
    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks").fetch_one(pool).await.expect("count");
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys").fetch_one(pool).await.expect("count");
    assert_eq!((tasks, keys), (23, 23));
}

on_both_drivers!(
    submit_writes_task_log_and_job_in_one_go,
    idempotency_keys_are_per_caller,
    a_task_rejected_at_creation_gets_no_job,
    appends_fold_into_the_snapshot_in_log_order,
    illegal_transitions_and_terminal_writes_are_refused_and_change_nothing,
    the_database_itself_refuses_to_reopen_a_terminal_task_or_edit_the_log,
    callers_see_only_their_own_tasks,
    cancel_is_idempotent_and_refused_on_other_terminal_states,
    history_returns_the_latest_messages_oldest_first,
    migrations_revert_and_reapply,
    retention_deletes_long_finished_tasks_with_their_rows_and_nothing_else,
    concurrent_submits_create_one_task_per_key,
);
