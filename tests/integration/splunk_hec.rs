//! The `splunk_hec` sink against the testkit HEC emulator on a loopback
//! port: the real `pipe` binary for whole pipelines (delivery, outages,
//! acknowledgements, a bad token), and an in-process topology where a test
//! must hand-craft events and watch their batch status.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pipe::config::graph::{BuiltPipeline, BuiltSink, BuiltSource, OutputRef};
use pipe::config::GlobalOptions;
use pipe::event::{BatchNotifier, BatchStatus, EventFinalizer, EventMetadata, LogEvent, Value};
use pipe::observability::health::ComponentStatus;
use pipe::observability::Telemetry;
use pipe::sinks::splunk_hec::SplunkHecSinkConfig;
use pipe::topology::buffer::BufferOptions;
use pipe::topology::{
    BuildContext, ComponentError, ComponentFuture, RunningTopology, Source, SourceContext, StopReport,
};
use pipe_demo_logs::DemoLogGenerator;
use testkit::hec::{HecCode, HecEmulator, HecEndpoint, HecRecordedEvent, HecToken};
use testkit::tls::TlsIdentity;
use tokio::sync::oneshot;

use super::support::{http_get, metric_value, read_ndjson, wait_for, wait_for_async, Pipe, Scratch, DEADLINE};

const TOKEN: &str = "3f1c2a4e-9b7d-4c1e-8a2f-5d6e7f809a1b";

async fn emulator(use_ack: bool) -> HecEmulator {
    HecEmulator::builder().token(HecToken::new(TOKEN).use_ack(use_ack)).start().await.expect("start the HEC emulator")
}

/// Writes a demo → splunk_hec pipeline; `{dir}` is the scratch directory.
fn demo_pipeline(scratch: &Scratch, demo: &str, endpoint: &str, token: &str, sink: &str) -> PathBuf {
    let text = format!(
        r#"
data_dir = "{{dir}}/data"
shutdown_timeout = "20s"
[api]
address = "127.0.0.1:0"

[sources.demo]
type = "demo"
seed = 5
{demo}

[sinks.splunk]
type = "splunk_hec"
inputs = ["demo"]
endpoint = "{endpoint}"
token = "{token}"
{sink}
"#
    );
    scratch.write("pipe.toml", &text)
}

fn seq_of(event: &HecRecordedEvent) -> u64 {
    event.event["seq"]
        .as_str()
        .and_then(|seq| seq.parse().ok())
        .unwrap_or_else(|| panic!("no seq in {:?}", event.event))
}

/// How many times each demo sequence number arrived.
fn arrivals(events: &[HecRecordedEvent]) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for event in events {
        *counts.entry(seq_of(event)).or_default() += 1;
    }
    counts
}

fn epoch_seconds() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

#[tokio::test]
async fn demo_events_arrive_once_with_their_time_metadata_and_indexed_fields() {
    const COUNT: u64 = 2000;
    let hec = emulator(true).await;
    let scratch = Scratch::new();
    let sink = r#"
index = "sls"
host = "{{ host }}"
source = "{{ __tag__:__path__ }}"
sourcetype = "sls:{{ __topic__ }}"
fields = ["__source__"]
acknowledgements.query_interval = "100ms"
"#;
    let config = demo_pipeline(&scratch, &format!("count = {COUNT}"), &hec.url(), TOKEN, sink);
    let started = epoch_seconds();
    let mut pipe = Pipe::start(&["run", config.to_str().unwrap()], &[]);
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
    let finished = epoch_seconds();

    let events = hec.control().events();
    let counts = arrivals(&events);
    assert_eq!(counts.len() as u64, COUNT, "every sequence number arrives");
    assert!(counts.values().all(|count| *count == 1), "duplicates without any fault");
    assert_eq!(counts.keys().copied().collect::<Vec<_>>(), (1..=COUNT).collect::<Vec<_>>());

    // The demo source draws each log's nanoseconds from the same seeded
    // generator; only the seconds come from the clock.
    let mut generator = DemoLogGenerator::new(5);
    // The demo source cycles through its first 1024 generated logs.
    let nanoseconds: Vec<u32> = (0..1024).map(|_| generator.next_log(0).time_ns).collect();
    for event in &events {
        assert_eq!(event.endpoint, HecEndpoint::Event);
        assert_eq!(event.index, "sls");
        assert_eq!(event.host, event.event["host"].as_str().unwrap());
        assert_eq!(event.source, event.event["__tag__:__path__"].as_str().unwrap());
        assert_eq!(event.sourcetype, format!("sls:{}", event.event["__topic__"].as_str().unwrap()));
        assert_eq!(event.fields.as_ref().unwrap()["__source__"], event.event["__source__"]);
        let body = event.event.as_object().expect("the event is a JSON object");
        assert!(!body.contains_key("__time__") && !body.contains_key("__time_ns_part__"), "{body:?}");
        let seconds = event.time.trunc();
        assert!((started.trunc() - 1.0..=finished + 1.0).contains(&seconds), "time {} outside the run", event.time);
        let expected_fraction = f64::from(nanoseconds[(seq_of(event) as usize - 1) % nanoseconds.len()] / 1_000) / 1e6;
        assert!((event.time - seconds - expected_fraction).abs() < 2e-6, "time {} lost its nanoseconds", event.time);
    }
    let stats = hec.control().stats();
    assert_eq!(stats.acks.reported_true, stats.acks.issued, "every request was acknowledged once");
    assert!(pipe.stderr().contains("Splunk HEC health check passed"), "{}", pipe.stderr());
}

#[tokio::test]
async fn a_busy_hec_holds_the_pipeline_back_and_loses_nothing() {
    const COUNT: u64 = 1000;
    let hec = emulator(true).await;
    hec.control().set_busy(true);
    let scratch = Scratch::new();
    let sink = r#"
request.retry_initial_backoff = "50ms"
request.retry_max_backoff = "200ms"
acknowledgements.query_interval = "100ms"
"#;
    let config = demo_pipeline(&scratch, &format!("count = {COUNT}"), &hec.url(), TOKEN, sink);
    let mut pipe = Pipe::start(&["run", config.to_str().unwrap()], &[]);
    let api = pipe.api_url().await;
    wait_for("503 code 9 answers", || {
        (hec.control().stats().rejected_by_code.get(&9).copied().unwrap_or(0) >= 3).then_some(())
    })
    .await;

    let (_, metrics) = http_get(&format!("{api}/metrics")).await;
    let retries = metric_value(&metrics, "pipe_splunk_hec_retries_total", &["reason=\"server_busy\""]).unwrap_or(0.0);
    assert!(retries >= 1.0, "{metrics}");
    let (_, health) = http_get(&format!("{api}/health")).await;
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["components"]["splunk"]["status"], "degraded", "{health}");

    hec.control().set_busy(false);
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
    let counts = arrivals(&hec.control().events());
    assert_eq!(counts.keys().copied().collect::<Vec<_>>(), (1..=COUNT).collect::<Vec<_>>());
    assert!(counts.values().all(|count| *count == 1), "a 503 accepts nothing, so nothing may arrive twice");
}

#[tokio::test]
async fn source_acknowledgements_wait_for_indexer_acknowledgement() {
    const COUNT: usize = 500;
    const ACK_DELAY: Duration = Duration::from_secs(4);
    let hec = HecEmulator::builder()
        .token(HecToken::new(TOKEN).use_ack(true))
        .ack_delay(ACK_DELAY)
        .start()
        .await
        .expect("start the HEC emulator");
    let scratch = Scratch::new();
    let config = demo_pipeline(
        &scratch,
        &format!("count = {COUNT}\nbatch_size = 100"),
        &hec.url(),
        TOKEN,
        "acknowledgements.query_interval = \"100ms\"",
    );
    let mut pipe = Pipe::start(&["run", config.to_str().unwrap()], &[]);
    let api = pipe.api_url().await;
    hec.control().wait_for_events(COUNT, DEADLINE).await.expect("every event reaches HEC");
    let arrived = Instant::now();

    // Splunk has every event, but none is indexed yet: nothing is delivered
    // and the source still waits.
    // The emulator records events before the sink has read its answer: wait
    // for the sink to hold the ack ids.
    let metrics = wait_for_async("the sink to hold pending ack ids", || async {
        let (_, metrics) = http_get(&format!("{api}/metrics")).await;
        metric_value(&metrics, "pipe_splunk_hec_acks_pending", &["component_id=\"splunk\""])
            .filter(|pending| *pending >= 1.0)
            .map(|_| metrics)
    })
    .await;
    let source_pending = metric_value(&metrics, "pipe_source_acks_pending", &["component_id=\"demo\""]).unwrap();
    assert!(source_pending >= 1.0, "{metrics}");
    let delivered =
        metric_value(&metrics, "pipe_component_sent_events_total", &["component_id=\"splunk\""]).unwrap_or(0.0);
    assert_eq!(delivered, 0.0, "{metrics}");

    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
    assert!(arrived.elapsed() >= ACK_DELAY / 2, "the pipeline finished before Splunk acknowledged");
    let stats = hec.control().stats();
    assert_eq!(stats.acks.reported_true, stats.acks.issued);
    assert!(stats.acks.queries >= 2, "{stats:?}");
    assert_eq!(stats.accepted_events, COUNT as u64);
}

#[tokio::test]
async fn lost_acknowledgements_are_resent_after_the_timeout_without_loss() {
    const COUNT: u64 = 300;
    let hec = emulator(true).await;
    hec.control().lose_next_acks(1);
    let scratch = Scratch::new();
    let sink = r#"
batch.max_events = 100
request.concurrency = 1
acknowledgements.query_interval = "100ms"
acknowledgements.timeout = "1s"
"#;
    let config = demo_pipeline(&scratch, &format!("count = {COUNT}\nbatch_size = 100"), &hec.url(), TOKEN, sink);
    let mut pipe = Pipe::start(&["run", config.to_str().unwrap()], &[]);
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());

    let events = hec.control().events();
    let counts = arrivals(&events);
    assert_eq!(counts.keys().copied().collect::<Vec<_>>(), (1..=COUNT).collect::<Vec<_>>(), "no loss");
    let twice = counts.values().filter(|count| **count == 2).count();
    assert!(twice >= 1, "the request whose ack was lost was sent again");
    assert!(counts.values().all(|count| *count <= 2));
    let stats = hec.control().stats();
    assert_eq!(stats.acks.lost, 1);
    assert!(pipe.stderr().contains("resending"), "{}", pipe.stderr());
}

#[tokio::test]
async fn an_invalid_token_fails_the_sink_on_health_and_acknowledges_nothing() {
    const WRONG_TOKEN: &str = "0badc0de-0000-4000-8000-00000000dead";
    let hec = emulator(true).await;
    let scratch = Scratch::new();
    let config = demo_pipeline(&scratch, "rate = 500", &hec.url(), WRONG_TOKEN, "");
    let mut pipe = Pipe::start(&["run", config.to_str().unwrap()], &[]);
    let api = pipe.api_url().await;

    let health = wait_for_async("/health to report the failed sink", || async {
        let (status, body) = http_get(&format!("{api}/health")).await;
        (status == 503).then_some(body)
    })
    .await;
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["components"]["splunk"]["status"], "failed", "{health}");
    let reason = health["components"]["splunk"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("sink \"splunk\"") && reason.contains("\"token\"") && reason.contains("code 4"),
        "{reason}"
    );

    // The sink keeps draining, settling everything as errored: the source
    // sees failures and nothing is delivered.
    wait_for_async("the source to see errored batches", || async {
        let (_, metrics) = http_get(&format!("{api}/metrics")).await;
        metric_value(&metrics, "pipe_component_errors_total", &["component_id=\"demo\"", "delivery_failed"])
            .filter(|failed| *failed >= 2.0)
    })
    .await;
    let (_, metrics) = http_get(&format!("{api}/metrics")).await;
    let delivered =
        metric_value(&metrics, "pipe_component_sent_events_total", &["component_id=\"splunk\""]).unwrap_or(0.0);
    assert_eq!(delivered, 0.0);
    let stats = hec.control().stats();
    assert_eq!(stats.accepted_events, 0);
    assert!(stats.rejected_by_code.get(&4).copied().unwrap_or(0) >= 1, "{stats:?}");

    pipe.signal("INT");
    assert_eq!(pipe.wait_exit().await, 1, "a failed component makes the exit status 1");
    let stderr = pipe.stderr();
    assert!(stderr.contains("refused the token"), "{stderr}");
    assert!(!stderr.contains(WRONG_TOKEN), "the token must never be logged");
}

/// An HEC emulator serving HTTPS with a certificate from a fresh CA.
async fn https_emulator() -> (HecEmulator, TlsIdentity) {
    let identity = TlsIdentity::generate().expect("test certificates");
    let hec = HecEmulator::builder()
        .token(HecToken::new(TOKEN).use_ack(true))
        .tls(identity.clone())
        .start()
        .await
        .expect("start the HEC emulator");
    assert!(hec.url().starts_with("https://"), "{}", hec.url());
    (hec, identity)
}

#[tokio::test]
async fn https_with_the_servers_ca_in_tls_ca_file_delivers_every_event_once() {
    const COUNT: u64 = 300;
    let (hec, identity) = https_emulator().await;
    let scratch = Scratch::new();
    let ca_file = scratch.write("hec-ca.pem", identity.ca_pem());
    let sink = format!("tls.ca_file = {:?}\nacknowledgements.query_interval = \"100ms\"", ca_file.to_str().unwrap());
    let config = demo_pipeline(&scratch, &format!("count = {COUNT}"), &hec.url(), TOKEN, &sink);
    let mut pipe = Pipe::start(&["run", config.to_str().unwrap()], &[]);
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());

    let counts = arrivals(&hec.control().events());
    assert_eq!(counts.keys().copied().collect::<Vec<_>>(), (1..=COUNT).collect::<Vec<_>>());
    assert!(counts.values().all(|count| *count == 1));
    assert!(pipe.stderr().contains("Splunk HEC health check passed"), "{}", pipe.stderr());
}

#[tokio::test]
async fn an_untrusted_certificate_delivers_nothing_and_the_log_says_why() {
    let (hec, _) = https_emulator().await;
    let scratch = Scratch::new();
    // `tls.verify` defaults to true and the CA is not given.
    let sink = "request.retry_initial_backoff = \"50ms\"\nrequest.retry_max_backoff = \"200ms\"";
    let config = demo_pipeline(&scratch, "count = 100", &hec.url(), TOKEN, sink);
    let pipe = Pipe::start(&["run", config.to_str().unwrap()], &[]);
    let api = pipe.api_url().await;

    wait_for_async("requests to be retried for the failed handshake", || async {
        let (_, metrics) = http_get(&format!("{api}/metrics")).await;
        metric_value(&metrics, "pipe_splunk_hec_retries_total", &["reason=\"network\""])
            .filter(|retries| *retries >= 2.0)
    })
    .await;
    let (_, health) = http_get(&format!("{api}/health")).await;
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["components"]["splunk"]["status"], "degraded", "{health}");
    let reason = health["components"]["splunk"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("certificate"), "the reason names the certificate problem: {reason}");
    let (_, metrics) = http_get(&format!("{api}/metrics")).await;
    let delivered =
        metric_value(&metrics, "pipe_component_sent_events_total", &["component_id=\"splunk\""]).unwrap_or(0.0);
    assert_eq!(delivered, 0.0, "nothing counts as delivered");
    let stats = hec.control().stats();
    assert_eq!((stats.requests, stats.health_requests), (0, 0), "no request gets past the handshake");
    assert!(hec.control().events().is_empty());
}

#[tokio::test]
async fn tls_verify_false_accepts_an_unknown_certificate() {
    const COUNT: u64 = 50;
    let (hec, _) = https_emulator().await;
    let scratch = Scratch::new();
    let sink = "tls.verify = false\nacknowledgements.query_interval = \"100ms\"";
    let config = demo_pipeline(&scratch, &format!("count = {COUNT}"), &hec.url(), TOKEN, sink);
    let mut pipe = Pipe::start(&["run", config.to_str().unwrap()], &[]);
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
    assert_eq!(arrivals(&hec.control().events()).len() as u64, COUNT);
}

/// Emits one batch of the given events, then reports the batch's status.
struct OneBatchSource {
    events: Vec<serde_json::Value>,
    status: oneshot::Sender<BatchStatus>,
}

impl Source for OneBatchSource {
    fn run(self: Box<Self>, mut cx: SourceContext) -> ComponentFuture {
        Box::pin(async move {
            let (notifier, status) = BatchNotifier::new_with_receiver();
            let batch = self
                .events
                .into_iter()
                .map(|json| {
                    let Value::Object(fields) = Value::from(json) else { panic!("events are objects") };
                    LogEvent::new(fields, EventMetadata::new(Arc::clone(&cx.id), 100))
                        .with_finalizer(EventFinalizer::new(Arc::clone(&notifier)))
                })
                .collect();
            drop(notifier);
            cx.output.send(batch).await;
            drop(cx.output);
            let _ = self.status.send(status.await);
            Ok::<(), ComponentError>(())
        })
    }
}

/// How an in-process run ended.
struct OneBatchRun {
    status: BatchStatus,
    report: StopReport,
    telemetry: Telemetry,
}

/// Runs one batch through a splunk_hec sink configured by `sink` (TOML keys
/// after `endpoint` and `token`).
async fn run_one_batch(
    data_dir: &std::path::Path,
    hec: &HecEmulator,
    sink: &str,
    events: Vec<serde_json::Value>,
) -> OneBatchRun {
    let config: SplunkHecSinkConfig =
        toml::from_str(&format!("endpoint = \"{}\"\ntoken = \"{TOKEN}\"\n{sink}", hec.url())).expect("sink config");
    let built =
        config.build(&BuildContext { id: "splunk".into(), data_dir: data_dir.to_path_buf() }).expect("sink builds");
    let (status_sender, status) = oneshot::channel();
    let pipeline = BuiltPipeline {
        global: GlobalOptions { data_dir: data_dir.to_path_buf(), ..GlobalOptions::default() },
        sources: vec![BuiltSource {
            id: "hand".into(),
            component_type: "test",
            source: Box::new(OneBatchSource { events, status: status_sender }),
        }],
        transforms: vec![],
        sinks: vec![BuiltSink {
            id: "splunk".into(),
            component_type: "splunk_hec",
            inputs: vec![OutputRef { component: "hand".into(), output: None }],
            buffer: BufferOptions::default(),
            sink: built,
        }],
        warnings: vec![],
    };
    let telemetry = Telemetry::default();
    let mut topology = RunningTopology::start(pipeline, telemetry.clone());
    tokio::time::timeout(DEADLINE, topology.finished()).await.expect("the pipeline finishes");
    let report = topology.stop(Duration::from_secs(5)).await;
    let status = status.await.expect("the source reports its batch");
    OneBatchRun { status, report, telemetry }
}

fn numbered_events(count: i64) -> Vec<serde_json::Value> {
    (0..count).map(|n| serde_json::json!({"__time__": 1_700_000_000 + n, "n": n})).collect()
}

#[tokio::test]
async fn an_event_splunk_refuses_is_dead_lettered_and_the_rest_delivered_once() {
    let hec = emulator(true).await;
    let scratch = Scratch::new();
    let events: Vec<serde_json::Value> = (0..6)
        .map(|n| {
            // Indexed fields must be flat: Splunk refuses an object with code 15.
            let ctx = if n == 2 {
                serde_json::json!({"nested": {"deep": true}})
            } else {
                serde_json::json!(format!("plain-{n}"))
            };
            serde_json::json!({"__time__": 1_700_000_000 + n, "n": n, "ctx": ctx})
        })
        .collect();
    let sink = "fields = [\"ctx\"]\nacknowledgements.query_interval = \"100ms\"";
    let run = run_one_batch(&scratch.path("data"), &hec, sink, events).await;
    assert!(run.report.is_clean(), "{:?}", run.report);
    assert_eq!(run.status, BatchStatus::Delivered, "dead-lettered counts as delivered");

    let numbers: Vec<i64> = hec.control().events().iter().map(|event| event.event["n"].as_i64().unwrap()).collect();
    assert_eq!(numbers, vec![0, 1, 3, 4, 5], "the accepted prefix is not sent twice and the suffix is sent again");
    let dead = read_ndjson(&scratch.path("data").join("dead_letter").join("splunk.ndjson"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["event"]["n"], 2);
    let reason = dead[0]["reason"].as_str().unwrap();
    assert!(reason.contains("code 15") && reason.contains("event 2"), "{reason}");
}

#[tokio::test]
async fn the_raw_endpoint_sends_one_line_per_event_with_metadata_in_the_query() {
    let hec = emulator(false).await;
    let scratch = Scratch::new();
    let events = vec![
        serde_json::json!({"__time__": 1_700_000_000, "team": "a"}),
        serde_json::json!({"__time__": 1_700_000_001, "team": "b"}),
    ];
    let sink =
        "endpoint_target = \"raw\"\nindex = \"{{ team }}\"\nsourcetype = \"_json\"\nacknowledgements.indexer = false";
    let run = run_one_batch(&scratch.path("data"), &hec, sink, events).await;
    assert_eq!((run.status, run.report.is_clean()), (BatchStatus::Delivered, true));
    let events = hec.control().events();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|event| event.endpoint == HecEndpoint::Raw && event.sourcetype == "_json"));
    assert_eq!(events[0].index, "a");
    assert_eq!(events[1].index, "b");
    assert_eq!(events[0].event, serde_json::json!(r#"{"__time__":1700000000,"team":"a"}"#));
}

#[tokio::test]
async fn a_token_without_indexer_acknowledgement_falls_back_to_http_success() {
    let hec = emulator(false).await;
    let scratch = Scratch::new();
    let run = run_one_batch(&scratch.path("data"), &hec, "", numbered_events(10)).await;
    assert_eq!((run.status, run.report.is_clean()), (BatchStatus::Delivered, true));
    assert_eq!(hec.control().events().len(), 10);
    assert_eq!(hec.control().stats().acks.queries, 0, "no ackId, nothing to ask about");
}

#[tokio::test]
async fn a_required_health_check_that_fails_stops_the_sink_and_acknowledges_nothing() {
    let hec = emulator(true).await;
    hec.control().set_health(HecCode::UnhealthyQueuesFull).unwrap();
    let scratch = Scratch::new();
    let run = run_one_batch(&scratch.path("data"), &hec, "healthcheck.required = true", numbered_events(3)).await;
    assert_eq!(run.status, BatchStatus::Errored);
    assert_eq!(run.report.failed, vec!["splunk".to_string()]);
    let Some(ComponentStatus::Failed { reason }) = run.telemetry.health.status_of("splunk") else {
        panic!("{:?}", run.telemetry.health.status_of("splunk"))
    };
    assert!(reason.contains("code 18") && reason.contains("healthcheck.required"), "{reason}");
    assert_eq!(hec.control().stats().data_requests, 0);
}

#[tokio::test]
async fn an_optional_health_check_that_fails_does_not_stop_delivery() {
    let hec = emulator(true).await;
    hec.control().set_health(HecCode::UnhealthyQueuesFull).unwrap();
    let scratch = Scratch::new();
    let sink = "acknowledgements.query_interval = \"100ms\"";
    let run = run_one_batch(&scratch.path("data"), &hec, sink, numbered_events(3)).await;
    assert_eq!((run.status, run.report.is_clean()), (BatchStatus::Delivered, true));
    assert_eq!(hec.control().stats().health_requests, 1);
    assert_eq!(hec.control().events().len(), 3);
}

#[tokio::test]
async fn requests_over_the_server_limit_are_split_and_a_lone_oversized_event_is_dead_lettered() {
    let hec = HecEmulator::builder()
        .token(HecToken::new(TOKEN).use_ack(true))
        .max_content_length(250)
        .start()
        .await
        .expect("start the HEC emulator");
    let scratch = Scratch::new();
    let mut events = numbered_events(8);
    events.push(serde_json::json!({"__time__": 1_700_000_100, "n": 8, "pad": "x".repeat(300)}));
    let sink = "compression = \"none\"\nacknowledgements.query_interval = \"100ms\"";
    let run = run_one_batch(&scratch.path("data"), &hec, sink, events).await;
    assert_eq!((run.status, run.report.is_clean()), (BatchStatus::Delivered, true));

    let mut numbers: Vec<i64> = hec.control().events().iter().map(|event| event.event["n"].as_i64().unwrap()).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..8).collect::<Vec<_>>(), "every small event once");
    assert!(hec.control().stats().rejected_by_http_status.get(&413).copied().unwrap_or(0) >= 2);
    let dead = read_ndjson(&scratch.path("data").join("dead_letter").join("splunk.ndjson"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["event"]["n"], 8);
    assert!(dead[0]["reason"].as_str().unwrap().contains("413"), "{}", dead[0]["reason"]);
}
