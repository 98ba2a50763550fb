//! The `sls` source end to end against the SLS emulator: the real `pipe`
//! binary (or a real in-process topology) reading consumer groups over
//! loopback, compared log for log with what the emulator holds.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pipe::config::graph::{BuiltPipeline, BuiltSink, BuiltSource, OutputRef};
use pipe::config::GlobalOptions;
use pipe::event::BatchStatus;
use pipe::observability::Telemetry;
use pipe::sources::sls::SlsSourceConfig;
use pipe::topology::buffer::{BufferOptions, BufferReceiver, WhenFull};
use pipe::topology::{BuildContext, ComponentFuture, RunningTopology, Sink, SinkContext};
use serde_json::{json, Value};
use testkit::sls::{
    decode_cursor, demo_log_groups, CursorPosition, DemoData, FaultEffect, LogGroup, SlsApi, SlsControl, SlsEmulator,
    SlsFault,
};

use super::support::{http_get, metric_value, read_ndjson, wait_for, wait_for_async, Pipe, Scratch};

const PROJECT: &str = "demo-project";
const LOGSTORE: &str = "app-logs";
const GROUP: &str = "pipe-test";
const KEY_ID: &str = "test-access-key-id";
const KEY_SECRET: &str = "test-access-key-secret";
const LOG_TIME: u32 = 1_700_000_000;

/// What the file sink writes for each log of `groups`, flattened the way the
/// SDK does, one JSON text per log.
fn flattened(groups: &[LogGroup]) -> Vec<String> {
    let mut lines = Vec::new();
    for group in groups {
        for log in &group.logs {
            let mut object = serde_json::Map::new();
            object.insert("__time__".into(), json!(log.time));
            object.insert("__topic__".into(), json!(group.topic.clone().unwrap_or_default()));
            object.insert("__source__".into(), json!(group.source.clone().unwrap_or_default()));
            if let Some(nanos) = log.time_ns.filter(|nanos| *nanos != 0) {
                object.insert("__time_ns_part__".into(), json!(nanos));
            }
            for tag in &group.log_tags {
                object.insert(format!("__tag__:{}", tag.key), json!(tag.value));
            }
            for content in &log.contents {
                object.insert(content.key.clone(), json!(content.value));
            }
            lines.push(serde_json::to_string(&Value::Object(object)).unwrap());
        }
    }
    lines
}

/// The demo groups `demo` puts into `shard` of `logstore`.
fn demo_groups(demo: &DemoData, logstore: &str, shard: u32) -> Vec<LogGroup> {
    demo_log_groups(demo, logstore, shard, LOG_TIME).0
}

/// Every line the pipe wrote to `path`, re-serialised (key order kept).
fn delivered(path: &Path) -> Vec<String> {
    read_ndjson(path).iter().map(|event| serde_json::to_string(event).unwrap()).collect()
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

fn counts(lines: impl IntoIterator<Item = String>) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in lines {
        *counts.entry(line).or_insert(0) += 1;
    }
    counts
}

async fn emulator(logstores: &[(&str, u32)], demo: Option<DemoData>) -> SlsEmulator {
    let mut builder = SlsEmulator::builder().credentials(KEY_ID, KEY_SECRET);
    for (logstore, shards) in logstores {
        builder = builder.logstore(PROJECT, logstore, *shards);
        if let Some(demo) = demo {
            builder = builder.demo_data(PROJECT, logstore, demo);
        }
    }
    builder.build().await.expect("emulator starts")
}

/// A pipeline config: `sls` (with `extra` source keys) into a file sink.
fn sls_to_file(scratch: &Scratch, name: &str, endpoint: &str, logstores: &str, extra: &str) -> PathBuf {
    let dir = scratch.dir.path().display().to_string();
    let checkpoint_interval =
        if extra.contains("checkpoint_interval") { "" } else { "checkpoint_interval = \"300ms\"" };
    let text = format!(
        r#"
data_dir = "{dir}/data-{name}"
shutdown_timeout = "20s"
[api]
address = "127.0.0.1:0"

[sources.sls]
type = "sls"
endpoint = "http://{endpoint}"
project = "{PROJECT}"
logstores = {logstores}
consumer_group = "{GROUP}"
access_key_id = "{KEY_ID}"
access_key_secret = "${{TEST_SLS_SECRET}}"
heartbeat_interval = "1s"
fetch_interval = "100ms"
{checkpoint_interval}
{extra}

[sinks.out]
type = "file"
inputs = ["sls"]
path = "{dir}/{name}.ndjson"
"#
    );
    scratch.write(&format!("{name}.toml"), &text)
}

fn start(config: &Path) -> Pipe {
    Pipe::start(&["run", config.to_str().unwrap()], &[("TEST_SLS_SECRET", KEY_SECRET)])
}

async fn metrics_of(pipe: &Pipe) -> String {
    let api = pipe.api_url().await;
    http_get(&format!("{api}/metrics")).await.1
}

async fn wait_for_metric(pipe: &Pipe, name: &str, labels: &[&str], wanted: impl Fn(f64) -> bool) -> f64 {
    let api = pipe.api_url().await;
    wait_for_async(&format!("{name}{labels:?}"), || {
        let url = format!("{api}/metrics");
        let wanted = &wanted;
        async move {
            let metrics = http_get(&url).await.1;
            metric_value(&metrics, name, labels).filter(|value| wanted(*value))
        }
    })
    .await
}

fn cursor_index(control: &SlsControl, logstore: &str, shard: u32, cursor: &str) -> i64 {
    let begin = control.cursor(PROJECT, logstore, shard, CursorPosition::Begin).unwrap();
    decode_cursor(cursor).unwrap() - decode_cursor(&begin).unwrap()
}

async fn wait_until_delivered(path: &Path, expected: usize) {
    wait_for(&format!("{expected} events in {}", path.display()), || {
        (read_ndjson(path).len() >= expected).then_some(())
    })
    .await;
}

#[tokio::test]
async fn one_consumer_reads_every_log_of_every_shard_exactly_once_and_field_for_field() {
    let demo = DemoData::new(7, 30, 4).with_log_time(LOG_TIME);
    let emulator = emulator(&[("app-logs", 3), ("audit-logs", 2)], Some(demo)).await;
    let control = emulator.control();
    let scratch = Scratch::new();
    let config = sls_to_file(&scratch, "out", &emulator.endpoint(), r#"["app-logs", "audit-logs"]"#, "");
    let mut pipe = start(&config);

    let mut expected = Vec::new();
    for (logstore, shards) in [("app-logs", 3), ("audit-logs", 2)] {
        for shard in 0..shards {
            expected.extend(flattened(&demo_groups(&demo, logstore, shard)));
        }
    }
    assert_eq!(expected.len(), 5 * 30 * 4);
    let out = scratch.path("out.ndjson");
    wait_until_delivered(&out, expected.len()).await;

    // Caught up: the last pull at the committed cursor was empty.
    for partition in ["app-logs/0", "app-logs/2", "audit-logs/1"] {
        let fragment = format!("partition=\"{partition}\"");
        wait_for_metric(&pipe, "pipe_source_lag_seconds", &[&fragment], |lag| lag == 0.0).await;
    }
    for (logstore, shards) in [("app-logs", 3u32), ("audit-logs", 2)] {
        for shard in 0..shards {
            let end = control.cursor(PROJECT, logstore, shard, CursorPosition::End).unwrap();
            wait_for(&format!("the checkpoint of {logstore}/{shard} at its end"), || {
                (control.checkpoint(PROJECT, logstore, GROUP, shard).unwrap().as_deref() == Some(end.as_str()))
                    .then_some(())
            })
            .await;
        }
    }
    let metrics = metrics_of(&pipe).await;
    assert_eq!(
        metric_value(&metrics, "pipe_sls_pulled_log_groups_total", &["logstore=\"app-logs\""]),
        Some(90.0),
        "{metrics}"
    );
    assert_eq!(
        metric_value(&metrics, "pipe_sls_assigned_shards", &["logstore=\"audit-logs\""]),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        metric_value(&metrics, "pipe_component_received_events_total", &["component_id=\"sls\""]),
        Some(600.0),
        "{metrics}"
    );
    assert!(
        metric_value(&metrics, "pipe_sls_pulled_bytes_total", &["encoding=\"compressed\""]).unwrap() > 0.0,
        "{metrics}"
    );
    assert!(metric_value(&metrics, "pipe_sls_heartbeats_total", &["result=\"ok\""]).unwrap() >= 1.0, "{metrics}");
    assert!(
        metric_value(&metrics, "pipe_sls_checkpoint_commits_total", &["logstore=\"app-logs\"", "result=\"ok\""])
            .unwrap()
            >= 3.0,
        "{metrics}"
    );

    pipe.signal("INT");
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
    assert_eq!(
        sorted(delivered(&out)),
        sorted(expected),
        "every log exactly once, field for field and in SDK key order"
    );
    assert!(!pipe.stderr().contains(KEY_SECRET), "the secret leaked into the log");
}

/// The consumers of the group and the shards each holds.
fn holdings(control: &SlsControl) -> BTreeMap<String, Vec<u32>> {
    control
        .consumers(PROJECT, LOGSTORE, GROUP)
        .map(|consumers| consumers.into_iter().map(|consumer| (consumer.name, consumer.held_shards)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn three_processes_split_the_shards_and_a_killed_one_is_taken_over_with_duplicates_only_from_its_uncommitted_window(
) {
    const SHARDS: u32 = 6;
    let emulator = emulator(&[(LOGSTORE, SHARDS)], None).await;
    let control = emulator.control();
    let scratch = Scratch::new();
    let names = ["c1", "c2", "c3"];
    let mut pipes: Vec<Pipe> = names
        .iter()
        .map(|name| {
            let extra = format!("consumer_name = \"{name}\"\ncheckpoint_interval = \"1s\"");
            start(&sls_to_file(&scratch, name, &emulator.endpoint(), &format!("\"{LOGSTORE}\""), &extra))
        })
        .collect();
    wait_for("three consumers holding two shards each", || {
        let held = holdings(&control);
        (held.len() == 3 && held.values().all(|shards| shards.len() == 2)).then_some(())
    })
    .await;

    // Data arrives once the group is balanced.
    let first = DemoData::new(11, 20, 5);
    let mut origin: HashMap<String, (u32, i64)> = HashMap::new();
    let mut expected = Vec::new();
    for shard in 0..SHARDS {
        let groups = demo_groups(&first, LOGSTORE, shard);
        for (index, group) in groups.iter().enumerate() {
            for line in flattened(std::slice::from_ref(group)) {
                origin.insert(line.clone(), (shard, index as i64));
                expected.push(line);
            }
        }
        control.append_log_groups(PROJECT, LOGSTORE, shard, &groups).unwrap();
    }
    let outputs: Vec<PathBuf> = names.iter().map(|name| scratch.path(&format!("{name}.ndjson"))).collect();
    let union = |outputs: &[PathBuf]| outputs.iter().flat_map(|path| delivered(path)).collect::<Vec<_>>();
    wait_for("the first batch delivered", || {
        let seen = counts(union(&outputs));
        expected.iter().all(|line| seen.contains_key(line)).then_some(())
    })
    .await;

    let killed_shards = holdings(&control).remove("c3").expect("c3 is a member");
    pipes[2].signal("KILL");
    pipes[2].wait_exit().await;
    wait_for("the survivors to take over every shard", || {
        let held = holdings(&control);
        (held.len() == 2
            && held.values().map(Vec::len).sum::<usize>() == SHARDS as usize
            && held.values().all(|shards| shards.len() == 3))
        .then_some(())
    })
    .await;
    // Only c3 ever held these shards, and the new owners commit nothing
    // before they read past its last checkpoint, which is therefore the
    // start of its uncommitted window.
    let window_start: HashMap<u32, i64> = killed_shards
        .iter()
        .map(|&shard| {
            let checkpoint = control.checkpoint(PROJECT, LOGSTORE, GROUP, shard).unwrap();
            (shard, checkpoint.map_or(0, |cursor| cursor_index(&control, LOGSTORE, shard, &cursor)))
        })
        .collect();

    let second = DemoData::new(12, 10, 5);
    for shard in 0..SHARDS {
        let groups = demo_groups(&second, LOGSTORE, shard);
        expected.extend(flattened(&groups));
        control.append_log_groups(PROJECT, LOGSTORE, shard, &groups).unwrap();
    }
    wait_for("everything delivered after the takeover", || {
        let seen = counts(union(&outputs));
        expected.iter().all(|line| seen.contains_key(line)).then_some(())
    })
    .await;
    for pipe in &mut pipes[..2] {
        pipe.signal("INT");
        assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
    }

    let seen = counts(union(&outputs));
    let expected_counts = counts(expected.iter().cloned());
    assert_eq!(expected_counts.len(), expected.len(), "test data must be unique per log");
    for (line, count) in &seen {
        assert!(expected_counts.contains_key(line), "delivered a log that was never written: {line}");
        if *count > 1 {
            let (shard, index) = origin
                .get(line)
                .copied()
                .unwrap_or_else(|| panic!("a log written after the takeover was duplicated: {line}"));
            assert!(killed_shards.contains(&shard), "shard {shard} was never moved yet a log of it was duplicated");
            assert!(
                index >= window_start[&shard],
                "shard {shard} group {index} was duplicated though committed (window starts at {})",
                window_start[&shard]
            );
            assert_eq!(*count, 2, "read more than twice: {line}");
        }
    }
}

#[tokio::test]
async fn a_restart_resumes_from_the_checkpoints_without_duplicates() {
    let first = DemoData::new(5, 20, 5).with_log_time(LOG_TIME);
    let emulator = emulator(&[(LOGSTORE, 2)], Some(first)).await;
    let control = emulator.control();
    let scratch = Scratch::new();
    let endpoint = emulator.endpoint();

    let mut run = start(&sls_to_file(&scratch, "first", &endpoint, &format!("\"{LOGSTORE}\""), ""));
    let first_expected: Vec<String> =
        (0..2).flat_map(|shard| flattened(&demo_groups(&first, LOGSTORE, shard))).collect();
    wait_until_delivered(&scratch.path("first.ndjson"), first_expected.len()).await;
    run.signal("TERM");
    assert_eq!(run.wait_exit().await, 0, "{}", run.stderr());
    for shard in 0..2 {
        let end = control.cursor(PROJECT, LOGSTORE, shard, CursorPosition::End).unwrap();
        assert_eq!(
            control.checkpoint(PROJECT, LOGSTORE, GROUP, shard).unwrap(),
            Some(end),
            "shutdown commits every shard"
        );
    }
    assert_eq!(sorted(delivered(&scratch.path("first.ndjson"))), sorted(first_expected));

    let second = DemoData::new(6, 7, 3);
    let mut second_expected = Vec::new();
    for shard in 0..2 {
        let groups = demo_groups(&second, LOGSTORE, shard);
        second_expected.extend(flattened(&groups));
        control.append_log_groups(PROJECT, LOGSTORE, shard, &groups).unwrap();
    }
    let mut run = start(&sls_to_file(&scratch, "second", &endpoint, &format!("\"{LOGSTORE}\""), ""));
    let out = scratch.path("second.ndjson");
    wait_until_delivered(&out, second_expected.len()).await;
    run.signal("INT");
    assert_eq!(run.wait_exit().await, 0, "{}", run.stderr());
    // Shards are read in order, so a re-read of the first batch would have
    // arrived before the second batch was complete.
    assert_eq!(sorted(delivered(&out)), sorted(second_expected), "the second run reads only what is new");
}

fn input(component: &str) -> Vec<OutputRef> {
    vec![OutputRef { component: component.to_string(), output: None }]
}

/// A sink whose destination is down: every batch settles as errored.
struct FailingSink {
    received: Arc<AtomicUsize>,
}

impl Sink for FailingSink {
    fn run(self: Box<Self>, mut input: BufferReceiver, _cx: SinkContext) -> ComponentFuture {
        Box::pin(async move {
            while let Some(batch) = input.recv().await {
                self.received.fetch_add(batch.len(), Ordering::SeqCst);
                for event in batch {
                    event.settle(BatchStatus::Errored);
                }
            }
            Ok(())
        })
    }
}

#[tokio::test]
async fn with_a_sink_that_keeps_failing_the_server_checkpoint_never_moves() {
    let demo = DemoData::new(3, 10, 5).with_log_time(LOG_TIME);
    let emulator = emulator(&[(LOGSTORE, 2)], Some(demo)).await;
    let control = emulator.control();
    let config: SlsSourceConfig = toml::from_str(&format!(
        r#"
        endpoint = "{}"
        project = "{PROJECT}"
        logstores = "{LOGSTORE}"
        consumer_group = "{GROUP}"
        access_key_id = "{KEY_ID}"
        access_key_secret = "{KEY_SECRET}"
        heartbeat_interval = "1s"
        fetch_interval = "100ms"
        checkpoint_interval = "100ms"
        "#,
        emulator.url()
    ))
    .unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let pipeline = BuiltPipeline {
        global: GlobalOptions::default(),
        sources: vec![BuiltSource {
            id: "sls".into(),
            component_type: "sls",
            source: config.build(&BuildContext { id: "sls".into(), data_dir: "data".into() }).unwrap(),
        }],
        transforms: vec![],
        sinks: vec![BuiltSink {
            id: "down".into(),
            component_type: "test",
            inputs: input("sls"),
            buffer: BufferOptions { max_events: 1000, when_full: WhenFull::Block },
            sink: Box::new(FailingSink { received: Arc::clone(&received) }),
        }],
        warnings: vec![],
    };
    let topology = RunningTopology::start(pipeline, Telemetry::default());
    // 100 events in the logstore: three times that means every shard was
    // read, failed and read again at least twice.
    wait_for("the data to be read again after failures", || (received.load(Ordering::SeqCst) >= 300).then_some(()))
        .await;
    for shard in 0..2 {
        assert_eq!(
            control.checkpoint(PROJECT, LOGSTORE, GROUP, shard).unwrap(),
            None,
            "shard {shard} was committed past undelivered data"
        );
    }
    let report = topology.stop(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report:?}");
    for shard in 0..2 {
        assert_eq!(
            control.checkpoint(PROJECT, LOGSTORE, GROUP, shard).unwrap(),
            None,
            "shutdown committed past undelivered data"
        );
    }
    assert_eq!(control.stats().checkpoint_updates, 0);
}

#[tokio::test]
async fn a_split_parent_is_read_to_its_end_committed_and_released_before_its_children_in_an_ordered_group() {
    let parent_data = DemoData::new(21, 20, 3).with_log_time(LOG_TIME);
    let emulator = emulator(&[(LOGSTORE, 1)], Some(parent_data)).await;
    let control = emulator.control();
    let scratch = Scratch::new();
    let mut pipe =
        start(&sls_to_file(&scratch, "out", &emulator.endpoint(), &format!("\"{LOGSTORE}\""), "ordered = true"));
    let out = scratch.path("out.ndjson");
    wait_until_delivered(&out, 1).await;

    let shards = control.split_shard(PROJECT, LOGSTORE, 0, None).unwrap();
    let children: Vec<u32> = shards.iter().map(|shard| shard.shard_id).filter(|id| *id != 0).collect();
    assert_eq!(children.len(), 2);
    let parent_lines = flattened(&demo_groups(&parent_data, LOGSTORE, 0));
    let child_data = DemoData::new(22, 5, 3).with_log_time(LOG_TIME);
    let mut child_lines = Vec::new();
    for &child in &children {
        let groups = demo_groups(&child_data, LOGSTORE, child);
        child_lines.extend(flattened(&groups));
        control.append_log_groups(PROJECT, LOGSTORE, child, &groups).unwrap();
    }
    wait_until_delivered(&out, parent_lines.len() + child_lines.len()).await;

    let end = control.cursor(PROJECT, LOGSTORE, 0, CursorPosition::End).unwrap();
    assert_eq!(
        control.checkpoint(PROJECT, LOGSTORE, GROUP, 0).unwrap(),
        Some(end),
        "the parent's end cursor is committed"
    );
    let group = control.consumer_group(PROJECT, LOGSTORE, GROUP).unwrap();
    let parent_state = group.shards.iter().find(|shard| shard.shard == 0).map(|shard| shard.state.clone());
    assert_eq!(parent_state.as_deref(), Some("over"));
    pipe.signal("INT");
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());

    let lines = delivered(&out);
    let mut expected = parent_lines.clone();
    expected.extend(child_lines.iter().cloned());
    assert_eq!(sorted(lines.clone()), sorted(expected), "every log of parent and children exactly once");
    let parent_set: std::collections::HashSet<&String> = parent_lines.iter().collect();
    let last_parent = lines.iter().rposition(|line| parent_set.contains(line)).unwrap();
    let first_child = lines.iter().position(|line| !parent_set.contains(line)).unwrap();
    assert!(last_parent < first_child, "ordered group: children are read only after the parent is finished");
}

#[tokio::test]
async fn throttling_backs_off_and_recovers_without_loss_or_duplicates() {
    let demo = DemoData::new(31, 10, 5).with_log_time(LOG_TIME);
    let emulator = emulator(&[(LOGSTORE, 2)], Some(demo)).await;
    let control = emulator.control();
    control.inject_fault(SlsFault::new(FaultEffect::read_quota_exceed()).on_api(SlsApi::PullLogs).times(3));
    control.inject_fault(SlsFault::new(FaultEffect::server_busy()).on_api(SlsApi::Heartbeat).times(1));
    let scratch = Scratch::new();
    let mut pipe = start(&sls_to_file(&scratch, "out", &emulator.endpoint(), &format!("\"{LOGSTORE}\""), ""));
    let expected: Vec<String> = (0..2).flat_map(|shard| flattened(&demo_groups(&demo, LOGSTORE, shard))).collect();
    let out = scratch.path("out.ndjson");
    wait_until_delivered(&out, expected.len()).await;
    wait_for_metric(&pipe, "pipe_sls_retries_total", &["error_code=\"ReadQuotaExceed\""], |count| count == 3.0).await;
    wait_for_metric(&pipe, "pipe_sls_retries_total", &["error_code=\"ServerBusy\""], |count| count == 1.0).await;
    wait_for_metric(&pipe, "pipe_sls_heartbeats_total", &["result=\"error\""], |count| count == 1.0).await;
    assert!(control.pending_faults().is_empty());
    pipe.signal("INT");
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
    assert_eq!(sorted(delivered(&out)), sorted(expected));
}

#[tokio::test]
async fn corrupt_bodies_are_counted_and_pulled_again_without_loss() {
    let demo = DemoData::new(41, 10, 5).with_log_time(LOG_TIME);
    let emulator = emulator(&[(LOGSTORE, 2)], Some(demo)).await;
    let control = emulator.control();
    control.inject_fault(SlsFault::new(FaultEffect::CorruptLz4).on_api(SlsApi::PullLogs).times(2));
    control.inject_fault(SlsFault::new(FaultEffect::CorruptProtobuf).on_api(SlsApi::PullLogs).times(2));
    let scratch = Scratch::new();
    let mut pipe = start(&sls_to_file(&scratch, "out", &emulator.endpoint(), &format!("\"{LOGSTORE}\""), ""));
    let expected: Vec<String> = (0..2).flat_map(|shard| flattened(&demo_groups(&demo, LOGSTORE, shard))).collect();
    let out = scratch.path("out.ndjson");
    wait_until_delivered(&out, expected.len()).await;
    wait_for_metric(&pipe, "pipe_sls_retries_total", &["error_code=\"InvalidLz4Body\""], |count| count == 2.0).await;
    wait_for_metric(&pipe, "pipe_sls_retries_total", &["error_code=\"InvalidProtobufBody\""], |count| count == 2.0)
        .await;
    wait_for_metric(
        &pipe,
        "pipe_component_errors_total",
        &["component_id=\"sls\"", "error_type=\"parse_failed\""],
        |count| count == 4.0,
    )
    .await;
    pipe.signal("INT");
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
    assert_eq!(sorted(delivered(&out)), sorted(expected));
}

#[tokio::test]
async fn an_invalid_cursor_restarts_the_shard_from_its_oldest_data() {
    let demo = DemoData::new(51, 8, 5).with_log_time(LOG_TIME);
    let emulator = emulator(&[(LOGSTORE, 1)], Some(demo)).await;
    let control = emulator.control();
    control.inject_fault(SlsFault::new(FaultEffect::InvalidCursor).on_api(SlsApi::PullLogs).on_shard(0).times(1));
    let scratch = Scratch::new();
    let mut pipe = start(&sls_to_file(&scratch, "out", &emulator.endpoint(), &format!("\"{LOGSTORE}\""), ""));
    let expected = flattened(&demo_groups(&demo, LOGSTORE, 0));
    let out = scratch.path("out.ndjson");
    wait_until_delivered(&out, expected.len()).await;
    wait_for_metric(&pipe, "pipe_sls_cursor_resets_total", &["logstore=\"app-logs\""], |count| count == 1.0).await;
    pipe.signal("INT");
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
    assert!(pipe.stderr().contains("restarting the shard from its oldest data"), "{}", pipe.stderr());
    // The first pull was refused, so the restart at `begin` repeats nothing.
    assert_eq!(sorted(delivered(&out)), sorted(expected));
}

#[tokio::test]
async fn bad_credentials_fail_the_source_on_health_and_commit_nothing() {
    let demo = DemoData::new(61, 5, 5).with_log_time(LOG_TIME);
    let emulator = emulator(&[(LOGSTORE, 2)], Some(demo)).await;
    let control = emulator.control();
    let scratch = Scratch::new();
    let wrong_secret = "wrong-secret-do-not-log";
    // A second, healthy source keeps the process up so /health can be read.
    let config = sls_to_file(&scratch, "out", &emulator.endpoint(), &format!("\"{LOGSTORE}\""), "")
        .to_str()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            text + "\n[sources.demo]\ntype = \"demo\"\nrate = 5\n\n[sinks.null]\ntype = \"blackhole\"\ninputs = [\"demo\"]\n"
        })
        .unwrap();
    let config = scratch.write("bad.toml", &config);
    let mut pipe = Pipe::start(&["run", config.to_str().unwrap()], &[("TEST_SLS_SECRET", wrong_secret)]);
    let api = pipe.api_url().await;
    let health = wait_for_async("the sls source to fail on /health", || {
        let url = format!("{api}/health");
        async move {
            let (status, body) = http_get(&url).await;
            let health: Value = serde_json::from_str(&body).ok()?;
            (status == 503 && health["components"]["sls"]["status"] == "failed").then_some(health)
        }
    })
    .await;
    let reason = health["components"]["sls"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("credentials") && reason.contains("access_key_secret"), "{reason}");
    assert!(!reason.contains(wrong_secret));
    pipe.signal("INT");
    assert_eq!(pipe.wait_exit().await, 1, "a failed component makes the exit code 1");
    let stderr = pipe.stderr();
    assert!(stderr.contains("refused the credentials"), "{stderr}");
    assert!(!stderr.contains(wrong_secret), "the secret leaked into the log");
    assert_eq!(control.stats().checkpoint_updates, 0);
    assert!(control
        .checkpoints(PROJECT, LOGSTORE, GROUP)
        .map(|all| all.iter().all(|entry| entry.checkpoint.is_empty()))
        .unwrap_or(true));
}
