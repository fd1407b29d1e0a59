//! The console's reads and its dead-letter discards, on PostgreSQL.

use sqlx::PgPool;
use uuid::Uuid;

use crate::error::StoreError;
use crate::id::{JobId, TaskId};
use crate::state::TaskState;
use crate::store::console::{AgentLoad, ConsoleFilter, Counts, MinuteStat};
use crate::store::row::TaskRow;

pub(in crate::store) async fn console_tasks(
    pool: &PgPool,
    filter: &ConsoleFilter,
    before: Option<TaskId>,
    limit: i64,
) -> Result<Vec<TaskRow>, StoreError> {
    // Bounds are always given (never NULL), so that the id conditions stay
    // index conditions on the primary key in a generic plan too.
    let (lo, hi) = filter.ids.unwrap_or((Uuid::nil(), Uuid::max()));
    let before = before.map_or(Uuid::max(), |b| b.0);
    Ok(sqlx::query_as!(
        TaskRow,
        r#"SELECT id, tenant, owner, context_id, parent_id, state, status, NULL::jsonb AS artifacts, artifact_ids,
                  metadata, trace_context, version, created_at, status_at
           FROM tasks t
           WHERE t.id < $1 AND t.id BETWEEN $2 AND $3
             AND ($4::text IS NULL OR t.state = $4)
             AND ($5::text IS NULL OR t.tenant = $5)
             AND ($6::text IS NULL OR t.context_id = $6)
             AND ($7::text IS NULL
                  OR EXISTS (SELECT 1 FROM delegations d WHERE d.task_id = t.id AND d.agent = $7)
                  OR EXISTS (SELECT 1 FROM jobs j WHERE j.task_id = t.id AND j.kind = 'delegate'
                                                    AND j.payload->>'agent' = $7))
             AND ($8::text IS NULL OR EXISTS (SELECT 1 FROM task_plans p
                                              WHERE p.task_id = t.id AND p.plan->>'plan' = $8))
           ORDER BY t.id DESC
           LIMIT $9"#,
        before,
        lo,
        hi,
        filter.state.map(TaskState::as_str),
        filter.tenant,
        filter.context_id,
        filter.agent,
        filter.plan,
        limit,
    )
    .fetch_all(pool)
    .await?)
}

pub(in crate::store) async fn console_labels(
    pool: &PgPool,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, Option<String>, Option<String>)>, StoreError> {
    Ok(sqlx::query!(
        r#"SELECT i.id AS "id!",
                  COALESCE(d.agent, (SELECT j.payload->>'agent' FROM jobs j
                                     WHERE j.task_id = i.id AND j.kind = 'delegate' ORDER BY j.id LIMIT 1))
                      AS "agent?",
                  p.plan->>'plan' AS "plan?"
           FROM unnest($1::uuid[]) AS i(id)
           LEFT JOIN delegations d ON d.task_id = i.id
           LEFT JOIN task_plans p ON p.task_id = i.id"#,
        ids,
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .filter(|r| r.agent.is_some() || r.plan.is_some())
    .map(|r| (r.id, r.agent, r.plan))
    .collect())
}

pub(in crate::store) async fn console_counts(pool: &PgPool) -> Result<Counts, StoreError> {
    // Each is a scan of its own: run side by side, on connections of their own.
    let by_state = async {
        let rows = sqlx::query!(r#"SELECT state, count(*) AS "n!" FROM tasks GROUP BY state ORDER BY state"#)
            .fetch_all(pool)
            .await?;
        Ok::<_, StoreError>(rows.into_iter().map(|r| (r.state, r.n)).collect())
    };
    let by_tenant = async {
        let rows =
            sqlx::query!(r#"SELECT tenant, count(*) AS "n!" FROM tasks GROUP BY tenant ORDER BY 2 DESC, 1 LIMIT 50"#)
                .fetch_all(pool)
                .await?;
        Ok(rows.into_iter().map(|r| (r.tenant, r.n)).collect())
    };
    let by_agent = async {
        let rows = sqlx::query!(
            r#"SELECT agent, count(*) AS "n!" FROM delegations GROUP BY agent ORDER BY 2 DESC, 1 LIMIT 50"#
        )
        .fetch_all(pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.agent, r.n)).collect())
    };
    let dead_deliveries = async {
        Ok(sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM push_deliveries WHERE state = 'dead'"#)
            .fetch_one(pool)
            .await?)
    };
    let (by_state, by_tenant, by_agent, dead_deliveries) =
        tokio::try_join!(by_state, by_tenant, by_agent, dead_deliveries)?;
    Ok(Counts { by_state, by_tenant, by_agent, dead_deliveries })
}

pub(in crate::store) async fn console_minutes(pool: &PgPool) -> Result<Vec<MinuteStat>, StoreError> {
    // The partial index of finished tasks (retention's) covers this scan.
    Ok(sqlx::query!(
        r#"SELECT date_trunc('minute', status_at) AS "minute!", count(*) AS "ended!",
                  percentile_cont(0.5) WITHIN GROUP
                      (ORDER BY EXTRACT(EPOCH FROM status_at - created_at)::float8 * 1000) AS "p50!",
                  percentile_cont(0.99) WITHIN GROUP
                      (ORDER BY EXTRACT(EPOCH FROM status_at - created_at)::float8 * 1000) AS "p99!"
           FROM tasks
           WHERE state IN ('completed', 'failed', 'canceled', 'rejected') AND status_at > now() - interval '1 hour'
           GROUP BY 1 ORDER BY 1"#
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| MinuteStat { minute: r.minute, ended: r.ended, p50_ms: r.p50, p99_ms: r.p99 })
    .collect())
}

pub(in crate::store) async fn console_agents(pool: &PgPool) -> Result<Vec<AgentLoad>, StoreError> {
    Ok(sqlx::query!(
        r#"SELECT d.agent AS "agent!",
                  count(*) FILTER (WHERE t.state IN ('submitted', 'working', 'input_required', 'auth_required'))
                      AS "in_flight!",
                  count(*) FILTER (WHERE t.state = 'completed') AS "completed!",
                  count(*) FILTER (WHERE t.state IN ('failed', 'rejected')) AS "failed!",
                  avg(EXTRACT(EPOCH FROM t.status_at - t.created_at)::float8 * 1000)
                      FILTER (WHERE t.state IN ('completed', 'failed', 'canceled', 'rejected')) AS "mean_ms"
           FROM tasks t JOIN delegations d ON d.task_id = t.id
           -- Open tasks and the last hour's endings only, each through its
           -- partial index: never the whole history.
           WHERE t.state IN ('submitted', 'working', 'input_required', 'auth_required')
              OR (t.state IN ('completed', 'failed', 'canceled', 'rejected') AND t.status_at > now() - interval '1 hour')
           GROUP BY d.agent ORDER BY d.agent"#
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| AgentLoad {
        agent: r.agent,
        in_flight: r.in_flight,
        completed: r.completed,
        failed: r.failed,
        mean_ms: r.mean_ms,
    })
    .collect())
}

pub(in crate::store) async fn console_job_discard(pool: &PgPool, job: JobId) -> Result<bool, StoreError> {
    let deleted = sqlx::query!("DELETE FROM jobs WHERE id = $1 AND state = 'dead'", job.0).execute(pool).await?;
    Ok(deleted.rows_affected() == 1)
}

pub(in crate::store) async fn console_delivery_discard(pool: &PgPool, delivery: i64) -> Result<bool, StoreError> {
    let deleted =
        sqlx::query!("DELETE FROM push_deliveries WHERE id = $1 AND state = 'dead'", delivery).execute(pool).await?;
    Ok(deleted.rows_affected() == 1)
}
