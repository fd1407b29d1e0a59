//! The `switchyard` binary: `migrate`, `serve`, `worker`, `dev`, `jobs`.

mod cli;

use std::io::Write;

use anyhow::Context;
use clap::Parser;
use switchyard_api::AppState;
use switchyard_engine::{JobId, Store};
use switchyard_worker::{Dispatcher, Worker};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command, DatabaseArgs, JobsCommand, LogFormat, ServeArgs, WorkerArgs};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Migrate { db, undo } => migrate(&db, undo).await,
        Command::Serve { db, serve: args } => {
            let shutdown = shutdown_on_signal();
            serve(open(&db).await?, &args, shutdown).await
        }
        Command::Worker { db, worker: args } => {
            let shutdown = shutdown_on_signal();
            work(open(&db).await?, &args, shutdown).await
        }
        Command::Dev {
            db,
            serve: serve_args,
            worker: worker_args,
        } => {
            let store = open(&db).await?;
            store.migrate().await.context("migrating the database")?;
            let shutdown = shutdown_on_signal();
            let (api, worker) = tokio::join!(
                serve(store.clone(), &serve_args, shutdown.clone()),
                work(store.clone(), &worker_args, shutdown.clone())
            );
            api.and(worker)
        }
        Command::Jobs { db, command } => jobs(open(&db).await?, command).await,
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn open(db: &DatabaseArgs) -> anyhow::Result<Store> {
    Store::connect(&db.store_config())
        .await
        .context("connecting to PostgreSQL")
}

async fn migrate(db: &DatabaseArgs, undo: bool) -> anyhow::Result<()> {
    let store = open(db).await?;
    if undo {
        store
            .migrate_undo(0)
            .await
            .context("reverting migrations")?;
        tracing::info!(schema = store.schema(), "migrations reverted");
    } else {
        store.migrate().await.context("applying migrations")?;
        tracing::info!(schema = store.schema(), "database is up to date");
    }
    Ok(())
}

async fn serve(store: Store, args: &ServeArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let bound = listener.local_addr()?;
    let config = args.api_config(bound);
    tracing::info!(listen = %bound, public_url = %config.public_url, "serving");
    let state = AppState::new(store, config, shutdown.clone());
    switchyard_api::serve(listener, state, shutdown, args.http_drain_timeout).await?;
    Ok(())
}

async fn work(store: Store, args: &WorkerArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let worker = Worker::new(store, args.worker_config(), Dispatcher::new())?;
    worker.run(shutdown).await?;
    Ok(())
}

async fn jobs(store: Store, command: JobsCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        JobsCommand::Dead { limit } => {
            let dead = store.jobs_dead(limit).await?;
            writeln!(
                out,
                "{:<10} {:<38} {:<10} {:>8}  {:<25} LAST ERROR",
                "JOB", "TASK", "KIND", "ATTEMPTS", "DIED AT"
            )?;
            for job in dead {
                let died = job
                    .finished_at
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{:<10} {:<38} {:<10} {:>8}  {:<25} {}",
                    job.id,
                    job.task_id,
                    job.kind,
                    format!("{}/{}", job.attempt, job.max_attempts),
                    died,
                    job.last_error.unwrap_or_default()
                )?;
            }
        }
        JobsCommand::Requeue { job_id } => {
            store.job_requeue(JobId(job_id)).await?;
            writeln!(out, "job {job_id} requeued")?;
        }
    }
    Ok(())
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
