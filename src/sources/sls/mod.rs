//! `sls`: reads Alibaba Cloud Log Service logstores as a member of a
//! consumer group, like the official SDKs' consumer workers.
//!
//! Keys: `endpoint` (`https://cn-hangzhou.log.aliyuncs.com`, or an IP or
//! `localhost` with a port, reached directly with the project in `Host`; a
//! bare host means plain HTTP, as in the SDKs), `project`, `logstores` (one
//! name or a list; all share one connection pool and runtime),
//! `consumer_group`, `consumer_name` (default `GROUP-HOSTNAME-PID`, unique
//! per process), `access_key_id`, `access_key_secret`, `security_token`
//! (STS; optional), `start_position` (`"begin"`, the default, `"end"`, or an
//! RFC 3339 time; only for shards with no checkpoint in the group),
//! `heartbeat_interval` (20 s; the group timeout is twice it, as in the
//! Python SDK), `fetch_interval` (1 s: the wait after an empty pull),
//! `max_log_groups_per_fetch` (1000, at most 1000), `ordered` (false; create
//! the group with `order=true` so split children wait for their parent),
//! `checkpoint_interval` (5 s), `request_timeout` (60 s).
//!
//! Events: one per log, flattened like the SDK (`proto`), `partition` =
//! `LOGSTORE/SHARD`, `byte_size` = the log's raw key and value bytes.
//!
//! Acknowledgements: one batch per pull. Each shard keeps a `PendingBatches`
//! of next-cursors; the checkpoint committed to SLS is the next-cursor of the
//! last pull in the contiguous delivered prefix, never further, at most every
//! `checkpoint_interval`, and always when the shard is released and at
//! shutdown. An errored batch (`delivery_failed`) makes the shard wait (1 s,
//! doubling to 30 s) and read again from the committed position
//! (at-least-once). Commits use `forceSuccess=false`: the service stores a
//! checkpoint only from the consumer that holds the shard, so a consumer that
//! lost a shard (it was slow, or timed out) can never move the new owner's
//! checkpoint backwards; a refused commit stops that shard.
//!
//! Group membership (`consumer`): heartbeats every `heartbeat_interval`
//! report the shards held; a shard no longer assigned stops pulling, waits
//! up to twice `heartbeat_interval` for its batches, commits and is then no
//! longer reported. New shards resume from the group checkpoint. Read-only
//! shards (after a split) are read to their end, the end cursor is
//! committed at once, and the shard is released. After heartbeats fail for
//! longer than the group timeout plus one interval every shard is released
//! locally.
//!
//! Faults: network errors, 5xx and throttling (`ReadQuotaExceed`,
//! `ShardReadQuotaExceed`, `ServerBusy`) and unreadable bodies are retried
//! with exponential backoff and jitter; `InvalidCursor` restarts the shard
//! at its oldest data (`begin`) with a warning. Refused credentials and a
//! skewed clock stop the source with an error naming the fix, and nothing is
//! committed.
//!
//! Metrics: the standard component counters (received events and raw
//! bytes); `pipe_source_lag_seconds{partition,logstore,shard}` (0 when the
//! last pull at the committed cursor was empty, else now minus the receive
//! time of the last delivered log group); `pipe_sls_pulled_log_groups_total`,
//! `pipe_sls_pulled_bytes_total{encoding="compressed|raw"}`,
//! `pipe_sls_heartbeats_total{result}`,
//! `pipe_sls_checkpoint_commits_total{result="ok|refused|error"}`,
//! `pipe_sls_assigned_shards`, `pipe_sls_retries_total{error_code}`,
//! `pipe_sls_cursor_resets_total` (each with `logstore`);
//! `pipe_component_errors_total{error_type}` for `delivery_failed` and
//! `parse_failed`; `pipe_source_acks_pending`.
//!
//! Never writes to SLS beyond consumer-group calls, never deletes a group,
//! and never logs or reports key material.

pub mod client;
mod consumer;
pub mod proto;
mod shard;
pub mod signing;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::units;
use crate::topology::{BuildContext, BuildError, ComponentError, ComponentFuture, Source, SourceContext};
use client::{Credentials, CursorFrom, Endpoint, SlsClient};
use consumer::LogstoreConsumer;
pub use signing::Secret;

const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(20);
const DEFAULT_FETCH_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The service's limit on log groups per PullLogs.
const MAX_LOG_GROUPS_PER_FETCH: u32 = 1000;

/// Where a shard with no checkpoint starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartPosition {
    /// The oldest retained data.
    #[default]
    Begin,
    /// Only data written from now on.
    End,
    /// The first log group received at or after this time (unix seconds).
    Time(i64),
}

impl StartPosition {
    fn parse(text: &str) -> Result<StartPosition, String> {
        match text.trim() {
            "begin" => Ok(StartPosition::Begin),
            "end" => Ok(StartPosition::End),
            other => chrono::DateTime::parse_from_rfc3339(other)
                .map(|time| StartPosition::Time(time.timestamp()))
                .map_err(|_| format!("\"start_position\" is {other:?}; use \"begin\", \"end\" or an RFC 3339 time such as \"2025-07-01T08:00:00Z\"")),
        }
    }

    fn cursor_from(self) -> CursorFrom {
        match self {
            StartPosition::Begin => CursorFrom::Begin,
            StartPosition::End => CursorFrom::End,
            StartPosition::Time(seconds) => CursorFrom::UnixSeconds(seconds),
        }
    }
}

impl<'de> Deserialize<'de> for StartPosition {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<StartPosition, D::Error> {
        let text = String::deserialize(deserializer)?;
        StartPosition::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// One logstore name or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Logstores {
    One(String),
    Many(Vec<String>),
}

impl Logstores {
    fn names(&self) -> Vec<String> {
        match self {
            Logstores::One(name) => vec![name.clone()],
            Logstores::Many(names) => names.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlsSourceConfig {
    /// `https://REGION.log.aliyuncs.com`, or `http://IP:PORT`.
    pub endpoint: String,
    pub project: String,
    pub logstores: Logstores,
    pub consumer_group: String,
    /// Unique within the group; defaults to `GROUP-HOSTNAME-PID`.
    #[serde(default)]
    pub consumer_name: Option<String>,
    pub access_key_id: String,
    pub access_key_secret: Secret,
    /// STS token for temporary credentials.
    #[serde(default)]
    pub security_token: Option<Secret>,
    #[serde(default)]
    pub start_position: StartPosition,
    #[serde(default = "default_heartbeat_interval", with = "units::duration")]
    pub heartbeat_interval: Duration,
    /// The wait after a pull that returned nothing.
    #[serde(default = "default_fetch_interval", with = "units::duration")]
    pub fetch_interval: Duration,
    #[serde(default = "default_max_log_groups_per_fetch")]
    pub max_log_groups_per_fetch: u32,
    /// Create the group with `order=true`.
    #[serde(default)]
    pub ordered: bool,
    #[serde(default = "default_checkpoint_interval", with = "units::duration")]
    pub checkpoint_interval: Duration,
    #[serde(default = "default_request_timeout", with = "units::duration")]
    pub request_timeout: Duration,
}

fn default_heartbeat_interval() -> Duration {
    DEFAULT_HEARTBEAT_INTERVAL
}

fn default_fetch_interval() -> Duration {
    DEFAULT_FETCH_INTERVAL
}

fn default_max_log_groups_per_fetch() -> u32 {
    MAX_LOG_GROUPS_PER_FETCH
}

fn default_checkpoint_interval() -> Duration {
    DEFAULT_CHECKPOINT_INTERVAL
}

fn default_request_timeout() -> Duration {
    DEFAULT_REQUEST_TIMEOUT
}

/// Validated settings shared by every task of the source.
#[derive(Debug, Clone)]
pub(crate) struct SlsSettings {
    pub endpoint: Endpoint,
    pub project: String,
    pub logstores: Vec<String>,
    pub consumer_group: String,
    pub consumer_name: Option<String>,
    pub credentials: Credentials,
    pub start_position: StartPosition,
    pub heartbeat_interval: Duration,
    /// Sent as the group `timeout`: twice the heartbeat interval, in whole
    /// seconds (the API takes seconds).
    pub group_timeout: Duration,
    pub fetch_interval: Duration,
    pub max_log_groups_per_fetch: u32,
    pub ordered: bool,
    pub checkpoint_interval: Duration,
    pub request_timeout: Duration,
}

/// Names SLS accepts for logstores and consumer groups (and nothing that
/// could change the request path).
fn check_name(key: &str, name: &str) -> Result<(), BuildError> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    if valid {
        Ok(())
    } else {
        Err(BuildError::new(format!("{key} {name:?} is not a valid SLS name; use letters, digits, '-' and '_'")))
    }
}

impl SlsSourceConfig {
    pub fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Source>, BuildError> {
        Ok(Box::new(SlsSource { settings: Arc::new(self.settings()?) }))
    }

    pub(crate) fn settings(&self) -> Result<SlsSettings, BuildError> {
        let endpoint =
            Endpoint::parse(&self.endpoint).map_err(|reason| BuildError::new(format!("\"endpoint\": {reason}")))?;
        let project_valid = !self.project.is_empty()
            && self.project.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
        if !project_valid {
            return Err(BuildError::new(format!(
                "\"project\" {:?} is not a valid SLS project name; use lowercase letters, digits and '-'",
                self.project
            )));
        }
        let logstores = self.logstores.names();
        if logstores.is_empty() {
            return Err(BuildError::new("\"logstores\" is empty; name at least one logstore"));
        }
        for (index, logstore) in logstores.iter().enumerate() {
            check_name("\"logstores\":", logstore)?;
            if logstores[..index].contains(logstore) {
                return Err(BuildError::new(format!(
                    "\"logstores\" lists {logstore:?} twice; list each logstore once"
                )));
            }
        }
        check_name("\"consumer_group\"", &self.consumer_group)?;
        if let Some(name) = &self.consumer_name {
            if name.trim().is_empty() {
                return Err(BuildError::new(
                    "\"consumer_name\" is empty; remove it to use GROUP-HOSTNAME-PID, or name this consumer",
                ));
            }
        }
        if self.access_key_id.trim().is_empty() {
            return Err(BuildError::new("\"access_key_id\" is empty; set it (for example from ${SLS_ACCESS_KEY_ID})"));
        }
        if self.access_key_secret.expose().is_empty() {
            return Err(BuildError::new(
                "\"access_key_secret\" is empty; set it (for example from ${SLS_ACCESS_KEY_SECRET})",
            ));
        }
        for (key, value) in [
            ("heartbeat_interval", self.heartbeat_interval),
            ("fetch_interval", self.fetch_interval),
            ("checkpoint_interval", self.checkpoint_interval),
            ("request_timeout", self.request_timeout),
        ] {
            if value.is_zero() {
                return Err(BuildError::new(format!("\"{key}\" is 0; set it above 0, such as \"1s\"")));
            }
        }
        if self.heartbeat_interval < Duration::from_millis(500) {
            return Err(BuildError::new("\"heartbeat_interval\" is under 500ms; set it to \"1s\" or more (the group timeout is twice it, in whole seconds)"));
        }
        if !(1..=MAX_LOG_GROUPS_PER_FETCH).contains(&self.max_log_groups_per_fetch) {
            return Err(BuildError::new(format!(
                "\"max_log_groups_per_fetch\" is {}; set it from 1 to {MAX_LOG_GROUPS_PER_FETCH}",
                self.max_log_groups_per_fetch
            )));
        }
        let group_timeout = Duration::from_secs((self.heartbeat_interval * 2).as_secs_f64().ceil() as u64);
        Ok(SlsSettings {
            endpoint,
            project: self.project.clone(),
            logstores,
            consumer_group: self.consumer_group.clone(),
            consumer_name: self.consumer_name.clone(),
            credentials: Credentials {
                access_key_id: self.access_key_id.trim().to_string(),
                access_key_secret: self.access_key_secret.clone(),
                security_token: self.security_token.clone().filter(|token| !token.expose().is_empty()),
            },
            start_position: self.start_position,
            heartbeat_interval: self.heartbeat_interval,
            group_timeout,
            fetch_interval: self.fetch_interval,
            max_log_groups_per_fetch: self.max_log_groups_per_fetch,
            ordered: self.ordered,
            checkpoint_interval: self.checkpoint_interval,
            request_timeout: self.request_timeout,
        })
    }
}

/// Why the source stopped on its own. Shown on `/health` and in the log;
/// never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlsSourceError {
    #[error(
        "SLS refused the credentials for project {project:?} ({detail}); check \"access_key_id\", \"access_key_secret\" and \"security_token\""
    )]
    Credentials { project: String, detail: String },
    #[error("SLS says this machine's clock is more than 15 minutes off ({detail}); fix the system clock (enable NTP) and restart")]
    Clock { detail: String },
    #[error("SLS cannot serve logstore {logstore:?} of project {project:?} ({detail}); check \"endpoint\", \"project\" and \"logstores\"")]
    Configuration { project: String, logstore: String, detail: String },
    #[error("cannot create the SLS HTTP client: {0}")]
    Client(String),
    #[error("a task of logstore {logstore:?} stopped unexpectedly: {reason}")]
    Task { logstore: String, reason: String },
}

struct SlsSource {
    settings: Arc<SlsSettings>,
}

impl Source for SlsSource {
    fn run(self: Box<Self>, cx: SourceContext) -> ComponentFuture {
        Box::pin(self.run_consumers(cx))
    }
}

impl SlsSource {
    async fn run_consumers(self: Box<Self>, cx: SourceContext) -> Result<(), ComponentError> {
        let settings = self.settings;
        let lag_gauges = cx.lag_gauges();
        let SourceContext { id, output, shutdown, health, metrics, acks_pending, .. } = cx;
        let client = SlsClient::new(
            &settings.endpoint,
            &settings.project,
            settings.credentials.clone(),
            settings.request_timeout,
        )
        .map_err(|reason| ComponentError::new(SlsSourceError::Client(reason).to_string()))?;
        let consumer_name =
            settings.consumer_name.clone().unwrap_or_else(|| default_consumer_name(&settings.consumer_group));
        tracing::info!(source = %id, consumer = %consumer_name, group = %settings.consumer_group, logstores = ?settings.logstores, "joining the SLS consumer group");
        // Tripped by the first fatal error: every task stops at once and
        // nothing more is committed.
        let abort = CancellationToken::new();
        let mut consumers = JoinSet::new();
        for logstore in &settings.logstores {
            let consumer = LogstoreConsumer::new(consumer::ConsumerParts {
                client: client.clone(),
                settings: Arc::clone(&settings),
                logstore: logstore.clone(),
                consumer_name: consumer_name.clone(),
                source_id: Arc::clone(&id),
                metrics: metrics.clone(),
                acks_pending: acks_pending.clone(),
                lag_gauges: lag_gauges.clone(),
                shutdown: shutdown.clone(),
                abort: abort.clone(),
            });
            let output = output.clone();
            let logstore = logstore.clone();
            consumers.spawn(async move { (logstore, consumer.run(output).await) });
        }
        // Each consumer holds its own clone; downstream closes once they are gone.
        drop(output);
        let mut failure: Option<SlsSourceError> = None;
        while let Some(joined) = consumers.join_next().await {
            let error = match joined {
                Ok((_, Ok(()))) => continue,
                Ok((_, Err(error))) => error,
                Err(join_error) => SlsSourceError::Task { logstore: "?".into(), reason: join_error.to_string() },
            };
            if failure.is_none() {
                tracing::error!(source = %id, error = %error, "the SLS source is stopping");
                health.failed(error.to_string());
                abort.cancel();
                failure = Some(error);
            }
        }
        match failure {
            Some(error) => Err(ComponentError::new(error.to_string())),
            None => Ok(()),
        }
    }
}

/// `GROUP-HOSTNAME-PID`: what the SDK examples use, unique per process.
fn default_consumer_name(group: &str) -> String {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!("{group}-{hostname}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        endpoint = "http://127.0.0.1:8080"
        project = "demo-project"
        logstores = "app"
        consumer_group = "pipe"
        access_key_id = "id"
        access_key_secret = "secret"
    "#;

    fn parse(text: &str) -> Result<SlsSettings, String> {
        let config: SlsSourceConfig = toml::from_str(text).map_err(|error| error.to_string())?;
        config.settings().map_err(|error| error.0)
    }

    #[test]
    fn defaults_follow_the_documented_values() {
        let settings = parse(MINIMAL).unwrap();
        assert_eq!(settings.logstores, ["app"]);
        assert_eq!(settings.start_position, StartPosition::Begin);
        assert_eq!(settings.heartbeat_interval, Duration::from_secs(20));
        assert_eq!(settings.group_timeout, Duration::from_secs(40));
        assert_eq!(settings.fetch_interval, Duration::from_secs(1));
        assert_eq!(settings.max_log_groups_per_fetch, 1000);
        assert!(!settings.ordered);
        assert_eq!(settings.checkpoint_interval, Duration::from_secs(5));
        assert_eq!(settings.request_timeout, Duration::from_secs(60));
        assert!(settings.endpoint.direct);
        assert!(settings.credentials.security_token.is_none());
    }

    #[test]
    fn every_key_parses() {
        let text = r#"
            endpoint = "https://cn-hangzhou.log.aliyuncs.com"
            project = "p-1"
            logstores = ["a", "b_2"]
            consumer_group = "g"
            consumer_name = "me"
            access_key_id = "id"
            access_key_secret = "secret"
            security_token = "sts"
            start_position = "2025-07-01T08:00:00+08:00"
            heartbeat_interval = "1s"
            fetch_interval = "200ms"
            max_log_groups_per_fetch = 10
            ordered = true
            checkpoint_interval = "2s"
            request_timeout = "30s"
        "#;
        let settings = parse(text).unwrap();
        assert_eq!(settings.logstores, ["a", "b_2"]);
        assert_eq!(settings.start_position, StartPosition::Time(1_751_328_000));
        assert_eq!(settings.group_timeout, Duration::from_secs(2));
        assert!(settings.ordered && !settings.endpoint.direct && settings.endpoint.https);
        assert_eq!(settings.credentials.security_token.as_ref().map(Secret::expose), Some("sts"));
        assert_eq!(
            parse(&MINIMAL.replace("logstores = \"app\"", "logstores = \"app\"\nstart_position = \"end\""))
                .unwrap()
                .start_position,
            StartPosition::End
        );
    }

    #[test]
    fn invalid_values_name_the_key_and_the_fix() {
        let cases = [
            ("endpoint = \"http://127.0.0.1:8080\"", "endpoint = \"ftp://x\"", "\"endpoint\""),
            ("project = \"demo-project\"", "project = \"Demo.Project\"", "\"project\""),
            ("logstores = \"app\"", "logstores = []", "\"logstores\""),
            ("logstores = \"app\"", "logstores = [\"a\", \"a\"]", "twice"),
            ("logstores = \"app\"", "logstores = \"a/b\"", "\"logstores\""),
            ("consumer_group = \"pipe\"", "consumer_group = \"\"", "\"consumer_group\""),
            ("access_key_secret = \"secret\"", "access_key_secret = \"\"", "\"access_key_secret\""),
            ("logstores = \"app\"", "logstores = \"app\"\nstart_position = \"yesterday\"", "start_position"),
            (
                "logstores = \"app\"",
                "logstores = \"app\"\nmax_log_groups_per_fetch = 1001",
                "\"max_log_groups_per_fetch\"",
            ),
            ("logstores = \"app\"", "logstores = \"app\"\nfetch_interval = \"0s\"", "\"fetch_interval\""),
            ("logstores = \"app\"", "logstores = \"app\"\nheartbeat_interval = \"100ms\"", "\"heartbeat_interval\""),
        ];
        for (from, to, expected) in cases {
            let text = MINIMAL.replace(from, to);
            let error = parse(&text).err().unwrap_or_else(|| panic!("{to} must be rejected"));
            assert!(error.contains(expected), "{to}: {error}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected_and_secrets_never_print() {
        assert!(parse(&format!("{MINIMAL}\nshards = 3")).is_err());
        let config: SlsSourceConfig = toml::from_str(&MINIMAL.replace("\"secret\"", "\"very-secret-value\"")).unwrap();
        let debug = format!("{config:?} {:?}", config.settings().unwrap());
        assert!(!debug.contains("very-secret-value"), "{debug}");
    }

    #[test]
    fn the_default_consumer_name_is_group_host_pid() {
        let name = default_consumer_name("g");
        assert!(name.starts_with("g-") && name.ends_with(&format!("-{}", std::process::id())), "{name}");
    }

    #[test]
    fn fatal_errors_say_what_to_fix() {
        let credentials =
            SlsSourceError::Credentials { project: "p".into(), detail: "Unauthorized".into() }.to_string();
        assert!(credentials.contains("credentials") && credentials.contains("access_key_secret"), "{credentials}");
        let clock = SlsSourceError::Clock { detail: "RequestTimeExpired".into() }.to_string();
        assert!(clock.contains("clock"), "{clock}");
    }
}
