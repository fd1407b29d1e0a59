//! Wake-ups, on PostgreSQL: NOTIFY, delivered on COMMIT.

use super::PgTx;
use crate::error::StoreError;

/// (`pg_notify` returns `void`, which the compile-time macros cannot type,
/// hence the plain query.)
pub(in crate::store) async fn notify(tx: &mut PgTx, channel: &str, payload: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(channel).bind(payload).execute(&mut **tx).await?;
    Ok(())
}
