//! `wecom`: sends events (alerts from the rules engine, or any event) to
//! WeCom (企业微信), through a group robot webhook or as app messages.
//!
//! Keys:
//! - `mode`: `"robot"` or `"app"` (required).
//! - `endpoint`: API base URL, default `https://qyapi.weixin.qq.com` (tests
//!   point it at the emulator).
//! - robot: `webhook_key` (required; take it from the environment,
//!   `webhook_key = "${WECOM_WEBHOOK_KEY}"`), `mentioned_list`,
//!   `mentioned_mobile_list` (text format only; `"@all"` mentions everyone).
//! - app: `corp_id`, `corp_secret`, `agent_id` (required), `to_user`,
//!   `to_party`, `to_tag` (`|`-separated; `to_user` defaults to `"@all"`
//!   when none is set), `duplicate_check_interval` (turns on WeCom's
//!   duplicate suppression for retried identical bodies; at most 4 h).
//! - `format`: `"text"` (default) or `"markdown"`.
//! - `template`: message body with `{{ field.path }}` placeholders; default:
//!   an ElastAlert-style alert body (see `message`). `missing_value`
//!   (default `"<MISSING VALUE>"`) fills placeholders the event lacks.
//! - `message_max_chars` (default 1024): every field value inserted into the
//!   body is cut to this many characters with `...` appended.
//! - `group_wait` (default 10 s), `group_max` (default 10): alerts arriving
//!   within `group_wait` of the first waiting one become one message showing
//!   at most `group_max` of them and "… and N more alerts".
//! - `rate_limit.messages`, `rate_limit.window`: sends per window to this
//!   destination (default robot 20 per 1m, app 30 per 1m), shared by every
//!   sink of the process using the same robot key or app. The window is
//!   kept with a small margin (`rate::pacing_margin`) so request latency
//!   never makes WeCom count more sends in its window than the sink did.
//! - `alert_time_limit` (default 2d, as ElastAlert): an alert still undelivered
//!   this long after it was queued is dead-lettered instead of sent.
//! - `retry.initial_backoff` (default 1s), `retry.max_backoff` (default 1m).
//! - `request_timeout` (default 10s).
//! - `drain_timeout` (default 5s): when the input closes (shutdown, reload),
//!   how long to keep delivering before leaving the rest queued for the next
//!   start. Keep it, plus `request_timeout`, under `shutdown_timeout`.
//! - `max_pending_alerts` (default 10 000): the sink stops reading its input
//!   (backpressure) while this many alerts are queued.
//!
//! Acknowledgements: an event is acknowledged once it is durably queued in
//! `DATA_DIR/wecom/SINK_ID/pending.ndjson` (fsynced; see `queue`). From then
//! on the queue guarantees delivery or dead-lettering, across restarts: a
//! restart resends what was pending, each message part exactly once after a
//! clean stop. Delivery: errcode 0 is delivered; -1, 45033, network errors,
//! timeouts and HTTP errors are retried with backoff; 45009 waits out the
//! rate window; 40014/42001/41001 refresh the app token once; per-message
//! refusals (40058, 44004, 45002, unknown codes) dead-letter that message;
//! configuration refusals (93000, 93004, 93008, 40001, 40013, 40091, 40056,
//! 60020, 50003, ...) dead-letter the message, mark the sink failed on
//! `/health` with the errcode and the fix, and stop the sink (what is still
//! queued stays queued for the next start). Nothing is dropped for rate
//! limits: sends queue behind the limiter.
//!
//! Metrics (besides the component ones; `sent_events` counts alerts
//! delivered to WeCom): `pipe_wecom_messages_sent_total` (API messages, one
//! per part), `pipe_wecom_split_parts_total` (parts of messages that needed
//! splitting), `pipe_wecom_alerts_summarised_total` (alerts counted in "… and
//! N more"), `pipe_wecom_retries_total{errcode}` (errcode, or `network`,
//! `timeout`, `http_STATUS`, `bad_response`), `pipe_wecom_rate_limit_waits_total`
//! and `pipe_wecom_rate_limit_wait_seconds`, `pipe_wecom_queue_depth`,
//! `pipe_wecom_token_fetches_total`, `pipe_component_dead_letters_total`.
//!
//! Never logs the webhook key, the corp secret or an access token: they are
//! `Secret`s, and every URL is redacted before it is logged or reported.

pub mod api;
pub mod app;
pub mod message;
pub mod queue;
pub mod rate;
pub mod robot;
mod sink;

use std::time::Duration;

use serde::Deserialize;

use super::redact::Secret;
use crate::config::units;
use crate::retry::Backoff;
use crate::template::Template;
use crate::topology::{BuildContext, BuildError, Sink};
use message::{MessageFormat, MessageRenderer};
pub use sink::WecomSink;

pub const DEFAULT_ENDPOINT: &str = "https://qyapi.weixin.qq.com";
/// The old ElastAlert plugin's cut, kept as the default.
const DEFAULT_MESSAGE_MAX_CHARS: usize = 1024;
const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(10);
const DEFAULT_GROUP_MAX: usize = 10;
/// WeCom's documented robot limit.
const ROBOT_MESSAGES_PER_WINDOW: u32 = 20;
/// WeCom's per-member app limit (30 per minute); an app message to `@all`
/// counts against every member, so the app as a whole keeps to it.
const APP_MESSAGES_PER_WINDOW: u32 = 30;
const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(60);
/// ElastAlert's `alert_time_limit` default.
const DEFAULT_ALERT_TIME_LIMIT: Duration = Duration::from_secs(2 * 24 * 3600);
const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MAX_PENDING_ALERTS: usize = 10_000;
/// WeCom's maximum `duplicate_check_interval` (reference: from an SDK comment).
const MAX_DUPLICATE_CHECK_INTERVAL: Duration = Duration::from_secs(4 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WecomMode {
    Robot,
    App,
}

/// `agent_id` as an integer or a numeric string (old configs quote it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum AgentId {
    Number(i64),
    Text(String),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub messages: Option<u32>,
    #[serde(default, with = "units::optional_duration")]
    pub window: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WecomRetryConfig {
    #[serde(default = "default_initial_backoff", with = "units::duration")]
    pub initial_backoff: Duration,
    #[serde(default = "default_max_backoff", with = "units::duration")]
    pub max_backoff: Duration,
}

impl Default for WecomRetryConfig {
    fn default() -> WecomRetryConfig {
        WecomRetryConfig { initial_backoff: DEFAULT_INITIAL_BACKOFF, max_backoff: DEFAULT_MAX_BACKOFF }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WecomSinkConfig {
    pub mode: WecomMode,
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    #[serde(default)]
    pub webhook_key: Option<Secret>,
    #[serde(default)]
    pub mentioned_list: Vec<String>,
    #[serde(default)]
    pub mentioned_mobile_list: Vec<String>,
    #[serde(default)]
    pub corp_id: Option<String>,
    #[serde(default)]
    pub corp_secret: Option<Secret>,
    #[serde(default)]
    pub agent_id: Option<AgentId>,
    #[serde(default)]
    pub to_user: Option<String>,
    #[serde(default)]
    pub to_party: Option<String>,
    #[serde(default)]
    pub to_tag: Option<String>,
    #[serde(default, with = "units::optional_duration")]
    pub duplicate_check_interval: Option<Duration>,
    #[serde(default)]
    pub format: MessageFormat,
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default = "default_missing_value")]
    pub missing_value: String,
    #[serde(default = "default_message_max_chars")]
    pub message_max_chars: usize,
    #[serde(default = "default_group_wait", with = "units::duration")]
    pub group_wait: Duration,
    #[serde(default = "default_group_max")]
    pub group_max: usize,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    #[serde(default = "default_alert_time_limit", with = "units::duration")]
    pub alert_time_limit: Duration,
    #[serde(default)]
    pub retry: WecomRetryConfig,
    #[serde(default = "default_request_timeout", with = "units::duration")]
    pub request_timeout: Duration,
    #[serde(default = "default_drain_timeout", with = "units::duration")]
    pub drain_timeout: Duration,
    #[serde(default = "default_max_pending_alerts")]
    pub max_pending_alerts: usize,
}

fn default_endpoint() -> String {
    DEFAULT_ENDPOINT.to_string()
}
fn default_missing_value() -> String {
    "<MISSING VALUE>".to_string()
}
fn default_message_max_chars() -> usize {
    DEFAULT_MESSAGE_MAX_CHARS
}
fn default_group_wait() -> Duration {
    DEFAULT_GROUP_WAIT
}
fn default_group_max() -> usize {
    DEFAULT_GROUP_MAX
}
fn default_alert_time_limit() -> Duration {
    DEFAULT_ALERT_TIME_LIMIT
}
fn default_initial_backoff() -> Duration {
    DEFAULT_INITIAL_BACKOFF
}
fn default_max_backoff() -> Duration {
    DEFAULT_MAX_BACKOFF
}
fn default_request_timeout() -> Duration {
    DEFAULT_REQUEST_TIMEOUT
}
fn default_drain_timeout() -> Duration {
    DEFAULT_DRAIN_TIMEOUT
}
fn default_max_pending_alerts() -> usize {
    DEFAULT_MAX_PENDING_ALERTS
}

/// Where messages go, validated.
#[derive(Debug, Clone)]
pub enum DestinationSettings {
    Robot {
        key: Secret,
        mentioned_list: Vec<String>,
        mentioned_mobile_list: Vec<String>,
    },
    App {
        corp_id: String,
        corp_secret: Secret,
        agent_id: i64,
        recipients: app::Recipients,
        duplicate_check_interval: Option<Duration>,
    },
}

/// Everything the runtime needs, validated by `WecomSinkConfig::build`.
#[derive(Debug, Clone)]
pub struct WecomSettings {
    pub endpoint: String,
    pub destination: DestinationSettings,
    pub renderer: MessageRenderer,
    pub group_wait: Duration,
    pub group_max: usize,
    pub rate_limit_messages: u32,
    pub rate_limit_window: Duration,
    pub alert_time_limit: Duration,
    pub backoff: Backoff,
    pub request_timeout: Duration,
    pub drain_timeout: Duration,
    pub max_pending_alerts: usize,
}

fn required<'a, T>(value: &'a Option<T>, key: &str, hint: &str) -> Result<&'a T, BuildError> {
    value.as_ref().ok_or_else(|| BuildError::new(format!("\"{key}\" is required with mode = \"app\"; {hint}")))
}

fn non_empty(value: Option<&String>) -> Option<String> {
    value.map(|text| text.trim().to_string()).filter(|text| !text.is_empty())
}

impl WecomSinkConfig {
    pub fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Sink>, BuildError> {
        Ok(Box::new(WecomSink::new(self.settings()?)))
    }

    /// Validates the configuration into runtime settings. Does no IO.
    pub fn settings(&self) -> Result<WecomSettings, BuildError> {
        let endpoint = self.endpoint.trim_end_matches('/').to_string();
        match reqwest::Url::parse(&endpoint) {
            Ok(url) if (url.scheme() == "https" || url.scheme() == "http") && url.query().is_none() => {}
            _ => {
                return Err(BuildError::new(format!(
                    "\"endpoint\" {:?} is not an http(s) base URL; use {DEFAULT_ENDPOINT} or the emulator's http://HOST:PORT",
                    super::redact::redact_url(&endpoint)
                )))
            }
        }
        let app_keys = [
            ("corp_id", self.corp_id.is_some()),
            ("corp_secret", self.corp_secret.is_some()),
            ("agent_id", self.agent_id.is_some()),
            ("to_user", self.to_user.is_some()),
            ("to_party", self.to_party.is_some()),
            ("to_tag", self.to_tag.is_some()),
            ("duplicate_check_interval", self.duplicate_check_interval.is_some()),
        ];
        let robot_keys = [
            ("webhook_key", self.webhook_key.is_some()),
            ("mentioned_list", !self.mentioned_list.is_empty()),
            ("mentioned_mobile_list", !self.mentioned_mobile_list.is_empty()),
        ];
        let destination = match self.mode {
            WecomMode::Robot => {
                if let Some((key, _)) = app_keys.iter().find(|(_, set)| *set) {
                    return Err(BuildError::new(format!(
                        "\"{key}\" is only used with mode = \"app\"; remove it, or set mode = \"app\""
                    )));
                }
                let key = match &self.webhook_key {
                    Some(key) if !key.expose().trim().is_empty() => Secret::new(key.expose().trim()),
                    _ => {
                        return Err(BuildError::new(
                            "\"webhook_key\" is required with mode = \"robot\"; set it from the environment: webhook_key = \"${WECOM_WEBHOOK_KEY}\"",
                        ))
                    }
                };
                let mentions = !self.mentioned_list.is_empty() || !self.mentioned_mobile_list.is_empty();
                if mentions && self.format == MessageFormat::Markdown {
                    return Err(BuildError::new(
                        "\"mentioned_list\"/\"mentioned_mobile_list\" work with format = \"text\" only; in markdown mention people with <@userid> in the template",
                    ));
                }
                DestinationSettings::Robot {
                    key,
                    mentioned_list: self.mentioned_list.clone(),
                    mentioned_mobile_list: self.mentioned_mobile_list.clone(),
                }
            }
            WecomMode::App => {
                if let Some((key, _)) = robot_keys.iter().find(|(_, set)| *set) {
                    return Err(BuildError::new(format!(
                        "\"{key}\" is only used with mode = \"robot\"; remove it, or set mode = \"robot\""
                    )));
                }
                let corp_id = required(&self.corp_id, "corp_id", "set it to the organisation's corp id (ww...)")?;
                let corp_secret = required(
                    &self.corp_secret,
                    "corp_secret",
                    "set it from the environment: corp_secret = \"${WECOM_CORP_SECRET}\"",
                )?;
                if corp_id.trim().is_empty() || corp_secret.expose().trim().is_empty() {
                    return Err(BuildError::new("\"corp_id\" and \"corp_secret\" must not be empty"));
                }
                let agent_id = match required(&self.agent_id, "agent_id", "set it to the app's AgentId")? {
                    AgentId::Number(number) => *number,
                    AgentId::Text(text) => text.trim().parse().map_err(|_| {
                        BuildError::new(format!(
                            "\"agent_id\" {text:?} is not a number; write the app's AgentId, e.g. 1000002"
                        ))
                    })?,
                };
                let to_party = non_empty(self.to_party.as_ref()).unwrap_or_default();
                let to_tag = non_empty(self.to_tag.as_ref()).unwrap_or_default();
                let to_user = match non_empty(self.to_user.as_ref()) {
                    Some(users) => users,
                    None if to_party.is_empty() && to_tag.is_empty() => "@all".to_string(),
                    None => String::new(),
                };
                if let Some(interval) = self.duplicate_check_interval {
                    if interval.is_zero() || interval > MAX_DUPLICATE_CHECK_INTERVAL {
                        return Err(BuildError::new(
                            "\"duplicate_check_interval\" must be between 1s and 4h (WeCom's maximum)",
                        ));
                    }
                }
                DestinationSettings::App {
                    corp_id: corp_id.trim().to_string(),
                    corp_secret: Secret::new(corp_secret.expose().trim()),
                    agent_id,
                    recipients: app::Recipients { to_user, to_party, to_tag },
                    duplicate_check_interval: self.duplicate_check_interval,
                }
            }
        };

        let template = match &self.template {
            Some(text) => {
                Some(Template::parse(text).map_err(|error| BuildError::new(format!("\"template\": {error}")))?)
            }
            None => None,
        };
        if self.message_max_chars == 0 {
            return Err(BuildError::new("\"message_max_chars\" is 0; set it above 0 (default 1024)"));
        }
        if self.group_max == 0 {
            return Err(BuildError::new("\"group_max\" is 0; set it to 1 or more (default 10)"));
        }
        let default_messages = match self.mode {
            WecomMode::Robot => ROBOT_MESSAGES_PER_WINDOW,
            WecomMode::App => APP_MESSAGES_PER_WINDOW,
        };
        let rate_limit_messages = self.rate_limit.messages.unwrap_or(default_messages);
        let rate_limit_window = self.rate_limit.window.unwrap_or(DEFAULT_RATE_WINDOW);
        if rate_limit_messages == 0 || rate_limit_window.is_zero() {
            return Err(BuildError::new(
                "\"rate_limit.messages\" and \"rate_limit.window\" must be above 0 (WeCom robots allow 20 per 1m)",
            ));
        }
        for (key, value) in [
            ("alert_time_limit", self.alert_time_limit),
            ("request_timeout", self.request_timeout),
            ("retry.initial_backoff", self.retry.initial_backoff),
        ] {
            if value.is_zero() {
                return Err(BuildError::new(format!("\"{key}\" is 0; set it above 0")));
            }
        }
        if self.retry.max_backoff < self.retry.initial_backoff {
            return Err(BuildError::new("\"retry.max_backoff\" is below \"retry.initial_backoff\"; raise it"));
        }
        if self.max_pending_alerts == 0 {
            return Err(BuildError::new("\"max_pending_alerts\" is 0; set it above 0 (default 10000)"));
        }
        Ok(WecomSettings {
            endpoint,
            destination,
            renderer: MessageRenderer {
                format: self.format,
                template,
                missing_value: self.missing_value.clone(),
                message_max_chars: self.message_max_chars,
            },
            group_wait: self.group_wait,
            group_max: self.group_max,
            rate_limit_messages,
            rate_limit_window,
            alert_time_limit: self.alert_time_limit,
            backoff: Backoff { initial: self.retry.initial_backoff, max: self.retry.max_backoff },
            request_timeout: self.request_timeout,
            drain_timeout: self.drain_timeout,
            max_pending_alerts: self.max_pending_alerts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<WecomSettings, String> {
        let config: WecomSinkConfig = toml::from_str(text).map_err(|error| error.to_string())?;
        config.settings().map_err(|error| error.to_string())
    }

    #[test]
    fn robot_defaults_follow_wecom_and_elastalert() {
        let settings = parse("mode = \"robot\"\nwebhook_key = \"k-123\"").unwrap();
        assert_eq!(settings.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(settings.rate_limit_messages, 20);
        assert_eq!(settings.rate_limit_window, Duration::from_secs(60));
        assert_eq!(settings.renderer.message_max_chars, 1024);
        assert_eq!(settings.group_wait, Duration::from_secs(10));
        assert_eq!(settings.group_max, 10);
        assert_eq!(settings.alert_time_limit, Duration::from_secs(172_800));
        assert!(!format!("{settings:?}").contains("k-123"), "the key never shows in Debug");
    }

    #[test]
    fn app_defaults_to_everyone_and_accepts_a_quoted_agent_id() {
        let settings =
            parse("mode = \"app\"\ncorp_id = \"ww1\"\ncorp_secret = \"s3cret\"\nagent_id = \"1000006\"").unwrap();
        let DestinationSettings::App { agent_id, recipients, .. } = &settings.destination else { panic!() };
        assert_eq!(*agent_id, 1000006);
        assert_eq!(recipients.to_user, "@all");
        assert!(!format!("{settings:?}").contains("s3cret"));
        let parties =
            parse("mode = \"app\"\ncorp_id = \"ww1\"\ncorp_secret = \"s\"\nagent_id = 1\nto_party = \"7\"").unwrap();
        let DestinationSettings::App { recipients, .. } = &parties.destination else { panic!() };
        assert_eq!(
            (recipients.to_user.as_str(), recipients.to_party.as_str()),
            ("", "7"),
            "@all would override the party"
        );
    }

    #[test]
    fn mistakes_name_the_key_and_the_fix() {
        let cases = [
            ("mode = \"robot\"", "\"webhook_key\" is required"),
            ("mode = \"robot\"\nwebhook_key = \"k\"\ncorp_id = \"ww\"", "\"corp_id\" is only used with mode = \"app\""),
            ("mode = \"app\"\ncorp_id = \"ww\"\nagent_id = 1", "\"corp_secret\" is required"),
            (
                "mode = \"app\"\ncorp_id = \"ww\"\ncorp_secret = \"s\"\nagent_id = \"x1\"",
                "\"agent_id\" \"x1\" is not a number",
            ),
            (
                "mode = \"robot\"\nwebhook_key = \"k\"\nformat = \"markdown\"\nmentioned_list = [\"@all\"]",
                "format = \"text\" only",
            ),
            ("mode = \"robot\"\nwebhook_key = \"k\"\nendpoint = \"ftp://x\"", "\"endpoint\""),
            ("mode = \"robot\"\nwebhook_key = \"k\"\ngroup_max = 0", "\"group_max\" is 0"),
            ("mode = \"robot\"\nwebhook_key = \"k\"\ntemplate = \"{{ a\"", "\"template\""),
            ("mode = \"robot\"\nwebhook_key = \"k\"\nrate_limit = { messages = 0 }", "\"rate_limit.messages\""),
            ("mode = \"robot\"\nwebhook_key = \"k\"\nbogus = 1", "unknown field `bogus`"),
        ];
        for (text, expected) in cases {
            let error = parse(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
