//! Remote agents and their circuit breakers, on PostgreSQL.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

use super::PgTx;
use crate::agent::AgentRecord;
use crate::error::StoreError;

pub(in crate::store) async fn agent_upsert(pool: &PgPool, name: &str, url: &str) -> Result<(), StoreError> {
    sqlx::query!(
        r#"INSERT INTO agents (name, url) VALUES ($1, $2)
               ON CONFLICT (name) DO UPDATE SET url = EXCLUDED.url,
                   card = CASE WHEN agents.url = EXCLUDED.url THEN agents.card END,
                   card_fetched_at = CASE WHEN agents.url = EXCLUDED.url THEN agents.card_fetched_at END"#,
        name,
        url,
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub(in crate::store) async fn agent_set_card(pool: &PgPool, name: &str, card: &Value) -> Result<(), StoreError> {
    sqlx::query!("UPDATE agents SET card = $2, card_fetched_at = now() WHERE name = $1", name, card)
        .execute(pool)
        .await?;
    Ok(())
}

pub(in crate::store) async fn agent_record_call(
    pool: &PgPool,
    name: &str,
    ok: bool,
    threshold: i32,
    cooldown: Duration,
) -> Result<(), StoreError> {
    sqlx::query!(
        r#"UPDATE agents SET
                   consecutive_failures = CASE WHEN $2 THEN 0 ELSE consecutive_failures + 1 END,
                   breaker_open_until = CASE
                       WHEN $2 THEN NULL
                       WHEN consecutive_failures + 1 >= $3 THEN now() + make_interval(secs => $4)
                       ELSE breaker_open_until END
               WHERE name = $1"#,
        name,
        ok,
        threshold,
        cooldown.as_secs_f64(),
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub(in crate::store) async fn breaker_lock(
    tx: &mut PgTx,
    name: &str,
) -> Result<Option<(DateTime<Utc>, f64)>, StoreError> {
    Ok(sqlx::query!(
        r#"SELECT breaker_open_until, EXTRACT(EPOCH FROM breaker_open_until - now())::float8 AS "left"
                       FROM agents WHERE name = $1 FOR UPDATE"#,
        name
    )
    .fetch_optional(&mut **tx)
    .await?
    .and_then(|r| r.breaker_open_until.zip(r.left)))
}

pub(in crate::store) async fn breaker_reopen(tx: &mut PgTx, name: &str, cooldown: Duration) -> Result<(), StoreError> {
    sqlx::query!(
        "UPDATE agents SET breaker_open_until = now() + make_interval(secs => $2) WHERE name = $1",
        name,
        cooldown.as_secs_f64(),
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(in crate::store) async fn agent_remove(pool: &PgPool, name: &str) -> Result<u64, StoreError> {
    Ok(sqlx::query!("DELETE FROM agents WHERE name = $1", name).execute(pool).await?.rows_affected())
}

pub(in crate::store) async fn agent_get(pool: &PgPool, name: &str) -> Result<Option<AgentRecord>, StoreError> {
    Ok(sqlx::query_as!(
        AgentRecord,
        "SELECT name, url, card, card_fetched_at, consecutive_failures, breaker_open_until FROM agents WHERE name = $1",
        name
    )
    .fetch_optional(pool)
    .await?)
}

pub(in crate::store) async fn agents_list(pool: &PgPool) -> Result<Vec<AgentRecord>, StoreError> {
    Ok(sqlx::query_as!(
        AgentRecord,
        "SELECT name, url, card, card_fetched_at, consecutive_failures, breaker_open_until FROM agents ORDER BY name"
    )
    .fetch_all(pool)
    .await?)
}
