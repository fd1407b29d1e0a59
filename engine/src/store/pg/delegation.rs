//! A delegation's checkpoint and its hot path, on PostgreSQL.

use sqlx::PgPool;

use super::PgTx;
use crate::error::StoreError;
use crate::event::TaskEvent;
use crate::id::TaskId;
use crate::store::delegation::{Delegation, DelegationStart, FoldWrite, Written};
use crate::store::job::Lease;
use crate::store::outbox::pushable;
use crate::store::row::{EventRows, Snapshot, task_row};
use crate::task::TaskRecord;

pub(in crate::store) async fn delegation_start(
    pool: &PgPool,
    task_id: TaskId,
) -> Result<Option<DelegationStart>, StoreError> {
    Ok(delegations_start(pool, &[task_id]).await?.pop())
}

pub(in crate::store) async fn delegations_start(
    pool: &PgPool,
    task_ids: &[TaskId],
) -> Result<Vec<DelegationStart>, StoreError> {
    let ids: Vec<uuid::Uuid> = task_ids.iter().map(|t| t.0).collect();
    let rows = sqlx::query!(
        // The columns the tasks table declares NOT NULL are said so: over
        // `= ANY(…)` the query's plan no longer proves it to sqlx.
        r#"SELECT t.id AS "id!", t.tenant AS "tenant!", t.owner AS "owner!", t.context_id AS "context_id!",
                      t.parent_id, t.state AS "state!", t.status AS "status!",
                      (SELECT jsonb_agg(e.payload ORDER BY e.seq) FROM task_events e WHERE e.task_id = t.id AND e.kind = 'artifact') AS artifacts,
                      t.artifact_ids AS "artifact_ids!", t.metadata, t.trace_context, t.version AS "version!",
                      t.created_at AS "created_at!", t.status_at AS "status_at!",
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
               WHERE t.id = ANY($1::uuid[])"#,
        &ids,
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
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
            Ok(DelegationStart { task, delegation, next })
        })
        .collect()
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
                   UPDATE jobs SET run_at = CASE WHEN state = 'ready' THEN now() ELSE run_at END,
                                   woken_at = CASE WHEN state = 'leased' THEN now() END
                   WHERE task_id = $1 AND kind = 'delegate'
                     AND ((state = 'ready' AND run_at > now()) OR state = 'leased')
                   RETURNING state
               )
               SELECT CASE WHEN EXISTS (SELECT 1 FROM woken WHERE state = 'ready') THEN pg_notify($2, 'delegate') END
                      AS notified"#,
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

/// [`fold_write`] of many tasks in ONE statement, each table written with
/// one set-based statement over arrays; every task row is locked and every
/// lease confirmed (its job row locked) already, in id order.
pub(in crate::store) async fn folds_write(
    tx: &mut PgTx,
    channel: &str,
    jobs_channel: &str,
    folds: &[FoldWrite<'_>],
) -> Result<Vec<Written>, StoreError> {
    #[derive(Default)]
    struct Checkpoints {
        task: Vec<uuid::Uuid>,
        agent: Vec<String>,
        remote_task_id: Vec<Option<String>>,
        remote_context_id: Vec<Option<String>>,
        forwarded_message_id: Vec<Option<String>>,
        forwarded_seq: Vec<Option<i64>>,
        acked_seq: Vec<Option<i64>>,
        question_id: Vec<Option<String>>,
    }
    #[derive(Default)]
    struct Snapshots {
        task: Vec<uuid::Uuid>,
        state: Vec<String>,
        status: Vec<serde_json::Value>,
        artifact_ids: Vec<serde_json::Value>,
        version: Vec<i64>,
        status_at: Vec<chrono::DateTime<chrono::Utc>>,
        before: Vec<i64>,
        notice: Vec<String>,
    }
    let mut cp = Checkpoints::default();
    let mut sn = Snapshots::default();
    let (mut ev_task, mut ev_seq, mut ev_kind, mut ev_payload) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut push_task, mut push_seq) = (Vec::new(), Vec::new());
    let (mut settle_id, mut settle_token) = (Vec::new(), Vec::new());
    for fold in folds {
        let id = fold.task.id.0;
        if let Some(d) = fold.checkpoint {
            cp.task.push(id);
            cp.agent.push(d.agent.clone());
            cp.remote_task_id.push(d.remote_task_id.clone());
            cp.remote_context_id.push(d.remote_context_id.clone());
            cp.forwarded_message_id.push(d.forwarded_message_id.clone());
            cp.forwarded_seq.push(d.forwarded_seq);
            cp.acked_seq.push(d.acked_seq);
            cp.question_id.push(d.question_id.clone());
        }
        if !fold.events.is_empty() {
            let rows = EventRows::of(fold.before + 1, fold.events);
            ev_task.extend(std::iter::repeat_n(id, rows.seqs.len()));
            ev_seq.extend(rows.seqs);
            ev_kind.extend(rows.kinds);
            ev_payload.extend(rows.payloads);
            let snapshot = Snapshot::of(fold.task)?;
            sn.task.push(id);
            sn.state.push(snapshot.state.to_owned());
            sn.status.push(snapshot.status);
            sn.artifact_ids.push(serde_json::Value::from(snapshot.artifact_ids));
            sn.version.push(fold.task.version);
            sn.status_at.push(fold.task.status_at);
            sn.before.push(fold.before);
            sn.notice.push(crate::channel::EventNotice::payload(fold.task));
            for seq in pushable(fold.before + 1, fold.events) {
                push_task.push(id);
                push_seq.push(seq);
            }
        }
        if fold.settle {
            settle_id.push(fold.lease.job_id.0);
            settle_token.push(fold.lease.token);
        }
    }
    let row = sqlx::query!(
        r#"WITH checkpoint AS (
               INSERT INTO delegations (task_id, agent, remote_task_id, remote_context_id, forwarded_message_id,
                                        forwarded_seq, acked_seq, question_id)
               SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],
                                    $7::bigint[], $8::text[])
               ON CONFLICT (task_id) DO UPDATE SET agent = EXCLUDED.agent,
                   remote_task_id = EXCLUDED.remote_task_id, remote_context_id = EXCLUDED.remote_context_id,
                   forwarded_message_id = EXCLUDED.forwarded_message_id,
                   forwarded_seq = EXCLUDED.forwarded_seq, acked_seq = EXCLUDED.acked_seq,
                   question_id = EXCLUDED.question_id, updated_at = now()
           ),
           logged AS (
               INSERT INTO task_events (task_id, seq, kind, payload, created_at)
               SELECT t, s, k, p, now() FROM UNNEST($9::uuid[], $10::bigint[], $11::text[], $12::jsonb[]) AS e(t, s, k, p)
           ),
           folded AS (
               UPDATE tasks SET state = u.state, status = u.status,
                      artifact_ids = ARRAY(SELECT jsonb_array_elements_text(u.artifact_ids)),
                      version = u.version, status_at = u.status_at
               FROM UNNEST($13::uuid[], $14::text[], $15::jsonb[], $16::jsonb[], $17::bigint[], $18::timestamptz[],
                           $19::bigint[]) AS u(id, state, status, artifact_ids, version, status_at, before)
               WHERE tasks.id = u.id AND tasks.version = u.before
               RETURNING tasks.id
           ),
           settled AS (
               UPDATE jobs SET state = 'done', finished_at = now(), lease_owner = NULL, lease_expires_at = NULL
               FROM UNNEST($20::bigint[], $21::bigint[]) AS c(id, token)
               WHERE jobs.id = c.id AND jobs.lease_token = c.token AND jobs.state = 'leased'
               RETURNING jobs.id
           ),
           notified AS (
               SELECT pg_notify($22, n) FROM UNNEST($23::text[]) AS n
           ),
           pushed AS (
               SELECT outbox_enqueue(t, array_agg(s ORDER BY s), $24) FROM UNNEST($25::uuid[], $26::bigint[]) AS p(t, s)
               GROUP BY t
           )
           SELECT ARRAY(SELECT id FROM folded) AS "folded!", ARRAY(SELECT id FROM settled) AS "settled!",
                  (SELECT count(*) FROM notified) AS "notified!", (SELECT count(*) FROM pushed) AS "pushed!""#,
        &cp.task,
        &cp.agent,
        &cp.remote_task_id as &[Option<String>],
        &cp.remote_context_id as &[Option<String>],
        &cp.forwarded_message_id as &[Option<String>],
        &cp.forwarded_seq as &[Option<i64>],
        &cp.acked_seq as &[Option<i64>],
        &cp.question_id as &[Option<String>],
        &ev_task,
        &ev_seq,
        &ev_kind,
        &ev_payload,
        &sn.task,
        &sn.state,
        &sn.status,
        &sn.artifact_ids,
        &sn.version,
        &sn.status_at,
        &sn.before,
        &settle_id,
        &settle_token,
        channel,
        &sn.notice,
        jobs_channel,
        &push_task,
        &push_seq,
    )
    .fetch_one(&mut **tx)
    .await?;
    let (_, _) = (row.notified, row.pushed);
    Ok(folds
        .iter()
        .map(|fold| Written {
            task_updated: i64::from(row.folded.contains(&fold.task.id.0)),
            // A lease not settled here was confirmed, its row locked, before.
            job_held: i64::from(!fold.settle || row.settled.contains(&fold.lease.job_id.0)),
        })
        .collect())
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
