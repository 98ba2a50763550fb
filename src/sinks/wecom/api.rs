//! What a WeCom API answer means for the sender: one place that posts a
//! JSON body, reads `errcode`/`errmsg`, and classifies the outcome.
//!
//! Owns `SendError` and the errcode table (reference `wecom.md` §2.4, §3):
//! - 0: delivered.
//! - -1 (system busy), 45033 (concurrency limit), network errors, timeouts,
//!   non-2xx HTTP statuses and unreadable bodies: retry with backoff.
//! - 45009 (frequency limit): wait out the rate window, then retry.
//! - 40014, 42001, 41001 (access token invalid, expired, missing): the app
//!   client refreshes the token once and retries.
//! - 40058, 44004, 45002 (bad parameter, empty or oversized content): this
//!   message is refused; dead-letter it, keep going. Codes not listed here
//!   are treated the same way: permanent for the message, not for the sink.
//! - Configuration codes (93000, 93004, 93008 robot; 40001, 40013, 40091
//!   secret/corp; 40056 agent; 60020 IP; 50003 app disabled; 48002; the
//!   recipient errors 81013, 82001-82003, 40032; 40008 msgtype): fatal; the
//!   sink stops and says what to fix.
//!
//! Never includes a URL, key, secret or token in an error: errors carry the
//! errcode, the first part of `errmsg` and WeCom's `hint` id, which is what
//! WeCom support needs.

use serde::Deserialize;

use crate::sinks::redact::describe_http_error;

/// How a send failed, and so what the sender does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Try again after a backoff. `label` names the cause for the
    /// `pipe_wecom_retries_total{errcode}` metric.
    #[error("{reason}")]
    Retryable { label: String, reason: String },
    /// WeCom's frequency limit (45009): wait the window out.
    #[error("WeCom frequency limit (errcode {errcode}): {summary}")]
    FrequencyLimited { errcode: i64, summary: String },
    /// The access token was refused (app mode handles it by refreshing).
    #[error("WeCom refused the access token (errcode {errcode}): {summary}")]
    TokenRejected { errcode: i64, summary: String },
    /// This message can never be delivered as it is.
    #[error("WeCom refused the message (errcode {errcode}): {summary}")]
    MessageRejected { errcode: i64, summary: String },
    /// The destination is misconfigured; nothing will get through until the
    /// configuration is fixed.
    #[error("{reason}")]
    Fatal { errcode: Option<i64>, reason: String },
}

/// What an errcode means for the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrcodeClass {
    Ok,
    Retry,
    FrequencyLimit,
    Token,
    Message,
    Fatal,
}

pub fn classify(errcode: i64) -> ErrcodeClass {
    match errcode {
        0 => ErrcodeClass::Ok,
        -1 | 45033 => ErrcodeClass::Retry,
        45009 => ErrcodeClass::FrequencyLimit,
        40014 | 42001 | 41001 => ErrcodeClass::Token,
        93000 | 93004 | 93008 | 40001 | 40013 | 40091 | 41002 | 41004 | 40056 | 60020 | 50003 | 48002 | 40008
        | 81013 | 82001 | 82002 | 82003 | 40032 => ErrcodeClass::Fatal,
        _ => ErrcodeClass::Message,
    }
}

/// What to fix for a fatal errcode; shown on `/health`.
pub fn fix_for(errcode: i64) -> &'static str {
    match errcode {
        93000 => "the webhook key is invalid or the robot was removed from its group; check webhook_key",
        93004 => "the robot is disabled; ask a group admin to enable it",
        93008 => "the robot is no longer in the group; add it back or use another webhook_key",
        40001 => "the app secret is invalid; check corp_secret",
        40013 => "the corp id is invalid; check corp_id",
        40091 => "the secret belongs to another corp; check corp_id and corp_secret",
        41002 | 41004 => "corp_id or corp_secret is empty; set both",
        40056 => "the agent id is invalid for this secret; check agent_id",
        60020 => "this host's IP is not in the app's trusted IP list; add it in the WeCom admin console",
        50003 => "the app is disabled; enable it in the WeCom admin console",
        48002 => "this secret may not send messages; use the app's own secret as corp_secret",
        81013 => "every recipient is invalid or outside the app's visible range; check to_user, to_party and to_tag",
        82001 => "no recipients; set to_user, to_party or to_tag",
        82002 | 82003 | 40032 => "too many recipients (at most 1000 users, 100 parties, 100 tags); shorten the lists",
        40008 => "the message type is not accepted here; check format",
        _ => "check the sink configuration",
    }
}

/// The part of `errmsg` worth logging: the text before WeCom's `, hint:`
/// tail (capped), plus the hint id, which WeCom support asks for.
pub fn summarize_errmsg(errmsg: &str) -> String {
    const MAX_CHARS: usize = 160;
    let (text, tail) = match errmsg.find(", hint:") {
        Some(position) => (&errmsg[..position], &errmsg[position..]),
        None => (errmsg, ""),
    };
    let text: String = text.chars().take(MAX_CHARS).collect();
    let hint =
        tail.find('[').and_then(|start| tail[start + 1..].find(']').map(|end| &tail[start + 1..start + 1 + end]));
    match hint {
        Some(hint) => format!("{text} (hint {hint})"),
        None => text,
    }
}

/// A parsed WeCom answer. Fields beyond `errcode`/`errmsg` are app-mode only.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApiReply {
    pub errcode: i64,
    #[serde(default)]
    pub errmsg: String,
    #[serde(default)]
    pub invaliduser: String,
    #[serde(default)]
    pub invalidparty: String,
    #[serde(default)]
    pub invalidtag: String,
    #[serde(default)]
    pub unlicenseduser: String,
    #[serde(default)]
    pub access_token: crate::config::secret::Secret,
    #[serde(default)]
    pub expires_in: u64,
}

/// Sends `request` and parses the answer. Transport failures, non-2xx
/// statuses and bodies without an `errcode` become `Retryable`; the caller
/// classifies the errcode.
pub async fn call(request: reqwest::RequestBuilder) -> Result<ApiReply, SendError> {
    let response = request.send().await.map_err(|error| SendError::Retryable {
        label: if error.is_timeout() { "timeout".into() } else { "network".into() },
        reason: describe_http_error(error),
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(SendError::Retryable {
            label: format!("http_{}", status.as_u16()),
            reason: format!("WeCom answered HTTP {status}"),
        });
    }
    let body = response
        .bytes()
        .await
        .map_err(|error| SendError::Retryable { label: "network".into(), reason: describe_http_error(error) })?;
    serde_json::from_slice::<ApiReply>(&body).map_err(|error| SendError::Retryable {
        label: "bad_response".into(),
        reason: format!("WeCom's answer is not the expected JSON ({error}); is endpoint pointing at WeCom?"),
    })
}

/// The errcode of a reply as a `SendError`, `Ok` for 0. `context` names the
/// API ("robot webhook", "app message/send") for fatal messages.
pub fn check(reply: &ApiReply, context: &str) -> Result<(), SendError> {
    let errcode = reply.errcode;
    let summary = summarize_errmsg(&reply.errmsg);
    match classify(errcode) {
        ErrcodeClass::Ok => Ok(()),
        ErrcodeClass::Retry => Err(SendError::Retryable {
            label: errcode.to_string(),
            reason: format!("WeCom errcode {errcode}: {summary}"),
        }),
        ErrcodeClass::FrequencyLimit => Err(SendError::FrequencyLimited { errcode, summary }),
        ErrcodeClass::Token => Err(SendError::TokenRejected { errcode, summary }),
        ErrcodeClass::Message => Err(SendError::MessageRejected { errcode, summary }),
        ErrcodeClass::Fatal => Err(SendError::Fatal {
            errcode: Some(errcode),
            reason: format!("WeCom {context} refused with errcode {errcode} ({summary}): {}", fix_for(errcode)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errcodes_fall_into_the_documented_classes() {
        assert_eq!(classify(0), ErrcodeClass::Ok);
        assert_eq!(classify(-1), ErrcodeClass::Retry);
        assert_eq!(classify(45033), ErrcodeClass::Retry);
        assert_eq!(classify(45009), ErrcodeClass::FrequencyLimit);
        for token in [40014, 42001, 41001] {
            assert_eq!(classify(token), ErrcodeClass::Token);
        }
        for per_message in [40058, 44004, 45002, 12345] {
            assert_eq!(classify(per_message), ErrcodeClass::Message);
        }
        for fatal in [93000, 93004, 93008, 40056, 40001, 40013, 40091, 60020, 50003] {
            assert_eq!(classify(fatal), ErrcodeClass::Fatal, "{fatal}");
        }
    }

    #[test]
    fn errmsg_is_cut_before_the_hint_tail_and_keeps_the_hint_id() {
        let errmsg = "api freq out of limit, hint: [1700000000_12_abcdef], from ip: 203.0.113.5, more info at https://open.work.weixin.qq.com/devtool/query?e=45009";
        assert_eq!(summarize_errmsg(errmsg), "api freq out of limit (hint 1700000000_12_abcdef)");
        assert_eq!(summarize_errmsg("ok"), "ok");
    }

    #[test]
    fn fatal_errors_name_the_fix() {
        let reply = ApiReply { errcode: 93000, errmsg: "invalid webhook url, hint: [x]".into(), ..ApiReply::default() };
        let error = check(&reply, "robot webhook").unwrap_err();
        assert!(matches!(error, SendError::Fatal { errcode: Some(93000), .. }));
        assert!(error.to_string().contains("check webhook_key"), "{error}");
    }
}
