//! Chaos, bounded: a few hundred tasks (questions and answers, streams, slow,
//! late and flaky agents) through three workers, while at random one is
//! SIGKILLed, one is SIGSTOPped past its lease and let go again, the first
//! worker's link to PostgreSQL goes silent in the middle of a transaction
//! (and returns), and every connection of the other workers and of `serve`
//! is reset at once; a flaky agent's streams break off mid-frame. Whatever
//! the timing: no task is lost, none ends twice, no message reaches the
//! agent more often than once per attempt its task made, and one more (see
//! below), and the agent, which
//! deduplicates on `messageId`, takes each answer exactly once.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::process::Child;

use crate::api::{message, rpc_call, stream_started};
use crate::harness::{TestDb, agent_config, eventually};
use crate::processes::{free_port, http_get, switchyard};
use crate::proxy::Proxy;
use crate::strict_agent::{StrictAgent, Verdict};

const TASKS: usize = 240;

/// Worker `n` in slot `slot`: slot 0 reaches PostgreSQL through the proxy
/// that cuts, the others through the one that resets.
fn worker(db: &TestDb, config: &str, n: usize, database_url: &str) -> Child {
    let mut args = vec!["worker", "--config", config, "--lease", "2s", "--heartbeat", "500ms", "--poll-interval"];
    args.extend(["200ms", "--concurrency", "32", "--retry-base", "100ms", "--retry-cap", "500ms"]);
    args.extend(["--remote-timeout", "2s"]);
    let id = format!("chaos-{n}");
    args.extend(["--worker-id", &id]);
    switchyard(db, &args).env("DATABASE_URL", database_url).spawn().expect("worker")
}

/// What the chaos does next.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill,
    Stop,
    Cut,
    Reset,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_at_random_lose_nothing_and_repeat_nothing_the_agent_would_see() {
    let agent = StrictAgent::start().await;
    let Some(db) = TestDb::new().await else { return };
    let config = agent_config(&db, "strict", &agent.url);
    // Tasks nobody streams take the blocking call (see below).
    let entry = std::fs::read_to_string(&config).expect("config") + "call = \"blocking\"\n";
    std::fs::write(&config, entry).expect("config");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    // Slot 0's worker through `cutting`; the other workers and serve through
    // `resetting`.
    let cutting = Proxy::start(&db.url).await;
    let resetting = Proxy::start(&db.url).await;
    let urls = [cutting.url(&db.url), resetting.url(&db.url), resetting.url(&db.url)];
    let _serve = switchyard(&db, &["serve", "--listen", &listen, "--config", &config, "--max-attempts", "20"])
        .env("DATABASE_URL", resetting.url(&db.url))
        .spawn()
        .expect("serve");
    eventually(Duration::from_secs(30), "api up", || async {
        http_get(port, "/readyz").await.is_some_and(|r| r.0 == 200)
    })
    .await;
    let base = format!("http://{listen}/");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let headers = [("A2A-Version", "1.0")];

    let mut workers: Vec<Child> = (0..3).map(|n| worker(&db, &config, n, &urls[n])).collect();
    let mut spawned = 3;
    let mut rng = StdRng::seed_from_u64(0x5eed);

    let scripts = ["ask 1 400", "euro 300", "silent 2500", "late 600", "ask 1 50", "flaky 300"];
    let mut ids = Vec::new();
    for n in 0..TASKS {
        let text = scripts[n % scripts.len()];
        // Every script both ways: followed as a stream (the worker streams
        // from the agent) and not (the worker's blocking call).
        if (n / scripts.len()).is_multiple_of(2) {
            ids.push(stream_started(&http, &base, message(text), &headers).await);
            continue;
        }
        let reply = rpc_call(
            &http,
            &base,
            "SendMessage",
            json!({"message": message(text), "configuration": {"returnImmediately": true}}),
            &headers,
        )
        .await;
        ids.push(reply["result"]["task"]["id"].as_str().unwrap_or_else(|| panic!("{reply}")).to_owned());
    }

    // A fault every second or so for 20 s, answering questions as they
    // come; then the faults are undone and the survivors finish.
    let mut answered: HashSet<String> = HashSet::new();
    let chaos_until = tokio::time::Instant::now() + Duration::from_secs(20);
    let give_up = tokio::time::Instant::now() + Duration::from_secs(180);
    let mut next_fault = tokio::time::Instant::now() + Duration::from_millis(rng.random_range(500..1500));
    // Stopped workers and when to let them go; when to heal the cut.
    let mut stopped: Vec<(i32, tokio::time::Instant)> = Vec::new();
    let mut heal_at: Option<tokio::time::Instant> = None;
    let mut faults: HashMap<&'static str, usize> = HashMap::new();
    loop {
        let now = tokio::time::Instant::now();
        if now < chaos_until && now >= next_fault {
            let fault = [Fault::Kill, Fault::Kill, Fault::Stop, Fault::Cut, Fault::Reset][rng.random_range(0..5)];
            match fault {
                Fault::Kill => {
                    let victim = rng.random_range(0..workers.len());
                    let pid = workers[victim].id().expect("running") as i32;
                    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill");
                    let _ = workers[victim].wait().await;
                    workers[victim] = worker(&db, &config, spawned, &urls[victim]);
                    spawned += 1;
                    *faults.entry("killed").or_default() += 1;
                }
                Fault::Stop => {
                    // Past its lease (2 s): its jobs go to others meanwhile.
                    let pid = workers[rng.random_range(0..workers.len())].id().expect("running") as i32;
                    if kill(Pid::from_raw(pid), Signal::SIGSTOP).is_ok() {
                        stopped.push((pid, now + Duration::from_millis(3500)));
                        *faults.entry("stopped").or_default() += 1;
                    }
                }
                Fault::Cut if heal_at.is_none() => {
                    cutting.cut_after_begin();
                    heal_at = Some(now + Duration::from_secs(4));
                    *faults.entry("cut").or_default() += 1;
                }
                Fault::Cut => {}
                Fault::Reset => {
                    resetting.reset_all();
                    *faults.entry("reset").or_default() += 1;
                }
            }
            next_fault = now + Duration::from_millis(rng.random_range(500..1500));
        }
        // Undo what is due, and everything once the chaos is over.
        let over = now >= chaos_until;
        stopped.retain(|(pid, at)| {
            let due = over || now >= *at;
            if due {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGCONT);
            }
            !due
        });
        if heal_at.is_some_and(|at| over || now >= at) {
            cutting.heal();
            heal_at = None;
        }
        let asking: Vec<(uuid::Uuid,)> = sqlx::query_as("SELECT id FROM tasks WHERE state = 'input_required'")
            .fetch_all(db.pool())
            .await
            .expect("asking");
        for (id,) in asking {
            let id = id.to_string();
            if answered.insert(id.clone()) {
                let mut answer = message(&format!("answer for {id}"));
                answer["taskId"] = json!(id);
                let reply = rpc_call(
                    &http,
                    &base,
                    "SendMessage",
                    json!({"message": answer, "configuration": {"returnImmediately": true}}),
                    &headers,
                )
                .await;
                assert!(reply.get("result").is_some(), "{reply}");
            }
        }
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tasks WHERE state NOT IN ('completed', 'failed', 'canceled', 'rejected')",
        )
        .fetch_one(db.pool())
        .await
        .expect("open");
        if open == 0 && now >= chaos_until {
            break;
        }
        if now >= give_up {
            // What the open tasks wait on, for whoever reads the failure.
            // Task, its state, and its live job's state, attempt, holder, last error.
            type Waiting = (uuid::Uuid, String, Option<String>, Option<i32>, Option<String>, Option<String>);
            let stuck: Vec<Waiting> = sqlx::query_as(
                "SELECT t.id, t.state, j.state, j.attempt, j.lease_owner, j.last_error FROM tasks t
                     LEFT JOIN jobs j ON j.task_id = t.id AND j.state IN ('ready', 'leased')
                     WHERE t.state NOT IN ('completed', 'failed', 'canceled', 'rejected') LIMIT 20",
            )
            .fetch_all(db.pool())
            .await
            .expect("stuck");
            panic!("{open} tasks still open after the chaos; what they wait on: {stuck:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // None lost: every task ended, and ended well.
    let ended: Vec<(uuid::Uuid, String, String)> =
        sqlx::query_as("SELECT id, state, coalesce(status->'message'->'parts'->0->>'text', '') FROM tasks")
            .fetch_all(db.pool())
            .await
            .expect("tasks");
    assert_eq!(ended.len(), TASKS);
    let failed: Vec<_> = ended.iter().filter(|(_, state, _)| state != "completed").collect();
    assert!(failed.is_empty(), "every task completes: {failed:?}");

    // None ended twice: one terminal status in each log.
    let twice: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
        "SELECT task_id, count(*) FROM task_events
         WHERE kind = 'status' AND payload->>'state' IN
               ('TASK_STATE_COMPLETED', 'TASK_STATE_FAILED', 'TASK_STATE_CANCELED', 'TASK_STATE_REJECTED')
         GROUP BY task_id HAVING count(*) <> 1",
    )
    .fetch_all(db.pool())
    .await
    .expect("terminal counts");
    assert!(twice.is_empty(), "{twice:?}");

    // What the agent saw.
    let received = agent.received();
    let mut per_message: HashMap<&str, usize> = HashMap::new();
    for r in &received {
        *per_message.entry(r.message_id.as_str()).or_default() += 1;
    }
    // A message goes out only within an attempt (a claim of its task's
    // delegation), and an attempt sends it at most once: in flight when
    // its worker dies, it is sent again by the next attempt. A worker
    // SIGSTOPped in the middle of a send and let go after its lease passed
    // may finish that send too. So a message reaches the agent at most once
    // per attempt its task's delegation made, plus one. (The agent
    // deduplicates on `messageId`; what it accepts is checked below.)
    let attempts: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT e.payload->>'messageId', sum(j.attempt)::bigint FROM task_events e
         JOIN jobs j ON j.task_id = e.task_id AND j.kind = 'delegate'
         WHERE e.kind = 'message' GROUP BY e.payload->>'messageId'",
    )
    .fetch_all(db.pool())
    .await
    .expect("attempts")
    .into_iter()
    .collect();
    let over: Vec<_> = per_message
        .iter()
        .filter(|(id, n)| **n as i64 > attempts.get(**id).copied().unwrap_or(0) + 1)
        .map(|(id, n)| (*id, *n, attempts.get(*id).copied()))
        .collect();
    assert!(over.is_empty(), "no message more often than its task's attempts and one: {over:?}");
    assert!(!received.iter().any(|r| r.verdict == Verdict::Refused), "no answer sent to a task that moved on");
    let answers: Vec<_> = received.iter().filter(|r| r.text.starts_with("answer for")).collect();
    let mut accepted: HashMap<&str, usize> = HashMap::new();
    for a in answers.iter().filter(|a| a.verdict == Verdict::Accepted) {
        *accepted.entry(a.message_id.as_str()).or_default() += 1;
    }
    assert_eq!(accepted.len(), answered.len(), "every answer reached the agent");
    assert!(accepted.values().all(|n| *n == 1), "each answer taken once: {accepted:?}");
    eprintln!(
        "chaos: {TASKS} tasks, faults {faults:?}, {} messages received, {} sent twice, {} three times",
        received.len(),
        per_message.values().filter(|n| **n == 2).count(),
        per_message.values().filter(|n| **n == 3).count()
    );
}
