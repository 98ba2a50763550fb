//! `http`: sends events to any HTTP endpoint (chat webhooks, paging tools,
//! custom collectors), one request per event or per batch.
//!
//! Keys:
//! - `uri` (required), `method` = `"post"` (default) or `"put"`.
//! - `headers`: table of header name → value; values are secrets (never
//!   logged), so take tokens from the environment:
//!   `headers = { Authorization = "Bearer ${PAGER_TOKEN}" }`.
//! - `encoding` = `"json"` (default) or `"text"`.
//! - `template`: optional body template with `{{ field.path }}` placeholders.
//!   With `encoding = "json"` every inserted value is JSON-escaped (write
//!   `"text": "{{ message }}"`) and the result must be valid JSON; with
//!   `"text"` values are inserted as they are. Without a template the body
//!   is the event as JSON (`json`) or its `message` field (`text`).
//! - `batch.mode` = `"per_event"` (default: one request per event) or
//!   `"per_batch"` (a JSON array of events, or rendered bodies one per line
//!   for text), `batch.max_events` (default 100), `batch.timeout` (default
//!   1s: how long a partial batch waits for more events).
//! - `request.timeout` (default 30s).
//! - `retry.initial_backoff` (default 500ms), `retry.max_backoff` (default
//!   30s), `retry.max_attempts` (default: unlimited).
//! - `tls.verify` (default true; false accepts any certificate, logged as a
//!   warning at start).
//!
//! Acknowledgements: events are settled delivered after a 2xx answer.
//! 5xx, 429 and network errors are retried with backoff (honouring
//! `Retry-After` up to `retry.max_backoff`); while retrying the sink stops
//! reading (backpressure). Any other status (4xx, unfollowed 3xx) is
//! permanent: the events of that request go to the dead-letter file with the
//! status and the start of the answer. An event whose template cannot be
//! rendered (missing field, invalid JSON) is dead-lettered alone. When
//! `retry.max_attempts` runs out the events are settled errored, so the
//! source does not move its checkpoint past them. At shutdown a request that
//! is still being retried holds the drain until `shutdown_timeout`; its
//! events are then errored and read again after the restart.
//!
//! Metrics: the component ones (`sent_events` after a 2xx),
//! `pipe_http_requests_total{status}`, `pipe_http_retries_total{reason}`,
//! `pipe_component_errors_total{error_type}`, `pipe_component_dead_letters_total`.
//!
//! Never logs header values or an unredacted URI.

use std::collections::HashMap;
use std::time::Duration;

use indexmap::IndexMap;
use metrics::Counter;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use serde::Deserialize;

use super::dead_letter::DeadLetterWriter;
use super::redact::{describe_http_error, redact_url, Secret};
use crate::config::units;
use crate::event::{BatchStatus, LogEvent, Value};
use crate::observability::ComponentMetrics;
use crate::retry::Backoff;
use crate::template::Template;
use crate::topology::buffer::BufferReceiver;
use crate::topology::{BuildContext, BuildError, ComponentError, ComponentFuture, Sink, SinkContext};

const DEFAULT_MAX_EVENTS: usize = 100;
const DEFAULT_BATCH_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(500);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How much of a refusing answer goes into the dead-letter reason.
const REASON_BODY_CHARS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpMethod {
    #[default]
    Post,
    Put,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpEncoding {
    #[default]
    Json,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchMode {
    #[default]
    PerEvent,
    PerBatch,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpBatchConfig {
    #[serde(default)]
    pub mode: BatchMode,
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    #[serde(default = "default_batch_timeout", with = "units::duration")]
    pub timeout: Duration,
}

impl Default for HttpBatchConfig {
    fn default() -> HttpBatchConfig {
        HttpBatchConfig { mode: BatchMode::default(), max_events: DEFAULT_MAX_EVENTS, timeout: DEFAULT_BATCH_TIMEOUT }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRequestConfig {
    #[serde(default = "default_request_timeout", with = "units::duration")]
    pub timeout: Duration,
}

impl Default for HttpRequestConfig {
    fn default() -> HttpRequestConfig {
        HttpRequestConfig { timeout: DEFAULT_REQUEST_TIMEOUT }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRetryConfig {
    #[serde(default = "default_initial_backoff", with = "units::duration")]
    pub initial_backoff: Duration,
    #[serde(default = "default_max_backoff", with = "units::duration")]
    pub max_backoff: Duration,
    #[serde(default)]
    pub max_attempts: Option<u32>,
}

impl Default for HttpRetryConfig {
    fn default() -> HttpRetryConfig {
        HttpRetryConfig {
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            max_attempts: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTlsConfig {
    #[serde(default = "default_true")]
    pub verify: bool,
}

impl Default for HttpTlsConfig {
    fn default() -> HttpTlsConfig {
        HttpTlsConfig { verify: true }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    pub uri: String,
    #[serde(default)]
    pub method: HttpMethod,
    #[serde(default)]
    pub headers: IndexMap<String, Secret>,
    #[serde(default)]
    pub encoding: HttpEncoding,
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub batch: HttpBatchConfig,
    #[serde(default)]
    pub request: HttpRequestConfig,
    #[serde(default)]
    pub retry: HttpRetryConfig,
    #[serde(default)]
    pub tls: HttpTlsConfig,
}

fn default_max_events() -> usize {
    DEFAULT_MAX_EVENTS
}
fn default_batch_timeout() -> Duration {
    DEFAULT_BATCH_TIMEOUT
}
fn default_request_timeout() -> Duration {
    DEFAULT_REQUEST_TIMEOUT
}
fn default_initial_backoff() -> Duration {
    DEFAULT_INITIAL_BACKOFF
}
fn default_max_backoff() -> Duration {
    DEFAULT_MAX_BACKOFF
}
fn default_true() -> bool {
    true
}

impl HttpSinkConfig {
    pub fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Sink>, BuildError> {
        let uri = reqwest::Url::parse(&self.uri)
            .ok()
            .filter(|uri| uri.scheme() == "http" || uri.scheme() == "https")
            .ok_or_else(|| {
            BuildError::new(format!(
                "\"uri\" {:?} is not an http(s) URL; write it like https://hooks.example.com/path",
                redact_url(&self.uri)
            ))
        })?;
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| BuildError::new(format!("\"headers\": {name:?} is not a valid header name")))?;
            let mut header_value = HeaderValue::from_str(value.expose()).map_err(|_| {
                BuildError::new(format!(
                    "\"headers.{name}\": the value has characters a header cannot carry (newlines, control characters)"
                ))
            })?;
            header_value.set_sensitive(true);
            headers.insert(header_name, header_value);
        }
        if !headers.contains_key(CONTENT_TYPE) {
            let content_type = match self.encoding {
                HttpEncoding::Json => "application/json",
                HttpEncoding::Text => "text/plain; charset=utf-8",
            };
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        let template = match &self.template {
            Some(text) => {
                Some(Template::parse(text).map_err(|error| BuildError::new(format!("\"template\": {error}")))?)
            }
            None => None,
        };
        if self.batch.max_events == 0 {
            return Err(BuildError::new("\"batch.max_events\" is 0; set it above 0"));
        }
        if self.request.timeout.is_zero() || self.retry.initial_backoff.is_zero() {
            return Err(BuildError::new("\"request.timeout\" and \"retry.initial_backoff\" must be above 0"));
        }
        if self.retry.max_backoff < self.retry.initial_backoff {
            return Err(BuildError::new("\"retry.max_backoff\" is below \"retry.initial_backoff\"; raise it"));
        }
        if self.retry.max_attempts == Some(0) {
            return Err(BuildError::new(
                "\"retry.max_attempts\" is 0; set it to 1 or more, or remove it for unlimited",
            ));
        }
        let method = match self.method {
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
        };
        Ok(Box::new(HttpSink {
            uri,
            method,
            headers,
            encoding: self.encoding,
            template,
            batch: self.batch.clone(),
            request_timeout: self.request.timeout,
            backoff: Backoff { initial: self.retry.initial_backoff, max: self.retry.max_backoff },
            max_attempts: self.retry.max_attempts,
            verify_tls: self.tls.verify,
        }))
    }
}

pub struct HttpSink {
    uri: reqwest::Url,
    method: reqwest::Method,
    headers: HeaderMap,
    encoding: HttpEncoding,
    template: Option<Template>,
    batch: HttpBatchConfig,
    request_timeout: Duration,
    backoff: Backoff,
    max_attempts: Option<u32>,
    verify_tls: bool,
}

impl Sink for HttpSink {
    fn run(self: Box<Self>, input: BufferReceiver, cx: SinkContext) -> ComponentFuture {
        Box::pin(self.run_loop(input, cx))
    }
}

/// How one request ended.
enum RequestOutcome {
    Delivered,
    Refused(String),
    GaveUp(String),
}

struct HttpMetrics {
    component: ComponentMetrics,
    requests: HashMap<u16, Counter>,
    retries: HashMap<String, Counter>,
    refused: Counter,
    gave_up: Counter,
    template_failed: Counter,
}

impl HttpMetrics {
    fn request(&mut self, status: u16) {
        let component = &self.component;
        self.requests
            .entry(status)
            .or_insert_with(|| component.counter("pipe_http_requests_total", &[("status", &status.to_string())]))
            .increment(1);
    }

    fn retry(&mut self, reason: &str) {
        if !self.retries.contains_key(reason) {
            let counter = self.component.counter("pipe_http_retries_total", &[("reason", reason)]);
            self.retries.insert(reason.to_string(), counter);
        }
        self.retries[reason].increment(1);
    }
}

impl HttpSink {
    async fn run_loop(self, mut input: BufferReceiver, cx: SinkContext) -> Result<(), ComponentError> {
        let mut builder = reqwest::Client::builder().timeout(self.request_timeout);
        if !self.verify_tls {
            tracing::warn!(sink = %cx.id, "tls.verify = false: any server certificate is accepted");
            builder = builder.danger_accept_invalid_certs(true);
        }
        let client =
            builder.build().map_err(|error| ComponentError::new(format!("cannot build the HTTP client: {error}")))?;
        let redacted_uri = redact_url(self.uri.as_str());
        tracing::info!(sink = %cx.id, uri = %redacted_uri, "http sink started");
        let dead_letters = DeadLetterWriter::new(&cx.data_dir, &cx.id, &cx.metrics);
        let mut metrics = HttpMetrics {
            component: cx.metrics.clone(),
            requests: HashMap::new(),
            retries: HashMap::new(),
            refused: cx.metrics.errors("http_refused", "sending"),
            gave_up: cx.metrics.errors("retries_exhausted", "sending"),
            template_failed: cx.metrics.errors("template_failed", "encoding"),
        };

        let mut input_open = true;
        while input_open {
            let Some(mut events) = input.recv().await else { break };
            if self.batch.mode == BatchMode::PerBatch {
                let deadline = tokio::time::Instant::now() + self.batch.timeout;
                while events.len() < self.batch.max_events {
                    // Cancel-safe: `recv` loses nothing when the timer wins.
                    tokio::select! {
                        more = input.recv() => match more {
                            Some(mut more) => events.append(&mut more),
                            None => { input_open = false; break }
                        },
                        _ = tokio::time::sleep_until(deadline) => break,
                    }
                }
            }
            cx.record_received(&events);

            let mut unrenderable = Vec::new();
            let mut ready: Vec<(LogEvent, Vec<u8>)> = Vec::with_capacity(events.len());
            for event in events {
                match self.encode(&event) {
                    Ok(body) => ready.push((event, body)),
                    Err(reason) => {
                        metrics.template_failed.increment(1);
                        unrenderable.push((event, reason));
                    }
                }
            }
            dead_letters.settle(unrenderable).await;

            let chunk_size = match self.batch.mode {
                BatchMode::PerEvent => 1,
                BatchMode::PerBatch => self.batch.max_events,
            };
            while !ready.is_empty() {
                let rest = ready.split_off(ready.len().min(chunk_size));
                let chunk = std::mem::replace(&mut ready, rest);
                let (chunk_events, bodies): (Vec<LogEvent>, Vec<Vec<u8>>) = chunk.into_iter().unzip();
                let body = self.join_bodies(bodies);
                match self.send(&client, body, &mut metrics, &cx).await {
                    RequestOutcome::Delivered => {
                        let bytes = chunk_events.iter().map(LogEvent::byte_size).sum();
                        let received: Vec<_> = chunk_events.iter().map(|event| event.metadata().received_at).collect();
                        let count = chunk_events.len();
                        for event in chunk_events {
                            event.settle(BatchStatus::Delivered);
                        }
                        cx.record_delivered(count, bytes, received);
                    }
                    RequestOutcome::Refused(reason) => {
                        metrics.refused.increment(1);
                        dead_letters
                            .settle(chunk_events.into_iter().map(|event| (event, reason.clone())).collect())
                            .await;
                    }
                    RequestOutcome::GaveUp(reason) => {
                        metrics.gave_up.increment(1);
                        tracing::error!(sink = %cx.id, uri = %redacted_uri, %reason, events = chunk_events.len(), "giving up on a request after retry.max_attempts; its events are errored");
                        for event in chunk_events {
                            event.settle(BatchStatus::Errored);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// One event's part of a body.
    fn encode(&self, event: &LogEvent) -> Result<Vec<u8>, String> {
        match (&self.template, self.encoding) {
            (None, HttpEncoding::Json) => {
                Ok(serde_json::to_vec(event).expect("serialising an event to memory cannot fail"))
            }
            (None, HttpEncoding::Text) => Ok(match event.get("message") {
                Some(message) => message.to_text().into_owned().into_bytes(),
                None => serde_json::to_vec(event).expect("serialising an event to memory cannot fail"),
            }),
            (Some(template), encoding) => {
                let mut missing = None;
                let rendered = template.render_with(event, chrono::Utc::now(), |path, value, out| match value {
                    Some(value) if !value.is_null() => match encoding {
                        HttpEncoding::Json => push_json_escaped(value, out),
                        HttpEncoding::Text => out.push_str(&value.to_text()),
                    },
                    _ => {
                        missing.get_or_insert_with(|| path.to_string());
                    }
                });
                if let Some(path) = missing {
                    return Err(format!("cannot render \"template\": the event has no field \"{path}\""));
                }
                if encoding == HttpEncoding::Json {
                    if let Err(error) = serde_json::from_str::<serde::de::IgnoredAny>(&rendered) {
                        return Err(format!("\"template\" rendered invalid JSON ({error}); check its quoting"));
                    }
                }
                Ok(rendered.into_bytes())
            }
        }
    }

    fn join_bodies(&self, mut bodies: Vec<Vec<u8>>) -> Vec<u8> {
        if self.batch.mode == BatchMode::PerEvent && bodies.len() == 1 {
            return bodies.pop().unwrap_or_default();
        }
        let (open, separator, close): (&[u8], &[u8], &[u8]) = match self.encoding {
            HttpEncoding::Json => (b"[", b",", b"]"),
            HttpEncoding::Text => (b"", b"\n", b""),
        };
        let mut body = Vec::with_capacity(bodies.iter().map(Vec::len).sum::<usize>() + bodies.len() + 2);
        body.extend_from_slice(open);
        for (index, part) in bodies.iter().enumerate() {
            if index > 0 {
                body.extend_from_slice(separator);
            }
            body.extend_from_slice(part);
        }
        body.extend_from_slice(close);
        body
    }

    async fn send(
        &self,
        client: &reqwest::Client,
        body: Vec<u8>,
        metrics: &mut HttpMetrics,
        cx: &SinkContext,
    ) -> RequestOutcome {
        let body = bytes::Bytes::from(body);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let request =
                client.request(self.method.clone(), self.uri.clone()).headers(self.headers.clone()).body(body.clone());
            let (reason_label, reason, retry_after) = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    metrics.request(status.as_u16());
                    if status.is_success() {
                        return RequestOutcome::Delivered;
                    }
                    let retry_after = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| value.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = response.text().await.unwrap_or_default();
                    let snippet: String = text.chars().take(REASON_BODY_CHARS).collect();
                    if !(status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS) {
                        return RequestOutcome::Refused(format!("HTTP {status}: {snippet}"));
                    }
                    (format!("http_{}", status.as_u16()), format!("HTTP {status}: {snippet}"), retry_after)
                }
                Err(error) => {
                    let label = if error.is_timeout() { "timeout" } else { "network" };
                    (label.to_string(), describe_http_error(error), None)
                }
            };
            if self.max_attempts.is_some_and(|max| attempt >= max) {
                return RequestOutcome::GaveUp(reason);
            }
            metrics.retry(&reason_label);
            let delay = retry_after.map_or_else(|| self.backoff.delay(attempt), |wait| wait.min(self.backoff.max));
            tracing::warn!(sink = %cx.id, %reason, attempt, retry_in = ?delay, "http request failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

/// Writes `value` as the inside of a JSON string: strings escaped without
/// their quotes (so `"{{ message }}"` in a template stays one string), other
/// values as their JSON text escaped the same way.
fn push_json_escaped(value: &Value, out: &mut String) {
    let text = value.to_text();
    let quoted = serde_json::to_string(text.as_ref()).expect("serialising a string cannot fail");
    out.push_str(&quoted[1..quoted.len() - 1]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<Box<dyn Sink>, String> {
        let config: HttpSinkConfig = toml::from_str(text).map_err(|error| error.to_string())?;
        config.build(&BuildContext { id: "out".into(), data_dir: "data".into() }).map_err(|error| error.to_string())
    }

    fn sink(text: &str) -> HttpSink {
        let config: HttpSinkConfig = toml::from_str(text).unwrap();
        let built = config.build(&BuildContext { id: "out".into(), data_dir: "data".into() });
        assert!(built.is_ok());
        let template = config.template.as_deref().map(|text| Template::parse(text).unwrap());
        HttpSink {
            uri: reqwest::Url::parse(&config.uri).unwrap(),
            method: reqwest::Method::POST,
            headers: HeaderMap::new(),
            encoding: config.encoding,
            template,
            batch: config.batch.clone(),
            request_timeout: config.request.timeout,
            backoff: Backoff { initial: config.retry.initial_backoff, max: config.retry.max_backoff },
            max_attempts: config.retry.max_attempts,
            verify_tls: config.tls.verify,
        }
    }

    fn event(json: &str) -> LogEvent {
        let Value::Object(fields) = serde_json::from_str::<Value>(json).unwrap() else { panic!("not an object") };
        LogEvent::from_fields("test", fields)
    }

    #[test]
    fn json_templates_escape_values_and_must_render_valid_json() {
        let sink = sink("uri = \"http://h/x\"\ntemplate = '{\"text\": \"{{ message }}\", \"n\": {{ count }}}'");
        let body = sink.encode(&event(r#"{"message":"say \"hi\"\nnow","count":3}"#)).unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["text"], "say \"hi\"\nnow");
        assert_eq!(parsed["n"], 3);
        let missing = sink.encode(&event(r#"{"message":"m"}"#)).unwrap_err();
        assert!(missing.contains("no field \"count\""), "{missing}");
        let invalid = sink.encode(&event(r#"{"message":"m","count":"x y"}"#)).unwrap_err();
        assert!(invalid.contains("invalid JSON"), "{invalid}");
    }

    #[test]
    fn batches_are_json_arrays_or_lines() {
        let json = sink("uri = \"http://h/x\"\nbatch = { mode = \"per_batch\" }");
        assert_eq!(json.join_bodies(vec![b"{\"a\":1}".to_vec(), b"{\"a\":2}".to_vec()]), b"[{\"a\":1},{\"a\":2}]");
        let text = sink("uri = \"http://h/x\"\nencoding = \"text\"\nbatch = { mode = \"per_batch\" }");
        assert_eq!(text.join_bodies(vec![b"one".to_vec(), b"two".to_vec()]), b"one\ntwo");
        assert_eq!(text.encode(&event(r#"{"message":"hello"}"#)).unwrap(), b"hello");
    }

    #[test]
    fn configuration_mistakes_are_reported_and_header_values_stay_hidden() {
        let error = config("uri = \"ftp://h/?token=abc\"").err().unwrap();
        assert!(error.contains("\"uri\"") && !error.contains("abc"), "{error}");
        assert!(config("uri = \"http://h\"\nbatch = { max_events = 0 }").err().unwrap().contains("batch.max_events"));
        assert!(config("uri = \"http://h\"\nheaders = { \"bad name\" = \"v\" }")
            .err()
            .unwrap()
            .contains("header name"));
        let parsed: HttpSinkConfig =
            toml::from_str("uri = \"http://h\"\nheaders = { Authorization = \"Bearer zzz-secret\" }").unwrap();
        assert!(!format!("{parsed:?}").contains("zzz-secret"));
        assert!(config("uri = \"http://h\"\nmethod = \"put\"\ntls = { verify = false }").is_ok());
    }
}
