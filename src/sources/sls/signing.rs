//! SLS v1 request signing (HMAC-SHA1), as the service verifies it.
//!
//! Owns the string-to-sign, the signature, `Content-MD5` and the `Date`
//! format, and the `Secret` newtype that keeps key material out of `Debug`
//! output. The string to sign is the verb, `Content-MD5`, `Content-Type`
//! (whenever the header is sent, even with no body) and `Date`, each followed
//! by a newline, then every `x-log-*`/`x-acs-*` header as `name:value\n`
//! (lowercased names, trimmed values, sorted by name), then the resource path
//! and, when there is a query, `?` and its parameters sorted by key with
//! their decoded values (`cursor=MTQ...Ng==`, not `%3D%3D`).
//!
//! Guarantees: pure functions of their inputs (the caller supplies the
//! date), so the reference's worked examples are reproduced byte for byte in
//! the tests below. Never logs, and never puts the secret into an error or a
//! `Debug` rendering.

use std::time::SystemTime;

use base64::Engine;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;

/// Key material (an AccessKeySecret or an STS token): the crate's one
/// credential type, whose `Debug` never shows the value.
pub use crate::config::secret::Secret;

/// The inputs of one v1 signature. `log_headers` holds every `x-log-*` and
/// `x-acs-*` header that will be sent; `query` holds decoded values.
#[derive(Debug, Clone, Copy)]
pub struct SigningInput<'a> {
    pub method: &'a str,
    /// Empty when there is no body.
    pub content_md5: &'a str,
    /// Empty when no `Content-Type` header is sent.
    pub content_type: &'a str,
    pub date: &'a str,
    pub log_headers: &'a [(&'a str, &'a str)],
    pub path: &'a str,
    pub query: &'a [(&'a str, &'a str)],
}

/// The exact text the service signs for `input`.
pub fn string_to_sign(input: &SigningInput<'_>) -> String {
    let mut text = String::with_capacity(256);
    for part in [input.method, input.content_md5, input.content_type, input.date] {
        text.push_str(part);
        text.push('\n');
    }
    let mut headers: Vec<(String, &str)> = input
        .log_headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim()))
        .filter(|(name, _)| name.starts_with("x-log-") || name.starts_with("x-acs-"))
        .collect();
    headers.sort_by(|left, right| left.0.cmp(&right.0));
    for (name, value) in headers {
        text.push_str(&name);
        text.push(':');
        text.push_str(value);
        text.push('\n');
    }
    text.push_str(input.path);
    if !input.query.is_empty() {
        let mut query = input.query.to_vec();
        query.sort_by(|left, right| left.0.cmp(right.0));
        text.push('?');
        for (index, (key, value)) in query.iter().enumerate() {
            if index > 0 {
                text.push('&');
            }
            text.push_str(key);
            text.push('=');
            text.push_str(value);
        }
    }
    text
}

/// Base64 (standard alphabet, padded) of HMAC-SHA1 keyed by the secret.
pub fn signature(access_key_secret: &Secret, string_to_sign: &str) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac =
        Hmac::<Sha1>::new_from_slice(access_key_secret.expose().as_bytes()).expect("HMAC accepts any key length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// `Authorization: LOG {id}:{signature}`.
pub fn authorization(access_key_id: &str, access_key_secret: &Secret, input: &SigningInput<'_>) -> String {
    format!("LOG {access_key_id}:{}", signature(access_key_secret, &string_to_sign(input)))
}

/// `Content-MD5`: the MD5 of the body as sent, 32 uppercase hex digits.
pub fn content_md5(body: &[u8]) -> String {
    let digest = Md5::digest(body);
    let mut text = String::with_capacity(32);
    for byte in digest {
        text.push(char::from(b"0123456789ABCDEF"[usize::from(byte >> 4)]));
        text.push(char::from(b"0123456789ABCDEF"[usize::from(byte & 0x0f)]));
    }
    text
}

/// RFC 1123 in GMT with a two-digit day, as the SDKs send `Date`.
pub fn http_date(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    const DATE: &str = "Tue, 01 Jul 2025 08:00:00 GMT";
    const CURSOR: &str = "MTQ0NzI5OTYwNjg5NjYzMjM1Ng==";
    const PATH: &str = "/logstores/test-logstore/shards/0";
    const GROUP_PATH: &str = "/logstores/test-logstore/consumergroups/test-cg";

    fn secret() -> Secret {
        Secret::new("testAccessKeySecret")
    }

    fn check(input: SigningInput<'_>, expected_string: &str, expected_authorization: &str) {
        assert_eq!(string_to_sign(&input), expected_string);
        assert_eq!(authorization("testAccessKeyId", &secret(), &input), expected_authorization);
    }

    #[test]
    fn reference_example_1_pull_logs() {
        check(
            SigningInput {
                method: "GET",
                content_md5: "",
                content_type: "",
                date: DATE,
                log_headers: &[("x-log-apiversion", "0.6.0"), ("x-log-bodyrawsize", "0"), ("x-log-signaturemethod", "hmac-sha1")],
                path: PATH,
                query: &[("type", "log"), ("cursor", CURSOR), ("count", "1000")],
            },
            "GET\n\n\nTue, 01 Jul 2025 08:00:00 GMT\nx-log-apiversion:0.6.0\nx-log-bodyrawsize:0\nx-log-signaturemethod:hmac-sha1\n/logstores/test-logstore/shards/0?count=1000&cursor=MTQ0NzI5OTYwNjg5NjYzMjM1Ng==&type=log",
            "LOG testAccessKeyId:1Qdwvjyi0bM9CtdolhUDGKPhVkY=",
        );
    }

    #[test]
    fn reference_example_2_heartbeat_with_a_body() {
        let md5 = content_md5(b"[0, 1]");
        assert_eq!(md5, "264884439B70AB09A86BC848421C6DE6");
        check(
            SigningInput {
                method: "POST",
                content_md5: &md5,
                content_type: "application/json",
                date: DATE,
                log_headers: &[("x-log-signaturemethod", "hmac-sha1"), ("x-log-apiversion", "0.6.0")],
                path: GROUP_PATH,
                query: &[("type", "heartbeat"), ("consumer", "consumer-1")],
            },
            "POST\n264884439B70AB09A86BC848421C6DE6\napplication/json\nTue, 01 Jul 2025 08:00:00 GMT\nx-log-apiversion:0.6.0\nx-log-signaturemethod:hmac-sha1\n/logstores/test-logstore/consumergroups/test-cg?consumer=consumer-1&type=heartbeat",
            "LOG testAccessKeyId:ScKtOsO6lel3OvUvd/AvOL6VxuE=",
        );
    }

    #[test]
    fn reference_example_3_checkpoint_with_an_sts_token() {
        let body = format!("{{\"shard\": 0, \"checkpoint\": \"{CURSOR}\"}}");
        assert_eq!(body.len(), 58);
        let md5 = content_md5(body.as_bytes());
        assert_eq!(md5, "EE820B79AB047D1AF67DB00AFA4D2989");
        check(
            SigningInput {
                method: "POST",
                content_md5: &md5,
                content_type: "application/json",
                date: DATE,
                // Mixed case and padding: names are lowercased, values trimmed.
                log_headers: &[("X-Acs-Security-Token", " testSTSToken"), ("x-log-apiversion", "0.6.0"), ("x-log-signaturemethod", "hmac-sha1")],
                path: GROUP_PATH,
                query: &[("type", "checkpoint"), ("consumer", "consumer-1"), ("forceSuccess", "True")],
            },
            "POST\nEE820B79AB047D1AF67DB00AFA4D2989\napplication/json\nTue, 01 Jul 2025 08:00:00 GMT\nx-acs-security-token:testSTSToken\nx-log-apiversion:0.6.0\nx-log-signaturemethod:hmac-sha1\n/logstores/test-logstore/consumergroups/test-cg?consumer=consumer-1&forceSuccess=True&type=checkpoint",
            "LOG testAccessKeyId:v/kIptdS7G4tySzEDPULbPOKm8c=",
        );
    }

    #[test]
    fn reference_example_4_get_cursor_signs_content_type_without_a_body() {
        check(
            SigningInput {
                method: "GET",
                content_md5: "",
                content_type: "application/json",
                date: DATE,
                log_headers: &[("x-log-apiversion", "0.6.0"), ("x-log-bodyrawsize", "0"), ("x-log-signaturemethod", "hmac-sha1")],
                path: PATH,
                query: &[("type", "cursor"), ("from", "begin")],
            },
            "GET\n\napplication/json\nTue, 01 Jul 2025 08:00:00 GMT\nx-log-apiversion:0.6.0\nx-log-bodyrawsize:0\nx-log-signaturemethod:hmac-sha1\n/logstores/test-logstore/shards/0?from=begin&type=cursor",
            "LOG testAccessKeyId:YmtKtb/22jDYNlutwoaOth0y/KU=",
        );
    }

    #[test]
    fn headers_other_than_log_and_acs_are_not_signed_and_a_bare_path_has_no_question_mark() {
        let input = SigningInput {
            method: "GET",
            content_md5: "",
            content_type: "",
            date: DATE,
            log_headers: &[("x-log-apiversion", "0.6.0"), ("accept", "application/x-protobuf")],
            path: "/logstores/l/shards",
            query: &[],
        };
        assert!(string_to_sign(&input).ends_with("\nx-log-apiversion:0.6.0\n/logstores/l/shards"));
    }

    #[test]
    fn dates_use_rfc_1123_gmt_with_a_two_digit_day() {
        let time = UNIX_EPOCH + Duration::from_secs(1_751_356_800);
        assert_eq!(http_date(time), DATE);
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let secret = secret();
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{:?}", Some(secret)), "Some(***)");
    }
}
