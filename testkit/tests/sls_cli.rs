//! `pipe-testkit sls` as a separate process: flags, the single
//! `listening on http://ADDR` line, preloaded data, and a signed-only API
//! when credentials are given.

pub mod sls_common;

use std::process::Stdio;
use std::time::Duration;

use sls_common::{send_raw, SlsTestClient};
use testkit::sls::{Credential, SlsStats};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn the_subcommand_preloads_demo_data_and_prints_one_listening_line() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pipe-testkit"))
        .args([
            "sls",
            "--addr",
            "127.0.0.1:0",
            "--project",
            "test-project",
            "--logstore",
            "first",
            "--logstore",
            "second",
        ])
        .args(["--shards", "3", "--log-groups-per-shard", "7", "--logs-per-group", "4", "--seed", "9"])
        .args(["--access-key-id", "cli-id", "--access-key-secret", "cli-secret"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("pipe-testkit starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("a line within 30 s")
        .unwrap()
        .unwrap();
    let address = line.strip_prefix("listening on http://").unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let address: std::net::SocketAddr = address.parse().unwrap();

    let stats_request = "GET /_testkit/stats HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n";
    let stats: SlsStats =
        serde_json::from_slice(&send_raw(address, stats_request.as_bytes()).await.unwrap().body).unwrap();
    assert_eq!(stats.shards.len(), 6, "two logstores of three shards");

    let unsigned = SlsTestClient::new(address, None);
    assert_eq!(unsigned.get("/logstores/first/shards", &[]).await.status, 401);
    let signed = SlsTestClient::new(address, Some(Credential::new("cli-id", "cli-secret")));
    let begin = signed.cursor("second", 2, "begin").await;
    let pulled = signed.pull("second", 2, &begin, 1000, "lz4").await;
    assert_eq!(pulled.header("x-log-count"), Some("7"));

    child.kill().await.unwrap();
}
