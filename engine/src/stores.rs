//! Several stores, and which tenant lives on which.
//!
//! A deployment past one PostgreSQL shards by tenant: each store is a whole
//! PostgreSQL database with its own workers, and a tenant lives on exactly
//! one of them — its tasks, the plans and children they start, their
//! webhooks and their event logs. Nothing ever crosses stores, so every
//! guarantee a single store makes (exclusion, fencing, the log's order)
//! holds per store unchanged, and a store that is down takes down only its
//! own tenants.
//!
//! The store named [`DEFAULT_STORE`] is the deployment's own: it holds the
//! API keys (a credential is checked before its tenant is known) and every
//! tenant not placed elsewhere. A deployment of one store is this type with
//! one entry, and behaves exactly as before.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::plan::PlanSpec;
use crate::{Store, StoreError};

/// The name of the store that holds the API keys and every tenant not
/// placed on another.
pub const DEFAULT_STORE: &str = "default";

/// The stores a process serves, and the placement of tenants on them.
#[derive(Debug, Clone)]
pub struct Stores {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The default store first, then the others in the order configured.
    list: Vec<(String, Store)>,
    /// Tenant → index in `list`; absent means the default store.
    tenants: HashMap<String, usize>,
}

/// A placement that cannot be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlacementError {
    #[error("store {0:?} is configured twice")]
    Duplicate(String),
    #[error("{0:?} is not a store name: use letters, digits, '-' and '_' (at most 63)")]
    BadName(String),
    #[error("tenant {tenant:?} is placed on store {store:?}, which is not configured")]
    UnknownStore { tenant: String, store: String },
    #[error("tenant {0:?} is placed twice")]
    TenantTwice(String),
}

impl Stores {
    /// One store, the default: every tenant on it.
    pub fn one(store: Store) -> Stores {
        Stores { inner: Arc::new(Inner { list: vec![(DEFAULT_STORE.to_owned(), store)], tenants: HashMap::new() }) }
    }

    /// The default store, `others` beside it by name, and `placement`
    /// (tenant → store name; a tenant not named lives on the default).
    pub fn new(
        default: Store,
        others: Vec<(String, Store)>,
        placement: &[(String, String)],
    ) -> Result<Stores, PlacementError> {
        let mut list = vec![(DEFAULT_STORE.to_owned(), default)];
        for (name, store) in others {
            if !valid_name(&name) {
                return Err(PlacementError::BadName(name));
            }
            if list.iter().any(|(n, _)| *n == name) {
                return Err(PlacementError::Duplicate(name));
            }
            list.push((name, store));
        }
        let mut tenants = HashMap::new();
        for (tenant, store) in placement {
            let Some(index) = list.iter().position(|(n, _)| n == store) else {
                return Err(PlacementError::UnknownStore { tenant: tenant.clone(), store: store.clone() });
            };
            if tenants.insert(tenant.clone(), index).is_some() {
                return Err(PlacementError::TenantTwice(tenant.clone()));
            }
        }
        Ok(Stores { inner: Arc::new(Inner { list, tenants }) })
    }

    /// The store holding the API keys and every tenant not placed elsewhere.
    pub fn default_store(&self) -> &Store {
        &self.inner.list[0].1
    }

    /// Where `tenant` lives: its index (for per-store state kept beside
    /// this list) and its store's name.
    pub fn index_of(&self, tenant: &str) -> usize {
        self.inner.tenants.get(tenant).copied().unwrap_or(0)
    }

    /// The store `tenant` lives on.
    pub fn for_tenant(&self, tenant: &str) -> &Store {
        &self.inner.list[self.index_of(tenant)].1
    }

    /// The store called `name`.
    pub fn named(&self, name: &str) -> Option<&Store> {
        self.inner.list.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    /// Every store, the default first: (name, store).
    pub fn all(&self) -> impl ExactSizeIterator<Item = (&str, &Store)> {
        self.inner.list.iter().map(|(n, s)| (n.as_str(), s))
    }

    /// The name of the store at `index` (as [`Stores::index_of`] gives).
    pub fn name_at(&self, index: usize) -> &str {
        &self.inner.list[index].0
    }

    pub fn len(&self) -> usize {
        self.inner.list.len()
    }

    /// Never true: there is always the default store.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// More than the default store.
    pub fn sharded(&self) -> bool {
        self.inner.list.len() > 1
    }
}

/// A registry change that stopped at a store: the stores before it (in
/// the order configured) have it, this one and those after do not.
#[derive(Debug, thiserror::Error)]
#[error("store {store:?}: {error}")]
pub struct StoreFailed {
    pub store: String,
    #[source]
    pub error: StoreError,
}

/// The registry of agents and plans is kept on every store, since each
/// store's workers read their own: a change goes to each in turn, the
/// default first, and stops at the first that fails. Every change here is
/// idempotent, so making it again finishes it.
impl Stores {
    /// Registers (or re-points) an agent, with its card when one was fetched.
    pub async fn agent_upsert(&self, name: &str, url: &str, card: Option<&Value>) -> Result<(), StoreFailed> {
        for (store_name, store) in self.all() {
            let done = async {
                store.agent_upsert(name, url).await?;
                match card {
                    Some(card) => store.agent_set_card(name, card).await,
                    None => Ok(()),
                }
            };
            done.await.map_err(|error| StoreFailed { store: store_name.to_owned(), error })?;
        }
        Ok(())
    }

    /// Removes an agent; whether any store had it.
    pub async fn agent_remove(&self, name: &str) -> Result<bool, StoreFailed> {
        let mut removed = false;
        for (store_name, store) in self.all() {
            removed |=
                store.agent_remove(name).await.map_err(|error| StoreFailed { store: store_name.to_owned(), error })?;
        }
        Ok(removed)
    }

    /// Adds or replaces a plan.
    pub async fn plan_put(&self, spec: &PlanSpec) -> Result<(), StoreFailed> {
        for (store_name, store) in self.all() {
            store.plan_put(spec).await.map_err(|error| StoreFailed { store: store_name.to_owned(), error })?;
        }
        Ok(())
    }

    /// Removes a plan; whether any store had it.
    pub async fn plan_delete(&self, name: &str) -> Result<bool, StoreFailed> {
        let mut removed = false;
        for (store_name, store) in self.all() {
            removed |=
                store.plan_delete(name).await.map_err(|error| StoreFailed { store: store_name.to_owned(), error })?;
        }
        Ok(removed)
    }
}

impl From<Store> for Stores {
    fn from(store: Store) -> Stores {
        Stores::one(store)
    }
}

/// A store's name goes into URLs (a remote push's receiver) and metric
/// labels: kept to a plain identifier.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 63 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreConfig;

    fn lazy(schema: &str) -> Store {
        let config = StoreConfig { schema: schema.into(), ..StoreConfig::new("postgres://127.0.0.1:1/none") };
        Store::connect_lazy(&config).expect("a lazy pool")
    }

    #[tokio::test]
    async fn tenants_live_where_placed_and_on_the_default_otherwise() {
        let stores = Stores::new(
            lazy("a"),
            vec![("eu".into(), lazy("b")), ("us".into(), lazy("c"))],
            &[("acme".into(), "eu".into()), ("globex".into(), "us".into()), ("initech".into(), "default".into())],
        )
        .expect("a valid placement");
        assert_eq!(stores.len(), 3);
        assert!(stores.sharded());
        assert_eq!(stores.for_tenant("acme").schema(), "b");
        assert_eq!(stores.for_tenant("globex").schema(), "c");
        assert_eq!(stores.for_tenant("initech").schema(), "a");
        assert_eq!(stores.for_tenant("anyone-else").schema(), "a");
        assert_eq!(stores.name_at(stores.index_of("acme")), "eu");
        assert_eq!(stores.name_at(stores.index_of("nobody")), DEFAULT_STORE);
        assert_eq!(stores.named("us").map(Store::schema), Some("c"));
        assert!(stores.named("asia").is_none());
        let names: Vec<&str> = stores.all().map(|(n, _)| n).collect();
        assert_eq!(names, ["default", "eu", "us"]);
        assert!(!Stores::one(lazy("a")).sharded());
    }

    #[tokio::test]
    async fn a_placement_that_cannot_be_served_is_refused() {
        let unknown = Stores::new(lazy("a"), vec![], &[("acme".into(), "eu".into())]).expect_err("refused");
        assert_eq!(unknown, PlacementError::UnknownStore { tenant: "acme".into(), store: "eu".into() });
        let twice = Stores::new(lazy("a"), vec![("eu".into(), lazy("b")), ("eu".into(), lazy("c"))], &[]);
        assert_eq!(twice.expect_err("refused"), PlacementError::Duplicate("eu".into()));
        let default_again = Stores::new(lazy("a"), vec![("default".into(), lazy("b"))], &[]);
        assert_eq!(default_again.expect_err("refused"), PlacementError::Duplicate("default".into()));
        let bad = Stores::new(lazy("a"), vec![("e u".into(), lazy("b"))], &[]);
        assert_eq!(bad.expect_err("refused"), PlacementError::BadName("e u".into()));
        let placed_twice = Stores::new(
            lazy("a"),
            vec![("eu".into(), lazy("b"))],
            &[("acme".into(), "eu".into()), ("acme".into(), "default".into())],
        );
        assert_eq!(placed_twice.expect_err("refused"), PlacementError::TenantTwice("acme".into()));
    }
}
