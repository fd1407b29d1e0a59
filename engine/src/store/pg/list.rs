//! ListTasks and the operators' lists, on PostgreSQL.

use sqlx::PgPool;
use uuid::Uuid;

use crate::error::StoreError;
use crate::id::{Caller, TaskId};
use crate::state::TaskState;
use crate::store::list::{Cursor, TaskFilter};
use crate::store::row::TaskRow;

pub(in crate::store) async fn tasks_page(
    pool: &PgPool,
    caller: &Caller,
    filter: &TaskFilter,
    limit: i64,
    after: Option<Cursor>,
    with_artifacts: bool,
) -> Result<Vec<TaskRow>, StoreError> {
    Ok(sqlx::query_as!(
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
        filter.state.map(TaskState::as_str),
        filter.status_after,
        after.map(|c| c.status_at),
        after.map(|c| c.id.0).unwrap_or(Uuid::nil()),
        limit,
        filter.parent.map(|p| p.0),
        with_artifacts,
    )
    .fetch_all(pool)
    .await?)
}

pub(in crate::store) async fn tasks_count(
    pool: &PgPool,
    caller: &Caller,
    filter: &TaskFilter,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM tasks
               WHERE tenant = $1 AND owner = $2
                 AND ($3::text IS NULL OR context_id = $3)
                 AND ($4::text IS NULL OR state = $4)
                 AND ($5::timestamptz IS NULL OR status_at >= $5)
                 AND (($6::uuid IS NULL AND parent_id IS NULL) OR parent_id = $6)"#,
        caller.tenant,
        caller.principal,
        filter.context_id,
        filter.state.map(TaskState::as_str),
        filter.status_after,
        filter.parent.map(|p| p.0),
    )
    .fetch_one(pool)
    .await?)
}

pub(in crate::store) async fn tasks_recent(
    pool: &PgPool,
    tenant: Option<&str>,
    state: Option<TaskState>,
    limit: i64,
) -> Result<Vec<TaskRow>, StoreError> {
    Ok(sqlx::query_as!(
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
    .await?)
}

pub(in crate::store) async fn task_children(pool: &PgPool, parent: TaskId) -> Result<Vec<TaskRow>, StoreError> {
    Ok(sqlx::query_as!(
        TaskRow,
        r#"SELECT id, tenant, owner, context_id, parent_id, state, status, NULL::jsonb AS artifacts, artifact_ids,
                      metadata, trace_context, version, created_at, status_at
               FROM tasks WHERE parent_id = $1 ORDER BY position, created_at, id"#,
        parent.0,
    )
    .fetch_all(pool)
    .await?)
}
