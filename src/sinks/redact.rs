//! Keeping credentials out of logs, errors and `Debug` output.
//!
//! Owns the redaction helpers (credentials themselves are
//! `crate::config::secret::Secret`, re-exported here) every HTTP sink uses before it logs or reports a URL or
//! a client error: `redact_url` masks the values of credential-bearing query
//! parameters (`key`, `access_token`, `corpsecret`, anything named like a
//! token, secret, password or signature) and any `user:password@` part, and
//! `describe_http_error` formats a `reqwest::Error` without the URL reqwest
//! would otherwise append (it carries the query string).
//!
//! Never logs anything itself. `Secret::expose` is the only way to read the
//! value, so every use of a credential is greppable.

pub use crate::config::secret::Secret;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "***";

/// Whether a query parameter of this name carries a credential.
fn is_credential_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "key"
        || name == "sign"
        || ["token", "secret", "password", "passwd", "signature", "apikey", "api_key", "credential"]
            .iter()
            .any(|fragment| name.contains(fragment))
}

/// `url` with credential-bearing query values and any userinfo replaced by
/// `***`. Works on text that does not parse as a URL too (it then masks
/// every `name=value` pair whose name looks like a credential), so it is safe
/// on anything that might hold one.
pub fn redact_url(url: &str) -> String {
    let (before_fragment, fragment) = match url.find('#') {
        Some(position) => url.split_at(position),
        None => (url, ""),
    };
    let (base, query) = match before_fragment.find('?') {
        Some(position) => (&before_fragment[..position], Some(&before_fragment[position + 1..])),
        None => (before_fragment, None),
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(&redact_userinfo(base));
    if let Some(query) = query {
        out.push('?');
        for (index, pair) in query.split('&').enumerate() {
            if index > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((name, _)) if is_credential_parameter(name) => {
                    out.push_str(name);
                    out.push('=');
                    out.push_str(REDACTED);
                }
                _ => out.push_str(pair),
            }
        }
    }
    out.push_str(fragment);
    out
}

/// Masks `user:password@` in `scheme://user:password@host/...`.
fn redact_userinfo(base: &str) -> String {
    let Some(scheme_end) = base.find("://") else { return base.to_string() };
    let authority_start = scheme_end + 3;
    let authority_end = base[authority_start..].find('/').map_or(base.len(), |position| authority_start + position);
    match base[authority_start..authority_end].rfind('@') {
        Some(at) => format!("{}{REDACTED}{}", &base[..authority_start], &base[authority_start + at..]),
        None => base.to_string(),
    }
}

/// A `reqwest` error as text, without the request URL (which reqwest's own
/// `Display` includes, query string and all) but with its cause chain, so
/// "connection refused" or "operation timed out" stays visible.
pub fn describe_http_error(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else if error.is_body() || error.is_decode() {
        "bad response body"
    } else {
        "request failed"
    };
    let error = error.without_url();
    let mut text = format!("{kind}: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let cause_text = redact_url(&cause.to_string());
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("s3cr3t-value");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some(***)");
        assert_eq!(secret.expose(), "s3cr3t-value");
    }

    #[test]
    fn credential_query_values_are_masked_and_the_rest_kept() {
        assert_eq!(
            redact_url("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx&debug=1"),
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***&debug=1"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:9/cgi-bin/gettoken?corpid=ww1&corpsecret=abc"),
            "http://127.0.0.1:9/cgi-bin/gettoken?corpid=ww1&corpsecret=***"
        );
        assert_eq!(
            redact_url("http://h/cgi-bin/message/send?access_token=TOKEN#frag"),
            "http://h/cgi-bin/message/send?access_token=***#frag"
        );
        assert_eq!(
            redact_url("https://hooks.example/x?api_key=1&Password=2&page=3"),
            "https://hooks.example/x?api_key=***&Password=***&page=3"
        );
    }

    #[test]
    fn userinfo_is_masked_and_plain_urls_are_unchanged() {
        assert_eq!(redact_url("https://bob:hunter2@example.com/path?a=1"), "https://***@example.com/path?a=1");
        assert_eq!(redact_url("https://example.com/a@b"), "https://example.com/a@b");
        assert_eq!(redact_url("https://example.com/path"), "https://example.com/path");
        assert_eq!(redact_url("not a url ?key=abc"), "not a url ?key=***");
    }

    #[tokio::test]
    async fn http_errors_are_described_without_the_url() {
        // Port 9 (discard) on loopback: nothing listens there in a test sandbox,
        // and even if something did the URL must not leak.
        let error = reqwest::Client::new()
            .get("http://127.0.0.1:9/cgi-bin/webhook/send?key=very-secret-key")
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await
            .expect_err("nothing listens on port 9");
        let text = describe_http_error(error);
        assert!(!text.contains("very-secret-key"), "{text}");
        assert!(!text.contains("127.0.0.1:9/cgi-bin"), "{text}");
    }
}
