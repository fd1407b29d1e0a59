//! The API's one error type, and the one table that maps it to an A2A error
//! code, an HTTP status and a gRPC status name. Both bindings render from it.

use axum::http::StatusCode;
use serde_json::{Value, json};
use switchyard_engine::{StoreError, TaskState};

const DOMAIN: &str = "a2a-protocol.org";

/// Everything a request can fail with. Messages are written for the client;
/// internal detail (database text, stack traces) never reaches them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is malformed: {0}")]
    Parse(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("method {0:?} does not exist")]
    MethodNotFound(String),
    #[error("invalid parameters: {message}")]
    InvalidParams { message: String, field: Option<String> },
    #[error("task {0} not found")]
    TaskNotFound(String),
    #[error("task {task} is {state} and cannot be canceled")]
    TaskNotCancelable { task: String, state: TaskState },
    #[error("push notifications are not supported")]
    PushNotSupported,
    #[error("{0}")]
    UnsupportedOperation(String),
    #[error("content type not supported: {0}")]
    ContentTypeNotSupported(String),
    #[error("no extended agent card is configured")]
    ExtendedCardNotConfigured,
    #[error("A2A version {0:?} is not supported; this server speaks 1.0 and 0.3")]
    VersionNotSupported(String),
    #[error("push notification config {config} of task {task} not found")]
    PushConfigNotFound { task: String, config: String },
    #[error("the request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    /// The body is not declared as JSON (HTTP 415 on both JSON bindings).
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    #[error("permission denied: {0}")]
    Forbidden(String),
    #[error("too many requests; retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("the service is temporarily unavailable; retry shortly")]
    Unavailable,
    #[error("internal error")]
    Internal,
}

/// What one row of the mapping table says about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    pub code: i32,
    pub http: StatusCode,
    pub grpc: &'static str,
    pub reason: &'static str,
}

impl ApiError {
    /// A validation failure naming the offending field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        ApiError::InvalidParams { message: format!("{field}: {}", message.into()), field: Some(field.to_owned()) }
    }

    /// THE table (PROTOCOL.md §6): code, HTTP status, gRPC status, reason.
    pub fn classify(&self) -> Classification {
        use ApiError::*;
        let (code, http, grpc, reason) = match self {
            Parse(_) => (-32700, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "PARSE_ERROR"),
            InvalidRequest(_) => (-32600, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "INVALID_REQUEST"),
            PayloadTooLarge(_) => (-32600, StatusCode::PAYLOAD_TOO_LARGE, "RESOURCE_EXHAUSTED", "INVALID_REQUEST"),
            UnsupportedMediaType(_) => {
                (-32600, StatusCode::UNSUPPORTED_MEDIA_TYPE, "INVALID_ARGUMENT", "UNSUPPORTED_MEDIA_TYPE")
            }
            MethodNotFound(_) => (-32601, StatusCode::NOT_FOUND, "UNIMPLEMENTED", "METHOD_NOT_FOUND"),
            InvalidParams { .. } => (-32602, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "INVALID_PARAMS"),
            TaskNotFound(_) | PushConfigNotFound { .. } => {
                (-32001, StatusCode::NOT_FOUND, "NOT_FOUND", "TASK_NOT_FOUND")
            }
            TaskNotCancelable { .. } => (-32002, StatusCode::BAD_REQUEST, "FAILED_PRECONDITION", "TASK_NOT_CANCELABLE"),
            PushNotSupported => {
                (-32003, StatusCode::BAD_REQUEST, "FAILED_PRECONDITION", "PUSH_NOTIFICATION_NOT_SUPPORTED")
            }
            UnsupportedOperation(_) => {
                (-32004, StatusCode::BAD_REQUEST, "FAILED_PRECONDITION", "UNSUPPORTED_OPERATION")
            }
            ContentTypeNotSupported(_) => {
                (-32005, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "CONTENT_TYPE_NOT_SUPPORTED")
            }
            ExtendedCardNotConfigured => {
                (-32007, StatusCode::BAD_REQUEST, "FAILED_PRECONDITION", "EXTENDED_AGENT_CARD_NOT_CONFIGURED")
            }
            VersionNotSupported(_) => (-32009, StatusCode::BAD_REQUEST, "FAILED_PRECONDITION", "VERSION_NOT_SUPPORTED"),
            // Outside JSON-RPC's reserved range, and the HTTP status in the
            // last three digits: A2A leaves these codes to the server.
            Unauthenticated(_) => (-31401, StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "UNAUTHENTICATED"),
            Forbidden(_) => (-31403, StatusCode::FORBIDDEN, "PERMISSION_DENIED", "PERMISSION_DENIED"),
            RateLimited { .. } => (-31429, StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED", "RATE_LIMITED"),
            Unavailable => (-32603, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", "UNAVAILABLE"),
            Internal => (-32603, StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "INTERNAL_ERROR"),
        };
        Classification { code, http, grpc, reason }
    }

    /// The typed details both bindings carry: an `ErrorInfo` always, and a
    /// `BadRequest` naming the field when one is known.
    pub fn details(&self) -> Vec<Value> {
        let c = self.classify();
        let mut metadata = serde_json::Map::new();
        match self {
            ApiError::TaskNotFound(task) | ApiError::TaskNotCancelable { task, .. } => {
                metadata.insert("taskId".into(), json!(task));
            }
            ApiError::PushConfigNotFound { task, config } => {
                metadata.insert("taskId".into(), json!(task));
                metadata.insert("pushNotificationConfigId".into(), json!(config));
            }
            ApiError::VersionNotSupported(_) => {
                metadata.insert("supportedVersions".into(), json!("1.0,0.3"));
            }
            ApiError::RateLimited { retry_after } => {
                metadata.insert("retryAfterSeconds".into(), json!(retry_after.to_string()));
            }
            _ => {}
        }
        let mut details = vec![json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": c.reason,
            "domain": DOMAIN,
            "metadata": metadata,
        })];
        if let ApiError::InvalidParams { message, field: Some(field) } = self {
            details.push(json!({
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{ "field": field, "description": message }],
            }));
        }
        details
    }

    /// The JSON-RPC `error` member.
    pub fn to_jsonrpc(&self) -> Value {
        json!({ "code": self.classify().code, "message": self.to_string(), "data": self.details() })
    }

    /// The HTTP+JSON body: `google.rpc.Status` wrapped in `error`.
    pub fn to_rest(&self) -> Value {
        let c = self.classify();
        json!({ "error": {
            "code": c.http.as_u16(),
            "status": c.grpc,
            "message": self.to_string(),
            "details": self.details(),
        }})
    }
}

impl ApiError {
    /// The gRPC status: the table's code, the message, and the same
    /// `ErrorInfo` (and `BadRequest`) details, as `google.rpc.Status`
    /// carries them in `grpc-status-details-bin`; a 429 adds `RetryInfo`.
    pub fn to_grpc(&self) -> tonic::Status {
        use tonic_types::{ErrorDetails, StatusExt};
        let c = self.classify();
        let metadata = match self.details().first().and_then(|info| info.get("metadata")) {
            Some(Value::Object(map)) => {
                map.iter().map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect()
            }
            _ => std::collections::HashMap::new(),
        };
        let mut details = ErrorDetails::with_error_info(c.reason, DOMAIN, metadata);
        if let ApiError::InvalidParams { message, field: Some(field) } = self {
            details.add_bad_request_violation(field.clone(), message.clone());
        }
        if let ApiError::RateLimited { retry_after } = self {
            details.set_retry_info(Some(std::time::Duration::from_secs(*retry_after)));
        }
        tonic::Status::with_error_details(grpc_code(c.grpc), self.to_string(), details)
    }
}

/// A gRPC status name (as the table spells it) as tonic's code.
fn grpc_code(name: &str) -> tonic::Code {
    use tonic::Code;
    match name {
        "INVALID_ARGUMENT" => Code::InvalidArgument,
        "NOT_FOUND" => Code::NotFound,
        "FAILED_PRECONDITION" => Code::FailedPrecondition,
        "UNIMPLEMENTED" => Code::Unimplemented,
        "RESOURCE_EXHAUSTED" => Code::ResourceExhausted,
        "UNAUTHENTICATED" => Code::Unauthenticated,
        "PERMISSION_DENIED" => Code::PermissionDenied,
        "UNAVAILABLE" => Code::Unavailable,
        _ => Code::Internal,
    }
}

impl ApiError {
    /// Headers this error's HTTP answer carries: the challenge of a 401,
    /// the wait of a 429.
    fn headers(&self) -> Vec<(axum::http::HeaderName, String)> {
        use axum::http::header;
        match self {
            ApiError::Unauthenticated(_) => vec![
                (header::WWW_AUTHENTICATE, r#"Bearer realm="switchyard""#.to_owned()),
                (header::WWW_AUTHENTICATE, r#"ApiKey realm="switchyard", header="X-API-Key""#.to_owned()),
            ],
            ApiError::RateLimited { retry_after } => vec![(header::RETRY_AFTER, retry_after.to_string())],
            _ => Vec::new(),
        }
    }

    /// The HTTP answer with this error's status and headers, carrying
    /// `body` (the binding's rendering of it) as JSON.
    pub fn respond_with(&self, body: &Value) -> axum::response::Response {
        use axum::http::{HeaderValue, header};
        use axum::response::IntoResponse;
        let mut response =
            (self.classify().http, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
        for (name, value) in self.headers() {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().append(name, value);
            }
        }
        response
    }
}

impl From<StoreError> for ApiError {
    /// The operation-neutral mapping; operations with their own meaning for
    /// a store error (cancel on a terminal task) map it before this.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::TaskNotFound(id) => ApiError::TaskNotFound(id.to_string()),
            StoreError::ContextMismatch { actual, given, .. } => ApiError::invalid_field(
                "message.contextId",
                format!("the task belongs to context {actual:?}, not {given:?}"),
            ),
            StoreError::NotInterrupted { task, state } => ApiError::UnsupportedOperation(format!(
                "task {task} is {state}; it accepts new messages only while it waits for input"
            )),
            StoreError::TooManyPushConfigs { limit, .. } => {
                ApiError::invalid_field("id", format!("a task takes at most {limit} push notification configs"))
            }
            StoreError::Rejected { task, source } => match source {
                switchyard_engine::FoldError::Terminal(state) => ApiError::UnsupportedOperation(format!(
                    "task {task} is {state}; a terminal task takes no more messages (start a new task in the same context)"
                )),
                other => {
                    tracing::error!(%task, error = %other, "a request produced an illegal event");
                    ApiError::Internal
                }
            },
            // A character the database cannot hold (a NUL that came in by a
            // way no check covered): the client's input, never an outage.
            e if e.is_unstorable_input() => {
                tracing::warn!(error = %e, "a request carried a character the store cannot hold");
                ApiError::InvalidParams {
                    message: "a value holds a character that cannot be stored (NUL)".into(),
                    field: None,
                }
            }
            e if e.is_transient() => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::Unavailable
            }
            e => {
                tracing::error!(error = ?e, "store error");
                ApiError::Internal
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a2a_errors_carry_their_reason_and_domain_in_both_bindings() {
        let e = ApiError::TaskNotFound("t1".into());
        let rpc = e.to_jsonrpc();
        assert_eq!(rpc["code"], -32001);
        assert_eq!(rpc["data"][0]["reason"], "TASK_NOT_FOUND");
        assert_eq!(rpc["data"][0]["metadata"]["taskId"], "t1");
        let rest = e.to_rest();
        assert_eq!(rest["error"]["code"], 404);
        assert_eq!(rest["error"]["status"], "NOT_FOUND");
        assert_eq!(rest["error"]["details"][0]["domain"], DOMAIN);
    }

    #[test]
    fn invalid_params_name_the_field() {
        let e = ApiError::invalid_field("message.parts", "must not be empty");
        assert_eq!(e.classify().code, -32602);
        assert_eq!(e.details()[1]["fieldViolations"][0]["field"], "message.parts");
    }

    #[test]
    fn grpc_statuses_carry_the_same_reason_and_field() {
        use tonic_types::StatusExt;
        let status = ApiError::TaskNotFound("t1".into()).to_grpc();
        assert_eq!(status.code(), tonic::Code::NotFound);
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!((info.reason.as_str(), info.domain.as_str()), ("TASK_NOT_FOUND", DOMAIN));
        assert_eq!(info.metadata.get("taskId").map(String::as_str), Some("t1"));
        let status = ApiError::invalid_field("message.parts", "must not be empty").to_grpc();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let bad = status.get_details_bad_request().expect("BadRequest");
        assert_eq!(bad.field_violations[0].field, "message.parts");
        let status = ApiError::RateLimited { retry_after: 2 }.to_grpc();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.get_details_retry_info().is_some());
        assert_eq!(ApiError::Unauthenticated("no".into()).to_grpc().code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn internal_errors_say_nothing_about_internals() {
        let e = ApiError::from(StoreError::Corrupt("relation tasks has SQL secrets".into()));
        assert_eq!(e, ApiError::Internal);
        assert!(!e.to_jsonrpc().to_string().contains("SQL"));
    }
}
