//! `A2A-Version` negotiation (PROTOCOL.md §1.1).

use axum::http::HeaderMap;

use crate::error::ApiError;

/// The protocol versions this server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V03,
}

/// The version a request names in its `A2A-Version` header or query
/// parameter; `None` when it names none (which the spec reads as 0.3).
pub fn requested(headers: &HeaderMap, query: Option<&str>) -> Result<Option<Version>, ApiError> {
    let from_header = headers.get("a2a-version").map(|v| v.to_str().unwrap_or("?").trim().to_owned());
    let from_query = query.and_then(|q| {
        q.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            key.eq_ignore_ascii_case("A2A-Version").then(|| value.trim().to_owned())
        })
    });
    let Some(value) = from_header.or(from_query).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    // Major.minor only; a patch number is tolerated but ignored.
    let mut parts = value.split('.');
    match (parts.next(), parts.next()) {
        (Some("1"), None | Some(_)) if value.split('.').all(|p| p.chars().all(|c| c.is_ascii_digit())) => {
            Ok(Some(Version::V1))
        }
        (Some("0"), Some("3")) => Ok(Some(Version::V03)),
        _ => Err(ApiError::VersionNotSupported(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("A2A-Version", HeaderValue::from_str(value).expect("header"));
        h
    }

    #[test]
    fn versions_are_read_from_header_or_query() {
        assert_eq!(requested(&with("1.0"), None).ok(), Some(Some(Version::V1)));
        assert_eq!(requested(&with("1"), None).ok(), Some(Some(Version::V1)));
        assert_eq!(requested(&with("0.3"), None).ok(), Some(Some(Version::V03)));
        assert_eq!(requested(&HeaderMap::new(), None).ok(), Some(None));
        assert_eq!(requested(&with(""), None).ok(), Some(None));
        assert_eq!(requested(&HeaderMap::new(), Some("x=1&A2A-Version=1.0")).ok(), Some(Some(Version::V1)));
        for bad in ["2.0", "0.2", "1.x", "banana"] {
            assert!(matches!(requested(&with(bad), None), Err(ApiError::VersionNotSupported(_))), "{bad}");
        }
    }
}
