//! Tasks and their log, on PostgreSQL.

use a2a::Message;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

use super::PgTx;
use crate::error::StoreError;
use crate::event::{StoredEvent, TaskEvent};
use crate::id::{Caller, TaskId};
use crate::store::job::JobKind;
use crate::store::row::{EventRows, KeyClaim, NewTaskRows, Snapshot, TaskRow, task_row};
use crate::task::TaskRecord;

/// The keys' rows say when: the database's clock, which each task's
/// creation and first status take too.
pub(in crate::store) async fn keys_claim(
    tx: &mut PgTx,
    claims: &[KeyClaim],
) -> Result<Vec<(TaskId, DateTime<Utc>)>, StoreError> {
    let tenants: Vec<&str> = claims.iter().map(|c| c.tenant.as_str()).collect();
    let owners: Vec<&str> = claims.iter().map(|c| c.owner.as_str()).collect();
    let keys: Vec<&str> = claims.iter().map(|c| c.key.as_str()).collect();
    let ids: Vec<uuid::Uuid> = claims.iter().map(|c| c.task_id.0).collect();
    let rows = sqlx::query!(
        r#"INSERT INTO idempotency_keys (tenant, owner, key, task_id)
           SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::uuid[])
           ON CONFLICT DO NOTHING
           RETURNING task_id, created_at"#,
        &tenants as &[&str],
        &owners as &[&str],
        &keys as &[&str],
        &ids,
    )
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().map(|r| (TaskId(r.task_id), r.created_at)).collect())
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

/// Every task, its first log rows and its job in ONE statement, however
/// many tasks; one wake-up per kind of job queued. A task is born with no
/// artifacts.
pub(in crate::store) async fn tasks_insert(
    tx: &mut PgTx,
    tasks: &[NewTaskRows],
    jobs_channel: &str,
) -> Result<(), StoreError> {
    let mut t = TaskColumns::default();
    let mut e = EventColumns::default();
    let mut j = JobColumns::default();
    for born in tasks {
        let task = &born.task;
        t.ids.push(task.id.0);
        t.tenants.push(task.tenant.as_str());
        t.owners.push(task.owner.as_str());
        t.contexts.push(task.context_id.as_str());
        t.parents.push(task.parent_id.map(|p| p.0));
        t.states.push(born.snapshot.state);
        t.statuses.push(born.snapshot.status.clone());
        t.metadata.push(born.metadata.clone());
        t.traces.push(task.trace_context.clone());
        t.versions.push(task.version);
        t.created.push(task.created_at);
        t.status_at.push(task.status_at);
        for ((seq, kind), payload) in born.rows.seqs.iter().zip(&born.rows.kinds).zip(&born.rows.payloads) {
            e.tasks.push(task.id.0);
            e.seqs.push(*seq);
            e.kinds.push(kind.as_str());
            e.payloads.push(payload.clone());
            e.created.push(task.created_at);
        }
        if let Some(job) = &born.job {
            j.tasks.push(task.id.0);
            j.kinds.push(job.kind.as_str());
            j.payloads.push(job.payload.clone());
            j.priorities.push(job.priority);
            j.max_attempts.push(job.max_attempts);
            j.run_at.push(job.run_at);
        }
    }
    sqlx::query!(
        r#"WITH created AS (
               INSERT INTO tasks (id, tenant, owner, context_id, parent_id, state, status, artifact_ids,
                                  metadata, trace_context, version, created_at, status_at)
               SELECT id, tenant, owner, context_id, parent_id, state, status, '{}', metadata, trace_context,
                      version, created_at, status_at
               FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::text[], $7::jsonb[],
                           $8::jsonb[], $9::jsonb[], $10::bigint[], $11::timestamptz[], $12::timestamptz[])
                    AS t(id, tenant, owner, context_id, parent_id, state, status, metadata, trace_context,
                         version, created_at, status_at)
           ),
           logged AS (
               INSERT INTO task_events (task_id, seq, kind, payload, created_at)
               SELECT * FROM UNNEST($13::uuid[], $14::bigint[], $15::text[], $16::jsonb[], $17::timestamptz[])
           ),
           queued AS (
               INSERT INTO jobs (task_id, kind, payload, priority, max_attempts, run_at)
               SELECT task_id, kind, payload, priority, max_attempts, COALESCE(run_at, now())
               FROM UNNEST($18::uuid[], $19::text[], $20::jsonb[], $21::smallint[], $22::int[], $23::timestamptz[])
                    AS j(task_id, kind, payload, priority, max_attempts, run_at)
               RETURNING kind
           )
           SELECT count(pg_notify($24, kind)) AS "notified!" FROM (SELECT DISTINCT kind FROM queued) kinds"#,
        &t.ids,
        &t.tenants as &[&str],
        &t.owners as &[&str],
        &t.contexts as &[&str],
        &t.parents as &[Option<uuid::Uuid>],
        &t.states as &[&str],
        &t.statuses,
        &t.metadata as &[Option<Value>],
        &t.traces as &[Option<Value>],
        &t.versions,
        &t.created,
        &t.status_at,
        &e.tasks,
        &e.seqs,
        &e.kinds as &[&str],
        &e.payloads,
        &e.created,
        &j.tasks,
        &j.kinds as &[&str],
        &j.payloads,
        &j.priorities,
        &j.max_attempts,
        &j.run_at as &[Option<DateTime<Utc>>],
        jobs_channel,
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok(())
}

/// The tasks' columns, one array each, for `UNNEST`.
#[derive(Default)]
struct TaskColumns<'a> {
    ids: Vec<uuid::Uuid>,
    tenants: Vec<&'a str>,
    owners: Vec<&'a str>,
    contexts: Vec<&'a str>,
    parents: Vec<Option<uuid::Uuid>>,
    states: Vec<&'a str>,
    statuses: Vec<Value>,
    metadata: Vec<Option<Value>>,
    traces: Vec<Option<Value>>,
    versions: Vec<i64>,
    created: Vec<DateTime<Utc>>,
    status_at: Vec<DateTime<Utc>>,
}

/// The tasks' first log rows, flattened.
#[derive(Default)]
struct EventColumns<'a> {
    tasks: Vec<uuid::Uuid>,
    seqs: Vec<i64>,
    kinds: Vec<&'a str>,
    payloads: Vec<Value>,
    created: Vec<DateTime<Utc>>,
}

/// The tasks' first jobs.
#[derive(Default)]
struct JobColumns<'a> {
    tasks: Vec<uuid::Uuid>,
    kinds: Vec<&'a str>,
    payloads: Vec<Value>,
    priorities: Vec<i16>,
    max_attempts: Vec<i32>,
    run_at: Vec<Option<DateTime<Utc>>>,
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

pub(in crate::store) async fn tasks_lock(
    tx: &mut PgTx,
    task_ids: &[TaskId],
) -> Result<(Vec<TaskRow>, DateTime<Utc>), StoreError> {
    let ids: Vec<uuid::Uuid> = task_ids.iter().map(|id| id.0).collect();
    // A row another transaction holds is skipped, not waited for: a batch
    // never waits behind one member's task (its caller writes that one
    // alone, and waits alone).
    let rows = sqlx::query!(
        r#"SELECT id, tenant, owner, context_id, parent_id, state, status, NULL::jsonb AS artifacts, artifact_ids,
                  metadata, trace_context, version, created_at, status_at, now() AS "now!"
           FROM tasks WHERE id = ANY($1) ORDER BY id FOR UPDATE SKIP LOCKED"#,
        &ids,
    )
    .fetch_all(&mut **tx)
    .await?;
    let now = match rows.first() {
        Some(row) => row.now,
        // None of them exists (a rare batch): the time still comes from the database.
        None => sqlx::query_scalar!(r#"SELECT now() AS "now!""#).fetch_one(&mut **tx).await?,
    };
    Ok((rows.into_iter().map(|r| task_row!(r)).collect(), now))
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
