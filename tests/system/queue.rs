//! The job queue, one operation at a time: claim, heartbeat, complete,
//! retry, dead-letter, requeue, release, rescue. Part of the store
//! conformance suite: every test runs on PostgreSQL and on SQLite.

use std::time::Duration;

use switchyard_engine::{JobFate, JobState, StoreError, TaskEvent, TaskState};

use crate::harness::{TestDb, expire_lease, on_both_drivers, status_trail, submit};

const LEASE: Duration = Duration::from_secs(30);

fn failed(reason: &str) -> Vec<TaskEvent> {
    vec![TaskEvent::status_with_text(TaskState::Failed, reason)]
}

async fn claims_take_ready_jobs_in_due_order_and_leave_future_ones(db: TestDb) {
    let a = submit(&db.store, "a").await;
    let b = submit(&db.store, "b").await;
    let overdue = submit(&db.store, "c").await;
    db.jobs_due_in(overdue, -60).await;
    let later = submit(&db.store, "d").await;
    db.jobs_due_in(later, 3600).await;

    let first = db.store.job_claim("w1", 1, LEASE).await.expect("claim");
    assert_eq!(first[0].lease.task_id, overdue, "the longest due first");
    let rest = db.store.job_claim("w1", 10, LEASE).await.expect("claim");
    assert_eq!(rest.iter().map(|j| j.lease.task_id).collect::<Vec<_>>(), vec![a, b], "not-yet-due jobs wait");
    let lease = &rest[0].lease;
    assert_eq!((lease.attempt, lease.token, lease.owner.as_str()), (1, 1, "w1"));
    assert!(db.store.job_claim("w2", 10, LEASE).await.expect("claim").is_empty());
}

async fn complete_appends_its_events_and_closes_the_job(db: TestDb) {
    let id = submit(&db.store, "x").await;
    let job = db.store.job_claim("w", 1, LEASE).await.expect("claim").remove(0);
    db.store.job_complete(&job.lease, &[TaskEvent::status(TaskState::Completed, None)]).await.expect("complete");
    let jobs = db.store.task_jobs(id).await.expect("jobs");
    assert_eq!(jobs[0].state, JobState::Done);
    assert!(jobs[0].lease_owner.is_none() && jobs[0].finished_at.is_some());
    assert_eq!(status_trail(&db.store, id).await, ["submitted", "completed"]);
    assert!(matches!(db.store.job_complete(&job.lease, &[]).await, Err(StoreError::LeaseLost(_))), "only once");
}

async fn heartbeats_extend_held_leases_and_report_lost_ones(db: TestDb) {
    submit(&db.store, "a").await;
    submit(&db.store, "b").await;
    let jobs = db.store.job_claim("w", 2, Duration::from_secs(5)).await.expect("claim");
    let (a, b) = (&jobs[0].lease, &jobs[1].lease);
    expire_lease(&db, b.job_id).await;
    db.store.job_rescue_expired(10, &[]).await.expect("rescue");
    let held = db.store.job_heartbeat(&[a, b], Duration::from_secs(60)).await.expect("beat");
    assert_eq!(held, vec![a.job_id]);
    let row = &db.store.task_jobs(a.task_id).await.expect("jobs")[0];
    assert!(row.lease_expires_at.expect("leased") > a.expires_at + chrono::Duration::seconds(30));
}

async fn retries_back_off_then_dead_letter_fails_the_task_and_requeue_revives_the_job(db: TestDb) {
    let id = submit(&db.store, "flaky").await; // max_attempts = 3
    for attempt in 1..=2 {
        let job = db.store.job_claim("w", 1, LEASE).await.expect("claim").remove(0);
        assert_eq!(job.lease.attempt, attempt);
        let fate =
            db.store.job_retry(&job.lease, "agent down", Duration::from_secs(3600), &failed("x")).await.expect("retry");
        assert!(matches!(fate, JobFate::RetryAt(at) if at > chrono::Utc::now() + chrono::Duration::minutes(59)));
        assert!(db.store.job_claim("w", 1, LEASE).await.expect("claim").is_empty(), "not before run_at");
        db.jobs_due_in(id, 0).await;
    }
    let job = db.store.job_claim("w", 1, LEASE).await.expect("claim").remove(0);
    let fate =
        db.store.job_retry(&job.lease, "agent down", Duration::from_secs(1), &failed("gave up")).await.expect("last");
    assert_eq!(fate, JobFate::Dead);
    assert_eq!(status_trail(&db.store, id).await, ["submitted", "failed"]);

    let dead = db.store.jobs_dead(10).await.expect("dead");
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].attempt, dead[0].last_error.as_deref()), (3, Some("agent down")));

    db.store.job_requeue(dead[0].id).await.expect("requeue");
    assert!(matches!(db.store.job_requeue(dead[0].id).await, Err(StoreError::JobNotDead { .. })));
    let again = db.store.job_claim("w", 1, LEASE).await.expect("claim").remove(0);
    assert_eq!(again.lease.attempt, 1, "a requeued job gets a fresh set of attempts");
    assert!(again.lease.token > job.lease.token, "fencing tokens never repeat");
}

async fn dead_lettering_a_task_that_already_ended_leaves_it_alone(db: TestDb) {
    let id = submit(&db.store, "x").await;
    let sql = "UPDATE jobs SET max_attempts = 1 WHERE task_id = $1";
    db.exec(sql, sql, id.0).await.expect("one");
    let job = db.store.job_claim("w", 1, LEASE).await.expect("claim").remove(0);
    db.store.task_cancel(&crate::harness::caller(), id, None).await.expect("cancel");
    let fate = db.store.job_retry(&job.lease, "boom", Duration::from_secs(1), &failed("gave up")).await.expect("retry");
    assert_eq!(fate, JobFate::Dead);
    assert_eq!(status_trail(&db.store, id).await, ["submitted", "canceled"]);
}

async fn release_gives_the_job_back_without_spending_the_attempt(db: TestDb) {
    submit(&db.store, "x").await;
    let job = db.store.job_claim("w1", 1, LEASE).await.expect("claim").remove(0);
    db.store.job_release(&job.lease).await.expect("release");
    let again = db.store.job_claim("w2", 1, LEASE).await.expect("claim").remove(0);
    assert_eq!(again.lease.attempt, 1);
    assert!(matches!(db.store.job_release(&job.lease).await, Err(StoreError::LeaseLost(_))));
}

async fn expired_leases_are_rescued_and_the_last_attempt_is_dead_lettered(db: TestDb) {
    let id = submit(&db.store, "x").await; // 3 attempts
    for round in 1..=3 {
        let job = db.store.job_claim("doomed", 1, LEASE).await.expect("claim").remove(0);
        expire_lease(&db, job.lease.job_id).await;
        let rescued = db.store.job_rescue_expired(10, &failed("lost its workers")).await.expect("rescue");
        if round < 3 {
            assert_eq!(rescued.requeued, vec![job.lease.job_id]);
        } else {
            assert_eq!(rescued.dead, vec![job.lease.job_id]);
        }
    }
    assert_eq!(status_trail(&db.store, id).await, ["submitted", "failed"]);
    let leased_now = db.store.job_rescue_expired(10, &[]).await.expect("nothing left");
    assert!(leased_now.requeued.is_empty() && leased_now.dead.is_empty());
}

async fn fenced_appends_stop_when_the_lease_is_gone(db: TestDb) {
    let id = submit(&db.store, "x").await;
    let job = db.store.job_claim("w", 1, LEASE).await.expect("claim").remove(0);
    db.store.task_append(id, &[TaskEvent::status(TaskState::Working, None)], Some(&job.lease)).await.expect("held");
    expire_lease(&db, job.lease.job_id).await;
    db.store.job_rescue_expired(10, &[]).await.expect("rescue");
    let err = db.store.task_append(id, &[TaskEvent::status(TaskState::Completed, None)], Some(&job.lease)).await;
    assert!(matches!(err, Err(StoreError::LeaseLost(_))));
    assert_eq!(status_trail(&db.store, id).await, ["submitted", "working"], "nothing from the stale holder");
}

async fn batch_completion_closes_only_the_jobs_whose_leases_still_hold(db: TestDb) {
    for i in 0..3 {
        submit(&db.store, &format!("{i}")).await;
    }
    let jobs = db.store.job_claim("w", 3, LEASE).await.expect("claim");
    expire_lease(&db, jobs[1].lease.job_id).await;
    db.store.job_rescue_expired(10, &[]).await.expect("rescue");
    let leases: Vec<_> = jobs.iter().map(|j| &j.lease).collect();
    let done = db.store.job_complete_many(&leases).await.expect("complete");
    let mut done_sorted = done.clone();
    done_sorted.sort();
    assert_eq!(done_sorted, vec![jobs[0].lease.job_id, jobs[2].lease.job_id]);
    let mut states = Vec::new();
    for job in &jobs {
        states.push(db.store.task_jobs(job.lease.task_id).await.expect("jobs")[0].state);
    }
    assert_eq!(states, [JobState::Done, JobState::Ready, JobState::Done]);
}

on_both_drivers!(
    claims_take_ready_jobs_in_due_order_and_leave_future_ones,
    complete_appends_its_events_and_closes_the_job,
    heartbeats_extend_held_leases_and_report_lost_ones,
    retries_back_off_then_dead_letter_fails_the_task_and_requeue_revives_the_job,
    dead_lettering_a_task_that_already_ended_leaves_it_alone,
    release_gives_the_job_back_without_spending_the_attempt,
    expired_leases_are_rescued_and_the_last_attempt_is_dead_lettered,
    fenced_appends_stop_when_the_lease_is_gone,
    batch_completion_closes_only_the_jobs_whose_leases_still_hold,
);
