//! Clients' reads from a real streaming replica of the test PostgreSQL
//! (`tests/local-replica.sh` makes one on port 5433; `.ci/run` runs it):
//! a read goes to the replica once it has replayed everything committed
//! before the read began, else to the primary — so a client never reads
//! less than it wrote, whether the replica keeps up, lags (its replay
//! paused) or is down (cut off behind a proxy).
//!
//! The replica is one for the whole machine and pausing its replay pauses
//! it for everyone, so these tests take turns.

use std::time::Duration;

use switchyard_engine::{ReadRoutes, Store, StoreConfig, TaskEvent, TaskFilter, TaskId};
use tokio::sync::Mutex;

use crate::harness::{TestDb, agent_config, caller, eventually, other_cluster, submit, user_message};
use crate::processes::{free_port, http_get, switchyard};
use crate::proxy::Proxy;

static TURN: Mutex<()> = Mutex::const_new(());

/// The replica's URL (`SWITCHYARD_TEST_REPLICA_URL`, else port 5433).
async fn replica_url(db: &TestDb) -> Option<String> {
    other_cluster(db, "SWITCHYARD_TEST_REPLICA_URL", 5433, true, "tests/local-replica.sh").await
}

/// A store of the test's schema whose clients' reads may go to `replica`.
async fn store_with_replica(db: &TestDb, replica: &str, wait: Duration) -> Store {
    let config = StoreConfig {
        schema: db.schema.clone(),
        read_url: Some(replica.to_owned()),
        read_wait: wait,
        ..StoreConfig::new(db.url.clone())
    };
    Store::connect(&config).await.expect("store with a replica")
}

/// The replica's replay, paused until dropped (resumed then even if the test fails).
struct Paused {
    url: String,
}

impl Paused {
    async fn start(url: &str) -> Paused {
        let pool = sqlx::PgPool::connect(url).await.expect("replica");
        sqlx::query("SELECT pg_wal_replay_pause()").execute(&pool).await.expect("pause");
        // Paused for real once it says so (a pause is requested, then taken).
        for _ in 0..100 {
            let state: String =
                sqlx::query_scalar("SELECT pg_get_wal_replay_pause_state()").fetch_one(&pool).await.expect("state");
            if state == "paused" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Paused { url: url.to_owned() }
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let url = self.url.clone();
        let resume = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                let pool = sqlx::PgPool::connect(&url).await.expect("replica");
                sqlx::query("SELECT pg_wal_replay_resume()").execute(&pool).await.expect("resume");
            });
        });
        let _ = resume.join();
    }
}

fn routes(store: &Store) -> ReadRoutes {
    store.read_routes().expect("a store with a replica")
}

/// Everything a client reads of a task, as it reads it.
async fn seen(store: &Store, task: TaskId) -> (i64, usize, usize, bool) {
    let record = store.task_get(&caller(), task).await.expect("GetTask");
    let events = store.task_events(task, 0, 1000).await.expect("log");
    let history = store.task_history(task, 100).await.expect("history");
    let listed = store.task_list(&caller(), &TaskFilter::default(), 100, None, false).await.expect("ListTasks");
    (record.version, events.len(), history.len(), listed.tasks.iter().any(|t| t.id == task))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_come_from_the_replica_and_never_miss_the_readers_own_writes() {
    let Some(db) = TestDb::new().await else { return };
    let Some(replica) = replica_url(&db).await else { return };
    let _turn = TURN.lock().await;
    // A generous wait while the replica keeps up (a busy machine can hold
    // its replay back for a while); a short one while its replay is paused.
    let store = store_with_replica(&db, &replica, Duration::from_secs(5)).await;
    let quick = store_with_replica(&db, &replica, Duration::from_millis(100)).await;

    // In step: written on the primary, read at once, from the replica.
    let task = submit(&store, "first").await;
    assert_eq!(seen(&store, task).await, (2, 2, 1, true));
    let after_sync = routes(&store);
    assert_eq!((after_sync.lagging, after_sync.down), (0, 0), "{after_sync:?}");
    assert!(after_sync.replica >= 4, "GetTask, the log, the history and ListTasks on the replica: {after_sync:?}");
    // The console's reads too.
    assert!(store.task_view(task).await.is_ok());
    assert!(!store.console_counts().await.expect("counts").by_state.is_empty());
    assert!(routes(&store).replica >= after_sync.replica + 2);

    // Lagging: its replay paused, every write is still read back at once —
    // from the primary, after the replica was given its wait.
    {
        let _paused = Paused::start(&replica).await;
        let lagging = submit(&quick, "while the replica lags").await;
        assert_eq!(seen(&quick, lagging).await, (2, 2, 1, true), "a new task is never missing");
        for i in 0..5 {
            quick
                .task_append(task, &[TaskEvent::Message(user_message(&format!("more {i}")))], None)
                .await
                .expect("write");
            let (version, events, history, listed) = seen(&quick, task).await;
            let n = usize::try_from(i).expect("small");
            assert_eq!((version, events, history, listed), (3 + i, 3 + n, 2 + n, true));
        }
        let lagged = routes(&quick);
        assert!(lagged.lagging >= 24 && lagged.replica == 0, "{lagged:?}");
    }
    // Caught up again: back to the replica, with everything.
    let before = routes(&store);
    eventually(Duration::from_secs(10), "reads back on the replica", || async {
        seen(&store, task).await == (7, 7, 6, true) && routes(&store).replica > before.replica
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_is_down_sends_reads_to_the_primary_until_it_is_back() {
    let Some(db) = TestDb::new().await else { return };
    let Some(replica) = replica_url(&db).await else { return };
    let _turn = TURN.lock().await;
    let proxy = Proxy::start(&replica).await;
    let wait = Duration::from_secs(2);
    let store = store_with_replica(&db, &proxy.url(&replica), wait).await;
    let task = submit(&store, "before the cut").await;
    assert_eq!(seen(&store, task).await.0, 2);
    assert!(routes(&store).replica >= 4);

    // Cut off (every packet held: the worst kind of down). Reads answer
    // from the primary, each within the wait, and the replica is left
    // alone for a while rather than waited on again.
    proxy.cut();
    let started = std::time::Instant::now();
    store.task_append(task, &[TaskEvent::Message(user_message("during the cut"))], None).await.expect("write");
    assert_eq!(seen(&store, task).await, (3, 3, 2, true));
    assert!(started.elapsed() < Duration::from_secs(8), "reads did not hang on the replica: {:?}", started.elapsed());
    let cut = routes(&store);
    assert!(cut.down >= 4, "{cut:?}");

    // Back: after the pause it gives a failed replica, reads return to it.
    proxy.heal();
    let before = routes(&store);
    eventually(Duration::from_secs(20), "reads back on the replica", || async {
        seen(&store, task).await == (3, 3, 2, true) && routes(&store).replica > before.replica
    })
    .await;
}

/// The real path: `serve --read-database-url`, a client over JSON-RPC.
/// What it just sent, it reads back at once — GetTask and ListTasks — with
/// the replica in step and with its replay paused; `/metrics` says where
/// the reads went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_a_replica_answers_a_clients_reads_with_its_own_writes() {
    let Some(db) = TestDb::new().await else { return };
    let Some(replica) = replica_url(&db).await else { return };
    let _turn = TURN.lock().await;
    let config = agent_config(&db, "stub", "http://127.0.0.1:9");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _serve = switchyard(
        &db,
        &["serve", "--listen", &listen, "--config", &config, "--read-database-url", &replica, "--read-wait", "1s"],
    )
    .spawn()
    .expect("serve");
    eventually(Duration::from_secs(30), "serve ready", || async {
        http_get(port, "/readyz").await.is_some_and(|r| r.0 == 200)
    })
    .await;
    let http = reqwest::Client::new();
    let rpc = |method: &'static str, params: serde_json::Value| {
        let http = http.clone();
        let url = format!("http://{listen}/");
        async move {
            let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
            let answer: serde_json::Value =
                http.post(url).json(&body).send().await.expect("post").json().await.expect("json");
            assert!(answer.get("error").is_none(), "{method}: {answer}");
            answer["result"].clone()
        }
    };
    let send = |text: &'static str| async move {
        let message = serde_json::json!({
            "messageId": uuid::Uuid::new_v4().to_string(), "role": "ROLE_USER", "parts": [{"text": text}]
        });
        let sent =
            rpc("SendMessage", serde_json::json!({"message": message, "configuration": {"returnImmediately": true}}))
                .await;
        sent["task"]["id"].as_str().expect("task id").to_owned()
    };
    let reads_back = |id: String| async move {
        let got = rpc("GetTask", serde_json::json!({"id": id})).await;
        assert_eq!(got["id"], id.as_str(), "GetTask");
        let listed = rpc("ListTasks", serde_json::json!({"pageSize": 100})).await;
        let ids: Vec<&str> =
            listed["tasks"].as_array().expect("tasks").iter().filter_map(|t| t["id"].as_str()).collect();
        assert!(ids.contains(&id.as_str()), "ListTasks has {id}: {ids:?}");
    };
    let metric = |name: &'static str| async move {
        let (_, body) = http_get(port, "/metrics").await.expect("metrics");
        body.lines()
            .filter(|l| l.starts_with("switchyard_store_reads_total") && l.contains(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };

    let first = send("in step").await;
    reads_back(first.clone()).await;
    assert!(metric("from=\"replica\"").await >= 2.0, "GetTask and ListTasks read the replica");

    let _paused = Paused::start(&replica).await;
    for text in ["lagging one", "lagging two", "lagging three"] {
        let id = send(text).await;
        reads_back(id).await;
    }
    assert!(metric("why=\"replica lagging\"").await >= 6.0, "each read went to the primary");
}
