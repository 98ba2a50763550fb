//! `[sources.ID]` with `type = "elasticsearch_poller"`: the raw keys and
//! their validation into `PollerSettings`. No IO.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value as JsonValue;

use super::poller::ElasticsearchPoller;
use super::query::{IndexPattern, TimestampFormat};
use crate::config::units;
use crate::elasticsearch::connection::default_request_timeout;
use crate::elasticsearch::{EsAuthConfig, EsConnectionConfig, EsTlsConfig, WritebackTarget, WritebackTargetConfig};
use crate::topology::{BuildContext, BuildError, Source};

pub const CHECKPOINT_FILE_NAME: &str = "checkpoint.json";
const DEFAULT_RUN_EVERY: Duration = Duration::from_secs(60);
const DEFAULT_BUFFER_TIME: Duration = Duration::from_secs(15 * 60);
/// ElastAlert's default: resume from a checkpoint at most a week old.
const DEFAULT_OLD_QUERY_LIMIT: Duration = Duration::from_secs(7 * 24 * 3600);
const DEFAULT_PAGE_SIZE: usize = 1000;
/// Elasticsearch's `index.max_result_window` default; larger pages are refused.
const MAX_PAGE_SIZE: usize = 10_000;
const DEFAULT_PIT_KEEP_ALIVE: Duration = Duration::from_secs(60);
const DEFAULT_RETRY_INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const DEFAULT_RETRY_MAX_BACKOFF: Duration = Duration::from_secs(60);

/// `query`: a query-string text or a query DSL object.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum QueryConfig {
    QueryString(String),
    Dsl(serde_json::Map<String, JsonValue>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchPollerConfig {
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub auth: Option<EsAuthConfig>,
    #[serde(default)]
    pub tls: EsTlsConfig,
    #[serde(default = "default_request_timeout", with = "units::duration")]
    pub request_timeout: Duration,
    /// Index pattern, comma list, or strftime names (`logstash-%Y.%m.%d`).
    pub index: String,
    #[serde(default = "default_timestamp_field")]
    pub timestamp_field: String,
    #[serde(default)]
    pub timestamp_format: TimestampFormat,
    #[serde(default)]
    pub query: Option<QueryConfig>,
    #[serde(default = "default_run_every", with = "units::duration")]
    pub run_every: Duration,
    #[serde(default = "default_buffer_time", with = "units::duration")]
    pub buffer_time: Duration,
    #[serde(default, with = "units::duration")]
    pub query_delay: Duration,
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    #[serde(default = "default_old_query_limit", with = "units::duration")]
    pub old_query_limit: Duration,
    /// A unique keyword field to break timestamp ties when paging without a
    /// point in time (or on servers without `_shard_doc`).
    #[serde(default)]
    pub tiebreaker_field: Option<String>,
    /// Page inside a point in time where the server has one.
    #[serde(default = "default_true")]
    pub point_in_time: bool,
    #[serde(default = "default_pit_keep_alive", with = "units::duration")]
    pub pit_keep_alive: Duration,
    #[serde(default = "default_retry_initial_backoff", with = "units::duration")]
    pub retry_initial_backoff: Duration,
    #[serde(default = "default_retry_max_backoff", with = "units::duration")]
    pub retry_max_backoff: Duration,
    /// Also keep the checkpoint in ElastAlert's status index, so another
    /// host can take over.
    #[serde(default)]
    pub writeback: Option<WritebackTargetConfig>,
}

fn default_timestamp_field() -> String {
    "@timestamp".to_string()
}
fn default_run_every() -> Duration {
    DEFAULT_RUN_EVERY
}
fn default_buffer_time() -> Duration {
    DEFAULT_BUFFER_TIME
}
fn default_page_size() -> usize {
    DEFAULT_PAGE_SIZE
}
fn default_old_query_limit() -> Duration {
    DEFAULT_OLD_QUERY_LIMIT
}
fn default_true() -> bool {
    true
}
fn default_pit_keep_alive() -> Duration {
    DEFAULT_PIT_KEEP_ALIVE
}
fn default_retry_initial_backoff() -> Duration {
    DEFAULT_RETRY_INITIAL_BACKOFF
}
fn default_retry_max_backoff() -> Duration {
    DEFAULT_RETRY_MAX_BACKOFF
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct PollerSettings {
    pub connection: EsConnectionConfig,
    pub index: IndexPattern,
    pub timestamp_field: String,
    pub timestamp_format: TimestampFormat,
    /// The user's query as one query DSL clause.
    pub query: Option<JsonValue>,
    pub run_every: Duration,
    pub buffer_time: Duration,
    pub query_delay: Duration,
    pub page_size: usize,
    pub old_query_limit: Duration,
    pub tiebreaker_field: Option<String>,
    pub point_in_time: bool,
    pub pit_keep_alive: Duration,
    pub retry_initial_backoff: Duration,
    pub retry_max_backoff: Duration,
    pub checkpoint_path: PathBuf,
    /// Where the checkpoint is also kept (`writeback`).
    pub writeback: Option<WritebackTarget>,
}

impl ElasticsearchPollerConfig {
    pub fn build(&self, cx: &BuildContext) -> Result<Box<dyn Source>, BuildError> {
        Ok(Box::new(ElasticsearchPoller::new(self.settings(cx)?)))
    }

    pub fn settings(&self, cx: &BuildContext) -> Result<PollerSettings, BuildError> {
        let connection = EsConnectionConfig::new(&self.endpoints, self.auth.as_ref(), &self.tls, self.request_timeout)
            .map_err(BuildError::new)?;
        let index = IndexPattern::parse(&self.index).map_err(|error| BuildError::new(format!("\"index\": {error}")))?;
        if self.timestamp_field.trim().is_empty() {
            return Err(BuildError::new(
                "\"timestamp_field\" is empty; name the event time field, such as \"@timestamp\"",
            ));
        }
        for (key, value) in
            [("run_every", self.run_every), ("buffer_time", self.buffer_time), ("pit_keep_alive", self.pit_keep_alive)]
        {
            if value.is_zero() {
                return Err(BuildError::new(format!("\"{key}\" is 0; set it above 0")));
            }
        }
        if self.page_size == 0 || self.page_size > MAX_PAGE_SIZE {
            return Err(BuildError::new(format!(
                "\"page_size\" is {}; set it between 1 and {MAX_PAGE_SIZE} (index.max_result_window)",
                self.page_size
            )));
        }
        if self.old_query_limit < self.buffer_time {
            return Err(BuildError::new(format!(
                "\"old_query_limit\" ({}) is shorter than \"buffer_time\" ({}); a restart could then never resume; raise old_query_limit",
                units::format_duration(self.old_query_limit),
                units::format_duration(self.buffer_time)
            )));
        }
        if self.retry_initial_backoff.is_zero() {
            return Err(BuildError::new("\"retry_initial_backoff\" is 0; set it above 0, such as \"1s\""));
        }
        if let Some(field) = &self.tiebreaker_field {
            if field.trim().is_empty() {
                return Err(BuildError::new(
                    "\"tiebreaker_field\" is empty; name a unique keyword field, or remove the key",
                ));
            }
        }
        let query = match &self.query {
            None => None,
            Some(QueryConfig::QueryString(text)) if text.trim().is_empty() => None,
            Some(QueryConfig::QueryString(text)) => Some(serde_json::json!({"query_string": {"query": text}})),
            Some(QueryConfig::Dsl(object)) => {
                if object.len() != 1 {
                    return Err(BuildError::new(
                        "\"query\" must be one query DSL clause such as { term = { level = \"ERROR\" } } or a query_string text",
                    ));
                }
                Some(JsonValue::Object(object.clone()))
            }
        };
        let writeback = match &self.writeback {
            Some(writeback) => Some(writeback.resolve(Some(&connection)).map_err(BuildError::new)?),
            None => None,
        };
        Ok(PollerSettings {
            connection,
            index,
            timestamp_field: self.timestamp_field.clone(),
            timestamp_format: self.timestamp_format,
            query,
            run_every: self.run_every,
            buffer_time: self.buffer_time,
            query_delay: self.query_delay,
            page_size: self.page_size,
            old_query_limit: self.old_query_limit,
            tiebreaker_field: self.tiebreaker_field.clone(),
            point_in_time: self.point_in_time,
            pit_keep_alive: self.pit_keep_alive,
            retry_initial_backoff: self.retry_initial_backoff,
            retry_max_backoff: self.retry_max_backoff,
            checkpoint_path: cx.data_dir.join(&cx.id).join(CHECKPOINT_FILE_NAME),
            writeback,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Result<PollerSettings, BuildError> {
        let config: ElasticsearchPollerConfig = toml::from_str(text).expect("parses");
        config.settings(&BuildContext { id: "es_in".into(), data_dir: "data".into() })
    }

    #[test]
    fn defaults_follow_elastalert() {
        let settings = settings("endpoints = [\"http://127.0.0.1:9200\"]\nindex = \"logstash-*\"").unwrap();
        assert_eq!(settings.run_every, Duration::from_secs(60));
        assert_eq!(settings.buffer_time, Duration::from_secs(900));
        assert_eq!(settings.old_query_limit, Duration::from_secs(7 * 86_400));
        assert_eq!(settings.query_delay, Duration::ZERO);
        assert_eq!(settings.page_size, 1000);
        assert_eq!(settings.timestamp_field, "@timestamp");
        assert!(settings.point_in_time && settings.query.is_none());
        assert_eq!(settings.checkpoint_path, PathBuf::from("data/es_in/checkpoint.json"));
        assert!(settings.writeback.is_none());
    }

    #[test]
    fn the_writeback_table_defaults_to_the_sources_own_connection() {
        let own = settings("endpoints = [\"http://own:9200\"]\nindex = \"a\"\n[writeback]\n").unwrap();
        let writeback = own.writeback.expect("writeback");
        assert_eq!(
            (writeback.connection.endpoints.as_slice(), writeback.index_prefix.as_str()),
            (&["http://own:9200".to_string()][..], "elastalert")
        );
        let other = settings("endpoints = [\"http://own:9200\"]\nindex = \"a\"\nwriteback = { endpoints = [\"http://wb:9200\"], writeback_index = \"wb\" }").unwrap();
        let writeback = other.writeback.expect("writeback");
        assert_eq!(
            (writeback.connection.endpoints.as_slice(), writeback.index_prefix.as_str()),
            (&["http://wb:9200".to_string()][..], "wb")
        );
        let error =
            settings("endpoints = [\"http://own:9200\"]\nindex = \"a\"\nwriteback = { writeback_index = \"\" }")
                .err()
                .unwrap();
        assert!(error.0.contains("writeback_index"), "{error}");
    }

    #[test]
    fn queries_take_both_forms() {
        let text = settings(
            "endpoints = [\"http://h:9200\"]\nindex = \"a\"\nquery = \"message:Traceback OR message:*Exception*\"",
        )
        .unwrap();
        assert_eq!(text.query.unwrap()["query_string"]["query"], "message:Traceback OR message:*Exception*");
        let dsl = settings(
            "endpoints = [\"http://h:9200\"]\nindex = \"a\"\n[query.bool]\nfilter = [{ term = { level = \"ERROR\" } }]",
        )
        .unwrap();
        assert_eq!(dsl.query.unwrap()["bool"]["filter"][0]["term"]["level"], "ERROR");
    }

    #[test]
    fn invalid_values_name_the_key() {
        let base = "endpoints = [\"http://h:9200\"]\nindex = \"a\"\n";
        for (extra, key) in [
            ("page_size = 0", "\"page_size\""),
            ("page_size = 20000", "\"page_size\""),
            ("run_every = \"0s\"", "\"run_every\""),
            ("old_query_limit = \"1m\"", "\"old_query_limit\""),
            ("timestamp_field = \"\"", "\"timestamp_field\""),
            ("tiebreaker_field = \" \"", "\"tiebreaker_field\""),
        ] {
            let error = settings(&format!("{base}{extra}")).err().unwrap_or_else(|| panic!("{extra} must be rejected"));
            assert!(error.0.contains(key), "{extra}: {error}");
        }
        assert!(settings("endpoints = []\nindex = \"a\"").is_err());
        assert!(settings("endpoints = [\"http://h\"]\nindex = \"a%Q\"").err().unwrap().0.contains("\"index\""));
        assert!(toml::from_str::<ElasticsearchPollerConfig>("endpoints = [\"http://h\"]\nindex = \"a\"\nbogus = 1")
            .is_err());
    }
}
