//! Fidelity: the official aliyun-log-python-sdk (pinned in
//! `testkit/python/requirements.txt`) runs its ConsumerWorker against the
//! emulator, with signatures verified, lz4 pulls, a rebalance between two
//! consumers and checkpoints, and must read every preloaded log exactly once.
//!
//! The SDK must be installed (`python3 -m pip install -r
//! testkit/python/requirements.txt`); without it this test fails, never
//! passes silently. `PYTHON` overrides the interpreter.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use testkit::sls::{demo_log_groups, CursorPosition, DemoData, SlsEmulator};

const PROJECT: &str = "fidelity-project";
const LOGSTORE: &str = "fidelity-logstore";
const GROUP: &str = "fidelity-group";
const ACCESS_KEY_ID: &str = "fidelity-access-key-id";
const ACCESS_KEY_SECRET: &str = "fidelity-access-key-secret";
const SHARDS: u32 = 4;
const LOG_TIME: u32 = 1_700_000_000;
const INSTALL_HINT: &str = "python3 -m pip install -r testkit/python/requirements.txt";

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One log as the script dumps it, in a form both sides can build.
fn log_row(
    shard: u32,
    topic: &str,
    source: &str,
    tags: &[(String, String)],
    time: u32,
    time_ns: u32,
    contents: &[(String, String)],
) -> serde_json::Value {
    serde_json::json!({
        "shard": shard,
        "topic": topic,
        "source": source,
        "tags": tags.iter().map(|(key, value)| vec![key.clone(), value.clone()]).collect::<Vec<_>>(),
        "time": time,
        "time_ns": time_ns,
        "contents": contents.iter().map(|(key, value)| vec![key.clone(), value.clone()]).collect::<Vec<_>>(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_consumer_group_reads_every_log_exactly_once() {
    let installed = tokio::process::Command::new(python())
        .args(["-c", "import aliyun.log.consumer"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    assert!(
        matches!(installed, Ok(status) if status.success()),
        "the official SLS Python SDK is not importable with {}; install it with: {INSTALL_HINT}",
        python()
    );

    let demo = DemoData::new(2024, 30, 5).with_log_time(LOG_TIME);
    let emulator = SlsEmulator::builder()
        .credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET)
        .logstore(PROJECT, LOGSTORE, SHARDS)
        .demo_data(PROJECT, LOGSTORE, demo)
        .build()
        .await
        .unwrap();

    let mut expected: BTreeMap<u32, Vec<serde_json::Value>> = BTreeMap::new();
    for shard in 0..SHARDS {
        let (groups, _) = demo_log_groups(&demo, LOGSTORE, shard, LOG_TIME);
        let rows = expected.entry(shard).or_default();
        for group in &groups {
            let tags: Vec<(String, String)> =
                group.log_tags.iter().map(|tag| (tag.key.clone(), tag.value.clone())).collect();
            for log in &group.logs {
                let contents: Vec<(String, String)> =
                    log.contents.iter().map(|content| (content.key.clone(), content.value.clone())).collect();
                rows.push(log_row(
                    shard,
                    group.topic.as_deref().unwrap_or(""),
                    group.source.as_deref().unwrap_or(""),
                    &tags,
                    log.time,
                    log.time_ns.unwrap_or(0),
                    &contents,
                ));
            }
        }
    }
    let expected_logs: usize = expected.values().map(Vec::len).sum();

    let dump = std::env::temp_dir().join(format!("sls-python-sdk-{}.jsonl", std::process::id()));
    let script = crate_dir().join("python/sls_consumer_group.py");
    let mut command = tokio::process::Command::new(python());
    command
        .arg(&script)
        .args(["--endpoint", &emulator.endpoint()])
        .args(["--project", PROJECT, "--logstore", LOGSTORE, "--group", GROUP])
        .args(["--access-key-id", ACCESS_KEY_ID, "--access-key-secret", ACCESS_KEY_SECRET])
        .args(["--shards", &SHARDS.to_string(), "--expected-logs", &expected_logs.to_string()])
        .arg("--dump")
        .arg(&dump)
        .kill_on_drop(true);
    // A proxy in the environment would hijack requests to 127.0.0.1.
    for variable in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
        command.env_remove(variable);
    }
    command.env("NO_PROXY", "127.0.0.1,localhost").env("no_proxy", "127.0.0.1,localhost");
    let output = tokio::time::timeout(Duration::from_secs(150), command.output())
        .await
        .expect("the Python consumer finished within 150 s")
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "the Python consumer failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|error| panic!("no JSON summary ({error}):\nstdout:\n{stdout}\nstderr:\n{stderr}"));
    println!("python summary: {summary}");

    assert_eq!(summary["direct"]["list_shards"], SHARDS, "{summary}");
    assert_eq!(summary["direct"]["pulled_groups_lz4"], 30 * SHARDS, "{summary}");
    assert_eq!(summary["direct"]["pulled_groups_plain"], 30 * SHARDS, "{summary}");
    assert_eq!(summary["direct"]["end_of_shard_empty"], true, "{summary}");
    assert_eq!(summary["first_got_every_shard"], true, "{summary}\n{stderr}");
    assert_eq!(summary["rebalanced"], true, "{summary}\n{stderr}");
    assert_eq!(summary["read_everything"], true, "{summary}\n{stderr}");
    assert_eq!(summary["checkpoints_at_end"], true, "{summary}\n{stderr}");
    assert_eq!(summary["logs_read"], expected_logs, "{summary}");

    let dumped = std::fs::read_to_string(&dump).expect("the script wrote its dump");
    let _ = std::fs::remove_file(&dump);
    let mut read: BTreeMap<u32, Vec<serde_json::Value>> = BTreeMap::new();
    for line in dumped.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        read.entry(row["shard"].as_u64().unwrap() as u32).or_default().push(row);
    }
    for shard in 0..SHARDS {
        let got = read.remove(&shard).unwrap_or_default();
        let want = &expected[&shard];
        assert_eq!(got.len(), want.len(), "shard {shard}: read {} logs, preloaded {}", got.len(), want.len());
        for (index, (got, want)) in got.iter().zip(want).enumerate() {
            assert_eq!(got, want, "shard {shard}, log {index}: the SDK read something other than what was preloaded");
        }
    }

    let control = emulator.control();
    for shard in 0..SHARDS {
        let end = control.cursor(PROJECT, LOGSTORE, shard, CursorPosition::End).unwrap();
        assert_eq!(control.checkpoint(PROJECT, LOGSTORE, GROUP, shard).unwrap(), Some(end), "shard {shard} checkpoint");
    }
    let stats = control.stats();
    assert!(stats.heartbeats >= 4, "{stats:?}");
    assert_eq!(stats.errors_with_code("SignatureNotMatch"), 0, "{stats:?}");
    assert_eq!(stats.errors_with_code("Unauthorized"), 0, "{stats:?}");
}
