//! End to end: the `pipe` binary with a `file` source feeding a `file` sink.
//!
//! Each test writes log files into a temporary directory, runs `pipe run`
//! on a generated configuration (API on 127.0.0.1 port 0), waits for the
//! sink file to hold the expected lines (polling with a deadline), stops the
//! process with SIGINT and checks that it exited cleanly and that every line
//! arrived exactly once.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

struct Pipe {
    child: Child,
    log: PathBuf,
}

impl Pipe {
    /// Starts `pipe run` reading `directory/logs/*.log` into `directory/out.ndjson`.
    fn start(directory: &Path, run: &str) -> Pipe {
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
        let log = directory.join(format!("pipe-{run}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_pipe"))
            .arg("run")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create log"))
            .spawn()
            .expect("start pipe");
        Pipe { child, log }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGINT and waits for the exit status.
    fn interrupt(mut self) -> i32 {
        let status = Command::new("kill").arg("-INT").arg(self.child.id().to_string()).status().expect("run kill");
        assert!(status.success(), "kill -INT failed");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for pipe") {
                return status.code().unwrap_or_else(|| panic!("pipe died from a signal: {status}\n{}", self.output()));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("pipe did not exit after SIGINT\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // A failed assertion must not leave a process behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
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

/// Polls the sink file until it holds `count` lines.
fn wait_for_lines(directory: &Path, count: usize, pipe: &Pipe) -> Vec<(String, String)> {
    let deadline = Instant::now() + WAIT;
    loop {
        let lines = delivered(directory);
        if lines.len() >= count {
            return lines;
        }
        assert!(Instant::now() < deadline, "only {} of {count} lines were delivered\n{}", lines.len(), pipe.output());
        std::thread::sleep(Duration::from_millis(20));
    }
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

#[test]
fn existing_and_appended_lines_are_delivered() {
    let directory = tempfile::tempdir().expect("temp dir");
    let log = directory.path().join("logs/app.log");
    append(&log, numbered("existing", 0..500));
    let pipe = Pipe::start(directory.path(), "only");
    wait_for_lines(directory.path(), 500, &pipe);
    append(&log, numbered("appended", 0..300));
    let lines = wait_for_lines(directory.path(), 800, &pipe);
    assert_eq!(pipe.interrupt(), 0);

    let mut expected = numbered("existing", 0..500);
    expected.extend(numbered("appended", 0..300));
    assert_exactly_once(&delivered(directory.path()), &expected);
    let messages: Vec<&str> = lines.iter().map(|(message, _)| message.as_str()).collect();
    assert_eq!(messages, expected, "one file's lines keep their order");
    assert!(lines.iter().all(|(_, file)| file == &log.display().to_string()));
}

#[test]
fn rename_rotation_loses_nothing() {
    let directory = tempfile::tempdir().expect("temp dir");
    let log = directory.path().join("logs/app.log");
    append(&log, numbered("before", 0..200));
    let pipe = Pipe::start(directory.path(), "only");
    wait_for_lines(directory.path(), 200, &pipe);

    // The writer's last lines land in the old file right before the rename;
    // `app.log.1` does not match `*.log`, so only the open handle sees them.
    append(&log, numbered("tail-of-old", 0..100));
    std::fs::rename(&log, directory.path().join("logs/app.log.1")).expect("rotate");
    append(&log, numbered("new", 0..100));
    wait_for_lines(directory.path(), 400, &pipe);
    assert_eq!(pipe.interrupt(), 0);

    let mut expected = numbered("before", 0..200);
    expected.extend(numbered("tail-of-old", 0..100));
    expected.extend(numbered("new", 0..100));
    let lines = delivered(directory.path());
    assert_exactly_once(&lines, &expected);
    let first_new = lines.iter().position(|(message, _)| message.starts_with("new")).expect("new lines arrived");
    let last_old = lines.iter().rposition(|(message, _)| message.starts_with("tail-of-old")).expect("old lines arrived");
    assert!(last_old < first_new, "the old file is read to its end before the new one");
}

#[test]
fn copytruncate_restarts_the_file_at_zero() {
    let directory = tempfile::tempdir().expect("temp dir");
    let log = directory.path().join("logs/app.log");
    append(&log, numbered("before-truncate", 0..300));
    let pipe = Pipe::start(directory.path(), "only");
    wait_for_lines(directory.path(), 300, &pipe);

    std::fs::OpenOptions::new().write(true).open(&log).expect("open").set_len(0).expect("truncate");
    append(&log, numbered("after", 0..10));
    wait_for_lines(directory.path(), 310, &pipe);
    assert_eq!(pipe.interrupt(), 0);

    let mut expected = numbered("before-truncate", 0..300);
    expected.extend(numbered("after", 0..10));
    assert_exactly_once(&delivered(directory.path()), &expected);
    assert!(pipe_log_mentions(directory.path(), "truncated"), "the truncation is logged as a warning");
}

fn pipe_log_mentions(directory: &Path, text: &str) -> bool {
    std::fs::read_to_string(directory.join("pipe-only.log")).unwrap_or_default().contains(text)
}

#[test]
fn restart_resumes_from_the_checkpoint_without_loss_or_duplicates() {
    const FIRST_RUN_LINES: usize = 2500;
    const SECOND_RUN_LINES: usize = 700;
    let directory = tempfile::tempdir().expect("temp dir");
    let log = directory.path().join("logs/app.log");
    append(&log, numbered("first", 0..FIRST_RUN_LINES));
    let first = Pipe::start(directory.path(), "first");
    wait_for_lines(directory.path(), FIRST_RUN_LINES, &first);
    assert_eq!(first.interrupt(), 0, "the first run stops cleanly");
    let checkpoints = std::fs::read_to_string(directory.path().join("data/tail/checkpoints.json")).expect("checkpoints written");
    assert!(checkpoints.contains(&format!("\"offset\": {}", std::fs::metadata(&log).expect("stat").len())), "{checkpoints}");

    append(&log, numbered("second", 0..SECOND_RUN_LINES));
    let second = Pipe::start(directory.path(), "second");
    wait_for_lines(directory.path(), FIRST_RUN_LINES + SECOND_RUN_LINES, &second);
    assert_eq!(second.interrupt(), 0, "the second run stops cleanly");

    let mut expected = numbered("first", 0..FIRST_RUN_LINES);
    expected.extend(numbered("second", 0..SECOND_RUN_LINES));
    assert_exactly_once(&delivered(directory.path()), &expected);
}
