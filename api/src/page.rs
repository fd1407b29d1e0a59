//! Opaque page tokens for ListTasks: the position of the last task shown,
//! bound to the filter it was produced under.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use switchyard_engine::{Cursor, TaskFilter, TaskId};

use crate::error::ApiError;

#[derive(Serialize, Deserialize)]
struct Token {
    /// Status time of the last task on the previous page.
    t: DateTime<Utc>,
    /// Its id.
    i: uuid::Uuid,
    /// Fingerprint of the filter; a token is only valid under the same one.
    f: String,
}

fn fingerprint(filter: &TaskFilter) -> String {
    // FNV-1a: stable across processes and releases (std's hasher is not).
    let text = format!(
        "{:?}|{:?}|{:?}|{:?}",
        filter.context_id,
        filter.state.map(|s| s.as_str()),
        filter.status_after.map(|t| t.to_rfc3339()),
        filter.parent.map(|p| p.to_string())
    );
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{hash:016x}")
}

/// Encodes where the next page starts.
pub fn encode(cursor: Cursor, filter: &TaskFilter) -> String {
    let token = Token { t: cursor.status_at, i: cursor.id.0, f: fingerprint(filter) };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
}

/// Decodes a client's token; `""` means the first page.
pub fn decode(token: &str, filter: &TaskFilter) -> Result<Option<Cursor>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || ApiError::invalid_field("pageToken", "is not a token this server issued for these filters");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let token: Token = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if token.f != fingerprint(filter) {
        return Err(invalid());
    }
    Ok(Some(Cursor { status_at: token.t, id: TaskId(token.i) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_other_filters_and_garbage() {
        let filter = TaskFilter { context_id: Some("c".into()), ..TaskFilter::default() };
        let cursor = Cursor { status_at: Utc::now(), id: TaskId::new() };
        let token = encode(cursor, &filter);
        assert_eq!(decode(&token, &filter).ok().flatten(), Some(cursor));
        assert!(decode(&token, &TaskFilter::default()).is_err());
        assert!(decode("not-a-token!", &filter).is_err());
        assert_eq!(decode("", &filter).ok(), Some(None));
    }
}
