//! `[sinks.ID]` with `type = "elasticsearch"`: the raw keys and their
//! validation into `SinkSettings`. No IO.

use std::time::Duration;

use serde::Deserialize;

use super::sink::ElasticsearchSink;
use super::writeback::WritebackIndices;
use crate::config::units;
use crate::elasticsearch::connection::default_request_timeout;
use crate::elasticsearch::writeback_target::validate_writeback_index;
use crate::elasticsearch::{EsAuthConfig, EsConnectionConfig, EsTlsConfig};
use crate::template::Template;
use crate::topology::{BuildContext, BuildError, Sink};

const DEFAULT_MAX_EVENTS: usize = 1000;
/// A few MB per request is Elasticsearch's usual sweet spot; far below the
/// 100 MB `http.max_content_length`.
const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
const DEFAULT_BATCH_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_CONCURRENCY: usize = 2;
const DEFAULT_RETRY_INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const DEFAULT_RETRY_MAX_BACKOFF: Duration = Duration::from_secs(60);
pub use crate::elasticsearch::writeback_target::DEFAULT_WRITEBACK_INDEX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkAction {
    /// Add or replace.
    #[default]
    Index,
    /// Add; an existing id answers 409, counted as delivered.
    Create,
}

impl BulkAction {
    pub fn name(self) -> &'static str {
        match self {
            BulkAction::Index => "index",
            BulkAction::Create => "create",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkMode {
    /// General `_bulk` writer into `index`.
    #[default]
    Bulk,
    /// ElastAlert writeback documents (alerts, status, errors, silences).
    Writeback,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    #[serde(default = "default_max_bytes", with = "units::size")]
    pub max_bytes: u64,
    #[serde(default = "default_batch_timeout", with = "units::duration")]
    pub timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> BatchConfig {
        BatchConfig { max_events: DEFAULT_MAX_EVENTS, max_bytes: DEFAULT_MAX_BYTES, timeout: DEFAULT_BATCH_TIMEOUT }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    /// Bulk requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default = "default_retry_initial_backoff", with = "units::duration")]
    pub retry_initial_backoff: Duration,
    #[serde(default = "default_retry_max_backoff", with = "units::duration")]
    pub retry_max_backoff: Duration,
}

impl Default for RequestConfig {
    fn default() -> RequestConfig {
        RequestConfig {
            concurrency: DEFAULT_CONCURRENCY,
            retry_initial_backoff: DEFAULT_RETRY_INITIAL_BACKOFF,
            retry_max_backoff: DEFAULT_RETRY_MAX_BACKOFF,
        }
    }
}

fn default_max_events() -> usize {
    DEFAULT_MAX_EVENTS
}
fn default_max_bytes() -> u64 {
    DEFAULT_MAX_BYTES
}
fn default_batch_timeout() -> Duration {
    DEFAULT_BATCH_TIMEOUT
}
fn default_concurrency() -> usize {
    DEFAULT_CONCURRENCY
}
fn default_retry_initial_backoff() -> Duration {
    DEFAULT_RETRY_INITIAL_BACKOFF
}
fn default_retry_max_backoff() -> Duration {
    DEFAULT_RETRY_MAX_BACKOFF
}
fn default_writeback_index() -> String {
    DEFAULT_WRITEBACK_INDEX.to_string()
}
fn default_timestamp_field() -> String {
    "@timestamp".to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchSinkConfig {
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub auth: Option<EsAuthConfig>,
    #[serde(default)]
    pub tls: EsTlsConfig,
    #[serde(default = "default_request_timeout", with = "units::duration")]
    pub request_timeout: Duration,
    #[serde(default)]
    pub mode: SinkMode,
    /// Template: strftime (from the event's `timestamp_field`, UTC) and
    /// `{{ field }}`. Required in `bulk` mode.
    #[serde(default)]
    pub index: Option<String>,
    /// Field whose value becomes the document `_id`.
    #[serde(default)]
    pub id_field: Option<String>,
    #[serde(default)]
    pub action: BulkAction,
    /// Field whose time fills the strftime specifiers of `index`.
    #[serde(default = "default_timestamp_field")]
    pub timestamp_field: String,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub compression: Compression,
    #[serde(default)]
    pub request: RequestConfig,
    /// Prefix of the writeback indices (`mode = "writeback"`).
    #[serde(default = "default_writeback_index")]
    pub writeback_index: String,
}

/// Where documents go.
#[derive(Debug, Clone)]
pub enum Destination {
    Bulk { index: Template, id_field: Option<String>, action: BulkAction },
    Writeback(WritebackIndices),
}

#[derive(Debug, Clone)]
pub struct SinkSettings {
    pub connection: EsConnectionConfig,
    pub destination: Destination,
    pub timestamp_field: String,
    pub max_events: usize,
    pub max_bytes: usize,
    pub batch_timeout: Duration,
    pub compression: Compression,
    pub concurrency: usize,
    pub retry_initial_backoff: Duration,
    pub retry_max_backoff: Duration,
}

impl ElasticsearchSinkConfig {
    pub fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Sink>, BuildError> {
        Ok(Box::new(ElasticsearchSink::new(self.settings()?)))
    }

    pub fn settings(&self) -> Result<SinkSettings, BuildError> {
        let connection = EsConnectionConfig::new(&self.endpoints, self.auth.as_ref(), &self.tls, self.request_timeout)
            .map_err(BuildError::new)?;
        let destination = match self.mode {
            SinkMode::Bulk => {
                let index = self
                    .index
                    .as_deref()
                    .ok_or_else(|| BuildError::new("\"index\" is missing; name the target index, such as \"logs-%Y.%m.%d\" or \"logs-{{ service }}\""))?;
                let index = Template::parse(index).map_err(|error| BuildError::new(format!("\"index\": {error}")))?;
                if index.as_str().trim().is_empty() {
                    return Err(BuildError::new("\"index\" is empty; name the target index"));
                }
                if let Some(field) = &self.id_field {
                    if field.trim().is_empty() {
                        return Err(BuildError::new(
                            "\"id_field\" is empty; name the field holding the document id, or remove the key",
                        ));
                    }
                }
                Destination::Bulk { index, id_field: self.id_field.clone(), action: self.action }
            }
            SinkMode::Writeback => {
                if self.index.is_some() || self.id_field.is_some() {
                    return Err(BuildError::new(
                        "\"index\" and \"id_field\" do not apply with mode = \"writeback\"; the indices are named by \"writeback_index\"",
                    ));
                }
                let prefix = validate_writeback_index(&self.writeback_index).map_err(BuildError::new)?;
                Destination::Writeback(WritebackIndices::new(&prefix))
            }
        };
        if self.batch.max_events == 0 {
            return Err(BuildError::new("\"batch.max_events\" is 0; set it above 0"));
        }
        if self.batch.max_bytes == 0 {
            return Err(BuildError::new("\"batch.max_bytes\" is 0; set it above 0, such as \"10MiB\""));
        }
        if self.batch.timeout.is_zero() {
            return Err(BuildError::new("\"batch.timeout\" is 0; set it above 0, such as \"1s\""));
        }
        if self.request.concurrency == 0 {
            return Err(BuildError::new("\"request.concurrency\" is 0; set it to 1 or more"));
        }
        if self.request.retry_initial_backoff.is_zero() {
            return Err(BuildError::new("\"request.retry_initial_backoff\" is 0; set it above 0, such as \"1s\""));
        }
        Ok(SinkSettings {
            connection,
            destination,
            timestamp_field: self.timestamp_field.clone(),
            max_events: self.batch.max_events,
            max_bytes: usize::try_from(self.batch.max_bytes).unwrap_or(usize::MAX),
            batch_timeout: self.batch.timeout,
            compression: self.compression,
            concurrency: self.request.concurrency,
            retry_initial_backoff: self.request.retry_initial_backoff,
            retry_max_backoff: self.request.retry_max_backoff,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Result<SinkSettings, BuildError> {
        toml::from_str::<ElasticsearchSinkConfig>(text).expect("parses").settings()
    }

    #[test]
    fn defaults_and_nested_keys_parse() {
        let defaults = settings("endpoints = [\"http://h:9200\"]\nindex = \"logs-%Y.%m.%d\"").unwrap();
        assert_eq!(
            (defaults.max_events, defaults.max_bytes, defaults.batch_timeout),
            (1000, 10 << 20, Duration::from_secs(1))
        );
        assert_eq!(defaults.compression, Compression::None);
        assert_eq!(defaults.concurrency, 2);
        assert!(matches!(defaults.destination, Destination::Bulk { action: BulkAction::Index, id_field: None, .. }));
        let custom = settings(
            "endpoints = [\"http://h:9200\"]\nindex = \"logs\"\naction = \"create\"\nid_field = \"event.id\"\ncompression = \"gzip\"\nbatch.max_events = 5\nbatch.max_bytes = \"1MiB\"\nbatch.timeout = \"200ms\"\nrequest.concurrency = 4",
        )
        .unwrap();
        assert_eq!((custom.max_events, custom.max_bytes, custom.concurrency), (5, 1 << 20, 4));
        assert!(matches!(custom.destination, Destination::Bulk { action: BulkAction::Create, .. }));
        let writeback = settings("endpoints = [\"http://h:9200\"]\nmode = \"writeback\"").unwrap();
        let Destination::Writeback(indices) = writeback.destination else { panic!("writeback") };
        assert_eq!(indices.status, "elastalert_status");
    }

    #[test]
    fn invalid_values_name_the_key() {
        for (text, key) in [
            ("endpoints = [\"http://h:9200\"]", "\"index\""),
            ("endpoints = [\"http://h:9200\"]\nindex = \"a {{\"", "\"index\""),
            ("endpoints = [\"http://h:9200\"]\nindex = \"a\"\nbatch.max_events = 0", "\"batch.max_events\""),
            ("endpoints = [\"http://h:9200\"]\nindex = \"a\"\nrequest.concurrency = 0", "\"request.concurrency\""),
            (
                "endpoints = [\"http://h:9200\"]\nmode = \"writeback\"\nwriteback_index = \"Elast\"",
                "\"writeback_index\"",
            ),
            ("endpoints = [\"http://h:9200\"]\nmode = \"writeback\"\nindex = \"x\"", "\"index\""),
        ] {
            let error = settings(text).err().unwrap_or_else(|| panic!("{text} must be rejected"));
            assert!(error.0.contains(key), "{text}: {error}");
        }
    }
}
