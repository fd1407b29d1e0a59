//! The webhook outbox and its delivery jobs, on PostgreSQL.

use std::time::Duration;

use sqlx::PgPool;

use super::PgTx;
use crate::error::StoreError;
use crate::event::{StoredEvent, TaskEvent};
use crate::id::TaskId;
use crate::store::job::JobKind;
use crate::store::outbox::{DeliveryFate, DeliveryRecord, Outbox, PendingDelivery};
use crate::store::push_config::PushConfig;

pub(in crate::store) async fn outbox_enqueue(
    tx: &mut PgTx,
    jobs_channel: &str,
    task_id: TaskId,
    seqs: &[i64],
) -> Result<(), StoreError> {
    sqlx::query_scalar!("SELECT outbox_enqueue($1, $2, $3)", task_id.0, seqs, jobs_channel)
        .fetch_one(&mut **tx)
        .await?;
    Ok(())
}

pub(in crate::store) async fn outbox_read(
    pool: &PgPool,
    task_id: TaskId,
    config_id: &str,
    limit: i64,
) -> Result<Option<Outbox>, StoreError> {
    let config = sqlx::query!(
        r#"SELECT c.url, c.token, c.authentication, c.version, t.context_id, t.trace_context, now() AS "now!"
               FROM push_configs c JOIN tasks t ON t.id = c.task_id
               WHERE c.task_id = $1 AND c.id = $2"#,
        task_id.0,
        config_id,
    )
    .fetch_optional(pool)
    .await?;
    let Some(c) = config else { return Ok(None) };
    let rows = sqlx::query!(
        r#"SELECT d.id, d.attempts, d.next_at, e.seq, e.kind, e.payload, e.created_at
               FROM push_deliveries d JOIN task_events e ON e.task_id = d.task_id AND e.seq = d.seq
               WHERE d.task_id = $1 AND d.config_id = $2 AND d.state = 'pending'
               ORDER BY d.seq LIMIT $3"#,
        task_id.0,
        config_id,
        limit,
    )
    .fetch_all(pool)
    .await?;
    let pending = rows
        .into_iter()
        .map(|r| {
            Ok(PendingDelivery {
                id: r.id,
                attempts: r.attempts,
                next_at: r.next_at,
                event: StoredEvent {
                    task_id,
                    seq: r.seq,
                    event: TaskEvent::from_row(&r.kind, r.payload)?,
                    created_at: r.created_at,
                },
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Some(Outbox {
        config: PushConfig {
            task_id,
            id: config_id.to_owned(),
            url: c.url,
            token: c.token,
            authentication: c.authentication,
            version: c.version,
        },
        context_id: c.context_id,
        trace_context: c.trace_context,
        pending,
        now: c.now,
    }))
}

pub(in crate::store) async fn outbox_delivered(pool: &PgPool, deliveries: &[i64]) -> Result<(), StoreError> {
    sqlx::query!(
        r#"UPDATE push_deliveries SET state = 'delivered', attempts = attempts + 1, finished_at = now(),
                                          last_error = NULL
               WHERE id = ANY($1) AND state = 'pending'"#,
        deliveries,
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub(in crate::store) async fn outbox_failed(
    pool: &PgPool,
    delivery: i64,
    error: &str,
    delay: Duration,
    max_attempts: i32,
) -> Result<DeliveryFate, StoreError> {
    let row = sqlx::query!(
        r#"UPDATE push_deliveries SET
                   attempts = attempts + 1,
                   state = CASE WHEN attempts + 1 >= $3 THEN 'dead' ELSE 'pending' END,
                   finished_at = CASE WHEN attempts + 1 >= $3 THEN now() END,
                   next_at = CASE WHEN attempts + 1 >= $3 THEN next_at
                                  ELSE now() + make_interval(secs => $4) END,
                   last_error = $2
               WHERE id = $1 AND state = 'pending'
               RETURNING state, next_at"#,
        delivery,
        error,
        max_attempts,
        delay.as_secs_f64(),
    )
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some(r) if r.state == "pending" => DeliveryFate::RetryAt(r.next_at),
        _ => DeliveryFate::Dead,
    })
}

/// Under a share lock on the task's row, which every event writer holds
/// exclusively: no delivery can be written between this look and COMMIT.
pub(in crate::store) async fn outbox_pending(
    tx: &mut PgTx,
    task_id: TaskId,
    config_id: &str,
) -> Result<bool, StoreError> {
    sqlx::query!("SELECT id FROM tasks WHERE id = $1 FOR SHARE", task_id.0).fetch_optional(&mut **tx).await?;
    Ok(sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM push_deliveries
                                          WHERE task_id = $1 AND config_id = $2 AND state = 'pending') AS "pending!""#,
        task_id.0,
        config_id,
    )
    .fetch_one(&mut **tx)
    .await?)
}

pub(in crate::store) async fn outbox_adopt_orphans(tx: &mut PgTx, limit: i64) -> Result<u64, StoreError> {
    Ok(sqlx::query!(
        r#"INSERT INTO jobs (task_id, kind, payload, max_attempts)
                       SELECT o.task_id, $1, jsonb_build_object('config', o.config_id), 1000
                       FROM (SELECT DISTINCT d.task_id, d.config_id FROM push_deliveries d
                             WHERE d.state = 'pending'
                               AND NOT EXISTS (SELECT 1 FROM jobs j
                                               WHERE j.task_id = d.task_id AND j.kind = 'push'
                                                 AND j.state IN ('ready', 'leased')
                                                 AND j.payload->>'config' = d.config_id)
                             LIMIT $2) o
                       ON CONFLICT (task_id, (payload->>'config')) WHERE kind = 'push' AND state IN ('ready', 'leased')
                       DO NOTHING"#,
        JobKind::Push.as_str(),
        limit,
    )
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

pub(in crate::store) async fn deliveries_list(
    pool: &PgPool,
    state: Option<&str>,
    task: Option<TaskId>,
    limit: i64,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let rows = sqlx::query!(
        r#"SELECT d.id, d.task_id, d.config_id, c.url, d.seq, d.state, d.attempts, d.next_at, d.last_error,
                      d.finished_at
               FROM push_deliveries d JOIN push_configs c ON c.task_id = d.task_id AND c.id = d.config_id
               WHERE ($1::text IS NULL OR d.state = $1) AND ($3::uuid IS NULL OR d.task_id = $3)
               ORDER BY d.id DESC LIMIT $2"#,
        state,
        limit,
        task.map(|t| t.0),
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| DeliveryRecord {
            id: r.id,
            task_id: TaskId(r.task_id),
            config_id: r.config_id,
            url: crate::egress::redacted(&r.url),
            seq: r.seq,
            state: r.state,
            attempts: r.attempts,
            next_at: r.next_at,
            last_error: r.last_error,
            finished_at: r.finished_at,
        })
        .collect())
}

pub(in crate::store) async fn delivery_requeue(tx: &mut PgTx, delivery: i64) -> Result<(), StoreError> {
    let row = sqlx::query!(
        r#"UPDATE push_deliveries SET state = 'pending', attempts = 0, next_at = now(), finished_at = NULL
                           WHERE id = $1 AND state = 'dead'
                           RETURNING task_id, config_id"#,
        delivery,
    )
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::DeliveryNotDead(delivery))?;
    sqlx::query!(
        r#"INSERT INTO jobs (task_id, kind, payload, max_attempts)
                           VALUES ($1, $2, jsonb_build_object('config', $3::text), 1000)
                           ON CONFLICT (task_id, (payload->>'config')) WHERE kind = 'push' AND state IN ('ready', 'leased')
                           DO NOTHING"#,
        row.task_id,
        JobKind::Push.as_str(),
        row.config_id,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}
