//! A plan's runtime, on the embedded store.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{LiteTx, TASK_COLUMNS, json, parse, task_row, us};
use crate::error::StoreError;
use crate::id::TaskId;
use crate::store::plan::ChildRows;
use crate::store::row::TaskRow;
use crate::task::TaskRecord;

pub(in crate::store) async fn plan_record(
    tx: &mut LiteTx,
    task_id: TaskId,
    node: &Value,
    max_attempts: i32,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO task_plans (task_id, plan, max_attempts) VALUES (?, ?, ?)")
        .bind(task_id.0)
        .bind(json(node))
        .bind(max_attempts)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// The children, their first events and their delegations (a statement
/// per row).
pub(in crate::store) async fn children_insert(
    tx: &mut LiteTx,
    parent: &TaskRecord,
    rows: &ChildRows,
    max_attempts: i32,
    now: DateTime<Utc>,
    jobs_channel: &str,
) -> Result<(), StoreError> {
    let at = us(now);
    for i in 0..rows.ids.len() {
        sqlx::query(
            "INSERT INTO tasks (id, tenant, owner, context_id, parent_id, position, state, status, metadata, \
                                trace_context, version, created_at, status_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(rows.ids[i])
        .bind(&parent.tenant)
        .bind(&parent.owner)
        .bind(&rows.contexts[i])
        .bind(parent.id.0)
        .bind(rows.positions[i])
        .bind(&rows.states[i])
        .bind(json(&rows.statuses[i]))
        .bind(json(&rows.metadata[i]))
        .bind(parent.trace_context.as_ref().map(json))
        .bind(rows.versions[i])
        .bind(at)
        .bind(at)
        .execute(tx.conn())
        .await?;
    }
    for i in 0..rows.event_tasks.len() {
        sqlx::query("INSERT INTO task_events (task_id, seq, kind, payload, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(rows.event_tasks[i])
            .bind(rows.event_seqs[i])
            .bind(&rows.event_kinds[i])
            .bind(json(&rows.event_payloads[i]))
            .bind(at)
            .execute(tx.conn())
            .await?;
    }
    for (task, payload) in rows.jobs.iter().zip(&rows.job_payloads) {
        sqlx::query(
            "INSERT INTO jobs (task_id, kind, payload, max_attempts, run_at, created_at) \
             VALUES (?, 'delegate', ?, ?, ?, ?)",
        )
        .bind(task)
        .bind(json(payload))
        .bind(max_attempts)
        .bind(at)
        .bind(at)
        .execute(tx.conn())
        .await?;
    }
    if !rows.jobs.is_empty() {
        tx.notify(jobs_channel, "delegate");
    }
    Ok(())
}

pub(in crate::store) async fn plan_of(tx: &mut LiteTx, task_id: TaskId) -> Result<Option<(Value, i32)>, StoreError> {
    let row: Option<(String, i32)> = sqlx::query_as("SELECT plan, max_attempts FROM task_plans WHERE task_id = ?")
        .bind(task_id.0)
        .fetch_optional(tx.conn())
        .await?;
    row.map(|(plan, max)| Ok((parse(&plan)?, max))).transpose()
}

pub(in crate::store) async fn children_tally(tx: &mut LiteTx, parent: TaskId) -> Result<(i64, i64, i64), StoreError> {
    Ok(sqlx::query_as::<_, (i64, i64, i64)>(
        "SELECT count(*) FILTER (WHERE state = 'completed'), \
                count(*) FILTER (WHERE state IN ('failed', 'canceled', 'rejected')), count(*) \
         FROM tasks WHERE parent_id = ?",
    )
    .bind(parent.0)
    .fetch_one(tx.conn())
    .await?)
}

pub(in crate::store) async fn children_failed(tx: &mut LiteTx, parent: TaskId) -> Result<Vec<TaskRow>, StoreError> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks t WHERE t.parent_id = ? AND t.state IN ('failed', 'canceled', 'rejected') \
         ORDER BY t.position"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(parent.0).fetch_all(tx.conn()).await?;
    rows.iter().map(task_row).collect()
}

pub(in crate::store) async fn step_inputs(
    tx: &mut LiteTx,
    parent: TaskId,
    step: TaskId,
) -> Result<(Value, Vec<Value>), StoreError> {
    let request: String = sqlx::query_scalar(
        "SELECT payload FROM task_events WHERE task_id = ? AND kind = 'message' ORDER BY seq LIMIT 1",
    )
    .bind(parent.0)
    .fetch_one(tx.conn())
    .await?;
    let updates: Vec<String> =
        sqlx::query_scalar("SELECT payload FROM task_events WHERE task_id = ? AND kind = 'artifact' ORDER BY seq")
            .bind(step.0)
            .fetch_all(tx.conn())
            .await?;
    Ok((parse(&request)?, updates.iter().map(|u| parse(u)).collect::<Result<_, _>>()?))
}

pub(in crate::store) async fn children_unanswered(
    tx: &mut LiteTx,
    parent: TaskId,
) -> Result<Option<TaskRow>, StoreError> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks t
         WHERE t.parent_id = ? AND t.state IN ('input_required', 'auth_required')
           AND NOT EXISTS (
               SELECT 1 FROM task_events m
               WHERE m.task_id = t.id AND m.kind = 'message'
                 AND json_extract(m.payload, '$.role') = 'ROLE_USER'
                 AND m.seq > (SELECT max(seq) FROM task_events s WHERE s.task_id = t.id AND s.kind = 'status'))
         ORDER BY t.status_at, t.position
         LIMIT 1"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(parent.0).fetch_optional(tx.conn()).await?;
    row.as_ref().map(task_row).transpose()
}
