//! The worker runtime in-process, with handlers that control timing: drain
//! and release, panics, retries, lost leases, NOTIFY wake-ups. Every test
//! runs on both store drivers (on SQLite, the wake-ups are in-process).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use switchyard_engine::{ClaimedJob, JobState, RetryPolicy, TaskEvent, TaskState};
use switchyard_worker::{Handler, JobContext, Outcome, Worker, WorkerConfig};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::harness::{TestDb, eventually, expire_lease, on_both_drivers, status_trail, submit};

const WAIT: Duration = Duration::from_secs(30);

fn config(id: &str) -> WorkerConfig {
    WorkerConfig {
        concurrency: 4,
        batch: 4,
        lease: Duration::from_secs(2),
        heartbeat: Duration::from_millis(200),
        poll_interval: Duration::from_millis(100),
        drain_timeout: Duration::from_millis(100),
        retry: RetryPolicy {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(20),
            ..RetryPolicy::default()
        },
        ..WorkerConfig::new(id)
    }
}

/// Holds every attempt until the gate opens (or the attempt is cancelled).
#[derive(Clone, Default)]
struct Gate(Arc<GateState>);

#[derive(Default)]
struct GateState {
    open: Notify,
    started: AtomicUsize,
}

impl std::ops::Deref for Gate {
    type Target = GateState;
    fn deref(&self) -> &GateState {
        &self.0
    }
}

impl Handler for Gate {
    async fn handle(&self, _job: ClaimedJob, ctx: JobContext) -> Outcome {
        self.started.fetch_add(1, Ordering::SeqCst);
        tokio::select! {
            () = self.open.notified() => Outcome::Done(vec![TaskEvent::status(TaskState::Completed, None)]),
            () = ctx.cancelled() => Outcome::Retry { error: "cancelled".into(), retry_after: None },
        }
    }
}

/// Answers each attempt from a script, one entry per attempt.
struct Script(Vec<fn() -> Outcome>, AtomicUsize);

impl Handler for Script {
    async fn handle(&self, _job: ClaimedJob, _ctx: JobContext) -> Outcome {
        let n = self.1.fetch_add(1, Ordering::SeqCst);
        (self.0[n.min(self.0.len() - 1)])()
    }
}

fn spawn<H: Handler>(
    db: &TestDb,
    config: WorkerConfig,
    handler: H,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let shutdown = CancellationToken::new();
    let worker = Worker::new(db.store.clone(), config, handler).expect("valid config");
    let token = shutdown.clone();
    (shutdown, tokio::spawn(async move { worker.run(token).await.expect("worker") }))
}

async fn job_states(db: &TestDb) -> Vec<(String, i32)> {
    let sql = "SELECT state, attempt FROM jobs ORDER BY id";
    match db.store.sqlite_pool() {
        Some(pool) => sqlx::query_as(sql).fetch_all(pool).await.expect("states"),
        None => sqlx::query_as(sql).fetch_all(db.pool()).await.expect("states"),
    }
}

async fn shutdown_releases_unfinished_work_without_spending_attempts(db: TestDb) {
    for i in 0..6 {
        submit(&db.store, &format!("{i}")).await;
    }
    let gate = Gate::default();
    let (shutdown, worker) = spawn(&db, config("w"), gate.clone());
    eventually(WAIT, "four attempts running", || async { gate.started.load(Ordering::SeqCst) == 4 }).await;
    shutdown.cancel();
    worker.await.expect("stopped");
    let states = job_states(&db).await;
    assert!(states.iter().all(|s| *s == ("ready".to_owned(), 0)), "all ready, attempts refunded: {states:?}");
}

async fn shutdown_lets_work_that_finishes_within_the_drain_timeout_finish(db: TestDb) {
    let task = submit(&db.store, "x").await;
    let gate = Gate::default();
    let (shutdown, worker) = spawn(&db, WorkerConfig { drain_timeout: WAIT, ..config("w") }, gate.clone());
    eventually(WAIT, "the attempt running", || async { gate.started.load(Ordering::SeqCst) == 1 }).await;
    shutdown.cancel();
    gate.open.notify_waiters();
    worker.await.expect("stopped");
    assert_eq!(status_trail(&db.store, task).await, ["submitted", "completed"]);
}

async fn a_new_job_is_picked_up_by_notify_not_by_polling(db: TestDb) {
    let slow_poll = WorkerConfig { poll_interval: Duration::from_secs(3600), ..config("w") };
    let (shutdown, worker) = spawn(&db, slow_poll, Script(vec![|| Outcome::Done(vec![])], AtomicUsize::new(0)));
    // Let the first (immediate) poll find nothing, so only a NOTIFY can wake it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let task = submit(&db.store, "wake up").await;
    eventually(WAIT, "the job done", || async {
        db.store.task_jobs(task).await.expect("jobs")[0].state == JobState::Done
    })
    .await;
    shutdown.cancel();
    worker.await.expect("stopped");
}

async fn a_retry_is_taken_up_when_due_by_a_timer_not_by_polling(db: TestDb) {
    // Polling once an hour, and a retry sends no NOTIFY: only the worker's
    // own timer for the job it put off can bring it back in time.
    let slow_poll = WorkerConfig { poll_interval: Duration::from_secs(3600), ..config("w") };
    let flaky = Script(
        vec![|| Outcome::Retry { error: "503".into(), retry_after: None }, || Outcome::Done(vec![])],
        AtomicUsize::new(0),
    );
    let (shutdown, worker) = spawn(&db, slow_poll, flaky);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let task = submit(&db.store, "again").await;
    eventually(WAIT, "done on the second attempt", || async {
        db.store.task_jobs(task).await.expect("jobs")[0].state == JobState::Done
    })
    .await;
    assert_eq!(db.store.task_jobs(task).await.expect("jobs")[0].attempt, 2);
    shutdown.cancel();
    worker.await.expect("stopped");
}

async fn transient_failures_retry_until_success(db: TestDb) {
    let task = submit(&db.store, "x").await; // 3 attempts
    let flaky = Script(
        vec![
            || Outcome::Retry { error: "503".into(), retry_after: None },
            || Outcome::Retry { error: "timeout".into(), retry_after: None },
            || Outcome::Done(vec![TaskEvent::status(TaskState::Completed, None)]),
        ],
        AtomicUsize::new(0),
    );
    let (shutdown, worker) = spawn(&db, config("w"), flaky);
    eventually(WAIT, "completed on the third attempt", || async {
        db.store.task_jobs(task).await.expect("jobs")[0].state == JobState::Done
    })
    .await;
    shutdown.cancel();
    worker.await.expect("stopped");
    let job = &db.store.task_jobs(task).await.expect("jobs")[0];
    assert_eq!((job.attempt, job.last_error.as_deref()), (3, Some("timeout")));
    assert_eq!(status_trail(&db.store, task).await, ["submitted", "completed"]);
}

async fn exhausted_retries_dead_letter_the_job_and_fail_the_task_with_the_reason(db: TestDb) {
    let task = submit(&db.store, "x").await;
    let down =
        Script(vec![|| Outcome::Retry { error: "connection refused".into(), retry_after: None }], AtomicUsize::new(0));
    let (shutdown, worker) = spawn(&db, config("w"), down);
    eventually(WAIT, "dead-lettered", || async {
        db.store.task_jobs(task).await.expect("jobs")[0].state == JobState::Dead
    })
    .await;
    shutdown.cancel();
    worker.await.expect("stopped");
    let failed = db.store.task_load(task).await.expect("task");
    assert_eq!(failed.state, TaskState::Failed);
    let reason = failed.status.message.as_ref().and_then(|m| m.text()).unwrap_or_default().to_owned();
    assert!(reason.contains("3 attempts") && reason.contains("connection refused"), "{reason}");
}

async fn permanent_failures_and_panics_are_told_apart(db: TestDb) {
    let task = submit(&db.store, "x").await;
    let script = Script(
        vec![|| panic!("handler bug"), || Outcome::Fail { reason: "agent said 400".into() }],
        AtomicUsize::new(0),
    );
    // A lease no busy machine outlasts: an expiry would write its own
    // last_error over the crash's.
    let (shutdown, worker) = spawn(&db, WorkerConfig { lease: Duration::from_secs(30), ..config("w") }, script);
    eventually(WAIT, "finished", || async { db.store.task_jobs(task).await.expect("jobs")[0].state == JobState::Done })
        .await;
    shutdown.cancel();
    worker.await.expect("the worker survives a panicking handler");
    let job = &db.store.task_jobs(task).await.expect("jobs")[0];
    assert_eq!(job.attempt, 2, "the panic cost one attempt");
    assert!(job.last_error.as_deref().unwrap_or_default().contains("crashed"), "{:?}", job.last_error);
    assert_eq!(status_trail(&db.store, task).await, ["submitted", "failed"]);
}

async fn a_worker_that_loses_its_lease_stops_and_writes_nothing(db: TestDb) {
    let task = submit(&db.store, "x").await;
    let gate = Gate::default();
    // One slot, held by the running attempt until a heartbeat finds the lease
    // gone, so this worker cannot re-claim the job ahead of the thief.
    let one_slot = WorkerConfig { concurrency: 1, batch: 1, ..config("slow") };
    let (shutdown, worker) = spawn(&db, one_slot, gate.clone());
    eventually(WAIT, "the attempt running", || async { gate.started.load(Ordering::SeqCst) == 1 }).await;
    // Another worker's rescue takes the job while this one still runs it.
    let job = db.store.task_jobs(task).await.expect("jobs")[0].id;
    expire_lease(&db, job).await;
    db.store.job_rescue_expired(10, &[]).await.expect("rescue");
    let thief = db.store.job_claim("thief", 1, Duration::from_secs(60)).await.expect("claim");
    assert_eq!(thief.len(), 1);
    // The slow worker's next heartbeat notices, and the attempt is abandoned.
    eventually(WAIT, "the gate's attempt cancelled", || async {
        let j = &db.store.task_jobs(task).await.expect("jobs")[0];
        j.lease_owner.as_deref() == Some("thief")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    gate.open.notify_waiters();
    shutdown.cancel();
    worker.await.expect("stopped");
    let j = &db.store.task_jobs(task).await.expect("jobs")[0];
    assert_eq!((j.state, j.lease_owner.as_deref()), (JobState::Leased, Some("thief")), "the thief still holds it");
    assert_eq!(status_trail(&db.store, task).await, ["submitted"], "the stale worker wrote nothing");
}

async fn a_worker_with_retention_deletes_tasks_finished_longer_ago(db: TestDb) {
    let done = submit(&db.store, "finishes at once").await;
    let open = submit(&db.store, "stays open").await;
    for task in [done, open] {
        db.exec(
            "UPDATE jobs SET state = 'done', finished_at = now() WHERE task_id = $1",
            "UPDATE jobs SET state = 'done', finished_at = run_at WHERE task_id = $1",
            task.0,
        )
        .await
        .expect("jobs done");
    }
    db.store.task_append(done, &[TaskEvent::status(TaskState::Completed, None)], None).await.expect("finish");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let config = WorkerConfig { retention: Some(Duration::from_secs(1)), ..config("sweeper") };
    let (shutdown, worker) = spawn(&db, config, Script(vec![|| Outcome::Done(vec![])], AtomicUsize::new(0)));
    eventually(WAIT, "the finished task swept", || async {
        db.store.task_load(done).await.is_err_and(|e| matches!(e, switchyard_engine::StoreError::TaskNotFound(_)))
    })
    .await;
    assert!(db.store.task_load(open).await.is_ok(), "an open task stays");
    shutdown.cancel();
    worker.await.expect("stopped");
}

on_both_drivers!(
    shutdown_releases_unfinished_work_without_spending_attempts,
    shutdown_lets_work_that_finishes_within_the_drain_timeout_finish,
    a_new_job_is_picked_up_by_notify_not_by_polling,
    a_retry_is_taken_up_when_due_by_a_timer_not_by_polling,
    transient_failures_retry_until_success,
    exhausted_retries_dead_letter_the_job_and_fail_the_task_with_the_reason,
    permanent_failures_and_panics_are_told_apart,
    a_worker_that_loses_its_lease_stops_and_writes_nothing,
    a_worker_with_retention_deletes_tasks_finished_longer_ago,
);
