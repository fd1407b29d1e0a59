//! The worker loop: claim, run, heartbeat, rescue, drain.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use backon::{ExponentialBuilder, Retryable};
use switchyard_engine::{
    ClaimedJob, JobFate, JobId, JobKind, Lease, Listener, Store, StoreError, TaskEvent, TaskState,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, WorkerConfig};
use crate::handler::{Handler, JobContext, Outcome};

/// Why a worker could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// A job this process is running, as the heartbeat and the drain see it.
#[derive(Debug)]
struct Slot {
    lease: Lease,
    /// Fires to abandon the attempt.
    cancel: CancellationToken,
    /// Set when the heartbeat found the lease gone: abandon, don't release.
    lost: Arc<AtomicBool>,
    /// Until when this process can prove it holds the lease.
    proven: Arc<LeaseClock>,
}

/// The local deadline of a lease: the instant the request that last granted
/// or extended it was *sent*, plus the lease, less a margin. The database
/// counted from a later instant, so when this deadline passes the lease may
/// already belong to someone else, and the attempt must stop: no further
/// remote calls, no writes (those are fenced too). A worker cut off from
/// PostgreSQL thus stops on its own, instead of calling the agent for
/// minutes while another worker takes the job over.
#[derive(Debug)]
struct LeaseClock(Mutex<Instant>);

impl LeaseClock {
    fn granted(sent: Instant, lease: std::time::Duration) -> Self {
        LeaseClock(Mutex::new(Self::deadline(sent, lease)))
    }

    fn deadline(sent: Instant, lease: std::time::Duration) -> Instant {
        // A tenth of the lease covers the two clocks' rates drifting apart.
        sent + lease - lease / 10
    }

    fn extend(&self, sent: Instant, lease: std::time::Duration) {
        let mut until = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *until = (*until).max(Self::deadline(sent, lease));
    }

    fn until(&self) -> Instant {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Resolves once the deadline has passed without an extension.
    async fn lapsed(&self) {
        loop {
            let until = self.until();
            tokio::time::sleep_until(until).await;
            if self.until() <= Instant::now() {
                return;
            }
        }
    }
}

type InFlight = Arc<Mutex<HashMap<JobId, Slot>>>;

fn lock(in_flight: &InFlight) -> std::sync::MutexGuard<'_, HashMap<JobId, Slot>> {
    // A panic while holding this lock cannot leave the map half-updated
    // (every critical section is one insert, remove or read).
    in_flight.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One worker process's job loop.
#[derive(Debug)]
pub struct Worker<H> {
    store: Store,
    config: WorkerConfig,
    handler: Arc<H>,
}

impl<H: Handler> Worker<H> {
    /// A worker over `store`, after checking `config`.
    pub fn new(store: Store, config: WorkerConfig, handler: H) -> Result<Self, WorkerError> {
        config.validate()?;
        Ok(Worker { store, config, handler: Arc::new(handler) })
    }

    /// Runs until `shutdown` fires, then stops claiming, lets in-flight jobs
    /// finish for up to `drain_timeout`, and releases the rest of the leases
    /// (without spending their attempts) so other workers take them at once.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), WorkerError> {
        let config = &self.config;
        let in_flight: InFlight = Arc::default();
        let slots = Arc::new(Semaphore::new(config.concurrency));
        let mut runners = JoinSet::new();
        let background = CancellationToken::new();
        let heartbeat =
            tokio::spawn(heartbeat_loop(self.store.clone(), in_flight.clone(), config.clone(), background.clone()));

        // Connects on first use, and again after any failure; polling
        // covers the gaps.
        let mut listener = Listener::new(&self.store, &[&self.store.channels().jobs]);
        let sweeper = Sweeper::new(config.retention);
        let mut poll = tokio::time::interval(config.poll_interval);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tracing::info!(worker = %config.id, concurrency = config.concurrency, "worker started");

        // Whether a claim may find something: after a wake-up, a poll, or a
        // full batch. A finished job alone frees a slot but brings no work,
        // so it claims only while there is a backlog (an empty claim is a
        // round trip for nothing on every task).
        let mut claim = true;
        let mut backlog = false;
        // The soonest a job this worker put off (a retry, a park) is due:
        // a timer wakes it then. Such jobs send no NOTIFY (nobody could take
        // them before they are due); if this worker dies first, the fallback
        // poll of the others finds them.
        let mut due: Option<Instant> = None;
        while !shutdown.is_cancelled() {
            let free = slots.available_permits();
            let mut more_waiting = false;
            if free > 0 && (claim || backlog) {
                claim = false;
                let want = free.min(config.batch);
                let asked = Instant::now();
                match self.store.job_claim_fair(&config.id, want as i64, config.lease, config.tenant_cap).await {
                    Ok(jobs) => {
                        // A full batch suggests more is ready: claim again
                        // before waiting, while slots remain.
                        more_waiting = jobs.len() == want;
                        backlog = more_waiting;
                        for job in jobs {
                            let Ok(permit) = slots.clone().try_acquire_owned() else {
                                // Cannot happen (we claimed at most `free`);
                                // give the job back rather than overrun.
                                let _ = self.store.job_release(&job.lease).await;
                                continue;
                            };
                            self.start(job, permit, asked, &in_flight, &mut runners);
                        }
                    }
                    Err(error) => {
                        // The database is unwell: wait a poll interval rather
                        // than retry on every finishing job.
                        tracing::warn!(%error, "claim failed; will retry");
                        claim = true;
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(config.poll_interval) => {}
                        }
                        continue;
                    }
                }
            }
            if more_waiting && slots.available_permits() > 0 {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = next_wake(&mut listener) => claim = true,
                _ = poll.tick() => {
                    self.rescue_expired().await;
                    sweeper.maybe_sweep(&self.store);
                    claim = true;
                }
                Some(finished) = runners.join_next(), if !runners.is_empty() => {
                if let Ok(Some(after)) = finished {
                    let at = Instant::now() + after;
                    due = Some(due.map_or(at, |d| d.min(at)));
                }
            }
                () = sleep_until(due) => {
                    due = None;
                    claim = true;
                }
            }
        }

        tracing::info!(in_flight = runners.len(), "draining");
        let drained =
            tokio::time::timeout(config.drain_timeout, async { while runners.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::info!(abandoning = lock(&in_flight).len(), "drain timeout reached; releasing leases");
            for slot in lock(&in_flight).values() {
                slot.cancel.cancel();
            }
            while runners.join_next().await.is_some() {}
        }
        background.cancel();
        let _ = heartbeat.await;
        tracing::info!("worker stopped");
        Ok(())
    }

    fn start(
        &self,
        job: ClaimedJob,
        permit: OwnedSemaphorePermit,
        claimed: Instant,
        in_flight: &InFlight,
        runners: &mut JoinSet<Option<std::time::Duration>>,
    ) {
        let waited = (chrono::Utc::now() - job.due_at).to_std().unwrap_or_default();
        metrics::histogram!("switchyard_claim_latency_seconds", "kind" => job.kind_name.clone())
            .record(waited.as_secs_f64());
        metrics::gauge!("switchyard_jobs_in_flight").increment(1.0);
        let cancel = CancellationToken::new();
        let lost = Arc::new(AtomicBool::new(false));
        let proven = Arc::new(LeaseClock::granted(claimed, self.config.lease));
        lock(in_flight).insert(
            job.lease.job_id,
            Slot { lease: job.lease.clone(), cancel: cancel.clone(), lost: lost.clone(), proven: proven.clone() },
        );
        let run = JobRun {
            store: self.store.clone(),
            handler: self.handler.clone(),
            config: self.config.clone(),
            cancel,
            lost,
            proven,
        };
        let in_flight = in_flight.clone();
        runners.spawn(async move {
            let job_id = job.lease.job_id;
            let due_again = run.run(job).await;
            metrics::gauge!("switchyard_jobs_in_flight").decrement(1.0);
            lock(&in_flight).remove(&job_id);
            drop(permit);
            due_again
        });
    }

    async fn rescue_expired(&self) {
        let on_dead = [TaskEvent::status_with_text(
            TaskState::Failed,
            "gave up: every attempt's worker stopped before finishing",
        )];
        match self.store.job_rescue_expired(500, &on_dead).await {
            Ok(r) if !r.requeued.is_empty() || !r.dead.is_empty() => {
                tracing::warn!(requeued = ?r.requeued, dead = ?r.dead, "rescued jobs whose leases expired");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "lease rescue failed; will retry"),
        }
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
pub(crate) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// How often a worker runs the sweeps, at most.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs the periodic sweeps in the background, at most once a minute and
/// never two at once in this process (several workers sweeping at once only
/// skip each other's rows): the webhook outbox's orphans given a delivery
/// job, then, when retention is set, what finished long ago deleted, and
/// the event log's windows made ahead (and, with retention, dropped).
#[derive(Debug)]
struct Sweeper {
    retention: Option<std::time::Duration>,
    last: Mutex<Option<Instant>>,
    running: Arc<AtomicBool>,
}

impl Sweeper {
    fn new(retention: Option<std::time::Duration>) -> Self {
        Sweeper { retention, last: Mutex::new(None), running: Arc::default() }
    }

    fn maybe_sweep(&self, store: &Store) {
        {
            let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|at| at.elapsed() < SWEEP_EVERY) || self.running.swap(true, Ordering::SeqCst) {
                return;
            }
            *last = Some(Instant::now());
        }
        let (store, running, retention) = (store.clone(), self.running.clone(), self.retention);
        tokio::spawn(async move {
            match store.push_adopt_orphans(500).await {
                Ok(0) => {}
                Ok(adopted) => {
                    tracing::warn!(adopted, "webhooks with pending deliveries had no delivery job; gave them one");
                }
                Err(error) => tracing::warn!(%error, "webhook outbox sweep failed; will retry"),
            }
            let rotated = match retention {
                Some(retention) => store.retention_sweep(retention, 500, 20).await.map(|swept| {
                    if swept.tasks > 0 || swept.jobs > 0 || swept.log_orphans > 0 {
                        metrics::counter!("switchyard_retention_deleted_total", "what" => "tasks")
                            .increment(swept.tasks);
                        metrics::counter!("switchyard_retention_deleted_total", "what" => "jobs").increment(swept.jobs);
                        metrics::counter!("switchyard_retention_deleted_total", "what" => "log_orphans")
                            .increment(swept.log_orphans);
                        tracing::info!(
                            tasks = swept.tasks,
                            jobs = swept.jobs,
                            log_orphans = swept.log_orphans,
                            "retention: deleted what finished long ago"
                        );
                    }
                    swept.log
                }),
                // Kept for good: the log's windows are still made ahead.
                None => store.log_rotate(None).await,
            };
            match rotated {
                Ok(log) => {
                    metrics::counter!("switchyard_log_windows_total", "what" => "created").increment(log.created);
                    metrics::counter!("switchyard_log_windows_total", "what" => "dropped").increment(log.dropped);
                    if log.created > 0 || log.dropped > 0 {
                        tracing::info!(
                            created = log.created,
                            dropped = log.dropped,
                            moved_events = log.moved,
                            "the event log's windows rotated"
                        );
                    }
                }
                Err(error) => tracing::warn!(%error, "retention sweep failed; will retry"),
            }
            running.store(false, Ordering::SeqCst);
        });
    }
}

/// Waits for a NOTIFY, or a reconnect (which may have missed some).
async fn next_wake(listener: &mut Listener) {
    listener.recv().await;
}

/// Everything one attempt needs.
struct JobRun<H> {
    store: Store,
    handler: Arc<H>,
    config: WorkerConfig,
    cancel: CancellationToken,
    lost: Arc<AtomicBool>,
    proven: Arc<LeaseClock>,
}

impl<H: Handler> JobRun<H> {
    /// Runs one attempt; returns how soon the job is due again, when this
    /// attempt put it off (a retry or a park), so the worker can wake for it.
    async fn run(self, job: ClaimedJob) -> Option<std::time::Duration> {
        // One span per attempt, from claim to settlement, continuing the
        // trace of the request that enqueued the job.
        let waited = (chrono::Utc::now() - job.due_at).num_milliseconds().max(0);
        let span = tracing::info_span!(
            "job",
            otel.name = %format!("{} job", job.kind_name),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "switchyard",
            messaging.operation.type = "process",
            switchyard.job.id = job.lease.job_id.0,
            switchyard.job.kind = %job.kind_name,
            switchyard.job.attempt = job.lease.attempt,
            switchyard.job.claim_latency_ms = waited,
            a2a.task.id = %job.lease.task_id,
            trace_id = tracing::field::Empty,
        );
        switchyard_engine::trace::continue_from(&span, job.payload.get("trace"));
        switchyard_engine::trace::record_trace_id(&span);
        tracing::Instrument::instrument(self.run_in_span(job), span).await
    }

    /// An attempt stopped from outside: the lease released for another
    /// worker (its attempt refunded), or, when it was lost, left alone.
    async fn give_back(&self, lease: &Lease, kind: &str) {
        let lost = self.lost.load(Ordering::SeqCst);
        let outcome = if lost { "lease_lost" } else { "released" };
        metrics::counter!("switchyard_job_outcomes_total", "kind" => kind.to_owned(), "outcome" => outcome)
            .increment(1);
        if lost {
            tracing::warn!(job = %lease.job_id, "lease lost; attempt abandoned");
            return;
        }
        match self.store.job_release(lease).await {
            Ok(()) => tracing::info!(job = %lease.job_id, "lease released for another worker"),
            Err(error) => tracing::warn!(job = %lease.job_id, %error, "could not release lease; it will expire"),
        }
    }

    async fn run_in_span(self, job: ClaimedJob) -> Option<std::time::Duration> {
        let lease = job.lease.clone();
        let kind = job.kind_name.clone();
        let job_kind = job.kind().map_err(|_| ());
        let ctx = JobContext::new(self.store.clone(), lease.clone(), self.cancel.clone());
        let handler = self.handler.clone();
        // Its own task, so a panicking handler costs one attempt, not the worker.
        let attempt = tokio::spawn(tracing::Instrument::in_current_span(async move { handler.handle(job, ctx).await }));
        let abort = attempt.abort_handle();
        let outcome = tokio::select! {
            joined = attempt => match joined {
                // A handler that gave up because it was told to stop (it
                // and this select hear the same token, on any thread) has
                // not failed: the attempt is given back, not spent.
                Ok(Outcome::Retry { .. }) if self.cancel.is_cancelled() => {
                    self.give_back(&lease, &kind).await;
                    return None;
                }
                Ok(outcome) => outcome,
                Err(e) => Outcome::Retry { error: format!("the job handler crashed: {e}"), retry_after: None },
            },
            () = self.proven.lapsed() => {
                // Not proven live any more: stop acting at once. The lease
                // may still be ours (the database was only slow), in which
                // case it expires and the job is rescued.
                abort.abort();
                metrics::counter!("switchyard_job_outcomes_total", "kind" => kind, "outcome" => "lease_unproven").increment(1);
                tracing::warn!(job = %lease.job_id, "lease not confirmed in time; attempt stopped");
                return None;
            }
            () = self.cancel.cancelled() => {
                abort.abort();
                self.give_back(&lease, &kind).await;
                return None;
            }
        };
        let label = match &outcome {
            Outcome::Done(_) | Outcome::Recorded => "done",
            Outcome::Retry { .. } if lease.attempt >= lease.max_attempts => "dead",
            Outcome::Retry { .. } => "retry",
            Outcome::Fail { .. } => "failed",
            Outcome::Snooze { .. } => "parked",
        };
        metrics::counter!("switchyard_job_outcomes_total", "kind" => kind, "outcome" => label).increment(1);
        let delegation = job_kind == Ok(JobKind::Delegate);
        let settle = || self.settle(&lease, delegation, outcome.clone());
        let settled = settle
            .retry(ExponentialBuilder::default().with_max_times(4).with_jitter())
            .when(StoreError::is_transient)
            .await;
        match settled {
            Ok(due_again) => due_again,
            Err(StoreError::LeaseLost(job)) => {
                tracing::warn!(%job, "lease lost before the outcome was recorded");
                None
            }
            // The lease will expire and another worker repeats the attempt.
            Err(error) => {
                tracing::error!(job = %lease.job_id, %error, "could not record the outcome");
                None
            }
        }
    }

    /// Records the outcome; returns how soon the job is due again, if it is.
    async fn settle(
        &self,
        lease: &Lease,
        delegation: bool,
        outcome: Outcome,
    ) -> Result<Option<std::time::Duration>, StoreError> {
        match outcome {
            Outcome::Recorded => Ok(None),
            Outcome::Done(events) if delegation => finish_delegation(&self.store, lease, &events).await.map(|()| None),
            Outcome::Done(events) => complete(&self.store, lease, &events).await.map(|()| None),
            Outcome::Snooze { after, reason } => {
                let parked = self.store.job_snooze(lease, after, &reason).await?;
                if parked.woken {
                    tracing::info!(job = %lease.job_id, %reason, "job woken while it looked; due now");
                    return Ok(Some(std::time::Duration::ZERO));
                }
                tracing::info!(job = %lease.job_id, %reason, at = %parked.until, "job parked");
                Ok(Some(after))
            }
            Outcome::Fail { reason } => {
                tracing::warn!(job = %lease.job_id, %reason, "job failed permanently");
                let events = [TaskEvent::status_with_text(TaskState::Failed, reason)];
                if delegation {
                    finish_delegation(&self.store, lease, &events).await?;
                } else {
                    complete(&self.store, lease, &events).await?;
                }
                Ok(None)
            }
            Outcome::Retry { error, retry_after } => {
                let attempt = u32::try_from(lease.attempt).unwrap_or(1);
                let delay = self.config.retry.delay_with_random_jitter(attempt, retry_after);
                let on_dead = [TaskEvent::status_with_text(
                    TaskState::Failed,
                    format!("gave up after {} attempts: {error}", lease.attempt),
                )];
                let fate = self.store.job_retry(lease, &error, delay, &on_dead).await?;
                tracing::warn!(job = %lease.job_id, attempt, %error, ?fate, "attempt failed");
                Ok(matches!(fate, JobFate::RetryAt(_)).then_some(delay))
            }
        }
    }
}

/// Completes a job with its closing events; if the task already ended
/// (canceled while we worked), the job completes without them.
async fn complete(store: &Store, lease: &Lease, events: &[TaskEvent]) -> Result<(), StoreError> {
    match store.job_complete(lease, events).await {
        Err(e) if e.terminal_state().is_some() => {
            tracing::info!(job = %lease.job_id, task = %lease.task_id, "task already ended; job closed without changes");
            store.job_complete(lease, &[]).await
        }
        other => other,
    }
}

/// Settles a delegate job; it stays live if a client message came in that
/// the remote agent has not been handed (see `Store::delegation_finish`).
async fn finish_delegation(store: &Store, lease: &Lease, events: &[TaskEvent]) -> Result<(), StoreError> {
    let fold = match store.delegation_finish(lease, events).await {
        Err(e) if e.terminal_state().is_some() => {
            tracing::info!(job = %lease.job_id, task = %lease.task_id, "task already ended; job closed without changes");
            store.delegation_finish(lease, &[]).await?
        }
        other => other?,
    };
    if fold.requeued {
        tracing::info!(job = %lease.job_id, task = %lease.task_id, "a follow-up is waiting; the delegation goes on");
    }
    // Ended by this write (a failure decided here, not by the agent's fold).
    if !fold.ended && !events.is_empty() && fold.task.state.is_terminal() {
        let took = (fold.task.status_at - fold.task.created_at).to_std().unwrap_or_default();
        metrics::histogram!("switchyard_task_duration_seconds", "state" => fold.task.state.as_str())
            .record(took.as_secs_f64());
    }
    Ok(())
}

async fn heartbeat_loop(store: Store, in_flight: InFlight, config: WorkerConfig, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(config.heartbeat) => {}
        }
        let leases: Vec<Lease> = lock(&in_flight).values().map(|s| s.lease.clone()).collect();
        if leases.is_empty() {
            continue;
        }
        let refs: Vec<&Lease> = leases.iter().collect();
        let sent = Instant::now();
        match store.job_heartbeat(&refs, config.lease).await {
            Ok(held) => {
                let map = lock(&in_flight);
                for id in &held {
                    if let Some(slot) = map.get(id) {
                        slot.proven.extend(sent, config.lease);
                    }
                }
                for lease in leases.iter().filter(|l| !held.contains(&l.job_id)) {
                    // Gone from the map means it finished meanwhile: not lost.
                    if let Some(slot) = map.get(&lease.job_id) {
                        slot.lost.store(true, Ordering::SeqCst);
                        slot.cancel.cancel();
                    }
                }
            }
            // The lease has room for another beat; past its local deadline
            // the attempt stops on its own (`LeaseClock`).
            Err(error) => tracing::warn!(%error, "heartbeat failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_lease_lapses_at_its_local_deadline_unless_a_heartbeat_extended_it() {
        let lease = Duration::from_secs(10);
        let clock = Arc::new(LeaseClock::granted(Instant::now(), lease));
        // Granted at 0: proven until 9 s (a tenth kept as margin).
        assert!(tokio::time::timeout(Duration::from_millis(8_900), clock.lapsed()).await.is_err());
        // A heartbeat sent at 8.9 s answers: proven until 17.9 s.
        clock.extend(Instant::now(), lease);
        let watcher = tokio::spawn({
            let clock = clock.clone();
            async move { clock.lapsed().await }
        });
        tokio::time::sleep(Duration::from_millis(8_900)).await;
        assert!(!watcher.is_finished(), "extended: still proven at 17.8 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(watcher.is_finished(), "lapsed at 17.9 s with no further heartbeat");
        // An answer to an older heartbeat never shortens the deadline.
        let before = clock.until();
        clock.extend(Instant::now() - Duration::from_secs(30), lease);
        assert_eq!(clock.until(), before);
    }
}
