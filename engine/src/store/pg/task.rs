//! Tasks and their log, on PostgreSQL.

use a2a::Message;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

use super::PgTx;
use crate::error::StoreError;
use crate::event::{StoredEvent, TaskEvent};
use crate::id::{Caller, TaskId};
use crate::store::job::{JobKind, NewJob};
use crate::store::row::{EventRows, Snapshot, TaskRow, task_row};
use crate::task::TaskRecord;

/// The key's row says when: the database's clock, which the task's
/// creation and first status take too.
pub(in crate::store) async fn key_claim(
    tx: &mut PgTx,
    caller: &Caller,
    key: &str,
    task_id: TaskId,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"INSERT INTO idempotency_keys (tenant, owner, key, task_id)
                                   VALUES ($1, $2, $3, $4)
                                   ON CONFLICT DO NOTHING
                                   RETURNING created_at"#,
        caller.tenant,
        caller.principal,
        key,
        task_id.0,
    )
    .fetch_optional(&mut **tx)
    .await?)
}

pub(in crate::store) async fn key_owner(
    pool: &PgPool,
    caller: &Caller,
    key: &str,
) -> Result<Option<TaskId>, StoreError> {
    let id = sqlx::query_scalar!(
        "SELECT task_id FROM idempotency_keys WHERE tenant = $1 AND owner = $2 AND key = $3",
        caller.tenant,
        caller.principal,
        key,
    )
    .fetch_optional(pool)
    .await?;
    Ok(id.map(TaskId))
}

/// The task, its first events, its job and the workers' wake-up in ONE
/// statement (the foreign keys are checked at its end, when the task row
/// is there).
#[allow(clippy::too_many_arguments)]
pub(in crate::store) async fn task_insert(
    tx: &mut PgTx,
    task: &TaskRecord,
    snapshot: &Snapshot,
    metadata: Option<&Value>,
    rows: &EventRows,
    job: Option<&NewJob>,
    jobs_channel: &str,
) -> Result<(), StoreError> {
    sqlx::query!(
        r#"WITH created AS (
                           INSERT INTO tasks (id, tenant, owner, context_id, parent_id, state, status, artifact_ids,
                                              metadata, trace_context, version, created_at, status_at)
                           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                       ),
                       logged AS (
                           INSERT INTO task_events (task_id, seq, kind, payload, created_at)
                           SELECT $1, seq, kind, payload, $12
                           FROM UNNEST($14::bigint[], $15::text[], $16::jsonb[]) AS e(seq, kind, payload)
                       ),
                       queued AS (
                           INSERT INTO jobs (task_id, kind, payload, priority, max_attempts, run_at)
                           SELECT $1, $17, $18, $19, $20, COALESCE($21, now()) WHERE $22
                           RETURNING id
                       )
                       SELECT CASE WHEN EXISTS (SELECT 1 FROM queued) THEN pg_notify($23, $17) END AS notified"#,
        task.id.0,
        task.tenant,
        task.owner,
        task.context_id,
        task.parent_id.map(|p| p.0),
        snapshot.state,
        snapshot.status,
        &snapshot.artifact_ids,
        metadata,
        task.trace_context,
        task.version,
        task.created_at,
        task.status_at,
        &rows.seqs,
        &rows.kinds,
        &rows.payloads,
        job.map_or(JobKind::Delegate.as_str(), |j| j.kind.as_str()),
        job.map(|j| j.payload.clone()),
        job.map_or(0, |j| j.priority),
        job.map_or(1, |j| j.max_attempts),
        job.and_then(|j| j.run_at),
        job.is_some(),
        jobs_channel,
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok(())
}

/// Locks a task row for the rest of the transaction, with the database's
/// clock (the transaction's start).
pub(in crate::store) async fn task_lock(
    tx: &mut PgTx,
    task_id: TaskId,
) -> Result<Option<(TaskRow, DateTime<Utc>)>, StoreError> {
    let row = sqlx::query!(
        r#"SELECT id, tenant, owner, context_id, parent_id, state, status, NULL::jsonb AS artifacts, artifact_ids,
                  metadata, trace_context, version, created_at, status_at, now() AS "now!"
           FROM tasks WHERE id = $1 FOR UPDATE"#,
        task_id.0,
    )
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|r| {
        let task = task_row!(r);
        (task, r.now)
    }))
}

/// The log rows, the snapshot, the webhooks' outbox rows and their delivery
/// jobs, and the wake-ups, in ONE statement; the task rows updated.
pub(in crate::store) async fn task_fold_write(
    tx: &mut PgTx,
    task: &TaskRecord,
    before: i64,
    rows: &EventRows,
    pushed: &[i64],
    jobs_channel: &str,
    events_channel: &str,
) -> Result<i64, StoreError> {
    let snapshot = Snapshot::of(task)?;
    let written = sqlx::query!(
        r#"WITH logged AS (
                   INSERT INTO task_events (task_id, seq, kind, payload, created_at)
                   SELECT $1, seq, kind, payload, now()
                   FROM UNNEST($8::bigint[], $9::text[], $10::jsonb[]) AS e(seq, kind, payload)
               ),
               folded AS (
                   UPDATE tasks SET state = $2, status = $3, artifact_ids = $4, version = $5, status_at = $6
                   WHERE id = $1 AND version = $7
                   RETURNING id
               )
               SELECT (SELECT count(*) FROM folded) AS "updated!",
                      CASE WHEN cardinality($11::bigint[]) > 0 THEN outbox_enqueue($1, $11, $12) END AS pushes_queued,
                      CASE WHEN true THEN pg_notify($13, $14) END AS events_notified"#,
        task.id.0,
        snapshot.state,
        snapshot.status,
        &snapshot.artifact_ids,
        task.version,
        task.status_at,
        before,
        &rows.seqs,
        &rows.kinds,
        &rows.payloads,
        pushed,
        jobs_channel,
        events_channel,
        crate::channel::EventNotice::payload(task),
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok(written.updated)
}

pub(in crate::store) async fn task_get(
    pool: &PgPool,
    caller: &Caller,
    task_id: TaskId,
) -> Result<Option<TaskRow>, StoreError> {
    Ok(sqlx::query_as!(
        TaskRow,
        r#"SELECT id, tenant, owner, context_id, parent_id, state, status,
                      (SELECT jsonb_agg(e.payload ORDER BY e.seq) FROM task_events e
                       WHERE e.task_id = tasks.id AND e.kind = 'artifact') AS artifacts,
                      artifact_ids,
                      metadata, trace_context, version, created_at, status_at
               FROM tasks WHERE id = $1 AND tenant = $2 AND owner = $3"#,
        task_id.0,
        caller.tenant,
        caller.principal,
    )
    .fetch_optional(pool)
    .await?)
}

pub(in crate::store) async fn task_load(pool: &PgPool, task_id: TaskId) -> Result<Option<TaskRow>, StoreError> {
    Ok(sqlx::query_as!(
        TaskRow,
        r#"SELECT id, tenant, owner, context_id, parent_id, state, status,
                      (SELECT jsonb_agg(e.payload ORDER BY e.seq) FROM task_events e
                       WHERE e.task_id = tasks.id AND e.kind = 'artifact') AS artifacts,
                      artifact_ids,
                      metadata, trace_context, version, created_at, status_at
               FROM tasks WHERE id = $1"#,
        task_id.0,
    )
    .fetch_optional(pool)
    .await?)
}

/// In one round trip.
pub(in crate::store) async fn task_load_with_history(
    pool: &PgPool,
    task_id: TaskId,
    history: i64,
) -> Result<Option<(TaskRow, Vec<Value>)>, StoreError> {
    let row = sqlx::query!(
        r#"SELECT id, tenant, owner, context_id, parent_id, state, status,
                      (SELECT jsonb_agg(e.payload ORDER BY e.seq) FROM task_events e
                       WHERE e.task_id = t.id AND e.kind = 'artifact') AS artifacts,
                      artifact_ids,
                      metadata, trace_context, version, created_at, status_at,
                      (SELECT coalesce(jsonb_agg(payload ORDER BY seq), '[]'::jsonb) FROM (
                           SELECT seq, payload FROM task_events
                           WHERE task_id = t.id AND kind = 'message' ORDER BY seq DESC LIMIT $2
                       ) recent) AS "history!"
               FROM tasks t WHERE id = $1"#,
        task_id.0,
        history,
    )
    .fetch_optional(pool)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let history = serde_json::from_value(r.history.clone())?;
    Ok(Some((task_row!(r), history)))
}

pub(in crate::store) async fn task_events(
    pool: &PgPool,
    task_id: TaskId,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let rows = sqlx::query!(
        r#"SELECT seq, kind, payload, created_at FROM task_events
               WHERE task_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"#,
        task_id.0,
        after_seq,
        limit,
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(StoredEvent {
                task_id,
                seq: r.seq,
                event: TaskEvent::from_row(&r.kind, r.payload)?,
                created_at: r.created_at,
            })
        })
        .collect()
}

pub(in crate::store) async fn task_history(
    pool: &PgPool,
    task_id: TaskId,
    limit: i64,
) -> Result<Vec<Value>, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT payload AS "payload!" FROM (
                       SELECT seq, payload FROM task_events
                       WHERE task_id = $1 AND kind = 'message' ORDER BY seq DESC LIMIT $2
                   ) recent ORDER BY seq"#,
        task_id.0,
        limit,
    )
    .fetch_all(pool)
    .await?)
}

pub(in crate::store) async fn task_message_after(
    pool: &PgPool,
    task_id: TaskId,
    after: i64,
) -> Result<Option<(i64, Message)>, StoreError> {
    let row = sqlx::query!(
        r#"SELECT seq, payload FROM task_events
               WHERE task_id = $1 AND kind = 'message' AND seq > $2 AND payload->>'role' = 'ROLE_USER'
               ORDER BY seq LIMIT 1"#,
        task_id.0,
        after,
    )
    .fetch_optional(pool)
    .await?;
    row.map(|r| Ok((r.seq, serde_json::from_value(r.payload)?))).transpose()
}

pub(in crate::store) async fn task_question(
    pool: &PgPool,
    task_id: TaskId,
) -> Result<Option<(Option<String>, Option<uuid::Uuid>)>, StoreError> {
    Ok(sqlx::query!(
        r#"SELECT p.status->'message'->'metadata'->'switchyard'->>'childTaskId' AS named,
                              (SELECT c.id FROM tasks c
                               WHERE c.parent_id = p.id
                                 AND c.id::text = p.status->'message'->'metadata'->'switchyard'->>'childTaskId') AS child
                       FROM tasks p WHERE p.id = $1 AND p.state IN ('input_required', 'auth_required')"#,
        task_id.0,
    )
    .fetch_optional(pool)
    .await?
    .map(|r| (r.named, r.child)))
}

/// A task's ending's writes in ONE statement: its waiting jobs retired,
/// its remote task's cancel and its open children's queued; how many jobs
/// it queued.
pub(in crate::store) async fn task_retire(
    tx: &mut PgTx,
    task_id: TaskId,
    children_reason: &str,
) -> Result<i64, StoreError> {
    Ok(sqlx::query!(
        r#"WITH retired AS (
                   UPDATE jobs SET state = 'done', finished_at = now(), last_error = 'task ended'
                   WHERE task_id = $1 AND state = 'ready' AND kind <> 'push'
               ),
               remote AS (
                   INSERT INTO jobs (task_id, kind, max_attempts)
                   SELECT task_id, $2, 5 FROM delegations WHERE task_id = $1 AND remote_task_id IS NOT NULL
                   RETURNING id
               ),
               children AS (
                   INSERT INTO jobs (task_id, kind, payload, max_attempts)
                   SELECT id, $3, jsonb_build_object('reason', $4::text), 5 FROM tasks
                   WHERE parent_id = $1 AND state IN ('submitted', 'working', 'input_required', 'auth_required')
                   RETURNING id
               )
               SELECT (SELECT count(*) FROM remote) + (SELECT count(*) FROM children) AS "queued!""#,
        task_id.0,
        JobKind::CancelRemote.as_str(),
        JobKind::CancelChild.as_str(),
        children_reason,
    )
    .fetch_one(&mut **tx)
    .await?
    .queued)
}
