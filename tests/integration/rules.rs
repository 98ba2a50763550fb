//! The `rules` transform in real pipelines and `pipe rule test`, run by the
//! `pipe` binary.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::support::{http_get, metric_value, pipe_command, read_ndjson, wait_for, wait_for_async, Pipe, Scratch};

const SEED_QUERY: &str = "message:'Traceback' OR message:*Exception* OR source:*Defend*";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rules").join(name)
}

fn text_field<'a>(event: &'a serde_json::Value, name: &str) -> &'a str {
    event[name].as_str().unwrap_or_else(|| panic!("{name} missing in {event}"))
}

#[tokio::test]
async fn an_inline_any_rule_alerts_on_every_seed_filter_match_of_the_demo_stream() {
    let scratch = Scratch::new();
    let config = scratch.write(
        "pipe.toml",
        &r#"
data_dir = "{dir}/data"
[api]
address = "127.0.0.1:0"

[sources.demo]
type = "demo"
count = 3000
seed = 9

[transforms.errors]
type = "filter"
inputs = ["demo"]
condition = "SEED_QUERY"

[transforms.alerts]
type = "rules"
inputs = ["demo"]

[[transforms.alerts.rule]]
name = "xxxxx Alert Log"
type = "any"
timestamp_field = "__time__"
timestamp_type = "unix"
realert = "0s"
alert_subject = "Exception on {0}"
alert_subject_args = ["host"]
filter = [{ query = { query_string = { query = "SEED_QUERY" } } }]

[sinks.matched]
type = "file"
inputs = ["errors"]
path = "{dir}/matched.ndjson"

[sinks.alert_file]
type = "file"
inputs = ["alerts"]
path = "{dir}/alerts.ndjson"
"#
        .replace("SEED_QUERY", SEED_QUERY),
    );
    let mut pipe = Pipe::start(&["run", config.to_str().unwrap()], &[]);
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());

    let matched = read_ndjson(&scratch.path("matched.ndjson"));
    let alerts = read_ndjson(&scratch.path("alerts.ndjson"));
    assert!(!matched.is_empty(), "the demo stream has exceptions");
    assert_eq!(alerts.len(), matched.len(), "one alert per matching event (realert 0)");
    for (alert, event) in alerts.iter().zip(&matched) {
        assert_eq!(text_field(alert, "rule_name"), "xxxxx Alert Log");
        assert_eq!(text_field(alert, "alert_subject"), format!("Exception on {}", text_field(event, "host")));
        let alert_text = text_field(alert, "alert_text");
        assert!(alert_text.starts_with("xxxxx Alert Log\n"), "{alert_text}");
        assert!(alert_text.contains(&format!("host: {}", text_field(event, "host"))), "{alert_text}");
        assert_eq!(alert["message"], event["message"]);
        assert!(alert["alert_time"].is_string() && alert["match_time"].is_string(), "{alert}");
    }
}

#[tokio::test]
async fn a_flatline_rule_fires_when_the_stream_goes_silent() {
    let scratch = Scratch::new();
    let config = scratch.write(
        "pipe.toml",
        r#"
data_dir = "{dir}/data"
[api]
address = "127.0.0.1:0"

[sources.input]
type = "stdin"
decoding = "json"

[transforms.alerts]
type = "rules"
inputs = ["input"]
tick_interval = "100ms"

[[transforms.alerts.rule]]
name = "heartbeat"
type = "flatline"
threshold = 1
timeframe = "2s"
run_every = "1s"

[sinks.alert_file]
type = "file"
inputs = ["alerts"]
path = "{dir}/alerts.ndjson"
"#,
    );
    let (mut pipe, mut stdin) = Pipe::start_with_stdin(&["run", config.to_str().unwrap()], &[]);
    let last_event_time = Utc::now();
    writeln!(stdin, r#"{{"@timestamp": "{}", "message": "alive"}}"#, last_event_time.to_rfc3339()).unwrap();
    stdin.flush().unwrap();

    // Nothing more arrives: the wall-clock ticks must run the flatline check.
    let alerts_path = scratch.path("alerts.ndjson");
    let alert = wait_for("the flatline alert", || read_ndjson(&alerts_path).into_iter().next()).await;
    assert_eq!(text_field(&alert, "rule_name"), "heartbeat");
    assert_eq!(alert["count"], 0);
    assert_eq!(alert["threshold"], 1);
    let alert_time: DateTime<Utc> = text_field(&alert, "alert_time").parse().unwrap();
    assert!(
        alert_time - last_event_time >= chrono::Duration::seconds(2),
        "fired only after 2 s without events: {alert_time} vs {last_event_time}"
    );

    let api = pipe.api_url().await;
    let alerts_total = wait_for_async("pipe_rules_alerts_total to be published", || {
        let url = format!("{api}/metrics");
        async move {
            let (_, metrics) = http_get(&url).await;
            metric_value(&metrics, "pipe_rules_alerts_total", &["rule=\"heartbeat\""]).filter(|total| *total >= 1.0)
        }
    })
    .await;
    assert!(alerts_total >= 1.0);

    // End of input: the pipeline drains and exits cleanly.
    drop(stdin);
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
}

fn rule_test(args: &[&str]) -> (i32, Vec<serde_json::Value>, String) {
    let output = pipe_command().args(["rule", "test"]).args(args).output().expect("run pipe rule test");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 stdout");
    let records = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("stdout line {line:?}: {error}")))
        .collect();
    (output.status.code().unwrap_or(-1), records, String::from_utf8_lossy(&output.stderr).into_owned())
}

fn golden_records(name: &str) -> Vec<serde_json::Value> {
    let golden: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap();
    golden["records"].as_array().unwrap().clone()
}

#[test]
fn rule_test_prints_the_golden_matches_and_alerts() {
    let rules = fixture("replay_rules.yaml");
    let flatline = fixture("replay_flatline.yaml");
    let events = fixture("replay_events.ndjson");
    let base = [rules.to_str().unwrap(), flatline.to_str().unwrap(), "--events", events.to_str().unwrap()];

    let (code, records, stderr) = rule_test(&base);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(records, golden_records("replay_matches.golden.json"));
    assert!(stderr.contains("events: 13, runs: 16, matches: 6"), "{stderr}");

    let (code, records, stderr) = rule_test(&[&base[..], &["--alerts"]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(records, golden_records("replay_alerts.golden.json"));
    assert!(stderr.contains("events: 13, runs: 16, matches: 6, alerts: 4"), "{stderr}");

    let bounded = ["--start", "2024-01-01T00:02:00Z", "--end", "2024-01-01T00:04:00Z"];
    let (code, records, stderr) = rule_test(&[&base[..1], &base[2..], &bounded].concat());
    assert_eq!(code, 0, "{stderr}");
    let times: Vec<&str> = records.iter().map(|record| text_field(record, "match_time")).collect();
    assert_eq!(times, ["2024-01-01T00:03:10Z"]);
    assert!(stderr.contains("runs: 2,"), "{stderr}");

    let (code, _, stderr) = rule_test(&[&base[..1], &base[2..], &["--run-every", "30s"]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("runs: 18,"), "00:00:05 to 00:09:00 (last event plus timeframe) in 30 s runs: {stderr}");
}

#[test]
fn rule_test_exits_non_zero_with_the_load_error() {
    let events = fixture("replay_events.ndjson");
    let plugin = fixture("seed_wechat_plugin.yaml");
    let (code, records, stderr) = rule_test(&[plugin.to_str().unwrap(), "--events", events.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(records.is_empty());
    assert!(stderr.contains("seed_wechat_plugin.yaml") && stderr.contains("\"wecom\" sink"), "{stderr}");

    let scratch = Scratch::new();
    let bad_events = scratch.write("events.ndjson", "{\"@timestamp\": \"2024-01-01T00:00:00Z\"}\nnot json\n");
    let rules = fixture("replay_rules.yaml");
    let (code, _, stderr) = rule_test(&[rules.to_str().unwrap(), "--events", bad_events.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("line 2"), "{stderr}");
}

#[tokio::test]
async fn rules_dir_runs_an_elastalert_rule_file_unchanged() {
    let scratch = Scratch::new();
    std::fs::create_dir(scratch.path("rules")).unwrap();
    std::fs::copy(fixture("seed_ported.yaml"), scratch.path("rules/seed_ported.yaml")).unwrap();
    // An ElastAlert config.yaml: daemon keys are ignored, the rest are rule
    // defaults (the demo stream is stamped in SLS's `__time__`).
    scratch.write(
        "config.yaml",
        "rules_folder: rules\nrun_every:\n  minutes: 1\nbuffer_time:\n  minutes: 15\nes_host: 192.168.2.16\nes_port: 10086\nwriteback_index: elastalert_status\nalert_time_limit:\n  days: 2\ntimestamp_field: __time__\ntimestamp_type: unix\n",
    );
    let config = scratch.write(
        "pipe.toml",
        r#"
data_dir = "{dir}/data"
[api]
address = "127.0.0.1:0"

[sources.demo]
type = "demo"
count = 2000
seed = 3

[transforms.alerts]
type = "rules"
inputs = ["demo"]
rules_dir = "{dir}/rules"
config_file = "{dir}/config.yaml"

[sinks.alert_file]
type = "file"
inputs = ["alerts"]
path = "{dir}/alerts.ndjson"
"#,
    );
    let mut pipe = Pipe::start(&["run", config.to_str().unwrap()], &[]);
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
    let alerts = read_ndjson(&scratch.path("alerts.ndjson"));
    assert_eq!(alerts.len(), 1, "realert (1 minute by default) silences the later matches: {alerts:?}");
    assert_eq!(text_field(&alerts[0], "rule_name"), "xxxxx Alert Log");
    let message = text_field(&alerts[0], "message").to_lowercase();
    let source = alerts[0]["source"].as_str().unwrap_or_default();
    assert!(message.contains("traceback") || message.contains("exception") || source.contains("Defend"), "{message}");
}

#[test]
fn a_python_alerter_class_in_rules_dir_fails_validation_and_points_to_the_wecom_sink() {
    let scratch = Scratch::new();
    std::fs::create_dir(scratch.path("rules")).unwrap();
    std::fs::copy(fixture("seed_wechat_plugin.yaml"), scratch.path("rules/seed_wechat_plugin.yaml")).unwrap();
    let config = scratch.write(
        "pipe.toml",
        r#"
[sources.demo]
type = "demo"
count = 10

[transforms.alerts]
type = "rules"
inputs = ["demo"]
rules_dir = "{dir}/rules"

[sinks.out]
type = "blackhole"
inputs = ["alerts"]
"#,
    );
    let output = pipe_command().args(["validate", config.to_str().unwrap()]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("alerts"), "names the transform: {stdout}");
    assert!(stdout.contains("seed_wechat_plugin.yaml"), "names the file: {stdout}");
    assert!(stdout.contains("alert_plugin.wechat_qiye_alert.WeChatAlerter"), "{stdout}");
    assert!(stdout.contains("\"wecom\" sink"), "{stdout}");
}
