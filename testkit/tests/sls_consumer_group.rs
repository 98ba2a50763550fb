//! Consumer groups over real HTTP: create/list/update/delete, heartbeats with
//! fair assignment and the transfer handshake, rebalancing when consumers
//! join, leave and time out, checkpoints, and shard splits.

pub mod sls_common;

use std::time::Duration;

use axum::http::Method;
use sls_common::{wait_until, SlsTestClient, PROJECT};
use testkit::sls::{Log, LogGroup, ShardStatus, SlsEmulator};

const LOGSTORE: &str = "events";

async fn emulator(shards: u32) -> (SlsEmulator, SlsTestClient) {
    let emulator = SlsEmulator::builder().logstore(PROJECT, LOGSTORE, shards).build().await.unwrap();
    let client = SlsTestClient::new(emulator.address(), None);
    (emulator, client)
}

#[tokio::test]
async fn groups_are_created_listed_updated_and_deleted_with_the_real_answers() {
    let (_emulator, client) = emulator(1).await;
    let created = client.create_group(LOGSTORE, "g", 40).await;
    assert_eq!((created.status, created.body.len()), (200, 0));
    let duplicate = client.create_group(LOGSTORE, "g", 40).await;
    assert_eq!((duplicate.status, duplicate.error_code()), (400, "ConsumerGroupAlreadyExist".to_string()));

    let listed = client.get(&format!("/logstores/{LOGSTORE}/consumergroups"), &[]).await.json();
    assert_eq!(listed, serde_json::json!([{ "name": "g", "timeout": 40, "order": false }]));

    let update = client
        .request(
            Method::PUT,
            &format!("/logstores/{LOGSTORE}/consumergroups/g"),
            &[],
            &[],
            br#"{"order": true, "timeout": 9}"#,
        )
        .await;
    assert_eq!(update.status, 200);
    let listed = client.get(&format!("/logstores/{LOGSTORE}/consumergroups"), &[]).await.json();
    assert_eq!(listed[0]["timeout"], 9);
    assert_eq!(listed[0]["order"], true);

    let bad_body = client
        .request(Method::POST, &format!("/logstores/{LOGSTORE}/consumergroups"), &[], &[], b"{\"timeout\": 1}")
        .await;
    assert_eq!(bad_body.error_code(), "JsonInfoInvalid");

    assert_eq!(
        client.request(Method::DELETE, &format!("/logstores/{LOGSTORE}/consumergroups/g"), &[], &[], b"").await.status,
        200
    );
    let again = client.request(Method::DELETE, &format!("/logstores/{LOGSTORE}/consumergroups/g"), &[], &[], b"").await;
    assert_eq!(again.error_code(), "ConsumerGroupNotExist");
    let empty = client.get(&format!("/logstores/{LOGSTORE}/consumergroups"), &[]).await;
    assert_eq!(empty.body, b"[]");
}

#[tokio::test]
async fn a_logstore_holds_at_most_thirty_groups() {
    let (_emulator, client) = emulator(1).await;
    for index in 0..30 {
        assert_eq!(client.create_group(LOGSTORE, &format!("g{index}"), 10).await.status, 200);
    }
    assert_eq!(client.create_group(LOGSTORE, "g30", 10).await.error_code(), "ConsumerGroupQuotaExceed");
}

#[tokio::test]
async fn get_checkpoint_lists_every_shard_with_empty_checkpoints_until_committed() {
    let (_emulator, client) = emulator(3).await;
    client.create_group(LOGSTORE, "g", 10).await;
    let all = client.get(&format!("/logstores/{LOGSTORE}/consumergroups/g"), &[]).await.json();
    assert_eq!(all.as_array().unwrap().len(), 3);
    assert_eq!(all[2], serde_json::json!({ "shard": 2, "checkpoint": "", "updateTime": 0, "consumer": "" }));

    let cursor = client.cursor(LOGSTORE, 1, "begin").await;
    assert_eq!(client.checkpoint(LOGSTORE, "g", "", 1, &cursor, "true").await.status, 200);
    let one = client.get(&format!("/logstores/{LOGSTORE}/consumergroups/g"), &[("shard", "1")]).await.json();
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["checkpoint"], cursor.as_str());
    assert!(one[0]["updateTime"].as_u64().unwrap() > 0);
    let missing = client.get(&format!("/logstores/{LOGSTORE}/consumergroups/g"), &[("shard", "7")]).await;
    assert_eq!(missing.body, b"[]");
}

#[tokio::test]
async fn checkpoints_without_force_must_come_from_the_holder() {
    let (emulator, client) = emulator(2).await;
    client.create_group(LOGSTORE, "g", 30).await;
    assert_eq!(client.heartbeat_shards(LOGSTORE, "g", "a", &[]).await, vec![0, 1]);
    let cursor = client.cursor(LOGSTORE, 0, "end").await;

    let stranger = client.checkpoint(LOGSTORE, "g", "stranger", 0, &cursor, "false").await;
    assert_eq!(stranger.error_code(), "ConsumerNotExist");
    client.heartbeat_shards(LOGSTORE, "g", "b", &[]).await;
    let not_holder = client.checkpoint(LOGSTORE, "g", "b", 0, &cursor, "false").await;
    assert_eq!(not_holder.error_code(), "ConsumerNotMatch");
    assert_eq!(client.checkpoint(LOGSTORE, "g", "a", 0, &cursor, "false").await.status, 200);
    assert_eq!(
        client.checkpoint(LOGSTORE, "g", "b", 0, &cursor, "True").await.status,
        200,
        "forceSuccess always stores"
    );
    assert_eq!(emulator.control().checkpoint(PROJECT, LOGSTORE, "g", 0).unwrap(), Some(cursor));
    assert_eq!(emulator.control().checkpoint(PROJECT, LOGSTORE, "g", 1).unwrap(), None);
}

#[tokio::test]
async fn shards_are_shared_fairly_and_move_only_after_release() {
    let (emulator, client) = emulator(4).await;
    client.create_group(LOGSTORE, "g", 30).await;
    assert_eq!(client.heartbeat_shards(LOGSTORE, "g", "a", &[]).await, vec![0, 1, 2, 3]);
    assert_eq!(client.heartbeat_shards(LOGSTORE, "g", "a", &[0, 1, 2, 3]).await, vec![0, 1, 2, 3]);

    // b joins: nothing yet, two of a's shards go into transfer.
    assert_eq!(client.heartbeat_shards(LOGSTORE, "g", "b", &[]).await, Vec::<u32>::new());
    let a_now = client.heartbeat_shards(LOGSTORE, "g", "a", &[0, 1, 2, 3]).await;
    assert_eq!(a_now.len(), 2);
    let moving: Vec<u32> = [0, 1, 2, 3].into_iter().filter(|shard| !a_now.contains(shard)).collect();
    let info = emulator.control().consumer_group(PROJECT, LOGSTORE, "g").unwrap();
    assert!(moving.iter().all(|shard| info.shards[*shard as usize].state == "transfer"), "{info:?}");
    // a still reports the moving shards: b must not get them.
    assert_eq!(client.heartbeat_shards(LOGSTORE, "g", "b", &[]).await, Vec::<u32>::new());
    assert_eq!(client.heartbeat_shards(LOGSTORE, "g", "a", &a_now).await, a_now);
    assert_eq!(client.heartbeat_shards(LOGSTORE, "g", "b", &[]).await, moving);

    // c joins: 4 shards over 3 consumers means 2/1/1.
    client.heartbeat_shards(LOGSTORE, "g", "c", &[]).await;
    let mut a_held = a_now.clone();
    let mut b_held = moving.clone();
    let mut c_held = Vec::new();
    for _ in 0..3 {
        a_held = client.heartbeat_shards(LOGSTORE, "g", "a", &a_held).await;
        b_held = client.heartbeat_shards(LOGSTORE, "g", "b", &b_held).await;
        c_held = client.heartbeat_shards(LOGSTORE, "g", "c", &c_held).await;
    }
    let mut counts = vec![a_held.len(), b_held.len(), c_held.len()];
    counts.sort();
    assert_eq!(counts, vec![1, 1, 2]);
    let mut all: Vec<u32> = a_held.iter().chain(&b_held).chain(&c_held).copied().collect();
    all.sort();
    assert_eq!(all, vec![0, 1, 2, 3], "every shard has exactly one holder");
}

#[tokio::test]
async fn a_consumer_that_stops_heartbeating_times_out_and_its_shards_move() {
    let (emulator, client) = emulator(2).await;
    client.create_group(LOGSTORE, "g", 1).await;
    client.heartbeat_shards(LOGSTORE, "g", "a", &[]).await;
    client.heartbeat_shards(LOGSTORE, "g", "b", &[]).await;
    let a_held = client.heartbeat_shards(LOGSTORE, "g", "a", &[0, 1]).await;
    let a_held = client.heartbeat_shards(LOGSTORE, "g", "a", &a_held).await;
    assert_eq!(a_held.len(), 1);
    let b_held = client.heartbeat_shards(LOGSTORE, "g", "b", &[]).await;
    assert_eq!(b_held.len(), 1);

    // Only b keeps heartbeating; after the 1 s group timeout it holds both.
    let control = emulator.control();
    let client_for_wait = client.clone();
    wait_until(Duration::from_secs(5), "b to inherit a's shard", || {
        let client = client_for_wait.clone();
        let b_held = b_held.clone();
        async move { client.heartbeat_shards(LOGSTORE, "g", "b", &b_held).await == vec![0, 1] }
    })
    .await;
    let consumers = control.consumers(PROJECT, LOGSTORE, "g").unwrap();
    assert_eq!(consumers.iter().map(|consumer| consumer.name.as_str()).collect::<Vec<_>>(), ["b"]);

    // The timed-out consumer still claiming shards is told so.
    let stale = client.heartbeat(LOGSTORE, "g", "a", &a_held).await;
    assert_eq!((stale.status, stale.error_code()), (400, "NotExistConsumerWithBody".to_string()));
}

#[tokio::test]
async fn a_split_parent_is_read_only_and_over_once_checkpointed_at_its_end() {
    let (emulator, client) = emulator(1).await;
    let control = emulator.control();
    let group = LogGroup::new("t", "s", &[], vec![Log::new(1, &[("k", "v")])]);
    control.append_log_groups(PROJECT, LOGSTORE, 0, &[group.clone(), group.clone()]).unwrap();
    client.create_group(LOGSTORE, "g", 30).await;
    assert_eq!(client.heartbeat_shards(LOGSTORE, "g", "a", &[]).await, vec![0]);

    let split = client
        .request(
            Method::POST,
            &format!("/logstores/{LOGSTORE}/shards/0"),
            &[("action", "split"), ("key", "40000000000000000000000000000000")],
            &[],
            b"",
        )
        .await;
    assert_eq!(split.status, 200, "{:?}", String::from_utf8_lossy(&split.body));
    let shards = control.shards(PROJECT, LOGSTORE).unwrap();
    assert_eq!(
        shards.iter().map(|shard| (shard.shard_id, shard.status)).collect::<Vec<_>>(),
        [(0, ShardStatus::Readonly), (1, ShardStatus::Readwrite), (2, ShardStatus::Readwrite)]
    );
    assert_eq!(shards[1].exclusive_end_key, "40000000000000000000000000000000");
    assert!(control.append_log_groups(PROJECT, LOGSTORE, 0, std::slice::from_ref(&group)).is_err());

    // Unordered group: the children are assigned at once, next to the parent.
    assert_eq!(client.heartbeat_shards(LOGSTORE, "g", "a", &[0]).await, vec![0, 1, 2]);

    // The end of a read-only shard: empty pull, cursor unchanged, end flag.
    let end = client.cursor(LOGSTORE, 0, "end").await;
    let at_end = client.pull(LOGSTORE, 0, &end, 1000, "lz4").await;
    assert_eq!(
        (at_end.header("x-log-count"), at_end.header("x-log-cursor"), at_end.header("x-log-end-of-cursor")),
        (Some("0"), Some(end.as_str()), Some("1"))
    );

    assert_eq!(client.checkpoint(LOGSTORE, "g", "a", 0, &end, "false").await.status, 200);
    assert_eq!(client.heartbeat_shards(LOGSTORE, "g", "a", &[0, 1, 2]).await, vec![1, 2], "an over shard is released");
    client.heartbeat_shards(LOGSTORE, "g", "b", &[]).await;
    let info = control.consumer_group(PROJECT, LOGSTORE, "g").unwrap();
    assert_eq!(info.shards[0].state, "over");
    assert!(info.shards[0].holder.is_none());
}
