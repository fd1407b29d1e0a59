//! `switchyard tasks show|list`: what happened to a task, for the operator
//! paged at night. Readable tables by default, JSON with `--json`.

use std::io::Write;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use switchyard_engine::{ChildPlace, Store, StoredEvent, Stores, TaskEvent, TaskId, TaskRecord, TaskState};

/// Prints one task: summary, delegation, event timeline, jobs, children.
pub(crate) async fn show(
    store: &Store,
    id: &str,
    as_json: bool,
    trace_url: Option<&str>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let id: TaskId = id.parse().with_context(|| format!("{id:?} is not a task id"))?;
    let task = store.task_load(id).await?;
    let events = store.task_events(id, 0, 10_000).await?;
    let jobs = store.task_jobs(id).await?;
    let delegation = store.delegation_get(id).await?;
    let tree = descendants(store, id).await?;
    let audit = store.audit_for_task(id).await?;
    let trace_id = task.trace_id();
    let trace_link = trace_id.as_deref().zip(trace_url).map(|(id, template)| template.replace("{trace_id}", id));

    if as_json {
        let document = json!({
            "task": task.to_a2a(None),
            "tenant": task.tenant,
            "owner": task.owner,
            "parentId": task.parent_id.map(|p| p.to_string()),
            "traceId": trace_id,
            "traceUrl": trace_link,
            "delegation": delegation.map(|d| json!({
                "agent": d.agent, "remoteTaskId": d.remote_task_id, "remoteContextId": d.remote_context_id,
            })),
            "events": events.iter().map(|e| json!({
                "seq": e.seq, "at": e.created_at, "kind": e.event.kind().as_str(), "summary": summary(&e.event),
            })).collect::<Vec<_>>(),
            "jobs": jobs.iter().map(|j| json!({
                "id": j.id.0, "kind": j.kind, "state": j.state.as_str(), "attempt": j.attempt,
                "maxAttempts": j.max_attempts, "runAt": j.run_at, "leaseOwner": j.lease_owner,
                "lastError": j.last_error, "createdAt": j.created_at, "finishedAt": j.finished_at,
            })).collect::<Vec<_>>(),
            "children": children_json(&tree, 1, 0, tree.len()),
            "audit": audit.iter().map(|a| json!({
                "at": a.at, "action": a.action, "tenant": a.tenant, "principal": a.principal,
                "credential": a.credential, "detail": a.detail,
            })).collect::<Vec<_>>(),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&document)?)?;
        return Ok(());
    }

    let took = task.status_at - task.created_at;
    writeln!(out, "Task     {}  {}", task.id, task.state.as_str().to_uppercase())?;
    writeln!(out, "Caller   tenant {} / {}", task.tenant, task.owner)?;
    writeln!(out, "Context  {}", task.context_id)?;
    if let Some(parent) = task.parent_id {
        writeln!(out, "Parent   {parent}")?;
    }
    writeln!(out, "Created  {}   last change {} later", stamp(task.created_at), human(took))?;
    match (&trace_id, &trace_link) {
        (Some(_), Some(link)) => writeln!(out, "Trace    {}  {link}", trace_id.as_deref().unwrap_or_default())?,
        _ => writeln!(out, "Trace    {}", trace_id.as_deref().unwrap_or("-"))?,
    }
    match &delegation {
        Some(d) => writeln!(
            out,
            "Agent    {}   remote task {}",
            d.agent,
            d.remote_task_id.as_deref().unwrap_or("(not known yet)")
        )?,
        None => writeln!(out, "Agent    -")?,
    }
    if let Some(text) = task.status.message.as_ref().and_then(|m| m.text()) {
        writeln!(out, "Status   {text}")?;
    }

    writeln!(out, "\nTIMELINE")?;
    writeln!(out, "  {:>4}  {:<23}  {:>9}  {:<8}  WHAT", "SEQ", "AT", "+DELTA", "KIND")?;
    let mut previous: Option<DateTime<Utc>> = None;
    for StoredEvent { seq, event, created_at, .. } in &events {
        let delta = previous.map(|p| format!("+{}", human(*created_at - p))).unwrap_or_default();
        previous = Some(*created_at);
        writeln!(
            out,
            "  {seq:>4}  {:<23}  {delta:>9}  {:<8}  {}",
            stamp(*created_at),
            event.kind().as_str(),
            summary(event)
        )?;
    }

    writeln!(out, "\nJOBS")?;
    writeln!(out, "  {:>6}  {:<13}  {:<6}  {:>8}  {:<23}  LAST ERROR", "ID", "KIND", "STATE", "ATTEMPTS", "RUN AT")?;
    for job in &jobs {
        writeln!(
            out,
            "  {:>6}  {:<13}  {:<6}  {:>8}  {:<23}  {}",
            job.id.0,
            job.kind,
            job.state.as_str(),
            format!("{}/{}", job.attempt, job.max_attempts),
            stamp(job.run_at),
            job.last_error.as_deref().unwrap_or("")
        )?;
    }
    writeln!(out, "\nAUDIT")?;
    writeln!(out, "  {:<23}  {:<18}  {:<24}  {:<20}  DETAIL", "AT", "ACTION", "WHO", "CREDENTIAL")?;
    writeln!(
        out,
        "  {:<23}  {:<18}  {:<24}  {:<20}",
        stamp(task.created_at),
        "task.create",
        format!("{}/{}", task.tenant, task.owner),
        "-"
    )?;
    for entry in &audit {
        writeln!(
            out,
            "  {:<23}  {:<18}  {:<24}  {:<20}  {}",
            entry.at.map(stamp).unwrap_or_default(),
            entry.action,
            format!("{}/{}", entry.tenant.as_deref().unwrap_or("-"), entry.principal),
            entry.credential.as_deref().unwrap_or("-"),
            entry.detail.as_ref().map(ToString::to_string).unwrap_or_default()
        )?;
    }
    if !tree.is_empty() {
        writeln!(out, "\nCHILDREN")?;
        for (i, (depth, child)) in tree.iter().enumerate() {
            // The last of its siblings: no later entry at the same depth
            // before the tree climbs back above it.
            let last = tree[i + 1..].iter().take_while(|(d, _)| d >= depth).all(|(d, _)| d > depth);
            let place = ChildPlace::of(child);
            writeln!(
                out,
                "  {}{} #{} {:<14} {}  {:<14} {}",
                "   ".repeat(depth - 1),
                if last { "└─" } else { "├─" },
                place.as_ref().map_or(0, |p| p.position),
                place.as_ref().map_or("?", |p| p.label.as_str()),
                child.id,
                child.state.as_str().to_uppercase(),
                child.status.message.as_ref().and_then(|m| m.text()).unwrap_or("")
            )?;
        }
    }
    Ok(())
}

/// A task's descendants, depth first in plan order, each with its depth (1 for children).
async fn descendants(store: &Store, root: TaskId) -> anyhow::Result<Vec<(usize, TaskRecord)>> {
    let mut out = Vec::new();
    let mut stack: Vec<(usize, TaskRecord)> =
        store.task_children(root).await?.into_iter().rev().map(|c| (1, c)).collect();
    while let Some((depth, task)) = stack.pop() {
        let below = store.task_children(task.id).await?;
        out.push((depth, task));
        stack.extend(below.into_iter().rev().map(|c| (depth + 1, c)));
    }
    Ok(out)
}

/// The entries of `tree[from..to]` at `depth`, nested with theirs.
fn children_json(tree: &[(usize, TaskRecord)], depth: usize, from: usize, to: usize) -> Value {
    let starts: Vec<usize> = (from..to).filter(|&i| tree[i].0 == depth).collect();
    let items = starts.iter().enumerate().map(|(k, &i)| {
        let end = starts.get(k + 1).copied().unwrap_or(to);
        let task = &tree[i].1;
        let place = ChildPlace::of(task);
        json!({
            "id": task.id.to_string(),
            "state": task.state.as_str(),
            "position": place.as_ref().map(|p| p.position),
            "agent": place.as_ref().map(|p| p.label.clone()),
            "status": task.status.message.as_ref().and_then(|m| m.text()),
            "children": children_json(tree, depth + 1, i + 1, end),
        })
    });
    Value::Array(items.collect())
}

/// The store holding task `id`, of those given, with its name: a task id
/// is unique across stores (a UUIDv7), so the first that has it is the one.
/// A store that does not answer is said on stderr and passed over, unless
/// none answered.
pub(crate) async fn find(stores: &Stores, id: TaskId) -> anyhow::Result<(String, Store)> {
    let mut failures = Vec::new();
    for (name, store) in stores.all() {
        match store.task_load(id).await {
            Ok(_) => return Ok((name.to_owned(), store.clone())),
            Err(switchyard_engine::StoreError::TaskNotFound(_)) => {}
            Err(error) => failures.push(format!("store {name:?}: {error}")),
        }
    }
    if failures.len() == stores.len() {
        anyhow::bail!("no store answered: {}", failures.join("; "));
    }
    for failure in &failures {
        eprintln!("warning: {failure} (not searched)");
    }
    anyhow::bail!("task {id} not found")
}

/// Prints recent tasks across callers, from every store, newest change first.
pub(crate) async fn list(
    stores: &Stores,
    tenant: Option<&str>,
    state: Option<&str>,
    limit: i64,
    as_json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let state = state.map(|s| s.to_lowercase().parse::<TaskState>()).transpose().context("--state")?;
    let mut tasks = Vec::new();
    let mut answered = 0;
    for (name, store) in stores.all() {
        // A tenant lives on one store: only that one is asked.
        if tenant.is_some_and(|t| stores.name_at(stores.index_of(t)) != name) {
            continue;
        }
        match store.tasks_recent(tenant, state, limit).await {
            Ok(found) => {
                answered += 1;
                tasks.extend(found.into_iter().map(|t| (name, t)));
            }
            Err(error) if stores.sharded() => eprintln!("warning: store {name:?} did not answer: {error}"),
            Err(error) => return Err(error.into()),
        }
    }
    anyhow::ensure!(answered > 0, "no store answered");
    tasks.sort_by_key(|(_, t)| std::cmp::Reverse((t.status_at, t.id)));
    tasks.truncate(usize::try_from(limit).unwrap_or(0));
    if as_json {
        let rows: Vec<Value> = tasks
            .iter()
            .map(|(store, t)| {
                json!({"id": t.id.to_string(), "state": t.state.as_str(), "tenant": t.tenant, "store": store,
                            "contextId": t.context_id, "createdAt": t.created_at, "statusAt": t.status_at})
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    // The store column only where there is more than one store.
    let column = |store: &str| if stores.sharded() { format!("{store:<10}  ") } else { String::new() };
    writeln!(
        out,
        "{:<36}  {:<14}  {:<12}  {}{:<23}  {:>9}",
        "TASK",
        "STATE",
        "TENANT",
        column("STORE"),
        "LAST CHANGE",
        "AGE"
    )?;
    for (store, t) in &tasks {
        writeln!(
            out,
            "{:<36}  {:<14}  {:<12}  {}{:<23}  {:>9}",
            t.id,
            t.state.as_str(),
            t.tenant,
            column(store),
            stamp(t.status_at),
            human(Utc::now() - t.created_at)
        )?;
    }
    Ok(())
}

/// The W3C trace id the task was created under, if any.
fn summary(event: &TaskEvent) -> String {
    let clip = |s: &str| {
        let s = s.replace('\n', " ");
        if s.chars().count() > 60 { format!("{}…", s.chars().take(60).collect::<String>()) } else { s }
    };
    match event {
        TaskEvent::Status(s) => {
            let state = TaskState::from_a2a(&s.state).map(|s| s.as_str().to_uppercase()).unwrap_or_default();
            match s.message.as_ref().and_then(|m| m.text()) {
                Some(text) => format!("{state}: {}", clip(text)),
                None => state,
            }
        }
        TaskEvent::Message(m) => format!("{:?}: {}", m.role, clip(m.text().unwrap_or("(non-text parts)"))),
        TaskEvent::Artifact(a) => format!(
            "{} {}{}",
            a.artifact.artifact_id,
            if a.append { "(+chunk)" } else { "" },
            if a.last_chunk { " last" } else { "" }
        ),
    }
}

fn stamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

fn human(d: chrono::Duration) -> String {
    let ms = d.num_milliseconds().max(0);
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1000),
        _ => format!("{}h{}m", ms / 3_600_000, (ms % 3_600_000) / 60_000),
    }
}
