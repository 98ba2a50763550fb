//! The HEC emulator over real HTTP: routes, authentication codes, channels,
//! envelope validation with partial failure, gzip, raw, and the read-side
//! control endpoints.

use std::io::Write;

use serde_json::{json, Value};
use testkit::hec::{HecEmulator, HecEndpoint, HecRecordedEvent, HecToken};

const TOKEN: &str = "11111111-aaaa-bbbb-cccc-000000000001";
const ACK_TOKEN: &str = "11111111-aaaa-bbbb-cccc-000000000002";
const DISABLED_TOKEN: &str = "11111111-aaaa-bbbb-cccc-000000000003";
const QUERY_TOKEN: &str = "11111111-aaaa-bbbb-cccc-000000000004";
const RESTRICTED_TOKEN: &str = "11111111-aaaa-bbbb-cccc-000000000005";
const CHANNEL: &str = "0af1c3d2-1234-4abc-8def-00112233aabb";

async fn emulator() -> HecEmulator {
    HecEmulator::builder()
        .token(HecToken::new(TOKEN).name("plain"))
        .token(HecToken::new(ACK_TOKEN).name("acked").use_ack(true))
        .token(HecToken::new(DISABLED_TOKEN).name("off").disabled(true))
        .token(HecToken::new(QUERY_TOKEN).name("query").allow_query_string_auth(true))
        .token(
            HecToken::new(RESTRICTED_TOKEN)
                .name("restricted")
                .allowed_indexes(["app", "audit"])
                .default_index("app")
                .default_host("token-host")
                .default_sourcetype("pipe:json"),
        )
        .max_content_length(64 * 1024)
        .start()
        .await
        .expect("the emulator starts")
}

struct Answer {
    status: u16,
    body: Value,
    headers: reqwest::header::HeaderMap,
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("the emulator answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("the body is readable");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer { status, body, headers }
}

fn post_event(hec: &HecEmulator, token: &str, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(format!("{}/services/collector/event", hec.url()))
        .header("authorization", format!("Splunk {token}"))
        .body(body)
}

fn assert_code(answer: &Answer, status: u16, code: u64) {
    assert_eq!(answer.status, status, "{:?}", answer.body);
    assert_eq!(answer.body["code"], json!(code), "{:?}", answer.body);
}

#[tokio::test]
async fn every_json_endpoint_accepts_an_event() {
    let hec = emulator().await;
    for path in ["/services/collector", "/services/collector/event", "/services/collector/event/1.0"] {
        let answer = send(
            reqwest::Client::new()
                .post(format!("{}{path}", hec.url()))
                .header("authorization", format!("Splunk {TOKEN}"))
                .body(r#"{"event":"hello"}"#),
        )
        .await;
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(answer.body, json!({"text": "Success", "code": 0}));
    }
    assert_eq!(hec.control().events().len(), 3);
}

#[tokio::test]
async fn unknown_paths_wrong_methods_and_options() {
    let hec = emulator().await;
    let client = reqwest::Client::new();
    let missing = send(client.post(format!("{}/services/collector/nope", hec.url()))).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body, json!({"text": "The requested URL was not found on this server.", "code": 404}));
    let wrong_method = send(client.get(format!("{}/services/collector/event", hec.url()))).await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.body["code"], json!(405));
    let options =
        send(client.request(reqwest::Method::OPTIONS, format!("{}/services/collector/event", hec.url()))).await;
    assert_eq!(options.status, 200);
    assert_eq!(options.headers["allow"], "POST");
    let options =
        send(client.request(reqwest::Method::OPTIONS, format!("{}/services/collector/health", hec.url()))).await;
    assert_eq!(options.headers["allow"], "GET");
}

#[tokio::test]
async fn health_ignores_tokens() {
    let hec = emulator().await;
    for path in ["/services/collector/health", "/services/collector/health/1.0"] {
        let anonymous = send(reqwest::Client::new().get(format!("{}{path}", hec.url()))).await;
        assert_eq!(anonymous.body, json!({"text": "HEC is healthy", "code": 17}));
        let bogus =
            send(reqwest::Client::new().get(format!("{}{path}", hec.url())).header("authorization", "Splunk bogus"))
                .await;
        assert_code(&bogus, 200, 17);
    }
}

#[tokio::test]
async fn authentication_error_codes() {
    let hec = emulator().await;
    let client = reqwest::Client::new();
    let url = format!("{}/services/collector/event", hec.url());
    let body = r#"{"event":"x"}"#;

    assert_code(&send(client.post(&url).body(body)).await, 401, 2);
    assert_code(&send(client.post(&url).header("authorization", TOKEN).body(body)).await, 401, 3);
    assert_code(&send(client.post(&url).bearer_auth(TOKEN).body(body)).await, 401, 3);
    assert_code(&send(post_event(&hec, "22222222-0000-0000-0000-000000000000", body)).await, 403, 4);
    assert_code(&send(post_event(&hec, DISABLED_TOKEN, body)).await, 403, 1);
    let basic = send(client.post(&url).basic_auth("anyone", Some(TOKEN)).body(body)).await;
    assert_code(&basic, 200, 0);

    // Query-string auth: an unknown token is 403/4 before the query-auth check,
    // a valid token without allowQueryStringAuth is 400/16.
    let unknown = send(client.post(format!("{url}?token=33333333-0000-0000-0000-000000000000")).body(body)).await;
    assert_code(&unknown, 403, 4);
    assert_code(&send(client.post(format!("{url}?token={TOKEN}")).body(body)).await, 400, 16);
    assert_code(&send(client.post(format!("{url}?token={QUERY_TOKEN}")).body(body)).await, 200, 0);

    let events = hec.control().events();
    assert_eq!(events.len(), 2, "only the Basic and allowed query-string requests land");
    assert_eq!(events[1].token_name, "query");
    let stats = hec.control().stats();
    assert_eq!(stats.rejected_by_code.get(&4), Some(&2));
    assert_eq!(stats.rejected_by_http_status.get(&401), Some(&3));
}

#[tokio::test]
async fn index_allow_list_and_token_defaults() {
    let hec = emulator().await;
    let accepted = send(post_event(&hec, RESTRICTED_TOKEN, r#"{"event":"a"}{"event":"b","index":"audit"}"#)).await;
    assert_code(&accepted, 200, 0);
    let events = hec.control().events();
    assert_eq!(events[0].index, "app");
    assert_eq!(events[0].host, "token-host");
    assert_eq!(events[0].sourcetype, "pipe:json");
    assert_eq!(events[0].source, "http:restricted");
    assert_eq!(events[1].index, "audit");

    let refused = send(post_event(&hec, RESTRICTED_TOKEN, r#"{"event":"c"}{"event":"d","index":"main"}"#)).await;
    assert_code(&refused, 400, 7);
    assert_eq!(refused.body["invalid-event-number"], json!(1));
    assert_eq!(hec.control().events().len(), 3, "the envelope before the bad index is kept");
}

#[tokio::test]
async fn defaults_without_token_settings_use_main_httpevent_and_the_server_host() {
    let hec = emulator().await;
    send(post_event(&hec, TOKEN, r#"{"event":{"message":"m"},"fields":{"env":"prod"}}"#)).await;
    let event = &hec.control().events()[0];
    assert_eq!(event.index, "main");
    assert_eq!(event.sourcetype, "httpevent");
    assert_eq!(event.source, "http:plain");
    assert_eq!(event.host, hec.address().to_string());
    assert_eq!(event.event, json!({"message": "m"}));
    assert_eq!(event.fields.as_ref().unwrap()["env"], json!("prod"));
    assert_eq!(event.endpoint, HecEndpoint::Event);
    assert_eq!(event.request_id, 1);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - event.time).abs() < 60.0, "receipt time is used when time is absent");
}

#[tokio::test]
async fn partial_failure_keeps_the_prefix_and_names_the_envelope() {
    let hec = emulator().await;
    let body = concat!(
        r#"{"event":"zero","time":1700000000.123,"host":"h0"}"#,
        "\n",
        r#"{"event":"one"}"#,
        r#"{"event":""}"#,
        r#"{"event":"three"}"#
    );
    let answer = send(post_event(&hec, TOKEN, body)).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body, json!({"text": "Event field cannot be blank", "code": 13, "invalid-event-number": 2}));
    let events = hec.control().events();
    let texts: Vec<&Value> = events.iter().map(|event| &event.event).collect();
    assert_eq!(texts, vec![&json!("zero"), &json!("one")]);
    assert_eq!(events[0].time, 1_700_000_000.123);
    assert_eq!(events[0].host, "h0");
    assert_ne!(events[1].host, "h0", "metadata does not carry over");
    assert_ne!(events[1].time, events[0].time);
    let stats = hec.control().stats();
    assert_eq!((stats.accepted_events, stats.rejected_requests, stats.accepted_requests), (2, 1, 0));
}

#[tokio::test]
async fn each_envelope_error_code() {
    let hec = emulator().await;
    let cases = [
        ("", 5, None),
        ("   \n", 5, None),
        (r#"{"event":"ok"}{"time":5}"#, 12, Some(1)),
        (r#"{"event":" "}"#, 13, Some(0)),
        (r#"{"event":null}"#, 6, Some(0)),
        (r#"{"event":"ok"}{"event":"x","time":"yesterday"}"#, 6, Some(1)),
        (r#"{"event":"x","time":-3}"#, 6, Some(0)),
        (r#"{"event":"ok"}{"event":"ok"}not json"#, 6, Some(2)),
        (r#"[{"event":"x"}]"#, 6, Some(0)),
        (r#"{"event":"x","fields":{"nested":{"a":1}}}"#, 15, Some(0)),
    ];
    for (body, code, event_number) in cases {
        let answer = send(post_event(&hec, TOKEN, body)).await;
        assert_code(&answer, 400, code);
        match event_number {
            Some(number) => assert_eq!(answer.body["invalid-event-number"], json!(number), "{body}"),
            None => assert!(answer.body.get("invalid-event-number").is_none(), "{body}"),
        }
    }
}

#[tokio::test]
async fn time_magnitudes_over_http() {
    let hec = emulator().await;
    let body = r#"{"event":"s","time":1700000000.5}{"event":"ms","time":1700000000500}{"event":"ns","time":1700000000500000000}{"event":"str","time":"1700000000.5"}"#;
    assert_code(&send(post_event(&hec, TOKEN, body)).await, 200, 0);
    let times: Vec<f64> = hec.control().events().iter().map(|event| event.time).collect();
    assert_eq!(times, vec![1_700_000_000.5; 4]);
}

#[tokio::test]
async fn gzip_bodies_and_unsupported_encodings() {
    let hec = emulator().await;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(br#"{"event":"zipped"} {"event":"again"}"#).unwrap();
    let compressed = encoder.finish().unwrap();
    let answer = send(post_event(&hec, TOKEN, compressed).header("content-encoding", "gzip")).await;
    assert_code(&answer, 200, 0);
    assert_eq!(hec.control().events().len(), 2);

    let deflate = send(post_event(&hec, TOKEN, r#"{"event":"x"}"#).header("content-encoding", "deflate")).await;
    assert_eq!(deflate.status, 415);
    assert!(deflate.headers["content-type"].to_str().unwrap().starts_with("text/html"));

    let corrupt = send(post_event(&hec, TOKEN, "not gzip").header("content-encoding", "gzip")).await;
    assert_code(&corrupt, 400, 6);
}

#[tokio::test]
async fn oversized_bodies_are_413_sent_or_decompressed() {
    let hec = emulator().await;
    let big_event = format!(r#"{{"event":"{}"}}"#, "a".repeat(70 * 1024));
    assert_eq!(send(post_event(&hec, TOKEN, big_event.clone())).await.status, 413);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(big_event.as_bytes()).unwrap();
    let compressed = encoder.finish().unwrap();
    assert!(compressed.len() < 64 * 1024);
    let answer = send(post_event(&hec, TOKEN, compressed).header("content-encoding", "gzip")).await;
    assert_eq!(answer.status, 413);
    assert!(hec.control().events().is_empty());
}

#[tokio::test]
async fn channels_are_required_with_ack_and_must_be_guids() {
    let hec = emulator().await;
    let body = r#"{"event":"x"}"#;
    assert_code(&send(post_event(&hec, ACK_TOKEN, body)).await, 400, 10);
    let invalid = send(post_event(&hec, ACK_TOKEN, body).header("x-splunk-request-channel", "not-a-guid")).await;
    assert_code(&invalid, 400, 11);
    let by_query = send(
        reqwest::Client::new()
            .post(format!("{}/services/collector/event?channel={CHANNEL}", hec.url()))
            .header("authorization", format!("Splunk {ACK_TOKEN}"))
            .body(body),
    )
    .await;
    assert_eq!(by_query.body, json!({"text": "Success", "code": 0, "ackId": 0}));
    let upper = CHANNEL.to_uppercase();
    let by_header = send(post_event(&hec, ACK_TOKEN, body).header("x-splunk-request-channel", upper.as_str())).await;
    assert_eq!(by_header.body["ackId"], json!(1), "channels are case-insensitive");
    let plain_with_channel = send(post_event(&hec, TOKEN, body).header("x-splunk-request-channel", CHANNEL)).await;
    assert_eq!(plain_with_channel.body, json!({"text": "Success", "code": 0}), "no ackId without useACK");
    let events = hec.control().events();
    assert_eq!(events[1].channel.as_deref(), Some(upper.as_str()));
    assert_eq!(events[1].ack_id, Some(1));
    assert_eq!(events[2].ack_id, None);
}

#[tokio::test]
async fn raw_endpoint_breaks_lines_and_takes_metadata_from_the_query() {
    let hec = emulator().await;
    let client = reqwest::Client::new();
    let url = format!(
        "{}/services/collector/raw?sourcetype=syslog&source=app.log&host=web-1&index=audit&time=1700000000",
        hec.url()
    );
    let answer = send(
        client
            .post(&url)
            .header("authorization", format!("Splunk {RESTRICTED_TOKEN}"))
            .body("line one\r\nline two\n\n"),
    )
    .await;
    assert_code(&answer, 200, 0);
    let events: Vec<HecRecordedEvent> = hec.control().events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].event, json!("line two"));
    assert_eq!(
        (events[0].sourcetype.as_str(), events[0].source.as_str(), events[0].host.as_str(), events[0].index.as_str()),
        ("syslog", "app.log", "web-1", "audit")
    );
    assert_eq!(events[0].time, 1_700_000_000.0);
    assert_eq!(events[0].endpoint, HecEndpoint::Raw);
    assert!(events[0].fields.is_none());

    let raw = format!("{}/services/collector/raw/1.0", hec.url());
    let forbidden = send(
        client
            .post(format!("{raw}?index=main"))
            .header("authorization", format!("Splunk {RESTRICTED_TOKEN}"))
            .body("x"),
    )
    .await;
    assert_code(&forbidden, 400, 7);
    let bad_time =
        send(client.post(format!("{raw}?time=-1")).header("authorization", format!("Splunk {TOKEN}")).body("x")).await;
    assert_code(&bad_time, 400, 6);
    let empty = send(client.post(&raw).header("authorization", format!("Splunk {TOKEN}")).body("\n")).await;
    assert_code(&empty, 400, 5);
    let no_channel_needed = send(client.post(&raw).header("authorization", format!("Splunk {TOKEN}")).body("x")).await;
    assert_code(&no_channel_needed, 200, 0);
    let acked_without_channel =
        send(client.post(&raw).header("authorization", format!("Splunk {ACK_TOKEN}")).body("x")).await;
    assert_code(&acked_without_channel, 400, 10);
}

#[tokio::test]
async fn raw_can_require_a_channel_like_older_splunk() {
    let hec = HecEmulator::builder().token(HecToken::new(TOKEN)).raw_requires_channel(true).start().await.unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/services/collector/raw", hec.url());
    let without = send(client.post(&url).header("authorization", format!("Splunk {TOKEN}")).body("x")).await;
    assert_code(&without, 400, 10);
    let with = send(
        client
            .post(&url)
            .header("authorization", format!("Splunk {TOKEN}"))
            .header("x-splunk-request-channel", CHANNEL)
            .body("x"),
    )
    .await;
    assert_code(&with, 200, 0);
}

#[tokio::test]
async fn control_endpoints_report_events_and_stats() {
    let hec = emulator().await;
    send(post_event(&hec, TOKEN, r#"{"event":"a","index":"one"}{"event":"b","index":"one"}{"event":"c"}"#)).await;
    send(post_event(&hec, TOKEN, r#"{"event":""}"#)).await;
    let client = reqwest::Client::new();
    let events: Vec<HecRecordedEvent> =
        client.get(format!("{}/_testkit/events", hec.url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(events, hec.control().events());
    assert_eq!(events.len(), 3);
    let stats: Value = client.get(format!("{}/_testkit/stats", hec.url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["requests"], json!(2));
    assert_eq!(stats["accepted_events"], json!(3));
    assert_eq!(stats["rejected_requests"], json!(1));
    assert_eq!(stats["events_by_index"], json!({"main": 1, "one": 2}));
    assert_eq!(stats["rejected_by_code"], json!({"13": 1}));
    assert!(stats["acks"]["pending"].is_number());

    let reset = client.post(format!("{}/_testkit/reset", hec.url())).send().await.unwrap();
    assert_eq!(reset.status(), 200);
    assert!(hec.control().events().is_empty());
    assert_eq!(hec.control().stats().requests, 0);
    let unknown = client.get(format!("{}/_testkit/nothing", hec.url())).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn wait_for_events_returns_once_enough_arrived() {
    let hec = emulator().await;
    let control = hec.control().clone();
    let waiter = tokio::spawn(async move { control.wait_for_events(2, std::time::Duration::from_secs(10)).await });
    send(post_event(&hec, TOKEN, r#"{"event":"a"}{"event":"b"}"#)).await;
    let events = waiter.await.unwrap().expect("two events arrive");
    assert_eq!(events.len(), 2);
    let timed_out = hec.control().wait_for_events(5, std::time::Duration::from_millis(50)).await.unwrap_err();
    assert_eq!((timed_out.wanted, timed_out.received), (5, 2));
}

#[tokio::test]
async fn the_cli_prints_one_line_and_serves() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pipe-testkit"))
        .args([
            "hec",
            "--addr",
            "127.0.0.1:0",
            "--token",
            TOKEN,
            "--ack",
            "--index-allow",
            "app",
            "--default-index",
            "app",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("the binary prints in time")
        .unwrap()
        .expect("one line");
    let url = line.strip_prefix("listening on ").expect("the documented line").to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    let answer = send(
        reqwest::Client::new()
            .post(format!("{url}/services/collector/event"))
            .header("authorization", format!("Splunk {TOKEN}"))
            .header("x-splunk-request-channel", CHANNEL)
            .body(r#"{"event":"from the cli"}"#),
    )
    .await;
    assert_eq!(answer.body, json!({"text": "Success", "code": 0, "ackId": 0}));
    let events: Vec<HecRecordedEvent> =
        reqwest::get(format!("{url}/_testkit/events")).await.unwrap().json().await.unwrap();
    assert_eq!(events[0].index, "app");
    child.kill().await.unwrap();
}
