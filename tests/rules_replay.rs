//! Golden tests for the replay function (`pipe rule test` semantics) and
//! loading of real ElastAlert rule files from tests/fixtures/rules/.
//!
//! Regenerate the golden files after an intended change with
//! `PIPE_UPDATE_GOLDEN=1 cargo test -p pipe --test rules_replay` and review
//! the diff.

use std::path::{Path, PathBuf};

use pipe::rules::replay::parse_ndjson;
use pipe::rules::{load_rule_file, replay, ReplayOptions, RuleDefinition};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rules").join(name)
}

fn load(name: &str) -> RuleDefinition {
    RuleDefinition::from_config(load_rule_file(&fixture(name), None).unwrap()).unwrap()
}

fn assert_golden(name: &str, actual: &serde_json::Value) {
    let path = fixture(name);
    let rendered = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var_os("PIPE_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    assert_eq!(rendered, expected, "replay output differs from {}", path.display());
}

fn events() -> Vec<pipe::event::LogEvent> {
    parse_ndjson(&std::fs::read_to_string(fixture("replay_events.ndjson")).unwrap(), "replay").unwrap()
}

#[test]
fn replay_matches_golden() {
    let rules = vec![load("replay_rules.yaml"), load("replay_flatline.yaml")];
    let output = replay(rules, &events(), &ReplayOptions::default()).unwrap();
    assert_eq!(output.summary.events, 13);
    assert!(output.summary.runs > 0);
    assert_eq!(output.summary.matches, output.records.len());
    let actual = serde_json::json!({"summary": output.summary, "records": output.records});
    assert_golden("replay_matches.golden.json", &actual);
}

#[test]
fn replay_alerts_golden() {
    let rules = vec![load("replay_rules.yaml"), load("replay_flatline.yaml")];
    let options = ReplayOptions { alerts: true, ..ReplayOptions::default() };
    let output = replay(rules, &events(), &options).unwrap();
    assert!(output.summary.alerts < output.summary.matches, "realert silences repeated matches");
    let actual = serde_json::json!({"summary": output.summary, "records": output.records});
    assert_golden("replay_alerts.golden.json", &actual);
}

#[test]
fn replay_start_and_end_bound_the_runs() {
    let start = "2024-01-01T00:02:00Z".parse().unwrap();
    let end = "2024-01-01T00:04:00Z".parse().unwrap();
    let options = ReplayOptions { start: Some(start), end: Some(end), alerts: false };
    let output = replay(vec![load("replay_rules.yaml")], &events(), &options).unwrap();
    assert_eq!(output.summary.runs, 2);
    let times: Vec<&str> = output.records.iter().filter_map(|record| record["match_time"].as_str()).collect();
    assert_eq!(times, vec!["2024-01-01T00:03:10Z"], "web-1's third event after 00:02 (00:02:10, 00:02:40, 00:03:10)");
}

#[test]
fn replay_rejects_lines_that_are_not_objects() {
    let error = parse_ndjson("{\"a\":1}\n[1,2]\n", "replay").unwrap_err();
    assert!(error.to_string().contains("line 2"), "{error}");
}

#[test]
fn seed_rule_with_python_alerter_points_to_the_wecom_sink() {
    let config = load_rule_file(&fixture("seed_wechat_plugin.yaml"), None).unwrap();
    let error = RuleDefinition::from_config(config).unwrap_err();
    let message = error.to_string();
    assert_eq!(error.key(), Some("alert"));
    assert!(message.contains("seed_wechat_plugin.yaml"), "{message}");
    assert!(message.contains("alert_plugin.wechat_qiye_alert.WeChatAlerter"), "{message}");
    assert!(message.contains("\"wecom\" sink"), "{message}");
}

#[test]
fn ported_seed_rule_loads_and_keeps_its_filter() {
    let rule = load("seed_ported.yaml");
    assert_eq!(rule.name, "xxxxx Alert Log");
    assert_eq!(rule.kind.type_name(), "any");
    assert_eq!(rule.filter.len(), 1);
    assert!(rule.filter[0]["query"][0]["query_string"]["query"].as_str().unwrap().contains("Traceback"));
}

#[test]
fn ported_seed_rule_filter_selects_exceptions() {
    let mut engine = pipe::rules::RuleEngine::new(vec![load("seed_ported.yaml")]).unwrap();
    let events = parse_ndjson(
        "{\"@timestamp\":\"2024-01-01T00:00:00Z\",\"message\":\"java.lang.IllegalStateException: boom\"}\n{\"@timestamp\":\"2024-01-01T00:00:01Z\",\"message\":\"request served\"}\n",
        "test",
    )
    .unwrap();
    let matches = engine.add_events(&events);
    assert_eq!(matches.len(), 1, "{matches:?}");
    assert!(matches[0].body.get("message").and_then(pipe::event::Value::as_str).unwrap().contains("Exception"));
}
