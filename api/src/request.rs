//! The A2A requests as the handler receives them. Each binding decodes its
//! own wire form (JSON-RPC params, an HTTP+JSON path and body, a protobuf,
//! a v0.3 shape) into the one model, and the constructors here check it in
//! one pass into these types: the handler is only ever handed a request
//! that is valid, with every id parsed and every default applied, and every
//! refusal names the field at fault the same way on every binding.

use std::collections::HashMap;

use a2a::{GetTaskRequest, ListTasksRequest, Message, Role, SendMessageRequest, TaskPushNotificationConfig};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use switchyard_engine::plan::{PlanError, PlanSpec};
use switchyard_engine::route::Target;
use switchyard_engine::{Cursor, MAX_PUSH_CONFIGS, PushConfig, TaskFilter, TaskId, TaskState};

use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::page;
use crate::validate::{self, Intake, MAX_HISTORY, MAX_METADATA_BYTES, MAX_PARTS, identifier};

/// ListTasks page sizes (PROTOCOL.md §5.4 L5).
pub const DEFAULT_PAGE: i32 = 50;
pub const MAX_PAGE: i32 = 100;

/// `SendMessage` and `SendStreamingMessage`.
#[derive(Debug)]
pub struct SendRequest {
    /// From the client (role user, ids bounded, parts well formed).
    pub message: Message,
    /// The request's own metadata.
    pub metadata: Option<HashMap<String, Value>>,
    /// Messages of history to answer with.
    pub history: i64,
    pub return_immediately: bool,
    /// What deduplicates the message: the `Idempotency-Key` header, else
    /// the `messageId`.
    pub idempotency_key: String,
    /// The caller's W3C trace context, when it sent a valid one.
    pub trace_context: Option<Value>,
    /// A webhook to register with the message: its task id is the task
    /// continued, or nil for a new task (the store fills it in).
    pub push_config: Option<PushConfig>,
    pub turn: Turn,
}

/// Whether a message starts a task or continues one.
#[derive(Debug)]
pub enum Turn {
    Continue(TaskId),
    /// Boxed: most of a request's size, and only a new task's.
    Start(Box<Start>),
}

/// What a new task's message asks of routing and time.
#[derive(Debug)]
pub struct Start {
    /// `switchyard.deadline` or `switchyard.timeoutSeconds`, else the
    /// configured default, else none.
    pub deadline: Option<DateTime<Utc>>,
    /// An ad hoc plan (`switchyard.fanOut`, `switchyard.pipeline`).
    pub plan: Option<PlanSpec>,
    /// The agent or skill named.
    pub target: Target,
}

impl SendRequest {
    /// Checks the raw request (what serde would let through, such as a part
    /// with two content members or an empty `messageId`), decodes it and
    /// checks the rest, the headers' additions included.
    pub fn parse(raw: Value, intake: Intake, config: &ApiConfig) -> Result<SendRequest, ApiError> {
        let request = well_formed(raw, config.strict_json)?;
        let SendMessageRequest { message, configuration, metadata, .. } = request;
        if message.role != Role::User {
            return Err(ApiError::invalid_field("message.role", "must be ROLE_USER"));
        }
        let history =
            history_length(configuration.as_ref().and_then(|c| c.history_length), "configuration.historyLength")?;
        let return_immediately = configuration.as_ref().and_then(|c| c.return_immediately).unwrap_or(false);
        if let Some(key) = &intake.idempotency_key {
            identifier(key, "Idempotency-Key")?;
        }
        let idempotency_key = intake.idempotency_key.unwrap_or_else(|| message.message_id.clone());
        let turn = match message.task_id.as_deref().filter(|id| !id.is_empty()) {
            Some(raw) => Turn::Continue(validate::task_id(raw)?),
            None => Turn::Start(Box::new(Start {
                deadline: deadline(message.metadata.as_ref(), config.default_ttl)?,
                plan: PlanSpec::from_metadata(message.metadata.as_ref()).map_err(plan_refused)?,
                target: Target::from_metadata(message.metadata.as_ref()),
            })),
        };
        let task_id = match &turn {
            Turn::Continue(task) => *task,
            Turn::Start(_) => TaskId(uuid::Uuid::nil()),
        };
        let push_config = configuration
            .and_then(|c| c.task_push_notification_config)
            .map(|p| webhook(task_id, p, intake.v03, config))
            .transpose()?;
        Ok(SendRequest {
            message,
            metadata,
            history,
            return_immediately,
            idempotency_key,
            trace_context: intake.trace_context,
            push_config,
            turn,
        })
    }
}

/// The checks serde cannot make, on the raw JSON, then the decoding.
fn well_formed(raw: Value, strict: bool) -> Result<SendMessageRequest, ApiError> {
    validate::no_nul(&raw)?;
    let message = raw.get("message").ok_or_else(|| ApiError::invalid_field("message", "is required"))?;
    if !message.is_object() {
        return Err(ApiError::invalid_field("message", "must be an object"));
    }
    match message.get("messageId") {
        Some(Value::String(id)) if !id.trim().is_empty() => {}
        _ => {
            return Err(ApiError::invalid_field("message.messageId", "is required and must be a non-empty string"));
        }
    }
    let parts = match message.get("parts") {
        Some(Value::Array(parts)) if !parts.is_empty() => parts,
        _ => {
            return Err(ApiError::invalid_field("message.parts", "is required and must be a non-empty array"));
        }
    };
    if parts.len() > MAX_PARTS {
        return Err(ApiError::invalid_field("message.parts", format!("may have at most {MAX_PARTS} parts")));
    }
    for (field, metadata) in [("message.metadata", message.get("metadata")), ("metadata", raw.get("metadata"))] {
        if metadata.is_some_and(|m| m.to_string().len() > MAX_METADATA_BYTES) {
            return Err(ApiError::invalid_field(field, format!("may be at most {MAX_METADATA_BYTES} bytes")));
        }
    }
    for (i, part) in parts.iter().enumerate() {
        let members = ["text", "raw", "url", "data"].iter().filter(|m| part.get(**m).is_some()).count();
        if members != 1 {
            return Err(ApiError::invalid_field(
                &format!("message.parts[{i}]"),
                "must have exactly one of text, raw, url, data",
            ));
        }
    }
    for field in ["messageId", "contextId", "taskId"] {
        if let Some(Value::String(id)) = message.get(field) {
            identifier(id, &format!("message.{field}"))?;
        }
    }
    if let Some(Value::String(tenant)) = raw.get("tenant") {
        identifier(tenant, "tenant")?;
    }
    validate::decode(raw, "params", strict)
}

/// `GetTask`.
#[derive(Debug)]
pub struct TaskQuery {
    pub id: TaskId,
    pub history: i64,
}

impl TaskQuery {
    pub fn parse(request: GetTaskRequest) -> Result<TaskQuery, ApiError> {
        let history = history_length(request.history_length, "historyLength")?;
        Ok(TaskQuery { id: validate::task_id(&request.id)?, history })
    }
}

/// The task a request is about (`CancelTask`, `SubscribeToTask`), with the
/// id as the client spelt it, for errors that name it.
#[derive(Debug)]
pub struct TaskRef {
    pub id: TaskId,
    pub named: String,
}

impl TaskRef {
    pub fn parse(id: &str) -> Result<TaskRef, ApiError> {
        Ok(TaskRef { id: validate::task_id(id)?, named: id.to_owned() })
    }
}

/// `ListTasks`.
#[derive(Debug)]
pub struct TaskList {
    pub filter: TaskFilter,
    pub page_size: i32,
    /// Where the page starts; `None` for the first.
    pub after: Option<Cursor>,
    pub history: i64,
    pub with_artifacts: bool,
}

impl TaskList {
    /// With `parent` (an extension: `parentTaskId`), that task's children.
    pub fn parse(request: ListTasksRequest, parent: Option<&str>) -> Result<TaskList, ApiError> {
        let page_size = request.page_size.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&page_size) {
            return Err(ApiError::invalid_field("pageSize", format!("must be between 1 and {MAX_PAGE}")));
        }
        // Lists carry no history unless asked: it costs a read per task.
        let history = match request.history_length {
            None => 0,
            some => history_length(some, "historyLength")?,
        };
        let state = match &request.status {
            None => None,
            Some(s) => Some(
                TaskState::from_a2a(s).ok_or_else(|| ApiError::invalid_field("status", "must name a task state"))?,
            ),
        };
        if let Some(context) = &request.context_id {
            identifier(context, "contextId")?;
        }
        if let Some(token) = &request.page_token {
            identifier(token, "pageToken")?;
        }
        let filter = TaskFilter {
            context_id: request.context_id.filter(|c| !c.is_empty()),
            state,
            status_after: request.status_timestamp_after,
            parent: parent.map(|p| validate::task_id_field(p, "parentTaskId")).transpose()?,
        };
        let after = page::decode(request.page_token.as_deref().unwrap_or(""), &filter)?;
        Ok(TaskList { filter, page_size, after, history, with_artifacts: request.include_artifacts == Some(true) })
    }
}

/// `CreateTaskPushNotificationConfig`: the webhook, checked; `v03` when it
/// came through the v0.3 binding (its deliveries take that shape).
pub fn push_config(config: TaskPushNotificationConfig, v03: bool, api: &ApiConfig) -> Result<PushConfig, ApiError> {
    let task_id = validate::task_id_in(&config.task_id, "taskId")?;
    webhook(task_id, config, v03, api)
}

/// One webhook of a task (`GetTaskPushNotificationConfig`,
/// `DeleteTaskPushNotificationConfig`).
#[derive(Debug)]
pub struct PushConfigRef {
    pub task: TaskId,
    /// The task id as the client spelt it.
    pub named_task: String,
    pub id: String,
}

impl PushConfigRef {
    pub fn parse(task_id: &str, id: &str) -> Result<PushConfigRef, ApiError> {
        let task = validate::task_id_in(task_id, "taskId")?;
        identifier(id, "id")?;
        Ok(PushConfigRef { task, named_task: task_id.to_owned(), id: id.to_owned() })
    }
}

/// `ListTaskPushNotificationConfigs`: pages in id order; the token is the
/// last id of the previous page.
#[derive(Debug)]
pub struct PushConfigPage {
    pub task: TaskId,
    pub size: i64,
    pub after: Option<String>,
}

impl PushConfigPage {
    pub fn parse(task_id: &str, page_size: Option<i32>, page_token: Option<&str>) -> Result<PushConfigPage, ApiError> {
        let task = validate::task_id_in(task_id, "taskId")?;
        let size = i64::from(page_size.unwrap_or(MAX_PUSH_CONFIGS as i32));
        if !(1..=MAX_PUSH_CONFIGS).contains(&size) {
            return Err(ApiError::invalid_field("pageSize", format!("must be between 1 and {MAX_PUSH_CONFIGS}")));
        }
        let after = page_token.filter(|t| !t.is_empty());
        if let Some(token) = after {
            identifier(token, "pageToken")?;
        }
        Ok(PushConfigPage { task, size, after: after.map(str::to_owned) })
    }
}

/// `historyLength`: unset means the server default, 0 none, n the last n.
pub fn history_length(value: Option<i32>, field: &str) -> Result<i64, ApiError> {
    match value {
        None => Ok(MAX_HISTORY),
        Some(n) if n < 0 => Err(ApiError::invalid_field(field, "must not be negative")),
        Some(n) => Ok(i64::from(n).min(MAX_HISTORY)),
    }
}

/// A client's webhook: its URL through the SSRF guard, every field's size
/// and form; an id given if it has none.
fn webhook(
    task_id: TaskId,
    config: TaskPushNotificationConfig,
    v03: bool,
    api: &ApiConfig,
) -> Result<PushConfig, ApiError> {
    let url = config.url.trim();
    if url.len() > 2048 {
        return Err(ApiError::invalid_field("url", "must be at most 2048 characters"));
    }
    api.egress.check_url(url).map_err(|refused| ApiError::invalid_field("url", refused.0))?;
    let header_safe = |s: &str| !s.contains(['\r', '\n']);
    if let Some(token) = &config.token
        && (!header_safe(token) || token.len() > 4096)
    {
        return Err(ApiError::invalid_field("token", "must be at most 4096 bytes, with no line breaks"));
    }
    if let Some(auth) = &config.authentication {
        let scheme_ok = !auth.scheme.trim().is_empty()
            && auth.scheme.len() <= 64
            && auth.scheme.chars().all(|c| c.is_ascii_alphanumeric() || "-._~+/".contains(c));
        let credentials_ok = auth.credentials.as_deref().is_none_or(|c| header_safe(c) && c.len() <= 4096);
        if !scheme_ok || !credentials_ok {
            return Err(ApiError::invalid_field(
                "authentication",
                "needs a scheme (a token of at most 64 characters) and credentials of at most 4096 bytes, \
                 with no line breaks",
            ));
        }
    }
    let id = config.id.filter(|id| !id.is_empty()).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    if id.len() > 256 {
        return Err(ApiError::invalid_field("id", "must be at most 256 characters"));
    }
    Ok(PushConfig {
        task_id,
        id,
        url: url.to_owned(),
        token: config.token,
        authentication: config.authentication.map(|a| json!({ "scheme": a.scheme, "credentials": a.credentials })),
        version: if v03 { "0.3" } else { "1.0" }.to_owned(),
    })
}

/// The task's deadline: message metadata `switchyard.deadline` (RFC 3339)
/// or `switchyard.timeoutSeconds`, else the configured default, else none.
fn deadline(
    metadata: Option<&HashMap<String, Value>>,
    default_ttl: Option<std::time::Duration>,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    let hint = metadata.and_then(|m| m.get("switchyard"));
    if let Some(at) = hint.and_then(|h| h.get("deadline")) {
        let parsed = at.as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok());
        let at = parsed.ok_or_else(|| {
            ApiError::invalid_field("message.metadata.switchyard.deadline", "must be an RFC 3339 timestamp")
        })?;
        return Ok(Some(at.with_timezone(&Utc)));
    }
    if let Some(secs) = hint.and_then(|h| h.get("timeoutSeconds")) {
        let secs = secs.as_f64().filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9).ok_or_else(|| {
            ApiError::invalid_field("message.metadata.switchyard.timeoutSeconds", "must be a positive number")
        })?;
        let ttl = chrono::Duration::milliseconds((secs * 1000.0) as i64);
        return Ok(Some(Utc::now() + ttl));
    }
    Ok(default_ttl.and_then(|ttl| chrono::Duration::from_std(ttl).ok()).map(|ttl| Utc::now() + ttl))
}

/// A plan the client asked for that cannot be run as asked: invalid params.
pub fn plan_refused(e: PlanError) -> ApiError {
    ApiError::invalid_field("message.metadata.switchyard", e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_message() -> Value {
        json!({"message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hi"}]}})
    }

    fn send_request(raw: Value) -> Result<SendRequest, ApiError> {
        SendRequest::parse(raw, Intake::default(), &ApiConfig::new("http://127.0.0.1:8080"))
    }

    #[test]
    fn a_well_formed_request_passes() {
        let send = send_request(ok_message()).expect("valid");
        assert_eq!(send.idempotency_key, "m1");
        assert_eq!(send.history, MAX_HISTORY);
        assert!(matches!(send.turn, Turn::Start(_)));
    }

    #[test]
    fn a_message_naming_a_task_continues_it_and_its_webhook_names_it_too() {
        let task = TaskId::new();
        let mut raw = ok_message();
        raw["message"]["taskId"] = json!(task.to_string());
        raw["configuration"] = json!({"taskPushNotificationConfig": {"url": "https://hooks.example.com/a"}});
        let send = send_request(raw).expect("valid");
        assert!(matches!(send.turn, Turn::Continue(t) if t == task));
        assert_eq!(send.push_config.map(|p| p.task_id), Some(task));
        let mut unknown = ok_message();
        unknown["message"]["taskId"] = json!("not-a-task");
        assert!(matches!(send_request(unknown), Err(ApiError::TaskNotFound(_))));
    }

    #[test]
    fn the_idempotency_key_header_is_checked_and_wins_over_the_message_id() {
        let intake = Intake { idempotency_key: Some("k1".into()), ..Intake::default() };
        let config = ApiConfig::new("http://127.0.0.1:8080");
        assert_eq!(
            SendRequest::parse(ok_message(), intake, &config).map(|s| s.idempotency_key).ok(),
            Some("k1".into())
        );
        let forged = Intake { idempotency_key: Some("k\u{1b}[2J".into()), ..Intake::default() };
        assert!(matches!(
            SendRequest::parse(ok_message(), forged, &config),
            Err(ApiError::InvalidParams { field: Some(f), .. }) if f == "Idempotency-Key"
        ));
    }

    #[test]
    fn parts_and_metadata_are_bounded() {
        let mut many = ok_message();
        many["message"]["parts"] = json!(vec![json!({"text": "x"}); MAX_PARTS + 1]);
        assert!(
            matches!(send_request(many), Err(ApiError::InvalidParams { field: Some(f), .. }) if f == "message.parts")
        );
        let mut big = ok_message();
        big["message"]["metadata"] = json!({ "pad": "x".repeat(MAX_METADATA_BYTES) });
        assert!(
            matches!(send_request(big), Err(ApiError::InvalidParams { field: Some(f), .. }) if f == "message.metadata")
        );
    }

    #[test]
    fn each_malformation_names_its_field() {
        let cases = [
            (json!({}), "message"),
            (json!({"message": {"role": "ROLE_USER", "parts": [{"text": "x"}]}}), "message.messageId"),
            (
                json!({"message": {"messageId": " ", "role": "ROLE_USER", "parts": [{"text": "x"}]}}),
                "message.messageId",
            ),
            (json!({"message": {"messageId": "m", "role": "ROLE_USER", "parts": []}}), "message.parts"),
            (
                json!({"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "a", "url": "b"}]}}),
                "message.parts[0]",
            ),
            (json!({"message": {"messageId": "m", "role": "ROLE_AGENT", "parts": [{"text": "a"}]}}), "message.role"),
            (
                json!({"message": {"messageId": "m", "role": "ROLE_UNSPECIFIED", "parts": [{"text": "a"}]}}),
                "message.role",
            ),
            (
                json!({"message": {"messageId": "m\u{0}", "role": "ROLE_USER", "parts": [{"text": "a"}]}}),
                "message.messageId",
            ),
            (
                json!({"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "a\u{0}"}]}}),
                "message.parts[0].text",
            ),
            (
                json!({"message": {"messageId": "m".repeat(257), "role": "ROLE_USER", "parts": [{"text": "a"}]}}),
                "message.messageId",
            ),
            (
                json!({"message": {"messageId": "m", "contextId": "c".repeat(300), "role": "ROLE_USER", "parts": [{"text": "a"}]}}),
                "message.contextId",
            ),
        ];
        for (raw, field) in cases {
            match send_request(raw.clone()).map(|_| ()) {
                Err(ApiError::InvalidParams { field: Some(f), .. }) => {
                    assert_eq!(f, field, "{raw}")
                }
                other => panic!("{raw}: expected an error on {field}, got {other:?}"),
            }
        }
        let mut negative = ok_message();
        negative["configuration"] = json!({"historyLength": -1});
        assert!(matches!(send_request(negative), Err(ApiError::InvalidParams { .. })));
    }
}
