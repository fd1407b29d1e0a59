//! The schema and the connections, on the embedded store.

use super::Lite;
use crate::error::StoreError;

/// Applies every pending migration (the schema is the file: `_schema` is
/// not used).
pub(in crate::store) async fn migrate(lite: &Lite, _schema: &str) -> Result<(), StoreError> {
    lite.migrate().await
}

pub(in crate::store) async fn migrate_undo(lite: &Lite, target: i64) -> Result<(), StoreError> {
    lite.migrate_undo(target).await
}

pub(in crate::store) async fn migrations(
    lite: &Lite,
) -> Result<(&'static sqlx::migrate::Migrator, Vec<i64>), StoreError> {
    lite.migrations().await
}

/// SQLite's `VACUUM INTO`: a read transaction, so the running process goes
/// on writing meanwhile. `path` must not exist.
pub(in crate::store) async fn backup_to(lite: &Lite, path: &std::path::Path) -> Result<(), StoreError> {
    let target = path.to_str().ok_or_else(|| StoreError::Unavailable("the backup path is not UTF-8".into()))?;
    sqlx::query("VACUUM INTO ?").bind(target).execute(&lite.read).await?;
    Ok(())
}

pub(in crate::store) async fn task_and_job_counts(lite: &Lite) -> Result<(i64, i64), StoreError> {
    Ok(sqlx::query_as("SELECT (SELECT count(*) FROM tasks), (SELECT count(*) FROM jobs)").fetch_one(&lite.read).await?)
}

pub(in crate::store) async fn ping(lite: &Lite) -> Result<(), StoreError> {
    sqlx::query("SELECT 1").execute(&lite.read).await?;
    Ok(())
}

pub(in crate::store) async fn close(lite: &Lite) -> Result<(), StoreError> {
    lite.close().await;
    Ok(())
}
