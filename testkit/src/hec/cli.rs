//! Command-line flags of `pipe-testkit hec`, turned into an
//! `HecEmulatorBuilder`. Lives here, not in the binary, so the binary only
//! needs one variant and one match arm per emulator.
//!
//! Guarantees: every token given on the command line gets the same flags;
//! tests that need different tokens use the Rust builder or
//! `/_testkit/token_state`. Token values are never printed.

use std::time::Duration;

use clap::Args;

use super::acks::AckSettings;
use super::config::{HecToken, DEFAULT_MAX_CONTENT_LENGTH};
use super::server::HecEmulatorBuilder;

/// Flags of the `hec` subcommand. No `Debug`: it holds token values.
#[derive(Clone, Args)]
#[command(after_help = "\
Control endpoints (JSON): GET /_testkit/stats, GET /_testkit/events, POST /_testkit/reset,
POST /_testkit/faults {\"count\":N,\"target\":\"data|ack|any\",\"kind\":\"code\",\"code\":9}
  (kinds: code{code}, status{status,retry_after_secs}, drop_connection, drop_after_accept),
DELETE /_testkit/faults, PUT /_testkit/busy {\"busy\":true}, PUT /_testkit/latency {\"latency_ms\":N},
PUT /_testkit/health {\"code\":18}, GET|PUT /_testkit/acks {\"delay_ms\",\"loss_fraction\",\"lose_next\",\"expiry_ms\"},
POST /_testkit/acks/lose_next {\"count\":N}, PUT /_testkit/token_state {\"token\":\"..\",\"disabled\":true}")]
pub struct HecArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: std::net::SocketAddr,
    /// A valid HEC token (repeat for several). Every token gets the flags below.
    #[arg(long = "token", required = true, value_name = "TOKEN")]
    pub tokens: Vec<String>,
    /// Turn on indexer acknowledgement (useACK) for the tokens: responses carry
    /// ackId and a channel becomes mandatory.
    #[arg(long)]
    pub ack: bool,
    /// How long an ackId stays false before it reads true, e.g. 500ms, 2s, 1m.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
    pub ack_delay: Duration,
    /// Share of ackIds (0.0 to 1.0) that never become true, spread evenly.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0)]
    pub ack_loss: f64,
    /// Forget ackIds not reported true within this time (Splunk idle cleanup).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ack_expiry: Option<Duration>,
    /// Restrict the tokens to these indexes (repeat for several); default: any index.
    #[arg(long = "index-allow", value_name = "INDEX")]
    pub allowed_indexes: Vec<String>,
    /// The tokens' default index (must be allowed); default: main.
    #[arg(long, value_name = "INDEX")]
    pub default_index: Option<String>,
    /// Accept ?token= on the URL (allowQueryStringAuth = true).
    #[arg(long)]
    pub allow_query_string_auth: bool,
    /// Require a channel on /raw even without --ack, as older Splunk docs describe.
    #[arg(long)]
    pub raw_requires_channel: bool,
    /// Answer 413 above this many body bytes, sent or decompressed.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_CONTENT_LENGTH)]
    pub max_content_length: usize,
    /// Serve HTTPS with a certificate for localhost and 127.0.0.1 signed by a
    /// fresh CA, and write that CA's certificate (PEM) to PATH, for the
    /// client's `tls.ca_file`.
    #[arg(long, value_name = "PATH")]
    pub tls_ca_out: Option<std::path::PathBuf>,
}

impl HecArgs {
    pub fn builder(&self) -> HecEmulatorBuilder {
        let settings =
            AckSettings { delay: self.ack_delay, loss_fraction: self.ack_loss, lose_next: 0, expiry: self.ack_expiry };
        let mut builder = HecEmulatorBuilder::default()
            .ack_settings(settings)
            .raw_requires_channel(self.raw_requires_channel)
            .max_content_length(self.max_content_length);
        for (position, value) in self.tokens.iter().enumerate() {
            let mut token = HecToken::new(value.clone())
                .name(format!("token{}", position + 1))
                .use_ack(self.ack)
                .allow_query_string_auth(self.allow_query_string_auth)
                .allowed_indexes(self.allowed_indexes.iter().cloned());
            if let Some(index) = &self.default_index {
                token = token.default_index(index.clone());
            }
            builder = builder.token(token);
        }
        builder
    }
}

/// Reads `250ms`, `2s`, `1.5s`, `3m` or `1h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split_at = text.find(|character: char| !(character.is_ascii_digit() || character == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split_at);
    let number: f64 = number.parse().map_err(|_| format!("\"{text}\" is not a duration; write e.g. 500ms, 2s, 1m"))?;
    let seconds_per_unit = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown duration unit \"{other}\" in \"{text}\"; use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(number * seconds_per_unit).map_err(|error| format!("\"{text}\": {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("3m"), Ok(Duration::from_secs(180)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5 weeks").is_err());
    }

    #[test]
    fn flags_build_tokens_with_shared_settings() {
        let args = HecArgs {
            addr: "127.0.0.1:0".parse().unwrap(),
            tokens: vec!["a".into(), "b".into()],
            ack: true,
            ack_delay: Duration::from_secs(1),
            ack_loss: 0.0,
            ack_expiry: None,
            allowed_indexes: vec!["app".into()],
            default_index: Some("app".into()),
            allow_query_string_auth: false,
            raw_requires_channel: false,
            max_content_length: 10,
            tls_ca_out: None,
        };
        assert!(args.builder().build().is_ok());
        let bad = HecArgs { default_index: None, ..args };
        assert!(bad.builder().build().is_err(), "main is outside the allow-list");
    }
}
