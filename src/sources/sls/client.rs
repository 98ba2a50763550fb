//! The SLS HTTP client: addressing, signed requests, the consumer-group and
//! PullLogs APIs, and the classification of their errors.
//!
//! One `SlsClient` (one `reqwest` connection pool) serves every logstore and
//! shard of a source; clones share the pool. Addressing follows the official
//! SDKs: a region host is reached as `{project}.{host}`; an IP address or
//! `localhost` endpoint is connected to directly and the project travels in
//! `Host: {project}.{host}` (the Python SDK's IP mode, port left out).
//!
//! Every request carries `Date`, `x-log-apiversion: 0.6.0`,
//! `x-log-signaturemethod: hmac-sha1`, `x-log-bodyrawsize`, the STS token
//! when configured (`x-acs-security-token`, signed), and for JSON bodies
//! `Content-Type` and `Content-MD5`; see `signing` for the signature.
//!
//! Guarantees: only HTTP 200 is success (as in the Python SDK); every other
//! answer becomes a `RequestError` carrying the service's `errorCode`,
//! message and request id, and `RequestError::class` says what a caller must
//! do about it. Never retries by itself (callers own backoff and counting),
//! never decodes PullLogs bodies (see `proto`), and never puts the secret or
//! the `Authorization` header into an error or a log line.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_TYPE, DATE, HOST,
};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::proto::Compression;
use super::signing::{self, Secret, SigningInput};

const API_VERSION: &str = "0.6.0";
const SIGNATURE_METHOD: &str = "hmac-sha1";
const JSON: &str = "application/json";
/// Connection attempts give up sooner than whole requests: a dead address
/// should be retried (and counted) quickly.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the service is and how to address a project on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub https: bool,
    /// Host name or IP address, without port (IPv6 in brackets).
    pub host: String,
    pub port: Option<u16>,
    /// An IP address or `localhost`: connect directly, project in `Host`.
    pub direct: bool,
}

impl Endpoint {
    /// Parses `http://host[:port]`, `https://host[:port]` or a bare
    /// `host[:port]` (plain HTTP, like the SDKs). A path is ignored.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        let text = text.trim();
        let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else if text.contains("://") {
            return Err(format!("{text:?} has an unsupported scheme; use http:// or https://"));
        } else {
            (false, text)
        };
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(format!("{text:?} has no host; write it like \"https://cn-hangzhou.log.aliyuncs.com\" or \"http://127.0.0.1:8080\""));
        }
        let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
            let (address, after) =
                inner.split_once(']').ok_or_else(|| format!("{text:?}: the IPv6 address lacks its closing ']'"))?;
            let port = match after.strip_prefix(':') {
                Some(port) => Some(port),
                None if after.is_empty() => None,
                None => return Err(format!("{text:?}: unexpected text after the IPv6 address")),
            };
            (format!("[{address}]"), port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host.to_string(), Some(port)),
                None => (authority.to_string(), None),
            }
        };
        let port = port
            .map(|port| {
                port.parse::<u16>().map_err(|_| format!("{text:?}: the port {port:?} is not a number from 1 to 65535"))
            })
            .transpose()?;
        if host.is_empty() || host.contains(['@', '?', '#', ' ']) {
            return Err(format!("{text:?}: {host:?} is not a host name"));
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let direct = bare.parse::<IpAddr>().is_ok() || host.eq_ignore_ascii_case("localhost");
        Ok(Endpoint { https, host, port, direct })
    }

    /// The URL prefix requests for `project` go to.
    fn base_url(&self, project: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let port = self.port.map(|port| format!(":{port}")).unwrap_or_default();
        if self.direct {
            format!("{scheme}://{}{port}", self.host)
        } else {
            format!("{scheme}://{project}.{}{port}", self.host)
        }
    }
}

/// What a caller must do about a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Network errors, timeouts, 5xx, throttling and anything unknown: back
    /// off and try again.
    Retryable,
    /// The cursor is out of range or expired (PullLogs).
    InvalidCursor,
    /// The shard is not ours (any more), or is gone: stop it.
    NotOwned,
    /// The consumer group does not exist: create it again.
    GroupMissing,
    /// CreateConsumerGroup found it already there: update it instead.
    GroupExists,
    /// A heartbeat listed shards for a consumer the server does not know
    /// (it timed out): release everything and heartbeat with `[]`.
    UnknownConsumerWithShards,
    /// The access key, secret or STS token was refused.
    Credentials,
    /// `Date` is over 15 minutes from server time.
    Clock,
    /// The project or logstore does not exist, or the group quota is full.
    Configuration,
}

/// A failed SLS request. Displays the API, the status and the service's
/// code, message and request id; never any key material.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{api}: HTTP {status} {code}: {message} (request id {request_id})")]
    Service { api: &'static str, status: u16, code: String, message: String, request_id: String },
    #[error("{api}: {error}")]
    Transport { api: &'static str, error: reqwest::Error },
    #[error("{api}: unexpected response: {reason}")]
    BadResponse { api: &'static str, reason: String },
}

impl RequestError {
    /// The `error_code` label of `pipe_sls_retries_total`.
    pub fn code(&self) -> &str {
        match self {
            RequestError::Service { code, .. } if !code.is_empty() => code,
            RequestError::Service { .. } => "HttpError",
            RequestError::Transport { error, .. } if error.is_timeout() => "Timeout",
            RequestError::Transport { .. } => "NetworkError",
            RequestError::BadResponse { .. } => "BadResponse",
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            RequestError::Service { status, code, .. } => classify(*status, code),
            RequestError::Transport { .. } | RequestError::BadResponse { .. } => ErrorClass::Retryable,
        }
    }
}

/// Maps a service error to what to do. Spellings vary between SDKs
/// (`ConsumerNotExsit`, `ShardNotExsit`), so codes compare case-insensitively
/// and accept both.
pub fn classify(status: u16, code: &str) -> ErrorClass {
    let is = |name: &str| code.eq_ignore_ascii_case(name);
    if is("Unauthorized")
        || is("SignatureNotMatch")
        || is("InvalidAccessKeyId")
        || is("SecurityToken.Expired")
        || is("SecurityTokenExpired")
        || is("SecurityTokenInvalid")
        || (status == 401 && code.is_empty())
    {
        ErrorClass::Credentials
    } else if is("RequestTimeExpired") || is("RequestTimeTooSkewed") {
        ErrorClass::Clock
    } else if is("InvalidCursor") {
        ErrorClass::InvalidCursor
    } else if is("ConsumerNotMatch")
        || is("ConsumerNotExist")
        || is("ConsumerNotExsit")
        || is("ShardNotExist")
        || is("ShardNotExsit")
    {
        ErrorClass::NotOwned
    } else if is("ConsumerGroupNotExist") {
        ErrorClass::GroupMissing
    } else if is("ConsumerGroupAlreadyExist") {
        ErrorClass::GroupExists
    } else if is("NotExistConsumerWithBody") {
        ErrorClass::UnknownConsumerWithShards
    } else if is("ProjectNotExist") || is("LogStoreNotExist") || is("ConsumerGroupQuotaExceed") {
        ErrorClass::Configuration
    } else {
        ErrorClass::Retryable
    }
}

/// Access key and optional STS token.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: Secret,
    pub security_token: Option<Secret>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &self.access_key_secret)
            .field("security_token", &self.security_token)
            .finish()
    }
}

/// One shard as ListShards reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ShardInfo {
    #[serde(rename = "shardID")]
    pub shard_id: u32,
    pub status: String,
}

impl ShardInfo {
    pub fn read_only(&self) -> bool {
        self.status.eq_ignore_ascii_case("readonly")
    }
}

/// Start position for GetCursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorFrom {
    Begin,
    End,
    /// Server receive time, unix seconds.
    UnixSeconds(i64),
}

/// One PullLogs answer, body still compressed.
#[derive(Debug, Clone)]
pub struct PullResponse {
    /// Where the next pull starts (`x-log-cursor`; the request cursor when
    /// the header is empty).
    pub next_cursor: String,
    pub log_group_count: usize,
    /// Size of the uncompressed protobuf (`x-log-bodyrawsize`).
    pub raw_size: usize,
    pub compression: Compression,
    /// `x-log-end-of-cursor: 1`: nothing after `next_cursor` yet.
    pub end_of_cursor: bool,
    pub body: Bytes,
}

#[derive(Debug, Deserialize)]
struct ServiceErrorBody {
    #[serde(rename = "errorCode", default)]
    error_code: String,
    #[serde(rename = "errorMessage", default)]
    error_message: String,
}

#[derive(Debug, Deserialize)]
struct CursorBody {
    cursor: String,
}

#[derive(Debug, Deserialize)]
struct CheckpointEntry {
    shard: u32,
    #[serde(default)]
    checkpoint: String,
}

/// A cloneable client for one project; clones share the connection pool.
#[derive(Debug, Clone)]
pub struct SlsClient {
    inner: Arc<ClientInner>,
}

#[derive(Debug)]
struct ClientInner {
    http: reqwest::Client,
    base_url: String,
    host_header: Option<HeaderValue>,
    credentials: Credentials,
}

impl SlsClient {
    pub fn new(
        endpoint: &Endpoint,
        project: &str,
        credentials: Credentials,
        request_timeout: Duration,
    ) -> Result<SlsClient, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(request_timeout.min(MAX_CONNECT_TIMEOUT))
            .tcp_nodelay(true);
        if endpoint.direct {
            // A proxy from the environment cannot route a bare address with a
            // foreign Host header; the SDK's IP mode means "this very socket".
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|error| error.to_string())?;
        let host_header = if endpoint.direct {
            let value = format!("{project}.{}", endpoint.host);
            Some(HeaderValue::from_str(&value).map_err(|_| format!("the Host header {value:?} is not valid"))?)
        } else {
            None
        };
        Ok(SlsClient {
            inner: Arc::new(ClientInner { http, base_url: endpoint.base_url(project), host_header, credentials }),
        })
    }

    pub async fn list_shards(&self, logstore: &str) -> Result<Vec<ShardInfo>, RequestError> {
        const API: &str = "ListShards";
        let response = self.send(API, Method::GET, &format!("/logstores/{logstore}/shards"), &[], None, false).await?;
        json_body(API, response).await
    }

    pub async fn get_cursor(&self, logstore: &str, shard: u32, from: CursorFrom) -> Result<String, RequestError> {
        const API: &str = "GetCursor";
        let from = match from {
            CursorFrom::Begin => "begin".to_string(),
            CursorFrom::End => "end".to_string(),
            CursorFrom::UnixSeconds(seconds) => seconds.to_string(),
        };
        let path = format!("/logstores/{logstore}/shards/{shard}");
        let response = self.send(API, Method::GET, &path, &[("type", "cursor"), ("from", &from)], None, false).await?;
        let body: CursorBody = json_body(API, response).await?;
        Ok(body.cursor)
    }

    pub async fn pull_logs(
        &self,
        logstore: &str,
        shard: u32,
        cursor: &str,
        count: u32,
    ) -> Result<PullResponse, RequestError> {
        const API: &str = "PullLogs";
        let path = format!("/logstores/{logstore}/shards/{shard}");
        let count = count.to_string();
        let response = self
            .send(API, Method::GET, &path, &[("type", "log"), ("cursor", cursor), ("count", &count)], None, true)
            .await?;
        let headers = response.headers();
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::trim);
        let missing = |name: &str| RequestError::BadResponse {
            api: API,
            reason: format!("the {name} header is missing or not a number"),
        };
        let next_cursor = match header("x-log-cursor") {
            Some(next) if !next.is_empty() => next.to_string(),
            Some(_) => cursor.to_string(),
            None => return Err(missing("x-log-cursor")),
        };
        let log_group_count =
            header("x-log-count").and_then(|value| value.parse().ok()).ok_or_else(|| missing("x-log-count"))?;
        let raw_size = header("x-log-bodyrawsize").and_then(|value| value.parse().ok());
        let compression = Compression::from_header(header("x-log-compresstype"));
        let end_of_cursor = header("x-log-end-of-cursor") == Some("1");
        let body = response.bytes().await.map_err(|error| RequestError::Transport { api: API, error })?;
        let raw_size = match raw_size {
            Some(size) => size,
            None if body.is_empty() => 0,
            None => return Err(missing("x-log-bodyrawsize")),
        };
        Ok(PullResponse { next_cursor, log_group_count, raw_size, compression, end_of_cursor, body })
    }

    pub async fn create_consumer_group(
        &self,
        logstore: &str,
        group: &str,
        timeout: Duration,
        ordered: bool,
    ) -> Result<(), RequestError> {
        let body = serde_json::json!({"consumerGroup": group, "timeout": timeout.as_secs(), "order": ordered});
        let path = format!("/logstores/{logstore}/consumergroups");
        self.send("CreateConsumerGroup", Method::POST, &path, &[], Some(json_bytes(&body)), false).await.map(drop)
    }

    pub async fn update_consumer_group(
        &self,
        logstore: &str,
        group: &str,
        timeout: Duration,
        ordered: bool,
    ) -> Result<(), RequestError> {
        let body = serde_json::json!({"order": ordered, "timeout": timeout.as_secs()});
        let path = format!("/logstores/{logstore}/consumergroups/{group}");
        self.send("UpdateConsumerGroup", Method::PUT, &path, &[], Some(json_bytes(&body)), false).await.map(drop)
    }

    /// Reports the shards held and answers the shards assigned.
    pub async fn heartbeat(
        &self,
        logstore: &str,
        group: &str,
        consumer: &str,
        held: &[u32],
    ) -> Result<Vec<u32>, RequestError> {
        const API: &str = "ConsumerGroupHeartBeat";
        let path = format!("/logstores/{logstore}/consumergroups/{group}");
        let query = [("type", "heartbeat"), ("consumer", consumer)];
        let response = self.send(API, Method::POST, &path, &query, Some(json_bytes(&held)), false).await?;
        json_body(API, response).await
    }

    /// The group's checkpoint for `shard`; `None` when never committed.
    pub async fn get_checkpoint(
        &self,
        logstore: &str,
        group: &str,
        shard: u32,
    ) -> Result<Option<String>, RequestError> {
        const API: &str = "GetCheckPoint";
        let path = format!("/logstores/{logstore}/consumergroups/{group}");
        let shard_text = shard.to_string();
        let response = self.send(API, Method::GET, &path, &[("shard", &shard_text)], None, false).await?;
        let entries: Vec<CheckpointEntry> = json_body(API, response).await?;
        Ok(entries
            .into_iter()
            .find(|entry| entry.shard == shard)
            .map(|entry| entry.checkpoint)
            .filter(|checkpoint| !checkpoint.is_empty()))
    }

    /// Stores `cursor` as the group's checkpoint for `shard`. With
    /// `force_success` false the service refuses it (`ConsumerNotMatch`,
    /// `ConsumerNotExist`) unless `consumer` holds the shard.
    pub async fn update_checkpoint(
        &self,
        logstore: &str,
        group: &str,
        consumer: &str,
        shard: u32,
        cursor: &str,
        force_success: bool,
    ) -> Result<(), RequestError> {
        let path = format!("/logstores/{logstore}/consumergroups/{group}");
        let body = serde_json::json!({"shard": shard, "checkpoint": cursor});
        let query = [
            ("type", "checkpoint"),
            ("consumer", consumer),
            ("forceSuccess", if force_success { "true" } else { "false" }),
        ];
        self.send("ConsumerGroupUpdateCheckPoint", Method::POST, &path, &query, Some(json_bytes(&body)), false)
            .await
            .map(drop)
    }

    /// Signs and sends one request; answers the response when it is HTTP 200.
    async fn send(
        &self,
        api: &'static str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        json_body: Option<Vec<u8>>,
        protobuf: bool,
    ) -> Result<reqwest::Response, RequestError> {
        let inner = &*self.inner;
        let mut url = reqwest::Url::parse(&format!("{}{path}", inner.base_url)).map_err(|error| {
            RequestError::BadResponse { api, reason: format!("cannot build the request URL: {error}") }
        })?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().copied());
        }
        let date = signing::http_date(SystemTime::now());
        let body_size = json_body.as_ref().map_or(0, Vec::len).to_string();
        let content_md5 = json_body.as_deref().map(signing::content_md5).unwrap_or_default();
        let content_type = if json_body.is_some() { JSON } else { "" };
        let token = inner.credentials.security_token.as_ref().map(Secret::expose);
        let mut log_headers: Vec<(&str, &str)> = vec![
            ("x-log-apiversion", API_VERSION),
            ("x-log-bodyrawsize", &body_size),
            ("x-log-signaturemethod", SIGNATURE_METHOD),
        ];
        if let Some(token) = token {
            log_headers.push(("x-acs-security-token", token));
        }
        let authorization = signing::authorization(
            &inner.credentials.access_key_id,
            &inner.credentials.access_key_secret,
            &SigningInput {
                method: method.as_str(),
                content_md5: &content_md5,
                content_type,
                date: &date,
                log_headers: &log_headers,
                path,
                query,
            },
        );

        let mut headers = HeaderMap::with_capacity(12);
        let invalid = |name: &str| RequestError::BadResponse {
            api,
            reason: format!("the {name} header value is not valid HTTP"),
        };
        for (name, value) in &log_headers {
            let value = HeaderValue::from_str(value).map_err(|_| invalid(name))?;
            headers.insert(HeaderName::from_static(name), value);
        }
        headers.insert(DATE, HeaderValue::from_str(&date).map_err(|_| invalid("Date"))?);
        let mut authorization = HeaderValue::from_str(&authorization).map_err(|_| invalid("Authorization"))?;
        authorization.set_sensitive(true);
        headers.insert(AUTHORIZATION, authorization);
        if let Some(host) = &inner.host_header {
            headers.insert(HOST, host.clone());
        }
        if json_body.is_some() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
            headers.insert(
                HeaderName::from_static("content-md5"),
                HeaderValue::from_str(&content_md5).map_err(|_| invalid("Content-MD5"))?,
            );
        }
        if protobuf {
            headers.insert(ACCEPT, HeaderValue::from_static("application/x-protobuf"));
            headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("lz4"));
        }
        let mut request = inner.http.request(method, url).headers(headers);
        if let Some(body) = json_body {
            request = request.body(body);
        }
        let response =
            request.send().await.map_err(|error| RequestError::Transport { api, error: error.without_url() })?;
        if response.status() == StatusCode::OK {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let request_id = response
            .headers()
            .get("x-log-requestid")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("none")
            .to_string();
        let body = response.bytes().await.unwrap_or_default();
        let (code, message) = match serde_json::from_slice::<ServiceErrorBody>(&body) {
            Ok(parsed) => (parsed.error_code, parsed.error_message),
            Err(_) => (String::new(), String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()),
        };
        Err(RequestError::Service { api, status, code, message, request_id })
    }
}

fn json_bytes<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own maps and integer lists cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

async fn json_body<T: serde::de::DeserializeOwned>(
    api: &'static str,
    response: reqwest::Response,
) -> Result<T, RequestError> {
    let body = response.bytes().await.map_err(|error| RequestError::Transport { api, error })?;
    serde_json::from_slice(&body)
        .map_err(|error| RequestError::BadResponse { api, reason: format!("the JSON body does not parse: {error}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_choose_direct_mode_for_addresses_and_localhost() {
        let region = Endpoint::parse("https://cn-hangzhou.log.aliyuncs.com").unwrap();
        assert_eq!(
            region,
            Endpoint { https: true, host: "cn-hangzhou.log.aliyuncs.com".into(), port: None, direct: false }
        );
        assert_eq!(region.base_url("proj"), "https://proj.cn-hangzhou.log.aliyuncs.com");
        let ip = Endpoint::parse("http://127.0.0.1:18080/").unwrap();
        assert!(ip.direct);
        assert_eq!(ip.base_url("proj"), "http://127.0.0.1:18080");
        let bare = Endpoint::parse("127.0.0.1:9").unwrap();
        assert!(!bare.https && bare.direct && bare.port == Some(9));
        assert!(Endpoint::parse("http://localhost:80").unwrap().direct);
        let v6 = Endpoint::parse("http://[::1]:8080").unwrap();
        assert_eq!((v6.host.as_str(), v6.port, v6.direct), ("[::1]", Some(8080), true));
        assert_eq!(Endpoint::parse("sls.example.com:8443").unwrap().base_url("p"), "http://p.sls.example.com:8443");
    }

    #[test]
    fn bad_endpoints_are_explained() {
        assert!(Endpoint::parse("ftp://host").unwrap_err().contains("http://"));
        assert!(Endpoint::parse("http://").unwrap_err().contains("no host"));
        assert!(Endpoint::parse("http://host:99999").unwrap_err().contains("port"));
        assert!(Endpoint::parse("http://[::1").unwrap_err().contains("]"));
    }

    #[test]
    fn error_codes_are_classified_like_the_sdks_handle_them() {
        let cases = [
            (403, "ReadQuotaExceed", ErrorClass::Retryable),
            (403, "ShardReadQuotaExceed", ErrorClass::Retryable),
            (503, "ServerBusy", ErrorClass::Retryable),
            (500, "InternalServerError", ErrorClass::Retryable),
            (502, "", ErrorClass::Retryable),
            (400, "InvalidCursor", ErrorClass::InvalidCursor),
            (401, "Unauthorized", ErrorClass::Credentials),
            (401, "SignatureNotMatch", ErrorClass::Credentials),
            (401, "InvalidAccessKeyId", ErrorClass::Credentials),
            (401, "", ErrorClass::Credentials),
            (400, "RequestTimeExpired", ErrorClass::Clock),
            (400, "RequestTimeTooSkewed", ErrorClass::Clock),
            (400, "ConsumerNotMatch", ErrorClass::NotOwned),
            (400, "ConsumerNotExsit", ErrorClass::NotOwned),
            (400, "shardnotexist", ErrorClass::NotOwned),
            (404, "ConsumerGroupNotExist", ErrorClass::GroupMissing),
            (400, "ConsumerGroupAlreadyExist", ErrorClass::GroupExists),
            (400, "NotExistConsumerWithBody", ErrorClass::UnknownConsumerWithShards),
            (404, "LogStoreNotExist", ErrorClass::Configuration),
            (404, "ProjectNotExist", ErrorClass::Configuration),
        ];
        for (status, code, expected) in cases {
            assert_eq!(classify(status, code), expected, "{status} {code}");
        }
    }

    #[test]
    fn credentials_debug_hides_the_secret_and_token() {
        let credentials = Credentials {
            access_key_id: "id".into(),
            access_key_secret: Secret::new("very-secret"),
            security_token: Some(Secret::new("token-value")),
        };
        let text = format!("{credentials:?}");
        assert!(!text.contains("very-secret") && !text.contains("token-value"), "{text}");
        assert!(text.contains("\"id\""));
    }
}
