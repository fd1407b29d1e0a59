//! The `switchyard` binary as users run it: real processes, real signals.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use switchyard_engine::{JobState, TaskId};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::harness::{TestDb, eventually, status_trail, submit};

const WAIT: Duration = Duration::from_secs(30);

pub(crate) fn switchyard(db: &TestDb, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.args(args)
        .env("DATABASE_URL", &db.url)
        .env("SWITCHYARD_SCHEMA", &db.schema)
        .env("RUST_LOG", std::env::var("SWITCHYARD_TEST_LOG").unwrap_or_else(|_| "warn".into()))
        // The tests' agents and clients live on loopback, unauthenticated;
        // the security tests take these away.
        .env("SWITCHYARD_ANONYMOUS", "true")
        .env("SWITCHYARD_EGRESS_ALLOW", "127.0.0.0/8,::1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    cmd
}

/// A worker on `config` with a short lease and quick polling, so tests see
/// takeovers and wake-ups within seconds; `extra` adds flags (not these).
pub(crate) fn quick_worker(db: &TestDb, config: &str, id: &str, extra: &[&str]) -> Child {
    let mut args = vec![
        "worker",
        "--config",
        config,
        "--worker-id",
        id,
        "--lease",
        "2s",
        "--heartbeat",
        "500ms",
        "--poll-interval",
        "200ms",
    ];
    args.extend_from_slice(extra);
    switchyard(db, &args).spawn().expect("worker")
}

/// A worker with a short lease, so lost leases expire within the test.
fn spawn_worker(db: &TestDb, id: &str, drain: &str) -> Child {
    switchyard(
        db,
        &[
            "worker",
            "--worker-id",
            id,
            "--concurrency",
            "4",
            "--batch",
            "4",
            "--lease",
            "2s",
            "--heartbeat",
            "500ms",
            "--poll-interval",
            "200ms",
            "--drain-timeout",
            drain,
        ],
    )
    .spawn()
    .expect("spawn worker")
}

fn signal(child: &Child, sig: Signal) {
    let pid = child.id().expect("running") as i32;
    kill(Pid::from_raw(pid), sig).expect("signal");
}

async fn exits_with(child: &mut Child) -> i32 {
    let status = tokio::time::timeout(WAIT, child.wait()).await.expect("exit in time").expect("wait");
    status.code().unwrap_or(-1)
}

async fn count_jobs(db: &TestDb, state: &str, owner: Option<&str>) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = $1 AND ($2::text IS NULL OR lease_owner = $2)")
        .bind(state)
        .bind(owner)
        .fetch_one(db.pool())
        .await
        .expect("count")
}

/// Holds row locks on these tasks until rolled back, so a worker finishing
/// their jobs blocks mid-transaction: the moment we want to crash it in.
async fn lock_tasks(db: &TestDb, tasks: &[TaskId]) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = db.pool().begin().await.expect("begin");
    let ids: Vec<uuid::Uuid> = tasks.iter().map(|t| t.0).collect();
    sqlx::query("SELECT id FROM tasks WHERE id = ANY($1) FOR UPDATE").bind(&ids).execute(&mut *tx).await.expect("lock");
    tx
}

pub(crate) async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    Some((status, body))
}

/// A port for a test's server to listen on. Taken from below the kernel's
/// ephemeral range (32768 and up), so that no outgoing connection of a
/// concurrent test (hundreds, in some) can be given it between now and the
/// server's bind, as a port the kernel picked for us could; never the same
/// twice in a run; and free when handed out.
pub(crate) fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    // Each run starts somewhere else, so runs that overlap rarely meet.
    let _ = NEXT.compare_exchange(u32::MAX, std::process::id() % SPAN, Ordering::SeqCst, Ordering::SeqCst);
    loop {
        let port = u16::try_from(FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN).expect("a port");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

#[tokio::test]
async fn serve_answers_health_and_readiness_and_stops_on_sigterm() {
    let Some(db) = TestDb::new().await else { return };
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = switchyard(&db, &["serve", "--listen", &listen]).spawn().expect("spawn serve");
    eventually(WAIT, "the server to answer /healthz", || async { http_get(port, "/healthz").await.is_some() }).await;
    assert_eq!(http_get(port, "/healthz").await.map(|r| r.0), Some(200));
    let (status, body) = http_get(port, "/readyz").await.expect("readyz");
    assert_eq!(status, 200, "{body}");
    assert_eq!(http_get(port, "/nope").await.map(|r| r.0), Some(404));
    signal(&server, Signal::SIGTERM);
    assert_eq!(exits_with(&mut server).await, 0);
}

#[tokio::test]
async fn migrate_is_idempotent_and_bad_settings_fail_clearly() {
    let Some(db) = TestDb::new().await else { return };
    let out = switchyard(&db, &["migrate"]).output().await.expect("migrate");
    assert!(out.status.success());
    let bad = switchyard(&db, &["worker", "--lease", "1s", "--heartbeat", "900ms"])
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("worker");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("heartbeat"), "the error names the bad setting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_while_holding_leases_loses_nothing_and_repeats_nothing() {
    let Some(db) = TestDb::new().await else { return };
    let mut tasks = Vec::new();
    for i in 0..40 {
        tasks.push(submit(&db.store, &format!("task {i}")).await);
    }
    // Jobs run in submit order; block the second half so the first worker
    // finishes 20 and is stuck holding the next 4 when it dies.
    let lock = lock_tasks(&db, &tasks[20..]).await;
    let mut doomed = spawn_worker(&db, "doomed", "20s");
    eventually(WAIT, "20 jobs done and 4 held by the doomed worker", || async {
        count_jobs(&db, "done", None).await == 20 && count_jobs(&db, "leased", Some("doomed")).await == 4
    })
    .await;
    doomed.start_kill().expect("SIGKILL");
    doomed.wait().await.expect("reaped");
    lock.rollback().await.expect("unlock");

    let mut survivor = spawn_worker(&db, "survivor", "20s");
    eventually(WAIT, "every job done after the lost leases expire", || async {
        count_jobs(&db, "done", None).await == 40
    })
    .await;
    signal(&survivor, Signal::SIGTERM);
    assert_eq!(exits_with(&mut survivor).await, 0);

    for (i, task) in tasks.iter().enumerate() {
        assert_eq!(
            status_trail(&db.store, *task).await,
            ["submitted", "rejected"],
            "task {i}: one terminal state, once"
        );
        let job = &db.store.task_jobs(*task).await.expect("jobs")[0];
        assert_eq!(job.state, JobState::Done);
        let expected_attempts = if (20..24).contains(&i) { 2 } else { 1 };
        assert_eq!(job.attempt, expected_attempts, "task {i}: only the four lost leases ran twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_claiming_and_exits_cleanly_with_no_lease_left_behind() {
    let Some(db) = TestDb::new().await else { return };
    let mut tasks = Vec::new();
    for i in 0..6 {
        tasks.push(submit(&db.store, &format!("task {i}")).await);
    }
    // The worker holds four jobs whose outcomes it is recording (blocked on
    // the task rows) when SIGTERM arrives; the other two must stay unclaimed.
    let lock = lock_tasks(&db, &tasks).await;
    let mut worker = spawn_worker(&db, "draining", "300ms");
    eventually(WAIT, "4 jobs held", || async { count_jobs(&db, "leased", Some("draining")).await == 4 }).await;
    signal(&worker, Signal::SIGTERM);
    // A delay, not an assertion: let the worker see the signal and stop
    // claiming before the database moves again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    lock.rollback().await.expect("unlock");
    assert_eq!(exits_with(&mut worker).await, 0);

    let states: Vec<(String, i32)> =
        sqlx::query_as("SELECT state, attempt FROM jobs ORDER BY id").fetch_all(db.pool()).await.expect("states");
    let expected: Vec<(String, i32)> = [("done", 1), ("done", 1), ("done", 1), ("done", 1), ("ready", 0), ("ready", 0)]
        .map(|(s, a)| (s.to_owned(), a))
        .into();
    assert_eq!(states, expected, "finished outcomes recorded, nothing claimed after the signal, no lease left");
}

#[tokio::test]
async fn operators_list_and_requeue_dead_jobs_from_the_cli() {
    let Some(db) = TestDb::new().await else { return };
    let task = submit(&db.store, "x").await;
    for _ in 0..3 {
        let job = db.store.job_claim("w", 1, Duration::from_secs(30)).await.expect("claim").remove(0);
        db.store.job_retry(&job.lease, "agent unreachable", Duration::ZERO, &[]).await.expect("retry");
    }
    let job_id = db.store.task_jobs(task).await.expect("jobs")[0].id;
    let listed = switchyard(&db, &["jobs", "dead"]).output().await.expect("jobs dead");
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains(&task.to_string()) && listed.contains("agent unreachable") && listed.contains("3/3"),
        "{listed}"
    );

    let requeued = switchyard(&db, &["jobs", "requeue", &job_id.to_string()]).output().await.expect("requeue");
    assert!(requeued.status.success());
    assert_eq!(db.store.task_jobs(task).await.expect("jobs")[0].state, JobState::Ready);
    let again = switchyard(&db, &["jobs", "requeue", &job_id.to_string()])
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("again");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("only dead jobs"));
}

/// `serve` and `worker` refuse a schema that lacks their migrations, naming
/// them and what to run; `migrate --undo` says what it would drop and drops
/// nothing without "yes"; `/readyz` reports a schema undone under a
/// running `serve`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmigrated_schema_is_refused_and_undo_asks_first() {
    let Some(db) = TestDb::new().await else { return };
    let stderr_of = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();
    let unmigrated = format!("{}_never", db.schema);
    for args in [vec!["serve", "--listen", "127.0.0.1:0"], vec!["worker"]] {
        let out = switchyard(&db, &args)
            .env("SWITCHYARD_SCHEMA", &unmigrated)
            .stderr(Stdio::piped())
            .output()
            .await
            .expect("start");
        assert!(!out.status.success(), "{args:?} started on an unmigrated schema");
        let said = stderr_of(&out);
        assert!(said.contains("switchyard migrate") && said.contains("20261121000001"), "{args:?}: {said}");
    }

    let port = free_port();
    let _serve = switchyard(&db, &["serve", "--listen", &format!("127.0.0.1:{port}")]).spawn().expect("serve");
    eventually(WAIT, "serve ready", || async { http_get(port, "/readyz").await.is_some_and(|r| r.0 == 200) }).await;
    submit(&db.store, "kept").await;
    let refused = switchyard(&db, &["migrate", "--undo"]).stderr(Stdio::piped()).output().await.expect("undo");
    assert!(!refused.status.success(), "undo without a yes");
    assert!(stderr_of(&refused).contains("1 tasks"), "{}", stderr_of(&refused));
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks").fetch_one(db.pool()).await.expect("tasks");
    assert_eq!(kept, 1, "nothing dropped");

    let status = switchyard(&db, &["migrate", "status"]).output().await.expect("status");
    let listed = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success() && listed.contains("up to date") && !listed.contains("pending"), "{listed}");

    let undone = switchyard(&db, &["migrate", "--undo", "--yes"]).output().await.expect("undo");
    assert!(undone.status.success());
    let status = switchyard(&db, &["migrate", "status"]).output().await.expect("status");
    let listed = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(1), "{listed}");
    assert!(listed.contains("20261121000001  pending") && listed.contains("run `switchyard migrate`"), "{listed}");
    let (status, body) = http_get(port, "/readyz").await.expect("readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("switchyard migrate"), "{body}");
}

/// User errors read as errors, not crashes: the chain of causes without a
/// backtrace (even with `RUST_BACKTRACE=1`), a database URL of another
/// kind named as such, and output cut short by its reader is no error.
#[tokio::test]
async fn user_errors_are_plain_and_a_closed_pipe_is_not_one() {
    let Some(db) = TestDb::new().await else { return };
    let out = switchyard(&db, &["tasks", "list"])
        .env("DATABASE_URL", "mysql://root@127.0.0.1:3306/test")
        .env("RUST_BACKTRACE", "1")
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("tasks list");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(said.contains("\"mysql\"") && said.contains("PostgreSQL"), "{said}");
    assert!(!said.contains("stack backtrace") && !said.contains("panicked"), "{said}");

    for i in 0..3 {
        submit(&db.store, &format!("listed {i}")).await;
    }
    let mut listing = switchyard(&db, &["tasks", "list"]).stderr(Stdio::piped()).spawn().expect("tasks list");
    drop(listing.stdout.take()); // the reader is gone before the first line
    let out = listing.wait_with_output().await.expect("tasks list");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(!said.contains("Broken pipe"), "{said}");
}

/// An agent the config names that does not answer is reported at start,
/// naming it, and a client pointed at nothing is told to check it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_does_not_answer_is_named_at_start() {
    let Some(db) = TestDb::new().await else { return };
    let closed = free_port();
    let config = std::env::temp_dir().join(format!("{}-absent.toml", db.schema));
    std::fs::write(&config, format!("[[agents]]\nname = \"absent\"\nurl = \"http://127.0.0.1:{closed}\"\n"))
        .expect("config");
    let port = free_port();
    let mut serve =
        switchyard(&db, &["serve", "--listen", &format!("127.0.0.1:{port}"), "--config", &config.to_string_lossy()])
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve");
    let mut lines = tokio::io::BufReader::new(serve.stderr.take().expect("stderr")).lines();
    let warned = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("absent") && line.contains("is it running") {
                return line;
            }
        }
        String::new()
    })
    .await
    .expect("a warning within the wait");
    assert!(warned.contains(&closed.to_string()), "{warned}");

    let out = switchyard(&db, &["send", "hello", "--url", &format!("127.0.0.1:{closed}")])
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("send");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(said.contains("could not connect") && said.contains("is it running"), "{said}");
}

/// An operator cancels any open task from the CLI, with a reason the task's
/// status carries; the audit log says who; a finished task is refused.
#[tokio::test]
async fn an_operator_cancels_a_task_from_the_cli() {
    let Some(db) = TestDb::new().await else { return };
    let task = submit(&db.store, "to be canceled").await;
    let out = switchyard(&db, &["tasks", "cancel", &task.to_string(), "--reason", "maintenance window"])
        .output()
        .await
        .expect("tasks cancel");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let canceled = db.store.task_load(task).await.expect("task");
    assert_eq!(canceled.state, switchyard_engine::TaskState::Canceled);
    let said = canceled.status.message.as_ref().and_then(|m| m.text()).unwrap_or_default().to_owned();
    assert_eq!(said, "maintenance window");
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'task.cancel'")
        .fetch_one(db.pool())
        .await
        .expect("audit");
    assert_eq!(audited, 1);

    let done = submit(&db.store, "finished").await;
    db.store
        .task_append(done, &[switchyard_engine::TaskEvent::status(switchyard_engine::TaskState::Completed, None)], None)
        .await
        .expect("complete");
    let out = switchyard(&db, &["tasks", "cancel", &done.to_string()])
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("tasks cancel");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only an open task"), "{out:?}");
}

/// `probe`, the images' health check: 0 for a ready endpoint, 1 otherwise.
#[tokio::test]
async fn probe_says_whether_an_endpoint_is_ready() {
    let Some(db) = TestDb::new().await else { return };
    let port = free_port();
    let _serve = switchyard(&db, &["serve", "--listen", &format!("127.0.0.1:{port}")]).spawn().expect("serve");
    eventually(WAIT, "serve ready", || async { http_get(port, "/readyz").await.is_some_and(|r| r.0 == 200) }).await;
    let ready = format!("http://127.0.0.1:{port}/readyz");
    let out = switchyard(&db, &["probe", &ready]).output().await.expect("probe");
    assert!(out.status.success());
    let closed = format!("http://127.0.0.1:{}/readyz", free_port());
    let out = switchyard(&db, &["probe", &closed]).stderr(Stdio::piped()).output().await.expect("probe");
    assert_eq!(out.status.code(), Some(1));
}
