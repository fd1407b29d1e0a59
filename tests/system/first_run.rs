//! The first five minutes: `switchyard dev` on a machine with no database,
//! as a real process. Its printed suggestions work as printed with the
//! built-in client, `tasks list` reads its store beside it, and SIGKILLs of
//! the whole process lose no acknowledged task and end none twice.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;
use switchyard_engine::{Store, StoreConfig, TaskEvent, TaskId, TaskState};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::api::{message, rpc_call};
use crate::harness::eventually;
use crate::processes::{free_port, http_get};
use crate::strict_agent::{StrictAgent, Verdict};

/// A fresh directory, removed when dropped: the user's working directory.
struct Workdir(PathBuf);

impl Workdir {
    fn new() -> Workdir {
        let dir = std::env::temp_dir().join(format!("switchyard-first-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("workdir");
        Workdir(dir)
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `switchyard ARGS` as a new user runs it: in `dir`, with no database
/// configured anywhere.
fn bare(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("SWITCHYARD_SCHEMA")
        .env_remove("SWITCHYARD_DATA_DIR")
        .env("RUST_LOG", std::env::var("SWITCHYARD_TEST_LOG").unwrap_or_else(|_| "warn".into()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    cmd
}

/// Reads `dev`'s banner up to its last suggestion.
pub(crate) async fn banner(dev: &mut Child) -> Vec<String> {
    let mut lines = tokio::io::BufReader::new(dev.stdout.take().expect("stdout")).lines();
    let mut banner = Vec::new();
    while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await {
        let done = line.contains("switchyard send ask");
        banner.push(line);
        if done {
            break;
        }
    }
    banner
}

#[tokio::test]
async fn dev_without_a_database_runs_everything_and_its_suggestions_work_as_printed() {
    let dir = Workdir::new();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut dev = bare(&dir.0, &["dev", "--listen", &listen]).spawn().expect("dev");
    let banner = banner(&mut dev).await;
    let text = banner.join("\n");
    assert!(text.contains("Store       embedded (SQLite), .switchyard/switchyard.db"), "{text}");
    assert!(text.contains(&format!("A2A API     http://{listen}")), "{text}");
    assert!(dir.0.join(".switchyard/switchyard.db").exists(), "the store is in the working directory");
    eventually(Duration::from_secs(30), "dev up", || async { http_get(port, "/readyz").await.is_some() }).await;

    suggestions_work_as_printed(&banner, &dir.0).await;

    // Beside the running dev, from the same directory: its tasks.
    let out = bare(&dir.0, &["tasks", "list", "--json"]).output().await.expect("tasks list");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let states: Vec<&str> = listed.as_array().expect("array").iter().filter_map(|t| t["state"].as_str()).collect();
    assert_eq!(states, ["completed", "completed", "completed"], "{listed}");
    let id = listed[0]["id"].as_str().expect("id");
    let out = bare(&dir.0, &["tasks", "show", id]).output().await.expect("tasks show");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && shown.contains("User: bonjour") && shown.contains("COMPLETED"), "{shown}");

    // A second broker on the same store is refused, saying why.
    let out = bare(&dir.0, &["dev", "--listen", &format!("127.0.0.1:{}", free_port())])
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("second dev");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second process must not start");
    assert!(said.contains("in use by another Switchyard process"), "{said}");

    // A graceful stop leaves one file holding everything.
    kill(Pid::from_raw(dev.id().expect("running") as i32), Signal::SIGTERM).expect("SIGTERM");
    let status = tokio::time::timeout(Duration::from_secs(30), dev.wait()).await.expect("stops").expect("status");
    assert!(status.success(), "{status}");
    let wal = dir.0.join(".switchyard/switchyard.db-wal");
    assert!(std::fs::metadata(&wal).map_or(true, |m| m.len() == 0), "the write-ahead log was folded back");
    let out = bare(&dir.0, &["tasks", "list", "--json"]).output().await.expect("tasks list");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");
}

/// Runs each command `dev`'s banner suggests through `sh` exactly as
/// printed (in `dir`, with no database configured), answering the question
/// on stdin, and checks each answer.
pub(crate) async fn suggestions_work_as_printed(banner: &[String], dir: &Path) {
    let text = banner.join("\n");
    let commands: Vec<String> = banner
        .iter()
        .filter_map(|l| l.trim().strip_prefix("switchyard "))
        .map(|c| c.split('#').next().unwrap_or_default().trim().to_owned())
        .collect();
    assert_eq!(commands.len(), 3, "{text}");
    for (command, expect) in commands.iter().zip(["result: hello", "completed: streamed", "answer: bonjour"]) {
        let line = format!("{} {command}", env!("CARGO_BIN_EXE_switchyard"));
        let mut child = Command::new("sh")
            .args(["-c", &line])
            .current_dir(dir)
            .env_remove("DATABASE_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("sh");
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(b"bonjour\n").await.expect("answer");
        drop(input);
        let out =
            tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.expect("done").expect("ran");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{command}: {stdout}");
        assert!(stdout.contains(expect), "{command}: {stdout}");
    }
}

/// `dev` with its store in `dir` and the strict agent as its one agent,
/// with short leases so a restart takes over quickly.
fn dev_with_agent(dir: &Path, listen: &str, config: &Path) -> Child {
    let config = config.to_string_lossy();
    let args = ["dev", "--listen", listen, "--config", &config, "--max-attempts", "20", "--remote-timeout", "2s"];
    bare(dir, &args).stdout(Stdio::null()).spawn().expect("dev")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_killed_and_restarted_keeps_every_acknowledged_task_and_finishes_it_once() {
    const TASKS: usize = 60;
    let agent = StrictAgent::start().await;
    let dir = Workdir::new();
    let config = dir.0.join("switchyard.toml");
    let toml = format!("default_agent = \"strict\"\n[[agents]]\nname = \"strict\"\nurl = \"{}\"\n", agent.url);
    std::fs::write(&config, toml).expect("config");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let up = || async {
        eventually(Duration::from_secs(30), "dev up", || async {
            http_get(port, "/readyz").await.is_some_and(|r| r.0 == 200)
        })
        .await
    };
    let mut dev = dev_with_agent(&dir.0, &listen, &config);
    up().await;

    let base = format!("http://{listen}/");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let headers = [("A2A-Version", "1.0")];
    let scripts = ["ask 1 300", "euro 200", "late 400", "silent 1500"];
    let mut ids = Vec::new();
    for n in 0..TASKS {
        let reply = rpc_call(
            &http,
            &base,
            "SendMessage",
            json!({"message": message(scripts[n % scripts.len()]), "configuration": {"returnImmediately": true}}),
            &headers,
        )
        .await;
        ids.push(reply["result"]["task"]["id"].as_str().unwrap_or_else(|| panic!("{reply}")).to_owned());
    }

    // Three SIGKILLs of the whole process while it works, each followed by
    // a restart on the same store; questions answered as they come.
    let reader = || async {
        let url = format!("sqlite://{}", dir.0.join(".switchyard/switchyard.db").display());
        Store::connect(&StoreConfig { read_only: true, ..StoreConfig::new(url) }).await.expect("reader")
    };
    let mut answered: HashSet<String> = HashSet::new();
    let mut kills = 0;
    let mut open_at_kill = Vec::new();
    let mut next_kill = tokio::time::Instant::now() + Duration::from_millis(700);
    let give_up = tokio::time::Instant::now() + Duration::from_secs(150);
    loop {
        if kills < 3 && tokio::time::Instant::now() >= next_kill {
            let store = reader().await;
            open_at_kill.push(store.stats().await.expect("stats").tasks.iter().map(|(_, n)| n).sum::<i64>());
            store.close().await;
            kill(Pid::from_raw(dev.id().expect("running") as i32), Signal::SIGKILL).expect("kill");
            let _ = dev.wait().await;
            kills += 1;
            dev = dev_with_agent(&dir.0, &listen, &config);
            up().await;
            next_kill = tokio::time::Instant::now() + Duration::from_millis(900);
        }
        let store = reader().await;
        let asking = store.tasks_recent(None, Some(TaskState::InputRequired), 1000).await.expect("asking");
        for task in asking {
            let id = task.id.to_string();
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
        let open = store.stats().await.expect("stats").tasks.iter().map(|(_, n)| n).sum::<i64>();
        store.close().await;
        if open == 0 && kills == 3 {
            break;
        }
        assert!(tokio::time::Instant::now() < give_up, "{open} tasks still open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    assert!(open_at_kill[0] > 0, "the first kill must find work in flight: {open_at_kill:?}");

    // Every acknowledged task is there and completed, with one terminal status.
    let store = reader().await;
    for id in &ids {
        let task_id = TaskId(uuid::Uuid::parse_str(id).expect("uuid"));
        let task = store.task_load(task_id).await.expect("every acknowledged task is kept");
        assert_eq!(task.state, TaskState::Completed, "{id}: {:?}", task.status);
        let terminal = store
            .task_events(task_id, 0, 1000)
            .await
            .expect("events")
            .iter()
            .filter(|e| matches!(&e.event, TaskEvent::Status(s) if TaskState::from_a2a(&s.state).is_some_and(|st| st.is_terminal())))
            .count();
        assert_eq!(terminal, 1, "{id} ended once");
    }

    // What the agent saw: nothing more than twice, every answer taken once.
    let received = agent.received();
    let mut per_message: HashMap<&str, usize> = HashMap::new();
    for r in &received {
        *per_message.entry(r.message_id.as_str()).or_default() += 1;
    }
    // A message sent when the process died, before the agent's answer was
    // checkpointed, is sent again after the restart (the agent, which
    // deduplicates on messageId, takes it once): at most once more per kill.
    assert!(per_message.values().all(|n| *n <= 1 + kills), "no message more than once per kill: {per_message:?}");
    assert!(!received.iter().any(|r| r.verdict == Verdict::Refused), "no answer sent to a task that moved on");
    let accepted: HashSet<&str> = received
        .iter()
        .filter(|r| r.text.starts_with("answer for") && r.verdict == Verdict::Accepted)
        .map(|r| r.message_id.as_str())
        .collect();
    assert_eq!(accepted.len(), answered.len(), "every answer reached the agent");
    eprintln!(
        "dev killed 3 times with {open_at_kill:?} tasks open; {} messages received, {} sent twice",
        received.len(),
        per_message.values().filter(|n| **n == 2).count()
    );
    let _ = dev.kill().await;
}

/// A port that is taken stops `dev` at once, naming it, before anything
/// says it runs (and before its worker starts on the store).
#[tokio::test]
async fn dev_on_a_taken_port_says_so_and_stops_before_claiming_to_run() {
    let dir = Workdir::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("addr").to_string();
    let output = bare(&dir.0, &["dev", "--listen", &address]).stderr(Stdio::piped()).output();
    let output = tokio::time::timeout(Duration::from_secs(30), output).await.expect("dev stopped").expect("dev");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "dev ran on a taken port: {stdout}");
    assert!(!stdout.contains("is running"), "it said it runs: {stdout}");
    assert!(stderr.contains(&address) && stderr.contains("in use"), "{stderr}");
    drop(taken);
}

/// The `kill -9` promise with nothing but `dev` and its built-in demo
/// agent: a task in flight at the kill, and a question answered after the
/// restart, both complete; the demo agent's tasks survive with the broker's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_with_its_demo_agent_finishes_what_was_in_flight_after_a_kill() {
    let dir = Workdir::new();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let start = || bare(&dir.0, &["dev", "--listen", &listen, "--lease", "2s"]).stdout(Stdio::null()).spawn();
    let up = || async {
        eventually(Duration::from_secs(30), "dev up", || async {
            http_get(port, "/readyz").await.is_some_and(|r| r.0 == 200)
        })
        .await
    };
    let mut dev = start().expect("dev");
    up().await;
    let base = format!("http://{listen}/");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let headers = [("A2A-Version", "1.0")];
    let send = |text: &str, task: Option<&str>| {
        let mut m = message(text);
        if let Some(task) = task {
            m["taskId"] = json!(task);
        }
        rpc_call(
            &http,
            &base,
            "SendMessage",
            json!({"message": m, "configuration": {"returnImmediately": true}}),
            &headers,
        )
    };
    let state = |id: String| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let got = rpc_call(&http, &base, "GetTask", json!({"id": id}), &headers).await;
            got["result"]["status"]["state"].as_str().unwrap_or("").to_owned()
        }
    };
    let sleeping = send("sleep 4000", None).await["result"]["task"]["id"].as_str().expect("id").to_owned();
    let asking = send("ask", None).await["result"]["task"]["id"].as_str().expect("id").to_owned();
    // A client waiting on a task of its own when the broker dies.
    let waiting = bare(&dir.0, &["send", "sleep 4000", "--url", &format!("http://{listen}")])
        .stderr(Stdio::piped())
        .spawn()
        .expect("send");
    eventually(Duration::from_secs(30), "one working, one asking", || async {
        state(sleeping.clone()).await == "TASK_STATE_WORKING"
            && state(asking.clone()).await == "TASK_STATE_INPUT_REQUIRED"
    })
    .await;

    tokio::time::sleep(Duration::from_millis(500)).await;
    kill(Pid::from_raw(i32::try_from(dev.id().expect("pid")).expect("pid")), Signal::SIGKILL).expect("kill -9");
    dev.wait().await.expect("reaped");
    // It says which task goes on, and how to look at it.
    let cut_off = tokio::time::timeout(Duration::from_secs(30), waiting.wait_with_output()).await.expect("send ended");
    let cut_off = cut_off.expect("send");
    let (said, told) = (String::from_utf8_lossy(&cut_off.stdout), String::from_utf8_lossy(&cut_off.stderr));
    assert!(!cut_off.status.success(), "{said}");
    let id = said.lines().find_map(|l| l.strip_prefix("task ")).unwrap_or_else(|| panic!("no task id: {said}"));
    assert!(told.contains(id) && told.contains("goes on"), "{told}");
    let _dev = start().expect("dev again");
    up().await;
    let answered = send("forty-two", Some(&asking)).await;
    assert!(answered.get("result").is_some(), "{answered}");
    for (id, what) in [(&sleeping, "the task in flight at the kill"), (&asking, "the question answered after it")] {
        eventually(Duration::from_secs(30), what, || async { state(id.clone()).await == "TASK_STATE_COMPLETED" }).await;
    }
    let got = rpc_call(&http, &base, "GetTask", json!({"id": asking}), &headers).await;
    assert_eq!(got["result"]["artifacts"][0]["parts"][0]["text"], "answer: forty-two", "{got}");
}

/// `switchyard backup` copies the embedded store while `dev` runs on it;
/// the copy is a store holding every task, which `dev` runs on as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_is_backed_up_while_dev_runs() {
    let dir = Workdir::new();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _dev = bare(&dir.0, &["dev", "--listen", &listen]).stdout(Stdio::null()).spawn().expect("dev");
    eventually(Duration::from_secs(30), "dev up", || async {
        http_get(port, "/readyz").await.is_some_and(|r| r.0 == 200)
    })
    .await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let base = format!("http://{listen}/");
    for n in 0..3 {
        let reply = rpc_call(&http, &base, "SendMessage", json!({"message": message(&format!("echo {n}"))}), &[]).await;
        assert!(reply["result"]["task"]["id"].is_string(), "{reply}");
    }
    let out = bare(&dir.0, &["backup", "copy.db"]).output().await.expect("backup");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let again = bare(&dir.0, &["backup", "copy.db"]).stderr(Stdio::piped()).output().await.expect("backup");
    assert!(!again.status.success(), "a backup never overwrites a file");

    let url = format!("sqlite://{}", dir.0.join("copy.db").display());
    let copy = Store::connect(&StoreConfig::new(url)).await.expect("the copy opens as a store");
    let (tasks, _) = copy.task_and_job_counts().await.expect("counts");
    assert_eq!(tasks, 3);
    assert!(copy.missing_migrations().await.expect("migrations").is_empty(), "the copy is a whole store");
}
