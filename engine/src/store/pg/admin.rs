//! The schema and the connections, on PostgreSQL: migrations, readiness,
//! counts for operators.

use sqlx::{Executor, PgPool};

use crate::error::StoreError;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Creates the schema if needed and applies every pending migration. A
/// migration may build an index over a large table or wait for a running
/// transaction's lock: the session's limits are lifted for it, on a
/// connection closed afterwards rather than reused.
pub(in crate::store) async fn migrate(pool: &PgPool, schema: &str) -> Result<(), StoreError> {
    // The identifier was validated, so quoting it is enough.
    let create = format!(r#"CREATE SCHEMA IF NOT EXISTS "{schema}""#);
    pool.execute(sqlx::AssertSqlSafe(create)).await?;
    let mut conn = pool.acquire().await?;
    conn.execute("SET statement_timeout = 0; SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0")
        .await?;
    let migrated = MIGRATOR.run(&mut *conn).await;
    conn.close_on_drop();
    migrated?;
    Ok(())
}

pub(in crate::store) async fn migrate_undo(pool: &PgPool, target: i64) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    conn.execute("SET statement_timeout = 0; SET lock_timeout = 0").await?;
    let undone = MIGRATOR.undo(&mut *conn, target).await;
    conn.close_on_drop();
    undone?;
    Ok(())
}

/// The migrations this build knows and the versions the schema has.
pub(in crate::store) async fn migrations(
    pool: &PgPool,
) -> Result<(&'static sqlx::migrate::Migrator, Vec<i64>), StoreError> {
    let applied =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version").fetch_all(pool).await;
    let applied = match applied {
        Ok(applied) => applied,
        // No migrations table in this schema: nothing applied.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    Ok((&MIGRATOR, applied))
}

/// PostgreSQL is backed up with its own tools, not here.
pub(in crate::store) async fn backup_to(_pool: &PgPool, _path: &std::path::Path) -> Result<(), StoreError> {
    Err(StoreError::Unavailable(
        "a PostgreSQL store is backed up with pg_dump (or the database's own backups), not here".into(),
    ))
}

pub(in crate::store) async fn task_and_job_counts(pool: &PgPool) -> Result<(i64, i64), StoreError> {
    Ok(sqlx::query_as("SELECT (SELECT count(*) FROM tasks), (SELECT count(*) FROM jobs)").fetch_one(pool).await?)
}

pub(in crate::store) async fn ping(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::query_scalar!("SELECT 1 AS \"one!\"").fetch_one(pool).await?;
    Ok(())
}

pub(in crate::store) async fn close(pool: &PgPool) -> Result<(), StoreError> {
    pool.close().await;
    Ok(())
}
