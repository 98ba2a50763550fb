//! End to end: the `pipe` binary with a `file` source feeding a `file` sink.
//!
//! Each test writes log files into a temporary directory, runs `pipe run`
//! on a generated configuration (API on 127.0.0.1 port 0), waits for the
//! sink file to hold the expected lines (polling with a deadline), stops the
//! process with SIGINT and checks that it exited cleanly and that every line
//! arrived exactly once.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use super::support::{wait_for, Pipe};

/// Starts `pipe run` reading `directory/logs/*.log` into `directory/out.ndjson`.
fn start(directory: &Path) -> Pipe {
    let config = directory.join("pipe.toml");
    let text = format!(
        r#"
data_dir = {data:?}
shutdown_timeout = "20s"

[api]
address = "127.0.0.1:0"

[sources.tail]
type = "file"
include = [{include:?}]
glob_interval = "100ms"
poll_interval = "20ms"
checkpoint_interval = "100ms"

[sinks.out]
type = "file"
inputs = ["tail"]
path = {out:?}
"#,
        data = directory.join("data").display().to_string(),
        include = directory.join("logs/*.log").display().to_string(),
        out = directory.join("out.ndjson").display().to_string(),
    );
    std::fs::write(&config, text).expect("write config");
    Pipe::start(&["run", config.to_str().unwrap()], &[])
}

/// Sends SIGINT and waits for the exit status.
async fn interrupt(pipe: &mut Pipe) -> i32 {
    pipe.signal("INT");
    pipe.wait_exit().await
}

fn append(path: &Path, lines: impl IntoIterator<Item = String>) {
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("create logs dir");
    let mut text = String::new();
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open log");
    file.write_all(text.as_bytes()).expect("append");
}

fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|number| format!("{prefix}-{number:05}")).collect()
}

/// The complete lines of the sink file, as (message, file) pairs.
fn delivered(directory: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(directory.join("out.ndjson")).unwrap_or_default();
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).expect("the sink writes JSON lines");
            (event["message"].as_str().expect("message").to_string(), event["file"].as_str().expect("file").to_string())
        })
        .collect()
}

/// Waits until the sink file holds `count` lines.
async fn wait_for_lines(directory: &Path, count: usize) -> Vec<(String, String)> {
    wait_for(&format!("{count} lines in the sink file"), || {
        let lines = delivered(directory);
        (lines.len() >= count).then_some(lines)
    })
    .await
}

/// How many times each message was delivered.
fn counts(lines: &[(String, String)]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (message, _) in lines {
        *counts.entry(message.clone()).or_default() += 1;
    }
    counts
}

fn assert_exactly_once(lines: &[(String, String)], expected: &[String]) {
    let counts = counts(lines);
    let duplicated: Vec<_> = counts.iter().filter(|(_, &count)| count > 1).collect();
    assert!(duplicated.is_empty(), "delivered more than once: {duplicated:?}");
    let missing: Vec<_> = expected.iter().filter(|message| !counts.contains_key(*message)).collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    assert_eq!(lines.len(), expected.len(), "unexpected extra lines");
}

#[tokio::test]
async fn existing_and_appended_lines_are_delivered() {
    let directory = tempfile::tempdir().expect("temp dir");
    let log = directory.path().join("logs/app.log");
    append(&log, numbered("existing", 0..500));
    let mut pipe = start(directory.path());
    wait_for_lines(directory.path(), 500).await;
    append(&log, numbered("appended", 0..300));
    let lines = wait_for_lines(directory.path(), 800).await;
    assert_eq!(interrupt(&mut pipe).await, 0);

    let mut expected = numbered("existing", 0..500);
    expected.extend(numbered("appended", 0..300));
    assert_exactly_once(&delivered(directory.path()), &expected);
    let messages: Vec<&str> = lines.iter().map(|(message, _)| message.as_str()).collect();
    assert_eq!(messages, expected, "one file's lines keep their order");
    assert!(lines.iter().all(|(_, file)| file == &log.display().to_string()));
}

#[tokio::test]
async fn rename_rotation_loses_nothing() {
    let directory = tempfile::tempdir().expect("temp dir");
    let log = directory.path().join("logs/app.log");
    append(&log, numbered("before", 0..200));
    let mut pipe = start(directory.path());
    wait_for_lines(directory.path(), 200).await;

    // The writer's last lines land in the old file right before the rename;
    // `app.log.1` does not match `*.log`, so only the open handle sees them.
    append(&log, numbered("tail-of-old", 0..100));
    std::fs::rename(&log, directory.path().join("logs/app.log.1")).expect("rotate");
    append(&log, numbered("new", 0..100));
    wait_for_lines(directory.path(), 400).await;
    assert_eq!(interrupt(&mut pipe).await, 0);

    let mut expected = numbered("before", 0..200);
    expected.extend(numbered("tail-of-old", 0..100));
    expected.extend(numbered("new", 0..100));
    let lines = delivered(directory.path());
    assert_exactly_once(&lines, &expected);
    let first_new = lines.iter().position(|(message, _)| message.starts_with("new")).expect("new lines arrived");
    let last_old =
        lines.iter().rposition(|(message, _)| message.starts_with("tail-of-old")).expect("old lines arrived");
    assert!(last_old < first_new, "the old file is read to its end before the new one");
}

#[tokio::test]
async fn copytruncate_restarts_the_file_at_zero() {
    let directory = tempfile::tempdir().expect("temp dir");
    let log = directory.path().join("logs/app.log");
    append(&log, numbered("before-truncate", 0..300));
    let mut pipe = start(directory.path());
    wait_for_lines(directory.path(), 300).await;

    std::fs::OpenOptions::new().write(true).open(&log).expect("open").set_len(0).expect("truncate");
    append(&log, numbered("after", 0..10));
    wait_for_lines(directory.path(), 310).await;
    assert_eq!(interrupt(&mut pipe).await, 0);

    let mut expected = numbered("before-truncate", 0..300);
    expected.extend(numbered("after", 0..10));
    assert_exactly_once(&delivered(directory.path()), &expected);
    assert!(pipe.stderr().contains("truncated"), "the truncation is logged as a warning");
}

#[tokio::test]
async fn restart_resumes_from_the_checkpoint_without_loss_or_duplicates() {
    const FIRST_RUN_LINES: usize = 2500;
    const SECOND_RUN_LINES: usize = 700;
    let directory = tempfile::tempdir().expect("temp dir");
    let log = directory.path().join("logs/app.log");
    append(&log, numbered("first", 0..FIRST_RUN_LINES));
    let mut first = start(directory.path());
    wait_for_lines(directory.path(), FIRST_RUN_LINES).await;
    assert_eq!(interrupt(&mut first).await, 0, "the first run stops cleanly");
    let checkpoints =
        std::fs::read_to_string(directory.path().join("data/tail/checkpoints.json")).expect("checkpoints written");
    assert!(
        checkpoints.contains(&format!("\"offset\": {}", std::fs::metadata(&log).expect("stat").len())),
        "{checkpoints}"
    );

    append(&log, numbered("second", 0..SECOND_RUN_LINES));
    let mut second = start(directory.path());
    wait_for_lines(directory.path(), FIRST_RUN_LINES + SECOND_RUN_LINES).await;
    assert_eq!(interrupt(&mut second).await, 0, "the second run stops cleanly");

    let mut expected = numbered("first", 0..FIRST_RUN_LINES);
    expected.extend(numbered("second", 0..SECOND_RUN_LINES));
    assert_exactly_once(&delivered(directory.path()), &expected);
}
