//! What every handler shares: the application state the router hands each
//! request (a module of its own, so that the handlers depend on it and not
//! on the router that calls them).

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use switchyard_engine::{Store, Stores};
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::card::CardCache;
use crate::config::ApiConfig;
use crate::handler::A2aHandler;
use crate::hub::EventHub;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The default store: API keys, readiness, the admin API and the
    /// console's deployment-wide pages.
    pub store: Store,
    /// Every store this api serves (the default first); the handler sends
    /// each caller's requests to its tenant's.
    pub stores: Stores,
    pub handler: A2aHandler,
    pub auth: Arc<Authenticator>,
    pub card: Arc<CardCache>,
    /// The process's metrics recorder, when one is installed.
    pub metrics: Option<PrometheusHandle>,
    /// What the console's pages share between viewers.
    pub console: Arc<crate::console_state::ConsoleShared>,
}

impl AppState {
    /// Wires the handler, the event hubs (one LISTEN connection per store
    /// in this process, stopped by `shutdown`: the process's servers must
    /// have drained by then, since blocking sends and streams wait on them)
    /// and the agent card. `stores` may be one store ([`Stores::one`]).
    pub fn new(stores: impl Into<Stores>, config: ApiConfig, shutdown: CancellationToken) -> Self {
        let stores = stores.into();
        let store = stores.default_store().clone();
        let hubs = stores.all().map(|(_, store)| EventHub::start(store.clone(), shutdown.clone())).collect();
        let card = Arc::new(CardCache::new(&config));
        let auth = Arc::new(Authenticator::new(config.auth.clone(), store.clone()));
        let handler = A2aHandler::new(stores.clone(), hubs, Arc::new(config), card.clone());
        AppState { store, stores, handler, auth, card, metrics: None, console: Arc::default() }
    }

    /// Serves this recorder's metrics at `/metrics`.
    pub fn with_metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }
}
