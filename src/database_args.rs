//! Where the database is: `--database-url` and the flags beside it (the
//! schema, the pool, the log's windows, the read replica, further stores
//! and the placement of tenants on them), global to every command.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use switchyard_engine::StoreConfig;

/// Where the database is.
#[derive(Debug, Args)]
pub(crate) struct DatabaseArgs {
    /// PostgreSQL URL. Its `sslmode` decides TLS; on loopback,
    /// `sslmode=disable` saves a TLS handshake and encryption per round trip.
    /// Global, so it may follow a nested command (`tasks show ID --database-url …`).
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub(crate) database_url: Option<String>,
    /// The schema Switchyard's tables live in.
    #[arg(long, env = "SWITCHYARD_SCHEMA", default_value = "switchyard", global = true)]
    pub(crate) schema: String,
    /// Connections in this process's pool.
    #[arg(long, env = "SWITCHYARD_DB_MAX_CONNECTIONS", default_value_t = 8, global = true)]
    pub(crate) db_max_connections: u32,
    /// Where `dev` keeps its embedded store when no database URL is given
    /// (and where the other commands look for it).
    #[arg(long, env = "SWITCHYARD_DATA_DIR", default_value = ".switchyard", global = true)]
    pub(crate) data_dir: PathBuf,
    /// On PostgreSQL, how much task creation time one partition of the event
    /// log covers; retention drops a whole window once all of it is older
    /// than --retention (at least 1s; ignored by the embedded store).
    #[arg(long, env = "SWITCHYARD_LOG_WINDOW", default_value = "1d", value_parser = parse_log_window, global = true)]
    pub(crate) log_window: Duration,
    /// A streaming replica of the PostgreSQL database for the reads the api
    /// serves (GetTask, ListTasks, streams' logs, the console): each read
    /// goes there once it has replayed everything committed before the read
    /// began, else to the primary.
    #[arg(long, env = "SWITCHYARD_READ_DATABASE_URL", global = true)]
    pub(crate) read_database_url: Option<String>,
    /// How long a read waits for the replica to catch up before it reads the primary.
    #[arg(long, env = "SWITCHYARD_READ_WAIT", default_value = "50ms", value_parser = humantime::parse_duration, global = true)]
    pub(crate) read_wait: Duration,
    /// Another store beside --database-url (which is the store named
    /// "default"): NAME=URL, a PostgreSQL database with its own workers,
    /// holding the tenants --tenant-store places on it. Repeatable; in the
    /// environment, space-separated.
    #[arg(long = "store-url", env = "SWITCHYARD_STORE_URLS", value_delimiter = ' ', value_parser = parse_pair, global = true)]
    pub(crate) store_urls: Vec<Pair>,
    /// TENANT=STORE: that tenant's tasks live on that store; a tenant not
    /// named lives on "default". Repeatable; in the environment,
    /// space-separated.
    #[arg(long = "tenant-store", env = "SWITCHYARD_TENANT_STORES", value_delimiter = ' ', value_parser = parse_pair, global = true)]
    pub(crate) tenant_stores: Vec<Pair>,
    /// The store a command works on: a `worker`'s, and the one store
    /// `webhooks` and `jobs requeue` act on (default "default"). Without it,
    /// `migrate`, `agents`, `plans`, `tasks` and `jobs dead` cover every
    /// store (`keys` always works on "default", which holds the keys).
    #[arg(long, env = "SWITCHYARD_STORE", global = true)]
    pub(crate) store: Option<String>,
}

/// `NAME=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pair {
    pub(crate) name: String,
    pub(crate) value: String,
}

fn parse_pair(text: &str) -> Result<Pair, String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() && !value.is_empty() => {
            Ok(Pair { name: name.to_owned(), value: value.to_owned() })
        }
        _ => Err(format!("{text:?} is not NAME=VALUE")),
    }
}

/// A log window: a duration of at least a second.
fn parse_log_window(text: &str) -> Result<Duration, String> {
    let window = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if window < Duration::from_secs(1) {
        return Err(format!("{text} is shorter than a second"));
    }
    Ok(window)
}

/// What a command may do with the embedded store when no database URL is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Embedded {
    /// Open it, creating it if needed (`dev`).
    Create,
    /// Open it if it exists, as its one process (`keys`, `jobs`, …).
    Existing,
    /// Read it if it exists, beside the process that owns it (`tasks`).
    Read,
    /// Never: the command runs beside others on one store (`serve`, `worker`).
    Refuse,
}

impl DatabaseArgs {
    /// The embedded store's file.
    pub(crate) fn embedded_path(&self) -> PathBuf {
        self.data_dir.join("switchyard.db")
    }

    /// The store a one-store command works on (`--store`, else the default).
    pub(crate) fn selected(&self) -> &str {
        self.store.as_deref().unwrap_or(switchyard_engine::DEFAULT_STORE)
    }

    /// The names of every configured store, the default first; an unknown
    /// `--store`, a misnamed store or a tenant placed on no store refused.
    pub(crate) fn store_names(&self) -> anyhow::Result<Vec<String>> {
        let mut names = vec![switchyard_engine::DEFAULT_STORE.to_owned()];
        for Pair { name, value } in &self.store_urls {
            anyhow::ensure!(
                switchyard_engine::stores::valid_name(name),
                "--store-url {name}=…: a store's name is letters, digits, '-' and '_' (at most 63)"
            );
            anyhow::ensure!(!names.contains(name), "--store-url: store {name:?} is given twice");
            anyhow::ensure!(
                value.starts_with("postgres://") || value.starts_with("postgresql://"),
                "--store-url {name}=…: each further store is a PostgreSQL database (postgres://…)"
            );
            names.push(name.clone());
        }
        if let Some(store) = &self.store {
            anyhow::ensure!(
                names.contains(store),
                "--store {store:?}: no such store (configured: {})",
                names.join(", ")
            );
        }
        for Pair { name: tenant, value: store } in &self.tenant_stores {
            anyhow::ensure!(
                names.contains(store),
                "--tenant-store {tenant}={store}: no such store (configured: {})",
                names.join(", ")
            );
        }
        Ok(names)
    }

    /// The placement of tenants on stores (tenant → store name).
    pub(crate) fn placement(&self) -> Vec<(String, String)> {
        self.tenant_stores.iter().map(|p| (p.name.clone(), p.value.clone())).collect()
    }

    /// The configuration of the store called `name` (the default one is
    /// --database-url, or the embedded store, as `embedded` allows).
    pub(crate) fn store_config_of(&self, name: &str, embedded: Embedded) -> anyhow::Result<StoreConfig> {
        if name == switchyard_engine::DEFAULT_STORE {
            return self.store_config(embedded);
        }
        let Some(pair) = self.store_urls.iter().find(|p| p.name == name) else {
            anyhow::bail!("no store named {name:?}");
        };
        anyhow::ensure!(
            self.database_url.as_deref().is_some_and(|u| !switchyard_engine::is_sqlite_url(u)),
            "--store-url needs the default store on PostgreSQL too (--database-url postgres://…)"
        );
        Ok(StoreConfig {
            max_connections: self.db_max_connections.max(2),
            schema: self.schema.clone(),
            log_window: self.log_window,
            ..StoreConfig::new(pair.value.clone())
        })
    }

    pub(crate) fn store_config(&self, embedded: Embedded) -> anyhow::Result<StoreConfig> {
        let config = |url: String| StoreConfig {
            max_connections: self.db_max_connections.max(2),
            schema: self.schema.clone(),
            read_only: embedded == Embedded::Read,
            log_window: self.log_window,
            read_url: self.read_database_url.clone().filter(|url| !url.is_empty()),
            read_wait: self.read_wait,
            ..StoreConfig::new(url)
        };
        if let Some(read) = self.read_database_url.as_deref().filter(|url| !url.is_empty()) {
            let postgres = |url: &str| url.starts_with("postgres://") || url.starts_with("postgresql://");
            anyhow::ensure!(
                postgres(read) && self.database_url.as_deref().is_some_and(postgres),
                "--read-database-url names a streaming replica of a PostgreSQL store: give PostgreSQL URLs for both \
                 it and --database-url"
            );
        }
        if let Some(url) = &self.database_url {
            let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
            if !postgres && !switchyard_engine::is_sqlite_url(url) {
                let scheme = url.split_once(':').map_or(url.as_str(), |(scheme, _)| scheme);
                anyhow::bail!(
                    "the database URL's scheme {scheme:?} is not one Switchyard runs on: give a PostgreSQL URL \
                     (postgres://…) or an embedded store (sqlite:PATH)"
                );
            }
            if embedded == Embedded::Refuse && switchyard_engine::is_sqlite_url(url) {
                anyhow::bail!(
                    "{url}: serve and worker share one store between processes, which the embedded store cannot; \
                     run `switchyard dev` (one process), or give a PostgreSQL URL"
                );
            }
            return Ok(config(url.clone()));
        }
        let path = self.embedded_path();
        let url = format!("sqlite://{}", path.display());
        match embedded {
            Embedded::Create => Ok(config(url)),
            Embedded::Existing | Embedded::Read if path.exists() => Ok(config(url)),
            Embedded::Existing | Embedded::Read => anyhow::bail!(
                "no database given: set DATABASE_URL (PostgreSQL), or run where `switchyard dev` keeps its \
                 embedded store ({} does not exist; --data-dir names another)",
                path.display()
            ),
            Embedded::Refuse => anyhow::bail!(
                "no database given: set --database-url or DATABASE_URL to a PostgreSQL URL \
                 (or run `switchyard dev`, which needs none)"
            ),
        }
    }
}
