//! One HTTP attempt against Elasticsearch, with endpoint failover.
//!
//! `EsClient::send` makes exactly one attempt on the current endpoint. A
//! transport failure (connection refused or dropped, timeout) or a 5xx
//! moves the cursor to the next endpoint, so the caller's next attempt goes
//! elsewhere; a 429 does not (the whole cluster is busy). Callers own
//! retries and backoff.
//!
//! Guarantees: the `Authorization` header is marked sensitive and never
//! formatted; `EsError` messages carry the endpoint, status, Elasticsearch's
//! error type and reason, never a credential or a request body. Error bodies
//! are read whether `error` is an object or a plain string, and a body that
//! is not JSON at all is reported as such (never a panic).

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::Method;
use serde_json::Value;

use super::connection::{EsAuthStrategy, EsConnectionConfig};

/// A request body and how to send it.
#[derive(Debug, Clone)]
pub struct RequestBody {
    pub bytes: Bytes,
    pub content_type: &'static str,
    /// `bytes` are already gzip-compressed.
    pub gzipped: bool,
}

impl RequestBody {
    pub fn json(value: &Value) -> RequestBody {
        RequestBody {
            bytes: Bytes::from(serde_json::to_vec(value).expect("JSON values serialise")),
            content_type: "application/json",
            gzipped: false,
        }
    }
}

/// Gzip-compresses `bytes` at the default level.
pub fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder =
        flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 4 + 64), flate2::Compression::fast());
    encoder.write_all(bytes)?;
    encoder.finish()
}

/// Any HTTP answer.
#[derive(Debug, Clone)]
pub struct EsResponse {
    pub status: u16,
    pub body: Bytes,
    pub endpoint: Arc<str>,
}

impl EsResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `Ok(self)` for 2xx, else the error the body describes.
    pub fn into_success(self) -> Result<EsResponse, EsError> {
        if self.is_success() {
            Ok(self)
        } else {
            Err(self.into_error())
        }
    }

    /// The error this (non-2xx) answer describes.
    pub fn into_error(self) -> EsError {
        let (error_type, reason) = error_type_and_reason(&self.body);
        EsError::Status { endpoint: self.endpoint, status: self.status, error_type, reason }
    }

    /// Parses the body as JSON of type `T`, or a `Malformed` error.
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &'static str) -> Result<T, EsError> {
        serde_json::from_slice(&self.body).map_err(|error| EsError::Malformed {
            endpoint: Arc::clone(&self.endpoint),
            what,
            detail: error.to_string(),
        })
    }
}

/// Elasticsearch's `error.type` and `error.reason` (or the plain-string
/// `error`, or the start of a non-JSON body).
pub fn error_type_and_reason(body: &[u8]) -> (Option<String>, Option<String>) {
    match serde_json::from_slice::<Value>(body) {
        Ok(json) => match json.get("error") {
            Some(Value::Object(error)) => {
                let text = |key: &str| error.get(key).and_then(Value::as_str).map(str::to_string);
                (text("type"), text("reason"))
            }
            Some(Value::String(message)) => (None, Some(message.clone())),
            _ => (None, None),
        },
        Err(_) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string();
            (None, (!text.is_empty()).then_some(text))
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum EsError {
    #[error("cannot reach {endpoint}: {message}")]
    Transport { endpoint: Arc<str>, message: String, timed_out: bool },
    #[error("{endpoint} answered HTTP {status}{}{}", error_type.as_deref().map(|kind| format!(" {kind}")).unwrap_or_default(), reason.as_deref().map(|reason| format!(": {reason}")).unwrap_or_default())]
    Status { endpoint: Arc<str>, status: u16, error_type: Option<String>, reason: Option<String> },
    #[error("{endpoint} sent a malformed {what}: {detail}")]
    Malformed { endpoint: Arc<str>, what: &'static str, detail: String },
}

impl EsError {
    pub fn status(&self) -> Option<u16> {
        match self {
            EsError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn error_type(&self) -> Option<&str> {
        match self {
            EsError::Status { error_type, .. } => error_type.as_deref(),
            _ => None,
        }
    }

    /// 401 and 403: the credentials are wrong or lack a privilege. Retrying
    /// cannot help; the component stops with this error.
    pub fn is_auth(&self) -> bool {
        matches!(self.status(), Some(401 | 403))
    }

    /// Worth another attempt after a backoff: transport failures, malformed
    /// answers, 429, and 5xx except 501 (not implemented never heals).
    pub fn is_transient(&self) -> bool {
        match self {
            EsError::Transport { .. } | EsError::Malformed { .. } => true,
            EsError::Status { status, .. } => *status == 429 || (*status >= 500 && *status != 501),
        }
    }

    /// A short label for `pipe_component_errors_total{error_type}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            EsError::Transport { timed_out: true, .. } => "timeout",
            EsError::Transport { .. } => "connection_failed",
            EsError::Malformed { .. } => "malformed_response",
            EsError::Status { status: 429, .. } => "too_many_requests",
            EsError::Status { status, .. } if *status >= 500 => "server_error",
            EsError::Status { status: 401 | 403, .. } => "unauthorized",
            EsError::Status { .. } => "request_failed",
        }
    }

    /// A message for `/health` and the log that says what to do.
    pub fn with_hint(&self, auth_strategy: Option<EsAuthStrategy>) -> String {
        if self.is_auth() {
            let hint = match auth_strategy {
                Some(EsAuthStrategy::Basic) => "check auth.user and auth.password and the user's privileges",
                Some(EsAuthStrategy::ApiKey) => "check auth.api_key and the key's privileges",
                Some(EsAuthStrategy::Bearer) => "check auth.token and its privileges",
                None => "the cluster requires credentials; set auth.strategy and its keys",
            };
            format!("{self}; {hint}")
        } else {
            self.to_string()
        }
    }
}

/// The HTTP client for one component: endpoints, credentials, TLS.
pub struct EsClient {
    http: reqwest::Client,
    endpoints: Vec<Arc<str>>,
    authorization: Option<HeaderValue>,
    auth_strategy: Option<EsAuthStrategy>,
    cursor: AtomicUsize,
}

impl std::fmt::Debug for EsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EsClient")
            .field("endpoints", &self.endpoints)
            .field("auth_strategy", &self.auth_strategy)
            .finish()
    }
}

impl EsClient {
    /// Builds the client, reading the TLS files. Errors name the key.
    pub fn new(connection: &EsConnectionConfig) -> Result<EsClient, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(connection.request_timeout)
            .connect_timeout(connection.request_timeout.min(std::time::Duration::from_secs(10)))
            .pool_idle_timeout(std::time::Duration::from_secs(30));
        let tls = &connection.tls;
        if !tls.verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some(path) = &tls.ca_file {
            let pem = std::fs::read(path)
                .map_err(|error| format!("\"tls.ca_file\": cannot read {}: {error}", path.display()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| {
                format!("\"tls.ca_file\": {} holds no valid PEM certificate ({error})", path.display())
            })?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if let (Some(crt), Some(key)) = (&tls.crt_file, &tls.key_file) {
            let mut pem = std::fs::read(crt)
                .map_err(|error| format!("\"tls.crt_file\": cannot read {}: {error}", crt.display()))?;
            pem.push(b'\n');
            pem.extend(
                std::fs::read(key)
                    .map_err(|error| format!("\"tls.key_file\": cannot read {}: {error}", key.display()))?,
            );
            let identity = reqwest::Identity::from_pem(&pem).map_err(|error| {
                format!("\"tls.crt_file\"/\"tls.key_file\" are not a PEM certificate and private key ({error})")
            })?;
            builder = builder.identity(identity);
        }
        let http = builder.build().map_err(|error| format!("cannot build the HTTP client: {error}"))?;
        let authorization = match &connection.authorization {
            Some(secret) => {
                let mut value = HeaderValue::from_str(secret.expose()).map_err(|_| {
                    "the credentials contain characters an HTTP header cannot carry; check auth.*".to_string()
                })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(EsClient {
            http,
            endpoints: connection.endpoints.iter().map(|endpoint| Arc::from(endpoint.as_str())).collect(),
            authorization,
            auth_strategy: connection.auth_strategy,
            cursor: AtomicUsize::new(0),
        })
    }

    pub fn auth_strategy(&self) -> Option<EsAuthStrategy> {
        self.auth_strategy
    }

    /// The endpoint the next attempt goes to.
    pub fn current_endpoint(&self) -> &str {
        &self.endpoints[self.cursor.load(Ordering::Relaxed) % self.endpoints.len()]
    }

    fn fail_over(&self, from: usize) {
        // Only the first of several concurrent failures on one endpoint moves
        // the cursor, so two failures do not skip the next endpoint.
        let _ = self.cursor.compare_exchange(from, from.wrapping_add(1), Ordering::Relaxed, Ordering::Relaxed);
    }

    /// One attempt: `method` `path_and_query` (starting with `/`) on the
    /// current endpoint. Any HTTP status is `Ok`; transport failures are `Err`.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<RequestBody>,
    ) -> Result<EsResponse, EsError> {
        let position = self.cursor.load(Ordering::Relaxed);
        let endpoint = Arc::clone(&self.endpoints[position % self.endpoints.len()]);
        let mut request = self.http.request(method, format!("{endpoint}{path_and_query}"));
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, body.content_type);
            if body.gzipped {
                request = request.header(CONTENT_ENCODING, "gzip");
            }
            request = request.body(body.bytes);
        }
        let outcome = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, body))
        }
        .await;
        match outcome {
            Ok((status, body)) => {
                if status >= 500 {
                    self.fail_over(position);
                }
                Ok(EsResponse { status, body, endpoint })
            }
            Err(error) => {
                self.fail_over(position);
                let timed_out = error.is_timeout();
                // reqwest's Display names the URL, which holds no credentials
                // (they are refused in endpoints); the source chain says why.
                let mut message = error.to_string();
                let mut cause = std::error::Error::source(&error);
                while let Some(inner) = cause {
                    message.push_str(": ");
                    message.push_str(&inner.to_string());
                    cause = inner.source();
                }
                Err(EsError::Transport { endpoint, message, timed_out })
            }
        }
    }

    /// Asks `GET /` what the server is.
    pub async fn server_info(&self) -> Result<super::ServerInfo, EsError> {
        let response = self.send(Method::GET, "/", None).await?.into_success()?;
        super::ServerInfo::from_root_body(&response.body).map_err(|detail| EsError::Malformed {
            endpoint: Arc::clone(&response.endpoint),
            what: "GET / answer",
            detail,
        })
    }
}

/// Percent-encodes an index expression for a URL path: keeps what index
/// names, wildcards and lists use (`a-z0-9._-*,+`), encodes the rest
/// (date-math `<`, `>`, `{`, `}`, `/`, `|`, `:`).
pub fn encode_path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' | b',' => out.push(byte as char),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_for(status: u16, body: &str) -> EsError {
        EsResponse { status, body: Bytes::from(body.to_string()), endpoint: Arc::from("http://es:9200") }.into_error()
    }

    #[test]
    fn error_bodies_are_read_in_every_shape() {
        let object = error_for(
            401,
            r#"{"error":{"root_cause":[],"type":"security_exception","reason":"unable to authenticate user [elastic]"},"status":401}"#,
        );
        assert!(object.is_auth() && !object.is_transient());
        assert_eq!(
            object.to_string(),
            "http://es:9200 answered HTTP 401 security_exception: unable to authenticate user [elastic]"
        );
        assert!(object.with_hint(Some(EsAuthStrategy::Basic)).contains("auth.password"));
        let plain = error_for(406, r#"{"error":"Content-Type header [x] is not supported","status":406}"#);
        assert_eq!(plain.error_type(), None);
        assert!(plain.to_string().contains("is not supported"));
        let html = error_for(502, "<html>bad gateway</html>");
        assert!(html.is_transient());
        assert!(html.to_string().contains("bad gateway"));
        assert!(error_for(429, "{}").is_transient());
        assert!(!error_for(501, "{}").is_transient());
        assert!(!error_for(400, r#"{"error":{"type":"parsing_exception","reason":"x"}}"#).is_transient());
    }

    #[test]
    fn index_expressions_are_encoded_for_paths() {
        assert_eq!(encode_path_segment("logs-2026.01.01,logs-*"), "logs-2026.01.01,logs-*");
        assert_eq!(encode_path_segment("<logs-{now/d}>"), "%3Clogs-%7Bnow%2Fd%7D%3E");
    }

    #[test]
    fn gzip_round_trips() {
        let compressed = gzip(b"hello hello hello").unwrap();
        let mut decoder = flate2::read::GzDecoder::new(&compressed[..]);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut decoder, &mut text).unwrap();
        assert_eq!(text, "hello hello hello");
    }
}
