//! Shared test fixtures: a fresh schema per test, task builders, and
//! small assertion helpers.

use std::future::Future;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use a2a::{Message, Part, Role};
use switchyard_engine::{Caller, NewJob, NewTask, Store, StoreConfig, TaskEvent, TaskId};
use tokio::sync::OnceCell;

/// The server every test in this process shares: `DATABASE_URL`; else a
/// PostgreSQL on this machine's default port (trust auth, user `postgres`);
/// else a container, when Docker runs; else none, and the PostgreSQL cases
/// are skipped (said once), while the embedded store's still run.
static SERVER: OnceCell<Option<Server>> = OnceCell::const_new();

struct Server {
    url: String,
    // Held for the life of the process; dropping it would stop the container.
    _container:
        Option<testcontainers_modules::testcontainers::ContainerAsync<testcontainers_modules::postgres::Postgres>>,
}

/// The local PostgreSQL a newcomer most likely has.
const LOCAL: &str = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable";

async fn server() -> Option<&'static Server> {
    SERVER
        .get_or_init(|| async {
            let server = match std::env::var("DATABASE_URL") {
                Ok(url) if !url.is_empty() => Some(Server { url, _container: None }),
                _ => match local().await {
                    Some(server) => Some(server),
                    None => start_container().await,
                },
            };
            match &server {
                Some(server) => drop_stale_schemas(&server.url).await,
                // Past the test harness's capture (which takes `eprintln!`),
                // so it is said once, whichever case finds out first.
                None => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "PostgreSQL: none here (DATABASE_URL is unset, nothing answers on 127.0.0.1:5432, and no \
                         container could be started): the PostgreSQL cases pass without running; set \
                         DATABASE_URL to run them. The embedded store's cases run."
                    );
                }
            }
            server
        })
        .await
        .as_ref()
}

async fn local() -> Option<Server> {
    let options: sqlx::postgres::PgConnectOptions = LOCAL.parse().ok()?;
    let connect = sqlx::ConnectOptions::connect(&options);
    let mut connection = tokio::time::timeout(Duration::from_secs(2), connect).await.ok()?.ok()?;
    sqlx::Connection::ping(&mut connection).await.ok()?;
    Some(Server { url: LOCAL.to_owned(), _container: None })
}

async fn start_container() -> Option<Server> {
    use testcontainers_modules::testcontainers::runners::AsyncRunner;
    let container = testcontainers_modules::postgres::Postgres::default().start().await.ok()?;
    let port = container.get_host_port_ipv4(5432).await.ok()?;
    Some(Server { url: format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres"), _container: Some(container) })
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

/// The store drivers the conformance suite runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Driver {
    Postgres,
    Sqlite,
}

/// A migrated store of one's own, removed when the test ends: a schema in
/// the shared PostgreSQL, or an embedded database in a directory of its own.
pub(crate) struct TestDb {
    pub(crate) store: Store,
    pub(crate) url: String,
    pub(crate) schema: String,
    pub(crate) driver: Driver,
    /// The embedded store's directory.
    dir: Option<std::path::PathBuf>,
}

impl TestDb {
    /// A schema of one's own on PostgreSQL; `None` when there is no
    /// PostgreSQL to test against (the case then returns at once).
    pub(crate) async fn new() -> Option<TestDb> {
        TestDb::on(Driver::Postgres).await
    }

    pub(crate) async fn on(driver: Driver) -> Option<TestDb> {
        TestDb::with_log_window(driver, StoreConfig::new("").log_window).await
    }

    /// The same, with the event log partitioned into windows of `log_window`.
    pub(crate) async fn with_log_window(driver: Driver, log_window: Duration) -> Option<TestDb> {
        let schema = format!("t_{}_{}", unix_now(), &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let (url, dir) = match driver {
            Driver::Postgres => (server().await?.url.clone(), None),
            Driver::Sqlite => {
                let dir = std::env::temp_dir().join(format!("switchyard-{schema}"));
                (format!("sqlite://{}", dir.join("switchyard.db").display()), Some(dir))
            }
        };
        let config =
            StoreConfig { schema: schema.clone(), max_connections: 16, log_window, ..StoreConfig::new(url.clone()) };
        let store = Store::connect(&config).await.expect("connect to the test database");
        store.migrate().await.expect("migrate the test schema");
        Some(TestDb { store, url, schema, driver, dir })
    }

    /// A second, independent handle on the same schema (another "process");
    /// on the embedded store, which serves one process, the same handle.
    pub(crate) async fn another_store(&self) -> Store {
        if self.driver == Driver::Sqlite {
            return self.store.clone();
        }
        let config =
            StoreConfig { schema: self.schema.clone(), max_connections: 16, ..StoreConfig::new(self.url.clone()) };
        Store::connect(&config).await.expect("second store")
    }

    /// Runs raw SQL against the schema, for fixtures and inspection.
    pub(crate) fn pool(&self) -> &sqlx::PgPool {
        self.store.pg_pool().expect("a PostgreSQL test database")
    }

    /// Runs a fixture statement on either driver (`$1` binds `id` on both);
    /// the rows it changed.
    pub(crate) async fn exec(&self, postgres: &str, sqlite: &str, id: uuid::Uuid) -> Result<u64, sqlx::Error> {
        match self.driver {
            Driver::Postgres => {
                let sql = sqlx::AssertSqlSafe(postgres.to_owned());
                Ok(sqlx::query(sql).bind(id).execute(self.pool()).await?.rows_affected())
            }
            Driver::Sqlite => {
                let pool = self.store.sqlite_pool().expect("an embedded test database");
                let sql = sqlx::AssertSqlSafe(sqlite.to_owned());
                Ok(sqlx::query(sql).bind(id).execute(pool).await?.rows_affected())
            }
        }
    }

    /// A count (or any integer) read the same way.
    pub(crate) async fn count(&self, postgres: &str, sqlite: &str, id: uuid::Uuid) -> i64 {
        match self.driver {
            Driver::Postgres => sqlx::query_scalar(sqlx::AssertSqlSafe(postgres.to_owned()))
                .bind(id)
                .fetch_one(self.pool())
                .await
                .expect("count"),
            Driver::Sqlite => {
                let pool = self.store.sqlite_pool().expect("an embedded test database");
                sqlx::query_scalar(sqlx::AssertSqlSafe(sqlite.to_owned()))
                    .bind(id)
                    .fetch_one(pool)
                    .await
                    .expect("count")
            }
        }
    }

    /// Moves a task's jobs' due time by `seconds` from now.
    pub(crate) async fn jobs_due_in(&self, task: TaskId, seconds: i64) {
        self.exec(
            &format!("UPDATE jobs SET run_at = now() + make_interval(secs => {seconds}) WHERE task_id = $1"),
            &format!("UPDATE jobs SET run_at = {} WHERE task_id = $1", lite_now() + seconds * 1_000_000),
            task.0,
        )
        .await
        .expect("move the jobs");
    }
}

/// The embedded store's clock, as it stores times.
fn lite_now() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
            return;
        }
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

/// Runs each named test, an `async fn(TestDb)`, once on each driver: a
/// module per test with a `postgres` and a `sqlite` case (on a
/// two-thread runtime, as the api and its streams run).
macro_rules! on_both_drivers {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(db) = crate::harness::TestDb::on(crate::harness::Driver::Postgres).await {
                        super::$name(db).await
                    }
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let db = crate::harness::TestDb::on(crate::harness::Driver::Sqlite).await;
                    super::$name(db.expect("an embedded store needs no server")).await
                }
            }
        )*
    };
}
pub(crate) use on_both_drivers;

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
    let expired = match db.driver {
        Driver::Postgres => sqlx::query("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1")
            .bind(job.0)
            .execute(db.pool())
            .await
            .expect("expire lease")
            .rows_affected(),
        Driver::Sqlite => sqlx::query("UPDATE jobs SET lease_expires_at = $2 WHERE id = $1")
            .bind(job.0)
            .bind(lite_now() - 1_000_000)
            .execute(db.store.sqlite_pool().expect("embedded"))
            .await
            .expect("expire lease")
            .rows_affected(),
    };
    assert_eq!(expired, 1, "job {job} exists");
}

/// Writes a config file that registers `agent` at `url` and routes every
/// task to it; returns its path, for `--config`.
pub(crate) fn agent_config(db: &TestDb, agent: &str, url: &str) -> String {
    let path = std::env::temp_dir().join(format!("{}-{agent}.toml", db.schema));
    std::fs::write(&path, format!("default_agent = \"{agent}\"\n[[agents]]\nname = \"{agent}\"\nurl = \"{url}\"\n"))
        .expect("config");
    path.to_string_lossy().into_owned()
}

/// Another PostgreSQL cluster on this machine beside the test database's
/// (a replica, a second store): the URL in `env` (then it must answer, as
/// `recovery` says: a replica in recovery, or a primary), else the test
/// database's URL on `port` if such a cluster answers there; `None`, said
/// on stderr, when there is none (the test then passes without running).
pub(crate) async fn other_cluster(db: &TestDb, env: &str, port: u16, recovery: bool, made_by: &str) -> Option<String> {
    let (url, required) = match std::env::var(env) {
        Ok(url) if !url.is_empty() => (url, true),
        _ => (db.url.replacen(":5432/", &format!(":{port}/"), 1), false),
    };
    let check = async {
        let pool = sqlx::PgPool::connect(&url).await.ok()?;
        sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()").fetch_one(&pool).await.ok()
    };
    let what = if recovery { "streaming replica" } else { "PostgreSQL primary" };
    match tokio::time::timeout(Duration::from_secs(3), check).await {
        Ok(Some(state)) if state == recovery => Some(url),
        _ if required => panic!("{env}={url} is not a {what} that answers"),
        _ => {
            eprintln!("no {what} at {url} ({made_by} makes one); not run");
            None
        }
    }
}
