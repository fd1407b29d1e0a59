//! The PostgreSQL dialect: every statement the store sends to PostgreSQL,
//! one module per room, each checked against the schema when it compiles
//! (`sqlx::query!`, with the query metadata kept in `.sqlx/`).

pub(in crate::store) mod access;
pub(in crate::store) mod admin;
pub(in crate::store) mod agent;
pub(in crate::store) mod console;
pub(in crate::store) mod delegation;
pub(in crate::store) mod job;
pub(in crate::store) mod list;
pub(in crate::store) mod outbox;
pub(in crate::store) mod plan;
pub(in crate::store) mod plan_catalog;
pub(in crate::store) mod push_config;
pub(in crate::store) mod replica;
pub(in crate::store) mod retention;
pub(in crate::store) mod signal;
pub(in crate::store) mod stats;
pub(in crate::store) mod task;

/// A transaction on PostgreSQL, as the rooms' `tx` statements receive it.
pub(in crate::store) type PgTx = sqlx::Transaction<'static, sqlx::Postgres>;
