//! The store: the only place in Switchyard that speaks SQL, on one of two
//! drivers behind the one `Store` type the api and workers call.
//!
//! - **PostgreSQL** for every deployment of more than one process. Every
//!   statement runs with `search_path` set to the store's own schema, so
//!   names in SQL are unqualified and one database can hold several
//!   isolated deployments side by side (each test run gets its own).
//! - **SQLite** (embedded, see [`lite`]) for one process on one machine:
//!   `switchyard dev` without a database.
//!
//! The logic of every operation (what is read, decided and written, under
//! which lock) is written once; where the two dialects differ, the
//! statement is written twice, side by side, in a `match` on the driver.
//! The store conformance suite runs against both.

mod access;
mod agent;
mod console;
mod delegation;
mod group;
mod job;
mod list;
mod outbox;
mod pg;
mod plan;
mod plan_catalog;
mod push_config;
mod retention;
mod row;
mod seam;
mod sqlite;
mod stats;
mod task;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

pub use crate::plan::{ChildPlace, TaskPlan};
pub use crate::task::asking_child;
pub use access::{AuditEntry, KeyRecord, NewKey, PresentedKey};
pub use agent::{AgentRecord, Gate};
pub use console::{AgentLoad, ConsoleFilter, ConsoleTask, Counts, MinuteStat, id_range};
pub use delegation::{Delegation, DelegationStart, Fold, FoldRequest};
pub use job::{ClaimedJob, JobFate, JobKind, JobRecord, JobState, Lease, NewJob, Parked, Rescued};
pub use list::{Cursor, TaskFilter, TaskPage};
pub use outbox::{DeliveryFate, DeliveryRecord, Outbox, PendingDelivery};

pub use push_config::{MAX_PUSH_CONFIGS, PushConfig};
pub use retention::{LogRotation, Swept};
pub use stats::Stats;
pub use task::{FollowUp, NewTask, Submission};

use crate::channel::Channels;
use crate::error::StoreError;
pub(crate) use sqlite::{Lite, LiteTx, Notice};

/// How to reach the database and which schema is ours.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub url: String,
    pub schema: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// Open the embedded store only to read it, beside the process that
    /// owns it (`tasks show` while `dev` runs); ignored on PostgreSQL.
    pub read_only: bool,
    /// How long PostgreSQL lets one of this process's sessions hold what it
    /// holds; ignored by the embedded store (one process, nothing to cut).
    pub session: SessionLimits,
    /// On PostgreSQL, how much task creation time one partition of the
    /// event log covers: retention drops a window whole once all of it is
    /// past `--retention`. Narrower windows free space sooner, at one more
    /// table each.
    pub log_window: Duration,
    /// A streaming replica of the PostgreSQL store for the reads an api
    /// serves to clients (`pg/replica.rs`); none reads the primary.
    pub read_url: Option<String>,
    /// How long such a read waits for the replica to replay what the
    /// primary had committed when the read began, before reading the primary.
    pub read_wait: Duration,
}

/// The limits every PostgreSQL session of a process carries, so that a
/// process cut off mid-transaction (a partition, a lost host, a stopped
/// process) cannot hold a task's row locks past the lease that protects it:
/// PostgreSQL ends the session itself and another worker proceeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// `statement_timeout`: one statement, lock waits included.
    pub statement: Duration,
    /// `idle_in_transaction_session_timeout`: a transaction waiting on its
    /// client (the server's view of a client cut off mid-transaction).
    pub idle_in_transaction: Duration,
    /// `lock_timeout`: one wait for a lock, answered as a retryable error
    /// (the api's writes: a client is waiting); none leaves lock waits to
    /// the statement timeout.
    pub lock: Option<Duration>,
    /// The server's TCP keepalive on the session's socket: idle time before
    /// the first probe; a vanished client is found within about twice this.
    pub keepalive: Duration,
}

impl SessionLimits {
    /// The api's limits (and every process's that holds no lease).
    pub const DEFAULT: SessionLimits = SessionLimits {
        statement: Duration::from_secs(10),
        idle_in_transaction: Duration::from_secs(10),
        lock: Some(Duration::from_secs(5)),
        keepalive: Duration::from_secs(10),
    };

    /// The limits for a process holding leases of `lease`: a transaction
    /// its client abandoned ends within half a lease, a statement within
    /// half a lease (but no sooner than 2 s: waiting out a busy moment is
    /// not a failure), and lock waits are left to the statement limit.
    pub fn within_lease(lease: Duration) -> SessionLimits {
        let half = lease / 2;
        let d = SessionLimits::DEFAULT;
        SessionLimits {
            statement: half.clamp(Duration::from_secs(2), d.statement),
            idle_in_transaction: half.clamp(Duration::from_secs(1), d.idle_in_transaction),
            lock: None,
            keepalive: half.clamp(Duration::from_secs(1), d.keepalive),
        }
    }

    /// As PostgreSQL session settings.
    fn settings(&self) -> Vec<(&'static str, String)> {
        let ms = |d: Duration| format!("{}ms", d.as_millis().max(1));
        let secs = self.keepalive.as_secs().max(1);
        let mut settings = vec![
            ("statement_timeout", ms(self.statement)),
            ("idle_in_transaction_session_timeout", ms(self.idle_in_transaction)),
            ("tcp_keepalives_idle", secs.to_string()),
            ("tcp_keepalives_interval", secs.div_ceil(3).to_string()),
            ("tcp_keepalives_count", "3".to_owned()),
        ];
        if let Some(lock) = self.lock {
            settings.push(("lock_timeout", ms(lock)));
        }
        settings
    }
}

impl StoreConfig {
    /// The defaults for a database URL: schema `switchyard`, a small pool
    /// (PostgreSQL peaks at a few concurrent clients per core).
    pub fn new(url: impl Into<String>) -> Self {
        StoreConfig {
            url: url.into(),
            schema: "switchyard".into(),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
            read_only: false,
            session: SessionLimits::DEFAULT,
            log_window: Duration::from_secs(86_400),
            read_url: None,
            read_wait: Duration::from_millis(50),
        }
    }
}

/// Where clients' reads went (see [`Store::read_routes`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadRoutes {
    pub replica: u64,
    /// Read on the primary: the replica had not caught up within the wait.
    pub lagging: u64,
    /// Read on the primary: the replica failed or did not answer.
    pub down: u64,
}

/// A handle on the store; cheap to clone (it shares its pools).
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    schema: Arc<str>,
    channels: Channels,
    /// On PostgreSQL, where concurrent writes of different tasks share a
    /// transaction (`group.rs`); each kind's lanes start on first use, so
    /// in the caller's runtime.
    batch: Option<Arc<Batchers>>,
    /// The width of the event log's partitions (see [`StoreConfig::log_window`]).
    log_window: Duration,
    /// Where clients' reads may go instead of the primary (PostgreSQL only).
    replica: Option<Arc<pg::replica::Replica>>,
}

/// The group-commit lanes of one store, one set per kind of write.
#[derive(Debug, Default)]
struct Batchers {
    submit: std::sync::OnceLock<task::batch::Batcher>,
    fold: std::sync::OnceLock<delegation::batch::Batcher>,
    done: std::sync::OnceLock<job::batch::Batcher>,
}

/// The driver a store speaks to. The rooms call its statements (declared
/// with [`seam::statements!`]), never match on it.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    Pg(PgPool),
    Lite(Lite),
}

/// A transaction on either driver. Every write of the store goes through
/// one, begun and ended by [`in_tx`].
pub(crate) enum Tx {
    Pg(Transaction<'static, Postgres>),
    Lite(LiteTx),
}

/// The SQLite store's URL scheme: `sqlite:PATH` (or `sqlite://PATH`).
pub fn is_sqlite_url(url: &str) -> bool {
    url.starts_with("sqlite:")
}

impl Store {
    /// Connects lazily: no connection is made until the first query, so a
    /// process can start (and report unreadiness) while the database is down.
    /// (An embedded store is opened at once: it is a file, and the lock
    /// that keeps a second process out must be taken at start.)
    pub fn connect_lazy(config: &StoreConfig) -> Result<Store, StoreError> {
        let schema = validate_schema(&config.schema)?;
        if is_sqlite_url(&config.url) {
            if config.read_url.is_some() {
                return Err(StoreError::Unavailable(
                    "a read replica is for a PostgreSQL store; the embedded store has none".into(),
                ));
            }
            let lite = Lite::open(&config.url, config.max_connections, config.read_only)?;
            return Ok(Store {
                db: Db::Lite(lite),
                schema: schema.into(),
                channels: Channels::for_schema(schema),
                batch: None,
                log_window: config.log_window,
                replica: None,
            });
        }
        let limits = config.session.settings();
        let pool_for = |url: &str, acquire_timeout: Duration| -> Result<PgPool, StoreError> {
            let options = PgConnectOptions::from_str(url)?
                .options([("search_path", schema)])
                .options(limits.iter().map(|(name, value)| (*name, value.as_str())));
            // No liveness ping per checkout: it is a round trip on every query,
            // and a dead connection fails its query anyway, which callers treat
            // as transient (sqlx then discards it).
            Ok(PgPoolOptions::new()
                .max_connections(config.max_connections)
                .acquire_timeout(acquire_timeout)
                .test_before_acquire(false)
                .connect_lazy_with(options))
        };
        let pool = pool_for(&config.url, config.acquire_timeout)?;
        // A replica that cannot give a connection at once is treated as down.
        let replica = match config.read_url.as_deref().filter(|url| !url.is_empty()) {
            Some(url) => Some(Arc::new(pg::replica::Replica::new(
                pool_for(url, config.read_wait.max(Duration::from_millis(200)))?,
                config.read_wait,
            ))),
            None => None,
        };
        Ok(Store {
            db: Db::Pg(pool),
            schema: schema.into(),
            channels: Channels::for_schema(schema),
            batch: Some(Arc::default()),
            log_window: config.log_window,
            replica,
        })
    }

    /// Where a client's read goes (see [`client_read`]): the replica's
    /// handle when one is configured and has replayed everything the
    /// primary had committed when this was called (`pg/replica.rs`), else
    /// `None` — the primary, counted with the reason.
    pub(crate) async fn replica_for_read(&self) -> Option<Db> {
        let (Some(replica), Db::Pg(primary)) = (&self.replica, &self.db) else { return None };
        let route = replica.route(primary).await;
        if route == pg::replica::Route::Replica {
            return Some(Db::Pg(replica.pool.clone()));
        }
        self.read_on_primary(route);
        None
    }

    /// A read the replica answered.
    pub(crate) fn read_on_replica(&self) {
        if let Some(replica) = &self.replica {
            replica.count(pg::replica::Route::Replica);
            metrics::counter!("switchyard_store_reads_total", "from" => "replica").increment(1);
        }
    }

    /// A read the replica failed midway: it is read again on the primary,
    /// and the replica left alone for a while.
    pub(crate) fn read_failed_on_replica(&self, error: &StoreError) {
        if let Some(replica) = &self.replica {
            tracing::warn!(%error, "a read on the replica failed; reading the primary for a while");
            replica.mark_down();
            self.read_on_primary(pg::replica::Route::Down);
        }
    }

    fn read_on_primary(&self, route: pg::replica::Route) {
        if let Some(replica) = &self.replica {
            replica.count(route);
            let why = if route == pg::replica::Route::Lagging { "replica lagging" } else { "replica down" };
            metrics::counter!("switchyard_store_reads_total", "from" => "primary", "why" => why).increment(1);
        }
    }

    /// Where clients' reads went since this store was opened: to the
    /// replica, and to the primary because the replica lagged or was down;
    /// `None` without a replica.
    pub fn read_routes(&self) -> Option<ReadRoutes> {
        let replica = self.replica.as_ref()?;
        let count =
            |route: pg::replica::Route| replica.counts[route as usize].load(std::sync::atomic::Ordering::Relaxed);
        Some(ReadRoutes {
            replica: count(pg::replica::Route::Replica),
            lagging: count(pg::replica::Route::Lagging),
            down: count(pg::replica::Route::Down),
        })
    }

    /// Connects and checks the database answers.
    pub async fn connect(config: &StoreConfig) -> Result<Store, StoreError> {
        let store = Store::connect_lazy(config)?;
        let pool = match &store.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                // The writer first: it creates the file the readers open.
                lite.open_file().await?;
                store.ping().await?;
                return Ok(store);
            }
        };
        // One direct connection first: its error says why (refused, unknown
        // host, authentication, no such database), where the pool would
        // only say that it timed out.
        let options = pool.connect_options();
        if let Err(e) = sqlx::ConnectOptions::connect(&*options).await {
            let reason = match &e {
                sqlx::Error::Database(db) => db.message().to_owned(),
                other => other.to_string(),
            };
            return Err(StoreError::Unreachable {
                host: options.get_host().to_owned(),
                port: options.get_port(),
                reason,
            });
        }
        store.ping().await?;
        Ok(store)
    }

    /// Creates the schema if needed and applies every pending migration.
    /// Safe to run from several processes at once (sqlx takes an advisory lock).
    /// Then makes the event log's windows for now and the next few, so
    /// that a store migrated before its workers start logs into windows.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.db.migrate(&self.schema).await?;
        self.log_rotate(None).await?;
        Ok(())
    }

    /// Reverts migrations down to (not including) `target` version; 0 reverts all.
    pub async fn migrate_undo(&self, target: i64) -> Result<(), StoreError> {
        self.db.migrate_undo(target).await
    }

    /// Which of this build's migrations the schema lacks (version and
    /// description, oldest first); empty when it is up to date. A schema
    /// that was never migrated (or a misspelled `--schema`) lacks them all.
    pub async fn missing_migrations(&self) -> Result<Vec<(i64, String)>, StoreError> {
        Ok(self
            .migration_status()
            .await?
            .into_iter()
            .filter(|(_, _, applied)| !applied)
            .map(|(version, description, _)| (version, description))
            .collect())
    }

    /// Every migration this build knows, oldest first: version,
    /// description, and whether the schema has it.
    pub async fn migration_status(&self) -> Result<Vec<(i64, String, bool)>, StoreError> {
        let (migrator, applied) = self.db.migrations().await?;
        Ok(migrator
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| (m.version, m.description.to_string(), applied.contains(&m.version)))
            .collect())
    }

    /// Writes a consistent copy of the embedded store to `path` (SQLite's
    /// `VACUUM INTO`: a read transaction, so the running process goes on
    /// writing meanwhile). `path` must not exist. PostgreSQL is backed up
    /// with its own tools (`pg_dump --schema`), so this refuses it.
    pub async fn backup_to(&self, path: &std::path::Path) -> Result<(), StoreError> {
        self.db.backup_to(path).await
    }

    /// How many tasks and jobs the schema holds, all of them (a scan: for
    /// an operator about to drop them, not for a hot path).
    pub async fn task_and_job_counts(&self) -> Result<(i64, i64), StoreError> {
        self.db.task_and_job_counts().await
    }

    /// Round-trips to the database (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await
    }

    /// Which driver this store runs on, as operators name it.
    pub fn driver(&self) -> &'static str {
        match &self.db {
            Db::Pg(_) => "postgres",
            Db::Lite(_) => "sqlite",
        }
    }

    /// The schema this store lives in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The NOTIFY channels this store signals on.
    pub fn channels(&self) -> &Channels {
        &self.channels
    }

    /// The new-task batcher, on PostgreSQL; its lanes write with a handle
    /// that does not batch.
    fn batcher(&self) -> Option<&task::batch::Batcher> {
        let cell = &self.batch.as_ref()?.submit;
        Some(cell.get_or_init(|| task::batch::Batcher::start(self.unbatched())))
    }

    /// The delegation-fold batcher, on PostgreSQL.
    fn fold_batcher(&self) -> Option<&delegation::batch::Batcher> {
        let cell = &self.batch.as_ref()?.fold;
        Some(cell.get_or_init(|| delegation::batch::Batcher::start(self.unbatched())))
    }

    /// The job-completion batcher, on PostgreSQL.
    fn done_batcher(&self) -> Option<&job::batch::Batcher> {
        let cell = &self.batch.as_ref()?.done;
        Some(cell.get_or_init(|| job::batch::Batcher::start(self.unbatched())))
    }

    /// This store without group commit: what the lanes write with, and
    /// what a member that cannot share a batch is written with.
    fn unbatched(&self) -> Store {
        Store { batch: None, ..self.clone() }
    }

    /// The PostgreSQL pool, for listeners and for tests that inspect rows;
    /// `None` on the embedded store.
    pub fn pg_pool(&self) -> Option<&PgPool> {
        match &self.db {
            Db::Pg(pool) => Some(pool),
            Db::Lite(_) => None,
        }
    }

    /// A connection to the embedded store beside its writer, for tests
    /// that inspect rows or set up fixtures; `None` on PostgreSQL.
    pub fn sqlite_pool(&self) -> Option<&sqlx::SqlitePool> {
        match &self.db {
            Db::Pg(_) => None,
            Db::Lite(lite) => Some(&lite.maintenance),
        }
    }

    /// The embedded store's wake-ups, which stand in for LISTEN/NOTIFY.
    pub(crate) fn lite_notices(&self) -> Option<tokio::sync::broadcast::Receiver<Notice>> {
        match &self.db {
            Db::Pg(_) => None,
            Db::Lite(lite) => Some(lite.notices.subscribe()),
        }
    }

    /// Closes every connection (graceful shutdown).
    pub async fn close(&self) {
        let _ = self.db.close().await;
    }

    /// Begins a transaction on whichever driver this store runs on.
    pub(crate) async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match &self.db {
            Db::Pg(pool) => {
                // In a task of its own, so a caller dropped during `BEGIN`'s
                // round trip (a client gone, an attempt abandoned) cannot
                // leave the connection inside a transaction: sqlx 0.9.0
                // returns such a connection to the pool with the server-side
                // transaction open, and every later statement on it runs
                // inside it, holding its locks (sqlx issue #4393, fixed
                // after 0.9.0). Here the BEGIN completes, and the dropped
                // transaction queues its ROLLBACK as any other does.
                let pool = pool.clone();
                let begun = tokio::spawn(async move { pool.begin().await });
                Tx::Pg(begun.await.map_err(|e| StoreError::Unavailable(format!("BEGIN did not finish: {e}")))??)
            }
            Db::Lite(lite) => Tx::Lite(lite.begin().await?),
        })
    }

    /// Ends a transaction according to `result` (see [`in_tx`]).
    pub(crate) async fn finish<T>(&self, tx: Tx, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match tx {
            Tx::Pg(tx) => finish(tx, result).await,
            Tx::Lite(tx) => tx.finish(result).await,
        }
    }
}

/// Runs `body` in a transaction bound to `$tx`: COMMIT when it succeeds,
/// an explicit ROLLBACK when it fails. Merely dropping a failed transaction
/// would leave the rollback queued until the connection's next use, and the
/// row locks it holds meanwhile would make `SKIP LOCKED` claimers pass over
/// rows that are in fact free. (A macro rather than a function taking an
/// async closure: such closures are not yet `Send` when spawned.)
macro_rules! in_tx {
    ($store:expr, |$tx:ident| $body:block) => {{
        let mut transaction = $store.begin().await?;
        let result: Result<_, $crate::error::StoreError> = async {
            let $tx = &mut transaction;
            $body
        }
        .await;
        $store.finish(transaction, result).await
    }};
}
pub(crate) use in_tx;

/// Runs `$read` — an expression over `$db: &Db` — as one of the reads an
/// api serves to a client: on the replica when one is configured and has
/// replayed everything the primary had committed when the read began,
/// else, or when the replica fails it midway, on the primary. (A macro for
/// the reason [`in_tx`] is one.)
macro_rules! client_read {
    ($store:expr, |$db:ident| $read:expr) => {{
        let store = $store;
        match store.replica_for_read().await {
            Some(replica) => {
                let on_replica: Result<_, $crate::error::StoreError> = {
                    let $db = &replica;
                    $read
                };
                match on_replica {
                    Ok(value) => {
                        store.read_on_replica();
                        Ok(value)
                    }
                    // A replica that fails, or lacks a table or column
                    // the primary has (its schema behind the primary's,
                    // whatever its replay position said): the primary.
                    Err(error) if error.is_transient() || error.is_schema_missing() => {
                        store.read_failed_on_replica(&error);
                        let $db = &store.db;
                        $read
                    }
                    Err(error) => Err(error),
                }
            }
            None => {
                let $db = &store.db;
                $read
            }
        }
    }};
}
pub(crate) use client_read;

/// Ends a PostgreSQL transaction according to `result` (see [`in_tx`]).
async fn finish<T>(tx: Transaction<'static, Postgres>, result: Result<T, StoreError>) -> Result<T, StoreError> {
    match result {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(error) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(%rollback, "rollback failed; the connection is discarded");
            }
            Err(error)
        }
    }
}

/// Schema names go into `search_path` and one `CREATE SCHEMA`, so they are
/// restricted to plain lower-case identifiers.
fn validate_schema(schema: &str) -> Result<&str, StoreError> {
    let mut chars = schema.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && schema.len() <= 63 {
        Ok(schema)
    } else {
        Err(StoreError::InvalidSchema(schema.to_owned()))
    }
}

seam::statements! {
    room admin;
    /// Creates the schema if need be and applies the pending migrations.
    db fn migrate(schema: &str) -> ();
    db fn migrate_undo(target: i64) -> ();
    /// The migrations this build knows, and the versions applied.
    db fn migrations() -> (&'static sqlx::migrate::Migrator, Vec<i64>);
    /// A consistent copy of the store at `path`, where the driver can.
    db fn backup_to(path: &std::path::Path) -> ();
    db fn task_and_job_counts() -> (i64, i64);
    db fn ping() -> ();
    db fn close() -> ();
}

seam::statements! {
    room signal;
    /// Sends a NOTIFY inside the caller's transaction, so it is delivered
    /// on COMMIT and never for work that rolled back. (The embedded store
    /// keeps it with the transaction and sends it after COMMIT.)
    tx fn notify(channel: &str, payload: &str) -> ();
}

#[cfg(test)]
mod tests {
    use super::validate_schema;

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(validate_schema("switchyard").is_ok());
        assert!(validate_schema("t_1700000000_ab12").is_ok());
        for bad in ["", "1abc", "Switchyard", "a-b", "a\"; DROP TABLE x; --", &"a".repeat(64)] {
            assert!(validate_schema(bad).is_err(), "{bad:?}");
        }
    }
}
