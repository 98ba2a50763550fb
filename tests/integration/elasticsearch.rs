//! The `elasticsearch_poller` source and the `elasticsearch` sink, run by
//! the real `pipe` binary against the in-process Elasticsearch emulator:
//! windows without gaps or duplicates, late documents, restarts, outages,
//! per-item retries, dead letters, writeback documents and `pipe es setup`.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Map, Value};
use testkit::es::{EsConfig, EsEmulator, Fixture, FixtureDocument, ItemFaultKind};

use super::support::{http_get, metric_value, pipe_command, read_ndjson, wait_for, wait_for_async, Pipe, Scratch};

async fn emulator(config: EsConfig) -> EsEmulator {
    EsEmulator::start(config).await.expect("emulator starts")
}

/// Loads documents `d{first}`..`d{last}` into `logs-%Y.%m.%d`, stamped
/// `offset_seconds` from now, searchable at once.
fn load(es: &EsEmulator, numbers: std::ops::RangeInclusive<u32>, offset_seconds: f64) {
    let docs = numbers
        .map(|number| {
            let mut doc = Map::new();
            doc.insert("n".into(), json!(number));
            doc.insert("message".into(), json!(format!("event {number}")));
            FixtureDocument { offset_seconds, id: Some(format!("d{number}")), doc }
        })
        .collect();
    es.handle()
        .load(&Fixture { index: "logs-%Y.%m.%d".into(), timestamp_field: "@timestamp".into(), refresh: true, docs })
        .expect("fixture loads");
}

fn poller_pipeline(scratch: &Scratch, url: &str, extra_source_keys: &str) -> String {
    format!(
        r#"
data_dir = "{dir}/data"
shutdown_timeout = "20s"
[api]
address = "127.0.0.1:0"

[sources.es_in]
type = "elasticsearch_poller"
endpoints = ["{url}"]
index = "logs-%Y.%m.%d"
run_every = "300ms"
buffer_time = "10s"
page_size = 7
retry_initial_backoff = "50ms"
retry_max_backoff = "400ms"
{extra_source_keys}

[sinks.out]
type = "file"
inputs = ["es_in"]
path = "{dir}/out.ndjson"
"#,
        dir = scratch.dir.path().display()
    )
}

/// Every `_id` in the output file, with repeats.
fn delivered_ids(path: &Path) -> Vec<String> {
    read_ndjson(path).iter().map(|event| event["_id"].as_str().expect("events carry _id").to_string()).collect()
}

fn expected_ids(numbers: std::ops::RangeInclusive<u32>) -> BTreeSet<String> {
    numbers.map(|number| format!("d{number}")).collect()
}

async fn metric(api: &str, name: &str) -> f64 {
    let (_, metrics) = http_get(&format!("{api}/metrics")).await;
    metric_value(&metrics, name, &["component_id=\"es_in\""]).unwrap_or(0.0)
}

async fn wait_for_ids(out: &Path, expected: &BTreeSet<String>) {
    wait_for("the expected ids in the output", || {
        let delivered: BTreeSet<String> = delivered_ids(out).into_iter().collect();
        expected.is_subset(&delivered).then_some(())
    })
    .await;
}

/// Waits until `count` more windows were read after this call.
async fn wait_for_more_windows(api: &str, count: f64) {
    let start = metric(api, "pipe_source_es_windows_total").await;
    wait_for_async("more windows", || async move {
        (metric(api, "pipe_source_es_windows_total").await >= start + count).then_some(())
    })
    .await;
}

/// Starts pipe on `config` and waits until it has delivered the documents
/// `numbers` and finished two more windows (so a checkpoint covers them).
async fn run_until_read(config: &Path, out: &Path, numbers: std::ops::RangeInclusive<u32>) -> (Pipe, String) {
    let pipe = Pipe::start(&["run", config.to_str().unwrap()], &[]);
    let api = pipe.api_url().await;
    wait_for_ids(out, &expected_ids(numbers)).await;
    wait_for_more_windows(&api, 2.0).await;
    (pipe, api)
}

fn assert_exactly_once(out: &Path, expected: &BTreeSet<String>) {
    let delivered = delivered_ids(out);
    let unique: BTreeSet<String> = delivered.iter().cloned().collect();
    assert_eq!(delivered.len(), unique.len(), "duplicates in the output");
    assert_eq!(&unique, expected, "missing or unexpected documents");
}

#[tokio::test]
async fn windows_have_no_gaps_or_duplicates_and_a_late_document_is_read_once() {
    let es = emulator(EsConfig::elasticsearch("8.15.0").unwrap()).await;
    let scratch = Scratch::new();
    // Ten documents per timestamp: paging by 7 must break the ties.
    for step in 0..10 {
        load(&es, step * 10 + 1..=step * 10 + 10, -5.0 + f64::from(step) * 0.3);
    }
    let config = scratch.write("pipe.toml", &poller_pipeline(&scratch, &es.url(), ""));
    let mut pipe = Pipe::start(&["run", config.to_str().unwrap()], &[]);
    let api = pipe.api_url().await;
    let out = scratch.path("out.ndjson");
    wait_for_ids(&out, &expected_ids(1..=100)).await;

    load(&es, 101..=150, 0.0);
    wait_for_ids(&out, &expected_ids(1..=150)).await;
    // Older than what the last windows ended at, but inside buffer_time.
    load(&es, 151..=151, -4.0);
    wait_for_ids(&out, &expected_ids(1..=151)).await;
    wait_for_more_windows(&api, 3.0).await;

    assert_exactly_once(&out, &expected_ids(1..=151));
    assert!(metric(&api, "pipe_source_es_duplicate_hits_total").await > 0.0, "overlapping windows were de-duplicated");
    assert!(metric(&api, "pipe_source_es_pages_total").await >= 15.0, "paging by 7");
    let (_, metrics) = http_get(&format!("{api}/metrics")).await;
    let lag = metric_value(&metrics, "pipe_source_lag_seconds", &["component_id=\"es_in\""]).expect("lag gauge");
    assert!((0.0..5.0).contains(&lag), "lag {lag}");
    let stats = es.handle().stats();
    assert!(stats.pits_opened > 0, "Elasticsearch 8 is read inside a point in time");
    wait_for("points in time to be closed", || (es.handle().stats().pits_open <= 1).then_some(())).await;

    pipe.signal("INT");
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
}

#[tokio::test]
async fn a_restart_resumes_from_the_checkpoint_without_rereading() {
    let es = emulator(EsConfig::elasticsearch("7.17.0").unwrap()).await;
    let scratch = Scratch::new();
    load(&es, 1..=40, -2.0);
    let config = scratch.write("pipe.toml", &poller_pipeline(&scratch, &es.url(), ""));
    let out = scratch.path("out.ndjson");
    let (mut pipe, _) = run_until_read(&config, &out, 1..=40).await;
    pipe.signal("INT");
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
    let checkpoint: Value = serde_json::from_str(
        &std::fs::read_to_string(scratch.path("data/es_in/checkpoint.json")).expect("checkpoint written"),
    )
    .unwrap();
    assert!(checkpoint["window_end"].is_string(), "{checkpoint}");

    // Written while pipe is down, after the checkpoint.
    load(&es, 41..=60, 0.0);
    let (mut pipe, _) = run_until_read(&config, &out, 1..=60).await;
    assert!(pipe.stderr().contains("resuming from the checkpoint"), "{}", pipe.stderr());
    assert_exactly_once(&out, &expected_ids(1..=60));
    pipe.signal("INT");
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
}

#[tokio::test]
async fn another_host_takes_over_from_the_checkpoint_in_the_writeback_index() {
    let es = emulator(EsConfig::elasticsearch("8.15.0").unwrap()).await;
    let scratch = Scratch::new();
    load(&es, 1..=40, -2.0);
    let host_a = poller_pipeline(&scratch, &es.url(), "writeback = { writeback_index = \"wb\" }");
    let config_a = scratch.write("host_a.toml", &host_a);
    let out = scratch.path("out.ndjson");
    let (mut pipe, _) = run_until_read(&config_a, &out, 1..=40).await;
    pipe.signal("INT");
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(scratch.path("data/es_in/checkpoint.json")).unwrap()).unwrap();
    let documents = es.handle().documents("wb_status").unwrap();
    assert_eq!(documents.len(), 1, "one checkpoint document per source");
    assert_eq!(documents[0].id, "pipe_poller:es_in");
    assert_eq!(documents[0].source["rule_name"], "pipe_poller:es_in");
    assert_eq!(documents[0].source["endtime"], file["window_end"], "the index holds what the file holds");

    // Host B: same source id, its own empty data_dir.
    load(&es, 41..=60, 0.0);
    let host_b = host_a.replace("/data\"", "/data_host_b\"");
    let config_b = scratch.write("host_b.toml", &host_b);
    let (mut pipe, _) = run_until_read(&config_b, &out, 1..=60).await;
    assert!(pipe.stderr().contains("resuming from the index"), "{}", pipe.stderr());
    assert_exactly_once(&out, &expected_ids(1..=60));
    pipe.signal("INT");
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
    assert!(scratch.path("data_host_b/es_in/checkpoint.json").exists(), "host B keeps its own file too");
}

#[tokio::test]
async fn an_outage_longer_than_buffer_time_skips_no_window() {
    let es = emulator(EsConfig::elasticsearch("8.15.0").unwrap()).await;
    let scratch = Scratch::new();
    let config = scratch.write(
        "pipe.toml",
        &poller_pipeline(&scratch, &es.url(), "").replace("buffer_time = \"10s\"", "buffer_time = \"1s\""),
    );
    let out = scratch.path("out.ndjson");
    let mut pipe = Pipe::start(&["run", config.to_str().unwrap()], &[]);
    let api = pipe.api_url().await;
    // A fresh start reads only the last buffer_time, so load once running.
    wait_for_more_windows(&api, 1.0).await;
    load(&es, 1..=20, 0.0);
    wait_for_ids(&out, &expected_ids(1..=20)).await;

    // About three seconds of 503s and dropped connections (backoff 50 ms
    // doubling to 400 ms), three times buffer_time.
    let body = es.handle().canned_error_body(503).to_string();
    es.http_faults().fail_next(6, 503, body.clone());
    es.http_faults().drop_next(2);
    es.http_faults().fail_next(4, 503, body);
    load(&es, 21..=40, 0.0);
    wait_for("half the outage", || (es.http_faults().pending() <= 6).then_some(())).await;
    load(&es, 41..=60, 0.0);
    wait_for("the outage to end", || (es.http_faults().pending() == 0).then_some(())).await;
    load(&es, 61..=80, 0.0);
    wait_for_ids(&out, &expected_ids(1..=80)).await;
    wait_for_more_windows(&api, 3.0).await;

    assert_exactly_once(&out, &expected_ids(1..=80));
    // Each failed attempt consumes one fault, plus at most one more when the
    // point in time it opened is closed (a best-effort DELETE, not retried):
    // twelve faults mean at least six retries.
    let retries = metric(&api, "pipe_source_es_retries_total").await;
    assert!(retries >= 6.0, "{retries} retries for 12 faults");
    let (status, health) = http_get(&format!("{api}/health")).await;
    assert_eq!(status, 200, "{health}");
    pipe.signal("INT");
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
}

#[tokio::test]
async fn failed_shards_and_malformed_answers_are_read_again() {
    let es = emulator(EsConfig::opensearch("2.11.0").unwrap()).await;
    let scratch = Scratch::new();
    // Two shards, so one can fail while the search still answers.
    let today = chrono::Utc::now().format("logs-%Y.%m.%d").to_string();
    es.handle().create_index(&today, json!({"settings": {"number_of_shards": 2}})).unwrap();
    load(&es, 1..=30, 0.0);
    es.handle().faults().fail_shards(2, 1, None);
    es.handle().faults().malformed_responses(Some("/_search"), 2);
    let config = scratch.write("pipe.toml", &poller_pipeline(&scratch, &es.url(), ""));
    let out = scratch.path("out.ndjson");
    let (mut pipe, api) = run_until_read(&config, &out, 1..=30).await;
    assert_exactly_once(&out, &expected_ids(1..=30));
    let (_, metrics) = http_get(&format!("{api}/metrics")).await;
    assert_eq!(
        metric_value(
            &metrics,
            "pipe_component_errors_total",
            &["component_id=\"es_in\"", "error_type=\"shard_failures\""]
        ),
        Some(2.0)
    );
    assert_eq!(
        metric_value(
            &metrics,
            "pipe_component_errors_total",
            &["component_id=\"es_in\"", "error_type=\"malformed_response\""]
        ),
        Some(2.0)
    );
    assert!(es.handle().stats().pits_opened > 0, "OpenSearch 2.4+ is read inside its point in time");
    pipe.signal("INT");
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
}

#[tokio::test]
async fn wrong_credentials_stop_the_source_with_a_clear_health_reason() {
    let es = emulator(EsConfig::elasticsearch("8.15.0").unwrap().with_basic_auth("elastic", "right-password")).await;
    let scratch = Scratch::new();
    let auth = "auth.strategy = \"basic\"\nauth.user = \"elastic\"\nauth.password = \"wrong-password\"";
    let config = scratch.write("pipe.toml", &poller_pipeline(&scratch, &es.url(), auth));
    let mut pipe = Pipe::start(&["run", config.to_str().unwrap()], &[]);
    // The only source failed, so the pipeline ends; the reason /health
    // showed meanwhile is the one the log names.
    assert_eq!(pipe.wait_exit().await, 1, "{}", pipe.stderr());
    let stderr = pipe.stderr();
    let failure = stderr.lines().find(|line| line.contains("component failed")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(failure.contains("401") && failure.contains("auth.password"), "{failure}");
    assert!(!stderr.contains("wrong-password"), "the password must never be shown");
}

fn file_to_es_pipeline(scratch: &Scratch, url: &str, sink_keys: &str) -> String {
    format!(
        r#"
data_dir = "{dir}/data"
shutdown_timeout = "20s"
[api]
address = "127.0.0.1:0"

[sources.lines]
type = "file"
include = ["{dir}/input.ndjson"]
decoding = "json"

[sinks.es_out]
type = "elasticsearch"
inputs = ["lines"]
endpoints = ["{url}"]
batch.max_events = 10
batch.timeout = "100ms"
request.retry_initial_backoff = "50ms"
request.retry_max_backoff = "200ms"
{sink_keys}
"#,
        dir = scratch.dir.path().display()
    )
}

#[tokio::test]
async fn item_level_429s_are_retried_and_mapping_errors_are_dead_lettered() {
    let es = emulator(EsConfig::elasticsearch("8.15.0").unwrap()).await;
    es.handle().create_index("items", json!({"mappings": {"properties": {"n": {"type": "long"}}}})).unwrap();
    es.handle().faults().reject_next_items(3);
    es.handle().faults().fail_next_items(2, ItemFaultKind::Unavailable);
    let scratch = Scratch::new();
    let mut lines = String::new();
    for number in 1..=40 {
        let n = if number == 17 { json!("not a number") } else { json!(number) };
        lines.push_str(&json!({"id": format!("i{number}"), "n": n}).to_string());
        lines.push('\n');
    }
    scratch.write("input.ndjson", &lines);
    let config = scratch.write(
        "pipe.toml",
        &file_to_es_pipeline(
            &scratch,
            &es.url(),
            "index = \"items\"\nid_field = \"id\"\naction = \"create\"\ncompression = \"gzip\"",
        ),
    );
    let mut pipe = Pipe::start(&["run", config.to_str().unwrap()], &[]);
    let api = pipe.api_url().await;
    let dead_letters = scratch.path("data/dead_letter/es_out.ndjson");
    wait_for("39 documents and one dead letter", || {
        let stored = es.handle().documents("items").unwrap().len();
        (stored == 39 && read_ndjson(&dead_letters).len() == 1).then_some(())
    })
    .await;
    let ids: BTreeSet<String> =
        es.handle().documents("items").unwrap().into_iter().map(|document| document.id).collect();
    assert_eq!(ids, (1..=40).filter(|number| *number != 17).map(|number| format!("i{number}")).collect());
    let dead = &read_ndjson(&dead_letters)[0];
    assert_eq!(dead["event"]["id"], "i17");
    assert!(dead["reason"].as_str().unwrap().contains("document_parsing_exception"), "{dead}");
    let stats = es.handle().stats();
    assert_eq!(stats.bulk_item_statuses.get("429"), Some(&3));
    assert_eq!(stats.bulk_item_statuses.get("503"), Some(&2));
    let (_, metrics) = http_get(&format!("{api}/metrics")).await;
    assert_eq!(
        metric_value(&metrics, "pipe_sink_es_item_retries_total", &["component_id=\"es_out\""]),
        Some(5.0),
        "{metrics}"
    );
    assert_eq!(metric_value(&metrics, "pipe_component_dead_letters_total", &["component_id=\"es_out\""]), Some(1.0));
    wait_for("the file source to commit all 40 lines", || {
        let text = std::fs::read_to_string(scratch.path("data/lines/checkpoints.json")).ok()?;
        let offset = serde_json::from_str::<Value>(&text).ok()?["files"][0]["offset"].as_u64()?;
        (offset == lines.len() as u64).then_some(())
    })
    .await;
    pipe.signal("INT");
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
}

#[tokio::test]
async fn pipe_es_setup_is_idempotent_and_writeback_documents_land_in_elastalert_indices() {
    let es = emulator(EsConfig::elasticsearch("8.15.0").unwrap().with_basic_auth("elastic", "changeme")).await;
    let url = es.url();
    for round in 0..2 {
        let output = tokio::task::spawn_blocking({
            let url = url.clone();
            move || {
                pipe_command()
                    .args(["es", "setup", &url, "--user", "elastic", "--password", "changeme"])
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "round {round}: {stdout} {}", String::from_utf8_lossy(&output.stderr));
        let word = if round == 0 { "created" } else { "exists" };
        for index in ["elastalert", "elastalert_status", "elastalert_silence", "elastalert_error", "elastalert_past"] {
            assert!(
                stdout.lines().any(|line| line.starts_with(word) && line.split_whitespace().nth(1) == Some(index)),
                "round {round}: {stdout}"
            );
        }
    }
    assert_eq!(es.handle().stats().indices, 5);
    let refused = tokio::task::spawn_blocking({
        let url = url.clone();
        move || pipe_command().args(["es", "setup", &url, "--user", "elastic", "--password", "nope"]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));

    let scratch = Scratch::new();
    let alert = json!({
        "@timestamp": "2026-01-01T00:01:10Z", "host": "web-1", "message": "Traceback", "num_hits": 3, "num_matches": 1,
        "rule_name": "web errors", "alert_subject": "Errors on web-1", "alert_text": "web errors\n\n...",
        "alert_time": "2026-01-01T00:02:05Z", "match_time": "2026-01-01T00:01:10Z"
    });
    let silence = json!({"writeback_type": "silence", "rule_name": "web errors.web-1", "until": "2999-01-01T00:00:00Z", "exponent": 1});
    let status = json!({"writeback_type": "status", "rule_name": "web errors", "starttime": "2026-01-01T00:00:00Z", "endtime": "2026-01-01T00:01:00Z", "matches": 1, "hits": 3, "time_taken": 0.01});
    scratch.write("input.ndjson", &format!("{alert}\n{silence}\n{status}\n"));
    let sink_keys =
        "mode = \"writeback\"\nauth.strategy = \"basic\"\nauth.user = \"elastic\"\nauth.password = \"changeme\"";
    let config = scratch.write("pipe.toml", &file_to_es_pipeline(&scratch, &url, sink_keys));
    let mut pipe = Pipe::start(&["run", config.to_str().unwrap()], &[]);
    wait_for("three writeback documents", || {
        let handle = es.handle();
        let count = ["elastalert", "elastalert_silence", "elastalert_status"]
            .iter()
            .map(|index| handle.documents(index).unwrap().len())
            .sum::<usize>();
        (count == 3).then_some(())
    })
    .await;
    let record = es.handle().documents("elastalert").unwrap().remove(0).source;
    assert_eq!(record["rule_name"], "web errors");
    assert_eq!(record["alert_sent"], true);
    assert_eq!(record["match_time"], "2026-01-01T00:01:10Z");
    assert_eq!(record["match_body"]["host"], "web-1");
    assert_eq!(record["match_body"]["num_hits"], 3);
    assert!(record["match_body"].get("rule_name").is_none() && record["match_body"].get("file").is_some());
    assert_eq!(es.handle().documents("elastalert_status").unwrap()[0].source["endtime"], "2026-01-01T00:01:00Z");

    es.handle().refresh("*").unwrap();
    let connection = pipe::elasticsearch::EsConnectionConfig::new(
        std::slice::from_ref(&url),
        Some(&toml::from_str("strategy = \"basic\"\nuser = \"elastic\"\npassword = \"changeme\"").unwrap()),
        &pipe::elasticsearch::EsTlsConfig::default(),
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let client = pipe::elasticsearch::EsClient::new(&connection).unwrap();
    let silences =
        pipe::sinks::elasticsearch::read_active_silences(&client, "elastalert", &["web errors"], chrono::Utc::now())
            .await
            .unwrap();
    assert_eq!(silences.len(), 1);
    assert_eq!((silences[0].rule_name.as_str(), silences[0].exponent), ("web errors.web-1", 1));
    pipe.signal("INT");
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
}
