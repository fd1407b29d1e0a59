//! Gauges, on PostgreSQL.

use sqlx::PgPool;

use crate::error::StoreError;
use crate::store::stats::Stats;

pub(in crate::store) async fn stats(pool: &PgPool) -> Result<Stats, StoreError> {
    let jobs = sqlx::query!(
        r#"SELECT state, kind, count(*) AS "count!" FROM jobs
               WHERE state IN ('ready', 'leased', 'dead') GROUP BY state, kind"#
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| (r.state, r.kind, r.count))
    .collect();
    let oldest_ready_seconds = sqlx::query_scalar!(
        r#"SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(run_at))::float8, 0) AS "age!"
               FROM jobs WHERE state = 'ready' AND run_at <= now()"#
    )
    .fetch_one(pool)
    .await?;
    let rows = sqlx::query!(
        r#"SELECT state, count(*) AS "count!", count(*) FILTER (WHERE parent_id IS NOT NULL) AS "children!"
               FROM tasks
               WHERE state IN ('submitted', 'working', 'input_required', 'auth_required') GROUP BY state"#
    )
    .fetch_all(pool)
    .await?;
    let children_open = rows.iter().map(|r| r.children).sum();
    let tasks = rows.into_iter().map(|r| (r.state, r.count)).collect();
    let agents = sqlx::query!(
        r#"SELECT name, COALESCE(breaker_open_until > now(), false) AS "open!", consecutive_failures FROM agents"#
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| (r.name, r.open, r.consecutive_failures))
    .collect();
    Ok(Stats { jobs, oldest_ready_seconds, tasks, children_open, agents })
}
