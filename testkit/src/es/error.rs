//! Elasticsearch's error JSON, and the emulator's own Rust-side errors.
//!
//! `ApiError` is what an HTTP handler returns for a failed request; it renders
//! as `{"error":{"root_cause":[...],"type","reason",...},"status":N}` exactly
//! as Elasticsearch does, or as the plain-string form
//! `{"error":"...","status":N}` that a few routing-layer failures use.
//! `ErrorCause` is the inner object, also used on its own inside bulk items
//! and shard failures. `EsEmulatorError` is for Rust callers of the control
//! API (bad fixtures, bad configuration); it never goes over the wire.

use serde_json::{json, Map, Value};

/// One error object: `type`, `reason`, type-specific keys, `caused_by`.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorCause {
    pub error_type: String,
    pub reason: String,
    /// Keys such as `index`, `index_uuid`, `shard`, `line`, `col`. Boxed
    /// to keep `Result<_, ErrorCause>` small on the hot paths.
    pub metadata: Box<Map<String, Value>>,
    pub caused_by: Option<Box<ErrorCause>>,
}

impl ErrorCause {
    pub fn new(error_type: impl Into<String>, reason: impl Into<String>) -> ErrorCause {
        ErrorCause { error_type: error_type.into(), reason: reason.into(), metadata: Box::default(), caused_by: None }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ErrorCause {
        self.metadata.insert(key.to_string(), value.into());
        self
    }

    pub fn caused_by(mut self, cause: ErrorCause) -> ErrorCause {
        self.caused_by = Some(Box::new(cause));
        self
    }

    /// Adds the `index_uuid`, `shard`, `index` triple Elasticsearch attaches to
    /// errors raised inside a shard.
    pub fn on_index(self, index: &str, index_uuid: &str) -> ErrorCause {
        self.with("index_uuid", index_uuid).with("shard", "0").with("index", index)
    }

    /// The cause without `caused_by`, as it appears in `root_cause`.
    fn shallow(&self) -> ErrorCause {
        ErrorCause { caused_by: None, ..self.clone() }
    }

    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("type".into(), Value::String(self.error_type.clone()));
        object.insert("reason".into(), Value::String(self.reason.clone()));
        for (key, value) in self.metadata.iter() {
            object.insert(key.clone(), value.clone());
        }
        if let Some(cause) = &self.caused_by {
            object.insert("caused_by".into(), cause.to_json());
        }
        Value::Object(object)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum ErrorBody {
    Structured {
        cause: ErrorCause,
        root_causes: Vec<ErrorCause>,
        extra: Map<String, Value>,
    },
    /// `{"error":"text","status":N}`, used by routing-layer failures.
    PlainText(String),
    /// Status only: HEAD requests, and OpenSearch's security plugin which
    /// answers 401 with the bare text `Unauthorized`.
    RawText(String),
}

/// A failed request: HTTP status plus the body Elasticsearch would send.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    /// Boxed so that `Result<_, ApiError>` stays small.
    body: Box<ErrorBody>,
    /// Extra response headers, e.g. `WWW-Authenticate`.
    pub headers: Vec<(String, String)>,
}

impl ApiError {
    pub fn new(status: u16, cause: ErrorCause) -> ApiError {
        let root_causes = vec![cause.shallow()];
        ApiError {
            status,
            body: Box::new(ErrorBody::Structured { cause, root_causes, extra: Map::new() }),
            headers: Vec::new(),
        }
    }

    pub fn plain(status: u16, message: impl Into<String>) -> ApiError {
        ApiError { status, body: Box::new(ErrorBody::PlainText(message.into())), headers: Vec::new() }
    }

    pub fn raw_text(status: u16, text: impl Into<String>) -> ApiError {
        ApiError { status, body: Box::new(ErrorBody::RawText(text.into())), headers: Vec::new() }
    }

    /// Replaces `root_cause` (search failures list the per-shard causes).
    pub fn with_root_causes(mut self, causes: Vec<ErrorCause>) -> ApiError {
        if let ErrorBody::Structured { root_causes, .. } = self.body.as_mut() {
            *root_causes = causes.iter().map(ErrorCause::shallow).collect();
        }
        self
    }

    /// Adds a key next to `type`/`reason` in the outer error object only.
    pub fn with_outer(mut self, key: &str, value: Value) -> ApiError {
        if let ErrorBody::Structured { extra, .. } = self.body.as_mut() {
            extra.insert(key.to_string(), value);
        }
        self
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> ApiError {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn error_type(&self) -> Option<&str> {
        match self.body.as_ref() {
            ErrorBody::Structured { cause, .. } => Some(&cause.error_type),
            ErrorBody::PlainText(_) | ErrorBody::RawText(_) => None,
        }
    }

    /// The response body, or `None` when the body is not JSON.
    pub fn to_json(&self) -> Option<Value> {
        match self.body.as_ref() {
            ErrorBody::Structured { cause, root_causes, extra } => {
                let mut error = Map::new();
                error.insert("root_cause".into(), Value::Array(root_causes.iter().map(ErrorCause::to_json).collect()));
                if let Value::Object(inner) = cause.to_json() {
                    for (key, value) in inner {
                        if key == "caused_by" {
                            continue;
                        }
                        error.insert(key, value);
                    }
                }
                for (key, value) in extra {
                    error.insert(key.clone(), value.clone());
                }
                if let Some(caused_by) = &cause.caused_by {
                    error.insert("caused_by".into(), caused_by.to_json());
                }
                Some(json!({"error": Value::Object(error), "status": self.status}))
            }
            ErrorBody::PlainText(message) => Some(json!({"error": message, "status": self.status})),
            ErrorBody::RawText(_) => None,
        }
    }

    pub fn raw_body(&self) -> Option<&str> {
        match self.body.as_ref() {
            ErrorBody::RawText(text) => Some(text),
            _ => None,
        }
    }

    // Constructors for the error kinds the emulator raises in several places.

    pub fn bad_request(error_type: &str, reason: impl Into<String>) -> ApiError {
        ApiError::new(400, ErrorCause::new(error_type, reason))
    }

    pub fn illegal_argument(reason: impl Into<String>) -> ApiError {
        ApiError::bad_request("illegal_argument_exception", reason)
    }

    pub fn parsing(reason: impl Into<String>) -> ApiError {
        ApiError::bad_request("parsing_exception", reason)
    }

    pub fn validation(problems: &[&str]) -> ApiError {
        let mut reason = String::from("Validation Failed: ");
        for (position, problem) in problems.iter().enumerate() {
            reason.push_str(&format!("{}: {};", position + 1, problem));
        }
        ApiError::bad_request("action_request_validation_exception", reason)
    }

    pub fn index_not_found(index: &str) -> ApiError {
        let cause = ErrorCause::new("index_not_found_exception", format!("no such index [{index}]"))
            .with("resource.type", "index_or_alias")
            .with("resource.id", index)
            .with("index_uuid", "_na_")
            .with("index", index);
        ApiError::new(404, cause)
    }

    pub fn no_handler(method: &str, uri: &str) -> ApiError {
        ApiError::plain(400, format!("no handler found for uri [{uri}] and method [{method}]"))
    }

    /// A search-level failure caused by one shard-level problem.
    pub fn search_phase(status: u16, shard_cause: ErrorCause, failed_shards: Vec<Value>) -> ApiError {
        let outer =
            ErrorCause::new("search_phase_execution_exception", "all shards failed").caused_by(shard_cause.clone());
        ApiError::new(status, outer)
            .with_root_causes(vec![shard_cause])
            .with_outer("phase", Value::String("query".into()))
            .with_outer("grouped", Value::Bool(true))
            .with_outer("failed_shards", Value::Array(failed_shards))
    }
}

/// Misuse of the emulator's Rust or control API. Never sent as an
/// Elasticsearch response body except inside `/_testkit/...` answers.
#[derive(Debug, thiserror::Error)]
pub enum EsEmulatorError {
    #[error("es emulator: version {text:?} is not MAJOR.MINOR.PATCH; pass something like \"8.15.0\"")]
    InvalidVersion { text: String },
    #[error("es emulator: distribution {text:?} is unknown; use \"elasticsearch\" or \"opensearch\"")]
    UnknownDistribution { text: String },
    #[error(
        "es emulator: {distribution} {version} is not emulated; use Elasticsearch 6.8/7.x/8.x or OpenSearch 1.x/2.x"
    )]
    UnsupportedVersion { distribution: String, version: String },
    #[error("es emulator fixture: {problem}")]
    InvalidFixture { problem: String },
    #[error("es emulator: fixture document {position} was rejected by index {index:?}: {reason}")]
    FixtureRejected { position: usize, index: String, reason: String },
    #[error("es emulator: {0}")]
    Api(String),
}

impl From<ApiError> for EsEmulatorError {
    fn from(error: ApiError) -> EsEmulatorError {
        let text = error
            .to_json()
            .map(|body| body.to_string())
            .or_else(|| error.raw_body().map(str::to_string))
            .unwrap_or_default();
        EsEmulatorError::Api(format!("status {}: {text}", error.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_error_has_root_cause_type_reason_and_status() {
        let error = ApiError::index_not_found("logs-x");
        let body = error.to_json().unwrap();
        assert_eq!(body["status"], 404);
        assert_eq!(body["error"]["type"], "index_not_found_exception");
        assert_eq!(body["error"]["reason"], "no such index [logs-x]");
        assert_eq!(body["error"]["root_cause"][0]["type"], "index_not_found_exception");
        assert_eq!(body["error"]["index"], "logs-x");
    }

    #[test]
    fn caused_by_nests_and_root_cause_stays_shallow() {
        let error = ApiError::new(
            400,
            ErrorCause::new("media_type_header_exception", "Invalid media-type value on headers [Accept]")
                .caused_by(ErrorCause::new("status_exception", "inner")),
        );
        let body = error.to_json().unwrap();
        assert_eq!(body["error"]["caused_by"]["type"], "status_exception");
        assert!(body["error"]["root_cause"][0].get("caused_by").is_none());
    }

    #[test]
    fn plain_errors_put_a_string_in_error() {
        let body = ApiError::plain(406, "not supported").to_json().unwrap();
        assert_eq!(body, json!({"error": "not supported", "status": 406}));
    }
}
