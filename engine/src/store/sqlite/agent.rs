//! Remote agents and their circuit breakers, on the embedded store.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Lite, LiteTx, at, json, parse_opt, us, us_after};
use crate::agent::AgentRecord;
use crate::error::StoreError;

/// The columns of an [`AgentRecord`].
pub(super) const AGENT_COLUMNS: &str = "name, url, card, card_fetched_at, consecutive_failures, breaker_open_until";

pub(in crate::store) async fn agent_upsert(lite: &Lite, name: &str, url: &str) -> Result<(), StoreError> {
    lite.write(async |c, now| {
        sqlx::query(
            "INSERT INTO agents (name, url, created_at) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET url = excluded.url, \
                 card = CASE WHEN agents.url = excluded.url THEN agents.card END, \
                 card_fetched_at = CASE WHEN agents.url = excluded.url THEN agents.card_fetched_at END",
        )
        .bind(name)
        .bind(url)
        .bind(us(now))
        .execute(c)
        .await?;
        Ok(())
    })
    .await
}

pub(in crate::store) async fn agent_set_card(lite: &Lite, name: &str, card: &Value) -> Result<(), StoreError> {
    lite.write(async |c, now| {
        sqlx::query("UPDATE agents SET card = ?, card_fetched_at = ? WHERE name = ?")
            .bind(json(card))
            .bind(us(now))
            .bind(name)
            .execute(c)
            .await?;
        Ok(())
    })
    .await
}

pub(in crate::store) async fn agent_record_call(
    lite: &Lite,
    name: &str,
    ok: bool,
    threshold: i32,
    cooldown: Duration,
) -> Result<(), StoreError> {
    lite.write(async |c, now| {
        sqlx::query(
            "UPDATE agents SET
                 consecutive_failures = CASE WHEN ?2 THEN 0 ELSE consecutive_failures + 1 END,
                 breaker_open_until = CASE
                     WHEN ?2 THEN NULL
                     WHEN consecutive_failures + 1 >= ?3 THEN ?4
                     ELSE breaker_open_until END
             WHERE name = ?1",
        )
        .bind(name)
        .bind(ok)
        .bind(threshold)
        .bind(us_after(now, cooldown))
        .execute(c)
        .await?;
        Ok(())
    })
    .await
}

pub(in crate::store) async fn breaker_lock(
    tx: &mut LiteTx,
    name: &str,
) -> Result<Option<(DateTime<Utc>, f64)>, StoreError> {
    let until: Option<Option<i64>> = sqlx::query_scalar("SELECT breaker_open_until FROM agents WHERE name = ?")
        .bind(name)
        .fetch_optional(tx.conn())
        .await?;
    Ok(until.flatten().map(|u| (at(u), (u - us(tx.now)) as f64 / 1e6)))
}

pub(in crate::store) async fn breaker_reopen(
    tx: &mut LiteTx,
    name: &str,
    cooldown: Duration,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE agents SET breaker_open_until = ? WHERE name = ?")
        .bind(us_after(tx.now, cooldown))
        .bind(name)
        .execute(tx.conn())
        .await?;
    Ok(())
}

pub(in crate::store) async fn agent_remove(lite: &Lite, name: &str) -> Result<u64, StoreError> {
    lite.write(async |c, _now| {
        Ok(sqlx::query("DELETE FROM agents WHERE name = ?").bind(name).execute(c).await?.rows_affected())
    })
    .await
}

pub(in crate::store) async fn agent_get(lite: &Lite, name: &str) -> Result<Option<AgentRecord>, StoreError> {
    let sql = format!("SELECT {AGENT_COLUMNS} FROM agents WHERE name = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name).fetch_optional(&lite.read).await?;
    row.as_ref().map(agent_record).transpose()
}

pub(in crate::store) async fn agents_list(lite: &Lite) -> Result<Vec<AgentRecord>, StoreError> {
    let sql = format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY name");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&lite.read).await?;
    rows.iter().map(agent_record).collect()
}

/// An `agents` row.
fn agent_record(r: &SqliteRow) -> Result<AgentRecord, StoreError> {
    Ok(AgentRecord {
        name: r.try_get("name")?,
        url: r.try_get("url")?,
        card: parse_opt(r.try_get("card")?)?,
        card_fetched_at: r.try_get::<Option<i64>, _>("card_fetched_at")?.map(at),
        consecutive_failures: r.try_get("consecutive_failures")?,
        breaker_open_until: r.try_get::<Option<i64>, _>("breaker_open_until")?.map(at),
    })
}
