//! Push notifications (webhooks): the configurations of a caller's tasks,
//! and the outbox their deliveries go through.
//!
//! Every status and artifact event of a task with webhooks gets one outbox
//! row per webhook, written by the statement that writes the event, and a
//! `push` job per webhook (one live at a time) delivers that webhook's rows
//! in log order. The job settles under the task's row lock, the lock every
//! event writer holds, so a row written while it drained is never stranded.
//! Failures are counted per delivery, not per job: the job waits for a
//! retry without spending attempts, and its 1,000 attempts are spent only by
//! workers that died holding it (each such loss requeues it).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::job::{JobKind, Lease};
use super::{Db, Store, Tx, in_tx, lite, notify};
use crate::error::StoreError;
use crate::event::{StoredEvent, TaskEvent};
use crate::id::{Caller, TaskId};

/// Webhooks a task may have at most.
pub const MAX_PUSH_CONFIGS: i64 = 50;

impl std::fmt::Debug for PushConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token, the credentials and the URL's query are the receiver's
        // secrets: whether they are set, and where, is all a log may say.
        f.debug_struct("PushConfig")
            .field("task_id", &self.task_id)
            .field("id", &self.id)
            .field("url", &crate::egress::redacted(&self.url))
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("authentication", &self.authentication.as_ref().map(|_| "…"))
            .field("version", &self.version)
            .finish()
    }
}

/// A webhook registered for a task.
#[derive(Clone, PartialEq)]
pub struct PushConfig {
    pub task_id: TaskId,
    pub id: String,
    pub url: String,
    pub token: Option<String>,
    /// A2A `AuthenticationInfo` as JSON (`scheme`, `credentials`).
    pub authentication: Option<Value>,
    /// The protocol version it was created through ("1.0" or "0.3"): its
    /// deliveries take that version's payload shape.
    pub version: String,
}

/// A delivery waiting to go out, with what it announces.
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    pub id: i64,
    pub attempts: i32,
    pub next_at: DateTime<Utc>,
    pub event: StoredEvent,
}

/// What a webhook's delivery job works from: the webhook, the task's
/// context id, and its oldest pending deliveries in log order.
#[derive(Debug, Clone)]
pub struct Outbox {
    pub config: PushConfig,
    pub context_id: String,
    /// The task's trace context, continued on the POST.
    pub trace_context: Option<Value>,
    pub pending: Vec<PendingDelivery>,
    /// The database's clock, for comparing with `next_at`.
    pub now: DateTime<Utc>,
}

/// A delivery as operators see it.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub id: i64,
    pub task_id: TaskId,
    pub config_id: String,
    /// Where it goes, without credentials, query or fragment.
    pub url: String,
    pub seq: i64,
    pub state: String,
    pub attempts: i32,
    pub next_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// What became of a failed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryFate {
    /// Tried again at this instant.
    RetryAt(DateTime<Utc>),
    /// Out of attempts: dead-lettered; the webhook's next deliveries go on.
    Dead,
}

impl Store {
    /// Creates or replaces (same id) a webhook on a caller's task. The
    /// limit of [`MAX_PUSH_CONFIGS`] is checked under the task's row lock,
    /// so concurrent creates cannot pass it together.
    pub async fn push_config_put(&self, caller: &Caller, config: &PushConfig) -> Result<PushConfig, StoreError> {
        in_tx!(self, |tx| {
            let (owned, count) = match tx {
                Tx::Pg(tx) => {
                    let owned = sqlx::query_scalar!(
                        "SELECT id FROM tasks WHERE id = $1 AND tenant = $2 AND owner = $3 FOR UPDATE",
                        config.task_id.0,
                        caller.tenant,
                        caller.principal,
                    )
                    .fetch_optional(&mut **tx)
                    .await?;
                    let count = sqlx::query_scalar!(
                        r#"SELECT count(*) AS "count!" FROM push_configs WHERE task_id = $1 AND id <> $2"#,
                        config.task_id.0,
                        config.id,
                    )
                    .fetch_one(&mut **tx)
                    .await?;
                    (owned.is_some(), count)
                }
                Tx::Lite(tx) => {
                    let owned: Option<uuid::Uuid> =
                        sqlx::query_scalar("SELECT id FROM tasks WHERE id = ? AND tenant = ? AND owner = ?")
                            .bind(config.task_id.0)
                            .bind(&caller.tenant)
                            .bind(&caller.principal)
                            .fetch_optional(tx.conn())
                            .await?;
                    let count: i64 =
                        sqlx::query_scalar("SELECT count(*) FROM push_configs WHERE task_id = ? AND id <> ?")
                            .bind(config.task_id.0)
                            .bind(&config.id)
                            .fetch_one(tx.conn())
                            .await?;
                    (owned.is_some(), count)
                }
            };
            if !owned {
                return Err(StoreError::TaskNotFound(config.task_id));
            }
            if count >= MAX_PUSH_CONFIGS {
                return Err(StoreError::TooManyPushConfigs { task: config.task_id, limit: MAX_PUSH_CONFIGS });
            }
            upsert_push_config(tx, config.task_id, config).await?;
            Ok(config.clone())
        })
    }

    /// One webhook of a caller's task; `None` when the task is visible but
    /// has no such config.
    pub async fn push_config_get(
        &self,
        caller: &Caller,
        task_id: TaskId,
        id: &str,
    ) -> Result<Option<PushConfig>, StoreError> {
        self.task_get(caller, task_id).await?;
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                let row = sqlx::query(
                    "SELECT task_id, id, url, token, authentication, version FROM push_configs \
                     WHERE task_id = ? AND id = ?",
                )
                .bind(task_id.0)
                .bind(id)
                .fetch_optional(&lite.read)
                .await?;
                return row.as_ref().map(push_config_lite).transpose();
            }
        };
        let row = sqlx::query!(
            "SELECT url, token, authentication, version FROM push_configs WHERE task_id = $1 AND id = $2",
            task_id.0,
            id,
        )
        .fetch_optional(pool)
        .await?;
        Ok(row.map(|r| PushConfig {
            task_id,
            id: id.to_owned(),
            url: r.url,
            token: r.token,
            authentication: r.authentication,
            version: r.version,
        }))
    }

    /// A page of a caller's task's webhooks in id order, starting after `after`.
    pub async fn push_config_list(
        &self,
        caller: &Caller,
        task_id: TaskId,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Vec<PushConfig>, StoreError> {
        self.task_get(caller, task_id).await?;
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                let rows = sqlx::query(
                    "SELECT task_id, id, url, token, authentication, version FROM push_configs \
                     WHERE task_id = ? AND (? IS NULL OR id > ?) ORDER BY id LIMIT ?",
                )
                .bind(task_id.0)
                .bind(after)
                .bind(after)
                .bind(limit)
                .fetch_all(&lite.read)
                .await?;
                return rows.iter().map(push_config_lite).collect();
            }
        };
        let rows = sqlx::query!(
            r#"SELECT id, url, token, authentication, version FROM push_configs
               WHERE task_id = $1 AND ($2::text IS NULL OR id > $2)
               ORDER BY id LIMIT $3"#,
            task_id.0,
            after,
            limit,
        )
        .fetch_all(pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| PushConfig {
                task_id,
                id: r.id,
                url: r.url,
                token: r.token,
                authentication: r.authentication,
                version: r.version,
            })
            .collect())
    }

    /// Deletes a webhook; true when one was deleted.
    pub async fn push_config_delete(&self, caller: &Caller, task_id: TaskId, id: &str) -> Result<bool, StoreError> {
        self.task_get(caller, task_id).await?;
        let deleted = match &self.db {
            Db::Pg(pool) => sqlx::query!("DELETE FROM push_configs WHERE task_id = $1 AND id = $2", task_id.0, id)
                .execute(pool)
                .await?
                .rows_affected(),
            Db::Lite(lite) => lite
                .write(async |c, _now| {
                    Ok(sqlx::query("DELETE FROM push_configs WHERE task_id = ? AND id = ?")
                        .bind(task_id.0)
                        .bind(id)
                        .execute(c)
                        .await?)
                })
                .await?
                .rows_affected(),
        };
        Ok(deleted > 0)
    }
}

/// Creates or replaces (same id) a webhook of `task_id`; the caller has
/// checked the task is theirs, or is creating it.
pub(super) async fn upsert_push_config(tx: &mut Tx, task_id: TaskId, push: &PushConfig) -> Result<(), StoreError> {
    let tx = match tx {
        Tx::Pg(tx) => tx,
        Tx::Lite(tx) => {
            sqlx::query(
                "INSERT INTO push_configs (task_id, id, url, token, authentication, version, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (task_id, id) DO UPDATE SET url = excluded.url, token = excluded.token, \
                     authentication = excluded.authentication, version = excluded.version",
            )
            .bind(task_id.0)
            .bind(&push.id)
            .bind(&push.url)
            .bind(&push.token)
            .bind(push.authentication.as_ref().map(lite::json))
            .bind(&push.version)
            .bind(lite::us(tx.now))
            .execute(tx.conn())
            .await?;
            return Ok(());
        }
    };
    sqlx::query!(
        r#"INSERT INTO push_configs (task_id, id, url, token, authentication, version) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (task_id, id) DO UPDATE
               SET url = EXCLUDED.url, token = EXCLUDED.token, authentication = EXCLUDED.authentication,
                   version = EXCLUDED.version"#,
        task_id.0,
        push.id,
        push.url,
        push.token,
        push.authentication,
        push.version,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The sequence numbers of the events a webhook announces: status and
/// artifact updates (messages are history, not stream events).
pub(super) fn pushable(first_seq: i64, events: &[TaskEvent]) -> Vec<i64> {
    (first_seq..).zip(events).filter(|(_, e)| !matches!(e, TaskEvent::Message(_))).map(|(seq, _)| seq).collect()
}

/// Writes the outbox rows for events `seqs` of a task, one per webhook it
/// has, and makes sure each webhook has its live delivery job (waking
/// workers for a new one). One statement; nothing when the task has none.
pub(super) async fn enqueue_deliveries(
    tx: &mut Tx,
    jobs_channel: &str,
    task_id: TaskId,
    seqs: &[i64],
) -> Result<(), StoreError> {
    if seqs.is_empty() {
        return Ok(());
    }
    let tx = match tx {
        Tx::Pg(tx) => tx,
        Tx::Lite(tx) => return lite::enqueue_deliveries(tx, jobs_channel, task_id.0, seqs).await,
    };
    sqlx::query!(
        r#"WITH pushed AS (
               INSERT INTO push_deliveries (task_id, config_id, seq)
               SELECT $1, c.id, s.seq FROM push_configs c, UNNEST($2::bigint[]) AS s(seq)
               WHERE c.task_id = $1
               RETURNING config_id
           ),
           queued AS (
               INSERT INTO jobs (task_id, kind, payload, max_attempts)
               SELECT DISTINCT $1, $3, jsonb_build_object('config', config_id), 1000 FROM pushed
               ON CONFLICT (task_id, (payload->>'config')) WHERE kind = 'push' AND state IN ('ready', 'leased')
               DO NOTHING
               RETURNING id
           )
           SELECT CASE WHEN EXISTS (SELECT 1 FROM queued) THEN pg_notify($4, $3) END AS notified"#,
        task_id.0,
        seqs,
        JobKind::Push.as_str(),
        jobs_channel,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// A webhook's next pending deliveries (at most `limit`, in log order),
    /// with the events they announce; `None` when the webhook is gone.
    pub async fn push_outbox(
        &self,
        task_id: TaskId,
        config_id: &str,
        limit: i64,
    ) -> Result<Option<Outbox>, StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => return outbox_lite(lite, task_id, config_id, limit).await,
        };
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

    /// Marks deliveries delivered (any 2xx), in one statement. At least
    /// once: a crash before this sends them again.
    pub async fn push_delivered(&self, deliveries: &[i64]) -> Result<(), StoreError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                return lite
                    .write(async |c, now| {
                        for id in deliveries {
                            sqlx::query(
                                "UPDATE push_deliveries SET state = 'delivered', attempts = attempts + 1, \
                                 finished_at = ?, last_error = NULL WHERE id = ? AND state = 'pending'",
                            )
                            .bind(lite::us(now))
                            .bind(id)
                            .execute(&mut *c)
                            .await?;
                        }
                        Ok(())
                    })
                    .await;
            }
        };
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

    /// Records a failed try: again after `delay`, or dead-lettered once it
    /// has had `max_attempts`.
    pub async fn push_failed(
        &self,
        delivery: i64,
        error: &str,
        delay: std::time::Duration,
        max_attempts: i32,
    ) -> Result<DeliveryFate, StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
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
                        .bind(lite::us(now))
                        .bind(lite::us_after(now, delay))
                        .fetch_optional(c)
                        .await?)
                    })
                    .await?;
                return Ok(match row {
                    Some((state, next_at)) if state == "pending" => DeliveryFate::RetryAt(lite::at(next_at)),
                    _ => DeliveryFate::Dead,
                });
            }
        };
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

    /// Settles a webhook's delivery job once its outbox looked empty: done,
    /// unless a delivery was written meanwhile (checked under the task's row
    /// lock, which every event writer holds), in which case it is ready
    /// again at once. True when it was requeued.
    pub async fn push_settle(&self, lease: &Lease, config_id: &str) -> Result<bool, StoreError> {
        in_tx!(self, |tx| {
            let pending = match tx {
                Tx::Pg(tx) => {
                    sqlx::query!("SELECT id FROM tasks WHERE id = $1 FOR SHARE", lease.task_id.0)
                        .fetch_optional(&mut **tx)
                        .await?;
                    sqlx::query_scalar!(
                        r#"SELECT EXISTS (SELECT 1 FROM push_deliveries
                                          WHERE task_id = $1 AND config_id = $2 AND state = 'pending') AS "pending!""#,
                        lease.task_id.0,
                        config_id,
                    )
                    .fetch_one(&mut **tx)
                    .await?
                }
                // The one writer: nothing can be written in between.
                Tx::Lite(tx) => sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM push_deliveries WHERE task_id = ? AND config_id = ? AND state = 'pending')",
                )
                .bind(lease.task_id.0)
                .bind(config_id)
                .fetch_one(tx.conn())
                .await?,
            };
            self.finish_or_requeue(tx, lease, pending, JobKind::Push).await?;
            Ok(pending)
        })
    }

    /// Gives a delivery job back to every webhook that has pending
    /// deliveries and no live job (at most `limit` webhooks), and wakes the
    /// workers for them; how many it gave. Every writer queues the job with
    /// the row, so this finds nothing unless a path forgot to: it is the
    /// net under all of them, run by the workers' periodic sweep.
    pub async fn push_adopt_orphans(&self, limit: i64) -> Result<u64, StoreError> {
        in_tx!(self, |tx| {
            let adopted = match tx {
                Tx::Pg(tx) => sqlx::query!(
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
                .rows_affected(),
                Tx::Lite(tx) => {
                    let orphans: Vec<(uuid::Uuid, String)> = sqlx::query_as(
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
                        adopted += u64::from(lite::ensure_push_job(tx, *task, config).await?);
                    }
                    adopted
                }
            };
            if adopted > 0 {
                notify(tx, &self.channels.jobs, JobKind::Push.as_str()).await?;
            }
            Ok(adopted)
        })
    }

    /// Deliveries for operators: `state` one of pending, delivered, dead
    /// (or all), newest first.
    pub async fn push_deliveries(&self, state: Option<&str>, limit: i64) -> Result<Vec<DeliveryRecord>, StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                let rows = sqlx::query(
                    "SELECT d.id, d.task_id, d.config_id, c.url, d.seq, d.state, d.attempts, d.next_at, d.last_error, \
                            d.finished_at \
                     FROM push_deliveries d JOIN push_configs c ON c.task_id = d.task_id AND c.id = d.config_id \
                     WHERE ?1 IS NULL OR d.state = ?1 ORDER BY d.id DESC LIMIT ?2",
                )
                .bind(state)
                .bind(limit)
                .fetch_all(&lite.read)
                .await?;
                return rows
                    .iter()
                    .map(|r| {
                        Ok(DeliveryRecord {
                            id: r.try_get("id")?,
                            task_id: TaskId(r.try_get("task_id")?),
                            config_id: r.try_get("config_id")?,
                            url: crate::egress::redacted(&r.try_get::<String, _>("url")?),
                            seq: r.try_get("seq")?,
                            state: r.try_get("state")?,
                            attempts: r.try_get("attempts")?,
                            next_at: lite::at(r.try_get("next_at")?),
                            last_error: r.try_get("last_error")?,
                            finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(lite::at),
                        })
                    })
                    .collect();
            }
        };
        let rows = sqlx::query!(
            r#"SELECT d.id, d.task_id, d.config_id, c.url, d.seq, d.state, d.attempts, d.next_at, d.last_error,
                      d.finished_at
               FROM push_deliveries d JOIN push_configs c ON c.task_id = d.task_id AND c.id = d.config_id
               WHERE $1::text IS NULL OR d.state = $1
               ORDER BY d.id DESC LIMIT $2"#,
            state,
            limit,
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

    /// Puts a dead delivery back in its webhook's outbox with a fresh set of
    /// attempts, and makes sure the webhook's job is live.
    pub async fn push_requeue(&self, delivery: i64) -> Result<(), StoreError> {
        in_tx!(self, |tx| {
            match tx {
                Tx::Pg(tx) => {
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
                }
                Tx::Lite(tx) => {
                    let row: (uuid::Uuid, String) = sqlx::query_as(
                        "UPDATE push_deliveries SET state = 'pending', attempts = 0, next_at = ?, finished_at = NULL \
                         WHERE id = ? AND state = 'dead' RETURNING task_id, config_id",
                    )
                    .bind(lite::us(tx.now))
                    .bind(delivery)
                    .fetch_optional(tx.conn())
                    .await?
                    .ok_or(StoreError::DeliveryNotDead(delivery))?;
                    lite::ensure_push_job(tx, row.0, &row.1).await?;
                }
            }
            notify(tx, &self.channels.jobs, JobKind::Push.as_str()).await?;
            Ok(())
        })
    }
}

/// A `push_configs` row on the embedded store.
fn push_config_lite(r: &SqliteRow) -> Result<PushConfig, StoreError> {
    Ok(PushConfig {
        task_id: TaskId(r.try_get("task_id")?),
        id: r.try_get("id")?,
        url: r.try_get("url")?,
        token: r.try_get("token")?,
        authentication: lite::parse_opt(r.try_get("authentication")?)?,
        version: r.try_get("version")?,
    })
}

/// [`Store::push_outbox`] on the embedded store.
async fn outbox_lite(
    lite: &lite::Lite,
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
                next_at: lite::at(r.try_get("next_at")?),
                event: lite::stored_event(task_id, r)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Some(Outbox {
        config: push_config_lite(&c)?,
        context_id: c.try_get("context_id")?,
        trace_context: lite::parse_opt(c.try_get("trace_context")?)?,
        pending,
        now: lite::now(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_configs_debug_form_shows_no_secret() {
        let config = PushConfig {
            task_id: TaskId(uuid::Uuid::nil()),
            id: "hook".into(),
            url: "https://hooks.example/in?token=url-s3cret".into(),
            token: Some("token-s3cret".into()),
            authentication: Some(serde_json::json!({"scheme": "Bearer", "credentials": "auth-s3cret"})),
            version: "1.0".into(),
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("hooks.example/in"), "{shown}");
    }
}
