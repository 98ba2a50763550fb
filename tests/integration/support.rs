//! Helpers for running the real `pipe` binary in tests: temp directories,
//! config files, waiting on conditions with deadlines, signals, HTTP scrapes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

/// Polls `condition` until it returns `Some`, or panics with `what` after `DEADLINE`.
pub async fn wait_for<T>(what: &str, mut condition: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(started.elapsed() < DEADLINE, "timed out after {DEADLINE:?} waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Like `wait_for`, for async conditions.
pub async fn wait_for_async<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut condition: impl FnMut() -> F,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = condition().await {
            return value;
        }
        assert!(started.elapsed() < DEADLINE, "timed out after {DEADLINE:?} waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// A scratch directory removed at drop.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `text` to `name` (with `{dir}` replaced by the scratch path).
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text.replace("{dir}", &self.dir.path().display().to_string())).expect("write file");
        path
    }
}

/// Complete lines of an NDJSON file, parsed; empty when the file does not
/// exist. A last line still being written (no newline yet) is left out.
pub fn read_ndjson(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
    complete
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("bad NDJSON line {line:?}: {error}")))
        .collect()
}

/// A running `pipe` process with its stdout and stderr captured.
pub struct Pipe {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

pub fn pipe_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pipe"));
    command.env("RUST_LOG", "info").env_remove("NO_COLOR");
    command
}

impl Pipe {
    /// Starts `pipe ARGS...` with `envs`.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Pipe {
        Pipe::spawn(args, envs, Stdio::inherit())
    }

    /// Like `start`, with standard input connected to the returned writer
    /// (dropping it closes pipe's input).
    pub fn start_with_stdin(args: &[&str], envs: &[(&str, &str)]) -> (Pipe, ChildStdin) {
        let mut pipe = Pipe::spawn(args, envs, Stdio::piped());
        let stdin = pipe.child.stdin.take().expect("stdin");
        (pipe, stdin)
    }

    fn spawn(args: &[&str], envs: &[(&str, &str)], stdin: Stdio) -> Pipe {
        let mut command = pipe_command();
        command.args(args).envs(envs.iter().copied()).stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("start pipe");
        let stdout = capture_lines(child.stdout.take().expect("stdout"));
        let stderr = capture_lines(child.stderr.take().expect("stderr"));
        Pipe { child, stdout, stderr }
    }

    /// Everything pipe wrote to standard output so far (the console sink).
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The API base URL, once pipe has logged it.
    pub async fn api_url(&self) -> String {
        wait_for("pipe to log its api address", || {
            let text = self.stderr();
            let start = text.find("api listening on http://")? + "api listening on ".len();
            let end = text[start..].find(char::is_whitespace)? + start;
            Some(text[start..end].to_string())
        })
        .await
    }

    pub fn signal(&self, name: &str) {
        let status =
            Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn wait_exit(&mut self) -> i32 {
        let status = wait_for("pipe to exit", || self.child.try_wait().expect("try_wait")).await;
        status.code().unwrap_or(-1)
    }
}

/// Collects the lines of `stream` into a shared string, on a thread that
/// ends with the stream.
fn capture_lines(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let captured = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&captured);
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut text = sink.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    captured
}

impl Drop for Pipe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `url`, returning status and body.
pub async fn http_get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap_or_else(|error| panic!("GET {url}: {error}"));
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// The value of the first Prometheus sample whose line starts with `prefix`
/// (name plus any label text), if present.
pub fn metric_value(metrics: &str, name: &str, label_fragments: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .find(|line| label_fragments.iter().all(|fragment| line.contains(fragment)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}
