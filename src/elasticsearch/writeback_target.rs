//! The `writeback` table of components that read or write ElastAlert's
//! writeback indices besides the `elasticsearch` sink: the `rules`
//! transform (silences read back at start-up) and the
//! `elasticsearch_poller` source (its checkpoint).
//!
//! Keys: `endpoints`, `auth.*`, `tls.*`, `request_timeout` (the connection
//! keys of `connection`); `writeback_index` (the index prefix, default
//! `elastalert`, as the sink's); `startup_timeout` (default 30 s: how long a
//! start-up read retries an unreachable cluster before the component goes
//! on without it).
//!
//! A component that has a connection of its own (the poller) may leave the
//! connection keys out and use its own; one without (the rules transform)
//! must set `endpoints`. `resolve` only validates, without IO (certificate
//! files are read when the component starts and builds its `EsClient`).
//!
//! `WritebackTarget::read_at_startup` is the one retry loop in this module:
//! the bounded start-up read both components make. Transient failures
//! (transport errors, 429, 5xx) are retried with backoff until
//! `startup_timeout`; authentication errors and refused requests end it at
//! once. Either way the caller decides how to go on without the data.

use std::future::Future;
use std::time::Duration;

use serde::Deserialize;

use super::connection::DEFAULT_REQUEST_TIMEOUT;
use super::{EsAuthConfig, EsClient, EsConnectionConfig, EsError, EsTlsConfig};
use crate::config::units;
use crate::retry::RetryDelays;

/// ElastAlert's conventional prefix; the indices are `elastalert`,
/// `elastalert_status`, `elastalert_silence`, ...
pub const DEFAULT_WRITEBACK_INDEX: &str = "elastalert";
/// Long enough to ride out a cluster restart or a rolling upgrade of the
/// node pipe talks to, short enough that a dead cluster does not hold the
/// component's input back for long.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

fn default_writeback_index() -> String {
    DEFAULT_WRITEBACK_INDEX.to_string()
}

fn default_startup_timeout() -> Duration {
    DEFAULT_STARTUP_TIMEOUT
}

/// `writeback` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WritebackTargetConfig {
    #[serde(default)]
    pub endpoints: Option<Vec<String>>,
    #[serde(default)]
    pub auth: Option<EsAuthConfig>,
    #[serde(default)]
    pub tls: Option<EsTlsConfig>,
    #[serde(default, with = "units::optional_duration")]
    pub request_timeout: Option<Duration>,
    #[serde(default = "default_writeback_index")]
    pub writeback_index: String,
    #[serde(default = "default_startup_timeout", with = "units::duration")]
    pub startup_timeout: Duration,
}

/// First wait before a start-up read is tried again; doubles up to the max.
const STARTUP_READ_INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// Several attempts fit in the default 30 s `startup_timeout`.
const STARTUP_READ_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why a start-up read of the writeback indices gave up.
#[derive(Debug, thiserror::Error)]
pub enum StartupReadError {
    #[error("writeback: {0}")]
    Client(String),
    #[error("writeback: Elasticsearch did not answer within startup_timeout ({0:?}); check writeback.endpoints or raise writeback.startup_timeout")]
    TimedOut(Duration),
    #[error("writeback: {error}; still failing after startup_timeout ({startup_timeout:?}); check writeback.endpoints or raise writeback.startup_timeout")]
    Unreachable { error: EsError, startup_timeout: Duration },
    #[error("writeback: {0}")]
    Auth(String),
    #[error("writeback: Elasticsearch refused the request: {0}; check writeback.writeback_index")]
    Refused(EsError),
}

impl StartupReadError {
    /// Wrong credentials do not heal by themselves; callers log these louder.
    pub fn is_auth(&self) -> bool {
        matches!(self, StartupReadError::Auth(_))
    }
}

/// The validated `writeback` table.
#[derive(Debug, Clone)]
pub struct WritebackTarget {
    pub connection: EsConnectionConfig,
    /// The index prefix (`writeback_index`).
    pub index_prefix: String,
    pub startup_timeout: Duration,
}

impl WritebackTarget {
    /// Builds the client (reading certificate files).
    pub fn client(&self) -> Result<EsClient, StartupReadError> {
        EsClient::new(&self.connection).map_err(StartupReadError::Client)
    }

    /// Runs `attempt` until it succeeds, retrying transient failures with
    /// backoff; gives up once `startup_timeout` has passed (an attempt in
    /// flight then is abandoned). `what` names the read in retry logs.
    pub async fn read_at_startup<T, Attempt>(
        &self,
        client: &EsClient,
        what: &str,
        mut attempt: impl FnMut() -> Attempt,
    ) -> Result<T, StartupReadError>
    where
        Attempt: Future<Output = Result<T, EsError>>,
    {
        let deadline = tokio::time::Instant::now() + self.startup_timeout;
        let mut delays = RetryDelays::new(STARTUP_READ_INITIAL_BACKOFF, STARTUP_READ_MAX_BACKOFF);
        loop {
            let error = match tokio::time::timeout_at(deadline, attempt()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(error)) => error,
                Err(_) => return Err(StartupReadError::TimedOut(self.startup_timeout)),
            };
            if error.is_auth() {
                return Err(StartupReadError::Auth(error.with_hint(client.auth_strategy())));
            }
            if !error.is_transient() {
                return Err(StartupReadError::Refused(error));
            }
            let delay = delays.next_delay();
            if tokio::time::Instant::now() + delay >= deadline {
                return Err(StartupReadError::Unreachable { error, startup_timeout: self.startup_timeout });
            }
            tracing::warn!(%error, retry_in = ?delay, "writeback: cannot read {what} yet; retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

impl WritebackTargetConfig {
    /// Validates the table. `own_connection` is the component's own
    /// connection, used when `endpoints` is absent; without one, `endpoints`
    /// is required. Errors name the `writeback.*` key and the fix.
    pub fn resolve(&self, own_connection: Option<&EsConnectionConfig>) -> Result<WritebackTarget, String> {
        let connection = match (&self.endpoints, own_connection) {
            (Some(endpoints), _) => EsConnectionConfig::new(
                endpoints,
                self.auth.as_ref(),
                &self.tls.clone().unwrap_or_default(),
                self.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT),
            )
            .map_err(|error| format!("writeback: {error}"))?,
            (None, Some(own)) => {
                if self.auth.is_some() || self.tls.is_some() || self.request_timeout.is_some() {
                    return Err("\"writeback.auth\", \"writeback.tls\" and \"writeback.request_timeout\" apply only with \"writeback.endpoints\"; set the endpoints too, or remove them to use the component's own connection".into());
                }
                own.clone()
            }
            (None, None) => {
                return Err("\"writeback.endpoints\" is missing; list the Elasticsearch URLs holding the writeback indices, such as [\"http://127.0.0.1:9200\"]".into())
            }
        };
        if self.startup_timeout.is_zero() {
            return Err("\"writeback.startup_timeout\" is 0; set it above 0, such as \"30s\"".into());
        }
        let index_prefix =
            validate_writeback_index(&self.writeback_index).map_err(|error| format!("writeback: {error}"))?;
        Ok(WritebackTarget { connection, index_prefix, startup_timeout: self.startup_timeout })
    }
}

/// Checks a `writeback_index` prefix and returns it trimmed: Elasticsearch
/// index names are lowercase, cannot start with `-`, `_` or `+`, and cannot
/// hold `,`, `*`, spaces, `/` or `"`.
pub fn validate_writeback_index(prefix: &str) -> Result<String, String> {
    let trimmed = prefix.trim();
    if trimmed.is_empty()
        || trimmed != trimmed.to_lowercase()
        || trimmed.starts_with(['-', '_', '+'])
        || trimmed.contains([',', '*', ' ', '/', '"'])
    {
        return Err(format!("\"writeback_index\" is {prefix:?}; use a lowercase index name such as \"elastalert\""));
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str, own: Option<&EsConnectionConfig>) -> Result<WritebackTarget, String> {
        toml::from_str::<WritebackTargetConfig>(text).expect("parses").resolve(own)
    }

    fn own() -> EsConnectionConfig {
        EsConnectionConfig::new(&["http://own:9200".to_string()], None, &EsTlsConfig::default(), Duration::from_secs(5))
            .unwrap()
    }

    #[test]
    fn defaults_and_the_components_own_connection() {
        let target = resolve("", Some(&own())).unwrap();
        assert_eq!(target.connection.endpoints, ["http://own:9200"]);
        assert_eq!(target.connection.request_timeout, Duration::from_secs(5));
        assert_eq!((target.index_prefix.as_str(), target.startup_timeout), ("elastalert", DEFAULT_STARTUP_TIMEOUT));
        let target = resolve(
            "endpoints = [\"http://wb:9200/\"]\nwriteback_index = \"alerts_wb\"\nstartup_timeout = \"5s\"\nauth.strategy = \"bearer\"\nauth.token = \"t\"",
            Some(&own()),
        )
        .unwrap();
        assert_eq!(target.connection.endpoints, ["http://wb:9200"]);
        assert_eq!(target.connection.request_timeout, DEFAULT_REQUEST_TIMEOUT);
        assert_eq!((target.index_prefix.as_str(), target.startup_timeout), ("alerts_wb", Duration::from_secs(5)));
    }

    #[test]
    fn invalid_tables_name_the_key() {
        for (text, own_connection, key) in [
            ("", None, "\"writeback.endpoints\""),
            ("auth.strategy = \"bearer\"\nauth.token = \"t\"", Some(own()), "\"writeback.auth\""),
            ("endpoints = []", None, "\"endpoints\""),
            ("endpoints = [\"http://h\"]\nwriteback_index = \"Upper\"", None, "\"writeback_index\""),
            ("endpoints = [\"http://h\"]\nstartup_timeout = \"0s\"", None, "\"writeback.startup_timeout\""),
        ] {
            let error =
                resolve(text, own_connection.as_ref()).err().unwrap_or_else(|| panic!("{text} must be rejected"));
            assert!(error.contains(key), "{text}: {error}");
        }
        assert!(toml::from_str::<WritebackTargetConfig>("bogus = 1").is_err());
    }

    fn target(url: &str, startup_timeout: &str) -> WritebackTarget {
        resolve(
            &format!("endpoints = [\"{url}\"]\nstartup_timeout = \"{startup_timeout}\"\nrequest_timeout = \"1s\""),
            None,
        )
        .unwrap()
    }

    fn status_error(status: u16) -> EsError {
        EsError::Status { endpoint: "http://h".into(), status, error_type: None, reason: None }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_and_others_end_the_read_at_once() {
        let target = target("http://127.0.0.1:9", "20s");
        let client = target.client().unwrap();
        let mut attempts = 0;
        let value = target
            .read_at_startup(&client, "a test read", || {
                attempts += 1;
                let outcome = if attempts < 3 { Err(status_error(503)) } else { Ok(attempts) };
                async move { outcome }
            })
            .await
            .unwrap();
        assert_eq!(value, 3);
        for (status, auth) in [(401, true), (400, false)] {
            let error = target
                .read_at_startup(&client, "a test read", || async move { Err::<(), _>(status_error(status)) })
                .await
                .unwrap_err();
            assert_eq!(error.is_auth(), auth, "{error}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_cluster_is_given_up_after_startup_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        // Nothing listens there any more: every attempt is refused.
        drop(listener);
        let target = target(&url, "1500ms");
        let client = target.client().unwrap();
        let started = std::time::Instant::now();
        let error = target.read_at_startup(&client, "a test read", || client.server_info()).await.unwrap_err();
        let elapsed = started.elapsed();
        assert!(matches!(error, StartupReadError::Unreachable { .. }), "{error}");
        assert!(error.to_string().contains("writeback.endpoints"), "{error}");
        assert!(elapsed >= Duration::from_millis(250), "retried before giving up: {elapsed:?}");
        assert!(elapsed < Duration::from_secs(10), "bounded by startup_timeout: {elapsed:?}");
    }
}
