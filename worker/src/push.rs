//! Webhook delivery: a `push` job drains one webhook's outbox, in log order.
//!
//! Each delivery is a POST of the event as an A2A `StreamResponse` (v1) —
//! or, for a webhook registered through v0.3, of the whole task as it stood
//! at that event (a v0.3 `Task`, `kind: task`, which is what v0.3 receivers
//! and the v0.3 SDK expect) — with the
//! webhook's `Authorization` and token headers and the task's trace
//! context. Any 2xx delivers it. A failure is retried after a durable,
//! growing delay (a `Retry-After` honoured) while the job waits without
//! holding a lease, and later deliveries to the same webhook wait behind it;
//! past the last attempt it is dead-lettered and the next one goes.
//!
//! Before connecting, the webhook's host is resolved and every address it
//! resolves to checked by the SSRF guard; the request then goes to the
//! address that was checked (no second lookup to rebind), and redirects are
//! not followed. Credentials and tokens are never logged or put in spans.

use std::time::Duration;

use switchyard_engine::egress::Egress;
use switchyard_engine::{
    Caller, ClaimedJob, DeliveryFate, Outbox, PendingDelivery, RetryPolicy, Store, StoreError, TaskId, TaskRecord, wire,
};

use crate::handler::{JobContext, Outcome};

/// How webhooks are delivered.
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// How long one POST may take.
    pub timeout: Duration,
    /// Tries a delivery gets before it is dead-lettered.
    pub max_attempts: i32,
    /// Delays between tries.
    pub retry: RetryPolicy,
    /// Where webhooks may point.
    pub egress: Egress,
}

impl Default for PushSettings {
    fn default() -> Self {
        PushSettings {
            timeout: Duration::from_secs(10),
            max_attempts: 10,
            retry: RetryPolicy::default(),
            egress: Egress::default(),
        }
    }
}

/// Deliveries taken from an outbox per read.
const BATCH: i64 = 32;

/// How long a job that met a database error waits before looking again
/// (it has one attempt: failures are counted per delivery, not per job).
pub(crate) const STORE_BACKOFF: Duration = Duration::from_secs(1);

/// Why one POST did not deliver.
#[derive(Debug)]
struct Failed {
    message: String,
    retry_after: Option<Duration>,
    /// The guard refused the destination: trying again changes nothing
    /// until the operator does.
    refused: bool,
}

/// Delivers webhooks.
#[derive(Debug, Clone)]
pub struct Pusher {
    settings: PushSettings,
    /// HTTP clients by the addresses they are pinned to, so connections
    /// (and TLS sessions) are reused across deliveries.
    clients: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, reqwest::Client>>>,
}

/// Pinned clients kept at most; past it the cache starts afresh.
const MAX_CLIENTS: usize = 256;

impl Pusher {
    pub fn new(settings: PushSettings) -> Self {
        Pusher { settings, clients: std::sync::Arc::default() }
    }

    /// One run of a `push` job: deliver what is due, in order; wait (without
    /// the lease) when the oldest pending delivery is not due yet.
    pub async fn deliver(&self, job: &ClaimedJob, ctx: &JobContext) -> Outcome {
        let Some(config_id) = job.payload.get("config").and_then(|c| c.as_str()) else {
            return Outcome::Done(Vec::new());
        };
        let store = ctx.store();
        let task = job.lease.task_id;
        let mut as_of: Option<TaskAsOf> = None;
        loop {
            let outbox = match store.push_outbox(task, config_id, BATCH).await {
                Ok(Some(outbox)) => outbox,
                // The webhook was deleted, and its deliveries with it.
                Ok(None) => return self.settle(job, ctx, config_id).await,
                Err(e) => return wait_for_store(&e),
            };
            let Some(oldest) = outbox.pending.first() else {
                return self.settle(job, ctx, config_id).await;
            };
            if oldest.next_at > outbox.now {
                let after = (oldest.next_at - outbox.now).to_std().unwrap_or_default();
                return Outcome::Snooze { after, reason: format!("webhook {config_id}: retry not due yet") };
            }
            let client = match self.client(&outbox).await {
                Ok(client) => client,
                Err(failed) => {
                    // Nothing can reach this webhook now: its oldest delivery
                    // takes the failure (and, refused, is dead at once).
                    match self.failed(ctx, oldest, failed).await {
                        Ok(()) => continue,
                        Err(outcome) => return outcome,
                    }
                }
            };
            // Successes are recorded together, before anything else is
            // decided (a crash in between only sends them again).
            let mut delivered = Vec::new();
            let mut stop = None;
            // A v0.3 webhook hears the task as it stood at each event; the
            // fold goes on from batch to batch.
            if outbox.config.version == "0.3" && as_of.is_none() {
                as_of = Some(TaskAsOf::new(task));
            }
            for delivery in &outbox.pending {
                if delivery.next_at > outbox.now {
                    let after = (delivery.next_at - outbox.now).to_std().unwrap_or_default();
                    stop = Some(Outcome::Snooze { after, reason: format!("webhook {config_id}: retry not due yet") });
                    break;
                }
                let body = match as_of.as_mut() {
                    Some(fold) => match fold.at(store, delivery.event.seq).await {
                        Ok(task) => Some(serde_json::to_value(switchyard_engine::v03::task_to_v03(&task))),
                        Err(e) => return wait_for_store(&e),
                    },
                    None => wire::to_stream_response(&delivery.event, &outbox.context_id)
                        .map(|response| serde_json::to_value(&response)),
                };
                // Nothing a webhook announces (a message; not written to the
                // outbox, kept safe).
                let Some(Ok(body)) = body else {
                    delivered.push(delivery.id);
                    continue;
                };
                let started = std::time::Instant::now();
                match self.post(&client, &outbox, delivery, &body).await {
                    Ok(()) => {
                        delivered.push(delivery.id);
                        metrics::counter!("switchyard_push_deliveries_total", "outcome" => "delivered").increment(1);
                        let waited = (chrono::Utc::now() - delivery.event.created_at).to_std().unwrap_or_default();
                        metrics::histogram!("switchyard_push_delivery_latency_seconds").record(waited.as_secs_f64());
                        metrics::histogram!("switchyard_push_post_seconds").record(started.elapsed().as_secs_f64());
                    }
                    Err(failed) => {
                        if let Err(e) = store.push_delivered(&delivered).await {
                            return wait_for_store(&e);
                        }
                        delivered.clear();
                        match self.failed(ctx, delivery, failed).await {
                            // Dead-lettered: the next one goes.
                            Ok(()) => {}
                            Err(outcome) => {
                                stop = Some(outcome);
                                break;
                            }
                        }
                    }
                }
            }
            if let Err(e) = store.push_delivered(&delivered).await {
                return wait_for_store(&e);
            }
            if let Some(outcome) = stop {
                return outcome;
            }
        }
    }

    /// Records a failed delivery. `Ok` when it was dead-lettered (the next
    /// may go); otherwise the outcome that makes the job wait for its retry.
    async fn failed(&self, ctx: &JobContext, delivery: &PendingDelivery, failed: Failed) -> Result<(), Outcome> {
        let attempt = u32::try_from(delivery.attempts + 1).unwrap_or(u32::MAX);
        let delay = self.settings.retry.delay_with_random_jitter(attempt, failed.retry_after);
        // A refused destination is not retried: the guard would refuse it again.
        let max = if failed.refused { delivery.attempts + 1 } else { self.settings.max_attempts };
        tracing::warn!(delivery = delivery.id, attempt, error = %failed.message, "webhook delivery failed");
        match ctx.store().push_failed(delivery.id, &failed.message, delay, max).await {
            Ok(DeliveryFate::Dead) => {
                metrics::counter!("switchyard_push_deliveries_total", "outcome" => "dead").increment(1);
                tracing::warn!(delivery = delivery.id, "webhook delivery dead-lettered");
                Ok(())
            }
            Ok(DeliveryFate::RetryAt(_)) => {
                metrics::counter!("switchyard_push_deliveries_total", "outcome" => "retry").increment(1);
                Err(Outcome::Snooze { after: delay, reason: format!("webhook retry: {}", failed.message) })
            }
            Err(e) => Err(wait_for_store(&e)),
        }
    }

    async fn settle(&self, job: &ClaimedJob, ctx: &JobContext, config_id: &str) -> Outcome {
        match ctx.store().push_settle(&job.lease, config_id).await {
            Ok(_) => Outcome::Recorded,
            Err(StoreError::LeaseLost(_)) => Outcome::Recorded,
            Err(e) => wait_for_store(&e),
        }
    }

    /// An HTTP client bound to the webhook's checked addresses.
    async fn client(&self, outbox: &Outbox) -> Result<reqwest::Client, Failed> {
        let refused = |message: String| Failed { message, retry_after: None, refused: true };
        let egress = &self.settings.egress;
        let target = egress.check_url(&outbox.config.url).map_err(|r| refused(r.0))?;
        let pinned = match target.ip {
            // An address: checked above, and the one the client connects to.
            Some(_) => None,
            None => match crate::egress::resolve_checked(egress, &target.host, target.port).await {
                Ok(addrs) => Some(addrs),
                Err(e) => {
                    if let Some(refusal) = crate::egress::refusal(&*e) {
                        return Err(refused(refusal.0.clone()));
                    }
                    return Err(Failed {
                        message: format!("resolving {}: {e}", target.host),
                        retry_after: None,
                        refused: false,
                    });
                }
            },
        };
        // One client per set of checked addresses, reused: its connections
        // (and TLS sessions) serve the next deliveries too.
        let key = format!("{}|{:?}", target.host, pinned);
        let mut clients = self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.settings.timeout)
            .connect_timeout(self.settings.timeout)
            .tcp_nodelay(true)
            .no_proxy();
        let builder = match &pinned {
            Some(addrs) => builder.resolve_to_addrs(&target.host, addrs),
            None => builder,
        };
        let client = builder.build().map_err(|e| Failed {
            message: format!("http client: {e}"),
            retry_after: None,
            refused: false,
        })?;
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }

    async fn post(
        &self,
        client: &reqwest::Client,
        outbox: &Outbox,
        delivery: &PendingDelivery,
        body: &serde_json::Value,
    ) -> Result<(), Failed> {
        let config = &outbox.config;
        let mut request = client
            .post(&config.url)
            .header(reqwest::header::CONTENT_TYPE, "application/a2a+json")
            .body(body.to_string());
        if let Some(auth) = &config.authentication {
            let scheme = auth.get("scheme").and_then(|s| s.as_str()).unwrap_or("Bearer");
            let value = match auth.get("credentials").and_then(|c| c.as_str()) {
                Some(credentials) => format!("{scheme} {credentials}"),
                None => scheme.to_owned(),
            };
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        if let Some(token) = &config.token {
            // The v0.3 spec's and the Python SDK's name, and the Rust SDK's.
            request = request.header("X-A2A-Notification-Token", token).header("A2A-Notification-Token", token);
        }
        // The event's place in the task's log: (taskId, seq) names it exactly,
        // so a receiver can drop a resend.
        request = request.header("Switchyard-Event-Seq", delivery.event.seq.to_string());
        for (name, value) in switchyard_engine::trace::outbound(outbox.trace_context.as_ref()) {
            request = request.header(name, value);
        }
        // The host names the receiver; the rest of the URL may carry a token.
        let host = switchyard_engine::egress::Target::parse(&config.url).map(|t| t.host).unwrap_or_default();
        let response = request.send().await.map_err(|e| Failed {
            message: format!("POST to {host}: {}", crate::egress::reason(&e)),
            retry_after: None,
            refused: false,
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Err(Failed { message: format!("POST to {host}: HTTP {status}"), retry_after, refused: false })
    }
}

/// A task folded from its log up to a given event, forward only: what a
/// v0.3 webhook is sent for each of its deliveries, in order.
struct TaskAsOf {
    task: TaskId,
    /// The task so far, and the last event folded into it.
    folded: Option<(TaskRecord, i64)>,
}

impl TaskAsOf {
    fn new(task: TaskId) -> Self {
        TaskAsOf { task, folded: None }
    }

    /// The task as it stood right after event `seq`, in the v1 model.
    async fn at(&mut self, store: &Store, seq: i64) -> Result<a2a::Task, StoreError> {
        // Forward only: a delivery before the fold's place starts it again.
        let (mut task, mut last) = match self.folded.take().filter(|(_, last)| *last <= seq) {
            Some(folded) => folded,
            None => {
                let now = store.task_load(self.task).await?;
                let caller = Caller::new(now.tenant.clone(), now.owner.clone());
                let mut start = TaskRecord::genesis(now.id, &caller, now.context_id.clone(), now.created_at);
                start.metadata = now.metadata.clone();
                (start, 0)
            }
        };
        while last < seq {
            let events = store.task_events(self.task, last, seq - last).await?;
            let Some(end) = events.last().map(|e| e.seq) else { break };
            for stored in &events {
                task.apply(&stored.event).map_err(|source| StoreError::Rejected { task: self.task, source })?;
            }
            last = end;
        }
        let wire = task.to_a2a(None);
        self.folded = Some((task, last));
        Ok(wire)
    }
}

fn wait_for_store(e: &StoreError) -> Outcome {
    Outcome::Snooze { after: STORE_BACKOFF, reason: format!("store: {e}") }
}
