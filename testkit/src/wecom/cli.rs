//! Command-line flags of `pipe-testkit wecom`, turned into a
//! `WecomEmulatorBuilder`. Lives here, not in the binary, so the binary only
//! needs one variant and one match arm.
//!
//! Guarantees: secrets and keys given on the command line are never printed;
//! a mismatched set of app flags is an error naming the flags, not a guess.

use std::time::Duration;

use clap::Args;

use super::config::{WecomApp, WecomRateLimits, WecomRobot};
use super::server::WecomEmulatorBuilder;
use crate::hec::parse_duration;

/// Flags of the `wecom` subcommand. No `Debug`: it holds secrets and webhook keys.
#[derive(Clone, Args)]
#[command(after_help = "\
APIs: GET /cgi-bin/gettoken, POST /cgi-bin/message/send?access_token=, POST /cgi-bin/webhook/send?key=
Control endpoints (JSON): GET /_testkit/messages, GET /_testkit/stats, POST /_testkit/reset,
POST /_testkit/faults {\"count\":N,\"target\":\"gettoken|app|robot|any\",\"kind\":\"errcode\",\"errcode\":45009}
  (kinds: errcode{errcode}, http_status{status}, drop_connection), DELETE /_testkit/faults,
POST /_testkit/tokens/expire (42001), POST /_testkit/tokens/invalidate (40014),
PUT /_testkit/tokens/lifetime {\"expires_in_secs\":N},
GET|PUT /_testkit/rate_limits {\"robot_limit\",\"robot_window_ms\",\"user_minute_limit\",\"user_minute_window_ms\",
  \"user_hour_limit\",\"user_hour_window_ms\"}, PUT /_testkit/robot_state {\"key\":\"..\",\"state\":\"active|disabled|not_in_group\"}")]
pub struct WecomArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: std::net::SocketAddr,
    /// The corp id (企业ID) every app belongs to.
    #[arg(long, value_name = "ID")]
    pub corp_id: Option<String>,
    /// An app secret; repeat together with --agent-id for several apps (paired in order).
    #[arg(long = "corp-secret", value_name = "SECRET")]
    pub corp_secrets: Vec<String>,
    /// An app's agent id; one per --corp-secret.
    #[arg(long = "agent-id", value_name = "N")]
    pub agent_ids: Vec<i64>,
    /// A member userid in the apps' visible range (repeat); default: every userid is valid.
    #[arg(long = "user", value_name = "USERID")]
    pub users: Vec<String>,
    /// A group robot webhook key (repeat for several robots).
    #[arg(long = "webhook-key", value_name = "KEY")]
    pub webhook_keys: Vec<String>,
    /// Messages each robot may send per sliding minute before 45009.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub robot_rate_per_minute: u32,
    /// Length of the robot's sliding window (shorten it for tests), e.g. 2s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s")]
    pub robot_rate_window: Duration,
    /// App messages per member per minute before excess is dropped silently.
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub member_rate_per_minute: u32,
    /// Lifetime of access tokens (expires_in), e.g. 7200s, 2h.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "7200s")]
    pub token_lifetime: Duration,
}

/// App flags that do not describe whole apps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WecomArgsError {
    #[error(
        "pipe-testkit wecom: {secrets} --corp-secret but {agent_ids} --agent-id; give one --agent-id per --corp-secret"
    )]
    UnpairedAppFlags { secrets: usize, agent_ids: usize },
    #[error("pipe-testkit wecom: --corp-secret needs --corp-id")]
    MissingCorpId,
}

impl WecomArgs {
    pub fn builder(&self) -> Result<WecomEmulatorBuilder, WecomArgsError> {
        if self.corp_secrets.len() != self.agent_ids.len() {
            return Err(WecomArgsError::UnpairedAppFlags {
                secrets: self.corp_secrets.len(),
                agent_ids: self.agent_ids.len(),
            });
        }
        let limits = WecomRateLimits {
            robot_limit: self.robot_rate_per_minute,
            robot_window: self.robot_rate_window,
            user_minute_limit: self.member_rate_per_minute,
            ..WecomRateLimits::default()
        };
        let mut builder = WecomEmulatorBuilder::default().rate_limits(limits).token_lifetime(self.token_lifetime);
        if !self.corp_secrets.is_empty() {
            let corp_id = self.corp_id.as_ref().ok_or(WecomArgsError::MissingCorpId)?;
            for (secret, agent_id) in self.corp_secrets.iter().zip(&self.agent_ids) {
                let mut app = WecomApp::new(corp_id.clone(), secret.clone(), *agent_id);
                if !self.users.is_empty() {
                    app = app.users(self.users.iter().cloned());
                }
                builder = builder.app(app);
            }
        }
        for (position, key) in self.webhook_keys.iter().enumerate() {
            builder = builder.robot(WecomRobot::new(key.clone()).name(format!("robot{}", position + 1)));
        }
        Ok(builder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wecom::DEFAULT_TOKEN_LIFETIME;

    fn args() -> WecomArgs {
        WecomArgs {
            addr: "127.0.0.1:0".parse().unwrap(),
            corp_id: Some("corp".into()),
            corp_secrets: vec!["s1".into(), "s2".into()],
            agent_ids: vec![1, 2],
            users: vec![],
            webhook_keys: vec!["k".into()],
            robot_rate_per_minute: 20,
            robot_rate_window: Duration::from_secs(60),
            member_rate_per_minute: 30,
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
        }
    }

    #[test]
    fn flags_pair_secrets_with_agent_ids() {
        assert!(args().builder().unwrap().build().is_ok());
        let unpaired = WecomArgs { agent_ids: vec![1], ..args() };
        assert_eq!(unpaired.builder().unwrap_err(), WecomArgsError::UnpairedAppFlags { secrets: 2, agent_ids: 1 });
        let no_corp = WecomArgs { corp_id: None, ..args() };
        assert_eq!(no_corp.builder().unwrap_err(), WecomArgsError::MissingCorpId);
        let zero_window = WecomArgs { robot_rate_window: Duration::ZERO, ..args() };
        assert!(zero_window.builder().unwrap().build().is_err());
    }
}
