//! PullLogs, GetCursor and ListShards over real HTTP: headers, cursors,
//! compression, count and end_cursor, errors, and request addressing.

pub mod sls_common;

use std::time::{Duration, UNIX_EPOCH};

use sls_common::{send_raw, SlsTestClient, PROJECT};
use testkit::sls::{
    decode_cursor, decode_log_group_list, encode_cursor, lz4_block_decompress, DemoData, Log, LogGroup, SlsEmulator,
};

const LOGSTORE: &str = "app-logs";

async fn emulator_with_demo(groups_per_shard: usize) -> SlsEmulator {
    SlsEmulator::builder()
        .logstore(PROJECT, LOGSTORE, 2)
        .demo_data(PROJECT, LOGSTORE, DemoData::new(11, groups_per_shard, 3).with_log_time(1_700_000_000))
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn list_shards_reports_hash_ranges_status_and_create_time() {
    let emulator = emulator_with_demo(1).await;
    let client = SlsTestClient::new(emulator.address(), None);
    let response = client.get(&format!("/logstores/{LOGSTORE}/shards"), &[]).await;
    assert_eq!(response.status, 200);
    let shards = response.json();
    assert_eq!(shards.as_array().unwrap().len(), 2);
    assert_eq!(shards[0]["shardID"], 0);
    assert_eq!(shards[0]["status"], "readwrite");
    assert_eq!(shards[0]["inclusiveBeginKey"], "00000000000000000000000000000000");
    assert_eq!(shards[1]["exclusiveEndKey"], "ffffffffffffffffffffffffffffffff");
    assert!(shards[0]["createTime"].as_u64().unwrap() > 1_600_000_000);
}

#[tokio::test]
async fn an_lz4_pull_has_the_real_headers_and_decodes_to_the_preloaded_groups() {
    let emulator = emulator_with_demo(5).await;
    let client = SlsTestClient::new(emulator.address(), None);
    let begin = client.cursor(LOGSTORE, 0, "begin").await;
    let end = client.cursor(LOGSTORE, 0, "end").await;
    assert_eq!(decode_cursor(&end).unwrap() - decode_cursor(&begin).unwrap(), 5);

    let response = client.pull(LOGSTORE, 0, &begin, 1000, "lz4").await;
    assert_eq!(response.status, 200);
    for name in [
        "x-log-cursor",
        "x-log-count",
        "x-log-bodyrawsize",
        "x-log-compresstype",
        "x-log-end-of-cursor",
        "x-log-requestid",
    ] {
        assert!(response.header(name).is_some(), "missing lowercase header {name}: {:?}", response.headers);
    }
    assert!(response.headers.iter().all(|(name, _)| name == &name.to_ascii_lowercase()), "{:?}", response.headers);
    assert!(response.header("content-encoding").is_none());
    assert_eq!(response.header("x-log-compresstype"), Some("lz4"));
    assert_eq!(response.header("x-log-count"), Some("5"));
    assert_eq!(response.header("x-log-cursor"), Some(end.as_str()));
    assert_eq!(response.header("x-log-end-of-cursor"), Some("1"));
    let request_id = response.header("x-log-requestid").unwrap();
    assert!(
        request_id.len() == 24 && request_id.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()),
        "{request_id}"
    );

    let raw_size: usize = response.header("x-log-bodyrawsize").unwrap().parse().unwrap();
    let raw = lz4_block_decompress(&response.body, raw_size).unwrap();
    let list = decode_log_group_list(&raw).unwrap();
    let (expected, _) = testkit::sls::demo_log_groups(
        &DemoData::new(11, 5, 3).with_log_time(1_700_000_000),
        LOGSTORE,
        0,
        1_700_000_000,
    );
    assert_eq!(list.log_groups, expected);

    let stats = emulator.control().stats();
    assert_eq!(stats.shard(PROJECT, LOGSTORE, 0).pulls, 1);
    assert_eq!(stats.shard(PROJECT, LOGSTORE, 0).log_groups, 5);
}

#[tokio::test]
async fn without_lz4_the_body_is_plain_protobuf_without_compresstype() {
    let emulator = emulator_with_demo(3).await;
    let client = SlsTestClient::new(emulator.address(), None);
    let begin = client.cursor(LOGSTORE, 1, "begin").await;
    let response = client.pull(LOGSTORE, 1, &begin, 1000, "").await;
    assert_eq!(response.status, 200);
    assert!(response.header("x-log-compresstype").is_none());
    assert_eq!(response.header("x-log-bodyrawsize").unwrap(), response.body.len().to_string());
    assert_eq!(decode_log_group_list(&response.body).unwrap().log_groups.len(), 3);
}

#[tokio::test]
async fn a_pull_at_the_end_is_empty_and_keeps_the_cursor() {
    let emulator = emulator_with_demo(2).await;
    let client = SlsTestClient::new(emulator.address(), None);
    let end = client.cursor(LOGSTORE, 0, "end").await;
    let response = client.pull(LOGSTORE, 0, &end, 1000, "lz4").await;
    assert_eq!(response.status, 200);
    assert!(response.body.is_empty());
    assert_eq!(response.header("x-log-count"), Some("0"));
    assert_eq!(response.header("x-log-bodyrawsize"), Some("0"));
    assert_eq!(response.header("x-log-cursor"), Some(end.as_str()));
    assert_eq!(response.header("x-log-end-of-cursor"), Some("1"));
}

#[tokio::test]
async fn count_is_capped_at_1000_and_cursors_advance_one_per_group() {
    let emulator = SlsEmulator::builder().logstore(PROJECT, LOGSTORE, 1).build().await.unwrap();
    let group = LogGroup::new("t", "s", &[], vec![Log::new(1, &[("k", "v")])]);
    emulator.control().append_log_groups(PROJECT, LOGSTORE, 0, &vec![group; 1500]).unwrap();
    let client = SlsTestClient::new(emulator.address(), None);
    let begin = client.cursor(LOGSTORE, 0, "begin").await;

    let first = client.pull(LOGSTORE, 0, &begin, 5000, "lz4").await;
    assert_eq!(first.header("x-log-count"), Some("1000"));
    assert_eq!(first.header("x-log-end-of-cursor"), Some("0"));
    let next = first.header("x-log-cursor").unwrap().to_string();
    assert_eq!(decode_cursor(&next).unwrap(), decode_cursor(&begin).unwrap() + 1000);

    let small = client.pull(LOGSTORE, 0, &next, 7, "lz4").await;
    assert_eq!(small.header("x-log-count"), Some("7"));

    let rest = client.pull(LOGSTORE, 0, &next, 1000, "lz4").await;
    assert_eq!(rest.header("x-log-count"), Some("500"));
    assert_eq!(rest.header("x-log-end-of-cursor"), Some("1"));

    let zero = client.pull(LOGSTORE, 0, &begin, 0, "lz4").await;
    assert_eq!((zero.status, zero.error_code()), (400, "ParameterInvalid".to_string()));
}

#[tokio::test]
async fn end_cursor_stops_the_read_before_it() {
    let emulator = emulator_with_demo(10).await;
    let client = SlsTestClient::new(emulator.address(), None);
    let begin = client.cursor(LOGSTORE, 0, "begin").await;
    let stop = encode_cursor(decode_cursor(&begin).unwrap() + 4);
    let response = client
        .request(
            axum::http::Method::GET,
            &format!("/logstores/{LOGSTORE}/shards/0"),
            &[("type", "logs"), ("cursor", &begin), ("count", "1000"), ("end_cursor", &stop)],
            &[("accept-encoding", "lz4")],
            b"",
        )
        .await;
    assert_eq!(response.header("x-log-count"), Some("4"));
    assert_eq!(response.header("x-log-cursor"), Some(stop.as_str()));
}

#[tokio::test]
async fn bad_cursors_get_the_real_error_codes() {
    let emulator = emulator_with_demo(2).await;
    let client = SlsTestClient::new(emulator.address(), None);
    let mangled = client.pull(LOGSTORE, 0, "not-a-cursor!", 10, "lz4").await;
    assert_eq!((mangled.status, mangled.error_code()), (400, "ParameterInvalid".to_string()));
    let end = client.cursor(LOGSTORE, 0, "end").await;
    let beyond = encode_cursor(decode_cursor(&end).unwrap() + 1);
    let out_of_range = client.pull(LOGSTORE, 0, &beyond, 10, "lz4").await;
    assert_eq!((out_of_range.status, out_of_range.error_code()), (400, "InvalidCursor".to_string()));
    assert!(out_of_range.header("x-log-requestid").is_some());
    let no_shard = client.pull(LOGSTORE, 9, &end, 10, "lz4").await;
    assert_eq!(no_shard.error_code(), "ShardNotExist");
    let no_logstore = client.get("/logstores/missing/shards", &[]).await;
    assert_eq!((no_logstore.status, no_logstore.error_code()), (404, "LogStoreNotExist".to_string()));
    let mut other_project = client.clone();
    other_project.project = "nope".to_string();
    let no_project = other_project.get(&format!("/logstores/{LOGSTORE}/shards"), &[]).await;
    assert_eq!((no_project.status, no_project.error_code()), (404, "ProjectNotExist".to_string()));
}

#[tokio::test]
async fn get_cursor_by_time_and_cursor_time_use_server_receive_times() {
    let emulator = SlsEmulator::builder().logstore(PROJECT, LOGSTORE, 1).build().await.unwrap();
    let control = emulator.control();
    let group = LogGroup::new("t", "s", &[], vec![Log::new(1, &[])]);
    for seconds in [1_000, 2_000, 3_000] {
        control
            .append_log_groups_received_at(
                PROJECT,
                LOGSTORE,
                0,
                std::slice::from_ref(&group),
                UNIX_EPOCH + Duration::from_secs(seconds),
            )
            .unwrap();
    }
    let client = SlsTestClient::new(emulator.address(), None);
    let begin = decode_cursor(&client.cursor(LOGSTORE, 0, "begin").await).unwrap();
    let at = decode_cursor(&client.cursor(LOGSTORE, 0, "1500").await).unwrap();
    assert_eq!(at - begin, 1);
    let after_everything = decode_cursor(&client.cursor(LOGSTORE, 0, "9999").await).unwrap();
    assert_eq!(after_everything - begin, 3);
    let response = client
        .get(
            &format!("/logstores/{LOGSTORE}/shards/0"),
            &[("type", "cursor_time"), ("cursor", &encode_cursor(begin + 2))],
        )
        .await;
    assert_eq!(response.json()["cursor_time"], 3_000);
}

#[tokio::test]
async fn absolute_form_targets_and_host_ports_are_accepted() {
    let emulator = emulator_with_demo(1).await;
    let request = format!(
        "GET http://{PROJECT}.sls.test:8080/logstores/{LOGSTORE}/shards HTTP/1.1\r\nhost: {PROJECT}.sls.test:8080\r\nconnection: close\r\n\r\n"
    );
    let response = send_raw(emulator.address(), request.as_bytes()).await.unwrap();
    assert_eq!(response.status, 200, "{:?}", String::from_utf8_lossy(&response.body));
    assert!(response.header("x-log-requestid").is_some());
}

#[tokio::test]
async fn the_demo_preload_is_cached_compressed_and_served_identically() {
    let emulator = emulator_with_demo(20).await;
    assert!(emulator.control().stats().pull_cache_bytes > 0, "the preload warms the cache");
    let client = SlsTestClient::new(emulator.address(), None);
    let begin = client.cursor(LOGSTORE, 0, "begin").await;
    let first = client.pull(LOGSTORE, 0, &begin, 1000, "lz4").await;
    let second = client.pull(LOGSTORE, 0, &begin, 1000, "lz4").await;
    assert_eq!(first.body, second.body);
    let raw_size: usize = first.header("x-log-bodyrawsize").unwrap().parse().unwrap();
    assert_eq!(
        decode_log_group_list(&lz4_block_decompress(&first.body, raw_size).unwrap()).unwrap().log_groups.len(),
        20
    );
}
