//! `pipelines/prod.toml` end to end: the SLS emulator → the real `pipe`
//! binary → the Splunk HEC emulator, configured only through the environment
//! variables the original consumer script used, plus a small test overlay.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use testkit::hec::{AckSettings, HecEmulator, HecToken};
use testkit::sls::{demo_log_groups, DemoData, SlsEmulator};

use super::support::{http_get, metric_value, wait_for, wait_for_async, Pipe, Scratch};

const PROJECT: &str = "prod-project";
const LOGSTORE: &str = "app-logs";
const GROUP: &str = "syc_data";
const KEY_ID: &str = "prod-key-id";
const KEY_SECRET: &str = "prod-key-secret";
const TOKEN: &str = "6a1d2f3c-0000-4000-8000-00000000c0de";
const SHARDS: u32 = 3;
const LOG_TIME: u32 = 1_700_000_000;

/// Timings shortened for a test; everything else comes from prod.toml.
const OVERLAY: &str = r#"
[api]
address = "127.0.0.1:0"

[sources.sls]
heartbeat_interval = "1s"
fetch_interval = "100ms"
checkpoint_interval = "200ms"

[sinks.splunk]
batch.timeout = "100ms"
acknowledgements.query_interval = "200ms"
request.retry_initial_backoff = "100ms"
request.retry_max_backoff = "500ms"
"#;

struct Setup {
    sls: SlsEmulator,
    hec: HecEmulator,
    scratch: Scratch,
    overlay: PathBuf,
    expected: HashMap<String, usize>,
}

fn prod_toml() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/prod.toml")
}

/// One log per group, so each log keeps its own topic (ActionTrail included).
async fn setup(groups_per_shard: usize, hec_token: HecToken) -> Setup {
    let demo = DemoData::new(11, groups_per_shard, 1).with_log_time(LOG_TIME);
    let sls = SlsEmulator::builder()
        .credentials(KEY_ID, KEY_SECRET)
        .logstore(PROJECT, LOGSTORE, SHARDS)
        .demo_data(PROJECT, LOGSTORE, demo)
        .build()
        .await
        .expect("sls emulator");
    let hec = HecEmulator::builder().token(hec_token).start().await.expect("hec emulator");
    let mut expected = HashMap::new();
    for shard in 0..SHARDS {
        for group in demo_log_groups(&demo, LOGSTORE, shard, LOG_TIME).0 {
            for log in &group.logs {
                let key = log
                    .contents
                    .iter()
                    .map(|content| format!("{}={}", content.key, content.value))
                    .collect::<Vec<_>>()
                    .join("|");
                *expected.entry(key).or_insert(0) += 1;
            }
        }
    }
    let scratch = Scratch::new();
    let overlay = scratch.write("test-overlay.toml", OVERLAY);
    Setup { sls, hec, scratch, overlay, expected }
}

impl Setup {
    fn total(&self) -> usize {
        self.expected.values().sum()
    }

    fn start(&self) -> Pipe {
        let sls_endpoint = format!("http://{}", self.sls.endpoint());
        let data_dir = self.scratch.path("data").display().to_string();
        Pipe::start(
            &["run", prod_toml().to_str().unwrap(), self.overlay.to_str().unwrap()],
            &[
                ("SLS_ENDPOINT", sls_endpoint.as_str()),
                ("SLS_AK_ID", KEY_ID),
                ("SLS_AK_KEY", KEY_SECRET),
                ("SLS_PROJECT", PROJECT),
                ("SLS_LOGSTORE", LOGSTORE),
                ("SLS_CG", GROUP),
                ("SPLUNK_HEC_ENDPOINT", self.hec.url().as_str()),
                ("SPLUNK_HEC_TOKEN", TOKEN),
                ("SPLUNK_INDEX", "sls"),
                ("SPLUNK_SOURCETYPE", "aliyun:sls"),
                ("SPLUNK_SOURCE", "sls-consumer"),
                ("PIPE_DATA_DIR", data_dir.as_str()),
            ],
        )
    }

    /// Content key of each event HEC accepted, with its multiplicity.
    fn delivered(&self) -> HashMap<String, usize> {
        let mut delivered = HashMap::new();
        for event in self.hec.control().events() {
            let body = event.event.as_object().expect("event body is an object");
            let key = body
                .iter()
                .filter(|(name, _)| !name.starts_with("__"))
                .map(|(name, value)| match value {
                    Value::String(text) => format!("{name}={text}"),
                    // json_expand turned ActionTrail `event` text into an object;
                    // compare it as compact JSON, which is how SLS held it.
                    other => format!("{name}={}", serde_json::to_string(other).unwrap()),
                })
                .collect::<Vec<_>>()
                .join("|");
            *delivered.entry(key).or_insert(0) += 1;
        }
        delivered
    }

    fn checkpoints(&self) -> Vec<Option<String>> {
        (0..SHARDS).map(|shard| self.sls.control().checkpoint(PROJECT, LOGSTORE, GROUP, shard).unwrap()).collect()
    }

    fn end_cursors(&self) -> Vec<Option<String>> {
        (0..SHARDS)
            .map(|shard| {
                Some(self.sls.control().cursor(PROJECT, LOGSTORE, shard, testkit::sls::CursorPosition::End).unwrap())
            })
            .collect()
    }

    async fn wait_all_delivered(&self) {
        let total = self.total();
        wait_for(&format!("{total} events at HEC"), || (self.hec.control().events().len() >= total).then_some(()))
            .await;
    }

    async fn wait_checkpoints_at_end(&self) {
        let end = self.end_cursors();
        wait_for("every shard checkpoint at its end cursor", || (self.checkpoints() == end).then_some(())).await;
    }
}

#[tokio::test]
async fn every_log_arrives_once_with_its_envelope_and_the_checkpoint_reaches_the_end() {
    let setup = setup(40, HecToken::new(TOKEN).use_ack(true)).await;
    let mut pipe = setup.start();
    setup.wait_all_delivered().await;
    setup.wait_checkpoints_at_end().await;

    let delivered = setup.delivered();
    assert_eq!(delivered, setup.expected, "every log exactly once, contents equal");
    let mut expanded = 0;
    for event in setup.hec.control().events() {
        assert_eq!(event.index, "sls");
        assert_eq!(event.sourcetype, "aliyun:sls");
        assert_eq!(event.source, "sls-consumer");
        let body = event.event.as_object().unwrap();
        assert!(
            !body.contains_key("__time__") && !body.contains_key("__time_ns_part__"),
            "time moved to the envelope: {body:?}"
        );
        assert!((event.time - f64::from(LOG_TIME)).abs() < 1.0, "time {} comes from __time__", event.time);
        if body["__topic__"] == "actiontrail_audit_event" {
            assert!(body["event"]["userIdentity"].is_object(), "ActionTrail JSON expanded: {body:?}");
            expanded += 1;
        }
    }
    assert!(expanded > 0, "the demo data holds ActionTrail events");
    pipe.signal("INT");
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
}

#[tokio::test]
async fn a_busy_splunk_holds_the_sls_checkpoint_back_and_nothing_is_lost() {
    let setup = setup(20, HecToken::new(TOKEN).use_ack(true)).await;
    setup.hec.control().set_busy(true);
    let mut pipe = setup.start();
    let api = pipe.api_url().await;
    wait_for_async("the sink to retry a busy Splunk", || async {
        let metrics = http_get(&format!("{api}/metrics")).await.1;
        metric_value(&metrics, "pipe_splunk_hec_retries_total", &["reason=\"server_busy\""])
            .filter(|retries| *retries >= 3.0)
    })
    .await;
    assert!(setup.sls.control().stats().pulls.log_groups > 0, "the source has read data");
    assert!(
        setup.checkpoints().iter().all(Option::is_none),
        "no checkpoint passes undelivered data: {:?}",
        setup.checkpoints()
    );

    setup.hec.control().set_busy(false);
    setup.wait_all_delivered().await;
    setup.wait_checkpoints_at_end().await;
    assert_eq!(setup.delivered(), setup.expected);
    pipe.signal("INT");
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
}

#[tokio::test]
async fn kill_9_in_the_middle_and_restart_loses_nothing() {
    let setup = setup(300, HecToken::new(TOKEN).use_ack(true)).await;
    // Indexer acknowledgements take a while: data reaches HEC, but the SLS
    // checkpoint cannot pass it yet when the process is killed.
    let slow_acks = AckSettings { delay: Duration::from_secs(3), ..setup.hec.control().ack_settings() };
    setup.hec.control().set_ack_settings(slow_acks).expect("valid ack settings");
    let mut first = setup.start();
    wait_for("data at HEC", || (!setup.hec.control().events().is_empty()).then_some(())).await;
    first.signal("KILL");
    first.wait_exit().await;
    assert_ne!(setup.checkpoints(), setup.end_cursors(), "killed before everything was committed");

    let fast_acks = AckSettings { delay: Duration::ZERO, ..setup.hec.control().ack_settings() };
    setup.hec.control().set_ack_settings(fast_acks).expect("valid ack settings");
    let mut second = setup.start();
    wait_for("every log at HEC after the restart", || {
        let delivered = setup.delivered();
        setup.expected.keys().all(|key| delivered.contains_key(key)).then_some(())
    })
    .await;
    setup.wait_checkpoints_at_end().await;
    let delivered = setup.delivered();
    assert!(delivered.keys().all(|key| setup.expected.contains_key(key)), "nothing but the loaded logs");
    second.signal("INT");
    assert_eq!(second.wait_exit().await, 0, "{}", second.stderr());
}

#[tokio::test]
async fn an_invalid_token_is_a_clear_error_and_nothing_is_committed() {
    let setup = setup(10, HecToken::new("another-token-entirely").use_ack(true)).await;
    let mut pipe = setup.start();
    let api = pipe.api_url().await;
    let health = wait_for_async("the sink to report the token", || async {
        let (status, body) = http_get(&format!("{api}/health")).await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(health.contains("token"), "{health}");
    assert!(!pipe.stderr().contains(TOKEN), "the token never reaches the log");
    assert!(setup.checkpoints().iter().all(Option::is_none), "{:?}", setup.checkpoints());
    pipe.signal("INT");
    assert_eq!(pipe.wait_exit().await, 1, "a failed sink makes the exit status non-zero");
    assert!(setup.checkpoints().iter().all(Option::is_none), "nothing committed at shutdown either");
}
