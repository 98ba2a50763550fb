//! v1 signature verification over real HTTP: the emulator accepts requests
//! signed like the official SDKs and refuses wrong keys, wrong secrets, stale
//! dates and unsigned requests with the real error codes, when credentials
//! are configured; without credentials it accepts anything.

pub mod sls_common;

use std::time::{Duration, SystemTime};

use sls_common::{send_raw, SlsTestClient, ACCESS_KEY_ID, ACCESS_KEY_SECRET, PROJECT};
use testkit::sls::{Credential, SlsEmulator};

const LOGSTORE: &str = "secured";

async fn secured_emulator() -> SlsEmulator {
    SlsEmulator::builder()
        .credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET)
        .logstore(PROJECT, LOGSTORE, 1)
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn correctly_signed_requests_pass_including_bodies_and_encoded_queries() {
    let emulator = secured_emulator().await;
    let client = SlsTestClient::new(emulator.address(), Some(Credential::new(ACCESS_KEY_ID, ACCESS_KEY_SECRET)));
    let cursor = client.cursor(LOGSTORE, 0, "begin").await;
    assert!(cursor.ends_with('='), "the cursor has padding that must be percent-encoded on the wire: {cursor}");
    let pull = client.pull(LOGSTORE, 0, &cursor, 100, "lz4").await;
    assert_eq!(pull.status, 200, "{:?}", String::from_utf8_lossy(&pull.body));
    assert_eq!(client.create_group(LOGSTORE, "g", 30).await.status, 200);
    assert_eq!(client.heartbeat_shards(LOGSTORE, "g", "c1", &[]).await, vec![0]);
    let commit = client.checkpoint(LOGSTORE, "g", "c1", 0, &cursor, "True").await;
    assert_eq!(commit.status, 200, "{:?}", String::from_utf8_lossy(&commit.body));
}

#[tokio::test]
async fn a_wrong_secret_is_signature_not_match_and_a_wrong_key_is_unauthorized() {
    let emulator = secured_emulator().await;
    let wrong_secret = SlsTestClient::new(emulator.address(), Some(Credential::new(ACCESS_KEY_ID, "not-the-secret")));
    let response = wrong_secret.get(&format!("/logstores/{LOGSTORE}/shards"), &[]).await;
    assert_eq!((response.status, response.error_code()), (401, "SignatureNotMatch".to_string()));
    assert!(response.header("x-log-requestid").is_some());
    let message = response.json()["errorMessage"].as_str().unwrap().to_string();
    assert!(!message.contains(ACCESS_KEY_SECRET) && !message.contains("not-the-secret"), "{message}");

    let wrong_key = SlsTestClient::new(emulator.address(), Some(Credential::new("someone-else", ACCESS_KEY_SECRET)));
    let response = wrong_key.get(&format!("/logstores/{LOGSTORE}/shards"), &[]).await;
    assert_eq!((response.status, response.error_code()), (401, "Unauthorized".to_string()));

    let unsigned = SlsTestClient::new(emulator.address(), None);
    let response = unsigned.get(&format!("/logstores/{LOGSTORE}/shards"), &[]).await;
    assert_eq!((response.status, response.error_code()), (401, "Unauthorized".to_string()));
}

#[tokio::test]
async fn a_date_more_than_15_minutes_off_is_request_time_expired() {
    let emulator = secured_emulator().await;
    let mut client = SlsTestClient::new(emulator.address(), Some(Credential::new(ACCESS_KEY_ID, ACCESS_KEY_SECRET)));
    client.date = Some(SystemTime::now() - Duration::from_secs(16 * 60));
    let response = client.get(&format!("/logstores/{LOGSTORE}/shards"), &[]).await;
    assert_eq!((response.status, response.error_code()), (400, "RequestTimeExpired".to_string()));
    client.date = Some(SystemTime::now() - Duration::from_secs(10 * 60));
    assert_eq!(client.get(&format!("/logstores/{LOGSTORE}/shards"), &[]).await.status, 200);
}

#[tokio::test]
async fn a_tampered_body_fails_content_md5() {
    let emulator = secured_emulator().await;
    let request = format!(
        "POST /logstores/{LOGSTORE}/consumergroups HTTP/1.1\r\nhost: {PROJECT}.x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-md5: 00000000000000000000000000000000\r\ncontent-length: 2\r\n\r\n{{}}"
    );
    let response = send_raw(emulator.address(), request.as_bytes()).await.unwrap();
    assert_eq!(response.status, 400);
    assert_eq!(response.error_code(), "InvalidContentMD5");
}

#[tokio::test]
async fn without_configured_credentials_any_request_is_accepted() {
    let emulator = SlsEmulator::builder().logstore(PROJECT, LOGSTORE, 1).build().await.unwrap();
    let unsigned = SlsTestClient::new(emulator.address(), None);
    assert_eq!(unsigned.get(&format!("/logstores/{LOGSTORE}/shards"), &[]).await.status, 200);
    let any_key = SlsTestClient::new(emulator.address(), Some(Credential::new("whatever", "whatever")));
    assert_eq!(any_key.get(&format!("/logstores/{LOGSTORE}/shards"), &[]).await.status, 200);
}
