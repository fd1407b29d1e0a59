//! A delegation's reads and writes on the hot path: what a worker needs to
//! start, in one query, and everything one remote exchange produced, in one
//! transaction.

use a2a::Message;
use sqlx::Row;

use super::agent::Delegation;
use super::job::{JobKind, Lease};
use super::row::{EventRows, Snapshot, task_row};
use super::task::{lock_task, stamped};
use super::{Db, Store, Tx, in_tx, lite};
use crate::error::StoreError;
use crate::event::TaskEvent;
use crate::id::TaskId;
use crate::task::TaskRecord;

/// What a worker needs to start a delegation attempt.
#[derive(Debug, Clone)]
pub struct DelegationStart {
    pub task: TaskRecord,
    pub delegation: Option<Delegation>,
    /// The first client message not yet forwarded, with its sequence number.
    pub next: Option<(i64, Message)>,
}

/// What [`Store::delegation_fold`] did.
#[derive(Debug, Clone)]
pub struct Fold {
    /// The task as it now is.
    pub task: TaskRecord,
    /// The task had already ended here (canceled, past its deadline): the
    /// checkpoint was written, the events were not.
    pub ended: bool,
    /// The job was settled, but stays live: a client message came in that
    /// the remote agent has not been handed.
    pub requeued: bool,
}

impl Store {
    /// The task, its delegation checkpoint and the next client message to
    /// forward, in one round trip.
    pub async fn delegation_start(&self, task_id: TaskId) -> Result<Option<DelegationStart>, StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => return self.delegation_start_lite(lite, task_id).await,
        };
        let row = sqlx::query!(
            r#"SELECT t.id, t.tenant, t.owner, t.context_id, t.parent_id, t.state, t.status,
                      (SELECT jsonb_agg(e.payload ORDER BY e.seq) FROM task_events e WHERE e.task_id = t.id AND e.kind = 'artifact') AS artifacts, t.artifact_ids,
                      t.metadata, t.trace_context, t.version, t.created_at, t.status_at,
                      d.agent AS "agent?", d.remote_task_id, d.remote_context_id, d.forwarded_message_id,
                      d.forwarded_seq, d.acked_seq, d.question_id,
                      m.seq AS "next_seq?", m.payload AS "next_payload?"
               FROM tasks t
               LEFT JOIN delegations d ON d.task_id = t.id
               LEFT JOIN LATERAL (
                   SELECT seq, payload FROM task_events e
                   WHERE e.task_id = t.id AND e.kind = 'message' AND e.payload->>'role' = 'ROLE_USER'
                     AND e.seq > COALESCE(d.forwarded_seq, 0)
                   ORDER BY seq LIMIT 1
               ) m ON true
               WHERE t.id = $1"#,
            task_id.0,
        )
        .fetch_optional(pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let task = TaskRecord::try_from(task_row!(r))?;
        let delegation = r.agent.map(|agent| Delegation {
            agent,
            remote_task_id: r.remote_task_id,
            remote_context_id: r.remote_context_id,
            forwarded_message_id: r.forwarded_message_id,
            forwarded_seq: r.forwarded_seq,
            acked_seq: r.acked_seq,
            question_id: r.question_id,
        });
        let next = match (r.next_seq, r.next_payload) {
            (Some(seq), Some(payload)) => Some((seq, serde_json::from_value(payload)?)),
            _ => None,
        };
        Ok(Some(DelegationStart { task, delegation, next }))
    }

    /// [`Store::delegation_start`] on the embedded store: the same reads,
    /// as three statements (no lateral joins).
    async fn delegation_start_lite(
        &self,
        lite: &lite::Lite,
        task_id: TaskId,
    ) -> Result<Option<DelegationStart>, StoreError> {
        let task = match self.task_load(task_id).await {
            Ok(task) => task,
            Err(StoreError::TaskNotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let delegation = self.delegation_get(task_id).await?;
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

    /// Writes what a remote exchange produced, in ONE transaction under the
    /// task's row lock and the job's lease: the delegation checkpoint (if
    /// given), the events folded into the task, and, with `finish`, the
    /// job's settlement (see below). Without `finish` the lease is confirmed
    /// instead, so a stale worker writes nothing.
    ///
    /// A task that already ended here gets the checkpoint but not the
    /// events (`ended`): the caller then cancels the remote task, whose id
    /// the cancel may not have known.
    ///
    /// Settling looks, under the same lock a client's follow-up takes, for
    /// client messages the agent has not been handed: if the task is open and
    /// one came in, the job is ready again at once (its attempt refunded)
    /// rather than done, so the task's one delegation carries it. Only a
    /// delegation that has forwarded something can have a follow-up (a task
    /// asks for input only after its agent saw the first message), so one
    /// that never did settles as done and no handler can spin it forever.
    pub async fn delegation_fold(
        &self,
        lease: &Lease,
        checkpoint: Option<&Delegation>,
        events: &[TaskEvent],
        finish: bool,
    ) -> Result<Fold, StoreError> {
        in_tx!(self, |tx| {
            let (row, now) = lock_task(tx, lease.task_id).await?.ok_or(StoreError::TaskNotFound(lease.task_id))?;
            let mut task = TaskRecord::try_from(row)?;
            let ended = task.state.is_terminal();
            let before = task.version;
            let events = if ended { Vec::new() } else { stamped(events, now) };
            for event in &events {
                task.apply(event).map_err(|source| StoreError::Rejected { task: task.id, source })?;
            }
            // A settlement that may find a follow-up to forward needs the
            // look below; any other is written with everything else.
            let settle_here = finish && task.state.is_terminal();
            let written = write_fold(
                tx,
                &self.channels.events,
                &self.channels.jobs,
                lease,
                checkpoint,
                &task,
                before,
                &events,
                settle_here,
            )
            .await?;
            if !events.is_empty() && written.task_updated != 1 {
                return Err(StoreError::Corrupt(format!("task {} changed under its row lock", task.id)));
            }
            if written.job_held != 1 {
                return Err(StoreError::LeaseLost(lease.job_id));
            }
            // A child's change reaches its parent in this same transaction.
            if task.parent_id.is_some() && !events.is_empty() {
                self.propagate(tx, &task, &events).await?;
            }
            if !finish || settle_here {
                return Ok(Fold { task, ended, requeued: false });
            }
            let pending = match tx {
                Tx::Pg(tx) => {
                    sqlx::query_scalar!(
                        r#"SELECT EXISTS (
                           SELECT 1 FROM task_events
                           WHERE task_id = $1 AND kind = 'message' AND payload->>'role' = 'ROLE_USER'
                             AND seq > (SELECT forwarded_seq FROM delegations WHERE task_id = $1)
                       ) AS "pending!""#,
                        lease.task_id.0,
                    )
                    .fetch_one(&mut **tx)
                    .await?
                }
                Tx::Lite(tx) => {
                    sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM task_events WHERE task_id = ?1 AND kind = 'message' \
                     AND json_extract(payload, '$.role') = 'ROLE_USER' \
                     AND seq > (SELECT forwarded_seq FROM delegations WHERE task_id = ?1))",
                    )
                    .bind(lease.task_id.0)
                    .fetch_one(tx.conn())
                    .await?
                }
            };
            self.finish_or_requeue(tx, lease, pending, JobKind::Delegate).await?;
            Ok(Fold { task, ended, requeued: pending })
        })
    }
}

/// What the one statement of a fold touched.
struct Written {
    task_updated: i64,
    job_held: i64,
}

/// Everything a fold writes, in ONE statement: the checkpoint (if any), the
/// log rows and the snapshot (if any events), the NOTIFY, and the job,
/// either settled as done (`settle`) or locked to prove the lease holds
/// until COMMIT. The task row is already locked by this transaction.
#[allow(clippy::too_many_arguments)]
async fn write_fold(
    tx: &mut Tx,
    channel: &str,
    jobs_channel: &str,
    lease: &Lease,
    checkpoint: Option<&Delegation>,
    task: &TaskRecord,
    before: i64,
    events: &[TaskEvent],
    settle: bool,
) -> Result<Written, StoreError> {
    let d = checkpoint.cloned().unwrap_or_default();
    let rows = EventRows::of(before + 1, events);
    let snapshot = Snapshot::of(task)?;
    let tx = match tx {
        Tx::Pg(tx) => tx,
        Tx::Lite(tx) => {
            return write_fold_lite(tx, channel, jobs_channel, lease, checkpoint, task, before, events, settle).await;
        }
    };
    let row = sqlx::query!(
        r#"WITH checkpoint AS (
               INSERT INTO delegations (task_id, agent, remote_task_id, remote_context_id, forwarded_message_id,
                                        forwarded_seq, acked_seq, question_id)
               SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE $9
               ON CONFLICT (task_id) DO UPDATE SET agent = EXCLUDED.agent,
                   remote_task_id = EXCLUDED.remote_task_id, remote_context_id = EXCLUDED.remote_context_id,
                   forwarded_message_id = EXCLUDED.forwarded_message_id,
                   forwarded_seq = EXCLUDED.forwarded_seq, acked_seq = EXCLUDED.acked_seq,
                   question_id = EXCLUDED.question_id, updated_at = now()
           ),
           logged AS (
               INSERT INTO task_events (task_id, seq, kind, payload, created_at)
               SELECT $1, seq, kind, payload, now()
               FROM UNNEST($10::bigint[], $11::text[], $12::jsonb[]) AS e(seq, kind, payload)
           ),
           folded AS (
               UPDATE tasks SET state = $13, status = $14, artifact_ids = $15, version = $16, status_at = $17
               WHERE id = $1 AND version = $18 AND cardinality($10::bigint[]) > 0
               RETURNING id
           ),
           settled AS (
               UPDATE jobs SET state = 'done', finished_at = now(), lease_owner = NULL, lease_expires_at = NULL
               WHERE id = $19 AND lease_token = $20 AND state = 'leased' AND $21
               RETURNING id
           ),
           held AS (
               SELECT id FROM jobs WHERE id = $19 AND lease_token = $20 AND state = 'leased' AND NOT $21
               FOR UPDATE
           ),
           pushed AS (
               INSERT INTO push_deliveries (task_id, config_id, seq)
               SELECT $1, c.id, s.seq FROM push_configs c, UNNEST($24::bigint[]) AS s(seq)
               WHERE c.task_id = $1
               RETURNING config_id
           ),
           queued AS (
               INSERT INTO jobs (task_id, kind, payload, max_attempts)
               SELECT DISTINCT $1, 'push', jsonb_build_object('config', config_id), 1000 FROM pushed
               ON CONFLICT (task_id, (payload->>'config')) WHERE kind = 'push' AND state IN ('ready', 'leased')
               DO NOTHING
               RETURNING id
           )
           SELECT (SELECT count(*) FROM folded) AS "task_updated!",
                  (SELECT count(*) FROM settled) + (SELECT count(*) FROM held) AS "job_held!",
                  CASE WHEN cardinality($10::bigint[]) > 0 THEN pg_notify($22, $23) END AS notified,
                  CASE WHEN EXISTS (SELECT 1 FROM queued) THEN pg_notify($25, 'push') END AS jobs_notified"#,
        lease.task_id.0,
        d.agent,
        d.remote_task_id,
        d.remote_context_id,
        d.forwarded_message_id,
        d.forwarded_seq,
        d.acked_seq,
        d.question_id,
        checkpoint.is_some(),
        &rows.seqs,
        &rows.kinds,
        &rows.payloads,
        snapshot.state,
        snapshot.status,
        &snapshot.artifact_ids,
        task.version,
        task.status_at,
        before,
        lease.job_id.0,
        lease.token,
        settle,
        channel,
        crate::notify::EventNotice::payload(task),
        &super::push::pushable(before + 1, events),
        jobs_channel,
    )
    .fetch_one(&mut **tx)
    .await?;
    let _ = row.notified;
    Ok(Written { task_updated: row.task_updated, job_held: row.job_held })
}

/// [`write_fold`] on the embedded store: the same writes, one statement each.
#[allow(clippy::too_many_arguments)]
async fn write_fold_lite(
    tx: &mut lite::LiteTx,
    channel: &str,
    jobs_channel: &str,
    lease: &Lease,
    checkpoint: Option<&Delegation>,
    task: &TaskRecord,
    before: i64,
    events: &[TaskEvent],
    settle: bool,
) -> Result<Written, StoreError> {
    let now = lite::us(tx.now);
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
        lite::insert_events(tx, lease.task_id.0, &EventRows::of(before + 1, events), tx.now).await?;
        task_updated = lite::update_snapshot(tx, task, before).await? as i64;
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
    lite::enqueue_deliveries(tx, jobs_channel, lease.task_id.0, &super::push::pushable(before + 1, events)).await?;
    if !events.is_empty() {
        tx.notify(channel, &crate::notify::EventNotice::payload(task));
    }
    Ok(Written { task_updated, job_held: held as i64 })
}
