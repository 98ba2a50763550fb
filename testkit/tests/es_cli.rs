//! `pipe-testkit es`: prints exactly `listening on http://ADDR`, honours
//! the distribution, version, auth and demo-document flags.

mod es_support;
// Re-exported so shared helpers this file does not call are not reported
// as unused in this test crate.
pub use es_support::*;

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts the binary and returns it with its URL.
async fn start(arguments: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pipe-testkit"))
        .arg("es")
        .args(arguments)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("pipe-testkit starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the emulator announces itself in time")
        .expect("stdout is readable")
        .expect("one line is printed");
    let url =
        line.strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}")).to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    (child, url)
}

#[tokio::test]
async fn the_es_subcommand_serves_an_authenticated_cluster_with_demo_documents() {
    let (_child, url) = start(&[
        "--addr",
        "127.0.0.1:0",
        "--version",
        "7.17.0",
        "--user",
        "elastic",
        "--password",
        "pw",
        "--demo-docs",
        "25",
        "--seed",
        "4",
        "--refresh-interval",
        "-1",
    ])
    .await;
    let denied = get(&url).await;
    assert_eq!(denied.status, 401);
    let root = send(client().get(&url).basic_auth("elastic", Some("pw"))).await;
    assert_eq!(root.body["version"]["number"], "7.17.0");
    let count = send(client().get(format!("{url}/logstash-*/_count")).basic_auth("elastic", Some("pw"))).await;
    assert_eq!(count.body["count"], 25);
}

#[tokio::test]
async fn the_es_subcommand_emulates_opensearch() {
    let (_child, url) = start(&["--distribution", "opensearch", "--version", "2.11.0"]).await;
    let root = get(&url).await;
    assert_eq!(root.body["version"]["distribution"], "opensearch");
    assert_eq!(root.body["version"]["number"], "2.11.0");
}
