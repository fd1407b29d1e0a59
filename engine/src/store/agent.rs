//! Remote agents and delegations: who a task went to, under which remote ids.

use chrono::{DateTime, Utc};
use serde_json::Value;

use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Db, Store, Tx, in_tx, lite};
use crate::error::StoreError;
use crate::id::TaskId;

/// A registered remote A2A agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    pub name: String,
    pub url: String,
    /// Its Agent Card as last fetched (JSON), if it has been.
    pub card: Option<Value>,
    pub card_fetched_at: Option<DateTime<Utc>>,
    pub consecutive_failures: i32,
    /// While in the future, the agent's circuit breaker is open.
    pub breaker_open_until: Option<DateTime<Utc>>,
}

impl AgentRecord {
    /// Whether the stored card lists a skill with this id.
    pub fn offers_skill(&self, skill: &str) -> bool {
        self.card
            .as_ref()
            .and_then(|c| c.get("skills"))
            .and_then(Value::as_array)
            .is_some_and(|skills| skills.iter().any(|s| s.get("id").and_then(Value::as_str) == Some(skill)))
    }
}

/// What an agent's circuit breaker allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Healthy: send work.
    Closed,
    /// Cooled down: this caller probes; the others keep waiting.
    Probe,
    /// Failing: wait until then (`wait` from now, by the database's clock).
    Open { until: DateTime<Utc>, wait: Duration },
}

/// A task's delegation checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delegation {
    pub agent: String,
    pub remote_task_id: Option<String>,
    pub remote_context_id: Option<String>,
    /// The id of the last client message handed to the remote agent.
    pub forwarded_message_id: Option<String>,
    /// Its sequence number in our log: written before it is sent.
    pub forwarded_seq: Option<i64>,
    /// Equal to `forwarded_seq` once the agent answered that send.
    pub acked_seq: Option<i64>,
    /// The remote question (status message id) the forwarded message answers.
    pub question_id: Option<String>,
}

impl Delegation {
    /// Sent, and not known to have arrived: a resumed worker must look
    /// before sending it again.
    pub fn unconfirmed(&self) -> Option<i64> {
        self.forwarded_seq.filter(|seq| self.acked_seq != Some(*seq))
    }
}

impl Store {
    /// Registers an agent, or updates its URL (keeping its card if the URL is unchanged).
    pub async fn agent_upsert(&self, name: &str, url: &str) -> Result<(), StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                lite.write(async |c, now| {
                    Ok(sqlx::query(
                        "INSERT INTO agents (name, url, created_at) VALUES (?, ?, ?) \
                     ON CONFLICT (name) DO UPDATE SET url = excluded.url, \
                         card = CASE WHEN agents.url = excluded.url THEN agents.card END, \
                         card_fetched_at = CASE WHEN agents.url = excluded.url THEN agents.card_fetched_at END",
                    )
                    .bind(name)
                    .bind(url)
                    .bind(lite::us(now))
                    .execute(c)
                    .await?)
                })
                .await?;
                return Ok(());
            }
        };
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

    /// Stores a freshly fetched card.
    pub async fn agent_set_card(&self, name: &str, card: &Value) -> Result<(), StoreError> {
        match &self.db {
            Db::Pg(pool) => {
                sqlx::query!("UPDATE agents SET card = $2, card_fetched_at = now() WHERE name = $1", name, card)
                    .execute(pool)
                    .await?;
            }
            Db::Lite(lite) => {
                lite.write(async |c, now| {
                    Ok(sqlx::query("UPDATE agents SET card = ?, card_fetched_at = ? WHERE name = ?")
                        .bind(lite::json(card))
                        .bind(lite::us(now))
                        .bind(name)
                        .execute(c)
                        .await?)
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Records the outcome of a call. A success closes the breaker and
    /// resets the count; the `threshold`-th consecutive failure (or any
    /// failed probe) opens it for `cooldown`.
    pub async fn agent_record_call(
        &self,
        name: &str,
        ok: bool,
        threshold: i32,
        cooldown: Duration,
    ) -> Result<(), StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                lite.write(async |c, now| {
                    Ok(sqlx::query(
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
                    .bind(lite::us_after(now, cooldown))
                    .execute(c)
                    .await?)
                })
                .await?;
                return Ok(());
            }
        };
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

    /// Whether work may be sent to the agent now. An open breaker whose
    /// cool-down has passed lets exactly one caller through as the probe
    /// (the gate moves forward by another cool-down as it lets it pass).
    pub async fn agent_breaker_gate(&self, name: &str, cooldown: Duration) -> Result<Gate, StoreError> {
        in_tx!(self, |tx| {
            // Compared with the database's clock, which set it.
            let row = match tx {
                Tx::Pg(tx) => sqlx::query!(
                    r#"SELECT breaker_open_until, EXTRACT(EPOCH FROM breaker_open_until - now())::float8 AS "left"
                       FROM agents WHERE name = $1 FOR UPDATE"#,
                    name
                )
                .fetch_optional(&mut **tx)
                .await?
                .and_then(|r| r.breaker_open_until.zip(r.left)),
                Tx::Lite(tx) => {
                    let until: Option<Option<i64>> =
                        sqlx::query_scalar("SELECT breaker_open_until FROM agents WHERE name = ?")
                            .bind(name)
                            .fetch_optional(tx.conn())
                            .await?;
                    until.flatten().map(|u| (lite::at(u), (u - lite::us(tx.now)) as f64 / 1e6))
                }
            };
            let Some((open_until, left)) = row else {
                return Ok(Gate::Closed);
            };
            if left > 0.0 {
                return Ok(Gate::Open { until: open_until, wait: Duration::from_secs_f64(left) });
            }
            match tx {
                Tx::Pg(tx) => {
                    sqlx::query!(
                        "UPDATE agents SET breaker_open_until = now() + make_interval(secs => $2) WHERE name = $1",
                        name,
                        cooldown.as_secs_f64(),
                    )
                    .execute(&mut **tx)
                    .await?;
                }
                Tx::Lite(tx) => {
                    sqlx::query("UPDATE agents SET breaker_open_until = ? WHERE name = ?")
                        .bind(lite::us_after(tx.now, cooldown))
                        .bind(name)
                        .execute(tx.conn())
                        .await?;
                }
            }
            Ok(Gate::Probe)
        })
    }

    /// Removes an agent; true when one was removed.
    pub async fn agent_remove(&self, name: &str) -> Result<bool, StoreError> {
        let removed = match &self.db {
            Db::Pg(pool) => {
                sqlx::query!("DELETE FROM agents WHERE name = $1", name).execute(pool).await?.rows_affected()
            }
            Db::Lite(lite) => lite
                .write(async |c, _now| {
                    Ok(sqlx::query("DELETE FROM agents WHERE name = ?").bind(name).execute(c).await?)
                })
                .await?
                .rows_affected(),
        };
        Ok(removed > 0)
    }

    /// One agent by name.
    pub async fn agent_get(&self, name: &str) -> Result<Option<AgentRecord>, StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                let sql = format!("SELECT {AGENT_COLUMNS} FROM agents WHERE name = ?");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name).fetch_optional(&lite.read).await?;
                return row.as_ref().map(agent_lite).transpose();
            }
        };
        let row = sqlx::query_as!(
            AgentRecord,
            "SELECT name, url, card, card_fetched_at, consecutive_failures, breaker_open_until FROM agents WHERE name = $1",
            name
        )
        .fetch_optional(pool)
        .await?;
        Ok(row)
    }

    /// Every agent, by name.
    pub async fn agents_list(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                let sql = format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY name");
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&lite.read).await?;
                return rows.iter().map(agent_lite).collect();
            }
        };
        Ok(sqlx::query_as!(
            AgentRecord,
            "SELECT name, url, card, card_fetched_at, consecutive_failures, breaker_open_until FROM agents ORDER BY name"
        )
        .fetch_all(pool)
        .await?)
    }

    /// A task's delegation checkpoint, if it has one.
    pub async fn delegation_get(&self, task_id: TaskId) -> Result<Option<Delegation>, StoreError> {
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                let row = sqlx::query(
                    "SELECT agent, remote_task_id, remote_context_id, forwarded_message_id, forwarded_seq, acked_seq, \
                            question_id FROM delegations WHERE task_id = ?",
                )
                .bind(task_id.0)
                .fetch_optional(&lite.read)
                .await?;
                return row
                    .map(|r| {
                        Ok(Delegation {
                            agent: r.try_get("agent")?,
                            remote_task_id: r.try_get("remote_task_id")?,
                            remote_context_id: r.try_get("remote_context_id")?,
                            forwarded_message_id: r.try_get("forwarded_message_id")?,
                            forwarded_seq: r.try_get("forwarded_seq")?,
                            acked_seq: r.try_get("acked_seq")?,
                            question_id: r.try_get("question_id")?,
                        })
                    })
                    .transpose();
            }
        };
        let row = sqlx::query_as!(
            Delegation,
            r#"SELECT agent, remote_task_id, remote_context_id, forwarded_message_id, forwarded_seq, acked_seq,
                      question_id
               FROM delegations WHERE task_id = $1"#,
            task_id.0
        )
        .fetch_optional(pool)
        .await?;
        Ok(row)
    }
}

impl Store {
    /// The secret a delegation's remote webhook was registered with, if any.
    pub async fn delegation_push_token(&self, task_id: TaskId) -> Result<Option<String>, StoreError> {
        let token = match &self.db {
            Db::Pg(pool) => sqlx::query_scalar!("SELECT push_token FROM delegations WHERE task_id = $1", task_id.0)
                .fetch_optional(pool)
                .await?
                .flatten(),
            Db::Lite(lite) => {
                sqlx::query_scalar::<_, Option<String>>("SELECT push_token FROM delegations WHERE task_id = ?")
                    .bind(task_id.0)
                    .fetch_optional(&lite.read)
                    .await?
                    .flatten()
            }
        };
        Ok(token)
    }

    /// Records the secret a webhook was registered on the remote task with.
    pub async fn delegation_set_push_token(&self, task_id: TaskId, token: &str) -> Result<(), StoreError> {
        match &self.db {
            Db::Pg(pool) => {
                sqlx::query!("UPDATE delegations SET push_token = $2 WHERE task_id = $1", task_id.0, token)
                    .execute(pool)
                    .await?;
            }
            Db::Lite(lite) => {
                lite.write(async |c, _now| {
                    Ok(sqlx::query("UPDATE delegations SET push_token = ? WHERE task_id = ?")
                        .bind(token)
                        .bind(task_id.0)
                        .execute(c)
                        .await?)
                })
                .await?;
            }
        }
        Ok(())
    }

    /// A remote agent pushed about a task's remote task: if `token` is the
    /// delegation's secret, its parked job is due now (and workers woken).
    /// False when the token does not match (nothing changes). The push is a
    /// hint: the worker reads the remote task before trusting anything.
    pub async fn delegation_pushed(&self, task_id: TaskId, token: &str) -> Result<bool, StoreError> {
        let Some(expected) = self.delegation_push_token(task_id).await? else { return Ok(false) };
        // Compared in time independent of where they first differ.
        let same = expected.len() == token.len()
            && expected.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if !same {
            return Ok(false);
        }
        let pool = match &self.db {
            Db::Pg(pool) => pool,
            Db::Lite(lite) => {
                let woken = lite
                    .write(async |c, now| {
                        Ok(sqlx::query(
                            "UPDATE jobs SET run_at = ?1 \
                     WHERE task_id = ?2 AND kind = 'delegate' AND state = 'ready' AND run_at > ?1",
                        )
                        .bind(lite::us(now))
                        .bind(task_id.0)
                        .execute(c)
                        .await?)
                    })
                    .await?;
                if woken.rows_affected() > 0 {
                    lite.wake(&self.channels.jobs, "delegate");
                }
                return Ok(true);
            }
        };
        sqlx::query!(
            r#"WITH woken AS (
                   UPDATE jobs SET run_at = now()
                   WHERE task_id = $1 AND kind = 'delegate' AND state = 'ready' AND run_at > now()
                   RETURNING id
               )
               SELECT CASE WHEN EXISTS (SELECT 1 FROM woken) THEN pg_notify($2, 'delegate') END AS notified"#,
            task_id.0,
            self.channels.jobs,
        )
        .execute(pool)
        .await?;
        Ok(true)
    }
}

/// The columns of an [`AgentRecord`].
const AGENT_COLUMNS: &str = "name, url, card, card_fetched_at, consecutive_failures, breaker_open_until";

/// An `agents` row on the embedded store.
fn agent_lite(r: &SqliteRow) -> Result<AgentRecord, StoreError> {
    Ok(AgentRecord {
        name: r.try_get("name")?,
        url: r.try_get("url")?,
        card: lite::parse_opt(r.try_get("card")?)?,
        card_fetched_at: r.try_get::<Option<i64>, _>("card_fetched_at")?.map(lite::at),
        consecutive_failures: r.try_get("consecutive_failures")?,
        breaker_open_until: r.try_get::<Option<i64>, _>("breaker_open_until")?.map(lite::at),
    })
}
