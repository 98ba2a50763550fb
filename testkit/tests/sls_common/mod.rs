//! A minimal SLS client for the emulator's integration tests: raw HTTP/1.1
//! over a fresh TCP connection per request, signed with v1 exactly as the
//! official Python SDK signs (Date, x-log-apiversion, x-log-signaturemethod,
//! x-log-bodyrawsize: 0 on body-less requests, Content-MD5 and Content-Type
//! on bodies, x-log-date added after signing). Response header names are kept
//! as received so tests can check their case.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use testkit::sls::{authorization, content_md5, format_http_date, string_to_sign, Credential};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const PROJECT: &str = "test-project";
pub const ACCESS_KEY_ID: &str = "test-access-key-id";
pub const ACCESS_KEY_SECRET: &str = "test-access-key-secret";

#[derive(Debug, Clone)]
pub struct TestResponse {
    pub status: u16,
    /// Header names exactly as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("body is not JSON ({error}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn error_code(&self) -> String {
        self.json()["errorCode"].as_str().unwrap_or_default().to_string()
    }
}

#[derive(Debug, Clone)]
pub struct SlsTestClient {
    pub address: SocketAddr,
    pub project: String,
    pub credential: Option<Credential>,
    /// Date to sign with; `None` means now.
    pub date: Option<SystemTime>,
}

impl SlsTestClient {
    pub fn new(address: SocketAddr, credential: Option<Credential>) -> SlsTestClient {
        SlsTestClient { address, project: PROJECT.to_string(), credential, date: None }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        extra_headers: &[(&str, &str)],
        body: &[u8],
    ) -> TestResponse {
        let date = format_http_date(self.date.unwrap_or_else(SystemTime::now));
        let mut headers = HeaderMap::new();
        fn put(headers: &mut HeaderMap, name: &str, value: &str) {
            headers.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        put(&mut headers, "date", &date);
        put(&mut headers, "x-log-apiversion", "0.6.0");
        put(&mut headers, "x-log-signaturemethod", "hmac-sha1");
        if body.is_empty() {
            put(&mut headers, "x-log-bodyrawsize", "0");
        } else {
            put(&mut headers, "content-md5", &content_md5(body));
            put(&mut headers, "content-type", "application/json");
        }
        for (name, value) in extra_headers {
            put(&mut headers, name, value);
        }
        if let Some(credential) = &self.credential {
            let decoded: Vec<(String, String)> =
                query.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
            let text = string_to_sign(&method, &headers, path, &decoded);
            let signed = authorization(credential, &text);
            put(&mut headers, "authorization", &signed);
        }
        put(&mut headers, "x-log-date", &date);

        let encoded_query = form_urlencoded::Serializer::new(String::new()).extend_pairs(query.iter()).finish();
        let target = if encoded_query.is_empty() { path.to_string() } else { format!("{path}?{encoded_query}") };
        let mut request = format!(
            "{method} {target} HTTP/1.1\r\nhost: {}.127.0.0.1\r\nconnection: close\r\ncontent-length: {}\r\n",
            self.project,
            body.len()
        );
        for (name, value) in headers.iter() {
            request.push_str(&format!("{}: {}\r\n", name, value.to_str().unwrap()));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        send_raw(self.address, &bytes).await.expect("the emulator answered")
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> TestResponse {
        self.request(Method::GET, path, query, &[], b"").await
    }

    pub async fn cursor(&self, logstore: &str, shard: u32, from: &str) -> String {
        let response =
            self.get(&format!("/logstores/{logstore}/shards/{shard}"), &[("type", "cursor"), ("from", from)]).await;
        assert_eq!(response.status, 200, "GetCursor: {:?}", String::from_utf8_lossy(&response.body));
        response.json()["cursor"].as_str().unwrap().to_string()
    }

    pub async fn pull(
        &self,
        logstore: &str,
        shard: u32,
        cursor: &str,
        count: u32,
        accept_encoding: &str,
    ) -> TestResponse {
        let count = count.to_string();
        self.request(
            Method::GET,
            &format!("/logstores/{logstore}/shards/{shard}"),
            &[("type", "log"), ("cursor", cursor), ("count", &count)],
            &[("accept", "application/x-protobuf"), ("accept-encoding", accept_encoding)],
            b"",
        )
        .await
    }

    pub async fn create_group(&self, logstore: &str, group: &str, timeout_seconds: u64) -> TestResponse {
        let body = format!(r#"{{"consumerGroup": "{group}", "timeout": {timeout_seconds}, "order": false}}"#);
        self.request(Method::POST, &format!("/logstores/{logstore}/consumergroups"), &[], &[], body.as_bytes()).await
    }

    pub async fn heartbeat(&self, logstore: &str, group: &str, consumer: &str, held: &[u32]) -> TestResponse {
        let body = serde_json::to_vec(held).unwrap();
        self.request(
            Method::POST,
            &format!("/logstores/{logstore}/consumergroups/{group}"),
            &[("type", "heartbeat"), ("consumer", consumer)],
            &[],
            &body,
        )
        .await
    }

    /// The shards a heartbeat answers; panics on an error answer.
    pub async fn heartbeat_shards(&self, logstore: &str, group: &str, consumer: &str, held: &[u32]) -> Vec<u32> {
        let response = self.heartbeat(logstore, group, consumer, held).await;
        assert_eq!(response.status, 200, "heartbeat: {:?}", String::from_utf8_lossy(&response.body));
        let mut shards: Vec<u32> = serde_json::from_slice(&response.body).unwrap();
        shards.sort();
        shards
    }

    pub async fn checkpoint(
        &self,
        logstore: &str,
        group: &str,
        consumer: &str,
        shard: u32,
        cursor: &str,
        force: &str,
    ) -> TestResponse {
        let body = format!(r#"{{"shard": {shard}, "checkpoint": "{cursor}"}}"#);
        self.request(
            Method::POST,
            &format!("/logstores/{logstore}/consumergroups/{group}"),
            &[("type", "checkpoint"), ("consumer", consumer), ("forceSuccess", force)],
            &[],
            body.as_bytes(),
        )
        .await
    }
}

/// Sends raw request bytes and parses the answer; `None` when the server
/// closed the connection without answering.
pub async fn send_raw(address: SocketAddr, request: &[u8]) -> Option<TestResponse> {
    let mut stream = TcpStream::connect(address).await.expect("connect to the emulator");
    stream.write_all(request).await.expect("send the request");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    if raw.is_empty() {
        return None;
    }
    let split = raw.windows(4).position(|window| window == b"\r\n\r\n").expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_string(), value.trim().to_string()))
        .collect();
    let body = raw[split + 4..].to_vec();
    Some(TestResponse { status, headers, body })
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, description: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {timeout:?} waiting for {description}");
}
