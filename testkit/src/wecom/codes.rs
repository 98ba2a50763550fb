//! WeCom `errcode` numbers the emulator answers with, their base `errmsg`
//! texts, and the realistic decoration real WeCom appends (reference §0).
//!
//! Guarantees: success is exactly `"ok"`; every error `errmsg` has the
//! `, hint: [...], from ip: ..., more info at ...?e=<code>` tail, so clients
//! are exercised against real-looking strings and must branch on `errcode`.
//! Never decides when a code applies.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub const OK: i64 = 0;
pub const SYSTEM_BUSY: i64 = -1;
pub const INVALID_SECRET: i64 = 40001;
pub const INVALID_MSGTYPE: i64 = 40008;
pub const INVALID_CORPID: i64 = 40013;
pub const INVALID_ACCESS_TOKEN: i64 = 40014;
pub const TOO_MANY_USERS: i64 = 40032;
pub const INVALID_AGENTID: i64 = 40056;
pub const INVALID_PARAMETER: i64 = 40058;
pub const SECRET_OF_ANOTHER_CORP: i64 = 40091;
pub const ACCESS_TOKEN_MISSING: i64 = 41001;
pub const CORPID_MISSING: i64 = 41002;
pub const CORPSECRET_MISSING: i64 = 41004;
pub const ACCESS_TOKEN_EXPIRED: i64 = 42001;
pub const EMPTY_CONTENT: i64 = 44004;
pub const CONTENT_TOO_LARGE: i64 = 45002;
pub const FREQUENCY_LIMIT: i64 = 45009;
pub const CONCURRENCY_LIMIT: i64 = 45033;
pub const DATA_FORMAT_ERROR: i64 = 47001;
pub const ALL_RECIPIENTS_INVALID: i64 = 81013;
pub const NO_RECIPIENTS: i64 = 82001;
pub const TOO_MANY_PARTIES: i64 = 82002;
pub const TOO_MANY_TAGS: i64 = 82003;
pub const INVALID_WEBHOOK_URL: i64 = 93000;
pub const ROBOT_DISABLED: i64 = 93004;
pub const ROBOT_NOT_IN_GROUP: i64 = 93008;

/// The leading part of `errmsg` for a code; any code may be injected, so
/// unknown ones get a neutral text.
pub fn base_errmsg(errcode: i64) -> &'static str {
    match errcode {
        OK => "ok",
        SYSTEM_BUSY => "system busy",
        INVALID_SECRET => "invalid credential",
        INVALID_MSGTYPE => "invalid message type",
        INVALID_CORPID => "invalid corpid",
        INVALID_ACCESS_TOKEN => "invalid access_token",
        TOO_MANY_USERS => "invalid userid size",
        INVALID_AGENTID => "invalid agentid",
        INVALID_PARAMETER => "invalid Request Parameter",
        SECRET_OF_ANOTHER_CORP => "secret is not from this corp",
        ACCESS_TOKEN_MISSING => "access_token missing",
        CORPID_MISSING => "corpid missing",
        CORPSECRET_MISSING => "corpsecret missing",
        ACCESS_TOKEN_EXPIRED => "access_token expired",
        EMPTY_CONTENT => "empty content",
        CONTENT_TOO_LARGE => "content size out of limit",
        FREQUENCY_LIMIT => "api freq out of limit",
        CONCURRENCY_LIMIT => "api concurrent out of limit",
        DATA_FORMAT_ERROR => "data format error, Warning: wrong json format.",
        ALL_RECIPIENTS_INVALID => "user & party & tag all invalid",
        NO_RECIPIENTS => "touser & toparty & totag all empty",
        TOO_MANY_PARTIES => "invalid party size",
        TOO_MANY_TAGS => "invalid tag size",
        INVALID_WEBHOOK_URL => "invalid webhook url",
        ROBOT_DISABLED => "robot disabled",
        ROBOT_NOT_IN_GROUP => "robot not in group",
        _ => "error injected by the testkit WeCom emulator",
    }
}

static HINT_SEQUENCE: AtomicU64 = AtomicU64::new(1);

/// `detail` (or the base text) with WeCom's hint tail; `"ok"` for success.
pub fn decorated_errmsg(errcode: i64, detail: Option<&str>, client_ip: &str) -> String {
    if errcode == OK {
        return "ok".to_string();
    }
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let sequence = HINT_SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let text = detail.unwrap_or_else(|| base_errmsg(errcode));
    format!(
        "{text}, hint: [{seconds}_{sequence}_{:08x}], from ip: {client_ip}, \
         more info at https://open.work.weixin.qq.com/devtool/query?e={errcode}",
        scramble(seconds ^ sequence) as u32
    )
}

/// splitmix64: spreads bits so hints and tokens look random without a
/// random-number dependency; nothing here needs to be unpredictable.
pub(crate) fn scramble(seed: u64) -> u64 {
    let mut mixed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    mixed ^ (mixed >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_a_hint_tail_and_success_is_plain_ok() {
        assert_eq!(decorated_errmsg(OK, None, "10.0.0.1"), "ok");
        let message = decorated_errmsg(FREQUENCY_LIMIT, None, "10.0.0.1");
        assert!(message.starts_with("api freq out of limit, hint: ["), "{message}");
        assert!(message.contains("from ip: 10.0.0.1"));
        assert!(message.ends_with("devtool/query?e=45009"));
        let detailed = decorated_errmsg(INVALID_PARAMETER, Some("markdown.content exceed max length 4096"), "ip");
        assert!(detailed.starts_with("markdown.content exceed max length 4096, hint:"));
        assert_ne!(decorated_errmsg(SYSTEM_BUSY, None, "ip"), decorated_errmsg(SYSTEM_BUSY, None, "ip"));
    }
}
