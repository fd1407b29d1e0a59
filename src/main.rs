//! The `switchyard` binary: `migrate`, `serve`, `worker`, `dev`, `jobs`.

mod cli;
mod client;
mod config_file;
mod database_args;
mod demo_agent;
mod inspect;
mod open;
mod operator;
mod telemetry;

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use switchyard_api::AppState;
use switchyard_engine::{DEFAULT_STORE, SessionLimits, Store, Stores};
use switchyard_worker::{Dispatcher, Worker};
use tokio_util::sync::CancellationToken;

use cli::{
    Cli, Command, ConfigCommand, DatabaseArgs, Embedded, JobsCommand, SecurityArgs, ServeArgs, TasksCommand, WorkerArgs,
};
use config_file::FileConfig;
use open::{
    Down, Pinned, ensure_migrated, inspected, join_all, open, open_leasing, open_named, open_stores, registries,
    unreachable,
};
use operator::{agents, cancel_task, jobs, jobs_dead, keys, plans, webhooks};

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
