//! A delegation's checkpoint and its hot path, on PostgreSQL.

use sqlx::PgPool;

use super::PgTx;
use crate::error::StoreError;
use crate::event::TaskEvent;
use crate::id::TaskId;
use crate::store::delegation::{Delegation, DelegationStart, Written};
use crate::store::job::Lease;
use crate::store::outbox::pushable;
use crate::store::row::{EventRows, Snapshot, task_row};
use crate::task::TaskRecord;

pub(in crate::store) async fn delegation_start(
    pool: &PgPool,
    task_id: TaskId,
) -> Result<Option<DelegationStart>, StoreError> {
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

pub(in crate::store) async fn delegation_get(pool: &PgPool, task_id: TaskId) -> Result<Option<Delegation>, StoreError> {
    Ok(sqlx::query_as!(
        Delegation,
        r#"SELECT agent, remote_task_id, remote_context_id, forwarded_message_id, forwarded_seq, acked_seq,
                      question_id
               FROM delegations WHERE task_id = $1"#,
        task_id.0
    )
    .fetch_optional(pool)
    .await?)
}

pub(in crate::store) async fn delegation_push_token(
    pool: &PgPool,
    task_id: TaskId,
) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar!("SELECT push_token FROM delegations WHERE task_id = $1", task_id.0)
        .fetch_optional(pool)
        .await?
        .flatten())
}

pub(in crate::store) async fn delegation_set_push_token(
    pool: &PgPool,
    task_id: TaskId,
    token: &str,
) -> Result<(), StoreError> {
    sqlx::query!("UPDATE delegations SET push_token = $2 WHERE task_id = $1", task_id.0, token).execute(pool).await?;
    Ok(())
}

pub(in crate::store) async fn delegation_wake(
    pool: &PgPool,
    task_id: TaskId,
    jobs_channel: &str,
) -> Result<(), StoreError> {
    sqlx::query!(
        r#"WITH woken AS (
                   UPDATE jobs SET run_at = now()
                   WHERE task_id = $1 AND kind = 'delegate' AND state = 'ready' AND run_at > now()
                   RETURNING id
               )
               SELECT CASE WHEN EXISTS (SELECT 1 FROM woken) THEN pg_notify($2, 'delegate') END AS notified"#,
        task_id.0,
        jobs_channel,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Everything a fold writes, in ONE statement: the checkpoint (if any), the
/// log rows and the snapshot (if any events), the deliveries and push jobs
/// they owe, the NOTIFYs, and the job, either settled as done (`settle`)
/// or locked to prove the lease holds until COMMIT.
#[allow(clippy::too_many_arguments)]
pub(in crate::store) async fn fold_write(
    tx: &mut PgTx,
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
           )
           SELECT (SELECT count(*) FROM folded) AS "task_updated!",
                  (SELECT count(*) FROM settled) + (SELECT count(*) FROM held) AS "job_held!",
                  CASE WHEN cardinality($10::bigint[]) > 0 THEN pg_notify($22, $23) END AS notified,
                  CASE WHEN cardinality($24::bigint[]) > 0 THEN outbox_enqueue($1, $24, $25) END AS pushes_queued"#,
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
        crate::channel::EventNotice::payload(task),
        &pushable(before + 1, events),
        jobs_channel,
    )
    .fetch_one(&mut **tx)
    .await?;
    let _ = row.notified;
    Ok(Written { task_updated: row.task_updated, job_held: row.job_held })
}

pub(in crate::store) async fn follow_up_pending(tx: &mut PgTx, task_id: TaskId) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar!(
        r#"SELECT EXISTS (
                           SELECT 1 FROM task_events
                           WHERE task_id = $1 AND kind = 'message' AND payload->>'role' = 'ROLE_USER'
                             AND seq > (SELECT forwarded_seq FROM delegations WHERE task_id = $1)
                       ) AS "pending!""#,
        task_id.0,
    )
    .fetch_one(&mut **tx)
    .await?)
}
