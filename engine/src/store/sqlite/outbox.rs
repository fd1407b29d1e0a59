//! The webhook outbox and its delivery jobs, on the embedded store.

use std::time::Duration;

use sqlx::Row;
use uuid::Uuid;

use super::push_config::push_config;
use super::{Lite, LiteTx, at, now, parse_opt, stored_event, us, us_after};
use crate::error::StoreError;
use crate::id::TaskId;
use crate::store::outbox::{DeliveryFate, DeliveryRecord, Outbox, PendingDelivery};

/// The outbox rows for events `seqs` of a task, one per webhook it has,
/// and each webhook's live delivery job (a wake-up for a new one).
pub(in crate::store) async fn outbox_enqueue(
    tx: &mut LiteTx,
    jobs_channel: &str,
    task_id: TaskId,
    seqs: &[i64],
) -> Result<(), StoreError> {
    if seqs.is_empty() {
        return Ok(());
    }
    let task = task_id.0;
    let configs: Vec<String> =
        sqlx::query_scalar("SELECT id FROM push_configs WHERE task_id = ?").bind(task).fetch_all(tx.conn()).await?;
    let now = us(tx.now);
    let mut queued = false;
    for config in &configs {
        for seq in seqs {
            sqlx::query(
                "INSERT INTO push_deliveries (task_id, config_id, seq, next_at, created_at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(task)
            .bind(config)
            .bind(seq)
            .bind(now)
            .bind(now)
            .execute(tx.conn())
            .await?;
        }
        queued |= ensure_push_job(tx, task, config).await?;
    }
    if queued {
        tx.notify(jobs_channel, "push");
    }
    Ok(())
}

/// Makes sure a webhook has its live delivery job; true when one was created.
pub(super) async fn ensure_push_job(tx: &mut LiteTx, task: Uuid, config: &str) -> Result<bool, StoreError> {
    let now = us(tx.now);
    let created = sqlx::query(
        "INSERT INTO jobs (task_id, kind, payload, max_attempts, run_at, created_at) \
         VALUES (?, 'push', json_object('config', ?), 1000, ?, ?) \
         ON CONFLICT (task_id, json_extract(payload, '$.config')) WHERE kind = 'push' AND state IN ('ready', 'leased') \
         DO NOTHING",
    )
    .bind(task)
    .bind(config)
    .bind(now)
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(created.rows_affected() > 0)
}

pub(in crate::store) async fn outbox_read(
    lite: &Lite,
    task_id: TaskId,
    config_id: &str,
    limit: i64,
) -> Result<Option<Outbox>, StoreError> {
    let config = sqlx::query(
        "SELECT c.task_id, c.id, c.url, c.token, c.authentication, c.version, t.context_id, t.trace_context \
         FROM push_configs c JOIN tasks t ON t.id = c.task_id WHERE c.task_id = ? AND c.id = ?",
    )
    .bind(task_id.0)
    .bind(config_id)
    .fetch_optional(&lite.read)
    .await?;
    let Some(c) = config else { return Ok(None) };
    let rows = sqlx::query(
        "SELECT d.id, d.attempts, d.next_at, e.seq, e.kind, e.payload, e.created_at \
         FROM push_deliveries d JOIN task_events e ON e.task_id = d.task_id AND e.seq = d.seq \
         WHERE d.task_id = ? AND d.config_id = ? AND d.state = 'pending' ORDER BY d.seq LIMIT ?",
    )
    .bind(task_id.0)
    .bind(config_id)
    .bind(limit)
    .fetch_all(&lite.read)
    .await?;
    let pending = rows
        .iter()
        .map(|r| {
            Ok(PendingDelivery {
                id: r.try_get("id")?,
                attempts: r.try_get("attempts")?,
                next_at: at(r.try_get("next_at")?),
                event: stored_event(task_id, r)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Some(Outbox {
        config: push_config(&c)?,
        context_id: c.try_get("context_id")?,
        trace_context: parse_opt(c.try_get("trace_context")?)?,
        pending,
        now: now(),
    }))
}

pub(in crate::store) async fn outbox_delivered(lite: &Lite, deliveries: &[i64]) -> Result<(), StoreError> {
    lite.write(async |c, now| {
        for id in deliveries {
            sqlx::query(
                "UPDATE push_deliveries SET state = 'delivered', attempts = attempts + 1, \
                 finished_at = ?, last_error = NULL WHERE id = ? AND state = 'pending'",
            )
            .bind(us(now))
            .bind(id)
            .execute(&mut *c)
            .await?;
        }
        Ok(())
    })
    .await
}

pub(in crate::store) async fn outbox_failed(
    lite: &Lite,
    delivery: i64,
    error: &str,
    delay: Duration,
    max_attempts: i32,
) -> Result<DeliveryFate, StoreError> {
    let row: Option<(String, i64)> = lite
        .write(async |c, now| {
            Ok(sqlx::query_as(
                "UPDATE push_deliveries SET
                     attempts = attempts + 1,
                     state = CASE WHEN attempts + 1 >= ?3 THEN 'dead' ELSE 'pending' END,
                     finished_at = CASE WHEN attempts + 1 >= ?3 THEN ?4 END,
                     next_at = CASE WHEN attempts + 1 >= ?3 THEN next_at ELSE ?5 END,
                     last_error = ?2
                 WHERE id = ?1 AND state = 'pending'
                 RETURNING state, next_at",
            )
            .bind(delivery)
            .bind(error)
            .bind(max_attempts)
            .bind(us(now))
            .bind(us_after(now, delay))
            .fetch_optional(c)
            .await?)
        })
        .await?;
    Ok(match row {
        Some((state, next_at)) if state == "pending" => DeliveryFate::RetryAt(at(next_at)),
        _ => DeliveryFate::Dead,
    })
}

/// The one writer: nothing can be written between this look and COMMIT.
pub(in crate::store) async fn outbox_pending(
    tx: &mut LiteTx,
    task_id: TaskId,
    config_id: &str,
) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM push_deliveries WHERE task_id = ? AND config_id = ? AND state = 'pending')",
    )
    .bind(task_id.0)
    .bind(config_id)
    .fetch_one(tx.conn())
    .await?)
}

pub(in crate::store) async fn outbox_adopt_orphans(tx: &mut LiteTx, limit: i64) -> Result<u64, StoreError> {
    let orphans: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT DISTINCT d.task_id, d.config_id FROM push_deliveries d \
         WHERE d.state = 'pending' AND NOT EXISTS (SELECT 1 FROM jobs j \
             WHERE j.task_id = d.task_id AND j.kind = 'push' AND j.state IN ('ready', 'leased') \
               AND json_extract(j.payload, '$.config') = d.config_id) \
         LIMIT ?",
    )
    .bind(limit)
    .fetch_all(tx.conn())
    .await?;
    let mut adopted = 0;
    for (task, config) in &orphans {
        adopted += u64::from(ensure_push_job(tx, *task, config).await?);
    }
    Ok(adopted)
}

pub(in crate::store) async fn deliveries_list(
    lite: &Lite,
    state: Option<&str>,
    task: Option<TaskId>,
    limit: i64,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT d.id, d.task_id, d.config_id, c.url, d.seq, d.state, d.attempts, d.next_at, d.last_error, \
                d.finished_at \
         FROM push_deliveries d JOIN push_configs c ON c.task_id = d.task_id AND c.id = d.config_id \
         WHERE (?1 IS NULL OR d.state = ?1) AND (?3 IS NULL OR d.task_id = ?3) ORDER BY d.id DESC LIMIT ?2",
    )
    .bind(state)
    .bind(limit)
    .bind(task.map(|t| t.0))
    .fetch_all(&lite.read)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(DeliveryRecord {
                id: r.try_get("id")?,
                task_id: TaskId(r.try_get("task_id")?),
                config_id: r.try_get("config_id")?,
                url: crate::egress::redacted(&r.try_get::<String, _>("url")?),
                seq: r.try_get("seq")?,
                state: r.try_get("state")?,
                attempts: r.try_get("attempts")?,
                next_at: at(r.try_get("next_at")?),
                last_error: r.try_get("last_error")?,
                finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(at),
            })
        })
        .collect()
}

pub(in crate::store) async fn delivery_requeue(tx: &mut LiteTx, delivery: i64) -> Result<(), StoreError> {
    let row: (Uuid, String) = sqlx::query_as(
        "UPDATE push_deliveries SET state = 'pending', attempts = 0, next_at = ?, finished_at = NULL \
         WHERE id = ? AND state = 'dead' RETURNING task_id, config_id",
    )
    .bind(us(tx.now))
    .bind(delivery)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::DeliveryNotDead(delivery))?;
    ensure_push_job(tx, row.0, &row.1).await?;
    Ok(())
}
