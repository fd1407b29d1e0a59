//! The event log on PostgreSQL is partitioned into windows of task
//! creation time: each task's events lie in the window of its id (a
//! UUIDv7), windows are made ahead of the clock, and retention drops a
//! window whole once it is past — moving out the events of the tasks
//! still kept — instead of deleting its rows one by one. Reads, replay
//! from a sequence number and the append-only guard hold across windows,
//! the default partition and the history written before partitioning.

use std::time::Duration;

use switchyard_engine::{LogRotation, StoredEvent, TaskEvent, TaskFilter, TaskId, TaskState};

use crate::harness::{Driver, TestDb, caller, submit, user_message};

/// A window as the catalog has it: name and `[from, to)`.
#[derive(Debug, Clone)]
struct Window {
    name: String,
    from: uuid::Uuid,
    to: uuid::Uuid,
}

async fn windows(db: &TestDb) -> Vec<Window> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'task_events'::regclass ORDER BY 1",
    )
    .fetch_all(db.pool())
    .await
    .expect("windows");
    rows.into_iter()
        .filter_map(|(name, bound)| {
            let mut quoted = bound.split('\'').skip(1).step_by(2);
            let from = quoted.next()?.parse().ok()?;
            let to = quoted.next()?.parse().ok()?;
            Some(Window { name, from, to })
        })
        .collect()
}

/// The partition holding a task's log rows (each task's rows lie in one).
async fn partitions_of(db: &TestDb, task: TaskId) -> Vec<String> {
    sqlx::query_scalar("SELECT DISTINCT tableoid::regclass::text FROM task_events WHERE task_id = $1")
        .bind(task.0)
        .fetch_all(db.pool())
        .await
        .expect("partition")
}

async fn log_of(db: &TestDb, task: TaskId) -> Vec<(i64, String)> {
    let events: Vec<StoredEvent> = db.store.task_events(task, 0, 1000).await.expect("events");
    events.into_iter().map(|e| (e.seq, e.event.to_payload().to_string())).collect()
}

/// The database's clock, in milliseconds.
async fn now_ms(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT (extract(epoch FROM now()) * 1000)::bigint").fetch_one(db.pool()).await.expect("now")
}

fn ms_of(id: uuid::Uuid) -> i64 {
    let b = id.as_bytes();
    i64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
}

fn uuid_at(ms: i64) -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    bytes[6] = 0x70;
    bytes[15] = 1;
    uuid::Uuid::from_bytes(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_logs_into_the_window_of_its_creation_and_windows_are_made_ahead() {
    let Some(db) = TestDb::new().await else { return };
    let all = windows(&db).await;
    let names: Vec<&str> = all.iter().map(|w| w.name.as_str()).collect();
    assert!(names.contains(&"task_events_history"), "{names:?}");
    // The history (what was logged before partitioning) and the current
    // day's window and three ahead, contiguous.
    let mut days: Vec<&Window> = all.iter().filter(|w| w.name != "task_events_history").collect();
    days.sort_by_key(|w| w.from);
    assert_eq!(days.len(), 4, "{names:?}");
    for pair in days.windows(2) {
        assert_eq!(pair[0].to, pair[1].from, "windows are contiguous: {names:?}");
        assert_eq!(ms_of(pair[1].to) - ms_of(pair[1].from), 86_400_000, "a day each");
    }
    let history = all.iter().find(|w| w.name == "task_events_history").expect("history");
    assert_eq!(history.to, days[0].from, "the first window begins where the history ends");
    assert!(ms_of(days[3].to) - now_ms(&db).await >= 3 * 86_400_000, "three days ahead are ready");

    let task = submit(&db.store, "logged in today's window").await;
    let today = days.iter().find(|w| w.from <= task.0 && task.0 < w.to).expect("a window holds the task's id");
    assert_eq!(partitions_of(&db, task).await, std::slice::from_ref(&today.name));

    // Made again: nothing changes.
    assert_eq!(db.store.log_rotate(None).await.expect("rotate"), LogRotation::default());
    assert_eq!(windows(&db).await.len(), all.len());
}

/// The heart of it: a past window is dropped whole; a finished task in it
/// goes with it, a kept one's events are moved out first and read exactly
/// as before, replay from a sequence number included; writers of other
/// windows go on meanwhile; the append-only guard holds wherever rows lie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_a_past_window_whole_and_moves_out_what_is_kept() {
    let width = Duration::from_secs(2);
    let Some(db) = TestDb::with_log_window(Driver::Postgres, width).await else { return };
    // Windows from now on, however long the migration took on a busy machine.
    db.store.log_rotate(None).await.expect("windows ahead");
    let done = submit(&db.store, "finishes at once").await;
    let kept = submit(&db.store, "stays open").await;
    db.store.task_append(done, &[TaskEvent::status(TaskState::Completed, None)], None).await.expect("finish");
    db.store.task_append(kept, &[TaskEvent::Message(user_message("more"))], None).await.expect("more");
    let window = windows(&db).await.into_iter().find(|w| w.from <= kept.0 && kept.0 < w.to).expect("window");
    assert_eq!(partitions_of(&db, done).await, std::slice::from_ref(&window.name));
    let kept_log = log_of(&db, kept).await;
    assert_eq!(kept_log.len(), 3, "{kept_log:?}");
    sqlx::query("UPDATE jobs SET state = 'done', finished_at = now() WHERE task_id = $1")
        .bind(done.0)
        .execute(db.pool())
        .await
        .expect("job done");

    // Past the window's end and then the retention (1 s), by the database's clock.
    let retention = Duration::from_secs(1);
    while now_ms(&db).await < ms_of(window.to) + 1_100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A task of a later window is written to all through the sweep.
    let live = submit(&db.store, "written meanwhile").await;
    let writer = {
        let store = db.store.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                let event = TaskEvent::Message(user_message(&format!("line {i}")));
                store.task_append(live, &[event], None).await.expect("append meanwhile");
            }
        })
    };
    let swept = db.store.retention_sweep(retention, 500, 20).await.expect("sweep");
    writer.await.expect("writer");

    assert_eq!(swept.tasks, 1, "{swept:?}");
    assert!(swept.log.dropped >= 1, "{swept:?}");
    assert_eq!(swept.log.moved, 3, "the kept task's three events moved: {swept:?}");
    assert!(!windows(&db).await.iter().any(|w| w.name == window.name), "the window is gone");
    let gone: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NULL")
        .bind(&window.name)
        .fetch_one(db.pool())
        .await
        .expect("regclass");
    assert!(gone, "its table was dropped, not left detached");
    let done_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM task_events WHERE task_id = $1")
        .bind(done.0)
        .fetch_one(db.pool())
        .await
        .expect("count");
    assert_eq!(done_rows, 0, "the finished task's log went with its window");

    // The kept task reads exactly as before, from the default partition.
    assert_eq!(partitions_of(&db, kept).await, ["task_events_default"]);
    assert_eq!(log_of(&db, kept).await, kept_log);
    let tail = db.store.task_events(kept, 2, 100).await.expect("replay");
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [3], "replay from a sequence number");
    db.store.task_append(kept, &[TaskEvent::Message(user_message("after"))], None).await.expect("append after");
    let seqs: Vec<i64> = log_of(&db, kept).await.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4], "the sequence goes on without a gap");

    // The writer of the later window lost nothing and saw no gap.
    let live_seqs: Vec<i64> = log_of(&db, live).await.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(live_seqs, (1..=42).collect::<Vec<_>>());

    // Listing reads across partitions: the moved task's and the live one's
    // messages, each from where it lies now.
    let page = db.store.task_list(&caller(), &TaskFilter::default(), 10, None, true).await.expect("list");
    let ids: Vec<TaskId> = page.tasks.iter().map(|t| t.id).collect();
    assert!(ids.contains(&kept) && ids.contains(&live) && !ids.contains(&done), "{ids:?}");

    // The append-only guard holds in the default partition and in a window.
    for task in [kept, live] {
        let edit = sqlx::query("UPDATE task_events SET kind = 'status' WHERE task_id = $1")
            .bind(task.0)
            .execute(db.pool())
            .await
            .expect_err("the log is append-only");
        assert!(edit.to_string().contains("append-only"), "{edit}");
    }

    // Windows ahead of the clock exist still.
    let now = now_ms(&db).await;
    let width_ms = i64::try_from(width.as_millis()).expect("ms");
    let ahead = uuid_at(now + 2 * width_ms);
    assert!(windows(&db).await.iter().any(|w| w.from <= ahead && ahead < w.to), "windows are made ahead");

    // The kept task ends and ages: its task row goes, then its events in
    // the default partition go with the orphan pass.
    db.store.task_append(kept, &[TaskEvent::status(TaskState::Completed, None)], None).await.expect("finish kept");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let swept = db.store.retention_sweep(retention, 500, 20).await.expect("sweep again");
    assert_eq!((swept.tasks, swept.log_orphans), (1, 5), "{swept:?}");
    // (Only the kept task's: on a slow machine the live task may have been
    // made after the windows made ahead ran out, and logs into the default.)
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM task_events_default WHERE task_id = $1")
        .bind(kept.0)
        .fetch_one(db.pool())
        .await
        .expect("left");
    assert_eq!(left, 0);
}

/// A window whose range already has rows in the default partition (written
/// while no window covered it) cannot be made; the others still are, and
/// those rows stay readable where they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_whose_rows_are_already_in_the_default_partition_is_skipped() {
    let width = Duration::from_secs(1);
    let Some(db) = TestDb::with_log_window(Driver::Postgres, width).await else { return };
    let ready = windows(&db).await;
    let last = ready.iter().map(|w| ms_of(w.to)).max().expect("windows");
    // A task created (by its id) two windows past the last one made.
    let early = uuid_at(last + 1_500);
    let template = submit(&db.store, "template").await;
    sqlx::query(
        "INSERT INTO tasks (id, tenant, owner, context_id, state, status, version) \
         SELECT $1, tenant, owner, context_id, state, status, 1 FROM tasks WHERE id = $2",
    )
    .bind(early)
    .bind(template.0)
    .execute(db.pool())
    .await
    .expect("task");
    sqlx::query("INSERT INTO task_events (task_id, seq, kind, payload) SELECT $1, 1, kind, payload FROM task_events WHERE task_id = $2 AND seq = 1")
        .bind(early)
        .bind(template.0)
        .execute(db.pool())
        .await
        .expect("event");
    assert_eq!(partitions_of(&db, TaskId(early)).await, ["task_events_default"]);

    // Once the clock reaches it, the rotation tries to make its window.
    while now_ms(&db).await < last + 1_000 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rotated = db.store.log_rotate(None).await.expect("rotate");
    assert!(rotated.created >= 1, "{rotated:?}");
    let after = windows(&db).await;
    let early_ms = ms_of(early);
    assert!(
        !after.iter().any(|w| ms_of(w.from) <= early_ms && early_ms < ms_of(w.to)),
        "not made over the default's rows"
    );
    assert!(after.iter().any(|w| ms_of(w.from) > early_ms), "the windows after it are made");
    assert_eq!(log_of(&db, TaskId(early)).await.len(), 1, "the rows stay readable");
    db.store.task_append(TaskId(early), &[TaskEvent::Message(user_message("next"))], None).await.expect("append");
    assert_eq!(partitions_of(&db, TaskId(early)).await, ["task_events_default"]);
}

/// What was logged before the log was partitioned is kept, readable, in
/// the history partition; reverting the migration puts it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_written_before_partitioning_is_kept_in_its_history() {
    let Some(db) = TestDb::new().await else { return };
    db.store.migrate_undo(20261207000001 - 1).await.expect("undo the partitioning");
    let partitioned: bool =
        sqlx::query_scalar("SELECT relkind = 'p' FROM pg_class WHERE oid = 'task_events'::regclass")
            .fetch_one(db.pool())
            .await
            .expect("kind");
    assert!(!partitioned);
    let before = submit(&db.store, "before partitioning").await;
    db.store.task_append(before, &[TaskEvent::Message(user_message("second"))], None).await.expect("append");
    let log = log_of(&db, before).await;
    // A task whose id is not a UUIDv7 of the past (imported, or made by hand).
    let odd = TaskId("f0000000-0000-4000-8000-000000000001".parse().expect("uuid"));
    sqlx::query(
        "INSERT INTO tasks (id, tenant, owner, context_id, state, status, version) \
         SELECT $1, tenant, owner, context_id, state, status, version FROM tasks WHERE id = $2",
    )
    .bind(odd.0)
    .bind(before.0)
    .execute(db.pool())
    .await
    .expect("odd task");
    sqlx::query(
        "INSERT INTO task_events SELECT $1, seq, kind, payload, created_at FROM task_events WHERE task_id = $2",
    )
    .bind(odd.0)
    .bind(before.0)
    .execute(db.pool())
    .await
    .expect("odd log");

    db.store.migrate().await.expect("partition");
    assert_eq!(partitions_of(&db, before).await, ["task_events_history"], "the old table, attached");
    assert_eq!(log_of(&db, before).await, log);
    assert_eq!(partitions_of(&db, odd).await, ["task_events_default"]);
    assert_eq!(log_of(&db, odd).await, log);
    let after = submit(&db.store, "after partitioning").await;
    let window = partitions_of(&db, after).await;
    assert!(
        window.len() == 1 && window[0] != "task_events_history" && window[0] != "task_events_default",
        "{window:?}"
    );

    db.store.migrate_undo(20261207000001 - 1).await.expect("undo again");
    assert_eq!(log_of(&db, before).await, log);
    assert_eq!(log_of(&db, odd).await, log);
    assert_eq!(log_of(&db, after).await.len(), 2);
    db.store.migrate().await.expect("and forward");
}
