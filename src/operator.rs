//! The operators' commands on what the stores hold: `agents`, `plans`,
//! `keys`, `webhooks`, `jobs` and `tasks cancel`.

use std::io::Write;

use anyhow::Context;
use switchyard_engine::plan::{PlanLimits, PlanSpec};
use switchyard_engine::{JobId, Store, Stores};

use crate::cli::{AgentsCommand, JobsCommand, KeysCommand, PlansCommand, SecurityArgs, WebhooksCommand};
use crate::config_file::FileConfig;

/// `agents`: a change goes to every store (each keeps its own registry,
/// read by its own workers), or to the one `--store` names; `list` reads
/// the first of them.
pub(crate) async fn agents(
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
pub(crate) async fn audit(store: &Store, action: &str, detail: serde_json::Value) {
    let operator = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    let entry = switchyard_engine::AuditEntry {
        credential: Some("cli".into()),
        ..switchyard_engine::AuditEntry::new(operator, action)
    };
    store.audit(&entry.with_detail(detail)).await;
}

/// `tasks cancel`: an operator's cancel of any open task, as its owner's
/// would be (children, remote task and webhooks follow), audited as theirs.
pub(crate) async fn cancel_task(
    store: Store,
    task_id: &str,
    reason: Option<String>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
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

pub(crate) async fn keys(store: Store, command: KeysCommand) -> anyhow::Result<()> {
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
pub(crate) async fn plans(stores: Stores, command: PlansCommand) -> anyhow::Result<()> {
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

pub(crate) async fn webhooks(store: Store, command: WebhooksCommand) -> anyhow::Result<()> {
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
pub(crate) async fn jobs_dead(stores: &Stores, limit: i64) -> anyhow::Result<()> {
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

pub(crate) async fn jobs(store: Store, command: JobsCommand) -> anyhow::Result<()> {
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
