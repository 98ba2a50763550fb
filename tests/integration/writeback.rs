//! ElastAlert's writeback loop end to end, with the real `pipe` binary and
//! the Elasticsearch emulator: documents → `elasticsearch_poller` → `rules`
//! (a frequency rule with realert) → console, and the alerts plus the
//! `rules.writeback` status and silence records → `elasticsearch` sink in
//! writeback mode. Then a restart with the rules transform's `writeback`
//! key: the silence written by the first run holds a repeated alert back.

use serde_json::{json, Map, Value};
use testkit::es::{DocumentView, EsConfig, EsEmulator, Fixture, FixtureDocument};

use super::support::{http_get, metric_value, wait_for, wait_for_async, Pipe, Scratch};

const RULE_NAME: &str = "web errors burst";

/// Three error documents of `host`, all stamped `offset_seconds` from now.
fn load_burst(es: &EsEmulator, host: &str, offset_seconds: f64) {
    let docs = (0..3)
        .map(|_| {
            let Value::Object(doc) = json!({"host": host, "level": "error", "message": format!("{host} failed")})
            else {
                unreachable!("built as an object")
            };
            FixtureDocument { offset_seconds, id: None, doc: Map::from_iter(doc) }
        })
        .collect();
    es.handle()
        .load(&Fixture { index: "logs-%Y.%m.%d".into(), timestamp_field: "@timestamp".into(), refresh: true, docs })
        .expect("fixture loads");
}

/// `restore_silences`: whether the rules transform reads silences back.
fn pipeline(scratch: &Scratch, url: &str, restore_silences: bool) -> String {
    let rules_writeback = if restore_silences {
        format!("[transforms.rules.writeback]\nendpoints = [\"{url}\"]\nstartup_timeout = \"10s\"\n")
    } else {
        String::new()
    };
    format!(
        r#"
data_dir = "{dir}/data"
[api]
address = "127.0.0.1:0"

[sources.logs]
type = "elasticsearch_poller"
endpoints = ["{url}"]
index = "logs-*"
run_every = "300ms"
buffer_time = "1m"
retry_initial_backoff = "50ms"

[transforms.rules]
type = "rules"
inputs = ["logs"]
tick_interval = "200ms"

[[transforms.rules.rule]]
name = "{RULE_NAME}"
type = "frequency"
num_events = 3
timeframe = "1m"
run_every = "1s"
buffer_time = "1m"
query_key = "host"
realert = "1h"
filter = [{{ query = {{ query_string = {{ query = "level:error" }} }} }}]

{rules_writeback}
[sinks.console]
type = "console"
inputs = ["rules"]

[sinks.writeback]
type = "elasticsearch"
inputs = ["rules", "rules.writeback"]
mode = "writeback"
endpoints = ["{url}"]
batch.timeout = "100ms"
"#,
        dir = scratch.dir.path().display()
    )
}

fn documents(es: &EsEmulator, index: &str) -> Vec<DocumentView> {
    es.handle().documents(index).unwrap_or_default()
}

fn alert_hosts(es: &EsEmulator) -> Vec<String> {
    documents(es, "elastalert")
        .iter()
        .filter_map(|document| document.source["match_body"]["host"].as_str().map(str::to_string))
        .collect()
}

/// The console sink's alert lines (JSON objects naming the rule).
fn console_alerts(pipe: &Pipe) -> Vec<Value> {
    pipe.stdout()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["rule_name"] == RULE_NAME)
        .collect()
}

async fn rules_metric(api: &str, name: &str) -> Option<f64> {
    let (_, metrics) = http_get(&format!("{api}/metrics")).await;
    metric_value(&metrics, name, &["component_id=\"rules\""])
}

/// The first run: web-1's burst alerts on the console and in `elastalert`,
/// with status records and web-1's silence in the writeback indices.
async fn first_run(es: &EsEmulator, scratch: &Scratch) -> Pipe {
    load_burst(es, "web-1", -20.0);
    let config = scratch.write("first.toml", &pipeline(scratch, &es.url(), false));
    let pipe = Pipe::start(&["run", config.to_str().unwrap()], &[]);
    wait_for("the web-1 alert in elastalert", || (alert_hosts(es) == ["web-1"]).then_some(())).await;
    wait_for("web-1's silence in elastalert_silence", || {
        documents(es, "elastalert_silence")
            .iter()
            .any(|document| document.source["rule_name"] == "web errors burst.web-1")
            .then_some(())
    })
    .await;
    pipe
}

#[tokio::test]
async fn alerts_status_records_and_silences_reach_the_writeback_indices() {
    let es = EsEmulator::start(EsConfig::elasticsearch("8.15.0").unwrap()).await.expect("es emulator");
    let scratch = Scratch::new();
    let mut pipe = first_run(&es, &scratch).await;

    let console = wait_for("the alert on the console", || {
        let alerts = console_alerts(&pipe);
        (!alerts.is_empty()).then_some(alerts)
    })
    .await;
    assert_eq!(console.len(), 1, "{console:?}");
    assert_eq!(console[0]["host"], "web-1");
    assert!(console[0].get("writeback_type").is_none(), "status and silence records stay off the default output");

    let alert = &documents(&es, "elastalert")[0].source;
    assert_eq!(alert["rule_name"], RULE_NAME);
    assert_eq!(alert["match_body"]["host"], "web-1");
    assert_eq!(alert["match_body"]["num_matches"], 1);
    assert_eq!(alert["alert_sent"], true);

    let statuses = wait_for("status records of several runs", || {
        let statuses: Vec<Value> = documents(&es, "elastalert_status")
            .into_iter()
            .map(|document| document.source)
            .filter(|status| status["rule_name"] == RULE_NAME)
            .collect();
        (statuses.len() >= 3).then_some(statuses)
    })
    .await;
    for status in &statuses {
        for field in ["starttime", "endtime", "@timestamp"] {
            assert!(status[field].as_str().is_some_and(|time| time.ends_with('Z')), "{field} in {status}");
        }
        assert!(status["time_taken"].as_f64().is_some_and(|seconds| seconds >= 0.0), "{status}");
        assert!(status["hits"].is_u64() && status["matches"].is_u64(), "{status}");
    }
    let burst_run = statuses.iter().find(|status| status["hits"] == 3).expect("the run that saw the burst");
    assert_eq!(burst_run["matches"], 1, "{burst_run}");
    let total_hits: u64 = statuses.iter().filter_map(|status| status["hits"].as_u64()).sum();
    assert_eq!(total_hits, 3, "every event is counted in exactly one run");

    let silence = documents(&es, "elastalert_silence").remove(0).source;
    assert_eq!(silence["rule_name"], "web errors burst.web-1");
    assert_eq!(silence["exponent"], 0);
    let until = chrono::DateTime::parse_from_rfc3339(silence["until"].as_str().expect("until")).expect("ISO 8601");
    let remaining = until.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(remaining > chrono::Duration::minutes(55), "realert is one hour: {remaining}");

    pipe.signal("INT");
    assert_eq!(pipe.wait_exit().await, 0, "{}", pipe.stderr());
}

#[tokio::test]
async fn a_silence_written_before_a_restart_holds_back_the_repeated_alert() {
    let es = EsEmulator::start(EsConfig::elasticsearch("8.15.0").unwrap()).await.expect("es emulator");
    let scratch = Scratch::new();
    let mut first = first_run(&es, &scratch).await;
    first.signal("INT");
    assert_eq!(first.wait_exit().await, 0, "{}", first.stderr());

    // Elasticsearch makes writes searchable within its 1 s refresh
    // interval; this restart comes sooner than a real one would.
    es.handle().refresh("elastalert_silence").expect("refresh");

    // After the restart: web-1 bursts again (silenced for an hour by the
    // first run), web-2 bursts for the first time (alerts).
    load_burst(&es, "web-1", 0.0);
    load_burst(&es, "web-2", 0.0);
    let config = scratch.write("second.toml", &pipeline(&scratch, &es.url(), true));
    let mut second = Pipe::start(&["run", config.to_str().unwrap()], &[]);
    let api = second.api_url().await;
    wait_for("the web-2 alert", || alert_hosts(&es).contains(&"web-2".to_string()).then_some(())).await;
    wait_for_async("the repeated web-1 match to be silenced", || {
        let api = api.clone();
        async move { (rules_metric(&api, "pipe_rules_silenced_matches_total").await >= Some(1.0)).then_some(()) }
    })
    .await;
    assert_eq!(rules_metric(&api, "pipe_rules_restored_silences").await, Some(1.0));
    assert!(second.stderr().contains("restored the active realert silences"), "{}", second.stderr());

    let mut hosts = alert_hosts(&es);
    hosts.sort();
    assert_eq!(hosts, ["web-1", "web-2"], "web-1 alerted once, before the restart");
    let console = wait_for("the web-2 alert on the console", || {
        let alerts = console_alerts(&second);
        (!alerts.is_empty()).then_some(alerts)
    })
    .await;
    assert_eq!(console.len(), 1, "{console:?}");
    assert_eq!(console[0]["host"], "web-2");

    second.signal("INT");
    assert_eq!(second.wait_exit().await, 0, "{}", second.stderr());
}
