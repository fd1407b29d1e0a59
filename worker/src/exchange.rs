//! One attempt's exchange with a remote agent: forwarding the task's client
//! messages in log order, following what the agent says, folding it into
//! the task in memory and writing it in batches, and deciding on resume
//! whether a message sent before a crash arrived.

use std::time::Duration;

use a2a::{
    Message, Role, SendMessageConfiguration, SendMessageRequest, SendMessageResponse, StreamResponse, Task,
    TaskState as WireState, error_code,
};
use switchyard_engine::{ArtifactUpdate, Delegation, StoreError, TaskEvent, TaskRecord, TaskState};
use tokio::time::Instant;
use tokio_stream::StreamExt;

use crate::handler::JobContext;
use crate::remote::{Events, RemoteAgent, RemoteError};
use crate::runtime::sleep_until;

/// How long a parked delegation waits before looking at its remote task
/// again: a tenth of how long the task has been running, between 5 seconds
/// and 5 minutes. A pure function of stored times, so a restarted worker
/// picks up the same schedule.
pub(crate) fn park_delay(working_for: Duration) -> Duration {
    (working_for / 10).clamp(Duration::from_secs(5), Duration::from_secs(300))
}

/// What can interrupt a run: the remote side, our own store, or the task
/// ending here (canceled, or past its deadline) while we worked.
pub(crate) enum RunError {
    Remote(RemoteError),
    Store(StoreError),
    Ended,
}

impl From<RemoteError> for RunError {
    fn from(e: RemoteError) -> Self {
        RunError::Remote(e)
    }
}

impl From<StoreError> for RunError {
    fn from(e: StoreError) -> Self {
        if e.terminal_state().is_some() { RunError::Ended } else { RunError::Store(e) }
    }
}

/// How an exchange with the remote task ended.
pub(crate) enum Settled {
    /// The remote task reached a terminal or interrupted state.
    Yes,
    /// The exchange ended without settling (a stream closed early).
    No,
    /// Silent for longer than the timeout before the remote task was named.
    Quiet,
    /// Still running when this attempt's attach budget ran out.
    Later,
}

/// One attempt's state: our task, its delegation checkpoint, the agent.
///
/// Remote events are folded into `task` in memory as they arrive and
/// written in batches: whatever arrived together, bounded by
/// [`FOLD_MAX_EVENTS`] and [`FOLD_WINDOW`]; the last batch of an exchange that
/// settles goes in the same transaction as the job's settlement.
pub(crate) struct Run<'a> {
    pub(crate) ctx: &'a JobContext,
    /// Our task as folded so far (written, and `unwritten` on top).
    pub(crate) task: TaskRecord,
    pub(crate) delegation: Delegation,
    /// The next client message to forward, if the start read found one.
    pub(crate) next: Option<(i64, Message)>,
    /// Events folded into `task` but not yet written.
    pub(crate) unwritten: Vec<TaskEvent>,
    /// The checkpoint changed and is not yet written.
    pub(crate) dirty: bool,
    /// When the oldest unwritten change was made.
    pub(crate) since: Option<Instant>,
    pub(crate) client: &'a RemoteAgent,
    /// The agent streams (its card says so).
    pub(crate) streaming: bool,
    /// The client follows this task as a stream, so the agent is streamed
    /// from whenever it can be; otherwise a first message goes by the
    /// cheapest call, a blocking send (see [`Run::send`]).
    pub(crate) wants_stream: bool,
    /// How long a stream may stay silent before we look at the task instead.
    pub(crate) silence: Duration,
    /// When this attempt stops following and parks.
    pub(crate) deadline: Instant,
    /// The remote task has been running for longer than one attach budget:
    /// look at it once and park, rather than hold a worker while it works.
    pub(crate) look_once: bool,
    /// The stored checkpoint names the remote task: a cancel here queues a
    /// `cancel_remote` job for it, so this run need not cancel it too.
    pub(crate) remote_stored: bool,
}

/// The most events folded in memory before they are written.
const FOLD_MAX_EVENTS: usize = 256;

/// How long a folded event may wait for others to be written with it.
const FOLD_WINDOW: Duration = Duration::from_millis(5);

/// How long polling waits at most between two looks at a remote task.
const POLL_CAP: Duration = Duration::from_secs(5);

/// How many of the remote task's last messages to ask for when checking
/// whether a message we sent has arrived.
const RESUME_HISTORY: i32 = 20;

/// Whether the message `message_id`, sent in answer to the remote question
/// `question` (a status message id), has reached the remote task. The
/// task's history saying so is proof; a task that has moved past its
/// question (working, finished, or asking another one) took the answer; a
/// task still waiting on the same question did not.
fn arrived(remote: &Task, message_id: &str, question: Option<&str>) -> bool {
    if remote.history.iter().flatten().any(|m| m.message_id == message_id) {
        return true;
    }
    let waiting = matches!(remote.status.state, WireState::InputRequired | WireState::AuthRequired);
    !waiting || remote.status.message.as_ref().map(|m| m.message_id.as_str()) != question
}

impl Run<'_> {
    /// Forwards the task's client messages in order, one exchange at a
    /// time, until the remote task settles with nothing left to forward.
    pub(crate) async fn drive(&mut self) -> Result<Settled, RunError> {
        loop {
            if self.task.state.is_terminal() {
                return Ok(Settled::Yes);
            }
            let next = self.delegation.forwarded_seq.unwrap_or(0);
            let settled = if let Some(seq) = self.delegation.unconfirmed() {
                self.resume(seq).await?
            } else if let Some(remote) =
                self.delegation.remote_task_id.clone().filter(|_| !self.task.state.is_interrupted())
            {
                // Everything sent has arrived and the remote task is at work:
                // follow it (a message queued meanwhile waits for its question).
                self.attach(&remote).await?
            } else if let Some((seq, message)) = match self.next.take() {
                Some(next) => Some(next),
                None => self.ctx.store().task_message_after(self.task.id, next).await?,
            } {
                self.send(seq, message).await?
            } else {
                return Ok(Settled::Yes);
            };
            if !matches!(settled, Settled::Yes) {
                return Ok(settled);
            }
        }
    }

    /// A message was sent, and the agent's answer to that send never
    /// reached the checkpoint: find out whether the message arrived before
    /// sending it again, so a strict agent never sees it twice.
    async fn resume(&mut self, seq: i64) -> Result<Settled, RunError> {
        let Some((found, message)) = self.ctx.store().task_message_after(self.task.id, seq - 1).await? else {
            return Err(RunError::Store(StoreError::Corrupt(format!("forwarded message {seq} is not in the log"))));
        };
        let Some(remote) = self.delegation.remote_task_id.clone() else {
            // The first message, never answered: the agent named no task.
            // It went out in a context named after our task, so a task it
            // made for it is found there; only if there is none (or the
            // agent cannot list tasks) is the same message (same id) sent again.
            return match self.find_made().await {
                Some(made) => self.adopt(made).await,
                None => self.send(found, message).await,
            };
        };
        let task = self.client.get_task(&remote, RESUME_HISTORY).await?;
        if !arrived(&task, &message.message_id, self.delegation.question_id.as_deref()) {
            return self.send(found, message).await;
        }
        self.delegation.acked_seq = Some(seq);
        self.dirty = true;
        self.flush().await?;
        if self.fold(StreamResponse::Task(task))? {
            return Ok(Settled::Yes);
        }
        self.attach(&remote).await
    }

    /// Hands one client message to the remote agent and follows the answer.
    async fn send(&mut self, seq: i64, latest: Message) -> Result<Settled, RunError> {
        // Write-ahead: the intent is durable before the agent can act on it.
        self.delegation.forwarded_seq = Some(seq);
        self.delegation.forwarded_message_id = Some(latest.message_id.clone());
        self.delegation.question_id = if self.task.state.is_interrupted() {
            self.task.status.message.as_ref().map(|m| m.message_id.clone())
        } else {
            None
        };
        self.dirty = true;
        // A follow-up to a known remote task is recorded as sent *before* it
        // is sent, so a resumed worker asks the remote task before sending it
        // again. A first message needs no such record: with no remote task
        // known, a resumed worker can only send it again (same messageId),
        // and it is written with the first answer instead, saving a
        // transaction on the hot path.
        if self.delegation.remote_task_id.is_some() {
            self.flush().await?;
        } else if self.ctx.lease().attempt > 1
            && let Some(made) = self.find_made().await
        {
            // A first message is not recorded before it is sent, so an
            // attempt after one that ended unheard (a crash, a lost lease)
            // looks for the task it may have made first. (An attempt given
            // back at a drain keeps its number, so a send cut off by the
            // drain timeout is not looked for here; draining waits for
            // in-flight work first, so that takes a call longer than it.)
            return self.adopt(made).await;
        }
        if self.task.state != TaskState::Working {
            self.stage(&[TaskEvent::status(TaskState::Working, None)])?;
        }
        let mut message = Message {
            message_id: latest.message_id.clone(),
            context_id: self.delegation.remote_context_id.clone(),
            // A follow-up answers the remote task's question.
            task_id: self.delegation.remote_task_id.clone(),
            role: Role::User,
            parts: latest.parts.clone(),
            metadata: latest.metadata.clone(),
            extensions: latest.extensions.clone(),
            reference_task_ids: None,
        };
        // A first message goes out in a context of its own, named after our
        // task: a worker that never hears the answer (killed, or the call
        // cut off) finds the task it made there instead of sending again.
        let first = message.task_id.is_none();
        if first {
            message.context_id = Some(self.made_in());
        }
        // The cheapest call that stays exact: a blocking send answers in one
        // exchange (an agent streaming to us spends more per task), and a
        // first message's task can always be found again by its context.
        // v0.3 agents cannot list tasks, so they keep the forms below.
        let blocking = first && !self.wants_stream && self.client.can_list();
        let request = SendMessageRequest {
            message,
            configuration: Some(SendMessageConfiguration {
                accepted_output_modes: None,
                task_push_notification_config: None,
                history_length: Some(0),
                // Without streaming, do not hold a connection open for the
                // whole task: take the acknowledgement, then poll (and park).
                return_immediately: (!self.streaming && !blocking).then_some(true),
            }),
            metadata: None,
            tenant: None,
        };
        let result = if blocking {
            match self.client.send(&request).await {
                Ok(response) => self.answered(response)?,
                // Still at work when the call gave up, or the answer was
                // lost on the way: follow the task it made, if it made one.
                Err(error) => match self.find_made().await {
                    Some(made) => self.answered(SendMessageResponse::Task(made))?,
                    None => return Err(error.into()),
                },
            }
        } else if self.streaming {
            let events = self.client.send_streaming(&request).await?;
            self.follow(events).await?
        } else {
            let response = self.client.send(&request).await?;
            self.answered(response)?
        };
        match (result, self.delegation.remote_task_id.clone()) {
            (Settled::No | Settled::Quiet, Some(remote)) => self.attach(&remote).await,
            (other, _) => Ok(other),
        }
    }

    /// Folds the answer to a non-streaming send.
    fn answered(&mut self, response: SendMessageResponse) -> Result<Settled, RunError> {
        Ok(match response {
            SendMessageResponse::Task(t) => {
                if self.fold(StreamResponse::Task(t))? {
                    Settled::Yes
                } else {
                    Settled::No
                }
            }
            SendMessageResponse::Message(m) => {
                self.fold(StreamResponse::Message(m))?;
                Settled::Yes
            }
        })
    }

    /// The context a first message is sent in: our task's id, which no
    /// other task's messages use.
    fn made_in(&self) -> String {
        self.task.id.to_string()
    }

    /// The remote task our first message made, found in the context it was
    /// sent in; `None` when there is none, or the agent cannot list tasks
    /// (then the message can only be sent again).
    async fn find_made(&self) -> Option<Task> {
        match self.client.tasks_in_context(&self.made_in(), RESUME_HISTORY).await {
            Ok(tasks) => tasks.and_then(|tasks| tasks.into_iter().next()),
            Err(error) => {
                tracing::debug!(%error, "the agent did not list the tasks of the first message's context");
                None
            }
        }
    }

    /// Takes over the remote task our first message made (found by
    /// [`Run::find_made`]) as if its answer had arrived: checkpointed, folded,
    /// then followed. The message is not sent again.
    async fn adopt(&mut self, made: Task) -> Result<Settled, RunError> {
        tracing::info!(remote = %made.id, "the first message's task was found in its context; not sent again");
        self.checkpoint(&made.id, &made.context_id);
        self.flush().await?;
        let remote = made.id.clone();
        if self.fold(StreamResponse::Task(made))? {
            return Ok(Settled::Yes);
        }
        self.attach(&remote).await
    }

    /// Follows a remote task we know by id until it settles or the budget
    /// runs out: its stream when it streams (re-subscribing after silence),
    /// else polling.
    async fn attach(&mut self, remote: &str) -> Result<Settled, RunError> {
        if self.look_once {
            let task = self.client.get_task(remote, 0).await?;
            return Ok(if self.fold(StreamResponse::Task(task))? { Settled::Yes } else { Settled::Later });
        }
        if !self.streaming {
            return self.poll(remote).await;
        }
        loop {
            let events = match self.client.subscribe(remote).await {
                Ok(events) => events,
                Err(e) if e.code() == Some(error_code::UNSUPPORTED_OPERATION) => return self.poll(remote).await,
                Err(e) => return Err(e.into()),
            };
            match self.follow(events).await? {
                // Silent for a while: a quiet task is not a dead one. Look
                // at it, and follow again while the budget lasts.
                Settled::Quiet => {
                    let task = self.client.get_task(remote, 0).await?;
                    if self.fold(StreamResponse::Task(task))? {
                        return Ok(Settled::Yes);
                    }
                    if Instant::now() >= self.deadline {
                        return Ok(Settled::Later);
                    }
                }
                // The stream closed without settling: poll, with backoff.
                Settled::No => return self.poll(remote).await,
                other => return Ok(other),
            }
        }
    }

    /// Folds events into the task in memory; they are written by the next
    /// [`Run::flush`] or [`Run::finish`]. Refused events are refused here,
    /// as the store would.
    fn stage(&mut self, events: &[TaskEvent]) -> Result<(), RunError> {
        for event in events {
            self.task.apply(event).map_err(|source| match source {
                switchyard_engine::FoldError::Terminal(_) => RunError::Ended,
                source => RunError::Store(StoreError::Rejected { task: self.task.id, source }),
            })?;
            self.unwritten.push(event.clone());
        }
        self.since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Notes the remote ids, and that the last send was answered.
    fn checkpoint(&mut self, remote_task: &str, remote_context: &str) {
        let d = &self.delegation;
        if d.remote_task_id.as_deref() == Some(remote_task)
            && d.remote_context_id.as_deref() == Some(remote_context)
            && d.acked_seq == d.forwarded_seq
        {
            return;
        }
        self.delegation.remote_task_id = Some(remote_task.to_owned());
        self.delegation.remote_context_id = Some(remote_context.to_owned());
        self.delegation.acked_seq = self.delegation.forwarded_seq;
        self.dirty = true;
        self.since.get_or_insert_with(Instant::now);
    }

    /// When what is folded in memory must be written.
    fn flush_due(&self) -> Option<Instant> {
        self.since.map(|since| if self.unwritten.len() >= FOLD_MAX_EVENTS { since } else { since + FOLD_WINDOW })
    }

    /// Writes what is folded in memory, and the checkpoint if it changed,
    /// in one transaction under the job's lease.
    pub(crate) async fn flush(&mut self) -> Result<(), RunError> {
        if self.unwritten.is_empty() && !self.dirty {
            return Ok(());
        }
        self.write(false).await
    }

    /// Writes what is folded in memory and settles the job, in one
    /// transaction.
    pub(crate) async fn finish(&mut self) -> Result<(), RunError> {
        self.write(true).await
    }

    async fn write(&mut self, finish: bool) -> Result<(), RunError> {
        let checkpoint = self.dirty.then_some(&self.delegation);
        let was_terminal = self.task.state.is_terminal() && self.unwritten.is_empty();
        let cancel_knew = self.remote_stored;
        let folded = self.ctx.store().delegation_fold(self.ctx.lease(), checkpoint, &self.unwritten, finish).await?;
        self.remote_stored |= self.dirty && self.delegation.remote_task_id.is_some();
        self.unwritten.clear();
        self.dirty = false;
        self.since = None;
        if folded.ended {
            // Ended here while we worked. A cancel that knew the remote task
            // queued its cancel; one that did not left it to this worker,
            // which knows it now (so the agent is asked once, not twice).
            if cancel_knew {
                tracing::debug!("task ended here; its cancel_remote job cancels the remote task");
            } else if let Some(remote) = &self.delegation.remote_task_id {
                match self.client.cancel(remote).await {
                    Ok(_) => tracing::info!(%remote, "task ended here; remote task canceled"),
                    // It finished over there first: nothing left to cancel.
                    Err(e)
                        if matches!(e.code(), Some(error_code::TASK_NOT_CANCELABLE | error_code::TASK_NOT_FOUND)) =>
                    {
                        tracing::info!(%remote, "task ended here; the remote task had already ended");
                    }
                    Err(error) => tracing::warn!(%remote, %error, "task ended here; canceling the remote task failed"),
                }
            }
            return Err(RunError::Ended);
        }
        // The fold's record carries the artifact ids, not the artifacts;
        // this one folded the same events over what it read at the start.
        let artifacts = std::mem::take(&mut self.task.artifacts);
        self.task = folded.task;
        self.task.artifacts = artifacts;
        if !was_terminal && self.task.state.is_terminal() {
            let took = (self.task.status_at - self.task.created_at).to_std().unwrap_or_default();
            metrics::histogram!("switchyard_task_duration_seconds", "state" => self.task.state.as_str())
                .record(took.as_secs_f64());
        }
        if folded.requeued {
            tracing::info!(task = %self.task.id, "a follow-up is waiting; the delegation goes on");
        }
        Ok(())
    }

    /// Our copy of an agent message: same words, our ids.
    fn ours(&self, mut message: Message) -> Message {
        message.task_id = Some(self.task.id.to_string());
        message.context_id = Some(self.task.context_id.clone());
        message.role = Role::Agent;
        message
    }

    /// Folds one remote event into our log; true once the task settled.
    fn fold(&mut self, event: StreamResponse) -> Result<bool, RunError> {
        match event {
            StreamResponse::Task(remote) => {
                self.checkpoint(&remote.id, &remote.context_id);
                let mut events: Vec<TaskEvent> = remote
                    .artifacts
                    .unwrap_or_default()
                    .into_iter()
                    // A snapshot repeats what we may have folded already
                    // (every poll does): only what changed is news.
                    .filter(|artifact| !self.task.artifacts.contains(artifact))
                    .map(|artifact| TaskEvent::Artifact(ArtifactUpdate { artifact, append: false, last_chunk: true }))
                    .collect();
                let settles = self.status_event(remote.status, &mut events);
                self.stage(&events)?;
                Ok(settles)
            }
            StreamResponse::StatusUpdate(update) => {
                self.checkpoint(&update.task_id, &update.context_id);
                let mut events = Vec::new();
                let settles = self.status_event(update.status, &mut events);
                self.stage(&events)?;
                Ok(settles)
            }
            StreamResponse::ArtifactUpdate(update) => {
                self.checkpoint(&update.task_id, &update.context_id);
                let event = TaskEvent::Artifact(ArtifactUpdate {
                    artifact: update.artifact,
                    append: update.append.unwrap_or(false),
                    last_chunk: update.last_chunk.unwrap_or(false),
                });
                self.stage(&[event])?;
                Ok(false)
            }
            StreamResponse::Message(reply) => {
                // A direct answer, no remote task: a turn of the conversation
                // (history), and it completes ours.
                let reply = self.ours(reply);
                self.stage(&[TaskEvent::Message(reply.clone()), TaskEvent::status(TaskState::Completed, Some(reply))])?;
                Ok(true)
            }
        }
    }

    /// The status event (if any) a remote status becomes; true if it settles the task.
    fn status_event(&self, status: a2a::TaskStatus, events: &mut Vec<TaskEvent>) -> bool {
        let Some(state) = TaskState::from_a2a(&status.state) else {
            return false;
        };
        if state == TaskState::Submitted {
            return false; // we are already past that
        }
        // Progress within a state is news only if it says something new.
        let same_words =
            status.message.as_ref().map(|m| &m.parts) == self.task.status.message.as_ref().map(|m| &m.parts);
        if state != self.task.state || (status.message.is_some() && !same_words) {
            let message = status.message.map(|m| self.ours(m));
            // The question behind an interruption is the agent's turn in
            // the conversation: history holds it, in order.
            if state.is_interrupted()
                && let Some(question) = &message
            {
                events.push(TaskEvent::Message(question.clone()));
            }
            events.push(TaskEvent::status(state, message));
        }
        state.is_terminal() || state.is_interrupted()
    }

    async fn follow(&mut self, mut events: Events) -> Result<Settled, RunError> {
        loop {
            let flush_at = self.flush_due();
            let next = tokio::select! {
                next = tokio::time::timeout(self.silence, events.next()) => next,
                // Nothing more came within the window: write what did.
                () = sleep_until(flush_at) => {
                    match self.flush().await {
                        // Ended here before the agent named its task: keep
                        // listening for the name, to cancel the task there.
                        Err(RunError::Ended) if self.delegation.remote_task_id.is_none() => {
                            return self.cancel_once_named(events).await;
                        }
                        other => other?,
                    }
                    continue;
                }
                () = tokio::time::sleep_until(self.deadline) => return Ok(Settled::Later),
                () = self.ctx.cancelled() => return Ok(Settled::Later),
            };
            let Ok(next) = next else {
                return Ok(Settled::Quiet);
            };
            let Some(event) = next else {
                return Ok(Settled::No);
            };
            if self.fold(event?)? {
                return Ok(Settled::Yes);
            }
        }
    }

    /// Our task ended while the agent had not yet named its task: reads the
    /// stream (within the attach budget) until it does, and cancels it.
    async fn cancel_once_named(&mut self, mut events: Events) -> Result<Settled, RunError> {
        let named = async {
            match events.next().await?.ok()? {
                StreamResponse::Task(t) => Some(t.id),
                StreamResponse::StatusUpdate(u) => Some(u.task_id),
                StreamResponse::ArtifactUpdate(u) => Some(u.task_id),
                StreamResponse::Message(_) => None,
            }
        };
        let remote = tokio::select! {
            remote = tokio::time::timeout(self.silence, named) => remote.ok().flatten(),
            () = tokio::time::sleep_until(self.deadline) => None,
        };
        if let Some(remote) = remote {
            match self.client.cancel(&remote).await {
                Ok(_) => tracing::info!(%remote, "task ended here; remote task canceled once named"),
                Err(error) => tracing::warn!(%remote, %error, "task ended here; canceling the remote task failed"),
            }
        }
        Err(RunError::Ended)
    }

    /// Polls the remote task with growing intervals until it settles, or
    /// until this attempt's budget is spent (then the job is retried later).
    async fn poll(&mut self, remote: &str) -> Result<Settled, RunError> {
        let mut wait = Duration::from_millis(100);
        loop {
            let task = self.client.get_task(remote, 0).await?;
            let settled = task.status.state.is_terminal()
                || task.status.state == WireState::InputRequired
                || task.status.state == WireState::AuthRequired;
            if self.fold(StreamResponse::Task(task))? || settled {
                return Ok(Settled::Yes);
            }
            if Instant::now() >= self.deadline {
                return Ok(Settled::Later);
            }
            self.flush().await?;
            tokio::select! {
                () = self.ctx.cancelled() => return Ok(Settled::Later),
                () = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(POLL_CAP);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parking_grows_with_the_remote_work_and_is_capped() {
        assert_eq!(park_delay(Duration::ZERO), Duration::from_secs(5));
        assert_eq!(park_delay(Duration::from_secs(600)), Duration::from_secs(60));
        assert_eq!(park_delay(Duration::from_secs(86_400)), Duration::from_secs(300));
    }

    fn remote(state: WireState, question: Option<&str>, history: &[&str]) -> Task {
        let message = |id: &str| Message {
            message_id: id.into(),
            context_id: None,
            task_id: None,
            role: Role::Agent,
            parts: Vec::new(),
            metadata: None,
            extensions: None,
            reference_task_ids: None,
        };
        let mut task: Task = serde_json::from_value(serde_json::json!({
            "id": "r", "contextId": "c", "status": {"state": "TASK_STATE_WORKING"}
        }))
        .expect("task");
        task.status.state = state;
        task.status.message = question.map(message);
        task.history = (!history.is_empty()).then(|| history.iter().map(|id| message(id)).collect());
        task
    }

    #[test]
    fn an_answer_arrived_when_the_remote_task_moved_past_its_question() {
        assert!(!arrived(&remote(WireState::InputRequired, Some("q1"), &[]), "a1", Some("q1")), "same question");
        assert!(arrived(&remote(WireState::InputRequired, Some("q2"), &[]), "a1", Some("q1")), "a new question");
        assert!(arrived(&remote(WireState::Working, None, &[]), "a1", Some("q1")), "back at work");
        assert!(arrived(&remote(WireState::Completed, None, &[]), "a1", Some("q1")), "finished");
        assert!(arrived(&remote(WireState::InputRequired, Some("q1"), &["a1"]), "a1", Some("q1")), "in its history");
    }
}
