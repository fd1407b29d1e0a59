//! Opening the configured stores: the one a command works on, or every
//! store (the default must answer; what to do about a further one that
//! does not is the command's choice).

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use switchyard_engine::{DEFAULT_STORE, SessionLimits, Store, StoreConfig, Stores};

use crate::cli::{DatabaseArgs, Embedded};

/// The store a one-store command works on (`--store`, else the default).
pub(crate) async fn open(db: &DatabaseArgs, embedded: Embedded) -> anyhow::Result<Store> {
    open_named(db, db.selected(), embedded).await
}

pub(crate) async fn open_named(db: &DatabaseArgs, name: &str, embedded: Embedded) -> anyhow::Result<Store> {
    db.store_names()?;
    // The store's error names the host, the port and the reason (or, for
    // the embedded store, the file and who holds it).
    Store::connect(&db.store_config_of(name, embedded)?).await.with_context(|| format!("store {name:?}"))
}

pub(crate) type Pinned<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs every future to its end, concurrently; their outputs in order.
pub(crate) async fn join_all<T>(mut futures: Vec<Pinned<'_, T>>) -> Vec<T> {
    let mut outputs: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match Future::poll(future.as_mut(), cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future ended")).collect()
}

/// The stores an inspecting command looks at: the one `--store` names,
/// else every store (one that does not answer is passed over, said).
pub(crate) async fn inspected(db: &DatabaseArgs, embedded: Embedded) -> anyhow::Result<Stores> {
    match &db.store {
        Some(name) => Ok(Stores::one(open_named(db, name, embedded).await?)),
        None => open_stores(db, embedded, None, Down::Serve).await,
    }
}

/// The stores a registry command (`agents`, `plans`) works on: the one
/// `--store` names, else every store, each of which must answer.
pub(crate) async fn registries(db: &DatabaseArgs) -> anyhow::Result<Stores> {
    match &db.store {
        Some(name) => Ok(Stores::one(open_named(db, name, Embedded::Existing).await?)),
        None => open_stores(db, Embedded::Existing, None, Down::Refuse).await,
    }
}

/// What to do about a further store that does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Down {
    /// Refuse to start (`dev`, `migrate`).
    Refuse,
    /// Open it anyway and serve the other stores' tenants (`serve`, and
    /// the reads of `tasks` and `jobs`); its own are refused until it answers.
    Serve,
}

/// Every configured store, the default first (which must answer).
pub(crate) async fn open_stores(
    db: &DatabaseArgs,
    embedded: Embedded,
    session: Option<SessionLimits>,
    down: Down,
) -> anyhow::Result<Stores> {
    let names = db.store_names()?;
    let config = |name: &str| -> anyhow::Result<StoreConfig> {
        let config = db.store_config_of(name, embedded)?;
        Ok(match session {
            Some(session) => StoreConfig { session, ..config },
            None => config,
        })
    };
    let default = Store::connect(&config(DEFAULT_STORE)?).await.context("store \"default\"")?;
    let mut others = Vec::new();
    for name in &names[1..] {
        let config = config(name)?;
        let store = match Store::connect(&config).await {
            Ok(store) => store,
            Err(error) if down == Down::Serve => {
                tracing::error!(store = %name, %error, "a store is unreachable; its tenants are refused until it answers");
                Store::connect_lazy(&config)?
            }
            Err(error) => return Err(error).with_context(|| format!("store {name:?}")),
        };
        others.push((name.clone(), store));
    }
    Ok(Stores::new(default, others, &db.placement())?)
}

/// Whether `error` says a store did not answer (rather than, say, that its
/// schema is behind).
pub(crate) fn unreachable(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        e.downcast_ref::<switchyard_engine::StoreError>()
            .is_some_and(|e| matches!(e, switchyard_engine::StoreError::Unreachable { .. }) || e.is_transient())
    })
}

/// Refuses to start on a schema that lacks this build's migrations (never
/// migrated, or a misspelled `--schema`), saying which and what to run.
pub(crate) async fn ensure_migrated(store: &Store) -> anyhow::Result<()> {
    let missing = store.missing_migrations().await?;
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = missing.iter().map(|(version, what)| format!("{version} ({what})")).collect();
    anyhow::bail!(
        "the schema {:?} lacks {} of this build's migrations: {}; run `switchyard migrate` with the same \
         --database-url and --schema first",
        store.schema(),
        missing.len(),
        names.join(", ")
    )
}

/// The store for a process that holds leases: no transaction of its may
/// outlive half of one (see [`SessionLimits::within_lease`]).
pub(crate) async fn open_leasing(
    db: &DatabaseArgs,
    name: &str,
    embedded: Embedded,
    lease: Duration,
) -> anyhow::Result<Store> {
    db.store_names()?;
    let config = StoreConfig { session: SessionLimits::within_lease(lease), ..db.store_config_of(name, embedded)? };
    Store::connect(&config).await.with_context(|| format!("store {name:?}"))
}
