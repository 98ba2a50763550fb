//! The HEC emulator over real HTTP: indexer acknowledgements (ids, true
//! once, delay, loss, expiry, error codes) and fault injection through the
//! Rust control handle and the `/_testkit/` endpoints.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::hec::{AckSettings, HecCode, HecEmulator, HecFault, HecFaultTarget, HecToken};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ACK_TOKEN: &str = "11111111-aaaa-bbbb-cccc-000000000002";
const PLAIN_TOKEN: &str = "11111111-aaaa-bbbb-cccc-000000000001";
const CHANNEL: &str = "0af1c3d2-1234-4abc-8def-00112233aabb";
const OTHER_CHANNEL: &str = "9af1c3d2-1234-4abc-8def-00112233aabb";
const WAIT_LIMIT: Duration = Duration::from_secs(20);
const POLL_INTERVAL: Duration = Duration::from_millis(25);

async fn emulator(settings: AckSettings) -> HecEmulator {
    HecEmulator::builder()
        .token(HecToken::new(ACK_TOKEN).name("acked").use_ack(true))
        .token(HecToken::new(PLAIN_TOKEN).name("plain"))
        .ack_settings(settings)
        .start()
        .await
        .expect("the emulator starts")
}

async fn send_event(hec: &HecEmulator, channel: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/services/collector/event", hec.url()))
        .header("authorization", format!("Splunk {ACK_TOKEN}"))
        .header("x-splunk-request-channel", channel)
        .body(r#"{"event":"x"}"#)
        .send()
        .await
        .expect("the emulator answers");
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

async fn ack_query(
    hec: &HecEmulator,
    token: &str,
    channel: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/services/collector/ack", hec.url()))
        .header("authorization", format!("Splunk {token}"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(channel) = channel {
        request = request.header("x-splunk-request-channel", channel);
    }
    let response = request.send().await.expect("the emulator answers");
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

async fn acks(hec: &HecEmulator, channel: &str, ids: &[u64]) -> Value {
    let (status, body) = ack_query(hec, ACK_TOKEN, Some(channel), json!({ "acks": ids }).to_string()).await;
    assert_eq!(status, 200, "{body}");
    body["acks"].clone()
}

#[tokio::test]
async fn ack_ids_count_per_channel_and_read_true_once() {
    let hec = emulator(AckSettings::default()).await;
    assert_eq!(send_event(&hec, CHANNEL).await.1["ackId"], json!(0));
    assert_eq!(send_event(&hec, CHANNEL).await.1["ackId"], json!(1));
    assert_eq!(send_event(&hec, OTHER_CHANNEL).await.1["ackId"], json!(0));

    assert_eq!(acks(&hec, CHANNEL, &[0, 1, 5]).await, json!({"0": true, "1": true, "5": false}));
    assert_eq!(acks(&hec, CHANNEL, &[0, 1]).await, json!({"0": false, "1": false}), "true is reported once");
    assert_eq!(acks(&hec, OTHER_CHANNEL, &[0]).await, json!({"0": true}));
    let stats = hec.control().stats();
    assert_eq!((stats.acks.issued, stats.acks.reported_true, stats.acks.pending), (3, 3, 0));
}

#[tokio::test]
async fn ack_endpoint_error_codes_and_gzip() {
    let hec = emulator(AckSettings::default()).await;
    send_event(&hec, CHANNEL).await;
    assert_eq!(ack_query(&hec, PLAIN_TOKEN, Some(CHANNEL), r#"{"acks":[0]}"#).await.1["code"], json!(14));
    let (status, body) = ack_query(&hec, ACK_TOKEN, None, r#"{"acks":[0]}"#).await;
    assert_eq!((status, &body["code"]), (400, &json!(10)));
    assert_eq!(ack_query(&hec, ACK_TOKEN, Some("nope"), r#"{"acks":[0]}"#).await.1["code"], json!(11));
    assert_eq!(ack_query(&hec, ACK_TOKEN, Some(CHANNEL), "{").await.1["code"], json!(6));
    assert_eq!(ack_query(&hec, ACK_TOKEN, Some(CHANNEL), r#"{"acks":[]}"#).await.1["code"], json!(6));
    assert_eq!(ack_query(&hec, "bogus", Some(CHANNEL), r#"{"acks":[0]}"#).await.1["code"], json!(4));

    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(br#"{"acks":[0]}"#).unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/services/collector/ack?channel={CHANNEL}", hec.url()))
        .header("authorization", format!("Splunk {ACK_TOKEN}"))
        .header("content-encoding", "gzip")
        .body(encoder.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"acks": {"0": true}}));
}

#[tokio::test]
async fn delayed_acks_turn_true_only_after_the_delay() {
    let delay = Duration::from_millis(1500);
    let hec = emulator(AckSettings { delay, ..AckSettings::default() }).await;
    let sent_at = Instant::now();
    let id = send_event(&hec, CHANNEL).await.1["ackId"].as_u64().unwrap();
    let first = acks(&hec, CHANNEL, &[id]).await;
    if sent_at.elapsed() < delay {
        assert_eq!(first, json!({"0": false}), "pending before the delay");
    }
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        if acks(&hec, CHANNEL, &[id]).await == json!({"0": true}) {
            break;
        }
        assert!(Instant::now() < deadline, "the ack never became true");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    assert!(sent_at.elapsed() >= delay, "true came before the configured delay");
}

#[tokio::test]
async fn lost_acks_never_become_true() {
    let hec = emulator(AckSettings::default()).await;
    hec.control().lose_next_acks(1);
    let lost = send_event(&hec, CHANNEL).await.1["ackId"].as_u64().unwrap();
    let kept = send_event(&hec, CHANNEL).await.1["ackId"].as_u64().unwrap();
    assert_eq!(acks(&hec, CHANNEL, &[lost, kept]).await, json!({"0": false, "1": true}));
    assert_eq!(hec.control().stats().acks.lost, 1);

    let response = reqwest::Client::new()
        .put(format!("{}/_testkit/acks", hec.url()))
        .json(&json!({"loss_fraction": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = send_event(&hec, CHANNEL).await.1["ackId"].as_u64().unwrap();
    assert_eq!(acks(&hec, CHANNEL, &[id]).await, json!({"2": false}));
    assert_eq!(hec.control().ack_settings().loss_fraction, 1.0);
}

#[tokio::test]
async fn expired_acks_are_forgotten() {
    let hec = emulator(AckSettings {
        delay: Duration::from_secs(3600),
        expiry: Some(Duration::from_millis(100)),
        ..AckSettings::default()
    })
    .await;
    let id = send_event(&hec, CHANNEL).await.1["ackId"].as_u64().unwrap();
    let deadline = Instant::now() + WAIT_LIMIT;
    while hec.control().stats().acks.expired == 0 {
        assert_eq!(acks(&hec, CHANNEL, &[id]).await, json!({"0": false}));
        assert!(Instant::now() < deadline, "the ack never expired");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    assert_eq!(hec.control().stats().acks.pending, 0);
}

#[tokio::test]
async fn scheduled_codes_busy_and_bare_statuses() {
    let hec = emulator(AckSettings::default()).await;
    let control = hec.control();
    control.fail_next(1, HecFaultTarget::Data, HecFault::Code { code: HecCode::ServerBusy }).unwrap();
    control.fail_next(1, HecFaultTarget::Data, HecFault::Code { code: HecCode::InternalServerError }).unwrap();
    control.fail_next(1, HecFaultTarget::Data, HecFault::Status { status: 429, retry_after_secs: Some(7) }).unwrap();
    assert_eq!(send_event(&hec, CHANNEL).await, (503, json!({"text": "Server is busy", "code": 9})));
    assert_eq!(send_event(&hec, CHANNEL).await, (500, json!({"text": "Internal server error", "code": 8})));
    let throttled =
        reqwest::Client::new().post(format!("{}/services/collector/event", hec.url())).body("{}").send().await.unwrap();
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "7");
    assert_eq!(send_event(&hec, CHANNEL).await.1["ackId"], json!(0), "faulted requests issue no ack ids");

    control.set_busy(true);
    assert_eq!(send_event(&hec, CHANNEL).await.0, 503);
    assert_eq!(acks(&hec, CHANNEL, &[0]).await, json!({"0": true}), "busy leaves /ack alone");
    control.set_busy(false);
    assert_eq!(send_event(&hec, CHANNEL).await.0, 200);
    assert_eq!(hec.control().events().len(), 2);

    control.fail_next(1, HecFaultTarget::Ack, HecFault::Code { code: HecCode::ServerBusy }).unwrap();
    assert_eq!(send_event(&hec, CHANNEL).await.0, 200, "an ack-only fault skips data requests");
    let (status, _) = ack_query(&hec, ACK_TOKEN, Some(CHANNEL), r#"{"acks":[1]}"#).await;
    assert_eq!(status, 503);
    assert_eq!(control.pending_faults(), 0);
}

async fn raw_exchange(hec: &HecEmulator, body: &str) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(hec.address()).await.unwrap();
    let request = format!(
        "POST /services/collector/event HTTP/1.1\r\nhost: hec\r\nauthorization: Splunk {ACK_TOKEN}\r\n\
         x-splunk-request-channel: {CHANNEL}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(WAIT_LIMIT, stream.read_to_end(&mut response)).await.expect("the server closes");
    response
}

#[tokio::test]
async fn dropped_connections_before_and_after_accepting() {
    let hec = emulator(AckSettings::default()).await;
    hec.control().fail_next(1, HecFaultTarget::Data, HecFault::DropConnection).unwrap();
    assert_eq!(raw_exchange(&hec, r#"{"event":"lost"}"#).await, b"", "no byte of a response is sent");
    assert!(hec.control().events().is_empty());

    hec.control().fail_next(1, HecFaultTarget::Data, HecFault::DropAfterAccept).unwrap();
    let error = reqwest::Client::new()
        .post(format!("{}/services/collector/event", hec.url()))
        .header("authorization", format!("Splunk {ACK_TOKEN}"))
        .header("x-splunk-request-channel", CHANNEL)
        .body(r#"{"event":"landed"}"#)
        .send()
        .await;
    assert!(error.is_err(), "the client sees a dropped connection");
    let events = hec.control().events();
    assert_eq!(events.len(), 1, "the request was accepted before the drop");
    assert_eq!(events[0].ack_id, Some(0));
    assert_eq!(send_event(&hec, CHANNEL).await.1["ackId"], json!(1), "the lost answer still used ack id 0");
    assert_eq!(hec.control().stats().dropped_connections, 2);
}

#[tokio::test]
async fn http_control_endpoints_steer_faults_latency_health_and_tokens() {
    let hec = emulator(AckSettings::default()).await;
    let client = reqwest::Client::new();
    let control_url = |path: &str| format!("{}/_testkit/{path}", hec.url());

    let scheduled = client
        .post(control_url("faults"))
        .json(&json!({"count": 2, "target": "data", "kind": "code", "code": 9}))
        .send()
        .await
        .unwrap();
    assert_eq!(scheduled.status(), 200);
    assert_eq!(hec.control().pending_faults(), 2);
    assert_eq!(send_event(&hec, CHANNEL).await.1["code"], json!(9));
    client.delete(control_url("faults")).send().await.unwrap();
    assert_eq!(send_event(&hec, CHANNEL).await.0, 200);

    let bad = client
        .post(control_url("faults"))
        .json(&json!({"count": 1, "kind": "status", "status": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let bad_code =
        client.post(control_url("faults")).json(&json!({"count": 1, "kind": "code", "code": 99})).send().await.unwrap();
    assert_eq!(bad_code.status(), 400);

    client.put(control_url("health")).json(&json!({"code": 18})).send().await.unwrap();
    let health = client.get(format!("{}/services/collector/health", hec.url())).send().await.unwrap();
    assert_eq!(health.status(), 503);
    assert_eq!(health.json::<Value>().await.unwrap()["code"], json!(18));

    client.put(control_url("busy")).json(&json!({"busy": true})).send().await.unwrap();
    assert_eq!(send_event(&hec, CHANNEL).await.1["code"], json!(9));
    client.put(control_url("busy")).json(&json!({"busy": false})).send().await.unwrap();

    client.put(control_url("latency")).json(&json!({"latency_ms": 300})).send().await.unwrap();
    let started = Instant::now();
    assert_eq!(send_event(&hec, CHANNEL).await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    client.put(control_url("latency")).json(&json!({"latency_ms": 0})).send().await.unwrap();

    let disabled = client
        .put(control_url("token_state"))
        .json(&json!({"token": ACK_TOKEN, "disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), 200);
    assert_eq!(send_event(&hec, CHANNEL).await, (403, json!({"text": "Token disabled", "code": 1})));
    let missing =
        client.put(control_url("token_state")).json(&json!({"token": "nope", "disabled": true})).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    client.post(control_url("acks/lose_next")).json(&json!({"count": 3})).send().await.unwrap();
    let settings: Value = client.get(control_url("acks")).send().await.unwrap().json().await.unwrap();
    assert_eq!(settings["lose_next"], json!(3));
}
