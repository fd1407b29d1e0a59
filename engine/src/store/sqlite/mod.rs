//! The embedded SQLite driver: one file, one process, no server.
//!
//! - **One writer.** Every write runs on one connection, held by one
//!   transaction at a time (a fair mutex), so the row locks PostgreSQL
//!   takes (`FOR UPDATE`, `SKIP LOCKED`) have nothing left to exclude, and
//!   no transaction ever meets `SQLITE_BUSY` halfway. Reads outside
//!   transactions use a pool of read-only connections, which WAL lets run
//!   beside the writer.
//! - **Durable on COMMIT, committed in groups.** WAL with
//!   `synchronous = FULL` (unless the URL says otherwise): a transaction is
//!   on disk before its call returns, as on PostgreSQL. An fsync per
//!   COMMIT would cap the store at one transaction per fsync, so, as
//!   PostgreSQL's group commit does, transactions that queue for the writer
//!   share one: each runs as a SAVEPOINT inside one open SQLite
//!   transaction, and the last of a group (or a flusher, should nobody come
//!   after it) COMMITs for all of them. None returns before that COMMIT;
//!   if it fails, all of them fail; a transaction that fails on its own is
//!   rolled back to its SAVEPOINT and takes nobody with it.
//! - **One process.** The data directory holds a lock file, locked
//!   exclusively for as long as the store is open; a second process on the
//!   same file is refused with a message naming it.
//! - **One clock.** Timestamps come from this process, the only one using
//!   the database: a transaction's time is read once when it begins (like
//!   PostgreSQL's `now()`), in microseconds, the precision PostgreSQL keeps.
//! - **Wake-ups** are an in-process broadcast, sent after COMMIT, in place
//!   of LISTEN/NOTIFY.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use tokio::sync::broadcast;
use uuid::Uuid;

use super::row::TaskRow;
use crate::error::StoreError;

pub(in crate::store) mod access;
pub(in crate::store) mod admin;
pub(in crate::store) mod agent;
#[cfg(test)]
mod checked;
pub(in crate::store) mod console;
pub(in crate::store) mod delegation;
pub(in crate::store) mod job;
pub(in crate::store) mod list;
pub(in crate::store) mod outbox;
pub(in crate::store) mod plan;
pub(in crate::store) mod plan_catalog;
pub(in crate::store) mod push_config;
pub(in crate::store) mod retention;
pub(in crate::store) mod signal;
pub(in crate::store) mod stats;
pub(in crate::store) mod task;
mod writer;

pub(crate) use writer::LiteTx;
use writer::Writer;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations-sqlite");

/// A wake-up: the channel and payload a NOTIFY would carry.
pub(crate) type Notice = (String, String);

/// How many wake-ups a slow listener may fall behind before it is told to
/// re-read everything (as after a lost LISTEN connection).
const NOTICE_BACKLOG: usize = 4096;

/// An open embedded store.
#[derive(Debug, Clone)]
pub(crate) struct Lite {
    /// Every transaction and every write of the store.
    writer: Arc<Writer>,
    /// One connection for migrations (before the writer starts) and for
    /// tests' fixtures; the store's own writes never use it.
    pub(crate) maintenance: SqlitePool,
    /// Read-only connections for reads outside transactions.
    pub(crate) read: SqlitePool,
    pub(crate) notices: broadcast::Sender<Notice>,
    /// Held open (and so locked) for as long as any clone of the store
    /// lives; `None` for a read-only store.
    _lock: Option<Arc<std::fs::File>>,
}

impl Lite {
    /// Opens (creating if needed) the database a `sqlite:` URL names, and
    /// takes the lock that keeps other processes out. `read_only` opens an
    /// existing database beside its owner, without the lock: WAL lets
    /// readers in other processes see every committed transaction.
    pub(crate) fn open(url: &str, max_readers: u32, read_only: bool) -> Result<Lite, StoreError> {
        // FULL unless the URL chose otherwise (`?synchronous=NORMAL`), a
        // parameter of ours: sqlx's URL parser does not know it.
        let (url, synchronous) = take_synchronous(url)?;
        let options = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(!read_only)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .synchronous(synchronous);
        let url = url.as_str();
        let path = options.get_filename().to_path_buf();
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if in_memory || path.as_os_str().is_empty() || path == Path::new(":memory:") {
            return Err(StoreError::Corrupt(format!(
                "{url}: the embedded store needs a file (sqlite:PATH), not an in-memory database"
            )));
        }
        if read_only && !path.exists() {
            return Err(StoreError::Unavailable(format!("{}: no such database", path.display())));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        }
        let lock = if read_only { None } else { Some(Arc::new(lock_exclusively(&path)?)) };
        let maintenance = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(options.clone().read_only(read_only));
        let read = SqlitePoolOptions::new()
            .max_connections(max_readers.clamp(1, 8))
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy_with(options.clone().read_only(true));
        let (notices, _) = broadcast::channel(NOTICE_BACKLOG);
        let writer = Arc::new(Writer::new(options.clone().read_only(read_only), notices.clone()));
        Ok(Lite { writer, maintenance, read, notices, _lock: lock })
    }

    /// Opens the writing connection, which creates the file if need be.
    pub(crate) async fn open_file(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.maintenance).await?;
        Ok(())
    }

    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.maintenance).await?;
        // Whoever held leases before us is gone: we hold the file's lock.
        // Their leases expire now rather than after their term, so the
        // first sweep hands the work on (the lost attempt counted, as for
        // any lease that expires with its worker).
        let orphaned =
            sqlx::query("UPDATE jobs SET lease_expires_at = ? WHERE state = 'leased' AND lease_expires_at > ?")
                .bind(us(now()) - 1)
                .bind(us(now()))
                .execute(&self.maintenance)
                .await?
                .rows_affected();
        if orphaned > 0 {
            tracing::warn!(orphaned, "leases held by a process that stopped without releasing them expire now");
        }
        Ok(())
    }

    pub(crate) async fn migrate_undo(&self, target: i64) -> Result<(), StoreError> {
        MIGRATOR.undo(&self.maintenance, target).await?;
        Ok(())
    }

    /// The migrations this build knows and the versions the file has.
    pub(crate) async fn migrations(&self) -> Result<(&'static sqlx::migrate::Migrator, Vec<i64>), StoreError> {
        let table: Option<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'")
                .fetch_optional(&self.read)
                .await?;
        let applied = match table {
            Some(_) => {
                sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
                    .fetch_all(&self.read)
                    .await?
            }
            None => Vec::new(),
        };
        Ok((&MIGRATOR, applied))
    }

    /// Begins a transaction on the writer (waiting for its turn).
    pub(crate) async fn begin(&self) -> Result<LiteTx, StoreError> {
        self.writer.begin().await
    }

    /// Runs one write as a transaction of its own (`f` gets the connection
    /// and the transaction's time).
    pub(crate) async fn write<T>(
        &self,
        f: impl AsyncFnOnce(&mut sqlx::SqliteConnection, DateTime<Utc>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut tx = self.begin().await?;
        let now = tx.now;
        let result = f(tx.conn(), now).await;
        tx.finish(result).await
    }

    /// Sends a wake-up outside any transaction (after a one-statement write).
    pub(crate) fn wake(&self, channel: &str, payload: &str) {
        let _ = self.notices.send((channel.to_owned(), payload.to_owned()));
    }

    pub(crate) async fn close(&self) {
        self.writer.close().await;
        self.read.close().await;
        self.maintenance.close().await;
    }
}

/// Splits `synchronous=…` off a URL's query: the URL without it, and the
/// setting (FULL when absent).
fn take_synchronous(url: &str) -> Result<(String, SqliteSynchronous), StoreError> {
    let Some((base, query)) = url.split_once('?') else { return Ok((url.to_owned(), SqliteSynchronous::Full)) };
    let mut synchronous = SqliteSynchronous::Full;
    let mut rest = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("synchronous", value)) => {
                synchronous = SqliteSynchronous::from_str(value).map_err(|_| {
                    StoreError::Unavailable(format!(
                        "{url}: synchronous must be OFF, NORMAL, FULL or EXTRA, not {value:?}"
                    ))
                })?;
            }
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
    Ok((url, synchronous))
}

/// Locks `<database>.lock` exclusively, or says which process has it.
fn lock_exclusively(database: &Path) -> Result<std::fs::File, StoreError> {
    let mut path: PathBuf = database.to_path_buf();
    path.as_mut_os_string().push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {
            // Who holds it, for the message the next process prints.
            let _ = std::fs::write(&path, format!("{}\n", std::process::id()));
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            let holder = if holder.is_empty() { String::new() } else { format!(" (process {holder})") };
            Err(StoreError::Unavailable(format!(
                "{} is in use by another Switchyard process{holder}; the embedded store serves one process — \
                 stop that one, or run several processes on PostgreSQL (DATABASE_URL)",
                database.display()
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(StoreError::Unavailable(format!("{}: cannot lock: {e}", path.display())))
        }
    }
}

/// The store's clock, at the precision PostgreSQL keeps (microseconds).
pub(crate) fn now() -> DateTime<Utc> {
    at(Utc::now().timestamp_micros())
}

/// A stored time (microseconds since the epoch).
pub(crate) fn at(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// A time as stored.
pub(crate) fn us(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// `now + d`, as stored.
pub(crate) fn us_after(now: DateTime<Utc>, d: Duration) -> i64 {
    us(now) + i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 2)
}

/// JSON as stored (text).
pub(crate) fn json(value: &Value) -> String {
    value.to_string()
}

/// Stored JSON text back to a value.
pub(crate) fn parse(text: &str) -> Result<Value, StoreError> {
    Ok(serde_json::from_str(text)?)
}

/// An optional JSON column.
pub(crate) fn parse_opt(text: Option<String>) -> Result<Option<Value>, StoreError> {
    text.as_deref().map(parse).transpose()
}

/// The columns of a task row, `t` being the task; `artifacts` is the
/// task's artifact events in log order as one JSON array.
pub(crate) const TASK_COLUMNS: &str = "t.id, t.tenant, t.owner, t.context_id, t.parent_id, t.state, t.status, \
     t.artifact_ids, t.metadata, t.trace_context, t.version, t.created_at, t.status_at";

/// [`TASK_COLUMNS`] and the artifacts.
pub(crate) const TASK_COLUMNS_WITH_ARTIFACTS: &str = "t.id, t.tenant, t.owner, t.context_id, t.parent_id, t.state, \
     t.status, t.artifact_ids, t.metadata, t.trace_context, t.version, t.created_at, t.status_at, \
     (SELECT json_group_array(json(e.payload) ORDER BY e.seq) FROM task_events e \
      WHERE e.task_id = t.id AND e.kind = 'artifact') AS artifacts";

/// A task row as [`TASK_COLUMNS`] (and perhaps `artifacts`) select it.
pub(crate) fn task_row(row: &SqliteRow) -> Result<TaskRow, StoreError> {
    let artifacts: Option<String> = row.try_get("artifacts").ok().flatten();
    let artifact_ids: String = row.try_get("artifact_ids")?;
    Ok(TaskRow {
        id: row.try_get::<Uuid, _>("id")?,
        tenant: row.try_get("tenant")?,
        owner: row.try_get("owner")?,
        context_id: row.try_get("context_id")?,
        parent_id: row.try_get("parent_id")?,
        state: row.try_get("state")?,
        status: parse(&row.try_get::<String, _>("status")?)?,
        artifacts: artifacts.as_deref().map(parse).transpose()?,
        artifact_ids: serde_json::from_str(&artifact_ids)?,
        metadata: parse_opt(row.try_get("metadata")?)?,
        trace_context: parse_opt(row.try_get("trace_context")?)?,
        version: row.try_get("version")?,
        created_at: at(row.try_get("created_at")?),
        status_at: at(row.try_get("status_at")?),
    })
}

/// A log row (`seq`, `kind`, `payload`, `created_at`) of `task`.
pub(crate) fn stored_event(task: crate::id::TaskId, r: &SqliteRow) -> Result<crate::event::StoredEvent, StoreError> {
    let kind: String = r.try_get("kind")?;
    Ok(crate::event::StoredEvent {
        task_id: task,
        seq: r.try_get("seq")?,
        event: crate::event::TaskEvent::from_row(&kind, parse(&r.try_get::<String, _>("payload")?)?)?,
        created_at: at(r.try_get("created_at")?),
    })
}

/// Reads a task row for the rest of the transaction (the one writer holds
/// the database, so reading it is locking it), with the transaction's time.
pub(crate) async fn lock_task(tx: &mut LiteTx, task: Uuid) -> Result<Option<(TaskRow, DateTime<Utc>)>, StoreError> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks t WHERE t.id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(task).fetch_optional(tx.conn()).await?;
    let now = tx.now;
    row.map(|r| Ok((task_row(&r)?, now))).transpose()
}

/// Appends log rows.
pub(crate) async fn insert_events(
    tx: &mut LiteTx,
    task: Uuid,
    rows: &super::row::EventRows,
    created_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    for ((seq, kind), payload) in rows.seqs.iter().zip(&rows.kinds).zip(&rows.payloads) {
        sqlx::query("INSERT INTO task_events (task_id, seq, kind, payload, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(task)
            .bind(seq)
            .bind(kind)
            .bind(json(payload))
            .bind(us(created_at))
            .execute(tx.conn())
            .await?;
    }
    Ok(())
}

/// Writes a folded snapshot over version `before`; the rows changed (1, or
/// 0 if the version moved).
pub(crate) async fn update_snapshot(
    tx: &mut LiteTx,
    task: &crate::task::TaskRecord,
    before: i64,
) -> Result<u64, StoreError> {
    let snapshot = super::row::Snapshot::of(task)?;
    let done = sqlx::query(
        "UPDATE tasks SET state = ?, status = ?, artifact_ids = ?, version = ?, status_at = ? \
         WHERE id = ? AND version = ?",
    )
    .bind(snapshot.state)
    .bind(json(&snapshot.status))
    .bind(serde_json::to_string(&snapshot.artifact_ids)?)
    .bind(task.version)
    .bind(us(task.status_at))
    .bind(task.id.0)
    .bind(before)
    .execute(tx.conn())
    .await?;
    Ok(done.rows_affected())
}

/// Inserts a job; `None` when it is a delegation and the task already has
/// a live one (see the PostgreSQL `insert_job`).
pub(crate) async fn insert_job(tx: &mut LiteTx, task: Uuid, job: &super::NewJob) -> Result<Option<i64>, StoreError> {
    let now = tx.now;
    let id = sqlx::query_scalar::<_, i64>(
        "INSERT INTO jobs (task_id, kind, payload, priority, max_attempts, run_at, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (task_id) WHERE kind = 'delegate' AND state IN ('ready', 'leased') DO NOTHING \
         RETURNING id",
    )
    .bind(task)
    .bind(job.kind.as_str())
    .bind(json(&job.payload))
    .bind(job.priority)
    .bind(job.max_attempts)
    .bind(us(job.run_at.unwrap_or(now)))
    .bind(us(now))
    .fetch_optional(tx.conn())
    .await?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synchronous_is_taken_from_the_url_and_the_rest_is_kept() {
        let (url, sync) = take_synchronous("sqlite://d/s.db?synchronous=NORMAL&mode=rwc").expect("parses");
        assert_eq!(url, "sqlite://d/s.db?mode=rwc");
        assert!(matches!(sync, SqliteSynchronous::Normal));
        let (url, sync) = take_synchronous("sqlite://d/s.db").expect("parses");
        assert_eq!(url, "sqlite://d/s.db");
        assert!(matches!(sync, SqliteSynchronous::Full));
        assert!(take_synchronous("sqlite://d/s.db?synchronous=sometimes").is_err());
    }
}
