//! A delegation's checkpoint and its hot path, on the embedded store.

use sqlx::Row;

use super::outbox::outbox_enqueue;
use super::{Lite, LiteTx, TASK_COLUMNS_WITH_ARTIFACTS, insert_events, task_row, update_snapshot, us};
use crate::error::StoreError;
use crate::event::TaskEvent;
use crate::id::TaskId;
use crate::store::delegation::{Delegation, DelegationStart, FoldWrite, Written};
use crate::store::job::Lease;
use crate::store::outbox::pushable;
use crate::store::row::EventRows;
use crate::task::TaskRecord;

/// The same reads as PostgreSQL's one statement, as three (no lateral
/// joins); the read connection sees one committed state per statement,
/// and the worker holding the lease is the only writer of what it reads.
pub(in crate::store) async fn delegation_start(
    lite: &Lite,
    task_id: TaskId,
) -> Result<Option<DelegationStart>, StoreError> {
    let sql = format!("SELECT {TASK_COLUMNS_WITH_ARTIFACTS} FROM tasks t WHERE t.id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(task_id.0).fetch_optional(&lite.read).await?;
    let Some(row) = row else { return Ok(None) };
    let task = TaskRecord::try_from(task_row(&row)?)?;
    let delegation = delegation_get(lite, task_id).await?;
    let after = delegation.as_ref().and_then(|d| d.forwarded_seq).unwrap_or(0);
    let next = sqlx::query(
        "SELECT seq, payload FROM task_events WHERE task_id = ? AND kind = 'message' \
         AND json_extract(payload, '$.role') = 'ROLE_USER' AND seq > ? ORDER BY seq LIMIT 1",
    )
    .bind(task_id.0)
    .bind(after)
    .fetch_optional(&lite.read)
    .await?;
    let next = match next {
        Some(r) => Some((r.try_get("seq")?, serde_json::from_str(&r.try_get::<String, _>("payload")?)?)),
        None => None,
    };
    Ok(Some(DelegationStart { task, delegation, next }))
}

/// [`delegation_start`] of each: reads of the embedded store are local.
pub(in crate::store) async fn delegations_start(
    lite: &Lite,
    task_ids: &[TaskId],
) -> Result<Vec<DelegationStart>, StoreError> {
    let mut starts = Vec::with_capacity(task_ids.len());
    for task_id in task_ids {
        starts.extend(delegation_start(lite, *task_id).await?);
    }
    Ok(starts)
}

pub(in crate::store) async fn delegation_get(lite: &Lite, task_id: TaskId) -> Result<Option<Delegation>, StoreError> {
    let row = sqlx::query(
        "SELECT agent, remote_task_id, remote_context_id, forwarded_message_id, forwarded_seq, acked_seq, \
                question_id FROM delegations WHERE task_id = ?",
    )
    .bind(task_id.0)
    .fetch_optional(&lite.read)
    .await?;
    row.map(|r| {
        Ok(Delegation {
            agent: r.try_get("agent")?,
            remote_task_id: r.try_get("remote_task_id")?,
            remote_context_id: r.try_get("remote_context_id")?,
            forwarded_message_id: r.try_get("forwarded_message_id")?,
            forwarded_seq: r.try_get("forwarded_seq")?,
            acked_seq: r.try_get("acked_seq")?,
            question_id: r.try_get("question_id")?,
        })
    })
    .transpose()
}

pub(in crate::store) async fn delegation_push_token(
    lite: &Lite,
    task_id: TaskId,
) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar::<_, Option<String>>("SELECT push_token FROM delegations WHERE task_id = ?")
        .bind(task_id.0)
        .fetch_optional(&lite.read)
        .await?
        .flatten())
}

pub(in crate::store) async fn delegation_set_push_token(
    lite: &Lite,
    task_id: TaskId,
    token: &str,
) -> Result<(), StoreError> {
    lite.write(async |c, _now| {
        sqlx::query("UPDATE delegations SET push_token = ? WHERE task_id = ?")
            .bind(token)
            .bind(task_id.0)
            .execute(c)
            .await?;
        Ok(())
    })
    .await
}

pub(in crate::store) async fn delegation_wake(
    lite: &Lite,
    task_id: TaskId,
    jobs_channel: &str,
) -> Result<(), StoreError> {
    let woken = lite
        .write(async |c, now| {
            // A leased job keeps the wake-up until it parks (`job_snooze`).
            sqlx::query("UPDATE jobs SET woken_at = ?1 WHERE task_id = ?2 AND kind = 'delegate' AND state = 'leased'")
                .bind(us(now))
                .bind(task_id.0)
                .execute(&mut *c)
                .await?;
            Ok(sqlx::query(
                "UPDATE jobs SET run_at = ?1 \
                 WHERE task_id = ?2 AND kind = 'delegate' AND state = 'ready' AND run_at > ?1",
            )
            .bind(us(now))
            .bind(task_id.0)
            .execute(c)
            .await?
            .rows_affected())
        })
        .await?;
    if woken > 0 {
        lite.wake(jobs_channel, "delegate");
    }
    Ok(())
}

/// The same writes as PostgreSQL's one statement, one statement each.
#[allow(clippy::too_many_arguments)]
pub(in crate::store) async fn fold_write(
    tx: &mut LiteTx,
    channel: &str,
    jobs_channel: &str,
    lease: &Lease,
    checkpoint: Option<&Delegation>,
    task: &TaskRecord,
    before: i64,
    events: &[TaskEvent],
    settle: bool,
) -> Result<Written, StoreError> {
    let now = us(tx.now);
    if let Some(d) = checkpoint {
        sqlx::query(
            "INSERT INTO delegations (task_id, agent, remote_task_id, remote_context_id, forwarded_message_id, \
                                      forwarded_seq, acked_seq, question_id, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (task_id) DO UPDATE SET agent = excluded.agent, \
                 remote_task_id = excluded.remote_task_id, remote_context_id = excluded.remote_context_id, \
                 forwarded_message_id = excluded.forwarded_message_id, forwarded_seq = excluded.forwarded_seq, \
                 acked_seq = excluded.acked_seq, question_id = excluded.question_id, updated_at = excluded.updated_at",
        )
        .bind(lease.task_id.0)
        .bind(&d.agent)
        .bind(&d.remote_task_id)
        .bind(&d.remote_context_id)
        .bind(&d.forwarded_message_id)
        .bind(d.forwarded_seq)
        .bind(d.acked_seq)
        .bind(&d.question_id)
        .bind(now)
        .execute(tx.conn())
        .await?;
    }
    let mut task_updated = 0;
    if !events.is_empty() {
        insert_events(tx, lease.task_id.0, &EventRows::of(before + 1, events), tx.now).await?;
        task_updated = update_snapshot(tx, task, before).await? as i64;
    }
    let held = if settle {
        sqlx::query(
            "UPDATE jobs SET state = 'done', finished_at = ?, lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = ? AND lease_token = ? AND state = 'leased'",
        )
        .bind(now)
        .bind(lease.job_id.0)
        .bind(lease.token)
        .execute(tx.conn())
        .await?
        .rows_affected()
    } else {
        sqlx::query_scalar::<_, i64>("SELECT id FROM jobs WHERE id = ? AND lease_token = ? AND state = 'leased'")
            .bind(lease.job_id.0)
            .bind(lease.token)
            .fetch_optional(tx.conn())
            .await?
            .map_or(0, |_| 1)
    };
    outbox_enqueue(tx, jobs_channel, lease.task_id, &pushable(before + 1, events)).await?;
    if !events.is_empty() {
        tx.notify(channel, &crate::channel::EventNotice::payload(task));
    }
    Ok(Written { task_updated, job_held: held as i64 })
}

pub(in crate::store) async fn follow_up_pending(tx: &mut LiteTx, task_id: TaskId) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM task_events WHERE task_id = ?1 AND kind = 'message' \
         AND json_extract(payload, '$.role') = 'ROLE_USER' \
         AND seq > (SELECT forwarded_seq FROM delegations WHERE task_id = ?1))",
    )
    .bind(task_id.0)
    .fetch_one(tx.conn())
    .await?)
}

/// One writer holds the whole file: a batch is its folds one after another.
pub(in crate::store) async fn folds_write(
    tx: &mut LiteTx,
    channel: &str,
    jobs_channel: &str,
    folds: &[FoldWrite<'_>],
) -> Result<Vec<Written>, StoreError> {
    let mut written = Vec::with_capacity(folds.len());
    for f in folds {
        written.push(
            fold_write(tx, channel, jobs_channel, f.lease, f.checkpoint, f.task, f.before, f.events, f.settle).await?,
        );
    }
    Ok(written)
}
