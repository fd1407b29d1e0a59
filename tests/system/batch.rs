//! Group commit of work already underway: folds of different tasks, and
//! job completions, written together. Each member is answered as it would
//! be alone — a member whose lease was taken over, whose task ended or
//! whose events the task refuses is refused (and writes nothing it would
//! not have written alone), while its batch-mates commit. On the embedded
//! store the same calls go through its one writer.

use std::collections::HashSet;
use std::time::Duration;

use a2a::{Artifact, Part};
use switchyard_engine::{
    ArtifactUpdate, ClaimedJob, Delegation, FoldRequest, JobState, StoreError, TaskEvent, TaskId, TaskState,
};

use crate::harness::{Driver, TestDb, caller, expire_lease, on_both_drivers, status_trail, submit};

const LEASE: Duration = Duration::from_secs(30);

fn checkpoint(remote: &str) -> Delegation {
    Delegation {
        agent: "echo".into(),
        remote_task_id: Some(remote.into()),
        remote_context_id: Some(format!("ctx-{remote}")),
        forwarded_message_id: Some(format!("m-{remote}")),
        forwarded_seq: Some(2),
        acked_seq: Some(2),
        question_id: None,
    }
}

fn artifact(text: &str) -> TaskEvent {
    TaskEvent::Artifact(ArtifactUpdate {
        artifact: Artifact {
            artifact_id: "out".into(),
            name: None,
            description: None,
            parts: vec![Part::text(text)],
            metadata: None,
            extensions: None,
        },
        append: false,
        last_chunk: true,
    })
}

/// Claims the delegate job of each task, in the order given.
async fn claim_each(db: &TestDb, tasks: &[TaskId]) -> Vec<ClaimedJob> {
    let mut jobs = db.store.job_claim("w1", tasks.len() as i64, LEASE).await.expect("claim");
    assert_eq!(jobs.len(), tasks.len());
    jobs.sort_by_key(|job| tasks.iter().position(|t| *t == job.lease.task_id));
    jobs
}

async fn a_batch_of_folds_refuses_its_stale_and_ended_members_alone(db: TestDb) {
    let mut tasks = Vec::new();
    for name in ["working", "done", "taken-over", "canceled", "refused", "also-working"] {
        tasks.push(submit(&db.store, name).await);
    }
    let jobs = claim_each(&db, &tasks).await;
    // The third's lease is taken over by another worker.
    expire_lease(&db, jobs[2].lease.job_id).await;
    db.store.job_rescue_expired(10, &[]).await.expect("rescue");
    let takeover = db.store.job_claim("w2", 1, LEASE).await.expect("claim").remove(0);
    assert_eq!(takeover.lease.task_id, tasks[2]);
    // The fourth is canceled by its client meanwhile.
    db.store.task_cancel(&caller(), tasks[3], None).await.expect("cancel");

    let fold = |i: usize, events: Vec<TaskEvent>, finish: bool| FoldRequest {
        lease: jobs[i].lease.clone(),
        checkpoint: Some(checkpoint(&format!("r{i}"))),
        events,
        finish,
    };
    let working = || TaskEvent::status(TaskState::Working, None);
    let answers = db
        .store
        .delegation_fold_together(vec![
            fold(0, vec![working(), artifact("zero")], false),
            fold(1, vec![working(), artifact("one"), TaskEvent::status_with_text(TaskState::Completed, "ok")], true),
            fold(2, vec![working(), artifact("stale")], false),
            fold(3, vec![working()], true),
            // A task cannot go back to SUBMITTED: refused by the state machine.
            fold(4, vec![working(), TaskEvent::status(TaskState::Submitted, None)], false),
            fold(5, vec![working()], false),
        ])
        .await;
    assert_eq!(answers.len(), 6);

    // The members that could commit did.
    for i in [0, 1, 5] {
        let fold = answers[i].as_ref().unwrap_or_else(|e| panic!("member {i}: {e}"));
        assert!(!fold.ended && !fold.requeued, "member {i}");
    }
    assert_eq!(answers[0].as_ref().expect("0").task.state, TaskState::Working);
    assert_eq!(status_trail(&db.store, tasks[0]).await, ["submitted", "working"]);
    assert_eq!(db.store.delegation_get(tasks[0]).await.expect("read"), Some(checkpoint("r0")));
    assert_eq!(status_trail(&db.store, tasks[1]).await, ["submitted", "working", "completed"]);
    let settled = &db.store.task_jobs(tasks[1]).await.expect("jobs")[0];
    assert_eq!(settled.state, JobState::Done, "the finishing member settled its job");
    assert_eq!(db.store.task_get(&caller(), tasks[1]).await.expect("get").artifacts.len(), 1);
    assert_eq!(status_trail(&db.store, tasks[5]).await, ["submitted", "working"]);

    // The stale lease wrote nothing, not even its checkpoint; the new holder still holds.
    assert!(matches!(answers[2], Err(StoreError::LeaseLost(job)) if job == jobs[2].lease.job_id), "{:?}", answers[2]);
    assert_eq!(status_trail(&db.store, tasks[2]).await, ["submitted"]);
    assert_eq!(db.store.delegation_get(tasks[2]).await.expect("read"), None);
    let held = db.store.job_heartbeat(&[&takeover.lease], LEASE).await.expect("beat");
    assert_eq!(held, vec![takeover.lease.job_id]);

    // The canceled task keeps its ending: its events are refused, its
    // checkpoint kept (the remote task id is what cancels the remote task).
    let ended = answers[3].as_ref().expect("an ended task's fold is answered, not failed");
    assert!(ended.ended);
    assert_eq!(ended.task.state, TaskState::Canceled);
    assert_eq!(status_trail(&db.store, tasks[3]).await, ["submitted", "canceled"]);
    assert_eq!(db.store.delegation_get(tasks[3]).await.expect("read"), Some(checkpoint("r3")));

    // The refused events changed nothing.
    assert!(matches!(answers[4], Err(StoreError::Rejected { .. })), "{:?}", answers[4]);
    assert_eq!(status_trail(&db.store, tasks[4]).await, ["submitted"]);
    assert_eq!(db.store.delegation_get(tasks[4]).await.expect("read"), None);

    if db.driver == Driver::Postgres {
        // One transaction: every row it logged carries its start time.
        let pool = db.store.pg_pool().expect("PostgreSQL");
        let ids: Vec<uuid::Uuid> = [0, 1, 5].iter().map(|&i| tasks[i].0).collect();
        let times: Vec<chrono::DateTime<chrono::Utc>> =
            sqlx::query_scalar("SELECT DISTINCT created_at FROM task_events WHERE task_id = ANY($1) AND seq > 2")
                .bind(&ids)
                .fetch_all(pool)
                .await
                .expect("times");
        assert_eq!(times.len(), 1, "the three members were written in one transaction: {times:?}");
    }
}

/// Completions arriving together share a statement; a lease that was lost
/// is refused alone.
async fn concurrent_completions_are_fenced_each_alone(db: TestDb) {
    let mut tasks = Vec::new();
    for i in 0..40 {
        tasks.push(submit(&db.store, &format!("job {i}")).await);
    }
    let jobs = claim_each(&db, &tasks).await;
    expire_lease(&db, jobs[7].lease.job_id).await;
    db.store.job_rescue_expired(10, &[]).await.expect("rescue");
    let running: Vec<_> = jobs
        .iter()
        .map(|job| {
            let (store, lease) = (db.store.clone(), job.lease.clone());
            tokio::spawn(async move { (lease.job_id, store.job_complete(&lease, &[]).await) })
        })
        .collect();
    let mut done = HashSet::new();
    for handle in running {
        match handle.await.expect("joins") {
            (job, Ok(())) => assert!(done.insert(job)),
            (job, Err(StoreError::LeaseLost(lost))) => assert_eq!((job, lost), (jobs[7].lease.job_id, job)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(done.len(), 39);
    for (i, task) in tasks.iter().enumerate() {
        let state = db.store.task_jobs(*task).await.expect("jobs")[0].state;
        assert_eq!(state, if i == 7 { JobState::Ready } else { JobState::Done }, "job {i}");
    }
    // Each completion is one-shot.
    assert!(matches!(db.store.job_complete(&jobs[0].lease, &[]).await, Err(StoreError::LeaseLost(_))));
}

/// Folds of many tasks at once through the lanes: every one lands, and on
/// PostgreSQL they shared transactions.
async fn concurrent_folds_land_each_once(db: TestDb) {
    let mut tasks = Vec::new();
    for i in 0..48 {
        tasks.push(submit(&db.store, &format!("fold {i}")).await);
    }
    let jobs = claim_each(&db, &tasks).await;
    let running: Vec<_> = jobs
        .iter()
        .enumerate()
        .map(|(i, job)| {
            let (store, lease) = (db.store.clone(), job.lease.clone());
            tokio::spawn(async move {
                let cp = checkpoint(&format!("r{i}"));
                store.delegation_fold(&lease, Some(&cp), &[TaskEvent::status(TaskState::Working, None)], false).await?;
                let end = [artifact(&format!("out {i}")), TaskEvent::status_with_text(TaskState::Completed, "ok")];
                store.delegation_fold(&lease, None, &end, true).await
            })
        })
        .collect();
    for handle in running {
        let fold = handle.await.expect("joins").expect("fold");
        assert_eq!(fold.task.state, TaskState::Completed);
    }
    for (i, task) in tasks.iter().enumerate() {
        assert_eq!(status_trail(&db.store, *task).await, ["submitted", "working", "completed"], "task {i}");
        assert_eq!(db.store.task_jobs(*task).await.expect("jobs")[0].state, JobState::Done);
        assert_eq!(db.store.delegation_get(*task).await.expect("read"), Some(checkpoint(&format!("r{i}"))));
    }
    if db.driver == Driver::Postgres {
        let pool = db.store.pg_pool().expect("PostgreSQL");
        let (rows, transactions): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(DISTINCT created_at) FROM task_events \
             WHERE kind = 'status' AND payload->>'state' = 'TASK_STATE_COMPLETED'",
        )
        .fetch_one(pool)
        .await
        .expect("count");
        assert_eq!(rows, 48);
        assert!(transactions < 48, "48 completions in {transactions} transactions: nothing was batched");
    }
}

on_both_drivers!(
    a_batch_of_folds_refuses_its_stale_and_ended_members_alone,
    concurrent_completions_are_fenced_each_alone,
    concurrent_folds_land_each_once,
);
