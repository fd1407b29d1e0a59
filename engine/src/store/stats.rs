//! Gauges read from the database at scrape time: they describe the whole
//! deployment, whichever process is asked.

use super::{Db, Store, lite};
use crate::error::StoreError;

/// A snapshot of queue, task and agent health.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// (job state, job kind, count) for ready, leased and dead jobs.
    pub jobs: Vec<(String, String, i64)>,
    /// Age of the oldest job that is ready to run now, in seconds (0 if none).
    pub oldest_ready_seconds: f64,
    /// (task state, count) for open tasks.
    pub tasks: Vec<(String, i64)>,
    /// Open tasks that are children of a plan (fan-out members, pipeline steps).
    pub children_open: i64,
    /// (agent, breaker open, consecutive failures).
    pub agents: Vec<(String, bool, i32)>,
}

impl Store {
    /// Reads the current [`Stats`].
    pub async fn stats(&self) -> Result<Stats, StoreError> {
        // Bounded by what is live (and the dead letters, which retention
        // bounds): done jobs and finished tasks are counted by the workers'
        // counters (`switchyard_job_outcomes_total`,
        // `switchyard_task_duration_seconds_count`), never by a scan.
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => return stats_lite(lite).await,
        };
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
}

/// [`Store::stats`] on the embedded store: the same counts.
async fn stats_lite(lite: &lite::Lite) -> Result<Stats, StoreError> {
    let now = lite::us(lite::now());
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
