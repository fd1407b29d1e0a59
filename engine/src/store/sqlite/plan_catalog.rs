//! The named plans, on the embedded store.

use serde_json::Value;

use super::{Lite, parse, us};
use crate::error::StoreError;
use crate::plan::PlanSpec;

pub(in crate::store) async fn plans_list(lite: &Lite) -> Result<Vec<Value>, StoreError> {
    let texts: Vec<String> = sqlx::query_scalar("SELECT spec FROM plans ORDER BY name").fetch_all(&lite.read).await?;
    texts.iter().map(|t| parse(t)).collect()
}

pub(in crate::store) async fn plan_put(lite: &Lite, spec: &PlanSpec) -> Result<(), StoreError> {
    let text = serde_json::to_string(spec)?;
    lite.write(async |c, now| {
        sqlx::query(
            "INSERT INTO plans (name, spec, created_at, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at",
        )
        .bind(&spec.name)
        .bind(&text)
        .bind(us(now))
        .bind(us(now))
        .execute(c)
        .await?;
        Ok(())
    })
    .await
}

pub(in crate::store) async fn plan_delete(lite: &Lite, name: &str) -> Result<u64, StoreError> {
    lite.write(async |c, _now| {
        Ok(sqlx::query("DELETE FROM plans WHERE name = ?").bind(name).execute(c).await?.rows_affected())
    })
    .await
}
