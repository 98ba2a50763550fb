//! The emulator's error type: every way an SLS request or a control call can
//! fail, with the HTTP status and `errorCode` the real service uses.
//!
//! Codes and statuses follow the reference (`/work/shared/reference/sls.md`
//! §5). Where the reference marks a status unverified, the choice is listed
//! in `SlsError::status` with the reason. Messages name the object and, where
//! there is one, the fix; they never contain an access-key secret.

use axum::http::StatusCode;

/// A failed SLS API or control-handle call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlsError {
    #[error("project {project:?} does not exist; create it with the builder or the control handle")]
    ProjectNotExist { project: String },
    #[error("project {project:?} already exists")]
    ProjectAlreadyExist { project: String },
    #[error("logstore {logstore:?} does not exist in project {project:?}")]
    LogStoreNotExist { project: String, logstore: String },
    #[error("logstore {logstore:?} already exists in project {project:?}")]
    LogStoreAlreadyExist { project: String, logstore: String },
    #[error("shard {shard} does not exist in logstore {logstore:?}")]
    ShardNotExist { logstore: String, shard: u32 },
    #[error("shard {shard} of logstore {logstore:?} is read-only (it was split); write to its children instead")]
    ShardReadOnly { logstore: String, shard: u32 },
    #[error("{message}")]
    ParameterInvalid { message: String },
    #[error("{message}")]
    InvalidCursor { message: String },
    #[error("{message}")]
    JsonInfoInvalid { message: String },
    #[error("consumer group {group:?} already exists in logstore {logstore:?}")]
    ConsumerGroupAlreadyExist { logstore: String, group: String },
    #[error("consumer group {group:?} does not exist in logstore {logstore:?}")]
    ConsumerGroupNotExist { logstore: String, group: String },
    #[error("logstore {logstore:?} already has {limit} consumer groups; delete one first")]
    ConsumerGroupQuotaExceed { logstore: String, limit: usize },
    #[error("consumer {consumer:?} does not exist in consumer group {group:?} (never sent a heartbeat, or timed out)")]
    ConsumerNotExist { group: String, consumer: String },
    #[error("shard {shard} of consumer group {group:?} is not held by consumer {consumer:?}")]
    ConsumerNotMatch { group: String, consumer: String, shard: u32 },
    #[error("non-exist consumer {consumer:?} with non-empty body of heartbeat message; release all shards and heartbeat with []")]
    NotExistConsumerWithBody { consumer: String },
    #[error("Content-MD5 {received} does not match the body (expected {expected})")]
    InvalidContentMd5 { received: String, expected: String },
    #[error("{message}")]
    Unauthorized { message: String },
    #[error("signature {received:?} does not match; the server signed this string: {string_to_sign:?}")]
    SignatureNotMatch { received: String, string_to_sign: String },
    #[error("Date {date:?} is more than 15 minutes away from server time; re-sign the request with a fresh Date")]
    RequestTimeExpired { date: String },
    #[error("Date does not exist in http header")]
    MissingDate,
    #[error("Date {date:?} must follow RFC822 (e.g. \"Tue, 01 Jul 2025 08:00:00 GMT\")")]
    InvalidDateFormat { date: String },
    #[error("x-log-apiversion does not exist in http header")]
    MissingApiVersion,
    #[error("x-log-apiversion {version:?} is unsupported; send 0.6.0")]
    InvalidApiVersion { version: String },
    #[error("x-log-signaturemethod does not exist in http header")]
    MissingSignatureMethod,
    #[error("x-log-signaturemethod {method:?} is unsupported; send hmac-sha1")]
    InvalidSignatureMethod { method: String },
    #[error("Host does not exist in http header")]
    MissingHost,
    #[error("{message}")]
    NotFound { message: String },
}

impl SlsError {
    /// The `errorCode` of the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            SlsError::ProjectNotExist { .. } => "ProjectNotExist",
            SlsError::ProjectAlreadyExist { .. } => "ProjectAlreadyExist",
            SlsError::LogStoreNotExist { .. } => "LogStoreNotExist",
            SlsError::LogStoreAlreadyExist { .. } => "LogStoreAlreadyExist",
            SlsError::ShardNotExist { .. } => "ShardNotExist",
            SlsError::ShardReadOnly { .. } => "ShardReadOnly",
            SlsError::ParameterInvalid { .. } => "ParameterInvalid",
            SlsError::InvalidCursor { .. } => "InvalidCursor",
            SlsError::JsonInfoInvalid { .. } => "JsonInfoInvalid",
            SlsError::ConsumerGroupAlreadyExist { .. } => "ConsumerGroupAlreadyExist",
            SlsError::ConsumerGroupNotExist { .. } => "ConsumerGroupNotExist",
            SlsError::ConsumerGroupQuotaExceed { .. } => "ConsumerGroupQuotaExceed",
            SlsError::ConsumerNotExist { .. } => "ConsumerNotExist",
            SlsError::ConsumerNotMatch { .. } => "ConsumerNotMatch",
            SlsError::NotExistConsumerWithBody { .. } => "NotExistConsumerWithBody",
            SlsError::InvalidContentMd5 { .. } => "InvalidContentMD5",
            SlsError::Unauthorized { .. } => "Unauthorized",
            SlsError::SignatureNotMatch { .. } => "SignatureNotMatch",
            SlsError::RequestTimeExpired { .. } => "RequestTimeExpired",
            SlsError::MissingDate => "MissingDate",
            SlsError::InvalidDateFormat { .. } => "InvalidDateFormat",
            SlsError::MissingApiVersion => "MissingAPIVersion",
            SlsError::InvalidApiVersion { .. } => "InvalidAPIVersion",
            SlsError::MissingSignatureMethod => "MissingSignatureMethod",
            SlsError::InvalidSignatureMethod { .. } => "InvalidSignatureMethod",
            SlsError::MissingHost => "MissingHost",
            SlsError::NotFound { .. } => "NotFound",
        }
    }

    /// The HTTP status. Unverified statuses (reference §5) are chosen as:
    /// 401 for `SignatureNotMatch` (an authentication failure, like
    /// `Unauthorized`), 404 for `ConsumerGroupNotExist` (like the other
    /// `*NotExist` codes of named resources), and 400 for `InvalidCursor`,
    /// `ConsumerNotExist`, `ConsumerNotMatch`, `ConsumerGroupQuotaExceed` and
    /// `InvalidContentMD5` (request-level refusals).
    pub fn status(&self) -> StatusCode {
        match self {
            SlsError::ProjectNotExist { .. }
            | SlsError::LogStoreNotExist { .. }
            | SlsError::ConsumerGroupNotExist { .. }
            | SlsError::NotFound { .. } => StatusCode::NOT_FOUND,
            SlsError::Unauthorized { .. } | SlsError::SignatureNotMatch { .. } => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub(crate) fn parameter(message: impl Into<String>) -> SlsError {
        SlsError::ParameterInvalid { message: message.into() }
    }

    pub(crate) fn json(message: impl Into<String>) -> SlsError {
        SlsError::JsonInfoInvalid { message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses_match_the_reference() {
        let already = SlsError::ConsumerGroupAlreadyExist { logstore: "l".into(), group: "g".into() };
        assert_eq!((already.code(), already.status()), ("ConsumerGroupAlreadyExist", StatusCode::BAD_REQUEST));
        let missing = SlsError::LogStoreNotExist { project: "p".into(), logstore: "l".into() };
        assert_eq!((missing.code(), missing.status()), ("LogStoreNotExist", StatusCode::NOT_FOUND));
        let signature = SlsError::SignatureNotMatch { received: "x".into(), string_to_sign: "y".into() };
        assert_eq!((signature.code(), signature.status()), ("SignatureNotMatch", StatusCode::UNAUTHORIZED));
        assert_eq!(SlsError::MissingApiVersion.code(), "MissingAPIVersion");
    }
}
