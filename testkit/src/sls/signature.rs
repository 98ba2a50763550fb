//! Server-side verification of SLS v1 request signatures (HMAC-SHA1),
//! following reference §1.2 and §1.3.
//!
//! The string to sign is: verb, `Content-MD5`, `Content-Type` (whenever the
//! header is present, even with no body), `Date`, each followed by `\n`, then
//! the canonical `x-log-*`/`x-acs-*` headers (lowercased, trimmed, sorted,
//! `name:value\n`, excluding `x-log-date`, which the Python SDK adds after
//! signing, and `x-log-meta-*`, which the Python signer skips), then the path
//! and, when there is a query, `?` and the sorted, percent-decoded `key=value`
//! pairs joined by `&`.
//!
//! Policy (a deliberate choice, documented for the lead): with no credentials
//! configured the emulator verifies nothing about authentication, so curl and
//! ad-hoc clients work; with credentials configured it verifies strictly:
//! `Authorization: LOG id:signature` with a known id (else 401
//! `Unauthorized`), a matching signature (else 401 `SignatureNotMatch`, whose
//! message shows the string the server signed), `Date` (or `x-log-date` when
//! `Date` is absent) in RFC 1123 form within 15 minutes of server time (else
//! 400 `MissingDate`/`InvalidDateFormat`/`RequestTimeExpired`),
//! `x-log-apiversion: 0.6.0` and `x-log-signaturemethod: hmac-sha1`.
//! `Content-MD5`, when sent, is checked against the body in both modes,
//! because a mismatch is a client bug whatever the credentials.
//! v4 signatures (`SLS4-HMAC-SHA256`) are refused with `Unauthorized`.
//! Secrets never appear in errors or `Debug` output.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, Method};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;

use super::error::SlsError;

/// The largest accepted distance between the request `Date` and server time.
pub const MAX_REQUEST_TIME_SKEW: Duration = Duration::from_secs(15 * 60);

/// An access key pair the emulator accepts.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub access_key_id: String,
    access_key_secret: String,
}

impl Credential {
    pub fn new(access_key_id: impl Into<String>, access_key_secret: impl Into<String>) -> Credential {
        Credential { access_key_id: access_key_id.into(), access_key_secret: access_key_secret.into() }
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Credential")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .finish()
    }
}

/// The v1 string to sign for a request. `query` holds decoded pairs.
pub fn string_to_sign(method: &Method, headers: &HeaderMap, path: &str, query: &[(String, String)]) -> String {
    let header_text =
        |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or("").trim().to_string();
    let date = match headers.get("date") {
        Some(_) => header_text("date"),
        None => header_text("x-log-date"),
    };
    let mut text = String::with_capacity(256);
    text.push_str(method.as_str());
    text.push('\n');
    text.push_str(&header_text("content-md5"));
    text.push('\n');
    text.push_str(&header_text("content-type"));
    text.push('\n');
    text.push_str(&date);
    text.push('\n');

    let mut signed_headers: Vec<(String, String)> = headers
        .keys()
        .map(|name| name.as_str().to_ascii_lowercase())
        .filter(|name| {
            (name.starts_with("x-log-") || name.starts_with("x-acs-"))
                && name != "x-log-date"
                && !name.starts_with("x-log-meta-")
        })
        .map(|name| {
            let value = header_text(&name);
            (name, value)
        })
        .collect();
    signed_headers.sort();
    signed_headers.dedup_by(|later, earlier| later.0 == earlier.0);
    for (name, value) in &signed_headers {
        text.push_str(name);
        text.push(':');
        text.push_str(value);
        text.push('\n');
    }

    text.push_str(path);
    if !query.is_empty() {
        let mut sorted: Vec<&(String, String)> = query.iter().collect();
        sorted.sort();
        text.push('?');
        for (index, (key, value)) in sorted.into_iter().enumerate() {
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

/// Base64 of HMAC-SHA1(secret, string_to_sign).
pub fn sign(access_key_secret: &str, string_to_sign: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(access_key_secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Uppercase hex MD5 of `body`, the `Content-MD5` form SLS uses.
pub fn content_md5(body: &[u8]) -> String {
    Md5::digest(body).iter().map(|byte| format!("{byte:02X}")).collect()
}

/// The `Authorization` header value a client with `credential` would send.
pub fn authorization(credential: &Credential, string_to_sign: &str) -> String {
    format!("LOG {}:{}", credential.access_key_id, sign(&credential.access_key_secret, string_to_sign))
}

/// A request as the verifier sees it.
pub struct SignedRequest<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub path: &'a str,
    /// Decoded query pairs.
    pub query: &'a [(String, String)],
    pub body: &'a [u8],
}

/// Applies the policy in the module doc.
pub fn verify(request: &SignedRequest<'_>, credentials: &[Credential], now: SystemTime) -> Result<(), SlsError> {
    if let Some(received) = request.headers.get("content-md5") {
        let received = received.to_str().unwrap_or("").trim().to_string();
        let expected = content_md5(request.body);
        if !received.eq_ignore_ascii_case(&expected) {
            return Err(SlsError::InvalidContentMd5 { received, expected });
        }
    }
    if credentials.is_empty() {
        return Ok(());
    }

    let header_text =
        |name: &str| request.headers.get(name).map(|value| value.to_str().unwrap_or("").trim().to_string());
    let authorization = header_text("authorization").ok_or_else(|| SlsError::Unauthorized {
        message: "the Authorization header is missing; sign the request (LOG AccessKeyId:Signature)".to_string(),
    })?;
    let (access_key_id, received_signature) = parse_authorization(&authorization)?;

    let date = header_text("date").or_else(|| header_text("x-log-date")).ok_or(SlsError::MissingDate)?;
    let date_seconds = parse_http_date(&date).ok_or_else(|| SlsError::InvalidDateFormat { date: date.clone() })?;
    let now_seconds = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    if (now_seconds - date_seconds).unsigned_abs() > MAX_REQUEST_TIME_SKEW.as_secs() {
        return Err(SlsError::RequestTimeExpired { date });
    }

    let api_version = header_text("x-log-apiversion").ok_or(SlsError::MissingApiVersion)?;
    if api_version != "0.6.0" {
        return Err(SlsError::InvalidApiVersion { version: api_version });
    }
    let signature_method = header_text("x-log-signaturemethod").ok_or(SlsError::MissingSignatureMethod)?;
    if signature_method != "hmac-sha1" {
        return Err(SlsError::InvalidSignatureMethod { method: signature_method });
    }

    let credential =
        credentials.iter().find(|credential| credential.access_key_id == access_key_id).ok_or_else(|| {
            SlsError::Unauthorized { message: format!("AccessKeyId {access_key_id:?} is not found or is disabled") }
        })?;
    let string_to_sign = string_to_sign(request.method, request.headers, request.path, request.query);
    let expected = sign(&credential.access_key_secret, &string_to_sign);
    if !constant_time_equal(expected.as_bytes(), received_signature.as_bytes()) {
        return Err(SlsError::SignatureNotMatch { received: received_signature, string_to_sign });
    }
    Ok(())
}

fn parse_authorization(value: &str) -> Result<(String, String), SlsError> {
    if value.starts_with("SLS4-HMAC-SHA256") {
        return Err(SlsError::Unauthorized {
            message: "v4 signatures (SLS4-HMAC-SHA256) are not supported by this emulator; sign with v1 (hmac-sha1)"
                .to_string(),
        });
    }
    let malformed = || SlsError::Unauthorized {
        message: format!("the Authorization header {value:?} is malformed; expected \"LOG AccessKeyId:Signature\""),
    };
    let credentials = value.strip_prefix("LOG ").ok_or_else(malformed)?;
    let (access_key_id, signature) = credentials.split_once(':').ok_or_else(malformed)?;
    if access_key_id.is_empty() || signature.is_empty() {
        return Err(malformed());
    }
    Ok((access_key_id.to_string(), signature.to_string()))
}

fn constant_time_equal(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len() && left.iter().zip(right).fold(0u8, |difference, (a, b)| difference | (a ^ b)) == 0
}

/// Unix seconds of an RFC 1123 date in GMT, accepting one- or two-digit days
/// (`Tue, 01 Jul 2025 08:00:00 GMT`, `Mon, 3 Jan 2010 08:00:00 GMT`).
pub fn parse_http_date(text: &str) -> Option<i64> {
    let mut parts = text.split_whitespace();
    let weekday = parts.next()?;
    if !weekday.ends_with(',') {
        return None;
    }
    let day: u32 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':');
    let hour: i64 = clock.next()?.parse().ok()?;
    let minute: i64 = clock.next()?.parse().ok()?;
    let second: i64 = clock.next()?.parse().ok()?;
    if clock.next().is_some() || !matches!(parts.next()?, "GMT" | "UTC") || parts.next().is_some() {
        return None;
    }
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm), so no date crate is needed for one header.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = if year >= 0 { year } else { year - 399 } / 400;
    let year_of_era = year - era * 400;
    let month = month as i64;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day as i64 - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// RFC 1123 text of `time`, for tests and clients built on this module.
pub fn format_http_date(time: SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        second_of_day / 3_600,
        second_of_day % 3_600 / 60,
        second_of_day % 60
    )
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468;
    let era = if shifted >= 0 { shifted } else { shifted - 146_096 } / 146_097;
    let day_of_era = shifted - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const DATE: &str = "Tue, 01 Jul 2025 08:00:00 GMT";

    fn test_credential() -> Credential {
        Credential::new("testAccessKeyId", "testAccessKeySecret")
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    fn date_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(parse_http_date(DATE).unwrap() as u64)
    }

    #[test]
    fn worked_example_1_pull_logs() {
        let headers = headers(&[
            ("date", DATE),
            ("x-log-apiversion", "0.6.0"),
            ("x-log-bodyrawsize", "0"),
            ("x-log-signaturemethod", "hmac-sha1"),
            ("x-log-date", DATE),
        ]);
        let query = query(&[("type", "log"), ("cursor", "MTQ0NzI5OTYwNjg5NjYzMjM1Ng=="), ("count", "1000")]);
        let text = string_to_sign(&Method::GET, &headers, "/logstores/test-logstore/shards/0", &query);
        assert_eq!(text, "GET\n\n\nTue, 01 Jul 2025 08:00:00 GMT\nx-log-apiversion:0.6.0\nx-log-bodyrawsize:0\nx-log-signaturemethod:hmac-sha1\n/logstores/test-logstore/shards/0?count=1000&cursor=MTQ0NzI5OTYwNjg5NjYzMjM1Ng==&type=log");
        assert_eq!(authorization(&test_credential(), &text), "LOG testAccessKeyId:1Qdwvjyi0bM9CtdolhUDGKPhVkY=");
    }

    #[test]
    fn worked_example_2_heartbeat_with_body() {
        let body = b"[0, 1]";
        assert_eq!(content_md5(body), "264884439B70AB09A86BC848421C6DE6");
        let headers = headers(&[
            ("date", DATE),
            ("content-md5", "264884439B70AB09A86BC848421C6DE6"),
            ("content-type", "application/json"),
            ("x-log-apiversion", "0.6.0"),
            ("x-log-signaturemethod", "hmac-sha1"),
        ]);
        let query = query(&[("type", "heartbeat"), ("consumer", "consumer-1")]);
        let text = string_to_sign(&Method::POST, &headers, "/logstores/test-logstore/consumergroups/test-cg", &query);
        assert_eq!(text, "POST\n264884439B70AB09A86BC848421C6DE6\napplication/json\nTue, 01 Jul 2025 08:00:00 GMT\nx-log-apiversion:0.6.0\nx-log-signaturemethod:hmac-sha1\n/logstores/test-logstore/consumergroups/test-cg?consumer=consumer-1&type=heartbeat");
        assert_eq!(authorization(&test_credential(), &text), "LOG testAccessKeyId:ScKtOsO6lel3OvUvd/AvOL6VxuE=");
    }

    #[test]
    fn worked_example_3_checkpoint_with_sts_token() {
        let body = br#"{"shard": 0, "checkpoint": "MTQ0NzI5OTYwNjg5NjYzMjM1Ng=="}"#;
        assert_eq!(body.len(), 58);
        assert_eq!(content_md5(body), "EE820B79AB047D1AF67DB00AFA4D2989");
        let headers = headers(&[
            ("date", DATE),
            ("content-md5", "EE820B79AB047D1AF67DB00AFA4D2989"),
            ("content-type", "application/json"),
            ("x-acs-security-token", "testSTSToken"),
            ("x-log-apiversion", "0.6.0"),
            ("x-log-signaturemethod", "hmac-sha1"),
        ]);
        let query = query(&[("type", "checkpoint"), ("consumer", "consumer-1"), ("forceSuccess", "True")]);
        let text = string_to_sign(&Method::POST, &headers, "/logstores/test-logstore/consumergroups/test-cg", &query);
        assert_eq!(text, "POST\nEE820B79AB047D1AF67DB00AFA4D2989\napplication/json\nTue, 01 Jul 2025 08:00:00 GMT\nx-acs-security-token:testSTSToken\nx-log-apiversion:0.6.0\nx-log-signaturemethod:hmac-sha1\n/logstores/test-logstore/consumergroups/test-cg?consumer=consumer-1&forceSuccess=True&type=checkpoint");
        assert_eq!(authorization(&test_credential(), &text), "LOG testAccessKeyId:v/kIptdS7G4tySzEDPULbPOKm8c=");
    }

    #[test]
    fn worked_example_4_get_cursor_signs_content_type_without_body() {
        let headers = headers(&[
            ("date", DATE),
            ("content-type", "application/json"),
            ("x-log-apiversion", "0.6.0"),
            ("x-log-bodyrawsize", "0"),
            ("x-log-signaturemethod", "hmac-sha1"),
        ]);
        let query = query(&[("type", "cursor"), ("from", "begin")]);
        let text = string_to_sign(&Method::GET, &headers, "/logstores/test-logstore/shards/0", &query);
        assert_eq!(text, "GET\n\napplication/json\nTue, 01 Jul 2025 08:00:00 GMT\nx-log-apiversion:0.6.0\nx-log-bodyrawsize:0\nx-log-signaturemethod:hmac-sha1\n/logstores/test-logstore/shards/0?from=begin&type=cursor");
        assert_eq!(authorization(&test_credential(), &text), "LOG testAccessKeyId:YmtKtb/22jDYNlutwoaOth0y/KU=");
    }

    fn signed_pull_headers(credential: &Credential, date: &str) -> HeaderMap {
        let mut map = headers(&[("date", date), ("x-log-apiversion", "0.6.0"), ("x-log-signaturemethod", "hmac-sha1")]);
        let text = string_to_sign(&Method::GET, &map, "/logstores/l/shards/0", &query(&[("type", "log")]));
        map.insert("authorization", HeaderValue::from_str(&authorization(credential, &text)).unwrap());
        map
    }

    fn verify_pull(headers: &HeaderMap, now: SystemTime) -> Result<(), SlsError> {
        let query = query(&[("type", "log")]);
        let request =
            SignedRequest { method: &Method::GET, headers, path: "/logstores/l/shards/0", query: &query, body: b"" };
        verify(&request, &[test_credential()], now)
    }

    #[test]
    fn verify_accepts_a_correct_signature_and_ignores_x_log_date() {
        let mut headers = signed_pull_headers(&test_credential(), DATE);
        headers.insert("x-log-date", HeaderValue::from_static(DATE));
        verify_pull(&headers, date_time()).unwrap();
    }

    #[test]
    fn verify_rejects_wrong_secret_unknown_key_and_stale_date() {
        let wrong_secret = signed_pull_headers(&Credential::new("testAccessKeyId", "other"), DATE);
        assert_eq!(verify_pull(&wrong_secret, date_time()).unwrap_err().code(), "SignatureNotMatch");
        let unknown_key = signed_pull_headers(&Credential::new("someoneElse", "testAccessKeySecret"), DATE);
        assert_eq!(verify_pull(&unknown_key, date_time()).unwrap_err().code(), "Unauthorized");
        let good = signed_pull_headers(&test_credential(), DATE);
        let sixteen_minutes_later = date_time() + Duration::from_secs(16 * 60);
        assert_eq!(verify_pull(&good, sixteen_minutes_later).unwrap_err().code(), "RequestTimeExpired");
        let fourteen_minutes_earlier = date_time() - Duration::from_secs(14 * 60);
        verify_pull(&good, fourteen_minutes_earlier).unwrap();
    }

    #[test]
    fn verify_checks_content_md5_even_without_credentials() {
        let headers = headers(&[("content-md5", "00000000000000000000000000000000")]);
        let request = SignedRequest { method: &Method::POST, headers: &headers, path: "/", query: &[], body: b"[]" };
        assert_eq!(verify(&request, &[], SystemTime::now()).unwrap_err().code(), "InvalidContentMD5");
        let empty = HeaderMap::new();
        let request = SignedRequest { method: &Method::POST, headers: &empty, path: "/", query: &[], body: b"[]" };
        verify(&request, &[], SystemTime::now()).unwrap();
    }

    #[test]
    fn http_dates_parse_and_format() {
        assert_eq!(parse_http_date(DATE), Some(1_751_356_800));
        assert_eq!(parse_http_date("Mon, 3 Jan 2010 08:00:00 GMT"), Some(1_262_505_600));
        assert_eq!(parse_http_date("2025-07-01T08:00:00Z"), None);
        assert_eq!(format_http_date(date_time()), DATE);
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let text = format!("{:?}", test_credential());
        assert!(!text.contains("testAccessKeySecret"), "{text}");
    }
}
