//! Gauges, on the embedded store: the same counts as on PostgreSQL.

use super::{Lite, now, us};
use crate::error::StoreError;
use crate::store::stats::Stats;

pub(in crate::store) async fn stats(lite: &Lite) -> Result<Stats, StoreError> {
    let now = us(now());
    let jobs = sqlx::query_as::<_, (String, String, i64)>(
        "SELECT state, kind, count(*) FROM jobs WHERE state IN ('ready', 'leased', 'dead') GROUP BY state, kind",
    )
    .fetch_all(&lite.read)
    .await?;
    let oldest: Option<i64> = sqlx::query_scalar("SELECT min(run_at) FROM jobs WHERE state = 'ready' AND run_at <= ?")
        .bind(now)
        .fetch_one(&lite.read)
        .await?;
    let rows = sqlx::query_as::<_, (String, i64, i64)>(
        "SELECT state, count(*), count(*) FILTER (WHERE parent_id IS NOT NULL) FROM tasks \
         WHERE state IN ('submitted', 'working', 'input_required', 'auth_required') GROUP BY state",
    )
    .fetch_all(&lite.read)
    .await?;
    let agents = sqlx::query_as::<_, (String, bool, i32)>(
        "SELECT name, coalesce(breaker_open_until > ?, false), consecutive_failures FROM agents",
    )
    .bind(now)
    .fetch_all(&lite.read)
    .await?;
    Ok(Stats {
        jobs,
        oldest_ready_seconds: oldest.map_or(0.0, |t| (now - t) as f64 / 1e6),
        children_open: rows.iter().map(|r| r.2).sum(),
        tasks: rows.into_iter().map(|(state, n, _)| (state, n)).collect(),
        agents,
    })
}
