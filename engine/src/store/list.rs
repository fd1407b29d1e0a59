//! ListTasks: a caller's tasks, filtered, newest status first, keyset-paginated.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::row::TaskRow;
use super::{Db, Store, lite};
use crate::error::StoreError;
use crate::id::{Caller, TaskId};
use crate::state::TaskState;
use crate::task::TaskRecord;

/// Filters that combine with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    pub context_id: Option<String>,
    pub state: Option<TaskState>,
    /// Keep tasks whose status changed at or after this instant.
    pub status_after: Option<DateTime<Utc>>,
    /// This task's children (fan-out members, pipeline steps); without it,
    /// only top-level tasks are listed.
    pub parent: Option<TaskId>,
}

/// Where a page starts: just after this (status time, id) in the ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub status_at: DateTime<Utc>,
    pub id: TaskId,
}

/// One page of tasks.
#[derive(Debug, Clone)]
pub struct TaskPage {
    pub tasks: Vec<TaskRecord>,
    /// Tasks matching the filter, across all pages.
    pub total: i64,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

impl Store {
    /// A page of at most `page_size` of the caller's tasks, newest status
    /// first; their artifacts (folded from the log) only `with_artifacts`.
    pub async fn task_list(
        &self,
        caller: &Caller,
        filter: &TaskFilter,
        page_size: i64,
        after: Option<Cursor>,
        with_artifacts: bool,
    ) -> Result<TaskPage, StoreError> {
        let state = filter.state.map(TaskState::as_str);
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                let columns = if with_artifacts { lite::TASK_COLUMNS_WITH_ARTIFACTS } else { lite::TASK_COLUMNS };
                let filters = "t.tenant = ?1 AND t.owner = ?2
                     AND (?3 IS NULL OR t.context_id = ?3)
                     AND (?4 IS NULL OR t.state = ?4)
                     AND (?5 IS NULL OR t.status_at >= ?5)
                     AND ((?6 IS NULL AND t.parent_id IS NULL) OR t.parent_id = ?6)";
                let sql = format!(
                    "SELECT {columns} FROM tasks t WHERE {filters}
                       AND (?7 IS NULL OR (t.status_at, t.id) < (?7, ?8))
                     ORDER BY t.status_at DESC, t.id DESC LIMIT ?9"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&caller.tenant)
                    .bind(&caller.principal)
                    .bind(&filter.context_id)
                    .bind(state)
                    .bind(filter.status_after.map(lite::us))
                    .bind(filter.parent.map(|p| p.0))
                    .bind(after.map(|c| lite::us(c.status_at)))
                    .bind(after.map(|c| c.id.0).unwrap_or(Uuid::nil()))
                    .bind(page_size + 1)
                    .fetch_all(&lite.read)
                    .await?;
                let total: i64 =
                    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM tasks t WHERE {filters}")))
                        .bind(&caller.tenant)
                        .bind(&caller.principal)
                        .bind(&filter.context_id)
                        .bind(state)
                        .bind(filter.status_after.map(lite::us))
                        .bind(filter.parent.map(|p| p.0))
                        .fetch_one(&lite.read)
                        .await?;
                let rows = rows.iter().map(lite::task_row).collect::<Result<Vec<_>, _>>()?;
                return page(rows, total, page_size);
            }
        };
        // One more row than asked tells whether another page exists.
        let rows = sqlx::query_as!(
            TaskRow,
            r#"SELECT id, tenant, owner, context_id, parent_id, state, status,
                      CASE WHEN $10 THEN (SELECT jsonb_agg(e.payload ORDER BY e.seq) FROM task_events e
                                         WHERE e.task_id = tasks.id AND e.kind = 'artifact') END AS artifacts,
                      artifact_ids,
                      metadata, trace_context, version, created_at, status_at
               FROM tasks
               WHERE tenant = $1 AND owner = $2
                 AND ($3::text IS NULL OR context_id = $3)
                 AND ($4::text IS NULL OR state = $4)
                 AND ($5::timestamptz IS NULL OR status_at >= $5)
                 AND ($6::timestamptz IS NULL OR (status_at, id) < ($6, $7))
                 AND (($9::uuid IS NULL AND parent_id IS NULL) OR parent_id = $9)
               ORDER BY status_at DESC, id DESC
               LIMIT $8"#,
            caller.tenant,
            caller.principal,
            filter.context_id,
            state,
            filter.status_after,
            after.map(|c| c.status_at),
            after.map(|c| c.id.0).unwrap_or(Uuid::nil()),
            page_size + 1,
            filter.parent.map(|p| p.0),
            with_artifacts,
        )
        .fetch_all(pool)
        .await?;
        let total = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM tasks
               WHERE tenant = $1 AND owner = $2
                 AND ($3::text IS NULL OR context_id = $3)
                 AND ($4::text IS NULL OR state = $4)
                 AND ($5::timestamptz IS NULL OR status_at >= $5)
                 AND (($6::uuid IS NULL AND parent_id IS NULL) OR parent_id = $6)"#,
            caller.tenant,
            caller.principal,
            filter.context_id,
            state,
            filter.status_after,
            filter.parent.map(|p| p.0),
        )
        .fetch_one(pool)
        .await?;
        page(rows, total, page_size)
    }
}

impl Store {
    /// Recent tasks across every caller, for operators: newest status first,
    /// optionally one tenant's or one state's.
    pub async fn tasks_recent(
        &self,
        tenant: Option<&str>,
        state: Option<TaskState>,
        limit: i64,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                let sql = format!(
                    "SELECT {} FROM tasks t WHERE (?1 IS NULL OR t.tenant = ?1) AND (?2 IS NULL OR t.state = ?2) \
                     ORDER BY t.status_at DESC, t.id DESC LIMIT ?3",
                    lite::TASK_COLUMNS
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant)
                    .bind(state.map(TaskState::as_str))
                    .bind(limit)
                    .fetch_all(&lite.read)
                    .await?;
                return rows.iter().map(|r| lite::task_row(r)?.try_into()).collect();
            }
        };
        let rows = sqlx::query_as!(
            TaskRow,
            r#"SELECT id, tenant, owner, context_id, parent_id, state, status, NULL::jsonb AS artifacts, artifact_ids,
                      metadata, trace_context, version, created_at, status_at
               FROM tasks
               WHERE ($1::text IS NULL OR tenant = $1) AND ($2::text IS NULL OR state = $2)
               ORDER BY status_at DESC, id DESC
               LIMIT $3"#,
            tenant,
            state.map(TaskState::as_str),
            limit,
        )
        .fetch_all(pool)
        .await?;
        rows.into_iter().map(TaskRecord::try_from).collect()
    }

    /// A task's children (fan-out branches and pipeline steps), oldest first.
    pub async fn task_children(&self, parent: TaskId) -> Result<Vec<TaskRecord>, StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                let sql = format!(
                    "SELECT {} FROM tasks t WHERE t.parent_id = ? ORDER BY t.position, t.created_at, t.id",
                    lite::TASK_COLUMNS
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(parent.0).fetch_all(&lite.read).await?;
                return rows.iter().map(|r| lite::task_row(r)?.try_into()).collect();
            }
        };
        let rows = sqlx::query_as!(
            TaskRow,
            r#"SELECT id, tenant, owner, context_id, parent_id, state, status, NULL::jsonb AS artifacts, artifact_ids,
                      metadata, trace_context, version, created_at, status_at
               FROM tasks WHERE parent_id = $1 ORDER BY position, created_at, id"#,
            parent.0,
        )
        .fetch_all(pool)
        .await?;
        rows.into_iter().map(TaskRecord::try_from).collect()
    }
}

/// A page from `page_size + 1` rows: the extra one says another page exists.
fn page(rows: Vec<TaskRow>, total: i64, page_size: i64) -> Result<TaskPage, StoreError> {
    let mut tasks = rows.into_iter().map(TaskRecord::try_from).collect::<Result<Vec<_>, _>>()?;
    let next = if tasks.len() as i64 > page_size {
        tasks.truncate(page_size as usize);
        tasks.last().map(|t| Cursor { status_at: t.status_at, id: t.id })
    } else {
        None
    };
    Ok(TaskPage { tasks, total, next })
}
