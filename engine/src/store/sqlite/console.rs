//! The console's reads and its dead-letter discards, on the embedded store.

use sqlx::Row;
use uuid::Uuid;

use super::{Lite, TASK_COLUMNS, at, task_row};
use crate::error::StoreError;
use crate::id::{JobId, TaskId};
use crate::state::TaskState;
use crate::store::console::{AgentLoad, ConsoleFilter, Counts, MinuteStat};
use crate::store::row::TaskRow;

pub(super) const TERMINAL: &str = "('completed', 'failed', 'canceled', 'rejected')";
pub(super) const OPEN: &str = "('submitted', 'working', 'input_required', 'auth_required')";
const HOUR_US: i64 = 3_600_000_000;

pub(in crate::store) async fn console_tasks(
    lite: &Lite,
    filter: &ConsoleFilter,
    before: Option<TaskId>,
    limit: i64,
) -> Result<Vec<TaskRow>, StoreError> {
    let (lo, hi) = filter.ids.unwrap_or((Uuid::nil(), Uuid::max()));
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks t
         WHERE t.id < ?1 AND t.id BETWEEN ?2 AND ?3
           AND (?4 IS NULL OR t.state = ?4)
           AND (?5 IS NULL OR t.tenant = ?5)
           AND (?6 IS NULL OR t.context_id = ?6)
           AND (?7 IS NULL
                OR EXISTS (SELECT 1 FROM delegations d WHERE d.task_id = t.id AND d.agent = ?7)
                OR EXISTS (SELECT 1 FROM jobs j WHERE j.task_id = t.id AND j.kind = 'delegate'
                                                  AND json_extract(j.payload, '$.agent') = ?7))
           AND (?8 IS NULL OR EXISTS (SELECT 1 FROM task_plans p
                                      WHERE p.task_id = t.id AND json_extract(p.plan, '$.plan') = ?8))
         ORDER BY t.id DESC LIMIT ?9"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(before.map_or(Uuid::max(), |b| b.0))
        .bind(lo)
        .bind(hi)
        .bind(filter.state.map(TaskState::as_str))
        .bind(&filter.tenant)
        .bind(&filter.context_id)
        .bind(&filter.agent)
        .bind(&filter.plan)
        .bind(limit)
        .fetch_all(&lite.read)
        .await?;
    rows.iter().map(task_row).collect()
}

pub(in crate::store) async fn console_labels(
    lite: &Lite,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, Option<String>, Option<String>)>, StoreError> {
    let mut labels = Vec::new();
    // A page is small: one short read per task beats building IN lists.
    for id in ids {
        let row = sqlx::query(
            "SELECT COALESCE((SELECT agent FROM delegations WHERE task_id = ?1),
                             (SELECT json_extract(payload, '$.agent') FROM jobs
                              WHERE task_id = ?1 AND kind = 'delegate' ORDER BY id LIMIT 1)) AS agent,
                    (SELECT json_extract(plan, '$.plan') FROM task_plans WHERE task_id = ?1) AS plan",
        )
        .bind(id)
        .fetch_one(&lite.read)
        .await?;
        let (agent, plan): (Option<String>, Option<String>) = (row.try_get("agent")?, row.try_get("plan")?);
        if agent.is_some() || plan.is_some() {
            labels.push((*id, agent, plan));
        }
    }
    Ok(labels)
}

pub(in crate::store) async fn console_counts(lite: &Lite) -> Result<Counts, StoreError> {
    let pairs = |rows: Vec<sqlx::sqlite::SqliteRow>| -> Result<Vec<(String, i64)>, StoreError> {
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    };
    let by_state = pairs(
        sqlx::query("SELECT state, count(*) FROM tasks GROUP BY state ORDER BY state").fetch_all(&lite.read).await?,
    )?;
    let by_tenant = pairs(
        sqlx::query("SELECT tenant, count(*) FROM tasks GROUP BY tenant ORDER BY 2 DESC, 1 LIMIT 50")
            .fetch_all(&lite.read)
            .await?,
    )?;
    let by_agent = pairs(
        sqlx::query("SELECT agent, count(*) FROM delegations GROUP BY agent ORDER BY 2 DESC, 1 LIMIT 50")
            .fetch_all(&lite.read)
            .await?,
    )?;
    let dead_deliveries: i64 =
        sqlx::query_scalar("SELECT count(*) FROM push_deliveries WHERE state = 'dead'").fetch_one(&lite.read).await?;
    Ok(Counts { by_state, by_tenant, by_agent, dead_deliveries })
}

pub(in crate::store) async fn console_minutes(lite: &Lite) -> Result<Vec<MinuteStat>, StoreError> {
    // SQLite has no percentiles: the durations come back by minute and are
    // ranked here (one process's store: an hour of it is small).
    let since = super::us(super::now()) - HOUR_US;
    let sql = format!(
        "SELECT status_at / 60000000 AS minute, status_at - created_at AS took FROM tasks
         WHERE state IN {TERMINAL} AND status_at > ?1 ORDER BY minute, took"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(since).fetch_all(&lite.read).await?;
    let mut minutes: Vec<(i64, Vec<f64>)> = Vec::new();
    for row in &rows {
        let (minute, took): (i64, i64) = (row.try_get("minute")?, row.try_get("took")?);
        let ms = took as f64 / 1000.0;
        match minutes.last_mut() {
            Some((m, durations)) if *m == minute => durations.push(ms),
            _ => minutes.push((minute, vec![ms])),
        }
    }
    Ok(minutes
        .into_iter()
        .map(|(minute, durations)| MinuteStat {
            minute: at(minute * 60_000_000),
            ended: durations.len() as i64,
            p50_ms: percentile(&durations, 0.5),
            p99_ms: percentile(&durations, 0.99),
        })
        .collect())
}

/// PostgreSQL's `percentile_cont` over sorted values: linear between ranks.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else { return 0.0 };
    let rank = p * last as f64;
    let (below, above) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[below] + (sorted[above] - sorted[below]) * (rank - below as f64)
}

pub(in crate::store) async fn console_agents(lite: &Lite) -> Result<Vec<AgentLoad>, StoreError> {
    let since = super::us(super::now()) - HOUR_US;
    let sql = format!(
        "SELECT d.agent AS agent,
                sum(t.state IN {OPEN}) AS in_flight,
                sum(t.state = 'completed') AS completed,
                sum(t.state IN ('failed', 'rejected')) AS failed,
                avg(CASE WHEN t.state IN {TERMINAL} THEN (t.status_at - t.created_at) / 1000.0 END) AS mean_ms
         FROM tasks t JOIN delegations d ON d.task_id = t.id
         WHERE t.state IN {OPEN} OR (t.state IN {TERMINAL} AND t.status_at > ?1)
         GROUP BY d.agent ORDER BY d.agent"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(since).fetch_all(&lite.read).await?;
    rows.iter()
        .map(|r| {
            Ok(AgentLoad {
                agent: r.try_get("agent")?,
                in_flight: r.try_get("in_flight")?,
                completed: r.try_get("completed")?,
                failed: r.try_get("failed")?,
                mean_ms: r.try_get("mean_ms")?,
            })
        })
        .collect()
}

pub(in crate::store) async fn console_job_discard(lite: &Lite, job: JobId) -> Result<bool, StoreError> {
    lite.write(async |c, _now| {
        let deleted = sqlx::query("DELETE FROM jobs WHERE id = ? AND state = 'dead'").bind(job.0).execute(c).await?;
        Ok(deleted.rows_affected() == 1)
    })
    .await
}

pub(in crate::store) async fn console_delivery_discard(lite: &Lite, delivery: i64) -> Result<bool, StoreError> {
    lite.write(async |c, _now| {
        let deleted = sqlx::query("DELETE FROM push_deliveries WHERE id = ? AND state = 'dead'")
            .bind(delivery)
            .execute(c)
            .await?;
        Ok(deleted.rows_affected() == 1)
    })
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles_interpolate_between_ranks_as_postgresql_does() {
        let values = [10.0, 20.0, 30.0, 40.0];
        assert_eq!(super::percentile(&values, 0.5), 25.0);
        assert_eq!(super::percentile(&values, 0.0), 10.0);
        assert!((super::percentile(&values, 0.99) - 39.7).abs() < 1e-9);
        assert_eq!(super::percentile(&[7.0], 0.99), 7.0);
        assert_eq!(super::percentile(&[], 0.5), 0.0);
    }
}
