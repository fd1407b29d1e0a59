//! The `switchyard` binary: `migrate`, `serve`, `worker`, `dev`, `jobs`.

mod cli;
mod client;
mod config_file;
mod demo_agent;
mod inspect;
mod telemetry;

use std::future::Future;
use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use switchyard_api::AppState;
use switchyard_engine::plan::{PlanLimits, PlanSpec};
use switchyard_engine::{DEFAULT_STORE, JobId, SessionLimits, Store, StoreConfig, Stores};
use switchyard_worker::{Dispatcher, Worker};
use tokio_util::sync::CancellationToken;

use cli::{
    AgentsCommand, Cli, Command, ConfigCommand, DatabaseArgs, Embedded, JobsCommand, KeysCommand, PlansCommand,
    SecurityArgs, ServeArgs, TasksCommand, WebhooksCommand, WorkerArgs,
};
use config_file::FileConfig;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let telemetry = match telemetry::init(cli.log_format) {
        Ok(telemetry) => telemetry,
        Err(error) => return fail(&error),
    };
    let result = Box::pin(run(cli.command)).await;
    telemetry.shutdown();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

/// Reports an error as its chain of causes, one per line: what the user
/// needs, without a backtrace (set `RUST_BACKTRACE` or not). Output cut
/// short by its reader (`switchyard tasks list | head`) is no error.
fn fail(error: &anyhow::Error) -> std::process::ExitCode {
    let broken_pipe = error
        .chain()
        .any(|e| e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe));
    if broken_pipe {
        return std::process::ExitCode::SUCCESS;
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "Error: {error}");
    let causes: Vec<String> = error.chain().skip(1).map(ToString::to_string).collect();
    if !causes.is_empty() {
        let _ = writeln!(err, "Caused by:");
        for cause in causes {
            for line in cause.lines() {
                let _ = writeln!(err, "    {line}");
            }
        }
    }
    std::process::ExitCode::FAILURE
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Migrate { db, action: Some(_), .. } => migration_status(&db).await,
        Command::Migrate { db, undo, yes, .. } => migrate(&db, undo, yes).await,
        Command::Serve { db, file, security, serve: args } => {
            let file = FileConfig::load(file.path.as_deref())?;
            let listeners = bind(&args).await?;
            let stores = open_stores(&db, Embedded::Refuse, None, Down::Serve).await?;
            for (name, store) in stores.all() {
                match ensure_migrated(store).await {
                    Ok(()) => file.register(store).await?,
                    // A further store that is down is served once it is back;
                    // every other store's tenants are served meanwhile.
                    Err(error) if name != DEFAULT_STORE && unreachable(&error) => {
                        tracing::error!(store = name, error = %format!("{error:#}"), "a store is unreachable; its tenants are refused until it answers");
                    }
                    Err(error) => return Err(error.context(format!("store {name:?}"))),
                }
            }
            file.probe_agents(&security);
            serve(stores, &file, &security, &args, listeners, shutdown_on_signal()).await
        }
        Command::Worker { db, file, security, worker: args } => {
            let file = FileConfig::load(file.path.as_deref())?;
            let store = open_leasing(&db, db.selected(), Embedded::Refuse, args.lease).await?;
            ensure_migrated(&store).await?;
            file.register(&store).await?;
            file.probe_agents(&security);
            work(db.selected(), store, &file, &security, &args, shutdown_on_signal()).await
        }
        Command::Dev { db, file, mut security, serve: serve_args, worker: mut worker_args } => {
            let mut file = FileConfig::load(file.path.as_deref())?;
            let shutdown = shutdown_on_signal();
            // No agents configured: the demo agent runs in this process,
            // registered as "demo", the default.
            // Its tasks are journaled beside the store, so that they survive
            // a restart of `dev` as the broker's do. It starts once the store
            // is ours (a second `dev` on the same directory is refused first).
            let demo = if file.has_agents() {
                None
            } else {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the demo agent")?;
                let url = format!("http://{}", listener.local_addr()?);
                file.add_agent("demo", &url);
                Some((url, listener))
            };
            // A development broker: open to anyone, and its demo agents live
            // on this machine. Said loudly, since it must never face a network.
            if !file.has_auth() {
                security.anonymous = true;
                tracing::warn!(
                    "dev: anyone who can reach {} may call it without credentials (add an [auth] table to the config to require them)",
                    serve_args.listen
                );
            }
            if security.egress_allow.is_empty() {
                security.egress_allow = vec!["127.0.0.0/8".into(), "::1".into()];
                tracing::warn!("dev: agents on this machine (127.0.0.0/8, ::1) may be reached");
            }
            // Remote agents' pushes come back to this process's own api.
            if worker_args.push_receiver_url.is_none() {
                worker_args.push_receiver_url =
                    Some(serve_args.public_url.clone().unwrap_or_else(|| format!("http://{}", serve_args.listen)));
            }
            // Bound before the banner says anything runs.
            let listeners = bind(&serve_args).await?;
            let stores =
                open_stores(&db, Embedded::Create, Some(SessionLimits::within_lease(worker_args.lease)), Down::Refuse)
                    .await?;
            for (name, store) in stores.all() {
                store.migrate().await.with_context(|| format!("migrating store {name:?}"))?;
                file.register(store).await?;
            }
            let demo = match demo {
                Some((url, listener)) => {
                    std::fs::create_dir_all(&db.data_dir)
                        .with_context(|| format!("creating {}", db.data_dir.display()))?;
                    let journal = db.data_dir.join("demo-agent.jsonl");
                    let stop = shutdown.clone();
                    tokio::spawn(async move {
                        let pause = Duration::from_millis(20);
                        if let Err(error) = demo_agent::serve(listener, None, true, pause, Some(&journal), stop).await {
                            tracing::error!(%error, "the demo agent stopped");
                        }
                    });
                    Some(url)
                }
                None => {
                    file.probe_agents(&security);
                    None
                }
            };
            banner(&serve_args, &db, demo.as_deref(), &stores, security.anonymous)?;
            // A worker per store, as a deployment runs its own per store.
            // (Only the default store's serves --metrics-listen: one port.)
            let quiet = WorkerArgs { metrics_listen: None, ..worker_args.clone() };
            let workers = join_all(
                stores
                    .all()
                    .map(|(name, store)| {
                        let args = if name == DEFAULT_STORE { &worker_args } else { &quiet };
                        Box::pin(work(name, store.clone(), &file, &security, args, shutdown.clone())) as Pinned<'_, _>
                    })
                    .collect(),
            );
            let (api, workers) = tokio::join!(
                serve(stores.clone(), &file, &security, &serve_args, listeners, shutdown.clone()),
                workers
            );
            // Both have drained: close the stores (the embedded one folds its
            // write-ahead log back into the file as its last connection goes).
            for (_, store) in stores.all() {
                store.close().await;
            }
            workers.into_iter().fold(api, anyhow::Result::and)
        }
        Command::Agents { db, file, security, command } => {
            let file = FileConfig::load(file.path.as_deref())?;
            agents(registries(&db).await?, &file, &security, command).await
        }
        // API keys live on the default store: a credential is checked before
        // its tenant is known.
        Command::Keys { db, command } => keys(open_named(&db, DEFAULT_STORE, Embedded::Existing).await?, command).await,
        Command::Plans { db, command } => plans(registries(&db).await?, command).await,
        Command::Webhooks { db, command } => webhooks(open(&db, Embedded::Existing).await?, command).await,
        Command::Tasks { db, command } => {
            let mut out = std::io::stdout().lock();
            match command {
                TasksCommand::Show { task_id, json, trace_url } => {
                    let id = task_id.parse().map_err(|_| anyhow::anyhow!("{task_id:?} is not a task id"))?;
                    let (_, store) = inspect::find(&inspected(&db, Embedded::Read).await?, id).await?;
                    inspect::show(&store, &task_id, json, trace_url.as_deref(), &mut out).await
                }
                TasksCommand::List { tenant, state, limit, json } => {
                    let stores = inspected(&db, Embedded::Read).await?;
                    inspect::list(&stores, tenant.as_deref(), state.as_deref(), limit, json, &mut out).await
                }
                // A write: the embedded store only when no other process holds it.
                TasksCommand::Cancel { task_id, reason } => {
                    let id = task_id.parse().map_err(|_| anyhow::anyhow!("{task_id:?} is not a task id"))?;
                    let (_, store) = inspect::find(&inspected(&db, Embedded::Existing).await?, id).await?;
                    cancel_task(store, &task_id, reason, &mut out).await
                }
            }
        }
        Command::Jobs { db, command: JobsCommand::Dead { limit } } => {
            jobs_dead(&inspected(&db, Embedded::Existing).await?, limit).await
        }
        Command::Jobs { db, command } => jobs(open(&db, Embedded::Existing).await?, command).await,
        Command::Config { command } => {
            let mut out = std::io::stdout().lock();
            match command {
                ConfigCommand::Default => out.write_all(config_file::DEFAULT.as_bytes())?,
                ConfigCommand::Check { file, config } => {
                    let path = file.or(config.path).context("no file given: name one, or set --config")?;
                    let file = FileConfig::load(Some(&path))?;
                    // What `serve`, `worker` and `dev` check at their start,
                    // with the secrets the file names (read here as they will
                    // be there): a file this passes, they accept.
                    file.auth().context("[auth]")?;
                    file.card_signer()?;
                    file.trusted_cards()?;
                    file.agent_credentials()?;
                    // Agents may be registered at run time (`agents add`):
                    // said, not refused.
                    for (plan, member) in file.undefined_plan_members() {
                        writeln!(
                            out,
                            "warning: plan {plan:?} names {member:?}, which this file defines neither as an agent \
                             nor as a plan: register it (`switchyard agents add`) before the plan runs"
                        )?;
                    }
                    writeln!(out, "{}: ok", path.display())?;
                }
            }
            Ok(())
        }
        Command::Send(args) => {
            let ending = client::send(args).await?;
            std::io::stdout().flush()?;
            match ending.code() {
                0 => Ok(()),
                code => std::process::exit(code),
            }
        }
        Command::Backup { db, to } => {
            anyhow::ensure!(!to.exists(), "{} exists already: a backup goes to a new file", to.display());
            let store = open(&db, Embedded::Read).await?;
            store.backup_to(&to).await.with_context(|| format!("writing the backup to {}", to.display()))?;
            writeln!(std::io::stdout().lock(), "backed up to {}", to.display())?;
            Ok(())
        }
        Command::Probe { url, timeout } => {
            let http = reqwest::Client::builder().timeout(timeout).no_proxy().build()?;
            let response = http.get(&url).send().await.with_context(|| format!("probing {url}"))?;
            let status = response.status();
            anyhow::ensure!(
                status.is_success(),
                "{url} answered {status}: {}",
                response.text().await.unwrap_or_default()
            );
            Ok(())
        }
        Command::DemoAgent { listen, public_url, no_streaming, pause, journal } => {
            let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
            tracing::info!(listen = %listener.local_addr()?, "demo agent serving");
            let stop = shutdown_on_signal();
            demo_agent::serve(listener, public_url, !no_streaming, pause, journal.as_deref(), stop).await?;
            Ok(())
        }
    }
}

/// What `dev` tells the user at start: where everything listens, and
/// three commands to try.
fn banner(
    args: &ServeArgs,
    db: &DatabaseArgs,
    demo: Option<&str>,
    stores: &Stores,
    anonymous: bool,
) -> anyhow::Result<()> {
    let store = stores.default_store();
    let api = args.public_url.clone().unwrap_or_else(|| format!("http://{}", args.listen));
    let mut out = std::io::stdout().lock();
    writeln!(out, "Switchyard dev is running")?;
    writeln!(out, "  A2A API     {api}  (JSON-RPC and HTTP+JSON, A2A 1.0 and 0.3)")?;
    if let Some(grpc) = &args.grpc_listen {
        let tls = if args.grpc_tls_cert.is_some() { "  (TLS)" } else { "" };
        writeln!(out, "  gRPC        {grpc}{tls}")?;
    }
    writeln!(out, "  Agent Card  {api}/.well-known/agent-card.json")?;
    if args.console {
        let admin_token = args.admin_token.is_some() || args.admin_token_file.is_some();
        let who = if switchyard_api::console::open_to_anyone(anonymous, admin_token) {
            "open to anyone who can reach it"
        } else {
            "sign in with an admin credential"
        };
        writeln!(out, "  Console     {api}/console  ({who})")?;
    }
    if let Some(demo) = demo {
        writeln!(out, "  Demo agent  {demo}  (registered as \"demo\", the default agent)")?;
    }
    match store.driver() {
        "sqlite" => writeln!(out, "  Store       embedded (SQLite), {}", db.embedded_path().display())?,
        _ => writeln!(out, "  Store       PostgreSQL, schema \"{}\"", store.schema())?,
    }
    if stores.sharded() {
        let others: Vec<&str> = stores.all().skip(1).map(|(name, _)| name).collect();
        writeln!(
            out,
            "  Stores      default, {} (a worker each; tenants placed by --tenant-store)",
            others.join(", ")
        )?;
    }
    let url = if args.listen.to_string() == "127.0.0.1:8080" { String::new() } else { format!(" --url {api}") };
    let key = if anonymous { "" } else { " (with SWITCHYARD_API_KEY set: the config requires credentials)" };
    writeln!(out, "Try{key}:")?;
    writeln!(out, "  switchyard send \"echo hello\"{url}")?;
    writeln!(out, "  switchyard send \"stream 5\" --stream{url}")?;
    writeln!(out, "  switchyard send ask{url}          # answer the question at the prompt")?;
    out.flush()?;
    Ok(())
}

/// The store a one-store command works on (`--store`, else the default).
async fn open(db: &DatabaseArgs, embedded: Embedded) -> anyhow::Result<Store> {
    open_named(db, db.selected(), embedded).await
}

async fn open_named(db: &DatabaseArgs, name: &str, embedded: Embedded) -> anyhow::Result<Store> {
    db.store_names()?;
    // The store's error names the host, the port and the reason (or, for
    // the embedded store, the file and who holds it).
    Store::connect(&db.store_config_of(name, embedded)?).await.with_context(|| format!("store {name:?}"))
}

type Pinned<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs every future to its end, concurrently; their outputs in order.
async fn join_all<T>(mut futures: Vec<Pinned<'_, T>>) -> Vec<T> {
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
async fn inspected(db: &DatabaseArgs, embedded: Embedded) -> anyhow::Result<Stores> {
    match &db.store {
        Some(name) => Ok(Stores::one(open_named(db, name, embedded).await?)),
        None => open_stores(db, embedded, None, Down::Serve).await,
    }
}

/// The stores a registry command (`agents`, `plans`) works on: the one
/// `--store` names, else every store, each of which must answer.
async fn registries(db: &DatabaseArgs) -> anyhow::Result<Stores> {
    match &db.store {
        Some(name) => Ok(Stores::one(open_named(db, name, Embedded::Existing).await?)),
        None => open_stores(db, Embedded::Existing, None, Down::Refuse).await,
    }
}

/// What to do about a further store that does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Down {
    /// Refuse to start (`dev`, `migrate`).
    Refuse,
    /// Open it anyway and serve the other stores' tenants (`serve`, and
    /// the reads of `tasks` and `jobs`); its own are refused until it answers.
    Serve,
}

/// Every configured store, the default first (which must answer).
async fn open_stores(
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
fn unreachable(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        e.downcast_ref::<switchyard_engine::StoreError>()
            .is_some_and(|e| matches!(e, switchyard_engine::StoreError::Unreachable { .. }) || e.is_transient())
    })
}

/// Refuses to start on a schema that lacks this build's migrations (never
/// migrated, or a misspelled `--schema`), saying which and what to run.
async fn ensure_migrated(store: &Store) -> anyhow::Result<()> {
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
async fn open_leasing(db: &DatabaseArgs, name: &str, embedded: Embedded, lease: Duration) -> anyhow::Result<Store> {
    db.store_names()?;
    let config = StoreConfig { session: SessionLimits::within_lease(lease), ..db.store_config_of(name, embedded)? };
    Store::connect(&config).await.with_context(|| format!("store {name:?}"))
}

/// Migrates (or reverts) the store `--store` names, else every store.
async fn migrate(db: &DatabaseArgs, undo: bool, yes: bool) -> anyhow::Result<()> {
    let names = match &db.store {
        Some(name) => vec![name.clone()],
        None => db.store_names()?,
    };
    for name in names {
        let store = open_named(db, &name, Embedded::Existing).await?;
        migrate_one(&store, undo, yes).await.with_context(|| format!("store {name:?}"))?;
    }
    Ok(())
}

async fn migrate_one(store: &Store, undo: bool, yes: bool) -> anyhow::Result<()> {
    if undo {
        let held = match store.task_and_job_counts().await {
            Ok((tasks, jobs)) => format!("with {tasks} tasks and {jobs} jobs in them"),
            Err(_) => "whatever they hold".to_owned(),
        };
        let what = format!("this drops every table of schema {:?} ({}), {held}", store.schema(), store.driver());
        if !yes && !confirmed(&what)? {
            anyhow::bail!("{what}; nothing was dropped (answer \"yes\" at the prompt, or pass --yes)");
        }
        store.migrate_undo(0).await.context("reverting migrations")?;
        tracing::info!(schema = store.schema(), "migrations reverted");
        return Ok(());
    }
    let missing = store.missing_migrations().await.context("reading the schema's migrations")?;
    store.migrate().await.context("applying migrations")?;
    if missing.is_empty() {
        tracing::info!(schema = store.schema(), "database is up to date; nothing to apply");
    } else {
        let names: Vec<String> = missing.iter().map(|(version, what)| format!("{version} ({what})")).collect();
        tracing::info!(schema = store.schema(), applied = %names.join(", "), "migrations applied");
    }
    Ok(())
}

/// `migrate status`: each of this build's migrations, applied or
/// pending; exit code 1 when any is pending.
async fn migration_status(db: &DatabaseArgs) -> anyhow::Result<()> {
    let store = open(db, Embedded::Existing).await?;
    let status = store.migration_status().await.context("reading the schema's migrations")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "schema {:?} ({})", store.schema(), store.driver())?;
    for (version, description, applied) in &status {
        writeln!(out, "  {version}  {:<8} {description}", if *applied { "applied" } else { "pending" })?;
    }
    let pending = status.iter().filter(|(_, _, applied)| !applied).count();
    if pending > 0 {
        writeln!(out, "{pending} pending: run `switchyard migrate`")?;
        out.flush()?;
        std::process::exit(1);
    }
    writeln!(out, "up to date")?;
    Ok(())
}

/// Asks on the terminal whether to go ahead; no terminal is a no.
fn confirmed(what: &str) -> anyhow::Result<bool> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    let mut err = std::io::stderr().lock();
    write!(err, "{what}. Type \"yes\" to go ahead: ")?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

/// The api's listeners, bound before anything says the api runs: a port
/// that is taken stops the process at once, naming it.
struct Listeners {
    http: tokio::net::TcpListener,
    grpc: Option<tokio::net::TcpListener>,
}

async fn bind(args: &ServeArgs) -> anyhow::Result<Listeners> {
    let http = tokio::net::TcpListener::bind(args.listen).await.with_context(|| {
        format!("binding {} (is another process using it? choose another with --listen)", args.listen)
    })?;
    let grpc = match args.grpc_listen {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("binding {addr} (is another process using it? choose another with --grpc-listen)")
        })?),
        None => None,
    };
    Ok(Listeners { http, grpc })
}

async fn serve(
    stores: Stores,
    file: &FileConfig,
    security: &SecurityArgs,
    args: &ServeArgs,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Listeners { http: listener, grpc } = listeners;
    let bound = listener.local_addr()?;
    let grpc_bound = grpc.as_ref().map(tokio::net::TcpListener::local_addr).transpose()?;
    let grpc_tls = args.grpc_tls()?;
    let mut auth = file.auth()?;
    auth.anonymous |= security.anonymous;
    let mut config = switchyard_api::ApiConfig {
        routing: file.routing(),
        plan_limits: file.plan_limits(),
        egress: file.egress()?,
        agent_egress: file.agent_egress(&security.egress_allow)?,
        card_signer: file.card_signer()?,
        auth,
        ..args.api_config(bound, grpc_bound)?
    };
    // The console checks stored cards' signatures against the keys workers use.
    config.console.trusted_cards = file.trusted_cards()?;
    if config.auth.anonymous {
        tracing::warn!("anonymous access is on: requests without credentials are served");
    }
    tracing::info!(listen = %bound, public_url = %config.public_url, grpc = ?grpc_bound, "serving");
    // The event hub outlives the drain: a blocking send or a stream still
    // open during it is answered as soon as its task moves.
    let hub_stop = CancellationToken::new();
    let state = AppState::new(stores, config, hub_stop.clone()).with_metrics(metrics_handle()?);
    let admission = args.admission();
    let grpc = async {
        match grpc {
            Some(listener) => switchyard_api::grpc::serve(
                listener,
                state.clone(),
                shutdown.clone(),
                args.http_drain_timeout,
                admission.clone(),
                grpc_tls,
            )
            .await
            .context("serving gRPC"),
            None => Ok(()),
        }
    };
    let http = async {
        switchyard_api::serve(listener, state.clone(), shutdown.clone(), args.http_drain_timeout, admission.clone())
            .await
            .context("serving HTTP")
    };
    let (http, grpc) = tokio::join!(http, grpc);
    hub_stop.cancel();
    http.and(grpc)
}

async fn work(
    name: &str,
    store: Store,
    file: &FileConfig,
    security: &SecurityArgs,
    args: &WorkerArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if let Some(listen) = args.metrics_listen {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        let state = switchyard_api::metrics::MetricsState {
            stores: vec![(name.to_owned(), store.clone())],
            handle: metrics_handle()?,
        };
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let app = switchyard_api::metrics::router(state);
            let served = axum::serve(switchyard_api::no_delay(listener), app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "metrics endpoint failed");
            }
        });
    }
    let mut delegation = args.delegation(
        file.agent_egress(&security.egress_allow)?,
        file.agent_credentials()?,
        file.trusted_cards()?,
        file.agent_bindings(),
        file.blocking_agents(),
    );
    delegation.push_store = (name != DEFAULT_STORE).then(|| name.to_owned());
    let dispatcher = Dispatcher::new(delegation, args.push(file.egress()?)).context("building the HTTP clients")?;
    let worker = Worker::new(store, args.worker_config(), dispatcher)?;
    worker.run(shutdown).await?;
    Ok(())
}

/// `agents`: a change goes to every store (each keeps its own registry,
/// read by its own workers), or to the one `--store` names; `list` reads
/// the first of them.
async fn agents(
    stores: Stores,
    file: &FileConfig,
    security: &SecurityArgs,
    command: AgentsCommand,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        AgentsCommand::Add { name, url } => {
            let egress = std::sync::Arc::new(file.agent_egress(&security.egress_allow)?);
            let credentials = file.agent_credentials()?;
            // With signed cards required, an unsigned or tampered card is
            // refused here too (workers verify it again on every fetch).
            let trusted = file.trusted_cards()?;
            let card =
                switchyard_worker::delegate::fetch_card(&url, &egress, credentials.get(&name), trusted.as_deref())
                    .await
                    .map_err(|e| anyhow::anyhow!("{url} does not serve a usable Agent Card: {e}"))?;
            stores.agent_upsert(&name, &url, Some(&card)).await?;
            audit(stores.default_store(), "admin.agent.add", serde_json::json!({ "agent": name, "url": url })).await;
            writeln!(out, "agent {name} registered ({})", card["name"].as_str().unwrap_or("unnamed"))?;
        }
        AgentsCommand::List => {
            writeln!(out, "{:<20} {:<40} {:>8}  SKILLS", "NAME", "URL", "FAILURES")?;
            for agent in stores.default_store().agents_list().await? {
                let skills: Vec<String> = agent
                    .card
                    .as_ref()
                    .and_then(|c| c["skills"].as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|s| s["id"].as_str().map(str::to_owned))
                    .collect();
                let skills = if agent.card.is_none() { "(card not fetched yet)".to_owned() } else { skills.join(",") };
                writeln!(out, "{:<20} {:<40} {:>8}  {skills}", agent.name, agent.url, agent.consecutive_failures)?;
            }
        }
        AgentsCommand::Remove { name } => {
            let removed = stores.agent_remove(&name).await?;
            audit(stores.default_store(), "admin.agent.remove", serde_json::json!({ "agent": name })).await;
            anyhow::ensure!(removed, "no agent named {name:?} is registered");
            writeln!(out, "agent {name} removed")?;
        }
    }
    Ok(())
}

/// Records an operator's change in the audit log (and as a log line); the
/// operator is whoever runs the command with the database's credentials.
async fn audit(store: &Store, action: &str, detail: serde_json::Value) {
    let operator = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    let entry = switchyard_engine::AuditEntry {
        credential: Some("cli".into()),
        ..switchyard_engine::AuditEntry::new(operator, action)
    };
    store.audit(&entry.with_detail(detail)).await;
}

/// `tasks cancel`: an operator's cancel of any open task, as its owner's
/// would be (children, remote task and webhooks follow), audited as theirs.
async fn cancel_task(store: Store, task_id: &str, reason: Option<String>, out: &mut impl Write) -> anyhow::Result<()> {
    let id: switchyard_engine::TaskId = task_id.parse().map_err(|_| anyhow::anyhow!("{task_id:?} is not a task id"))?;
    let task = store.task_load(id).await.with_context(|| format!("task {task_id}"))?;
    let owner = switchyard_engine::Caller::new(&task.tenant, &task.owner);
    let text = reason.unwrap_or_else(|| "canceled by an operator".to_owned());
    let message = a2a::Message::new(a2a::Role::Agent, vec![a2a::Part::text(&text)]);
    match store.task_cancel(&owner, id, Some(message)).await {
        Ok(_) => {}
        Err(e) if e.terminal_state().is_some_and(|s| s != switchyard_engine::TaskState::Canceled) => {
            anyhow::bail!("task {task_id} is {} already; only an open task can be canceled", task.state)
        }
        Err(e) => return Err(e).with_context(|| format!("canceling task {task_id}")),
    }
    audit(&store, "task.cancel", serde_json::json!({ "task": task_id, "reason": text })).await;
    writeln!(out, "task {task_id} canceled")?;
    Ok(())
}

async fn keys(store: Store, command: KeysCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        KeysCommand::Create { tenant, principal, scopes, rate, burst } => {
            switchyard_api::validate::tenant(&tenant).map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
            anyhow::ensure!(
                !principal.is_empty() && principal.len() <= 256 && !principal.chars().any(char::is_control),
                "--principal: 1-256 printable characters"
            );
            if let Some(rate) = rate {
                anyhow::ensure!(rate.is_finite() && rate > 0.0, "--rate must be a positive number");
            }
            anyhow::ensure!(burst.is_none() || rate.is_some(), "--burst needs --rate");
            let new = switchyard_engine::NewKey {
                tenant,
                principal,
                scopes,
                rate_per_sec: rate,
                burst: burst.map(|b| i32::try_from(b.max(1)).unwrap_or(i32::MAX)),
            };
            let (record, key) = store.key_create(&new).await?;
            audit(
                &store,
                "keys.create",
                serde_json::json!({ "key": record.id, "tenant": record.tenant, "principal": record.principal, "scopes": record.scopes }),
            )
            .await;
            writeln!(
                out,
                "key {} for {}/{} created{}; it is shown once, here:",
                record.id,
                record.tenant,
                record.principal,
                if record.scopes.is_empty() {
                    String::new()
                } else {
                    format!(" (scopes: {})", record.scopes.join(","))
                }
            )?;
            writeln!(out, "{key}")?;
        }
        KeysCommand::List => {
            writeln!(
                out,
                "{:<14} {:<20} {:<20} {:<12} {:<10} {:<25} REVOKED",
                "ID", "TENANT", "PRINCIPAL", "SCOPES", "RATE", "CREATED"
            )?;
            for key in store.keys_list().await? {
                let rate = key.rate_per_sec.map_or_else(|| "default".to_owned(), |r| format!("{r}/s"));
                writeln!(
                    out,
                    "{:<14} {:<20} {:<20} {:<12} {:<10} {:<25} {}",
                    key.id,
                    key.tenant,
                    key.principal,
                    if key.scopes.is_empty() { "-".to_owned() } else { key.scopes.join(",") },
                    rate,
                    key.created_at.format("%Y-%m-%d %H:%M:%S"),
                    key.revoked_at.map_or_else(|| "-".to_owned(), |at| at.format("%Y-%m-%d %H:%M:%S").to_string()),
                )?;
            }
        }
        KeysCommand::Revoke { id } => {
            anyhow::ensure!(store.key_revoke(&id).await?, "no live key has id {id:?}");
            audit(&store, "keys.revoke", serde_json::json!({ "key": id })).await;
            writeln!(out, "key {id} revoked")?;
        }
    }
    Ok(())
}

/// `plans`: as [`agents`], a change goes to every store (or `--store`'s).
async fn plans(stores: Stores, command: PlansCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        PlansCommand::Add { json } => {
            let plan: PlanSpec =
                serde_json::from_str(&json).context("the plan is not valid JSON in the [[plans]] shape")?;
            plan.validate(&PlanLimits::default())?;
            stores.plan_put(&plan).await?;
            writeln!(out, "plan {} stored", plan.name)?;
        }
        PlansCommand::List => {
            writeln!(out, "{:<20} {:<10} MEMBERS", "NAME", "KIND")?;
            for plan in stores.default_store().plans_list().await? {
                let (kind, members) = if let Some(steps) = &plan.pipeline {
                    ("pipeline", steps.join(" -> "))
                } else if let Some(members) = &plan.fanout {
                    ("fanout", format!("{} (join {})", members.join(", "), plan.join.as_deref().unwrap_or("all")))
                } else if let Some(skill) = &plan.fanout_skill {
                    ("fanout", format!("skill {skill} (join {})", plan.join.as_deref().unwrap_or("all")))
                } else {
                    ("delegate", plan.agent.clone().unwrap_or_default())
                };
                writeln!(out, "{:<20} {:<10} {members}", plan.name, kind)?;
            }
        }
        PlansCommand::Remove { name } => {
            let removed = stores.plan_delete(&name).await?;
            anyhow::ensure!(removed, "no plan named {name:?}");
            writeln!(out, "plan {name} removed")?;
        }
    }
    Ok(())
}

async fn webhooks(store: Store, command: WebhooksCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let (state, limit) = match command {
        WebhooksCommand::Requeue { delivery_id } => {
            store.push_requeue(delivery_id).await?;
            writeln!(out, "delivery {delivery_id} requeued")?;
            return Ok(());
        }
        WebhooksCommand::Dead { limit } => (Some("dead".to_owned()), limit),
        WebhooksCommand::List { state, limit } => (state, limit),
    };
    if let Some(state) = &state {
        anyhow::ensure!(
            ["pending", "delivered", "dead"].contains(&state.as_str()),
            "--state is pending, delivered or dead"
        );
    }
    writeln!(
        out,
        "{:<8} {:<38} {:<16} {:>5} {:<9} {:>8}  {:<40} LAST ERROR",
        "ID", "TASK", "WEBHOOK", "SEQ", "STATE", "ATTEMPTS", "URL"
    )?;
    for d in store.push_deliveries(state.as_deref(), limit).await? {
        // The URL's path and query may carry secrets of the receiver's: the host only.
        let host = d.url.split('/').take(3).collect::<Vec<_>>().join("/");
        writeln!(
            out,
            "{:<8} {:<38} {:<16} {:>5} {:<9} {:>8}  {:<40} {}",
            d.id,
            d.task_id,
            d.config_id,
            d.seq,
            d.state,
            d.attempts,
            host,
            d.last_error.unwrap_or_default()
        )?;
    }
    Ok(())
}

/// `jobs dead`: the dead-lettered jobs of every store inspected, newest
/// first (a job's id is its store's: `jobs requeue` takes `--store`).
async fn jobs_dead(stores: &Stores, limit: i64) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let mut dead = Vec::new();
    for (name, store) in stores.all() {
        match store.jobs_dead(limit).await {
            Ok(jobs) => dead.extend(jobs.into_iter().map(|job| (name, job))),
            Err(error) if stores.sharded() => eprintln!("warning: store {name:?} did not answer: {error}"),
            Err(error) => return Err(error.into()),
        }
    }
    dead.sort_by_key(|(_, job)| std::cmp::Reverse(job.finished_at));
    dead.truncate(usize::try_from(limit).unwrap_or(0));
    let column = |store: &str| if stores.sharded() { format!("{store:<10} ") } else { String::new() };
    writeln!(
        out,
        "{}{:<10} {:<38} {:<10} {:>8}  {:<25} LAST ERROR",
        column("STORE"),
        "JOB",
        "TASK",
        "KIND",
        "ATTEMPTS",
        "DIED AT"
    )?;
    for (store, job) in dead {
        let died = job.finished_at.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default();
        writeln!(
            out,
            "{}{:<10} {:<38} {:<10} {:>8}  {:<25} {}",
            column(store),
            job.id,
            job.task_id,
            job.kind,
            format!("{}/{}", job.attempt, job.max_attempts),
            died,
            job.last_error.unwrap_or_default()
        )?;
    }
    Ok(())
}

async fn jobs(store: Store, command: JobsCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        JobsCommand::Dead { limit } => jobs_dead(&Stores::one(store), limit).await?,
        JobsCommand::Requeue { job_id } => {
            store.job_requeue(JobId(job_id)).await?;
            writeln!(out, "job {job_id} requeued")?;
        }
    }
    Ok(())
}

/// The process's one Prometheus recorder, installed on first use (`dev`
/// serves the API's and the worker's metrics from the same recorder).
fn metrics_handle() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: std::sync::Mutex<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::Mutex::new(None);
    let mut slot = HANDLE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(handle) = slot.as_ref() {
        return Ok(handle.clone());
    }
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    *slot = Some(handle.clone());
    Ok(handle)
}

/// One token for the whole process, cancelled by the first SIGINT or SIGTERM.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let fired = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            () = term => {}
        }
        tracing::info!("shutdown requested");
        fired.cancel();
    });
    token
}
