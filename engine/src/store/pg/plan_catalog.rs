//! The named plans, on PostgreSQL.

use serde_json::Value;
use sqlx::PgPool;

use crate::error::StoreError;
use crate::plan::PlanSpec;

pub(in crate::store) async fn plans_list(pool: &PgPool) -> Result<Vec<Value>, StoreError> {
    Ok(sqlx::query_scalar!("SELECT spec FROM plans ORDER BY name").fetch_all(pool).await?)
}

pub(in crate::store) async fn plan_put(pool: &PgPool, spec: &PlanSpec) -> Result<(), StoreError> {
    sqlx::query!(
        r#"INSERT INTO plans (name, spec) VALUES ($1, $2)
               ON CONFLICT (name) DO UPDATE SET spec = EXCLUDED.spec, updated_at = now()"#,
        spec.name,
        serde_json::to_value(spec)?,
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub(in crate::store) async fn plan_delete(pool: &PgPool, name: &str) -> Result<u64, StoreError> {
    Ok(sqlx::query!("DELETE FROM plans WHERE name = $1", name).execute(pool).await?.rows_affected())
}
