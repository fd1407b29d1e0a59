//! The rest of the store's contract, on both drivers: delegation
//! checkpoints and answers, the webhook outbox, plans, keys and the audit
//! log, agents and their breakers, listing, gauges and wake-ups. Then what
//! only the embedded store has to promise: one process, and everything
//! committed still there when it is opened again.

use std::time::Duration;

use a2a::{Artifact, Message, Part, Role};
use serde_json::json;
use switchyard_engine::plan::{Join, Node};
use switchyard_engine::{
    ArtifactUpdate, AuditEntry, Caller, Cursor, Delegation, DeliveryFate, FollowUp, Gate, JobKind, JobState, Listener,
    NewJob, NewKey, PresentedKey, PushConfig, Store, StoreConfig, StoreError, TaskEvent, TaskFilter, TaskPlan,
    TaskState, Wake,
};

use crate::harness::{TestDb, caller, new_task, on_both_drivers, status_trail, submit, user_message};

const LEASE: Duration = Duration::from_secs(30);

fn artifact(id: &str, text: &str) -> TaskEvent {
    TaskEvent::Artifact(ArtifactUpdate {
        artifact: Artifact {
            artifact_id: id.into(),
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

fn question(text: &str) -> TaskEvent {
    let mut asked = Message::new(Role::Agent, vec![Part::text(text)]);
    asked.message_id = "q-1".into();
    TaskEvent::status(TaskState::InputRequired, Some(asked))
}

/// A delegation checkpoints its remote ids with its events; an answer goes
/// to the same task and is handed on by the task's one live delegation;
/// a stale holder writes nothing.
async fn a_delegation_checkpoints_and_carries_the_answer(db: TestDb) {
    let task = submit(&db.store, "ask me").await;
    let job = db.store.job_claim("w", 1, LEASE).await.expect("claim").remove(0);
    let start = db.store.delegation_start(task).await.expect("start").expect("task");
    assert!(start.delegation.is_none(), "nothing checkpointed yet");
    let (first_seq, first) = start.next.expect("the client's message to forward");
    assert_eq!(first.text(), Some("ask me"));

    let checkpoint = Delegation {
        agent: "a".into(),
        remote_task_id: Some("remote-1".into()),
        remote_context_id: Some("remote-ctx".into()),
        forwarded_message_id: Some(first.message_id.clone()),
        forwarded_seq: Some(first_seq),
        acked_seq: Some(first_seq),
        question_id: Some("q-1".into()),
    };
    let fold = db
        .store
        .delegation_fold(
            &job.lease,
            Some(&checkpoint),
            &[TaskEvent::status(TaskState::Working, None), question("which one?")],
            true,
        )
        .await
        .expect("fold");
    assert_eq!(fold.task.state, TaskState::InputRequired);
    assert!(!fold.ended && !fold.requeued, "nothing else to forward: settled");
    assert_eq!(db.store.delegation_get(task).await.expect("get"), Some(checkpoint.clone()));
    assert_eq!(db.store.task_jobs(task).await.expect("jobs")[0].state, JobState::Done);

    let answer = FollowUp {
        caller: caller(),
        task_id: task,
        context_id: None,
        idempotency_key: "answer-1".into(),
        message: user_message("the blue one"),
        job: NewJob::new(JobKind::Delegate, 3),
        push_config: None,
    };
    let answered = db.store.task_continue(answer.clone()).await.expect("answer");
    assert!(answered.created);
    assert_eq!(answered.task.id, task, "an answer continues the same task");
    let again = db.store.task_continue(answer).await.expect("retried answer");
    assert!(!again.created, "the same key is the same answer");
    assert_eq!(again.task.version, answered.task.version);

    let job = db.store.job_claim("w", 1, LEASE).await.expect("claim").remove(0);
    let start = db.store.delegation_start(task).await.expect("start").expect("task");
    assert_eq!(start.delegation.as_ref().and_then(|d| d.remote_task_id.as_deref()), Some("remote-1"));
    let (answer_seq, next) = start.next.expect("the answer is next");
    assert_eq!(next.text(), Some("the blue one"));
    assert!(answer_seq > first_seq);

    // A stale holder of the first lease is fenced out of everything.
    let stale = db.store.delegation_fold(&job.lease, None, &[], false).await;
    assert!(stale.is_ok(), "the live lease holds");
    let done = Delegation { forwarded_seq: Some(answer_seq), acked_seq: Some(answer_seq), ..checkpoint };
    let fold = db
        .store
        .delegation_fold(
            &job.lease,
            Some(&done),
            &[artifact("out", "blue"), TaskEvent::status(TaskState::Completed, None)],
            true,
        )
        .await
        .expect("finish");
    assert_eq!(fold.task.state, TaskState::Completed);
    let late = db.store.delegation_fold(&job.lease, None, &[TaskEvent::status(TaskState::Failed, None)], true).await;
    assert!(matches!(late, Err(StoreError::LeaseLost(_))), "{late:?}");
    assert_eq!(status_trail(&db.store, task).await, ["submitted", "working", "input_required", "completed"]);
    let task = db.store.task_get(&caller(), task).await.expect("get");
    assert_eq!(task.artifacts.len(), 1);
    assert_eq!(db.store.task_history(task.id, 10).await.expect("history").len(), 2);
}

/// An answer that arrives while the delegation is still at work is not
/// stranded: the settling job is ready again, its attempt refunded.
async fn an_answer_arriving_mid_attempt_requeues_the_delegation(db: TestDb) {
    let task = submit(&db.store, "x").await;
    let job = db.store.job_claim("w", 1, LEASE).await.expect("claim").remove(0);
    let checkpoint = Delegation { agent: "a".into(), forwarded_seq: Some(2), acked_seq: Some(2), ..Default::default() };
    db.store.delegation_fold(&job.lease, Some(&checkpoint), &[question("more?")], false).await.expect("asked");
    let answer = FollowUp {
        caller: caller(),
        task_id: task,
        context_id: None,
        idempotency_key: "a".into(),
        message: user_message("more"),
        job: NewJob::new(JobKind::Delegate, 3),
        push_config: None,
    };
    db.store.task_continue(answer).await.expect("answer");
    assert_eq!(db.store.task_jobs(task).await.expect("jobs").len(), 1, "the live delegation carries it");
    let fold = db.store.delegation_finish(&job.lease, &[]).await.expect("settle");
    assert!(fold.requeued);
    let jobs = db.store.task_jobs(task).await.expect("jobs");
    assert_eq!((jobs[0].state, jobs[0].attempt), (JobState::Ready, 0));
}

/// Webhooks: configs are a caller's, limited, and every status and artifact
/// of the task gets an outbox row per webhook, delivered, retried or
/// dead-lettered one by one.
async fn webhooks_get_an_outbox_row_per_event_and_deliveries_settle(db: TestDb) {
    let config = |id: &str| PushConfig {
        task_id: switchyard_engine::TaskId::new(),
        id: id.into(),
        url: "https://hooks.example/x".into(),
        token: Some("secret".into()),
        authentication: Some(json!({ "scheme": "Bearer", "credentials": "c" })),
        version: "1.0".into(),
    };
    let mut new = new_task("notify me");
    new.push_config = Some(config("first"));
    let task = db.store.task_submit(new).await.expect("submit").task.id;
    let second = PushConfig { task_id: task, ..config("second") };
    db.store.push_config_put(&caller(), &second).await.expect("second webhook");
    assert!(matches!(
        db.store.push_config_put(&Caller::new("acme", "mallory"), &second).await,
        Err(StoreError::TaskNotFound(_))
    ));
    let listed = db.store.push_config_list(&caller(), task, 10, None).await.expect("list");
    assert_eq!(listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["first", "second"]);
    assert_eq!(listed[0].authentication, config("x").authentication, "stored as given");
    let page = db.store.push_config_list(&caller(), task, 10, Some("first")).await.expect("page");
    assert_eq!(page.len(), 1);

    db.store
        .task_append(task, &[TaskEvent::status(TaskState::Working, None), artifact("a", "1")], None)
        .await
        .expect("events");
    let outbox = db.store.push_outbox(task, "first", 10).await.expect("outbox").expect("config");
    let seqs: Vec<i64> = outbox.pending.iter().map(|p| p.event.seq).collect();
    assert_eq!(seqs, [1, 3, 4], "the first status (from creation on), then working and the artifact; no message");
    assert_eq!(outbox.config.token.as_deref(), Some("secret"));
    let second_outbox = db.store.push_outbox(task, "second", 10).await.expect("outbox").expect("config");
    assert_eq!(second_outbox.pending.iter().map(|p| p.event.seq).collect::<Vec<_>>(), [3, 4], "from its creation on");
    let push_jobs = db.store.task_jobs(task).await.expect("jobs").into_iter().filter(|j| j.kind == "push").count();
    assert_eq!(push_jobs, 2, "one live delivery job per webhook");

    db.store.push_delivered(&[outbox.pending[0].id]).await.expect("delivered");
    let fate = db.store.push_failed(outbox.pending[1].id, "503", Duration::from_secs(60), 2).await.expect("failed");
    assert!(matches!(fate, DeliveryFate::RetryAt(_)));
    let fate = db.store.push_failed(outbox.pending[1].id, "503", Duration::from_secs(60), 2).await.expect("failed");
    assert_eq!(fate, DeliveryFate::Dead);
    let dead = db.store.push_deliveries(Some("dead"), 10).await.expect("dead");
    assert_eq!(dead.iter().map(|d| (d.seq, d.attempts)).collect::<Vec<_>>(), [(3, 2)]);
    let left = db.store.push_outbox(task, "first", 10).await.expect("outbox").expect("config");
    assert_eq!(left.pending.iter().map(|p| p.event.seq).collect::<Vec<_>>(), [4], "the next goes on");
    db.store.push_requeue(dead[0].id).await.expect("requeue");
    assert!(matches!(db.store.push_requeue(dead[0].id).await, Err(StoreError::DeliveryNotDead(_))));

    assert!(db.store.push_config_delete(&caller(), task, "second").await.expect("delete"));
    assert!(db.store.push_outbox(task, "second", 10).await.expect("outbox").is_none(), "its deliveries went with it");
    assert!(db.store.push_config_get(&caller(), task, "second").await.expect("get").is_none());
}

/// A fan-out plan: children created with the task, each with its
/// delegation; their artifacts mirrored to the parent; the join decided in
/// the transaction of the child that decides it.
async fn a_fanout_runs_its_children_and_joins_them(db: TestDb) {
    let plan = TaskPlan {
        node: Node::Fanout {
            plan: Some("both".into()),
            children: vec![Node::Agent { agent: "a".into() }, Node::Agent { agent: "b".into() }],
            join: Join::All,
            allow_partial: false,
        },
        max_attempts: 3,
    };
    let mut new = new_task("fan me out");
    new.job = None;
    new.plan = Some(plan);
    let parent = db.store.task_submit(new).await.expect("submit").task;
    assert_eq!(parent.state, TaskState::Working);
    let children = db.store.task_children(parent.id).await.expect("children");
    assert_eq!(children.len(), 2);
    let jobs = db.store.job_claim("w", 10, LEASE).await.expect("claim");
    assert_eq!(jobs.len(), 2, "one delegation per child");
    for (i, job) in jobs.iter().enumerate() {
        let events = [artifact("out", &format!("part {i}")), TaskEvent::status(TaskState::Completed, None)];
        db.store.delegation_finish(&job.lease, &events).await.expect("child done");
    }
    let parent = db.store.task_get(&caller(), parent.id).await.expect("parent");
    assert_eq!(parent.state, TaskState::Completed, "{:?}", parent.status);
    assert_eq!(parent.artifacts.len(), 2, "each child's artifact, mirrored");
    let listed = db.store.task_list(&caller(), &TaskFilter::default(), 10, None, false).await.expect("list");
    assert_eq!(listed.total, 1, "children are not listed among the caller's tasks");
}

/// Keys: only the hash is kept, a wrong secret or a revoked key finds
/// nothing, listings never show secrets. The audit log keeps entries in order.
async fn keys_verify_and_revoke_and_the_audit_log_keeps_order(db: TestDb) {
    let new = NewKey {
        tenant: "acme".into(),
        principal: "ci".into(),
        scopes: vec!["admin".into()],
        rate_per_sec: Some(5.0),
        burst: Some(10),
    };
    let (record, key) = db.store.key_create(&new).await.expect("create");
    let presented = PresentedKey::parse(&key).expect("key format");
    let found = db.store.key_verify(&presented).await.expect("verify").expect("live key");
    assert_eq!(
        (found.id.as_str(), found.scopes.as_slice(), found.burst),
        (record.id.as_str(), &["admin".to_owned()][..], Some(10))
    );
    let other = if key.ends_with('x') { 'y' } else { 'x' };
    let wrong = format!("{}{other}", &key[..key.len() - 1]);
    assert!(db.store.key_verify(&PresentedKey::parse(&wrong).expect("format")).await.expect("verify").is_none());
    assert_eq!(db.store.keys_list().await.expect("list").len(), 1);
    assert!(db.store.key_revoke(&record.id).await.expect("revoke"));
    assert!(!db.store.key_revoke(&record.id).await.expect("twice"));
    assert!(db.store.key_verify(&presented).await.expect("verify").is_none(), "revoked at once");
    assert!(db.store.keys_list().await.expect("list")[0].revoked_at.is_some());

    let task = submit(&db.store, "audited").await;
    for action in ["task.answer", "task.cancel"] {
        db.store.audit(&AuditEntry::for_task(&caller(), action, task).with_detail(json!({ "n": 1 }))).await;
    }
    let entries = db.store.audit_for_task(task).await.expect("audit");
    assert_eq!(entries.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["task.answer", "task.cancel"]);
    assert!(entries.iter().all(|e| e.at.is_some() && e.detail == Some(json!({ "n": 1 }))));
}

/// Agents: a card is kept while the URL stays; failures open the breaker,
/// which lets exactly one probe through after its cool-down.
async fn agents_keep_cards_and_breakers_open_and_probe(db: TestDb) {
    db.store.agent_upsert("a", "http://127.0.0.1:9/").await.expect("upsert");
    db.store.agent_set_card("a", &json!({ "name": "A", "skills": [{ "id": "s" }] })).await.expect("card");
    db.store.agent_upsert("a", "http://127.0.0.1:9/").await.expect("same url");
    assert!(db.store.agent_get("a").await.expect("get").expect("agent").offers_skill("s"), "the card stays");
    db.store.agent_upsert("a", "http://127.0.0.1:10/").await.expect("new url");
    assert!(db.store.agent_get("a").await.expect("get").expect("agent").card.is_none(), "a new URL drops the card");

    let cooldown = Duration::from_millis(300);
    assert_eq!(db.store.agent_breaker_gate("a", cooldown).await.expect("gate"), Gate::Closed);
    for _ in 0..2 {
        db.store.agent_record_call("a", false, 2, cooldown).await.expect("failure");
    }
    assert!(matches!(db.store.agent_breaker_gate("a", cooldown).await.expect("gate"), Gate::Open { .. }));
    let stats = db.store.stats().await.expect("stats");
    assert_eq!(stats.agents, [("a".to_owned(), true, 2)]);
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    assert_eq!(db.store.agent_breaker_gate("a", cooldown).await.expect("gate"), Gate::Probe);
    assert!(matches!(db.store.agent_breaker_gate("a", cooldown).await.expect("gate"), Gate::Open { .. }), "one probe");
    db.store.agent_record_call("a", true, 2, cooldown).await.expect("success");
    assert_eq!(db.store.agent_breaker_gate("a", cooldown).await.expect("gate"), Gate::Closed);
    assert_eq!(db.store.agents_list().await.expect("list").len(), 1);
    assert!(db.store.agent_remove("a").await.expect("remove"));
    assert!(db.store.agent_get("a").await.expect("get").is_none());
}

/// ListTasks: newest status first, filtered, paged by cursor with no task
/// twice and none left out.
async fn listing_pages_through_a_callers_tasks_newest_first(db: TestDb) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut new = new_task(&format!("{i}"));
        new.context_id = Some(if i % 2 == 0 { "even" } else { "odd" }.into());
        ids.push(db.store.task_submit(new).await.expect("submit").task.id);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    db.store.task_append(ids[1], &[TaskEvent::status(TaskState::Working, None)], None).await.expect("working");
    let mut seen = Vec::new();
    let mut after: Option<Cursor> = None;
    loop {
        let page = db.store.task_list(&caller(), &TaskFilter::default(), 2, after, true).await.expect("page");
        assert_eq!(page.total, 5);
        seen.extend(page.tasks.iter().map(|t| t.id));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, [ids[1], ids[4], ids[3], ids[2], ids[0]], "the newest change first");
    let even = TaskFilter { context_id: Some("even".into()), ..Default::default() };
    assert_eq!(db.store.task_list(&caller(), &even, 10, None, false).await.expect("even").total, 3);
    let working = TaskFilter { state: Some(TaskState::Working), ..Default::default() };
    let page = db.store.task_list(&caller(), &working, 10, None, false).await.expect("working");
    assert_eq!(page.tasks.iter().map(|t| t.id).collect::<Vec<_>>(), [ids[1]]);
    let stranger = Caller::new("acme", "mallory");
    assert_eq!(db.store.task_list(&stranger, &TaskFilter::default(), 10, None, false).await.expect("none").total, 0);
    assert_eq!(db.store.tasks_recent(Some("acme"), None, 3).await.expect("recent").len(), 3);

    let stats = db.store.stats().await.expect("stats");
    let open: i64 = stats.tasks.iter().map(|(_, n)| n).sum();
    assert_eq!(open, 5);
    assert!(stats.jobs.iter().any(|(state, kind, n)| state == "ready" && kind == "delegate" && *n == 5), "{stats:?}");
}

/// Wake-ups arrive after COMMIT and never for work that rolled back.
async fn wake_ups_follow_commits_and_never_rollbacks(db: TestDb) {
    let channels = db.store.channels().clone();
    let mut listener = Listener::connect(&db.store, &[&channels.jobs, &channels.events]).await.expect("listen");
    let task = submit(&db.store, "wake").await;
    let first = next(&mut listener).await;
    assert!(matches!(&first, Wake::Notified { channel, .. } if *channel == channels.jobs), "{first:?}");
    // A refused fold says nothing.
    let back = [TaskEvent::status(TaskState::Working, None), TaskEvent::status(TaskState::Submitted, None)];
    let refused = db.store.task_append(task, &back, None).await.expect_err("refused");
    assert!(matches!(refused, StoreError::Rejected { .. }));
    // Nor does one whose statements ran and then rolled back: a stale
    // holder's fold is written, its lease found gone, and all undone.
    let job = db.store.job_claim("w", 1, LEASE).await.expect("claim").remove(0);
    crate::harness::expire_lease(&db, job.lease.job_id).await;
    db.store.job_rescue_expired(10, &[]).await.expect("rescue");
    let stale = [TaskEvent::status(TaskState::Completed, None)];
    let lost = db.store.task_append(task, &stale, Some(&job.lease)).await.expect_err("lease lost");
    assert!(matches!(lost, StoreError::LeaseLost(_)), "{lost:?}");
    db.store.task_append(task, &[TaskEvent::status(TaskState::Working, None)], None).await.expect("working");
    // The first task event heard is the committed one (jobs wake-ups, such
    // as the rescue's, pass by).
    loop {
        match next(&mut listener).await {
            Wake::Notified { channel, .. } if channel == channels.jobs => continue,
            Wake::Notified { channel, payload } => {
                assert_eq!(channel, channels.events);
                assert_eq!(payload, format!("{task}:3:working"), "the committed fold only");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
}

/// The delegations of one claim read what they start from (the task, its
/// checkpoint, the next message to forward) together: one read, made by
/// the first to ask, serves them all — seen here because a change made
/// after it is not in what the second gets, while a job claimed alone
/// reads afresh.
async fn the_delegations_of_one_claim_read_their_starts_together(db: TestDb) {
    let first = submit(&db.store, "first").await;
    let second = submit(&db.store, "second").await;
    let jobs = db.store.job_claim("w", 10, LEASE).await.expect("claim");
    assert_eq!(jobs.len(), 2);
    let job = |task| jobs.iter().find(|j| j.lease.task_id == task).expect("claimed");
    let a = db.store.delegation_start_claimed(job(first)).await.expect("start").expect("task");
    assert_eq!((a.task.id, a.next.as_ref().and_then(|(_, m)| m.text())), (first, Some("first")));
    // The second task changes after the claim's one read.
    db.store.task_append(second, &[TaskEvent::status(TaskState::Working, None)], None).await.expect("working");
    let b = db.store.delegation_start_claimed(job(second)).await.expect("start").expect("task");
    assert_eq!((b.task.id, b.task.state), (second, TaskState::Submitted), "read with the first, before the change");
    assert_eq!(b.next.as_ref().and_then(|(_, m)| m.text()), Some("second"));
    let fresh = db.store.delegation_start(second).await.expect("start").expect("task");
    assert_eq!(fresh.task.state, TaskState::Working);

    // Claimed alone: read when asked.
    let third = submit(&db.store, "third").await;
    let alone = db.store.job_claim("w", 10, LEASE).await.expect("claim").remove(0);
    db.store.task_append(third, &[TaskEvent::status(TaskState::Working, None)], None).await.expect("working");
    let c = db.store.delegation_start_claimed(&alone).await.expect("start").expect("task");
    assert_eq!((c.task.id, c.task.state), (third, TaskState::Working));
}

/// A remote agent's push wakes a parked delegation at once; one that lands
/// while the job is leased (the worker still reading the remote task) is
/// kept, and the park that follows is due now, not after its interval.
/// A wrong secret wakes nothing.
async fn a_push_wakes_a_parked_delegation_and_one_mid_look_is_kept(db: TestDb) {
    let task = submit(&db.store, "push me").await;
    let checkpoint = Delegation { agent: "a".into(), remote_task_id: Some("r-1".into()), ..Delegation::default() };
    let job = db.store.job_claim("w", 1, LEASE).await.expect("claim").remove(0);
    db.store.delegation_fold(&job.lease, Some(&checkpoint), &[], false).await.expect("checkpoint");
    db.store.delegation_set_push_token(task, "secret").await.expect("token");
    assert!(!db.store.delegation_pushed(task, "guess").await.expect("forged"), "a wrong secret is refused");
    let parked = db.store.job_snooze(&job.lease, Duration::from_secs(60), "remote working").await.expect("park");
    assert!(!parked.woken, "no push came: parked for its interval");
    assert!(db.store.job_claim("w", 1, LEASE).await.expect("claim").is_empty(), "not due for a minute");

    // Pushed while parked: due now.
    assert!(db.store.delegation_pushed(task, "secret").await.expect("pushed"));
    let job = db.store.job_claim("w", 1, LEASE).await.expect("claim").remove(0);
    // Pushed while leased: the park keeps it.
    assert!(db.store.delegation_pushed(task, "secret").await.expect("pushed mid-look"));
    let parked = db.store.job_snooze(&job.lease, Duration::from_secs(60), "remote working").await.expect("park");
    assert!(parked.woken, "the push that came mid-look is not lost");
    let job = db.store.job_claim("w", 1, LEASE).await.expect("due at once").remove(0);
    // Consumed: the next park waits its interval again.
    let parked = db.store.job_snooze(&job.lease, Duration::from_secs(60), "remote working").await.expect("park");
    assert!(!parked.woken, "a wake-up is used once");
    assert!(db.store.job_claim("w", 1, LEASE).await.expect("claim").is_empty());
}

/// Concurrent writers: each call returns only once its write is committed
/// (readers see it at once), a write that fails takes no other with it,
/// and a write abandoned mid-way (its caller gone) is all or nothing and
/// holds nobody up. (On the embedded store these share COMMITs.)
async fn concurrent_writes_are_committed_when_they_return_and_fail_alone(db: TestDb) {
    let store = db.store.clone();
    let mut writers = Vec::new();
    for i in 0..48 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let id = store.task_submit(new_task(&format!("w{i}"))).await.expect("submit").task.id;
            // Returned, so committed: any reader sees it now.
            assert_eq!(store.task_load(id).await.expect("visible at once").version, 2);
            // Every other writer fails: back to submitted after working.
            let back = [TaskEvent::status(TaskState::Working, None), TaskEvent::status(TaskState::Submitted, None)];
            if i % 2 == 1 {
                assert!(store.task_append(id, &back, None).await.is_err());
            } else {
                store.task_append(id, &[TaskEvent::status(TaskState::Working, None)], None).await.expect("working");
            }
            id
        }));
    }
    let mut ids = Vec::new();
    for writer in writers {
        ids.push(writer.await.expect("writer"));
    }
    for (i, id) in ids.iter().enumerate() {
        let expected: &[&str] = if i % 2 == 1 { &["submitted"] } else { &["submitted", "working"] };
        assert_eq!(status_trail(&db.store, *id).await, expected, "task {i}");
    }

    // Callers that give up at every point of their transaction.
    let mut abandoned = Vec::new();
    for i in 0..40u64 {
        let new = new_task(&format!("abandoned {i}"));
        let key = new.idempotency_key.clone();
        let give_up = Duration::from_micros(50 * i);
        let _ = tokio::time::timeout(give_up, db.store.task_submit(new)).await;
        abandoned.push(key);
    }
    let kept = db.store.task_submit(new_task("after them")).await.expect("the store goes on").task.id;
    assert_eq!(db.store.task_load(kept).await.expect("kept").version, 2);
    let page = db.store.task_list(&caller(), &TaskFilter::default(), 1000, None, false).await.expect("list");
    for task in &page.tasks {
        let events = db.store.task_events(task.id, 0, 100).await.expect("events");
        let jobs = db.store.task_jobs(task.id).await.expect("jobs");
        assert!(events.len() >= 2 && !jobs.is_empty(), "a task is there whole or not at all: {task:?}");
    }
    assert!(page.total >= 49, "every finished writer's task is there");
}

on_both_drivers!(
    concurrent_writes_are_committed_when_they_return_and_fail_alone,
    a_delegation_checkpoints_and_carries_the_answer,
    an_answer_arriving_mid_attempt_requeues_the_delegation,
    webhooks_get_an_outbox_row_per_event_and_deliveries_settle,
    a_fanout_runs_its_children_and_joins_them,
    keys_verify_and_revoke_and_the_audit_log_keeps_order,
    agents_keep_cards_and_breakers_open_and_probe,
    listing_pages_through_a_callers_tasks_newest_first,
    wake_ups_follow_commits_and_never_rollbacks,
    a_push_wakes_a_parked_delegation_and_one_mid_look_is_kept,
    the_delegations_of_one_claim_read_their_starts_together,
);

fn embedded(dir: &std::path::Path) -> StoreConfig {
    StoreConfig::new(format!("sqlite://{}", dir.join("switchyard.db").display()))
}

/// The embedded store serves one process: a second opening of the same file
/// is refused, naming it; once the first is closed, the file opens again
/// with everything committed in it.
#[tokio::test]
async fn the_embedded_store_serves_one_process_and_keeps_what_it_committed() {
    let dir = std::env::temp_dir().join(format!("switchyard-one-{}", uuid::Uuid::new_v4().simple()));
    let store = Store::connect(&embedded(&dir)).await.expect("open");
    store.migrate().await.expect("migrate");
    let task = submit(&store, "kept").await;
    store.task_append(task, &[TaskEvent::status(TaskState::Working, None)], None).await.expect("working");

    let second = Store::connect(&embedded(&dir)).await.expect_err("a second process is refused");
    let message = second.to_string();
    assert!(message.contains("switchyard.db") && message.contains("another Switchyard process"), "{message}");
    let reader = Store::connect(&StoreConfig { read_only: true, ..embedded(&dir) }).await.expect("a reader is let in");
    assert_eq!(reader.task_load(task).await.expect("read beside it").state, TaskState::Working);
    assert!(reader.task_cancel(&caller(), task, None).await.is_err(), "a reader cannot write");

    store.close().await;
    drop(store);
    let reopened = Store::connect(&embedded(&dir)).await.expect("reopen");
    reopened.migrate().await.expect("migrations are idempotent");
    let loaded = reopened.task_load(task).await.expect("still there");
    assert_eq!((loaded.state, loaded.version), (TaskState::Working, 3));
    assert_eq!(status_trail(&reopened, task).await, ["submitted", "working"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `sqlite::memory:` keeps nothing, so it is refused rather than lose data.
#[tokio::test]
async fn an_embedded_store_in_memory_is_refused() {
    let error = Store::connect(&StoreConfig::new("sqlite::memory:")).await.expect_err("refused");
    assert!(error.to_string().contains("needs a file"), "{error}");
}

async fn next(listener: &mut Listener) -> Wake {
    tokio::time::timeout(Duration::from_secs(5), listener.recv()).await.expect("a wake-up")
}
