//! Shared test fixtures: a fresh schema per test, task builders, and
//! small assertion helpers.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use a2a::{Message, Part, Role};
use switchyard_engine::{Caller, NewJob, NewTask, Store, StoreConfig, TaskEvent, TaskId};
use tokio::sync::OnceCell;

/// The server every test in this process shares: `DATABASE_URL`, or a
/// PostgreSQL container when it is unset (a newcomer with Docker needs no setup).
static SERVER: OnceCell<Server> = OnceCell::const_new();

struct Server {
    url: String,
    // Held for the life of the process; dropping it would stop the container.
    _container:
        Option<testcontainers_modules::testcontainers::ContainerAsync<testcontainers_modules::postgres::Postgres>>,
}

async fn server() -> &'static Server {
    SERVER
        .get_or_init(|| async {
            let server = match std::env::var("DATABASE_URL") {
                Ok(url) if !url.is_empty() => Server { url, _container: None },
                _ => start_container().await,
            };
            drop_stale_schemas(&server.url).await;
            server
        })
        .await
}

async fn start_container() -> Server {
    use testcontainers_modules::testcontainers::runners::AsyncRunner;
    let container = testcontainers_modules::postgres::Postgres::default()
        .start()
        .await
        .expect("DATABASE_URL is unset and no PostgreSQL container could be started (is Docker running?)");
    let port = container.get_host_port_ipv4(5432).await.expect("container port");
    Server { url: format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres"), _container: Some(container) }
}

/// Test schemas are named `t_<unix seconds>_<random>`; ones older than an
/// hour belong to runs that died without cleaning up.
async fn drop_stale_schemas(url: &str) {
    let Ok(pool) = sqlx::PgPool::connect(url).await else {
        return;
    };
    let cutoff = unix_now().saturating_sub(3600);
    let schemas: Vec<String> = sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 't\\_%'")
        .fetch_all(&pool)
        .await
        .unwrap_or_default();
    for schema in schemas {
        let born = schema.split('_').nth(1).and_then(|s| s.parse::<u64>().ok());
        if born.is_some_and(|b| b < cutoff) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(r#"DROP SCHEMA IF EXISTS "{schema}" CASCADE"#)))
                .execute(&pool)
                .await;
        }
    }
    pool.close().await;
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A migrated schema of one's own, dropped when the test ends.
pub(crate) struct TestDb {
    pub(crate) store: Store,
    pub(crate) url: String,
    pub(crate) schema: String,
}

impl TestDb {
    pub(crate) async fn new() -> TestDb {
        let server = server().await;
        let schema = format!("t_{}_{}", unix_now(), &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let config =
            StoreConfig { schema: schema.clone(), max_connections: 16, ..StoreConfig::new(server.url.clone()) };
        let store = Store::connect(&config).await.expect("connect to the test database");
        store.migrate().await.expect("migrate the test schema");
        TestDb { store, url: server.url.clone(), schema }
    }

    /// A second, independent handle on the same schema (another "process").
    pub(crate) async fn another_store(&self) -> Store {
        let config =
            StoreConfig { schema: self.schema.clone(), max_connections: 16, ..StoreConfig::new(self.url.clone()) };
        Store::connect(&config).await.expect("second store")
    }

    /// Runs raw SQL against the schema, for fixtures and inspection.
    pub(crate) fn pool(&self) -> &sqlx::PgPool {
        self.store.pg_pool().expect("a PostgreSQL test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // On a thread of its own (the test's runtime may be shutting down),
        // and waited for: the test binary may exit right after this test.
        let url = self.url.clone();
        let schema = self.schema.clone();
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                        let _ =
                            sqlx::query(sqlx::AssertSqlSafe(format!(r#"DROP SCHEMA IF EXISTS "{schema}" CASCADE"#)))
                                .execute(&pool)
                                .await;
                    }
                });
            }
        });
        let _ = cleanup.join();
    }
}

pub(crate) fn caller() -> Caller {
    Caller::new("acme", "alice")
}

pub(crate) fn user_message(text: &str) -> Message {
    Message::new(Role::User, vec![Part::text(text)])
}

/// A task asking for `text`, keyed by a fresh messageId, with a delegate job.
pub(crate) fn new_task(text: &str) -> NewTask {
    NewTask {
        job: Some(NewJob::new(switchyard_engine::JobKind::Delegate, 3)),
        ..NewTask::new(caller(), user_message(text))
    }
}

pub(crate) async fn submit(store: &Store, text: &str) -> TaskId {
    store.task_submit(new_task(text)).await.expect("submit").task.id
}

/// Status events in a task's log, in order, as state names.
pub(crate) async fn status_trail(store: &Store, task: TaskId) -> Vec<String> {
    store
        .task_events(task, 0, 1000)
        .await
        .expect("events")
        .into_iter()
        .filter_map(|e| match e.event {
            TaskEvent::Status(s) => switchyard_engine::TaskState::from_a2a(&s.state).map(|st| st.to_string()),
            _ => None,
        })
        .collect()
}

/// Waits for `check` to hold, polling; panics with `what` after `limit`.
#[track_caller]
pub(crate) fn eventually<'a, F, Fut>(limit: Duration, what: &'a str, mut check: F) -> impl Future<Output = ()> + 'a
where
    F: FnMut() -> Fut + 'a,
    Fut: Future<Output = bool> + 'a,
{
    let location = std::panic::Location::caller();
    async move {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if check().await {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{location}: timed out after {limit:?} waiting for: {what}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Backdates a job's lease so it counts as expired (instead of sleeping).
pub(crate) async fn expire_lease(db: &TestDb, job: switchyard_engine::JobId) {
    sqlx::query("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(job.0)
        .execute(db.pool())
        .await
        .expect("expire lease");
}

/// Writes a config file that registers `agent` at `url` and routes every
/// task to it; returns its path, for `--config`.
pub(crate) fn agent_config(db: &TestDb, agent: &str, url: &str) -> String {
    let path = std::env::temp_dir().join(format!("{}-{agent}.toml", db.schema));
    std::fs::write(&path, format!("default_agent = \"{agent}\"\n[[agents]]\nname = \"{agent}\"\nurl = \"{url}\"\n"))
        .expect("config");
    path.to_string_lossy().into_owned()
}
