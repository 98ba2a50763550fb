//! The `wecom` and `http` sinks in real pipelines against the testkit
//! emulators on loopback: in-process topologies fed by a test source (for
//! precise control of alert events and acknowledgements) and the `pipe`
//! binary (for restarts with a durable queue and `/health`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ChildStdin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipe::config::graph::{BuiltPipeline, BuiltSink, BuiltSource, OutputRef};
use pipe::config::GlobalOptions;
use pipe::event::{BatchNotifier, BatchStatus, BatchStatusReceiver, EventFinalizer, EventMetadata, LogEvent, Value};
use pipe::observability::health::ComponentStatus;
use pipe::observability::Telemetry;
use pipe::sinks::SinkConfig;
use pipe::topology::buffer::BufferOptions;
use pipe::topology::{
    BuildContext, ComponentError, ComponentFuture, RunningTopology, Source, SourceContext, StopReport,
};
use serde_json::json;
use testkit::wecom::{WecomApp, WecomEmulator, WecomFault, WecomFaultTarget, WecomMessage, WecomRobot};
use tokio::sync::{mpsc, oneshot};

use super::support::{http_get, metric_value, read_ndjson, wait_for, Pipe, Scratch};

const ROBOT_KEY: &str = "5f1c7a0e-robot-key-for-tests";
const CORP_ID: &str = "ww0123456789abcdef";
const CORP_SECRET: &str = "app-secret-for-tests-0123";
const AGENT_ID: i64 = 1000002;
const SINK_ID: &str = "alerts";
const WAIT: Duration = Duration::from_secs(30);

type Feed = mpsc::Sender<(Vec<serde_json::Value>, oneshot::Sender<BatchStatusReceiver>)>;

/// Emits each batch the test hands it, with one finalizer per batch, and
/// hands back the batch's acknowledgement receiver.
struct FedSource {
    batches: mpsc::Receiver<(Vec<serde_json::Value>, oneshot::Sender<BatchStatusReceiver>)>,
}

impl Source for FedSource {
    fn run(mut self: Box<Self>, mut cx: SourceContext) -> ComponentFuture {
        Box::pin(async move {
            while let Some((events, reply)) = self.batches.recv().await {
                let (notifier, status) = BatchNotifier::new_with_receiver();
                let batch = events
                    .into_iter()
                    .map(|json| {
                        let Value::Object(fields) = Value::from(json) else { panic!("test events are objects") };
                        LogEvent::new(fields, EventMetadata::new(Arc::clone(&cx.id), 100))
                            .with_finalizer(EventFinalizer::new(Arc::clone(&notifier)))
                    })
                    .collect();
                drop(notifier);
                cx.output.send(batch).await;
                let _ = reply.send(status);
            }
            Ok::<(), ComponentError>(())
        })
    }
}

/// A running in-process pipeline: `FedSource` → the sink under test.
struct Harness {
    topology: RunningTopology,
    telemetry: Telemetry,
    feed: Option<Feed>,
    data_dir: PathBuf,
}

impl Harness {
    fn start(data_dir: &Path, sink_toml: &str) -> Harness {
        let config: SinkConfig = toml::from_str(sink_toml).unwrap_or_else(|error| panic!("{error}\n{sink_toml}"));
        let sink = config
            .build(&BuildContext { id: SINK_ID.into(), data_dir: data_dir.to_path_buf() })
            .unwrap_or_else(|error| panic!("{error}"));
        let (feed, batches) = mpsc::channel(16);
        let pipeline = BuiltPipeline {
            global: GlobalOptions { data_dir: data_dir.to_path_buf(), ..GlobalOptions::default() },
            sources: vec![BuiltSource {
                id: "fed".into(),
                component_type: "test",
                source: Box::new(FedSource { batches }),
            }],
            transforms: vec![],
            sinks: vec![BuiltSink {
                id: SINK_ID.into(),
                component_type: config.type_name(),
                inputs: vec![OutputRef { component: "fed".into(), output: None }],
                buffer: BufferOptions::default(),
                sink,
            }],
            warnings: vec![],
        };
        let telemetry = Telemetry::default();
        let topology = RunningTopology::start(pipeline, telemetry.clone());
        Harness { topology, telemetry, feed: Some(feed), data_dir: data_dir.to_path_buf() }
    }

    /// Sends one batch and returns its acknowledgement.
    async fn send(&self, events: Vec<serde_json::Value>) -> BatchStatusReceiver {
        let (reply, status) = oneshot::channel();
        self.feed.as_ref().expect("the feed is open").send((events, reply)).await.expect("the source runs");
        status.await.expect("the source replies")
    }

    fn sink_status(&self) -> Option<ComponentStatus> {
        self.telemetry.health.status_of(SINK_ID)
    }

    /// Waits for the sink to fail and returns the reason /health shows.
    async fn failure_reason(&self) -> String {
        wait_for("the sink to fail", || match self.sink_status() {
            Some(ComponentStatus::Failed { reason }) => Some(reason),
            _ => None,
        })
        .await
    }

    fn dead_letters(&self) -> Vec<serde_json::Value> {
        read_ndjson(&self.data_dir.join("dead_letter").join(format!("{SINK_ID}.ndjson")))
    }

    fn queue_file(&self) -> PathBuf {
        self.data_dir.join("wecom").join(SINK_ID).join("pending.ndjson")
    }

    /// Closes the input (the sink drains) and stops the topology.
    async fn stop(mut self) -> StopReport {
        self.feed = None;
        self.topology.stop(WAIT).await
    }
}

fn robot_sink(wecom: &WecomEmulator, extra: &str) -> String {
    format!(
        "type = \"wecom\"\nmode = \"robot\"\nendpoint = \"{}\"\nwebhook_key = \"{ROBOT_KEY}\"\nretry = {{ initial_backoff = \"50ms\", max_backoff = \"200ms\" }}\n{extra}",
        wecom.url()
    )
}

fn app_sink(wecom: &WecomEmulator, extra: &str) -> String {
    format!(
        "type = \"wecom\"\nmode = \"app\"\nendpoint = \"{}\"\ncorp_id = \"{CORP_ID}\"\ncorp_secret = \"{CORP_SECRET}\"\nagent_id = {AGENT_ID}\nretry = {{ initial_backoff = \"50ms\", max_backoff = \"200ms\" }}\n{extra}",
        wecom.url()
    )
}

/// An alert event as the rules engine emits it.
fn alert(rule: &str, marker: &str) -> serde_json::Value {
    json!({
        "rule_name": rule,
        "alert_subject": format!("{rule}: {marker}"),
        "num_hits": 12,
        "num_matches": 1,
        "@timestamp": "2026-11-21T05:00:00Z",
        "query_key": "host",
        "match_body": {
            "host": "wallet-prod-01",
            "source": "/data/logs/wallet/app.log",
            "level": "ERROR",
            "message": format!("java.lang.IllegalStateException: {marker}"),
        }
    })
}

async fn robot_emulator() -> WecomEmulator {
    WecomEmulator::builder().robot(WecomRobot::new(ROBOT_KEY).name("ops")).start().await.expect("emulator starts")
}

async fn app_emulator() -> WecomEmulator {
    WecomEmulator::builder().app(WecomApp::new(CORP_ID, CORP_SECRET, AGENT_ID)).start().await.expect("emulator starts")
}

async fn messages(wecom: &WecomEmulator, count: usize) -> Vec<WecomMessage> {
    wecom.control().wait_for_messages(count, WAIT).await.unwrap_or_else(|error| panic!("{error:?}"))
}

/// Waits until every marker appears in some accepted message, then returns
/// all messages (grouping may put several alerts in one message).
async fn messages_with(wecom: &WecomEmulator, markers: &[String]) -> Vec<WecomMessage> {
    wait_for("every alert to reach WeCom", || {
        let received = wecom.control().messages();
        markers.iter().all(|marker| occurrences(&received, marker) > 0).then_some(received)
    })
    .await
}

/// How many times an alert titled `title` (its `alert_subject` line) was
/// delivered, across all messages.
fn occurrences(messages: &[WecomMessage], title: &str) -> usize {
    messages
        .iter()
        .map(|message| message.content.as_deref().unwrap_or_default().lines().filter(|line| *line == title).count())
        .sum()
}

#[tokio::test]
async fn robot_groups_a_burst_into_one_message_and_acknowledges_once_queued() {
    let wecom = robot_emulator().await;
    let scratch = Scratch::new();
    let harness = Harness::start(scratch.dir.path(), &robot_sink(&wecom, "group_wait = \"300ms\"\ngroup_max = 2"));

    let status = harness
        .send(vec![alert("payment errors", "m-1"), alert("payment errors", "m-2"), alert("login failures", "m-3")])
        .await;
    assert_eq!(status.await, BatchStatus::Delivered, "acknowledged once durably queued");
    let received = messages(&wecom, 1).await;
    assert_eq!(received.len(), 1);
    let content = received[0].content.clone().unwrap();
    assert!(content.starts_with("3 alerts\n"), "{content}");
    assert!(content.contains("payment errors: m-1") && content.contains("payment errors: m-2"), "{content}");
    assert!(content.contains("Query key: host = wallet-prod-01"), "{content}");
    assert!(content.contains("… and 1 more alert"), "group_max = 2 shows two: {content}");
    assert_eq!(received[0].robot_name.as_deref(), Some("ops"));

    let report = harness.stop().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(std::fs::metadata(scratch.dir.path().join("wecom/alerts/pending.ndjson")).unwrap().len(), 0);
}

#[tokio::test]
async fn app_mode_sends_markdown_to_the_recipients_with_one_token() {
    let wecom = app_emulator().await;
    let scratch = Scratch::new();
    let harness = Harness::start(
        scratch.dir.path(),
        &app_sink(&wecom, "group_wait = \"0s\"\nformat = \"markdown\"\nto_user = \"alice|bob\"\nto_party = \"7\""),
    );
    assert_eq!(harness.send(vec![alert("disk full", "a-1")]).await.await, BatchStatus::Delivered);
    messages(&wecom, 1).await;
    assert_eq!(harness.send(vec![alert("disk full", "a-2")]).await.await, BatchStatus::Delivered);
    let received = messages(&wecom, 2).await;
    assert_eq!(received[0].agent_id, Some(AGENT_ID));
    assert_eq!(received[0].touser, vec!["alice".to_string(), "bob".to_string()]);
    assert_eq!(received[0].toparty, vec!["7".to_string()]);
    assert_eq!(received[0].msgtype, "markdown");
    assert!(received[0].content.as_deref().unwrap().starts_with("**<font color=\"warning\">disk full: a-1</font>**"));
    assert_eq!(wecom.control().gettoken_calls(), 1, "the token is cached");
    assert!(harness.stop().await.is_clean());
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_nothing_is_lost() {
    let wecom = app_emulator().await;
    let scratch = Scratch::new();
    let harness = Harness::start(scratch.dir.path(), &app_sink(&wecom, "group_wait = \"0s\""));
    harness.send(vec![alert("r", "t-1")]).await;
    messages(&wecom, 1).await;
    assert_eq!(wecom.control().expire_tokens(), 1);
    harness.send(vec![alert("r", "t-2")]).await;
    let received = messages(&wecom, 2).await;
    assert_eq!(wecom.control().gettoken_calls(), 2, "one refresh after 42001");
    assert_eq!(occurrences(&received, "r: t-2"), 1);
    assert_eq!(wecom.control().stats().rejected_by_errcode.get(&42001), Some(&1));
    assert!(harness.stop().await.is_clean());
}

#[tokio::test]
async fn the_sink_paces_itself_to_the_robot_limit() {
    const LIMIT: u32 = 3;
    let wecom = WecomEmulator::builder()
        .robot(WecomRobot::new(ROBOT_KEY))
        .robot_rate_limit(LIMIT, Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    let scratch = Scratch::new();
    let harness = Harness::start(
        scratch.dir.path(),
        &robot_sink(&wecom, "group_wait = \"0s\"\nrate_limit = { messages = 3, window = \"1s\" }"),
    );
    let started = Instant::now();
    for index in 0..7 {
        // One acknowledged batch at a time: separate arrivals, separate
        // messages (a burst read together would be grouped).
        assert_eq!(harness.send(vec![alert("burst", &format!("p-{index}"))]).await.await, BatchStatus::Delivered);
    }
    let received = messages(&wecom, 7).await;
    let elapsed = started.elapsed();
    for index in 0..7 {
        assert_eq!(occurrences(&received, &format!("burst: p-{index}")), 1, "burst: p-{index}");
    }
    assert_eq!(wecom.control().stats().robot_rate_limited, 0, "the sink never tripped WeCom's limit");
    assert!(elapsed >= Duration::from_secs(2), "7 sends at 3/s need two full windows, took {elapsed:?}");
    assert!(harness.stop().await.is_clean());
}

#[tokio::test]
async fn a_frequency_limit_from_wecom_delays_but_loses_nothing() {
    let wecom = WecomEmulator::builder()
        .robot(WecomRobot::new(ROBOT_KEY))
        .robot_rate_limit(2, Duration::from_secs(1))
        .start()
        .await
        .unwrap();
    let scratch = Scratch::new();
    // The sink believes it may send 100 a second, so WeCom answers 45009 and
    // the sink must wait the window out.
    let harness = Harness::start(
        scratch.dir.path(),
        &robot_sink(&wecom, "group_wait = \"0s\"\nrate_limit = { messages = 100, window = \"1s\" }"),
    );
    for index in 0..5 {
        assert_eq!(harness.send(vec![alert("flood", &format!("f-{index}"))]).await.await, BatchStatus::Delivered);
    }
    let received = messages(&wecom, 5).await;
    for index in 0..5 {
        assert_eq!(occurrences(&received, &format!("flood: f-{index}")), 1, "f-{index}");
    }
    assert!(wecom.control().stats().robot_rate_limited >= 1, "WeCom did refuse with 45009");
    assert!(harness.dead_letters().is_empty());
    assert!(harness.stop().await.is_clean());
}

#[tokio::test]
async fn an_over_long_alert_is_split_into_ordered_parts_within_the_byte_limit() {
    let wecom = robot_emulator().await;
    let scratch = Scratch::new();
    let harness =
        Harness::start(scratch.dir.path(), &robot_sink(&wecom, "group_wait = \"0s\"\nmessage_max_chars = 100000"));
    // 300 lines of CJK text: about 9 KB, far over 2048 bytes.
    let text: String = (0..300).map(|line| format!("第{line}行 数据库连接超时\n")).collect();
    let mut event = alert("long", "l-1");
    event["alert_text"] = json!(text);
    harness.send(vec![event]).await;
    let first = messages(&wecom, 1).await;
    let total: usize =
        first[0].content.as_deref().unwrap().rsplit_once("/").unwrap().1.trim_end_matches(')').parse().unwrap();
    assert!(total >= 4, "{total} parts");
    let received = messages(&wecom, total).await;
    assert_eq!(received.len(), total);
    let mut rejoined = String::new();
    for (index, message) in received.iter().enumerate() {
        let content = message.content.as_deref().unwrap();
        assert!(content.len() <= 2048, "part {index} has {} bytes", content.len());
        let marker = format!("\n({}/{total})", index + 1);
        rejoined.push_str(content.strip_suffix(&marker).unwrap_or_else(|| panic!("part {index} out of order")));
        rejoined.push('\n');
    }
    for line in [0, 150, 299] {
        assert!(rejoined.contains(&format!("第{line}行 数据库连接超时\n")), "line {line} lost or cut");
    }
    assert!(harness.stop().await.is_clean());
}

#[tokio::test]
async fn a_restarted_pipeline_sends_alerts_queued_while_wecom_was_unreachable_exactly_once() {
    let wecom = robot_emulator().await;
    let scratch = Scratch::new();
    wecom.control().fail_next(100_000, WecomFaultTarget::Robot, WecomFault::DropConnection).unwrap();
    let sink = robot_sink(&wecom, "group_wait = \"0s\"\ndrain_timeout = \"300ms\"\nrequest_timeout = \"2s\"");
    let harness = Harness::start(scratch.dir.path(), &sink);
    for index in 0..4 {
        let status = harness.send(vec![alert("outage", &format!("q-{index}"))]).await;
        assert_eq!(status.await, BatchStatus::Delivered, "acknowledged before WeCom took it");
    }
    wait_for("failed delivery attempts", || (wecom.control().stats().dropped_connections >= 2).then_some(())).await;
    let queue_file = harness.queue_file();
    assert!(harness.stop().await.is_clean(), "the drain deadline leaves the rest queued");
    assert!(std::fs::read_to_string(&queue_file).unwrap().contains("q-3"), "still queued on disk");
    assert!(wecom.control().messages().is_empty());

    wecom.control().clear_faults();
    let harness =
        Harness::start(scratch.dir.path(), &sink.replace("drain_timeout = \"300ms\"", "drain_timeout = \"20s\""));
    let markers: Vec<String> = (0..4).map(|index| format!("outage: q-{index}")).collect();
    messages_with(&wecom, &markers).await;
    assert!(harness.stop().await.is_clean());
    let received = wecom.control().messages();
    for marker in &markers {
        assert_eq!(occurrences(&received, marker), 1, "{marker} delivered exactly once");
    }
    assert_eq!(std::fs::metadata(&queue_file).unwrap().len(), 0);
}

#[tokio::test]
async fn an_alert_queued_longer_than_alert_time_limit_is_dead_lettered_not_sent() {
    let wecom = robot_emulator().await;
    let scratch = Scratch::new();
    // A queue left behind by an earlier run, three days ago.
    let queue_dir = scratch.dir.path().join("wecom").join(SINK_ID);
    std::fs::create_dir_all(&queue_dir).unwrap();
    let three_days_ago = chrono::Utc::now().timestamp_millis() - 3 * 24 * 3600 * 1000;
    let record = json!({"op": "alert", "id": 1, "queued_at_ms": three_days_ago, "event": alert("stale", "old-1")});
    std::fs::write(queue_dir.join("pending.ndjson"), format!("{record}\n")).unwrap();

    let harness = Harness::start(scratch.dir.path(), &robot_sink(&wecom, "group_wait = \"0s\""));
    wait_for("the stale alert to be dead-lettered", || (harness.dead_letters().len() == 1).then_some(())).await;
    assert!(harness.dead_letters()[0]["reason"].as_str().unwrap().contains("alert_time_limit (2d)"));
    harness.send(vec![alert("fresh", "new-1")]).await;
    let received = messages(&wecom, 1).await;
    assert_eq!(occurrences(&received, "fresh: new-1"), 1);
    assert_eq!(occurrences(&received, "stale: old-1"), 0);
    assert!(harness.stop().await.is_clean());
}

#[tokio::test]
async fn a_bad_webhook_key_fails_the_sink_on_health_and_dead_letters_the_alert() {
    let wecom = robot_emulator().await;
    let scratch = Scratch::new();
    let sink = robot_sink(&wecom, "group_wait = \"0s\"").replace(ROBOT_KEY, "revoked-key-0000");
    let harness = Harness::start(scratch.dir.path(), &sink);
    harness.send(vec![alert("r", "bad-1")]).await;
    let reason = harness.failure_reason().await;
    assert!(reason.contains("93000") && reason.contains("webhook_key"), "{reason}");
    assert!(!reason.contains("revoked-key-0000"), "the key leaked into /health: {reason}");
    let (healthy, _) = harness.telemetry.health.report();
    assert!(!healthy);
    let dead = harness.dead_letters();
    assert_eq!(dead.len(), 1);
    assert!(dead[0]["reason"].as_str().unwrap().contains("93000"));
    assert_eq!(dead[0]["event"]["match_body"]["message"], "java.lang.IllegalStateException: bad-1");
    let report = harness.stop().await;
    assert_eq!(report.failed, vec![SINK_ID.to_string()]);
}

#[tokio::test]
async fn a_bad_corp_secret_fails_the_sink_and_dead_letters_the_alert() {
    let wecom = app_emulator().await;
    let scratch = Scratch::new();
    let sink = app_sink(&wecom, "group_wait = \"0s\"").replace(CORP_SECRET, "wrong-secret-9999");
    let harness = Harness::start(scratch.dir.path(), &sink);
    harness.send(vec![alert("r", "bad-2")]).await;
    let reason = harness.failure_reason().await;
    assert!(reason.contains("40001") && reason.contains("corp_secret"), "{reason}");
    assert!(!reason.contains("wrong-secret-9999"), "{reason}");
    assert_eq!(harness.dead_letters().len(), 1);
    assert!(wecom.control().messages().is_empty());
    harness.stop().await;
}

#[tokio::test]
async fn a_refused_message_is_dead_lettered_and_the_sink_carries_on() {
    let wecom = robot_emulator().await;
    let scratch = Scratch::new();
    wecom.control().fail_next(1, WecomFaultTarget::Robot, WecomFault::Errcode { errcode: 40058 }).unwrap();
    let harness = Harness::start(scratch.dir.path(), &robot_sink(&wecom, "group_wait = \"0s\""));
    harness.send(vec![alert("r", "refused-1")]).await;
    wait_for("the dead letter", || (harness.dead_letters().len() == 1).then_some(())).await;
    harness.send(vec![alert("r", "fine-2")]).await;
    let received = messages(&wecom, 1).await;
    assert_eq!(occurrences(&received, "r: fine-2"), 1);
    assert!(harness.dead_letters()[0]["reason"].as_str().unwrap().contains("40058"));
    assert!(matches!(harness.sink_status(), Some(ComponentStatus::Running)));
    assert!(harness.stop().await.is_clean());
}

#[tokio::test]
async fn busy_answers_are_retried_until_delivered() {
    let wecom = robot_emulator().await;
    let scratch = Scratch::new();
    wecom.control().fail_next(3, WecomFaultTarget::Robot, WecomFault::Errcode { errcode: -1 }).unwrap();
    let harness = Harness::start(scratch.dir.path(), &robot_sink(&wecom, "group_wait = \"0s\""));
    harness.send(vec![alert("r", "busy-1")]).await;
    let received = messages(&wecom, 1).await;
    assert_eq!(occurrences(&received, "r: busy-1"), 1);
    assert_eq!(wecom.control().stats().rejected_by_errcode.get(&-1), Some(&3));
    assert!(harness.stop().await.is_clean());
}

/// Starts `pipe run CONFIG` with standard input piped, so the test decides
/// when input ends (dropping the writer closes it).
fn start_with_stdin(config: &Path) -> (Pipe, ChildStdin) {
    Pipe::start_with_stdin(&["run", config.to_str().unwrap()], &[("WECOM_TEST_WEBHOOK_KEY", ROBOT_KEY)])
}

fn write_line(stdin: &mut ChildStdin, line: &str) {
    stdin.write_all(line.as_bytes()).unwrap();
    stdin.write_all(b"\n").unwrap();
    stdin.flush().unwrap();
}

fn stdin_to_wecom(scratch: &Scratch, wecom: &WecomEmulator, drain_timeout: &str) -> PathBuf {
    scratch.write(
        "pipe.toml",
        &format!(
            r#"
data_dir = "{{dir}}/data"
shutdown_timeout = "20s"
[api]
address = "127.0.0.1:0"

[sources.alerts_in]
type = "stdin"
decoding = "json"

[sinks.{SINK_ID}]
type = "wecom"
inputs = ["alerts_in"]
mode = "robot"
endpoint = "{endpoint}"
webhook_key = "${{WECOM_TEST_WEBHOOK_KEY}}"
group_wait = "0s"
drain_timeout = "{drain_timeout}"
request_timeout = "2s"
retry = {{ initial_backoff = "50ms", max_backoff = "200ms" }}
"#,
            endpoint = wecom.url()
        ),
    )
}

#[tokio::test]
async fn the_pipe_binary_resends_queued_alerts_exactly_once_after_a_restart() {
    let wecom = robot_emulator().await;
    let scratch = Scratch::new();
    wecom.control().fail_next(100_000, WecomFaultTarget::Robot, WecomFault::Errcode { errcode: -1 }).unwrap();

    let config = stdin_to_wecom(&scratch, &wecom, "300ms");
    let (mut first, mut first_input) = start_with_stdin(&config);
    let api = first.api_url().await;
    for index in 0..5 {
        write_line(&mut first_input, &alert("binary", &format!("b-{index}")).to_string());
    }
    let depth = super::support::wait_for_async("five alerts queued and retried", || {
        let url = format!("{api}/metrics");
        let wecom = &wecom;
        async move {
            let (_, metrics) = http_get(&url).await;
            let depth = metric_value(&metrics, "pipe_wecom_queue_depth", &["component_id=\"alerts\""]).unwrap_or(0.0);
            (depth >= 5.0 && wecom.control().stats().robot_requests >= 2).then_some(depth)
        }
    })
    .await;
    assert_eq!(depth, 5.0, "all five alerts queued while WeCom is busy");
    let (_, metrics) = http_get(&format!("{api}/metrics")).await;
    assert!(metric_value(&metrics, "pipe_wecom_retries_total", &["errcode=\"-1\""]).unwrap_or(0.0) >= 1.0, "{metrics}");
    drop(first_input);
    assert_eq!(first.wait_exit().await, 0, "{}", first.stderr());
    assert!(first.stderr().contains("stay queued for the next start"), "{}", first.stderr());
    assert!(wecom.control().messages().is_empty());

    wecom.control().clear_faults();
    let (mut second, second_input) = start_with_stdin(&stdin_to_wecom(&scratch, &wecom, "20s"));
    drop(second_input);
    assert_eq!(second.wait_exit().await, 0, "{}", second.stderr());
    let markers: Vec<String> = (0..5).map(|index| format!("binary: b-{index}")).collect();
    let received = messages_with(&wecom, &markers).await;
    for marker in &markers {
        assert_eq!(occurrences(&received, marker), 1, "{marker} delivered exactly once");
    }
    for log in [first.stderr(), second.stderr()] {
        assert!(!log.contains(ROBOT_KEY), "the webhook key leaked into the log:\n{log}");
    }
}

#[tokio::test]
async fn the_pipe_binary_reports_a_revoked_robot_on_health() {
    let wecom = robot_emulator().await;
    let scratch = Scratch::new();
    wecom.control().set_robot_state(ROBOT_KEY, testkit::wecom::RobotState::Disabled);
    let (mut pipe, mut input) = start_with_stdin(&stdin_to_wecom(&scratch, &wecom, "1s"));
    let api = pipe.api_url().await;
    write_line(&mut input, &alert("r", "disabled-1").to_string());
    let body = super::support::wait_for_async("/health to report the failure", || {
        let url = format!("{api}/health");
        async move {
            let (status, body) = http_get(&url).await;
            (status == 503).then_some(body)
        }
    })
    .await;
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    let reason = health["components"][SINK_ID]["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("93004"), "{reason}");
    assert!(!body.contains(ROBOT_KEY));
    let dead = read_ndjson(&scratch.path("data/dead_letter/alerts.ndjson"));
    assert_eq!(dead.len(), 1);
    drop(input);
    assert_eq!(pipe.wait_exit().await, 1, "a failed component makes the exit status 1");
}

mod http_sink {
    use super::*;
    use testkit::http::EmulatorServer;

    fn http_sink_toml(url: &str, extra: &str) -> String {
        format!(
            "type = \"http\"\nuri = \"{url}/hooks/pager\"\nheaders = {{ Authorization = \"Bearer pager-token-0000\" }}\nretry = {{ initial_backoff = \"20ms\", max_backoff = \"100ms\" }}\n{extra}"
        )
    }

    #[tokio::test]
    async fn a_500_is_retried_and_the_batch_is_delivered_once_as_a_json_array() {
        let (router, stats) = testkit::blackhole::router();
        let server = EmulatorServer::start(router).await.unwrap();
        server.faults().fail_next(1, 500, "{\"error\":\"try later\"}");
        let scratch = Scratch::new();
        let harness = Harness::start(
            scratch.dir.path(),
            &http_sink_toml(&server.url(), "batch = { mode = \"per_batch\", max_events = 10, timeout = \"50ms\" }"),
        );
        let events: Vec<_> = (0..5).map(|index| json!({"message": format!("event {index}"), "host": "h1"})).collect();
        assert_eq!(harness.send(events).await.await, BatchStatus::Delivered);
        assert_eq!(stats.requests.load(std::sync::atomic::Ordering::SeqCst), 1, "delivered exactly once");
        let requests = server.requests().matching("/hooks/pager");
        assert_eq!(requests.len(), 2, "one refused, one accepted");
        let body: serde_json::Value = serde_json::from_slice(&requests[1].body).unwrap();
        assert_eq!(body.as_array().unwrap().len(), 5);
        assert_eq!(body[4]["message"], "event 4");
        assert_eq!(requests[1].headers["authorization"], "Bearer pager-token-0000");
        assert_eq!(requests[1].headers["content-type"], "application/json");
        assert!(harness.dead_letters().is_empty());
        assert!(harness.stop().await.is_clean());
    }

    #[tokio::test]
    async fn a_404_dead_letters_the_event_with_the_reason() {
        let (router, stats) = testkit::blackhole::router();
        let server = EmulatorServer::start(router).await.unwrap();
        server.faults().fail_next(1, 404, "{\"error\":\"no such hook\"}");
        let scratch = Scratch::new();
        let harness = Harness::start(scratch.dir.path(), &http_sink_toml(&server.url(), ""));
        let status = harness.send(vec![json!({"message": "first"})]).await;
        assert_eq!(status.await, BatchStatus::Delivered, "dead-lettered counts as settled");
        let dead = harness.dead_letters();
        assert_eq!(dead.len(), 1);
        assert!(dead[0]["reason"].as_str().unwrap().contains("404"), "{}", dead[0]);
        assert!(dead[0]["reason"].as_str().unwrap().contains("no such hook"));
        harness.send(vec![json!({"message": "second"})]).await.await;
        assert_eq!(stats.requests.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(harness.stop().await.is_clean());
    }

    #[tokio::test]
    async fn a_json_template_renders_one_escaped_body_per_event() {
        let (router, _stats) = testkit::blackhole::router();
        let server = EmulatorServer::start(router).await.unwrap();
        let scratch = Scratch::new();
        let harness = Harness::start(
            scratch.dir.path(),
            &http_sink_toml(&server.url(), "template = '{\"msgtype\": \"text\", \"text\": {\"content\": \"{{ rule_name }}: {{ match_body.message }}\"}}'"),
        );
        harness.send(vec![alert("quotes \"inside\"", "tmpl-1"), json!({"no": "rule"})]).await.await;
        let requests = server.requests().matching("/hooks/pager");
        assert_eq!(requests.len(), 1, "the event without the fields is dead-lettered, not sent");
        let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
        assert_eq!(body["text"]["content"], "quotes \"inside\": java.lang.IllegalStateException: tmpl-1");
        assert!(harness.dead_letters()[0]["reason"].as_str().unwrap().contains("rule_name"));
        assert!(harness.stop().await.is_clean());
    }
}
