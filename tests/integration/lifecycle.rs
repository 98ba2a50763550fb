//! The `pipe` binary end to end: demo pipelines into the file sink, graceful
//! shutdown, reload, and the API.

use super::support::{http_get, metric_value, read_ndjson, wait_for, wait_for_async, Pipe, Scratch};

fn demo_to_file(scratch: &Scratch, out: &str, extra: &str) -> String {
    format!(
        r#"
data_dir = "{dir}/data"
shutdown_timeout = "20s"
[api]
address = "127.0.0.1:0"

[sources.demo]
type = "demo"
rate = 2000
seed = 3
{extra}

[transforms.expand]
type = "json_expand"
inputs = ["demo"]
topics = ["actiontrail_audit_event"]
fields = ["event"]

[sinks.out]
type = "file"
inputs = ["expand"]
path = "{dir}/{out}"
"#,
        dir = scratch.dir.path().display()
    )
}

fn seqs(path: &std::path::Path) -> Vec<u64> {
    let mut seqs: Vec<u64> =
        read_ndjson(path).iter().map(|event| event["seq"].as_str().unwrap().parse().unwrap()).collect();
    seqs.sort_unstable();
    seqs
}

#[tokio::test]
async fn sigint_drains_everything_generated_into_the_file_sink_and_exits_zero() {
    let scratch = Scratch::new();
    let config = scratch.write("pipe.toml", &demo_to_file(&scratch, "out.ndjson", ""));
    let mut pipe = Pipe::start(&["run", config.to_str().unwrap()], &[]);
    let api = pipe.api_url().await;
    let out = scratch.path("out.ndjson");
    wait_for("some events in the file", || (read_ndjson(&out).len() >= 500).then_some(())).await;

    let (status, health) = http_get(&format!("{api}/health")).await;
    assert_eq!(status, 200, "{health}");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["components"]["out"]["status"], "running");
    let (_, metrics) = http_get(&format!("{api}/metrics")).await;
    assert!(
        metric_value(&metrics, "pipe_component_sent_events_total", &["component_id=\"demo\""]).unwrap() >= 500.0,
        "{metrics}"
    );
    assert!(
        metric_value(&metrics, "pipe_event_latency_seconds_count", &["component_id=\"out\""]).unwrap() >= 500.0,
        "{metrics}"
    );
    assert!(metrics.contains("pipe_buffer_events{"), "{metrics}");

    pipe.signal("INT");
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
    // Every generated event reached the file: the demo numbers events 1..N.
    let seqs = seqs(&out);
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "gaps or duplicates in the delivered sequence");
    let expanded = read_ndjson(&out)
        .into_iter()
        .find(|event| event["__topic__"] == "actiontrail_audit_event")
        .expect("an audit event");
    assert!(expanded["event"]["userIdentity"].is_object(), "{expanded}");
}

#[tokio::test]
async fn a_finite_pipeline_exits_zero_when_everything_is_delivered() {
    let scratch = Scratch::new();
    let config = scratch.write(
        "pipe.toml",
        &demo_to_file(&scratch, "out.ndjson", "count = 1234").replace("rate = 2000", "rate = 100000"),
    );
    let mut pipe = Pipe::start(&["run", config.to_str().unwrap()], &[]);
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
    assert_eq!(seqs(&scratch.path("out.ndjson")), (1..=1234).collect::<Vec<_>>());
}

#[tokio::test]
async fn reload_rejects_an_invalid_config_and_applies_a_valid_one() {
    let scratch = Scratch::new();
    let config = scratch.write("pipe.toml", &demo_to_file(&scratch, "first.ndjson", ""));
    let mut pipe = Pipe::start(&["run", "--watch", config.to_str().unwrap()], &[]);
    let api = pipe.api_url().await;
    let first = scratch.path("first.ndjson");
    wait_for("events in the first file", || (!read_ndjson(&first).is_empty()).then_some(())).await;

    std::fs::write(&config, "[sources.demo]\ntype = \"nonsense\"\n").unwrap();
    wait_for_async("the invalid reload to be counted", || async {
        let (_, metrics) = http_get(&format!("{api}/metrics")).await;
        metric_value(&metrics, "pipe_config_reloads_total", &["result=\"rejected\""]).filter(|count| *count >= 1.0)
    })
    .await;
    let before = read_ndjson(&first).len();
    wait_for("the old pipeline to keep running", || (read_ndjson(&first).len() > before).then_some(())).await;
    assert_eq!(http_get(&format!("{api}/health")).await.0, 200);

    std::fs::write(
        &config,
        demo_to_file(&scratch, "second.ndjson", "").replace("{dir}", &scratch.dir.path().display().to_string()),
    )
    .unwrap();
    let second = scratch.path("second.ndjson");
    wait_for("events in the second file", || (!read_ndjson(&second).is_empty()).then_some(())).await;
    let stopped_at = read_ndjson(&first).len();
    // The old pipeline drained on switch-over: its file no longer grows, and
    // it holds a gap-free sequence.
    assert_eq!(seqs(&first), (1..=stopped_at as u64).collect::<Vec<_>>());
    pipe.signal("TERM");
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
    assert!(pipe.stderr().contains("the new configuration is invalid"), "{}", pipe.stderr());
}

#[tokio::test]
async fn invalid_config_prints_every_error_and_starts_nothing() {
    let scratch = Scratch::new();
    let config = scratch.write(
        "bad.toml",
        "[sinks.out]\ntype = \"console\"\ninputs = [\"nowhere\"]\n[sources.x]\ntype = \"demo\"\nrate = -1\n",
    );
    let mut pipe = Pipe::start(&["run", config.to_str().unwrap()], &[]);
    assert_eq!(pipe.wait_exit().await, 1);
    let stderr = pipe.stderr();
    assert!(stderr.contains("input \"nowhere\" does not name a source or transform"), "{stderr}");
    assert!(stderr.contains("\"rate\" is -1"), "{stderr}");
    assert!(!stderr.contains("api listening"), "{stderr}");
}
