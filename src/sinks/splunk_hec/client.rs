//! HEC over HTTP: the three requests the sink makes (data, ack query, health)
//! and what each answer means (reference §4, §6, §7, §8).
//!
//! Owns: the `reqwest` client (timeouts, TLS, no redirects), the request
//! headers (`Authorization: Splunk <token>`, `X-Splunk-Request-Channel`,
//! `Content-Encoding`), and the classification of every answer into what
//! the sink does next (`Disposition`, `AckOutcome`, `HealthOutcome`).
//!
//! Guarantees: classification looks at the HTTP status and the HEC `code`,
//! never at `text`, as the reference requires. The token lives only in a
//! header value marked sensitive; no error, log line or `Debug` output here
//! contains it (reqwest's errors name the URL, which never carries it).
//!
//! Never: retries, sleeps or settles events. The sink loop decides.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Url;
use serde::Deserialize;

use super::encoder::{Compression, EndpointTarget, RawMetadata};
use crate::config::secret::Secret;

const CHANNEL_HEADER: &str = "x-splunk-request-channel";
/// Longest `Retry-After` honoured: a proxy asking for an hour would
/// otherwise stall the pipeline silently.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// TLS settings for an `https` endpoint.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub verify: bool,
    /// PEM bytes of extra CA certificates.
    pub ca_pem: Option<Vec<u8>>,
}

/// Sends HEC requests. Cheap to clone.
#[derive(Clone)]
pub struct HecClient {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    http: reqwest::Client,
    data_url: Url,
    ack_url: Url,
    health_url: Url,
    headers: HeaderMap,
    target: EndpointTarget,
    channel: String,
}

impl HecClient {
    /// Builds the client. `endpoint` is the base URL. Errors name the key.
    pub fn new(
        endpoint: &Url,
        token: &Secret,
        target: EndpointTarget,
        compression: Compression,
        tls: &TlsSettings,
        timeout: Duration,
    ) -> Result<HecClient, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            // A redirected POST would lose its body or its headers; an HEC
            // URL that redirects is a configuration mistake to report.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("pipe/", env!("CARGO_PKG_VERSION")));
        if !tls.verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some(pem) = &tls.ca_pem {
            let certificates = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|error| format!("\"tls.ca_file\" holds no usable PEM certificate: {error}"))?;
            if certificates.is_empty() {
                return Err(
                    "\"tls.ca_file\" holds no PEM certificate; give a file with -----BEGIN CERTIFICATE----- blocks"
                        .into(),
                );
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|error| format!("cannot build the HTTP client: {error}"))?;

        let mut authorization = HeaderValue::from_str(&format!("Splunk {}", token.expose())).map_err(|_| {
            "\"token\" holds characters not allowed in an HTTP header; copy the token again".to_string()
        })?;
        authorization.set_sensitive(true);
        let channel = new_channel_guid();
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, authorization);
        headers.insert(CHANNEL_HEADER, HeaderValue::from_str(&channel).expect("a GUID is a valid header value"));
        let content_type = match target {
            EndpointTarget::Event => "application/json",
            EndpointTarget::Raw => "text/plain",
        };
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if compression == Compression::Gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        let data_path = match target {
            EndpointTarget::Event => "services/collector/event",
            EndpointTarget::Raw => "services/collector/raw",
        };
        Ok(HecClient {
            inner: Arc::new(ClientInner {
                http,
                data_url: join(endpoint, data_path),
                ack_url: join(endpoint, "services/collector/ack"),
                health_url: join(endpoint, "services/collector/health"),
                headers,
                target,
                channel,
            }),
        })
    }

    /// The channel GUID every request of this sink instance carries.
    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    pub fn data_url(&self) -> &Url {
        &self.inner.data_url
    }

    /// Posts one data request.
    pub async fn send(
        &self,
        payload: Bytes,
        raw_metadata: Option<&RawMetadata>,
    ) -> Result<HecResponse, TransportError> {
        let inner = &self.inner;
        let mut request = inner.http.post(inner.data_url.clone()).headers(inner.headers.clone()).body(payload);
        if let (EndpointTarget::Raw, Some(metadata)) = (inner.target, raw_metadata) {
            let pairs: Vec<(&str, &str)> = metadata.pairs.iter().map(|(key, value)| (*key, &**value)).collect();
            request = request.query(&pairs);
        }
        read_response(request).await
    }

    /// Asks which of `ids` are indexed. The body is never compressed:
    /// whether Splunk accepts gzip on `/ack` is unverified (reference §3).
    pub async fn query_acks(&self, ids: &[u64]) -> Result<HecResponse, TransportError> {
        let inner = &self.inner;
        let mut body = Vec::with_capacity(10 + ids.len() * 8);
        body.extend_from_slice(b"{\"acks\":");
        serde_json::to_writer(&mut body, ids).expect("serialising to memory cannot fail");
        body.push(b'}');
        let mut headers = inner.headers.clone();
        headers.remove(CONTENT_ENCODING);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        read_response(inner.http.post(inner.ack_url.clone()).headers(headers).body(body)).await
    }

    /// `GET /services/collector/health`. The token is not sent: Splunk
    /// ignores it there, and the reference warns against using health to
    /// validate a token.
    pub async fn health(&self, timeout: Duration) -> Result<HecResponse, TransportError> {
        read_response(self.inner.http.get(self.inner.health_url.clone()).timeout(timeout)).await
    }
}

fn join(endpoint: &Url, path: &str) -> Url {
    let mut url = endpoint.clone();
    let base = endpoint.path().trim_end_matches('/');
    url.set_path(&format!("{base}/{path}"));
    url
}

/// A random (version 4) GUID, one per sink instance, as Splunk's channel
/// rules and the reference recommend.
fn new_channel_guid() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

async fn read_response(request: reqwest::RequestBuilder) -> Result<HecResponse, TransportError> {
    let response = request.send().await.map_err(TransportError::from_reqwest)?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(|seconds| Duration::from_secs(seconds).min(MAX_RETRY_AFTER));
    let body = response.bytes().await.map_err(TransportError::from_reqwest)?;
    // Proxies answer with HTML; an unreadable body is just a reply without a code.
    let reply = serde_json::from_slice(&body).unwrap_or_default();
    Ok(HecResponse { status, retry_after, reply })
}

/// An HTTP answer from HEC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HecResponse {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub reply: HecReply,
}

/// The JSON body HEC answers with; every key optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct HecReply {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub code: Option<u16>,
    #[serde(default, rename = "ackId")]
    pub ack_id: Option<u64>,
    #[serde(default, rename = "invalid-event-number")]
    pub invalid_event_number: Option<usize>,
    #[serde(default)]
    pub acks: Option<HashMap<String, bool>>,
}

impl HecResponse {
    /// `HTTP 400, code 15 "Error in handling indexed fields"`, for messages.
    pub fn describe(&self) -> String {
        let mut text = format!("HTTP {}", self.status);
        if let Some(code) = self.reply.code {
            text.push_str(&format!(", code {code}"));
        }
        if let Some(message) = &self.reply.text {
            text.push_str(&format!(" \"{message}\""));
        }
        text
    }
}

/// No HTTP answer: the connection failed or the request timed out.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TransportError {
    pub timed_out: bool,
    message: String,
}

impl TransportError {
    fn from_reqwest(error: reqwest::Error) -> TransportError {
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        TransportError { timed_out: error.is_timeout(), message }
    }
}

/// Why a request is retried; the `reason` label of
/// `pipe_splunk_hec_retries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    /// 503 (code 9, or a bare 503 from a proxy).
    ServerBusy,
    /// Other 5xx.
    ServerError,
    /// 429.
    Throttled,
    /// 408 or no answer within `request.timeout`.
    Timeout,
    /// Connection refused, reset or cut.
    Network,
    /// Accepted, but its ack never read `true` within
    /// `acknowledgements.timeout`: sent again.
    AckTimeout,
}

impl RetryReason {
    pub const ALL: [RetryReason; 6] = [
        RetryReason::ServerBusy,
        RetryReason::ServerError,
        RetryReason::Throttled,
        RetryReason::Timeout,
        RetryReason::Network,
        RetryReason::AckTimeout,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RetryReason::ServerBusy => "server_busy",
            RetryReason::ServerError => "server_error",
            RetryReason::Throttled => "throttled",
            RetryReason::Timeout => "timeout",
            RetryReason::Network => "network",
            RetryReason::AckTimeout => "ack_timeout",
        }
    }

    /// Whether the server is telling us to slow down (adaptive concurrency
    /// backs off on these).
    pub fn is_backpressure(self) -> bool {
        !matches!(self, RetryReason::AckTimeout)
    }
}

/// What to do with a data request after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Taken (HTTP 2xx). With indexer acknowledgement the `ackId` says when
    /// it is indexed; without one, it is delivered now.
    Accepted {
        ack_id: Option<u64>,
    },
    /// Envelopes before `event_number` were taken, that one was refused for
    /// good, the rest were not looked at.
    PartiallyRefused {
        event_number: usize,
        reason: String,
    },
    /// The whole request was refused for good.
    Refused {
        reason: String,
    },
    /// 413: split and send the halves.
    TooLarge,
    Retry {
        reason: RetryReason,
        retry_after: Option<Duration>,
        detail: String,
    },
    /// Nothing will ever be accepted with this configuration (token, URL,
    /// client bug). `message` names the key to fix.
    Fatal {
        message: String,
    },
}

/// Classifies an answer of `/event` or `/raw` per the reference's table.
pub fn classify_data_response(response: &HecResponse) -> Disposition {
    let code = response.reply.code;
    let described = response.describe();
    match response.status {
        200..=299 => Disposition::Accepted { ack_id: response.reply.ack_id },
        401 | 403 => Disposition::Fatal { message: token_problem(&described, code) },
        400 => match (code, response.reply.invalid_event_number) {
            (Some(10 | 11), _) => Disposition::Fatal {
                message: format!(
                    "Splunk HEC refused the request channel ({described}); this is a bug in pipe, please report it"
                ),
            },
            (Some(16), _) => Disposition::Fatal {
                message: format!(
                    "Splunk HEC refused query-string authorization ({described}); check \"endpoint\" holds no ?token="
                ),
            },
            (_, Some(event_number)) => Disposition::PartiallyRefused {
                event_number,
                reason: format!("Splunk HEC refused the event ({described})"),
            },
            _ => Disposition::Refused { reason: format!("Splunk HEC refused the request ({described})") },
        },
        404 | 405 => Disposition::Fatal {
            message: format!(
                "Splunk HEC answered {described}; check \"endpoint\" is the HEC base URL, such as https://splunk:8088"
            ),
        },
        413 => Disposition::TooLarge,
        415 => Disposition::Fatal {
            message: format!(
                "Splunk HEC does not accept the body encoding ({described}); set \"compression\" = \"none\""
            ),
        },
        408 => {
            Disposition::Retry { reason: RetryReason::Timeout, retry_after: response.retry_after, detail: described }
        }
        429 => {
            Disposition::Retry { reason: RetryReason::Throttled, retry_after: response.retry_after, detail: described }
        }
        503 => {
            Disposition::Retry { reason: RetryReason::ServerBusy, retry_after: response.retry_after, detail: described }
        }
        500..=599 => Disposition::Retry {
            reason: RetryReason::ServerError,
            retry_after: response.retry_after,
            detail: described,
        },
        300..=399 => Disposition::Fatal {
            message: format!("Splunk HEC redirected the request ({described}); set \"endpoint\" to the final HEC URL"),
        },
        _ => Disposition::Refused { reason: format!("Splunk HEC refused the request ({described})") },
    }
}

fn token_problem(described: &str, code: Option<u16>) -> String {
    let fix = match code {
        Some(1) => "the token is disabled; enable it in Splunk or set another \"token\"",
        Some(2) | Some(3) => "check \"token\" is set to the HEC token value",
        _ => "check \"token\" is a valid HEC token for this Splunk",
    };
    format!("Splunk HEC refused the token ({described}): {fix}; nothing is acknowledged until it is fixed")
}

/// A request that got no answer is retried.
pub fn classify_transport_error(error: &TransportError) -> Disposition {
    let reason = if error.timed_out { RetryReason::Timeout } else { RetryReason::Network };
    Disposition::Retry { reason, retry_after: None, detail: error.to_string() }
}

/// What an ack query told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    /// The ids that read `true` (Splunk forgets them right after).
    Indexed(Vec<u64>),
    /// Code 14: the token has no indexer acknowledgement.
    Disabled,
    Fatal {
        message: String,
    },
    /// Ask again at the next interval.
    Transient {
        detail: String,
    },
}

pub fn classify_ack_response(response: &HecResponse) -> AckOutcome {
    match (response.status, response.reply.code, &response.reply.acks) {
        (200..=299, _, Some(acks)) => AckOutcome::Indexed(
            acks.iter().filter(|(_, indexed)| **indexed).filter_map(|(id, _)| id.parse().ok()).collect(),
        ),
        (400, Some(14), _) => AckOutcome::Disabled,
        (401 | 403, code, _) => AckOutcome::Fatal { message: token_problem(&response.describe(), code) },
        _ => AckOutcome::Transient { detail: response.describe() },
    }
}

/// What the start-up health check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthOutcome {
    Healthy,
    Unhealthy { reason: String },
}

pub fn classify_health(result: &Result<HecResponse, TransportError>) -> HealthOutcome {
    match result {
        Ok(response) if (200..=299).contains(&response.status) => HealthOutcome::Healthy,
        Ok(response) => {
            HealthOutcome::Unhealthy { reason: format!("HEC health check answered {}", response.describe()) }
        }
        Err(error) => HealthOutcome::Unhealthy { reason: format!("HEC health check failed: {error}") },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> HecResponse {
        HecResponse { status, retry_after: None, reply: serde_json::from_str(body).unwrap_or_default() }
    }

    #[test]
    fn data_answers_follow_the_status_table() {
        assert_eq!(
            classify_data_response(&response(200, r#"{"text":"Success","code":0,"ackId":7}"#)),
            Disposition::Accepted { ack_id: Some(7) }
        );
        assert_eq!(
            classify_data_response(&response(200, r#"{"text":"Success","code":0}"#)),
            Disposition::Accepted { ack_id: None }
        );
        let busy = classify_data_response(&response(503, r#"{"text":"Server is busy","code":9}"#));
        assert!(matches!(busy, Disposition::Retry { reason: RetryReason::ServerBusy, .. }), "{busy:?}");
        assert!(matches!(
            classify_data_response(&response(500, r#"{"code":8}"#)),
            Disposition::Retry { reason: RetryReason::ServerError, .. }
        ));
        assert!(matches!(
            classify_data_response(&response(502, "<html>")),
            Disposition::Retry { reason: RetryReason::ServerError, .. }
        ));
        assert!(matches!(
            classify_data_response(&response(429, "")),
            Disposition::Retry { reason: RetryReason::Throttled, .. }
        ));
        assert!(matches!(
            classify_data_response(&response(408, "")),
            Disposition::Retry { reason: RetryReason::Timeout, .. }
        ));
        assert_eq!(classify_data_response(&response(413, "<html>")), Disposition::TooLarge);
        assert!(matches!(classify_data_response(&response(404, "")), Disposition::Fatal { .. }));
        assert!(matches!(classify_data_response(&response(415, "")), Disposition::Fatal { .. }));
        assert!(matches!(classify_data_response(&response(400, r#"{"code":10}"#)), Disposition::Fatal { .. }));
        assert!(matches!(
            classify_data_response(&response(400, r#"{"code":5,"text":"No data"}"#)),
            Disposition::Refused { .. }
        ));
    }

    #[test]
    fn partial_refusals_carry_the_event_number_and_the_code() {
        let partial = classify_data_response(&response(
            400,
            r#"{"text":"Error in handling indexed fields","code":15,"invalid-event-number":3}"#,
        ));
        let Disposition::PartiallyRefused { event_number, reason } = partial else { panic!("{partial:?}") };
        assert_eq!(event_number, 3);
        assert!(reason.contains("code 15") && reason.contains("indexed fields"), "{reason}");
    }

    #[test]
    fn token_errors_are_fatal_and_name_the_key() {
        for (status, code) in [(403, 4), (403, 1), (401, 2), (401, 3)] {
            let body = format!(r#"{{"text":"x","code":{code}}}"#);
            let Disposition::Fatal { message } = classify_data_response(&response(status, &body)) else { panic!() };
            assert!(message.contains("\"token\""), "{message}");
        }
        assert!(matches!(classify_ack_response(&response(403, r#"{"code":4}"#)), AckOutcome::Fatal { .. }));
    }

    #[test]
    fn ack_answers() {
        let mut indexed = classify_ack_response(&response(200, r#"{"acks":{"0":true,"1":false,"2":true}}"#));
        if let AckOutcome::Indexed(ids) = &mut indexed {
            ids.sort_unstable();
        }
        assert_eq!(indexed, AckOutcome::Indexed(vec![0, 2]));
        assert_eq!(
            classify_ack_response(&response(400, r#"{"text":"ACK is disabled","code":14}"#)),
            AckOutcome::Disabled
        );
        assert!(matches!(classify_ack_response(&response(503, r#"{"code":9}"#)), AckOutcome::Transient { .. }));
        assert!(matches!(classify_ack_response(&response(200, r#"{"text":"?"}"#)), AckOutcome::Transient { .. }));
    }

    #[test]
    fn health_answers() {
        assert_eq!(
            classify_health(&Ok(response(200, r#"{"text":"HEC is healthy","code":17}"#))),
            HealthOutcome::Healthy
        );
        let HealthOutcome::Unhealthy { reason } =
            classify_health(&Ok(response(503, r#"{"text":"HEC is unhealthy, queues are full","code":18}"#)))
        else {
            panic!()
        };
        assert!(reason.contains("code 18"), "{reason}");
    }

    #[test]
    fn channel_is_a_version_4_guid() {
        let channel = new_channel_guid();
        assert_eq!(channel.len(), 36);
        assert_eq!(channel.as_bytes()[14], b'4');
        assert!(matches!(channel.as_bytes()[19], b'8' | b'9' | b'a' | b'b'), "{channel}");
        assert_ne!(channel, new_channel_guid());
    }

    #[test]
    fn urls_join_the_base_path() {
        let base = Url::parse("https://splunk.example:8088").unwrap();
        assert_eq!(
            join(&base, "services/collector/event").as_str(),
            "https://splunk.example:8088/services/collector/event"
        );
        let prefixed = Url::parse("https://proxy.example/splunk/").unwrap();
        assert_eq!(
            join(&prefixed, "services/collector/ack").as_str(),
            "https://proxy.example/splunk/services/collector/ack"
        );
    }

    #[test]
    fn the_client_never_shows_the_token() {
        let client = HecClient::new(
            &Url::parse("http://127.0.0.1:1").unwrap(),
            &Secret::new("very-secret-token"),
            EndpointTarget::Event,
            Compression::Gzip,
            &TlsSettings { verify: true, ca_pem: None },
            Duration::from_secs(1),
        )
        .unwrap();
        let headers = format!("{:?}", client.inner.headers);
        assert!(!headers.contains("very-secret-token"), "{headers}");
        let bad = HecClient::new(
            &Url::parse("http://127.0.0.1:1").unwrap(),
            &Secret::new("line\nbreak-secret"),
            EndpointTarget::Event,
            Compression::Gzip,
            &TlsSettings { verify: true, ca_pem: None },
            Duration::from_secs(1),
        );
        let error = bad.err().unwrap();
        assert!(error.contains("\"token\"") && !error.contains("break-secret"), "{error}");
    }
}
