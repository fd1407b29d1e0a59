//! ListTasks and the operators' lists, on the embedded store.

use sqlx::Row;
use uuid::Uuid;

use super::{Lite, TASK_COLUMNS, TASK_COLUMNS_WITH_ARTIFACTS, task_row, us};
use crate::error::StoreError;
use crate::id::{Caller, TaskId};
use crate::state::TaskState;
use crate::store::list::{Cursor, TaskFilter};
use crate::store::row::TaskRow;

/// The filters of ListTasks, numbered `?1`–`?6` as [`bind_filter`] binds them.
pub(super) const FILTERS: &str = "t.tenant = ?1 AND t.owner = ?2
     AND (?3 IS NULL OR t.context_id = ?3)
     AND (?4 IS NULL OR t.state = ?4)
     AND (?5 IS NULL OR t.status_at >= ?5)
     AND ((?6 IS NULL AND t.parent_id IS NULL) OR t.parent_id = ?6)";

fn bind_filter<'q>(
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    caller: &'q Caller,
    filter: &'q TaskFilter,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    query
        .bind(&caller.tenant)
        .bind(&caller.principal)
        .bind(&filter.context_id)
        .bind(filter.state.map(TaskState::as_str))
        .bind(filter.status_after.map(us))
        .bind(filter.parent.map(|p| p.0))
}

pub(in crate::store) async fn tasks_page(
    lite: &Lite,
    caller: &Caller,
    filter: &TaskFilter,
    limit: i64,
    after: Option<Cursor>,
    with_artifacts: bool,
) -> Result<Vec<TaskRow>, StoreError> {
    let columns = if with_artifacts { TASK_COLUMNS_WITH_ARTIFACTS } else { TASK_COLUMNS };
    let sql = format!(
        "SELECT {columns} FROM tasks t WHERE {FILTERS}
           AND (?7 IS NULL OR (t.status_at, t.id) < (?7, ?8))
         ORDER BY t.status_at DESC, t.id DESC LIMIT ?9"
    );
    let rows = bind_filter(sqlx::query(sqlx::AssertSqlSafe(sql)), caller, filter)
        .bind(after.map(|c| us(c.status_at)))
        .bind(after.map(|c| c.id.0).unwrap_or(Uuid::nil()))
        .bind(limit)
        .fetch_all(&lite.read)
        .await?;
    rows.iter().map(task_row).collect()
}

pub(in crate::store) async fn tasks_count(
    lite: &Lite,
    caller: &Caller,
    filter: &TaskFilter,
) -> Result<i64, StoreError> {
    let sql = format!("SELECT count(*) FROM tasks t WHERE {FILTERS}");
    let row = bind_filter(sqlx::query(sqlx::AssertSqlSafe(sql)), caller, filter).fetch_one(&lite.read).await?;
    Ok(row.try_get(0)?)
}

pub(in crate::store) async fn tasks_recent(
    lite: &Lite,
    tenant: Option<&str>,
    state: Option<TaskState>,
    limit: i64,
) -> Result<Vec<TaskRow>, StoreError> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks t WHERE (?1 IS NULL OR t.tenant = ?1) AND (?2 IS NULL OR t.state = ?2)          ORDER BY t.status_at DESC, t.id DESC LIMIT ?3"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(state.map(TaskState::as_str))
        .bind(limit)
        .fetch_all(&lite.read)
        .await?;
    rows.iter().map(task_row).collect()
}

pub(in crate::store) async fn task_children(lite: &Lite, parent: TaskId) -> Result<Vec<TaskRow>, StoreError> {
    let sql =
        format!("SELECT {TASK_COLUMNS} FROM tasks t WHERE t.parent_id = ? ORDER BY t.position, t.created_at, t.id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(parent.0).fetch_all(&lite.read).await?;
    rows.iter().map(task_row).collect()
}
