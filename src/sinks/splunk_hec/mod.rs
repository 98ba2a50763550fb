//! `splunk_hec`: delivers events to Splunk's HTTP Event Collector.
//!
//! Replaces the SLS → Splunk consumer script: each event becomes one JSON
//! envelope with `time` taken from `__time__` (plus `__time_ns_part__`) and
//! the remaining fields as the `event` object; envelopes are batched, gzipped
//! and posted with one channel GUID per sink instance.
//!
//! Keys (`[sinks.ID]`):
//! - `endpoint` (required): HEC base URL, `http://` or `https://`, such as
//!   `https://splunk:8088`; the sink appends `/services/collector/...`.
//! - `token` (required): the HEC token; never logged or shown.
//! - `index`, `source`, `sourcetype`, `host`: templates (a literal, or
//!   `{{ field.path }}` and strftime); unset or empty lets Splunk use the
//!   token's defaults. An event missing a placeholder's field is
//!   dead-lettered.
//! - `timestamp_field` (default `"__time__"`): seconds (integer, float or
//!   numeric text); written as `time` with nanoseconds from
//!   `__time_ns_part__` when present; both fields are left out of `event`.
//!   `""` sends no `time`. A missing or unusable value sends no `time` and
//!   keeps the field.
//! - `fields` (default `[]`): event field paths copied into the envelope's
//!   indexed `fields` (they stay in `event` too). `/event` only.
//! - `endpoint_target`: `"event"` (default) or `"raw"` (one JSON line per
//!   event, metadata in the query string, no `time`: Splunk extracts it).
//! - `compression`: `"gzip"` (default, level 1) or `"none"`.
//! - `batch.max_events` (default unlimited), `batch.max_bytes` (default
//!   `"1MB"`, uncompressed; safe for every Splunk), `batch.timeout`
//!   (default `"1s"`).
//! - `request.concurrency`: a number, or `"adaptive"` (default; AIMD, see
//!   `concurrency`); `request.timeout` (default `"60s"`);
//!   `request.retry_initial_backoff` (default `"1s"`),
//!   `request.retry_max_backoff` (default `"30s"`).
//! - `tls.verify` (default `true`), `tls.ca_file` (PEM bundle of extra CAs).
//! - `acknowledgements.indexer` (default `true`),
//!   `acknowledgements.query_interval` (default `"10s"`),
//!   `acknowledgements.max_pending` (default 1000 ack ids),
//!   `acknowledgements.timeout` (default `"5m"`).
//! - `healthcheck.required` (default `false`).
//!
//! Acknowledgements: an event is settled as delivered only when Splunk
//! reports it indexed: its request's `ackId` read `true` on
//! `/services/collector/ack` (polled every `query_interval`, all pending ids
//! in one query). With `acknowledgements.indexer = false`, or when HEC shows
//! acknowledgement is off (a 200 without `ackId`, or code 14 on `/ack`; a
//! warning is logged once), an HTTP 200 with code 0 is delivery. An ack not
//! `true` within `acknowledgements.timeout` is presumed lost and its request
//! is sent again (duplicates are possible, loss is not). When
//! `max_pending` ids are outstanding the sink stops taking input.
//!
//! Failures, per the reference's status table: busy, 5xx, 429, 408, network
//! errors and timeouts are retried with exponential backoff and jitter
//! (honouring `Retry-After`), and while a request is being retried the sink
//! reads no input, so backpressure reaches the source instead of data being
//! dropped. A 400 with `invalid-event-number` N: the events before N were
//! accepted, event N is dead-lettered with Splunk's code, the events after N
//! are sent again. Other permanent refusals dead-letter the request's
//! events; 413 splits the request in halves. Token errors (401/403), a wrong
//! URL (404/405/3xx) or an unsupported encoding (415) stop delivery: the sink
//! reports `failed` on `/health` with the reason, logs it, settles every
//! event it holds or later receives as errored (so no source commits past
//! them), and returns the error once its input closes.
//!
//! Start-up: `GET /services/collector/health`; an unhealthy or unreachable
//! HEC is logged and shown as `degraded` on `/health`, and is fatal only
//! with `healthcheck.required = true`.
//!
//! Metrics: the standard component counters (`sent` = events and
//! uncompressed bytes acknowledged), `pipe_splunk_hec_request_duration_seconds`
//! (data request latency), `pipe_splunk_hec_retries_total{reason}`
//! (`server_busy`, `server_error`, `throttled`, `timeout`, `network`,
//! `ack_timeout`), `pipe_splunk_hec_acks_pending`,
//! `pipe_component_dead_letters_total`, and
//! `pipe_component_errors_total{error_type="ack_query_failed"}`.

mod acknowledgements;
pub mod client;
pub mod concurrency;
pub mod encoder;
mod json;
mod sink;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use self::client::{HecClient, TlsSettings};
use self::concurrency::ConcurrencySetting;
use self::encoder::{Compression, EncoderSettings, EndpointTarget, HecEncoder};
use self::sink::{SinkOptions, SplunkHecSink};
use crate::config::secret::Secret;
use crate::config::units;
use crate::topology::{BuildContext, BuildError, Sink};

const DEFAULT_TIMESTAMP_FIELD: &str = "__time__";
/// Vector's and the reference's choice: 1 MB uncompressed fits every Splunk,
/// Splunk Cloud's documented request limit included.
const DEFAULT_BATCH_MAX_BYTES: u64 = 1_000_000;
const DEFAULT_BATCH_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_RETRY_INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const DEFAULT_RETRY_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Splunk's recommended client behaviour (reference §6): poll about every
/// 10 s, presume data lost after about 5 minutes.
const DEFAULT_ACK_QUERY_INTERVAL: Duration = Duration::from_secs(10);
const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(300);
/// Each pending ack holds its compressed request for a possible resend
/// (about 100-200 KB for a 1 MB batch), so 1000 bounds that memory to a few
/// hundred MB while allowing ~100 MB/s at the default 10 s poll interval.
const DEFAULT_MAX_PENDING_ACKS: usize = 1000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplunkHecSinkConfig {
    pub endpoint: String,
    pub token: Secret,
    #[serde(default)]
    pub index: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub sourcetype: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default = "default_timestamp_field")]
    pub timestamp_field: String,
    /// Event field paths sent as indexed fields.
    #[serde(default)]
    pub fields: Vec<String>,
    #[serde(default)]
    pub endpoint_target: EndpointTarget,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub request: RequestConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub acknowledgements: AcknowledgementsConfig,
    #[serde(default)]
    pub healthcheck: HealthcheckConfig,
}

/// `batch.*`: when a request is cut.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    #[serde(default)]
    pub max_events: Option<usize>,
    /// Uncompressed bytes per request.
    #[serde(default = "default_batch_max_bytes", with = "units::size")]
    pub max_bytes: u64,
    /// How long the first event of a batch may wait for more.
    #[serde(default = "default_batch_timeout", with = "units::duration")]
    pub timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> BatchConfig {
        BatchConfig { max_events: None, max_bytes: DEFAULT_BATCH_MAX_BYTES, timeout: DEFAULT_BATCH_TIMEOUT }
    }
}

/// `request.*`: parallelism, timeouts, retries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    #[serde(default)]
    pub concurrency: ConcurrencySetting,
    #[serde(default = "default_request_timeout", with = "units::duration")]
    pub timeout: Duration,
    #[serde(default = "default_retry_initial_backoff", with = "units::duration")]
    pub retry_initial_backoff: Duration,
    #[serde(default = "default_retry_max_backoff", with = "units::duration")]
    pub retry_max_backoff: Duration,
}

impl Default for RequestConfig {
    fn default() -> RequestConfig {
        RequestConfig {
            concurrency: ConcurrencySetting::default(),
            timeout: DEFAULT_REQUEST_TIMEOUT,
            retry_initial_backoff: DEFAULT_RETRY_INITIAL_BACKOFF,
            retry_max_backoff: DEFAULT_RETRY_MAX_BACKOFF,
        }
    }
}

/// `tls.*`: only used with an `https` endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default = "default_true")]
    pub verify: bool,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl Default for TlsConfig {
    fn default() -> TlsConfig {
        TlsConfig { verify: true, ca_file: None }
    }
}

/// `acknowledgements.*`: indexer acknowledgement.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcknowledgementsConfig {
    #[serde(default = "default_true")]
    pub indexer: bool,
    #[serde(default = "default_ack_query_interval", with = "units::duration")]
    pub query_interval: Duration,
    #[serde(default = "default_max_pending_acks")]
    pub max_pending: usize,
    /// An ack not `true` after this long is presumed lost; its request is resent.
    #[serde(default = "default_ack_timeout", with = "units::duration")]
    pub timeout: Duration,
}

impl Default for AcknowledgementsConfig {
    fn default() -> AcknowledgementsConfig {
        AcknowledgementsConfig {
            indexer: true,
            query_interval: DEFAULT_ACK_QUERY_INTERVAL,
            max_pending: DEFAULT_MAX_PENDING_ACKS,
            timeout: DEFAULT_ACK_TIMEOUT,
        }
    }
}

/// `healthcheck.*`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthcheckConfig {
    /// Whether an unhealthy HEC at start-up stops the sink.
    #[serde(default)]
    pub required: bool,
}

fn default_timestamp_field() -> String {
    DEFAULT_TIMESTAMP_FIELD.to_string()
}
fn default_batch_max_bytes() -> u64 {
    DEFAULT_BATCH_MAX_BYTES
}
fn default_batch_timeout() -> Duration {
    DEFAULT_BATCH_TIMEOUT
}
fn default_request_timeout() -> Duration {
    DEFAULT_REQUEST_TIMEOUT
}
fn default_retry_initial_backoff() -> Duration {
    DEFAULT_RETRY_INITIAL_BACKOFF
}
fn default_retry_max_backoff() -> Duration {
    DEFAULT_RETRY_MAX_BACKOFF
}
fn default_ack_query_interval() -> Duration {
    DEFAULT_ACK_QUERY_INTERVAL
}
fn default_ack_timeout() -> Duration {
    DEFAULT_ACK_TIMEOUT
}
fn default_max_pending_acks() -> usize {
    DEFAULT_MAX_PENDING_ACKS
}
fn default_true() -> bool {
    true
}

impl SplunkHecSinkConfig {
    pub fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Sink>, BuildError> {
        let endpoint = self.endpoint_url()?;
        let encoder = self.build_encoder()?;
        self.check_limits()?;
        let ca_pem = match &self.tls.ca_file {
            // Read at build time, unlike other IO, so `pipe validate` catches
            // a missing or malformed CA file before deployment.
            Some(path) => Some(std::fs::read(path).map_err(|error| {
                BuildError::new(format!("\"tls.ca_file\": cannot read {}: {error}", path.display()))
            })?),
            None => None,
        };
        let client = HecClient::new(
            &endpoint,
            &self.token,
            self.endpoint_target,
            self.compression,
            &TlsSettings { verify: self.tls.verify, ca_pem },
            self.request.timeout,
        )
        .map_err(BuildError::new)?;
        Ok(Box::new(SplunkHecSink::new(
            Arc::new(encoder),
            client,
            SinkOptions {
                batch_max_events: self.batch.max_events.unwrap_or(usize::MAX),
                batch_max_bytes: usize::try_from(self.batch.max_bytes).unwrap_or(usize::MAX),
                batch_timeout: self.batch.timeout,
                compression: self.compression,
                concurrency: self.request.concurrency,
                request_timeout: self.request.timeout,
                retry_initial_backoff: self.request.retry_initial_backoff,
                retry_max_backoff: self.request.retry_max_backoff,
                indexer_acknowledgements: self.acknowledgements.indexer,
                ack_query_interval: self.acknowledgements.query_interval,
                max_pending_acks: self.acknowledgements.max_pending,
                ack_timeout: self.acknowledgements.timeout,
                healthcheck_required: self.healthcheck.required,
            },
        )))
    }

    /// The encoder alone, for benches and tests of the envelope format.
    pub fn build_encoder(&self) -> Result<HecEncoder, BuildError> {
        if self.endpoint_target == EndpointTarget::Raw && !self.fields.is_empty() {
            return Err(BuildError::new(
                "\"fields\" (indexed fields) only exist on the event endpoint; remove them or set \"endpoint_target\" = \"event\"",
            ));
        }
        if let Some(position) = self.fields.iter().position(|field| field.trim().is_empty()) {
            return Err(BuildError::new(format!(
                "\"fields\"[{position}] is empty; list event field paths like \"__source__\""
            )));
        }
        HecEncoder::new(EncoderSettings {
            target: self.endpoint_target,
            timestamp_field: Some(self.timestamp_field.clone()),
            indexed_fields: self.fields.clone(),
            host: self.host.clone(),
            source: self.source.clone(),
            sourcetype: self.sourcetype.clone(),
            index: self.index.clone(),
        })
        .map_err(|(key, error)| BuildError::new(format!("\"{key}\": {error}")))
    }

    fn endpoint_url(&self) -> Result<Url, BuildError> {
        let invalid = |why: String| {
            BuildError::new(format!("\"endpoint\" {why}; set the HEC base URL, such as \"https://splunk:8088\""))
        };
        let url = Url::parse(self.endpoint.trim())
            .map_err(|error| invalid(format!("{:?} is not a URL ({error})", self.endpoint)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!("uses scheme \"{}\"", url.scheme())));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("carries credentials; put the HEC token in \"token\"".to_string()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("has a query or fragment".to_string()));
        }
        if url.path().contains("/services/collector") {
            return Err(invalid(format!(
                "includes the path {:?}; the sink adds /services/collector/... itself",
                url.path()
            )));
        }
        if self.token.expose().trim().is_empty() {
            return Err(BuildError::new(
                "\"token\" is empty; set it to the HEC token, e.g. token = \"${SPLUNK_HEC_TOKEN}\"",
            ));
        }
        Ok(url)
    }

    fn check_limits(&self) -> Result<(), BuildError> {
        let above_zero = |key: &str, zero: bool| {
            if zero {
                Err(BuildError::new(format!("\"{key}\" is 0; set it above 0")))
            } else {
                Ok(())
            }
        };
        above_zero("batch.max_events", self.batch.max_events == Some(0))?;
        above_zero("batch.max_bytes", self.batch.max_bytes == 0)?;
        above_zero("batch.timeout", self.batch.timeout.is_zero())?;
        above_zero("request.concurrency", self.request.concurrency == ConcurrencySetting::Fixed(0))?;
        above_zero("request.timeout", self.request.timeout.is_zero())?;
        above_zero("request.retry_initial_backoff", self.request.retry_initial_backoff.is_zero())?;
        above_zero("acknowledgements.query_interval", self.acknowledgements.query_interval.is_zero())?;
        above_zero("acknowledgements.max_pending", self.acknowledgements.max_pending == 0)?;
        above_zero("acknowledgements.timeout", self.acknowledgements.timeout.is_zero())?;
        if self.request.retry_max_backoff < self.request.retry_initial_backoff {
            return Err(BuildError::new(format!(
                "\"request.retry_max_backoff\" ({}) is below \"request.retry_initial_backoff\" ({}); raise it",
                units::format_duration(self.request.retry_max_backoff),
                units::format_duration(self.request.retry_initial_backoff)
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<SplunkHecSinkConfig, String> {
        let text = format!("endpoint = \"http://127.0.0.1:8088\"\ntoken = \"t0k3n-secret\"\n{extra}");
        toml::from_str(&text).map_err(|error| error.message().to_string())
    }

    fn build_error(extra: &str) -> String {
        let config = config(extra).unwrap();
        match config.build(&BuildContext { id: "hec".into(), data_dir: "data".into() }) {
            Ok(_) => panic!("{extra:?} must not build"),
            Err(error) => error.0,
        }
    }

    #[test]
    fn defaults_follow_the_reference() {
        let config = config("").unwrap();
        assert_eq!(config.timestamp_field, "__time__");
        assert_eq!(config.batch.max_bytes, 1_000_000);
        assert_eq!(config.batch.timeout, Duration::from_secs(1));
        assert_eq!(config.compression, Compression::Gzip);
        assert_eq!(config.request.concurrency, ConcurrencySetting::Adaptive);
        assert!(config.tls.verify && config.acknowledgements.indexer && !config.healthcheck.required);
        assert_eq!(config.acknowledgements.query_interval, Duration::from_secs(10));
        assert_eq!(config.acknowledgements.timeout, Duration::from_secs(300));
        assert!(config.build(&BuildContext { id: "hec".into(), data_dir: "data".into() }).is_ok());
    }

    #[test]
    fn nested_tables_parse_and_reject_unknown_keys() {
        let config = config(
            "batch.max_events = 100\nbatch.max_bytes = \"512KiB\"\nrequest.concurrency = 4\nrequest.timeout = \"5s\"\n\
             acknowledgements.max_pending = 10\nhealthcheck.required = true\ntls.verify = false",
        )
        .unwrap();
        assert_eq!(config.batch.max_events, Some(100));
        assert_eq!(config.batch.max_bytes, 524_288);
        assert_eq!(config.request.concurrency, ConcurrencySetting::Fixed(4));
        assert!(!config.tls.verify && config.healthcheck.required);
        let unknown = config_error("batch.max_event = 1");
        assert!(unknown.contains("max_event"), "{unknown}");
        assert!(config_error("acknowledgements.enabled = true").contains("enabled"));
    }

    fn config_error(extra: &str) -> String {
        config(extra).err().unwrap_or_else(|| panic!("{extra:?} must not parse"))
    }

    #[test]
    fn build_errors_name_the_key_and_the_fix() {
        assert!(build_error("batch.max_bytes = 0").contains("\"batch.max_bytes\" is 0"));
        assert!(build_error("request.concurrency = 0").contains("\"request.concurrency\" is 0"));
        assert!(build_error("request.retry_max_backoff = \"100ms\"").contains("\"request.retry_max_backoff\""));
        assert!(build_error("index = \"{{ unclosed\"").starts_with("\"index\":"));
        assert!(build_error("endpoint_target = \"raw\"\nfields = [\"a\"]").contains("\"fields\""));
        assert!(build_error("tls.ca_file = \"/nonexistent/ca.pem\"").contains("\"tls.ca_file\""));
    }

    #[test]
    fn endpoint_and_token_are_checked_without_showing_the_token() {
        let bad_endpoint = |endpoint: &str| {
            let config: SplunkHecSinkConfig =
                toml::from_str(&format!("endpoint = \"{endpoint}\"\ntoken = \"t0k3n-secret\"")).unwrap();
            config.build(&BuildContext { id: "hec".into(), data_dir: "data".into() }).err().unwrap().0
        };
        assert!(bad_endpoint("splunk:8088").contains("\"endpoint\""));
        assert!(bad_endpoint("ftp://splunk").contains("scheme"));
        assert!(bad_endpoint("https://splunk:8088/services/collector/event").contains("adds /services/collector"));
        let with_credentials = bad_endpoint("https://user:pw@splunk:8088");
        assert!(with_credentials.contains("credentials") && !with_credentials.contains("pw"), "{with_credentials}");
        let empty: SplunkHecSinkConfig = toml::from_str("endpoint = \"https://s:8088\"\ntoken = \" \"").unwrap();
        assert!(empty
            .build(&BuildContext { id: "hec".into(), data_dir: "data".into() })
            .err()
            .unwrap()
            .0
            .contains("\"token\" is empty"));
        let debug = format!("{:?}", config("").unwrap());
        assert!(!debug.contains("t0k3n-secret") && debug.contains("***"), "{debug}");
    }
}
