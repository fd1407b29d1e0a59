//! The checks every binding shares before a request is decoded (paths,
//! bodies, content types, NUL characters, tenants, identifiers), and the
//! pieces [`crate::request`] builds its one-pass checks from. Every failure
//! names the field at fault.

use serde::de::DeserializeOwned;
use serde_json::Value;
use switchyard_engine::TaskId;

use crate::error::ApiError;

/// Histories are capped so one call cannot ask for an unbounded read.
pub const MAX_HISTORY: i64 = 1000;

/// The longest identifier a client may give: a message id, context id,
/// tenant, idempotency key, push config id. Text and data are bounded by
/// the request body limit instead.
pub const MAX_ID_BYTES: usize = 256;

/// The first string in `value` (keys included) holding a NUL character,
/// as a field path: PostgreSQL stores no NUL in text or JSON, so such a
/// request is refused up front, by name, instead of failing in the store.
pub fn nul_field(value: &Value, path: &str) -> Option<String> {
    match value {
        Value::String(s) => s.contains('\0').then(|| path.to_owned()),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| nul_field(v, &format!("{path}[{i}]"))),
        Value::Object(fields) => fields.iter().find_map(|(k, v)| {
            let inner = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
            if k.contains('\0') { Some(inner) } else { nul_field(v, &inner) }
        }),
        _ => None,
    }
}

/// Refuses NUL anywhere in a request's params.
pub fn no_nul(value: &Value) -> Result<(), ApiError> {
    match nul_field(value, "") {
        Some(field) => Err(ApiError::invalid_field(&field, "must not contain the NUL character")),
        None => Ok(()),
    }
}

/// An identifier a client gave: at most [`MAX_ID_BYTES`], no NUL and no
/// other control character (an id is echoed into logs, headers and other
/// agents' requests, where such characters forge lines and escapes).
pub fn identifier(value: &str, field: &str) -> Result<(), ApiError> {
    if value.len() > MAX_ID_BYTES {
        return Err(ApiError::invalid_field(field, format!("must be at most {MAX_ID_BYTES} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(field, "must not contain control characters (NUL among them)"));
    }
    Ok(())
}

/// A request's path and query as the client sent them: every segment and
/// every query value, percent-decoded, must be UTF-8 without control
/// characters (NUL among them). Checked before routing, so no such value
/// reaches a handler or the store by any route; the error names where.
pub fn uri(uri: &axum::http::Uri) -> Result<(), ApiError> {
    for segment in uri.path().split('/') {
        clean_text(segment).map_err(|why| ApiError::invalid_field("path", format!("a segment {why}")))?;
    }
    for pair in uri.query().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if let Err(why) = clean_text(name) {
            return Err(ApiError::invalid_field("query", format!("a parameter name {why}")));
        }
        let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
        clean_text(value).map_err(|why| ApiError::invalid_field(&format!("query parameter {name}"), why))?;
    }
    Ok(())
}

/// Why percent-encoded text is not clean text, if it is not.
fn clean_text(raw: &str) -> Result<(), &'static str> {
    let decoded =
        percent_encoding::percent_decode_str(raw).decode_utf8().map_err(|_| "is not UTF-8 once percent-decoded")?;
    if decoded.chars().any(char::is_control) {
        return Err("holds a control character (NUL among them)");
    }
    Ok(())
}

/// The most parts one message may have.
pub const MAX_PARTS: usize = 1000;

/// The largest metadata object (message or request), serialized.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;

/// The longest tenant name.
pub const MAX_TENANT_BYTES: usize = 64;

/// Names a tenant cannot take: they would read as routes.
const RESERVED_TENANTS: [&str; 8] =
    ["tasks", "extendedAgentCard", "admin", "healthz", "readyz", "metrics", "_switchyard", "v1"];

/// A tenant name: 1 to [`MAX_TENANT_BYTES`] letters, digits, `.`, `_` and
/// `-`, not starting with a dot, not a route word. Checked as given: never
/// trimmed, case-folded or otherwise aliased to another tenant.
pub fn tenant(value: &str) -> Result<(), ApiError> {
    let plain = value.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if value.is_empty() || value.len() > MAX_TENANT_BYTES || !plain || value.starts_with('.') {
        return Err(ApiError::invalid_field(
            "tenant",
            format!("must be 1-{MAX_TENANT_BYTES} letters, digits, '.', '_' or '-', not starting with '.'"),
        ));
    }
    if RESERVED_TENANTS.contains(&value) {
        return Err(ApiError::invalid_field("tenant", format!("{value:?} is reserved")));
    }
    Ok(())
}

/// Decodes a request object, turning serde's complaint into an error
/// naming the field it is about (`what` and the path below it). A field
/// the model does not know is ignored, as the specification asks of
/// receivers, but counted (`switchyard_json_unknown_fields_total`) and
/// logged at debug with its path; with `strict` (`--strict-json`) it is
/// refused, by name.
pub fn decode<T: DeserializeOwned>(value: Value, what: &str, strict: bool) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(ApiError::invalid_field(what, "must be a JSON object"));
    }
    let mut track = serde_path_to_error::Track::new();
    let mut unknown = Vec::new();
    let decoded = serde_ignored::deserialize(serde_path_to_error::Deserializer::new(value, &mut track), |path| {
        unknown.push(path.to_string());
    });
    let decoded = decoded.map_err(|e| {
        let field = match track.path().to_string().as_str() {
            "." => what.to_owned(),
            path => format!("{what}.{path}"),
        };
        ApiError::invalid_field(&field, e.to_string())
    })?;
    for path in unknown {
        let field = format!("{what}.{path}");
        metrics::counter!("switchyard_json_unknown_fields_total").increment(1);
        tracing::debug!(%field, "a field this server does not know was ignored");
        if strict {
            return Err(ApiError::invalid_field(
                &field,
                "is not a field of this request (the server runs --strict-json)",
            ));
        }
    }
    Ok(decoded)
}

/// What a request's headers add to a message: an `Idempotency-Key`
/// (deduplicating like a `messageId`) and the W3C trace context, which is
/// stored with the task so work done later joins the caller's trace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Intake {
    pub idempotency_key: Option<String>,
    pub trace_context: Option<Value>,
    /// The request came through the v0.3 binding: webhooks it registers
    /// get v0.3 payloads.
    pub v03: bool,
}

impl Intake {
    pub fn from_headers(headers: &axum::http::HeaderMap) -> Intake {
        let header = |name: &str| {
            headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
        };
        let trace_context = header("traceparent").filter(|t| valid_traceparent(t)).map(|traceparent| {
            let mut context = serde_json::json!({ "traceparent": traceparent });
            if let Some(state) = header("tracestate").filter(|s| s.len() <= 512) {
                context["tracestate"] = Value::String(state);
            }
            context
        });
        Intake { idempotency_key: header("idempotency-key"), trace_context, v03: false }
    }
}

/// `version-traceid-parentid-flags`, lower-case hex, ids not all zero (W3C).
fn valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1].bytes().any(|b| b != b'0')
        && hex(parts[2], 16)
        && parts[2].bytes().any(|b| b != b'0')
        && hex(parts[3], 2)
}

/// A task id from a client: ours are UUIDs, so anything else names no task.
pub fn task_id(raw: &str) -> Result<TaskId, ApiError> {
    task_id_in(raw, "id")
}

/// [`task_id`] for a field of another name: a NUL or another control
/// character is a malformed request, not a task that is not there.
pub fn task_id_in(raw: &str, field: &str) -> Result<TaskId, ApiError> {
    if raw.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(field, "holds a control character (NUL among them)"));
    }
    raw.parse().map_err(|_| ApiError::TaskNotFound(raw.to_owned()))
}

/// A request's body, whole: at most `limit` bytes, arrived within `timeout`.
pub async fn body_bytes(
    body: axum::body::Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<axum::body::Bytes, ApiError> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(ApiError::PayloadTooLarge(limit)),
        Err(_) => {
            Err(ApiError::InvalidRequest(format!("the request body did not arrive within {} s", timeout.as_secs_f64())))
        }
    }
}

/// A request that changes something must say its body is JSON
/// (`application/json`, or HTTP+JSON's `application/a2a+json`). A web page
/// can make a browser send `text/plain` or a body-less POST to any origin
/// without asking; it cannot send these without a CORS preflight, which this
/// server does not grant. So no page a caller visits can act in its name.
pub fn json_content_type(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let media = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match media.as_deref() {
        Some("application/json" | "application/a2a+json") => Ok(()),
        Some(other) => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {other:?} is not accepted: send application/json or application/a2a+json"
        ))),
        None => Err(ApiError::UnsupportedMediaType(
            "a Content-Type is required: application/json or application/a2a+json".into(),
        )),
    }
}

/// A task id in a field that is not the operation's subject (a filter):
/// a malformed one is an invalid parameter, not a missing task.
pub fn task_id_field(raw: &str, field: &str) -> Result<TaskId, ApiError> {
    raw.parse().map_err(|_| ApiError::invalid_field(field, "must be a task id"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_traceparents_are_kept() {
        assert!(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        assert!(!valid_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
        assert!(!valid_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
        assert!(!valid_traceparent("garbage"));
    }

    #[test]
    fn tenants_are_bounded_and_not_route_words() {
        for bad in ["", " acme", "acme ", "ACME\n", ".hidden", "tasks", "a/b", &"x".repeat(MAX_TENANT_BYTES + 1)] {
            assert!(tenant(bad).is_err(), "{bad:?}");
        }
        for good in ["acme", "Acme-2.prod_eu", &"x".repeat(MAX_TENANT_BYTES)] {
            assert!(tenant(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn paths_and_queries_with_bad_bytes_are_refused_by_where() {
        let check = |uri: &str| uri.parse::<axum::http::Uri>().map(|u| uri_check(&u)).expect("uri");
        fn uri_check(u: &axum::http::Uri) -> Option<String> {
            uri(u).err().map(|e| e.details()[1]["fieldViolations"][0]["field"].as_str().unwrap_or("").to_owned())
        }
        assert_eq!(check("/tasks/abc?pageSize=5&contextId=x%20y"), None);
        assert_eq!(check("/tasks/a%00b"), Some("path".into()));
        assert_eq!(check("/acme%FF/tasks"), Some("path".into()));
        assert_eq!(check("/tasks?contextId=a%00"), Some("query parameter contextId".into()));
        assert_eq!(check("/tasks?contextId=%C3%28"), Some("query parameter contextId".into()));
        assert_eq!(check("/tasks?x%01=1"), Some("query".into()));
        assert_eq!(check("/tasks?status=%1b%5b31m"), Some("query parameter status".into()));
    }
}
