//! SLS fault injection, through the Rust control handle and through
//! `POST /_testkit/faults`: real error answers, corrupt bodies, latency and
//! dropped connections, each scoped to the requests it names.

pub mod sls_common;

use std::time::{Duration, Instant};

use sls_common::{send_raw, SlsTestClient, PROJECT};
use testkit::sls::{decode_log_group_list, lz4_block_decompress, DemoData, FaultEffect, SlsApi, SlsEmulator, SlsFault};

const LOGSTORE: &str = "faulty";

async fn emulator() -> (SlsEmulator, SlsTestClient) {
    let emulator = SlsEmulator::builder()
        .logstore(PROJECT, LOGSTORE, 2)
        .demo_data(PROJECT, LOGSTORE, DemoData::new(3, 4, 2))
        .build()
        .await
        .unwrap();
    let client = SlsTestClient::new(emulator.address(), None);
    (emulator, client)
}

#[tokio::test]
async fn quota_busy_and_internal_errors_answer_like_sls_then_stop() {
    let (emulator, client) = emulator().await;
    let control = emulator.control();
    let begin = client.cursor(LOGSTORE, 0, "begin").await;
    control.inject_fault(SlsFault::new(FaultEffect::read_quota_exceed()).on_api(SlsApi::PullLogs).times(1));
    control.inject_fault(SlsFault::new(FaultEffect::shard_read_quota_exceed()).on_api(SlsApi::PullLogs).times(1));
    control.inject_fault(SlsFault::new(FaultEffect::server_busy()).on_api(SlsApi::PullLogs).times(1));
    control.inject_fault(SlsFault::new(FaultEffect::internal_server_error()).on_api(SlsApi::PullLogs).times(1));

    let mut answers = Vec::new();
    for _ in 0..5 {
        let response = client.pull(LOGSTORE, 0, &begin, 1000, "lz4").await;
        assert!(response.header("x-log-requestid").is_some());
        answers.push((response.status, if response.status == 200 { String::new() } else { response.error_code() }));
    }
    assert_eq!(
        answers,
        [
            (403, "ReadQuotaExceed".to_string()),
            (403, "ShardReadQuotaExceed".to_string()),
            (503, "ServerBusy".to_string()),
            (500, "InternalServerError".to_string()),
            (200, String::new()),
        ]
    );
    let stats = control.stats();
    assert_eq!(stats.errors_with_code("ServerBusy"), 1);
    assert!(control.pending_faults().is_empty());
}

#[tokio::test]
async fn invalid_cursor_hits_only_the_named_shard() {
    let (emulator, client) = emulator().await;
    emulator.control().inject_fault(
        SlsFault::new(FaultEffect::InvalidCursor).on_api(SlsApi::PullLogs).on_logstore(LOGSTORE).on_shard(1).times(1),
    );
    let shard_0 = client.cursor(LOGSTORE, 0, "begin").await;
    let shard_1 = client.cursor(LOGSTORE, 1, "begin").await;
    assert_eq!(client.pull(LOGSTORE, 0, &shard_0, 10, "lz4").await.status, 200);
    let failed = client.pull(LOGSTORE, 1, &shard_1, 10, "lz4").await;
    assert_eq!((failed.status, failed.error_code()), (400, "InvalidCursor".to_string()));
    assert_eq!(client.pull(LOGSTORE, 1, &shard_1, 10, "lz4").await.status, 200);
}

#[tokio::test]
async fn corrupt_bodies_keep_valid_headers_but_do_not_decode() {
    let (emulator, client) = emulator().await;
    let control = emulator.control();
    let begin = client.cursor(LOGSTORE, 0, "begin").await;
    control.inject_fault(SlsFault::new(FaultEffect::CorruptLz4).times(1));
    let garbage_lz4 = client.pull(LOGSTORE, 0, &begin, 1000, "lz4").await;
    assert_eq!(garbage_lz4.status, 200);
    assert_eq!(garbage_lz4.header("x-log-count"), Some("4"));
    assert_eq!(garbage_lz4.header("x-log-compresstype"), Some("lz4"));
    let raw_size: usize = garbage_lz4.header("x-log-bodyrawsize").unwrap().parse().unwrap();
    assert!(raw_size > 0);
    assert!(lz4_block_decompress(&garbage_lz4.body, raw_size).is_err());

    control.inject_fault(SlsFault::new(FaultEffect::CorruptProtobuf).times(1));
    let garbage_protobuf = client.pull(LOGSTORE, 0, &begin, 1000, "lz4").await;
    let raw_size: usize = garbage_protobuf.header("x-log-bodyrawsize").unwrap().parse().unwrap();
    let raw = lz4_block_decompress(&garbage_protobuf.body, raw_size).expect("valid LZ4");
    assert!(decode_log_group_list(&raw).is_err());

    let healthy = client.pull(LOGSTORE, 0, &begin, 1000, "lz4").await;
    let raw_size: usize = healthy.header("x-log-bodyrawsize").unwrap().parse().unwrap();
    assert_eq!(
        decode_log_group_list(&lz4_block_decompress(&healthy.body, raw_size).unwrap()).unwrap().log_groups.len(),
        4
    );
}

#[tokio::test]
async fn latency_delays_only_the_scoped_api() {
    let (emulator, client) = emulator().await;
    emulator.control().inject_fault(
        SlsFault::new(FaultEffect::Latency(Duration::from_millis(300))).on_api(SlsApi::Heartbeat).times(1),
    );
    client.create_group(LOGSTORE, "g", 30).await;
    let started = Instant::now();
    client.heartbeat_shards(LOGSTORE, "g", "a", &[]).await;
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
    let started = Instant::now();
    client.heartbeat_shards(LOGSTORE, "g", "a", &[0, 1]).await;
    assert!(started.elapsed() < Duration::from_millis(300), "{:?}", started.elapsed());
}

#[tokio::test]
async fn dropped_connections_get_no_answer_and_the_generic_fault_plan_still_applies() {
    let (emulator, client) = emulator().await;
    let begin = client.cursor(LOGSTORE, 1, "begin").await;
    emulator
        .control()
        .inject_fault(SlsFault::new(FaultEffect::DropConnection).on_api(SlsApi::PullLogs).on_shard(1).times(1));
    let request = format!("GET /logstores/{LOGSTORE}/shards/1?type=log&cursor={}&count=10 HTTP/1.1\r\nhost: {PROJECT}.x\r\nconnection: close\r\n\r\n", begin.replace('=', "%3D"));
    assert!(send_raw(emulator.address(), request.as_bytes()).await.is_none());
    assert!(send_raw(emulator.address(), request.as_bytes()).await.is_some());

    emulator.server().faults().drop_next(1);
    assert!(send_raw(emulator.address(), request.as_bytes()).await.is_none());
    assert_eq!(client.pull(LOGSTORE, 1, &begin, 10, "lz4").await.status, 200);
}

#[tokio::test]
async fn faults_can_be_driven_over_http_by_another_process() {
    let (emulator, client) = emulator().await;
    let control_request = |method: &str, body: &str| {
        format!("{method} /_testkit/faults HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len())
    };
    let added = send_raw(
        emulator.address(),
        control_request("POST", r#"[{"fault":"server_busy","api":"heartbeat","times":1},{"fault":"error","status":403,"error_code":"WriteQuotaExceed","error_message":"Write QPS Exceed","api":"list_shards"}]"#).as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(added.status, 200);
    assert_eq!(added.json()["pending"], 2);
    let listed = send_raw(emulator.address(), control_request("GET", "").as_bytes()).await.unwrap().json();
    assert_eq!(listed[0]["fault"], "error", "a named error is listed in its general form");

    client.create_group(LOGSTORE, "g", 30).await;
    assert_eq!(client.heartbeat(LOGSTORE, "g", "a", &[]).await.error_code(), "ServerBusy");
    assert_eq!(client.get(&format!("/logstores/{LOGSTORE}/shards"), &[]).await.error_code(), "WriteQuotaExceed");
    assert_eq!(
        client.get(&format!("/logstores/{LOGSTORE}/shards"), &[]).await.error_code(),
        "WriteQuotaExceed",
        "no times: until cleared"
    );

    let cleared = send_raw(emulator.address(), control_request("DELETE", "").as_bytes()).await.unwrap();
    assert_eq!(cleared.status, 200);
    assert_eq!(client.get(&format!("/logstores/{LOGSTORE}/shards"), &[]).await.status, 200);

    let unknown =
        send_raw(emulator.address(), control_request("POST", r#"{"fault":"meteor"}"#).as_bytes()).await.unwrap();
    assert_eq!(unknown.status, 400);
    assert!(unknown.json()["error"].as_str().unwrap().contains("server_busy"));
}

#[tokio::test]
async fn the_stats_endpoint_reports_pulls_heartbeats_checkpoints_and_consumers() {
    let (emulator, client) = emulator().await;
    let begin = client.cursor(LOGSTORE, 0, "begin").await;
    client.pull(LOGSTORE, 0, &begin, 1000, "lz4").await;
    client.create_group(LOGSTORE, "g", 30).await;
    client.heartbeat_shards(LOGSTORE, "g", "a", &[]).await;
    let end = client.cursor(LOGSTORE, 0, "end").await;
    client.checkpoint(LOGSTORE, "g", "a", 0, &end, "false").await;

    let request = "GET /_testkit/stats HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n";
    let stats: testkit::sls::SlsStats =
        serde_json::from_slice(&send_raw(emulator.address(), request.as_bytes()).await.unwrap().body).unwrap();
    assert_eq!(stats.pulls.pulls, 1);
    assert_eq!(stats.shard(PROJECT, LOGSTORE, 0).log_groups, 4);
    assert_eq!(stats.heartbeats, 1);
    assert_eq!(stats.checkpoint_updates, 1);
    let group = stats.consumer_group(PROJECT, LOGSTORE, "g").unwrap();
    assert_eq!(group.consumers[0].name, "a");
    assert_eq!(group.consumers[0].held_shards, vec![0, 1]);
    assert!(group.consumers[0].last_heartbeat_age_ms < 10_000);
    assert_eq!(group.shards[0].checkpoint, end);
}
