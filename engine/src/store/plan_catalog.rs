//! The named plans: fan-outs and pipelines an operator defines once and
//! clients name (a plan's runtime, once a task runs one, is [`super::plan`]).

use serde_json::Value;

use super::Store;
use crate::error::StoreError;
use crate::plan::PlanSpec;

super::seam::statements! {
    room plan_catalog;
    /// Every named plan's spec, by name.
    db fn plans_list() -> Vec<Value>;
    /// Adds a plan, or replaces the one of its name.
    db fn plan_put(spec: &PlanSpec) -> ();
    db fn plan_delete(name: &str) -> u64;
}

impl Store {
    /// Every named plan, by name.
    pub async fn plans_list(&self) -> Result<Vec<PlanSpec>, StoreError> {
        let specs = self.db.plans_list().await?;
        specs.into_iter().map(|spec| serde_json::from_value(spec).map_err(StoreError::from)).collect()
    }

    /// Adds a named plan, or replaces the one with its name. Tasks already
    /// running keep the plan they were resolved with.
    pub async fn plan_put(&self, spec: &PlanSpec) -> Result<(), StoreError> {
        self.db.plan_put(spec).await
    }

    /// Removes a named plan; false if there was none.
    pub async fn plan_delete(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.db.plan_delete(name).await? > 0)
    }
}
