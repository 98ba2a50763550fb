//! Reading HEC credentials and channels from a request (reference §2, §5).
//!
//! Guarantees: the `Authorization` header wins over `?token=`; a header that
//! is neither `Splunk <token>` nor Basic with a password is "malformed" (code
//! 3), never "missing". Pure: it classifies, it never looks tokens up and
//! never logs what it reads.

use axum::http::HeaderMap;
use base64::Engine;

/// Where the client put its token, if anywhere.
#[derive(PartialEq, Eq)]
pub(crate) enum Credentials {
    Missing,
    Malformed,
    Header(String),
    QueryString(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Credentials::Missing => "Missing",
            Credentials::Malformed => "Malformed",
            Credentials::Header(_) => "Header(<redacted>)",
            Credentials::QueryString(_) => "QueryString(<redacted>)",
        })
    }
}

pub(crate) fn credentials(headers: &HeaderMap, query_token: Option<&str>) -> Credentials {
    match headers.get("authorization") {
        Some(value) => match value.to_str() {
            Ok(value) => from_authorization_header(value),
            Err(_) => Credentials::Malformed,
        },
        None => match query_token {
            Some(token) if !token.is_empty() => Credentials::QueryString(token.to_string()),
            _ => Credentials::Missing,
        },
    }
}

fn from_authorization_header(value: &str) -> Credentials {
    if let Some(token) = value.strip_prefix("Splunk ") {
        return if token.is_empty() || token.contains(' ') {
            Credentials::Malformed
        } else {
            Credentials::Header(token.to_string())
        };
    }
    if let Some(encoded) = value.strip_prefix("Basic ") {
        // The user name is ignored; only the password carries the token.
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok();
        let text = decoded.and_then(|bytes| String::from_utf8(bytes).ok());
        return match text.as_deref().and_then(|text| text.split_once(':')) {
            Some((_, password)) if !password.is_empty() => Credentials::Header(password.to_string()),
            _ => Credentials::Malformed,
        };
    }
    Credentials::Malformed
}

/// Whether `channel` is a GUID (`8-4-4-4-12` hex digits, either case).
pub(crate) fn is_guid(channel: &str) -> bool {
    let groups: Vec<&str> = channel.split('-').collect();
    let lengths = [8, 4, 4, 4, 12];
    groups.len() == lengths.len()
        && groups
            .iter()
            .zip(lengths)
            .all(|(group, length)| group.len() == length && group.bytes().all(|byte| byte.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", value.parse().unwrap());
        headers
    }

    #[test]
    fn header_forms() {
        assert_eq!(credentials(&with_authorization("Splunk abc"), None), Credentials::Header("abc".into()));
        assert_eq!(credentials(&with_authorization("Bearer abc"), None), Credentials::Malformed);
        assert_eq!(credentials(&with_authorization("abc"), None), Credentials::Malformed);
        assert_eq!(credentials(&with_authorization("Splunk "), None), Credentials::Malformed);
        assert_eq!(credentials(&with_authorization("splunk abc"), None), Credentials::Malformed);
        let basic = base64::engine::general_purpose::STANDARD.encode("anyone:abc");
        assert_eq!(
            credentials(&with_authorization(&format!("Basic {basic}")), None),
            Credentials::Header("abc".into())
        );
        assert_eq!(credentials(&with_authorization("Basic !!!"), None), Credentials::Malformed);
    }

    #[test]
    fn query_string_only_without_a_header() {
        assert_eq!(credentials(&HeaderMap::new(), Some("abc")), Credentials::QueryString("abc".into()));
        assert_eq!(credentials(&HeaderMap::new(), None), Credentials::Missing);
        assert_eq!(credentials(&with_authorization("Splunk h"), Some("q")), Credentials::Header("h".into()));
        assert_eq!(format!("{:?}", Credentials::Header("secret".into())), "Header(<redacted>)");
    }

    #[test]
    fn guid_shape() {
        assert!(is_guid("0AF1C3D2-1234-4abc-8def-00112233aabb"));
        assert!(!is_guid("0AF1C3D2-1234-4abc-8def-00112233aab"));
        assert!(!is_guid("not-a-guid"));
        assert!(!is_guid("0AF1C3D2x1234-4abc-8def-00112233aabb"));
    }
}
