//! Tasks and their log, on the embedded store.

use a2a::Message;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::outbox::outbox_enqueue;
use super::{
    Lite, LiteTx, TASK_COLUMNS_WITH_ARTIFACTS, insert_events, insert_job, json, lock_task, parse, stored_event,
    task_row, update_snapshot, us,
};
use crate::error::StoreError;
use crate::event::StoredEvent;
use crate::id::{Caller, TaskId};
use crate::store::job::JobKind;
use crate::store::row::{EventRows, KeyClaim, NewTaskRows, TaskRow};
use crate::task::TaskRecord;

/// The transaction's time, for each key that was free and is now its task's.
pub(in crate::store) async fn keys_claim(
    tx: &mut LiteTx,
    claims: &[KeyClaim],
) -> Result<Vec<(TaskId, DateTime<Utc>)>, StoreError> {
    let mut claimed = Vec::with_capacity(claims.len());
    for claim in claims {
        let done = sqlx::query(
            "INSERT INTO idempotency_keys (tenant, owner, key, task_id, created_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&claim.tenant)
        .bind(&claim.owner)
        .bind(&claim.key)
        .bind(claim.task_id.0)
        .bind(us(tx.now))
        .execute(tx.conn())
        .await?;
        if done.rows_affected() == 1 {
            claimed.push((claim.task_id, tx.now));
        }
    }
    Ok(claimed)
}

pub(in crate::store) async fn key_owner(lite: &Lite, caller: &Caller, key: &str) -> Result<Option<TaskId>, StoreError> {
    let id: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT task_id FROM idempotency_keys WHERE tenant = ? AND owner = ? AND key = ?")
            .bind(&caller.tenant)
            .bind(&caller.principal)
            .bind(key)
            .fetch_optional(&lite.read)
            .await?;
    Ok(id.map(TaskId))
}

/// One task after another: the embedded store's writer already commits
/// concurrent transactions in groups.
pub(in crate::store) async fn tasks_insert(
    tx: &mut LiteTx,
    tasks: &[NewTaskRows],
    jobs_channel: &str,
) -> Result<(), StoreError> {
    for born in tasks {
        let (task, snapshot) = (&born.task, &born.snapshot);
        sqlx::query(
            "INSERT INTO tasks (id, tenant, owner, context_id, parent_id, state, status, artifact_ids, \
             metadata, trace_context, version, created_at, status_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, '[]', ?, ?, ?, ?, ?)",
        )
        .bind(task.id.0)
        .bind(&task.tenant)
        .bind(&task.owner)
        .bind(&task.context_id)
        .bind(task.parent_id.map(|p| p.0))
        .bind(snapshot.state)
        .bind(json(&snapshot.status))
        .bind(born.metadata.as_ref().map(json))
        .bind(task.trace_context.as_ref().map(json))
        .bind(task.version)
        .bind(us(task.created_at))
        .bind(us(task.status_at))
        .execute(tx.conn())
        .await?;
        insert_events(tx, task.id.0, &born.rows, task.created_at).await?;
        if let Some(job) = &born.job {
            insert_job(tx, task.id.0, job).await?;
            tx.notify(jobs_channel, job.kind.as_str());
        }
    }
    Ok(())
}

pub(in crate::store) async fn task_lock(
    tx: &mut LiteTx,
    task_id: TaskId,
) -> Result<Option<(TaskRow, DateTime<Utc>)>, StoreError> {
    lock_task(tx, task_id.0).await
}

/// The embedded store has one writer: its transaction holds every row, so
/// "locking" many is reading them.
pub(in crate::store) async fn tasks_lock(
    tx: &mut LiteTx,
    task_ids: &[TaskId],
) -> Result<(Vec<TaskRow>, DateTime<Utc>), StoreError> {
    let mut rows = Vec::with_capacity(task_ids.len());
    for id in task_ids {
        if let Some((row, _)) = lock_task(tx, id.0).await? {
            rows.push(row);
        }
    }
    Ok((rows, tx.now))
}

pub(in crate::store) async fn task_fold_write(
    tx: &mut LiteTx,
    task: &TaskRecord,
    before: i64,
    rows: &EventRows,
    pushed: &[i64],
    jobs_channel: &str,
    events_channel: &str,
) -> Result<i64, StoreError> {
    let now = tx.now;
    insert_events(tx, task.id.0, rows, now).await?;
    let updated = update_snapshot(tx, task, before).await?;
    outbox_enqueue(tx, jobs_channel, task.id, pushed).await?;
    tx.notify(events_channel, &crate::channel::EventNotice::payload(task));
    Ok(updated as i64)
}

pub(in crate::store) async fn task_get(
    lite: &Lite,
    caller: &Caller,
    task_id: TaskId,
) -> Result<Option<TaskRow>, StoreError> {
    let sql =
        format!("SELECT {TASK_COLUMNS_WITH_ARTIFACTS} FROM tasks t WHERE t.id = ? AND t.tenant = ? AND t.owner = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(task_id.0)
        .bind(&caller.tenant)
        .bind(&caller.principal)
        .fetch_optional(&lite.read)
        .await?;
    row.as_ref().map(task_row).transpose()
}

pub(in crate::store) async fn task_load(lite: &Lite, task_id: TaskId) -> Result<Option<TaskRow>, StoreError> {
    let sql = format!("SELECT {TASK_COLUMNS_WITH_ARTIFACTS} FROM tasks t WHERE t.id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(task_id.0).fetch_optional(&lite.read).await?;
    row.as_ref().map(task_row).transpose()
}

/// Two reads (the task, then its history).
pub(in crate::store) async fn task_load_with_history(
    lite: &Lite,
    task_id: TaskId,
    history: i64,
) -> Result<Option<(TaskRow, Vec<Value>)>, StoreError> {
    let Some(task) = task_load(lite, task_id).await? else { return Ok(None) };
    Ok(Some((task, task_history(lite, task_id, history).await?)))
}

pub(in crate::store) async fn task_events(
    lite: &Lite,
    task_id: TaskId,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, kind, payload, created_at FROM task_events WHERE task_id = ? AND seq > ? ORDER BY seq LIMIT ?",
    )
    .bind(task_id.0)
    .bind(after_seq)
    .bind(limit)
    .fetch_all(&lite.read)
    .await?;
    rows.iter().map(|r| stored_event(task_id, r)).collect()
}

pub(in crate::store) async fn task_history(lite: &Lite, task_id: TaskId, limit: i64) -> Result<Vec<Value>, StoreError> {
    let texts: Vec<String> = sqlx::query_scalar(
        "SELECT payload FROM (SELECT seq, payload FROM task_events \
         WHERE task_id = ? AND kind = 'message' ORDER BY seq DESC LIMIT ?) ORDER BY seq",
    )
    .bind(task_id.0)
    .bind(limit)
    .fetch_all(&lite.read)
    .await?;
    texts.iter().map(|t| parse(t)).collect()
}

pub(in crate::store) async fn task_message_after(
    lite: &Lite,
    task_id: TaskId,
    after: i64,
) -> Result<Option<(i64, Message)>, StoreError> {
    let row: Option<(i64, String)> = sqlx::query_as(
        "SELECT seq, payload FROM task_events WHERE task_id = ? AND kind = 'message' AND seq > ? \
         AND json_extract(payload, '$.role') = 'ROLE_USER' ORDER BY seq LIMIT 1",
    )
    .bind(task_id.0)
    .bind(after)
    .fetch_optional(&lite.read)
    .await?;
    row.map(|(seq, p)| Ok((seq, serde_json::from_str(&p)?))).transpose()
}

pub(in crate::store) async fn task_question(
    lite: &Lite,
    task_id: TaskId,
) -> Result<Option<(Option<String>, Option<uuid::Uuid>)>, StoreError> {
    let named: Option<Option<String>> = sqlx::query_scalar(
        "SELECT json_extract(status, '$.message.metadata.switchyard.childTaskId') FROM tasks \
         WHERE id = ? AND state IN ('input_required', 'auth_required')",
    )
    .bind(task_id.0)
    .fetch_optional(&lite.read)
    .await?;
    let Some(named) = named else { return Ok(None) };
    let child = match named.as_deref().and_then(|n| uuid::Uuid::parse_str(n).ok()) {
        Some(id) => {
            sqlx::query_scalar("SELECT id FROM tasks WHERE id = ? AND parent_id = ?")
                .bind(id)
                .bind(task_id.0)
                .fetch_optional(&lite.read)
                .await?
        }
        None => None,
    };
    Ok(Some((named, child)))
}

/// The same writes as on PostgreSQL, one statement each.
pub(in crate::store) async fn task_retire(
    tx: &mut LiteTx,
    task_id: TaskId,
    children_reason: &str,
) -> Result<i64, StoreError> {
    let now = us(tx.now);
    sqlx::query("UPDATE jobs SET state = 'done', finished_at = ?, last_error = 'task ended' WHERE task_id = ? AND state = 'ready' AND kind <> 'push'")
        .bind(now)
        .bind(task_id.0)
        .execute(tx.conn())
        .await?;
    let remote = sqlx::query(
        "INSERT INTO jobs (task_id, kind, max_attempts, run_at, created_at) \
         SELECT task_id, ?, 5, ?, ? FROM delegations WHERE task_id = ? AND remote_task_id IS NOT NULL",
    )
    .bind(JobKind::CancelRemote.as_str())
    .bind(now)
    .bind(now)
    .bind(task_id.0)
    .execute(tx.conn())
    .await?
    .rows_affected();
    let children = sqlx::query(
        "INSERT INTO jobs (task_id, kind, payload, max_attempts, run_at, created_at) \
         SELECT id, ?, json_object('reason', ?), 5, ?, ? FROM tasks \
         WHERE parent_id = ? AND state IN ('submitted', 'working', 'input_required', 'auth_required')",
    )
    .bind(JobKind::CancelChild.as_str())
    .bind(children_reason)
    .bind(now)
    .bind(now)
    .bind(task_id.0)
    .execute(tx.conn())
    .await?
    .rows_affected();
    Ok((remote + children) as i64)
}
