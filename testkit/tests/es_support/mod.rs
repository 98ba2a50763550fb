//! Helpers shared by the `es_*` integration tests: a JSON-over-HTTP client
//! for the emulator and a condition poller (tests never sleep to wait).

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::Value;

/// The answer to one request: status, headers, body (JSON when it parses,
/// else the text as a JSON string, `Null` when empty).
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("reqwest client builds")
}

pub async fn request(method: &str, url: &str, body: Option<&Value>) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("valid method");
    let mut builder = client().request(method, url);
    if let Some(body) = body {
        builder = builder.header("content-type", "application/json").body(body.to_string());
    }
    send(builder).await
}

pub async fn send(builder: reqwest::RequestBuilder) -> Answer {
    let response = builder.send().await.expect("request reaches the emulator");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("response body is readable");
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    Answer { status, headers, body }
}

pub async fn get(url: &str) -> Answer {
    request("GET", url, None).await
}

pub async fn post(url: &str, body: &Value) -> Answer {
    request("POST", url, Some(body)).await
}

/// POSTs an NDJSON bulk body.
pub async fn bulk(url: &str, ndjson: &str) -> Answer {
    send(client().post(url).header("content-type", "application/x-ndjson").body(ndjson.to_string())).await
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `_source` values of `field` from a search answer, in hit order.
pub fn hit_values(answer: &Answer, field: &str) -> Vec<Value> {
    answer.body["hits"]["hits"]
        .as_array()
        .map(|hits| hits.iter().map(|hit| hit["_source"][field].clone()).collect())
        .unwrap_or_default()
}
