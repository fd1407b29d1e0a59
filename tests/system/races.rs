//! Races, not happy paths: many claimers, stale holders, cancels against
//! completions, duplicate submits.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_engine::{JobState, StoreError, TaskEvent, TaskState};

use crate::harness::{TestDb, caller, expire_lease, new_task, status_trail, submit};

const LEASE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_take_every_job_exactly_once() {
    let Some(db) = TestDb::new().await else { return };
    const JOBS: usize = 400;
    for i in 0..JOBS {
        submit(&db.store, &format!("job {i}")).await;
    }
    let claimed = Arc::new(Mutex::new(Vec::new()));
    let mut claimers = Vec::new();
    for worker in 0..8 {
        let store = db.another_store().await;
        let claimed = claimed.clone();
        claimers.push(tokio::spawn(async move {
            let name = format!("w{worker}");
            loop {
                let jobs = store.job_claim(&name, 7, LEASE).await.expect("claim");
                if jobs.is_empty() {
                    return;
                }
                for job in jobs {
                    store.job_complete(&job.lease, &[]).await.expect("complete under a live lease");
                    claimed.lock().expect("lock").push(job.lease.job_id);
                }
            }
        }));
    }
    for c in claimers {
        c.await.expect("claimer");
    }
    let claimed = claimed.lock().expect("lock").clone();
    let unique: HashSet<_> = claimed.iter().collect();
    assert_eq!(claimed.len(), JOBS, "every job claimed");
    assert_eq!(unique.len(), JOBS, "no job claimed twice");
    let not_done: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state <> 'done' OR attempt <> 1")
        .fetch_one(db.pool())
        .await
        .expect("count");
    assert_eq!(not_done, 0);
}

#[tokio::test]
async fn an_expired_lease_is_reclaimed_and_the_stale_holder_is_fenced_out() {
    let Some(db) = TestDb::new().await else { return };
    let id = submit(&db.store, "x").await;
    let stale = db.store.job_claim("w1", 1, LEASE).await.expect("claim").remove(0);
    expire_lease(&db, stale.lease.job_id).await;
    db.store.job_rescue_expired(10, &[]).await.expect("rescue");
    let fresh = db.store.job_claim("w2", 1, LEASE).await.expect("reclaim").remove(0);
    assert_eq!(fresh.lease.job_id, stale.lease.job_id);
    assert!(fresh.lease.token > stale.lease.token);
    assert_eq!(fresh.lease.attempt, 2);

    // The stale worker wakes up and tries every write it could make.
    let done = [TaskEvent::status(TaskState::Completed, None)];
    assert!(matches!(db.store.job_complete(&stale.lease, &done).await, Err(StoreError::LeaseLost(_))));
    assert!(matches!(db.store.job_retry(&stale.lease, "x", LEASE, &[]).await, Err(StoreError::LeaseLost(_))));
    assert!(matches!(db.store.job_release(&stale.lease).await, Err(StoreError::LeaseLost(_))));
    assert!(db.store.job_heartbeat(&[&stale.lease], LEASE).await.expect("beat").is_empty());
    assert_eq!(status_trail(&db.store, id).await, ["submitted"], "the stale holder wrote nothing");

    db.store.job_complete(&fresh.lease, &[TaskEvent::status(TaskState::Rejected, None)]).await.expect("fresh wins");
    assert_eq!(status_trail(&db.store, id).await, ["submitted", "rejected"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_racing_a_completion_leaves_exactly_one_terminal_state() {
    let Some(db) = TestDb::new().await else { return };
    let other = db.another_store().await;
    let mut outcomes = (0, 0);
    for i in 0..40 {
        let id = submit(&db.store, &format!("race {i}")).await;
        let job = db.store.job_claim("w", 1, LEASE).await.expect("claim").remove(0);
        let done = [TaskEvent::status(TaskState::Completed, None)];
        let caller = caller();
        let (canceled, completed) =
            tokio::join!(other.task_cancel(&caller, id, None), db.store.job_complete(&job.lease, &done));
        let final_state = db.store.task_load(id).await.expect("load").state;
        match (canceled, completed) {
            (Ok(task), Err(e)) => {
                assert_eq!(task.state, TaskState::Canceled);
                assert_eq!(e.terminal_state(), Some(TaskState::Canceled), "{e:?}");
                assert_eq!(final_state, TaskState::Canceled);
                outcomes.0 += 1;
            }
            (Err(e), Ok(())) => {
                assert_eq!(e.terminal_state(), Some(TaskState::Completed), "{e:?}");
                assert_eq!(final_state, TaskState::Completed);
                outcomes.1 += 1;
            }
            (c, d) => panic!("exactly one must win: cancel={c:?} complete={d:?}"),
        }
        let terminal =
            status_trail(&db.store, id).await.into_iter().filter(|s| s == "canceled" || s == "completed").count();
        assert_eq!(terminal, 1);
        // The losing completion's job is still leased; the worker closes it without events.
        if final_state == TaskState::Canceled {
            db.store.job_complete(&job.lease, &[]).await.expect("close");
        }
        assert!(db.store.task_jobs(id).await.expect("jobs").iter().all(|j| j.state == JobState::Done));
    }
    assert_eq!(outcomes.0 + outcomes.1, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicate_submits_create_one_task() {
    let Some(db) = TestDb::new().await else { return };
    let new = new_task("once");
    let mut submits = Vec::new();
    for _ in 0..16 {
        let store = db.another_store().await;
        let new = new.clone();
        submits.push(tokio::spawn(async move { store.task_submit(new).await.expect("submit") }));
    }
    let mut ids = HashSet::new();
    let mut created = 0;
    for s in submits {
        let submission = s.await.expect("join");
        ids.insert(submission.task.id);
        created += usize::from(submission.created);
    }
    assert_eq!(ids.len(), 1, "every submit answers with the same task");
    assert_eq!(created, 1, "exactly one submit created it");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks").fetch_one(db.pool()).await.expect("tasks");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(db.pool()).await.expect("jobs");
    assert_eq!((rows, jobs), (1, 1));
}
