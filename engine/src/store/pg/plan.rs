//! A plan's runtime, on PostgreSQL: its record, its children, and what the
//! parent reads of them under its row lock.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::PgTx;
use crate::error::StoreError;
use crate::id::TaskId;
use crate::store::plan::ChildRows;
use crate::store::row::TaskRow;
use crate::task::TaskRecord;

pub(in crate::store) async fn plan_record(
    tx: &mut PgTx,
    task_id: TaskId,
    node: &Value,
    max_attempts: i32,
) -> Result<(), StoreError> {
    sqlx::query!(
        "INSERT INTO task_plans (task_id, plan, max_attempts) VALUES ($1, $2, $3)",
        task_id.0,
        node,
        max_attempts,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Every child, its first events and its delegation, in ONE statement
/// whatever their number, with the workers' wake-up.
pub(in crate::store) async fn children_insert(
    tx: &mut PgTx,
    parent: &TaskRecord,
    rows: &ChildRows,
    max_attempts: i32,
    now: DateTime<Utc>,
    jobs_channel: &str,
) -> Result<(), StoreError> {
    sqlx::query!(
        r#"WITH created AS (
                       INSERT INTO tasks (id, tenant, owner, context_id, parent_id, position, state, status,
                                          metadata, trace_context, version, created_at, status_at)
                       SELECT c.id, $2, $3, c.context_id, $4, c.position, c.state, c.status, c.metadata, $5,
                              c.version, $6, $6
                       FROM UNNEST($1::uuid[], $7::text[], $8::int[], $9::text[], $10::jsonb[], $11::jsonb[],
                                   $12::bigint[]) AS c(id, context_id, position, state, status, metadata, version)
                   ),
                   logged AS (
                       INSERT INTO task_events (task_id, seq, kind, payload, created_at)
                       SELECT e.task_id, e.seq, e.kind, e.payload, $6
                       FROM UNNEST($13::uuid[], $14::bigint[], $15::text[], $16::jsonb[]) AS e(task_id, seq, kind, payload)
                   ),
                   queued AS (
                       INSERT INTO jobs (task_id, kind, payload, max_attempts)
                       SELECT j.task_id, 'delegate', j.payload, $17
                       FROM UNNEST($18::uuid[], $19::jsonb[]) AS j(task_id, payload)
                       RETURNING id
                   )
                   SELECT CASE WHEN EXISTS (SELECT 1 FROM queued) THEN pg_notify($20, 'delegate') END AS notified"#,
        &rows.ids,
        parent.tenant,
        parent.owner,
        parent.id.0,
        parent.trace_context,
        now,
        &rows.contexts,
        &rows.positions,
        &rows.states,
        &rows.statuses,
        &rows.metadata,
        &rows.versions,
        &rows.event_tasks,
        &rows.event_seqs,
        &rows.event_kinds,
        &rows.event_payloads,
        max_attempts,
        &rows.jobs,
        &rows.job_payloads,
        jobs_channel,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(in crate::store) async fn plan_of(tx: &mut PgTx, task_id: TaskId) -> Result<Option<(Value, i32)>, StoreError> {
    Ok(sqlx::query!("SELECT plan, max_attempts FROM task_plans WHERE task_id = $1", task_id.0)
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| (r.plan, r.max_attempts)))
}

pub(in crate::store) async fn children_tally(tx: &mut PgTx, parent: TaskId) -> Result<(i64, i64, i64), StoreError> {
    let t = sqlx::query!(
        r#"SELECT count(*) FILTER (WHERE state = 'completed') AS "completed!",
                              count(*) FILTER (WHERE state IN ('failed', 'canceled', 'rejected')) AS "failed!",
                              count(*) AS "all!"
                       FROM tasks WHERE parent_id = $1"#,
        parent.0,
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok((t.completed, t.failed, t.all))
}

pub(in crate::store) async fn children_failed(tx: &mut PgTx, parent: TaskId) -> Result<Vec<TaskRow>, StoreError> {
    Ok(sqlx::query_as!(
        TaskRow,
        r#"SELECT id, tenant, owner, context_id, parent_id, state, status, NULL::jsonb AS artifacts, artifact_ids,
                          metadata, trace_context, version, created_at, status_at
                   FROM tasks WHERE parent_id = $1 AND state IN ('failed', 'canceled', 'rejected')
                   ORDER BY position"#,
        parent.0,
    )
    .fetch_all(&mut **tx)
    .await?)
}

pub(in crate::store) async fn step_inputs(
    tx: &mut PgTx,
    parent: TaskId,
    step: TaskId,
) -> Result<(Value, Vec<Value>), StoreError> {
    let request = sqlx::query_scalar!(
        r#"SELECT payload FROM task_events WHERE task_id = $1 AND kind = 'message' ORDER BY seq LIMIT 1"#,
        parent.0,
    )
    .fetch_one(&mut **tx)
    .await?;
    let updates = sqlx::query_scalar!(
        r#"SELECT payload FROM task_events WHERE task_id = $1 AND kind = 'artifact' ORDER BY seq"#,
        step.0,
    )
    .fetch_all(&mut **tx)
    .await?;
    Ok((request, updates))
}

pub(in crate::store) async fn children_unanswered(
    tx: &mut PgTx,
    parent: TaskId,
) -> Result<Option<TaskRow>, StoreError> {
    Ok(sqlx::query_as!(
        TaskRow,
        r#"SELECT id, tenant, owner, context_id, parent_id, state, status, NULL::jsonb AS artifacts, artifact_ids,
                          metadata, trace_context, version, created_at, status_at
                   FROM tasks c
                   WHERE parent_id = $1 AND state IN ('input_required', 'auth_required')
                     AND NOT EXISTS (
                         SELECT 1 FROM task_events m
                         WHERE m.task_id = c.id AND m.kind = 'message' AND m.payload->>'role' = 'ROLE_USER'
                           AND m.seq > (SELECT max(seq) FROM task_events s WHERE s.task_id = c.id AND s.kind = 'status'))
                   ORDER BY status_at, position
                   LIMIT 1"#,
        parent.0,
    )
    .fetch_optional(&mut **tx)
    .await?)
}
