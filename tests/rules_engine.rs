//! Scenario tests for the rule engine through its public API: one or more
//! scenarios per rule type built from the ElastAlert reference, plus
//! realert, exponential realert and aggregation.

use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use pipe::event::{LogEvent, Value};
use pipe::rules::{parse_rule_yaml, Alerter, Match, RuleDefinition, RuleEngine};

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

fn at(seconds: i64) -> DateTime<Utc> {
    base() + ChronoDuration::seconds(seconds)
}

fn iso(seconds: i64) -> String {
    at(seconds).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn rule(yaml: &str) -> RuleDefinition {
    RuleDefinition::from_config(parse_rule_yaml(yaml, "test rule").unwrap()).unwrap()
}

fn engine(yaml: &str) -> RuleEngine {
    RuleEngine::new(vec![rule(yaml)]).unwrap()
}

fn event(seconds: i64, extra: serde_json::Value) -> LogEvent {
    let mut object = serde_json::json!({"@timestamp": iso(seconds)});
    if let (Some(target), serde_json::Value::Object(extra)) = (object.as_object_mut(), extra) {
        target.extend(extra);
    }
    let Value::Object(fields) = Value::from(object) else { unreachable!("built as an object") };
    LogEvent::from_fields("test", fields)
}

fn text(matched: &Match, field: &str) -> String {
    matched.body.get(field).map(|value| value.to_text().into_owned()).unwrap_or_default()
}

fn number(matched: &Match, field: &str) -> f64 {
    matched.body.get(field).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

fn feed(engine: &mut RuleEngine, events: Vec<LogEvent>) -> Vec<Match> {
    engine.add_events(&events)
}

const FREQUENCY: &str =
    "name: freq\ntype: frequency\nnum_events: 3\ntimeframe: {minutes: 5}\nquery_key: host\nrun_every: {minutes: 1}\n";

#[test]
fn frequency_counts_per_query_key_and_discards_the_window_after_a_match() {
    let mut engine = engine(FREQUENCY);
    let matches = feed(
        &mut engine,
        vec![
            event(0, serde_json::json!({"host": "h1"})),
            event(30, serde_json::json!({"host": "h1"})),
            event(40, serde_json::json!({"host": "h2"})),
            event(50, serde_json::json!({"host": "h1"})),
            event(55, serde_json::json!({"host": "h1"})),
        ],
    );
    assert_eq!(matches.len(), 1, "{matches:?}");
    assert_eq!(text(&matches[0], "host"), "h1");
    assert_eq!(matches[0].time, at(50));
    assert_eq!(text(&matches[0], "@timestamp"), "2024-01-01T00:00:50Z");
    assert_eq!(number(&matches[0], "num_hits"), 4.0);
    assert_eq!(number(&matches[0], "num_matches"), 1.0);
}

#[test]
fn frequency_window_excludes_an_entry_exactly_one_timeframe_old() {
    let mut engine = engine(FREQUENCY);
    let first = feed(
        &mut engine,
        vec![
            event(0, serde_json::json!({"host": "h"})),
            event(300, serde_json::json!({"host": "h"})),
            event(310, serde_json::json!({"host": "h"})),
        ],
    );
    assert!(first.is_empty(), "the entry at 0 leaves when one at 300 arrives: {first:?}");
    let second = feed(&mut engine, vec![event(320, serde_json::json!({"host": "h"}))]);
    assert_eq!(second.len(), 1);
}

#[test]
fn frequency_out_of_order_match_reports_the_newest_event_in_the_window() {
    let mut engine = engine(FREQUENCY);
    let matches = feed(
        &mut engine,
        vec![
            event(300, serde_json::json!({"host": "h", "seq": 1})),
            event(100, serde_json::json!({"host": "h", "seq": 2})),
            event(250, serde_json::json!({"host": "h", "seq": 3})),
        ],
    );
    assert_eq!(matches.len(), 1);
    assert_eq!(number(&matches[0], "seq"), 1.0, "the newest event (300) is reported, not the last inserted");
}

#[test]
fn frequency_drops_late_events_and_counts_them() {
    let mut engine = engine("name: f\ntype: frequency\nnum_events: 2\ntimeframe: {hours: 2}\nbuffer_time: {minutes: 10}\nrun_every: {minutes: 1}\n");
    feed(&mut engine, vec![event(3600, serde_json::json!({}))]);
    let matches = feed(&mut engine, vec![event(3600 - 20 * 60, serde_json::json!({}))]);
    assert!(matches.is_empty());
    assert_eq!(engine.stats()[0].late_events_total, 1);
}

#[test]
fn tracked_keys_are_capped_with_least_recently_seen_eviction() {
    let mut engine = engine(
        "name: f\ntype: frequency\nnum_events: 5\ntimeframe: {hours: 1}\nquery_key: host\nmax_tracked_keys: 2\n",
    );
    feed(
        &mut engine,
        vec![
            event(0, serde_json::json!({"host": "a"})),
            event(1, serde_json::json!({"host": "b"})),
            event(2, serde_json::json!({"host": "a"})),
            event(3, serde_json::json!({"host": "c"})),
        ],
    );
    let stats = &engine.stats()[0];
    assert_eq!(stats.tracked_keys, 2);
    assert_eq!(stats.evicted_keys_total, 1);
    // "b" was evicted, so its count restarts; "a" kept both events.
    let matches = feed(
        &mut engine,
        vec![
            event(4, serde_json::json!({"host": "a"})),
            event(5, serde_json::json!({"host": "a"})),
            event(6, serde_json::json!({"host": "a"})),
        ],
    );
    assert_eq!(matches.len(), 1);
    assert_eq!(text(&matches[0], "host"), "a");
}

#[test]
fn frequency_garbage_collects_idle_keys_at_run_ends() {
    let mut engine = engine(FREQUENCY);
    feed(&mut engine, vec![event(0, serde_json::json!({"host": "a"}))]);
    engine.advance(at(60));
    assert_eq!(engine.stats()[0].tracked_keys, 1);
    engine.advance(at(400));
    assert_eq!(engine.stats()[0].tracked_keys, 0, "newest entry more than a timeframe before the run end");
}

#[test]
fn nested_and_compound_query_keys_partition_state() {
    let mut nested = engine("name: f\ntype: frequency\nnum_events: 2\ntimeframe: {minutes: 5}\nquery_key: host.name\n");
    let matches = feed(
        &mut nested,
        vec![
            event(0, serde_json::json!({"host": {"name": "x"}})),
            event(1, serde_json::json!({"host": {"name": "y"}})),
            event(2, serde_json::json!({"host": {"name": "x"}})),
        ],
    );
    assert_eq!(matches.len(), 1);
    let mut compound =
        engine("name: f\ntype: frequency\nnum_events: 2\ntimeframe: {minutes: 5}\nquery_key: [host, user]\n");
    let matches = feed(
        &mut compound,
        vec![
            event(0, serde_json::json!({"host": "h", "user": "a"})),
            event(1, serde_json::json!({"host": "h", "user": "b"})),
            event(2, serde_json::json!({"host": "h", "user": "a"})),
        ],
    );
    assert_eq!(matches.len(), 1);
    assert_eq!(text(&matches[0], "host,user"), "h, a");
}

#[test]
fn basic_match_string_matches_the_reference_example() {
    let definition = rule("name: R1\ntype: frequency\nnum_events: 2\ntimeframe: {minutes: 5}\nuse_local_time: false\n");
    let mut engine = RuleEngine::new(vec![definition]).unwrap();
    let mut alerter = Alerter::new(engine.definitions());
    let matches = feed(
        &mut engine,
        vec![
            event(0, serde_json::json!({"user": "amy"})),
            event(60, serde_json::json!({"user": "bob", "tags": ["a", "b"]})),
        ],
    );
    let alerts = alerter.process(matches, at(60));
    assert_eq!(alerts.len(), 1);
    let expected = "R1\n\nAt least 2 events occurred between 2023-12-31 23:56 UTC and 2024-01-01 00:01 UTC\n\n@timestamp: 2024-01-01T00:01:00Z\nnum_hits: 2\nnum_matches: 1\ntags: [\n    \"a\",\n    \"b\"\n]\nuser: bob\n";
    assert_eq!(alerts[0].text, expected);
    assert_eq!(alerts[0].subject, "R1");
    let event = alerts[0].to_event("rules");
    assert_eq!(event.get("rule_name").and_then(Value::as_str), Some("R1"));
    assert_eq!(event.get("alert_text").and_then(Value::as_str), Some(expected));
    assert_eq!(event.get("user").and_then(Value::as_str), Some("bob"));
}

#[test]
fn alert_subject_and_text_args_fall_back_to_rule_options_then_missing_value() {
    let definition = rule(
        "name: R2\ntype: any\nowner: ops\nalert_subject: \"{0} on {1}\"\nalert_subject_args: [owner, host]\nalert_text: \"user {user} from {where}\"\nalert_text_kw: {user: user, location: where}\nalert_missing_value: \"?\"\n",
    );
    let mut engine = RuleEngine::new(vec![definition]).unwrap();
    let mut alerter = Alerter::new(engine.definitions());
    let alerts = alerter.process(feed(&mut engine, vec![event(0, serde_json::json!({"user": "bob"}))]), at(0));
    assert_eq!(alerts[0].subject, "ops on ?");
    assert!(alerts[0].text.starts_with("user bob from ?\n\n"), "{}", alerts[0].text);
    assert!(!alerts[0].text.contains("R2\n"), "no rule name line when alert_text is set");
}

#[test]
fn flatline_fires_when_the_stream_goes_silent_and_repeats_each_run() {
    let mut engine =
        engine("name: flat\ntype: flatline\nthreshold: 1\ntimeframe: {minutes: 10}\nrun_every: {minutes: 1}\n");
    let events = (0..=5).map(|minute| event(minute * 60, serde_json::json!({}))).collect();
    assert!(feed(&mut engine, events).is_empty());
    let matches = engine.advance(at(20 * 60));
    let times: Vec<DateTime<Utc>> = matches.iter().map(|matched| matched.time).collect();
    assert_eq!(times.first(), Some(&at(15 * 60)), "first run end with no event in the last 10 minutes");
    assert_eq!(matches.len(), 6, "one match per run from 15:00 to 20:00");
    assert_eq!(text(&matches[0], "key"), "all");
    assert_eq!(number(&matches[0], "count"), 0.0);
    assert_eq!(number(&matches[0], "threshold"), 1.0);
}

#[test]
fn flatline_without_events_alerts_a_timeframe_after_the_first_run() {
    let mut engine =
        engine("name: flat\ntype: flatline\nthreshold: 3\ntimeframe: {minutes: 5}\nrun_every: {minutes: 1}\n");
    engine.advance(at(0));
    let matches = engine.advance(at(10 * 60));
    assert_eq!(matches.first().map(|matched| matched.time), Some(at(6 * 60)));
}

#[test]
fn flatline_with_forget_keys_alerts_once_per_silent_key() {
    let mut engine = engine("name: flat\ntype: flatline\nthreshold: 1\ntimeframe: {minutes: 5}\nquery_key: host\nforget_keys: true\nrun_every: {minutes: 1}\n");
    let mut events = Vec::new();
    for minute in 0..30 {
        events.push(event(minute * 60, serde_json::json!({"host": "busy"})));
        if minute < 3 {
            events.push(event(minute * 60 + 1, serde_json::json!({"host": "quiet"})));
        }
    }
    let matches = feed(&mut engine, events);
    assert_eq!(matches.len(), 1, "{matches:?}");
    assert_eq!(text(&matches[0], "key"), "quiet");
    assert_eq!(matches[0].time, at(8 * 60), "last event at 2:01, window empty from 7:01, first run end after is 8:00");
}

fn spike_events(per_minute: &[(i64, usize)]) -> Vec<LogEvent> {
    let mut events = Vec::new();
    for &(minute, count) in per_minute {
        for index in 0..count {
            events.push(event(minute * 60 + index as i64, serde_json::json!({})));
        }
    }
    events
}

#[test]
fn spike_up_fires_after_warm_up_and_reports_counts() {
    let mut engine = engine("name: s\ntype: spike\ntimeframe: {minutes: 10}\nspike_height: 3\nspike_type: up\nthreshold_cur: 5\nrun_every: {minutes: 1}\n");
    let steady: Vec<(i64, usize)> = (0..30).map(|minute| (minute, 1)).collect();
    assert!(feed(&mut engine, spike_events(&steady)).is_empty(), "steady traffic never spikes");
    let burst: Vec<(i64, usize)> = (30..36).map(|minute| (minute, 10)).collect();
    let matches = feed(&mut engine, spike_events(&burst));
    assert_eq!(matches.len(), 1, "the key is muted for two timeframes after a match");
    let first = &matches[0];
    let (current, reference) = (number(first, "spike_count"), number(first, "reference_count"));
    assert!(current >= 3.0 * reference && reference > 0.0, "cur {current} ref {reference}");
    // Upstream reports the oldest non-zero entry of the current window.
    assert!(first.time > at(20 * 60) && first.time < at(30 * 60), "{:?}", first.time);
}

#[test]
fn spike_down_fires_when_traffic_stops_through_placeholders() {
    let mut engine = engine("name: s\ntype: spike\ntimeframe: {minutes: 10}\nspike_height: 2\nspike_type: down\nthreshold_ref: 5\nrun_every: {minutes: 1}\n");
    let schedule: Vec<(i64, usize)> = (0..30).map(|minute| (minute, 5)).collect();
    assert!(feed(&mut engine, spike_events(&schedule)).is_empty());
    let matches = engine.advance(at(45 * 60));
    assert!(!matches.is_empty());
    let (current, reference) = (number(&matches[0], "spike_count"), number(&matches[0], "reference_count"));
    assert!(current * 2.0 <= reference, "cur {current} ref {reference}");
}

#[test]
fn spike_both_and_thresholds_gate_matches() {
    let mut gated = engine("name: s\ntype: spike\ntimeframe: {minutes: 10}\nspike_height: 3\nspike_type: both\nthreshold_ref: 1000\nrun_every: {minutes: 1}\n");
    let mut schedule: Vec<(i64, usize)> = (0..30).map(|minute| (minute, 1)).collect();
    schedule.extend((30..36).map(|minute| (minute, 10)));
    assert!(feed(&mut gated, spike_events(&schedule)).is_empty(), "reference below threshold_ref");
    let mut both = engine("name: s\ntype: spike\ntimeframe: {minutes: 10}\nspike_height: 3\nspike_type: both\nthreshold_cur: 1\nrun_every: {minutes: 1}\n");
    assert!(!feed(&mut both, spike_events(&schedule)).is_empty());
}

#[test]
fn new_term_alerts_on_new_values_and_missing_fields() {
    let mut engine = engine("name: nt\ntype: new_term\nfields: [host]\nalert_on_missing_field: true\n");
    let matches = feed(
        &mut engine,
        vec![
            event(0, serde_json::json!({"host": "a"})),
            event(1, serde_json::json!({"host": "b"})),
            event(2, serde_json::json!({"host": "a"})),
            event(3, serde_json::json!({"user": "x"})),
            event(4, serde_json::json!({"host": ""})),
        ],
    );
    let summary: Vec<(String, String)> =
        matches.iter().map(|matched| (text(matched, "new_field"), text(matched, "missing_field"))).collect();
    assert_eq!(
        summary,
        vec![
            ("host".into(), "".into()),
            ("host".into(), "".into()),
            ("".into(), "host".into()),
            ("".into(), "host".into())
        ]
    );
    assert_eq!(engine.stats()[0].tracked_keys, 2);
}

#[test]
fn new_term_composite_fields_and_warmup() {
    let mut engine = engine("name: nt\ntype: new_term\nfields: [[host, user]]\nterms_warmup: {minutes: 5}\n");
    let matches = feed(
        &mut engine,
        vec![
            event(0, serde_json::json!({"host": "a", "user": "u"})),
            event(400, serde_json::json!({"host": "a", "user": "u"})),
            event(410, serde_json::json!({"host": "a", "user": "v"})),
        ],
    );
    assert_eq!(matches.len(), 1, "terms seen during warm-up are known");
    assert_eq!(matches[0].body.get("new_field"), Some(&Value::from(serde_json::json!(["host", "user"]))));
}

#[test]
fn cardinality_max_matches_each_value_above_the_limit() {
    let mut engine = engine("name: c\ntype: cardinality\ncardinality_field: user\nmax_cardinality: 2\ntimeframe: {minutes: 10}\nquery_key: host\n");
    let matches = feed(
        &mut engine,
        vec![
            event(0, serde_json::json!({"host": "h", "user": "a"})),
            event(1, serde_json::json!({"host": "h", "user": "b"})),
            event(2, serde_json::json!({"host": "g", "user": "c"})),
            event(3, serde_json::json!({"host": "h", "user": "c"})),
            event(4, serde_json::json!({"host": "h", "user": "d"})),
        ],
    );
    let users: Vec<String> = matches.iter().map(|matched| text(matched, "user")).collect();
    assert_eq!(users, vec!["c", "d"]);
}

#[test]
fn cardinality_min_is_found_by_housekeeping_after_the_timeframe() {
    let mut engine = engine("name: c\ntype: cardinality\ncardinality_field: user\nmin_cardinality: 2\ntimeframe: {minutes: 5}\nrun_every: {minutes: 1}\n");
    feed(&mut engine, vec![event(0, serde_json::json!({"user": "a"})), event(30, serde_json::json!({"user": "a"}))]);
    let matches = engine.advance(at(10 * 60));
    assert_eq!(
        matches.first().map(|matched| matched.time),
        Some(at(6 * 60)),
        "first run end more than 5 minutes after the first event"
    );
    assert_eq!(matches.len(), 1, "the timer restarts only at the key's next event");
}

#[test]
fn metric_aggregation_tests_each_key_against_thresholds_at_run_ends() {
    let mut engine = engine(
        "name: m\ntype: metric_aggregation\nmetric_agg_key: latency\nmetric_agg_type: avg\nmax_threshold: 100\nquery_key: host\nbuffer_time: {minutes: 5}\nrun_every: {minutes: 1}\n",
    );
    feed(
        &mut engine,
        vec![
            event(0, serde_json::json!({"host": "ok", "latency": 50})),
            event(10, serde_json::json!({"host": "slow", "latency": "150"})),
            event(20, serde_json::json!({"host": "slow", "latency": 250})),
            event(30, serde_json::json!({"host": "ok", "latency": 70})),
        ],
    );
    let matches = engine.advance(at(60));
    assert_eq!(matches.len(), 1, "{matches:?}");
    assert_eq!(text(&matches[0], "host"), "slow");
    assert_eq!(matches[0].body.get("metric_latency_avg"), Some(&Value::Float(200.0)));
    assert_eq!(matches[0].time, at(60));
    // The segment is the last 5 minutes: the slow key keeps matching until its
    // events leave it.
    let later = engine.advance(at(6 * 60));
    assert_eq!(later.iter().filter(|matched| text(matched, "host") == "slow").count(), 4);
}

#[test]
fn metric_aggregation_without_query_key_tests_empty_segments() {
    let mut engine = engine("name: m\ntype: metric_aggregation\nmetric_agg_key: bytes\nmetric_agg_type: sum\nmin_threshold: 10\nbuffer_time: {minutes: 1}\nrun_every: {minutes: 1}\n");
    feed(&mut engine, vec![event(0, serde_json::json!({"bytes": 50}))]);
    let matches = engine.advance(at(180));
    let sums: Vec<f64> = matches.iter().map(|matched| number(matched, "metric_agg_value")).collect();
    assert_eq!(sums, vec![0.0, 0.0], "runs ending at 2:00 and 3:00 saw no bytes");
}

#[test]
fn metric_aggregation_text_uses_formatted_value() {
    let definition = rule(
        "name: m\ntype: metric_aggregation\nmetric_agg_key: cpu\nmetric_agg_type: max\nmax_threshold: 0.9\nmetric_format_string: \"{:.1%}\"\nbuffer_time: {minutes: 1}\nrun_every: {minutes: 1}\nuse_local_time: false\n",
    );
    let mut engine = RuleEngine::new(vec![definition]).unwrap();
    let mut alerter = Alerter::new(engine.definitions());
    feed(&mut engine, vec![event(0, serde_json::json!({"cpu": 0.95}))]);
    let alerts = alerter.process(engine.advance(at(60)), at(60));
    assert_eq!(alerts.len(), 1);
    assert!(
        alerts[0].text.contains("Threshold violation, max:cpu 95.0% (min: None max : 0.9) \n\n"),
        "{}",
        alerts[0].text
    );
}

#[test]
fn change_rule_reports_old_and_new_values_per_key() {
    let mut engine = engine("name: ch\ntype: change\ncompare_key: status\nignore_null: true\nquery_key: host\n");
    let matches = feed(
        &mut engine,
        vec![
            event(0, serde_json::json!({"host": "a", "status": "up"})),
            event(1, serde_json::json!({"host": "a", "status": "up"})),
            event(2, serde_json::json!({"host": "b", "status": "down"})),
            event(3, serde_json::json!({"host": "a"})),
            event(4, serde_json::json!({"host": "a", "status": "down"})),
        ],
    );
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0].body.get("old_value"), Some(&Value::from(serde_json::json!(["up"]))));
    assert_eq!(matches[0].body.get("new_value"), Some(&Value::from(serde_json::json!(["down"]))));
}

#[test]
fn change_rule_timeframe_limits_the_gap() {
    let mut engine = engine(
        "name: ch\ntype: change\ncompare_key: status\nignore_null: false\nquery_key: host\ntimeframe: {minutes: 1}\n",
    );
    let matches = feed(
        &mut engine,
        vec![
            event(0, serde_json::json!({"host": "a", "status": 1})),
            event(120, serde_json::json!({"host": "a", "status": 2})),
            event(150, serde_json::json!({"host": "a", "status": 3})),
        ],
    );
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0].time, at(150));
}

#[test]
fn blacklist_and_whitelist_compare_exact_values() {
    let mut blacklist = engine("name: b\ntype: blacklist\ncompare_key: user\nblacklist: [root, 5]\n");
    let matches = feed(
        &mut blacklist,
        vec![
            event(0, serde_json::json!({"user": "root"})),
            event(1, serde_json::json!({"user": "5"})),
            event(2, serde_json::json!({"user": 5})),
            event(3, serde_json::json!({})),
        ],
    );
    assert_eq!(matches.len(), 2, "string root and number 5 match; the text \"5\" does not");
    let mut whitelist = engine("name: w\ntype: whitelist\ncompare_key: user\nwhitelist: [alice]\nignore_null: true\n");
    let matches = feed(
        &mut whitelist,
        vec![
            event(0, serde_json::json!({"user": "alice"})),
            event(1, serde_json::json!({"user": "mallory"})),
            event(2, serde_json::json!({})),
        ],
    );
    assert_eq!(matches.len(), 1);
    assert_eq!(text(&matches[0], "user"), "mallory");
}

#[test]
fn include_restricts_match_bodies_but_keeps_key_fields() {
    let mut engine = engine("name: i\ntype: any\ninclude: [message]\nquery_key: host\n");
    let matches = feed(&mut engine, vec![event(0, serde_json::json!({"host": "h", "message": "m", "secret": "s"}))]);
    let mut names: Vec<&str> = matches[0].body.keys().map(|key| key.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, vec!["@timestamp", "host", "message", "num_hits", "num_matches"]);
}

#[test]
fn sls_unix_seconds_strings_are_event_time() {
    let mut engine = engine("name: sls\ntype: frequency\nnum_events: 2\ntimeframe: {minutes: 1}\ntimestamp_field: __time__\ntimestamp_type: unix\n");
    let fields = |time: &str| {
        let Value::Object(fields) = Value::from(serde_json::json!({"__time__": time})) else { unreachable!("object") };
        LogEvent::from_fields("sls", fields)
    };
    let matches = engine.add_events(&[fields("1700000000"), fields("1700000030")]);
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0].body.get("__time__"), Some(&Value::Integer(1_700_000_030)));
    let missing = engine.add_events(&[fields("soon")]);
    assert!(missing.is_empty());
    assert_eq!(engine.stats()[0].events_without_timestamp_total, 1);
}

#[test]
fn realert_silences_per_query_key() {
    let mut engine = engine("name: r\ntype: any\nquery_key: host\nrealert: {minutes: 5}\n");
    let mut alerter = Alerter::new(engine.definitions());
    let mut sent = Vec::new();
    for (seconds, host) in [(0, "h1"), (60, "h1"), (60, "h2"), (360, "h1")] {
        let matches = feed(&mut engine, vec![event(seconds, serde_json::json!({"host": host}))]);
        for alert in alerter.process(matches, at(seconds)) {
            sent.push((alert.alert_time, text(&alert.matches[0], "host")));
        }
    }
    assert_eq!(sent, vec![(at(0), "h1".into()), (at(60), "h2".into()), (at(360), "h1".into())]);
    assert_eq!(alerter.silenced_matches_total(), 1);
}

#[test]
fn exponential_realert_doubles_the_silence_up_to_the_cap() {
    let mut engine = engine("name: r\ntype: any\nrealert: {minutes: 1}\nexponential_realert: {minutes: 10}\n");
    let mut alerter = Alerter::new(engine.definitions());
    let mut alert_minutes = Vec::new();
    for minute in 0..40 {
        let matches = feed(&mut engine, vec![event(minute * 60, serde_json::json!({}))]);
        if !alerter.process(matches, at(minute * 60)).is_empty() {
            alert_minutes.push(minute);
        }
    }
    assert_eq!(alert_minutes, vec![0, 1, 3, 7, 15, 25, 35]);
}

#[test]
fn aggregation_groups_by_key_and_renders_the_summary_table() {
    let mut engine = engine(
        "name: agg\ntype: any\naggregation: {minutes: 10}\naggregation_key: user\nsummary_table_fields: [user]\nalert_text_type: aggregation_summary_only\n",
    );
    let mut alerter = Alerter::new(engine.definitions());
    let mut alerts = Vec::new();
    for (seconds, user) in [(0, "alice"), (300, "bob"), (360, "alice")] {
        let matches = feed(&mut engine, vec![event(seconds, serde_json::json!({"user": user}))]);
        alerts.extend(alerter.process(matches, at(seconds)));
    }
    assert!(alerts.is_empty());
    assert_eq!(alerter.next_flush_due(), Some(at(600)));
    assert!(alerter.flush_due(at(600)).is_empty(), "sent only once now is after the send time");
    let first = alerter.flush_due(at(601));
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].matches.len(), 2);
    assert_eq!(first[0].aggregation_key.as_deref(), Some("alice"));
    assert_eq!(first[0].alert_time, at(600));
    let table = "Aggregation resulted in the following data for summary_table_fields ==> ['user', 'count']:\n\n+-------+-------+\n| user  | count |\n+=======+=======+\n| alice | 2     |\n+-------+-------+\n\n";
    assert_eq!(first[0].text, table);
    let fields = first[0].to_fields();
    assert!(matches!(fields.get("aggregated_matches"), Some(Value::Array(items)) if items.len() == 2));
    let second = alerter.flush_due(at(901));
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].aggregation_key.as_deref(), Some("bob"));
}

#[test]
fn aggregation_on_a_cron_schedule_sends_at_the_next_tick() {
    let mut engine = engine("name: agg\ntype: any\naggregation: {schedule: \"*/15 * * * *\"}\n");
    let mut alerter = Alerter::new(engine.definitions());
    let matches = feed(&mut engine, vec![event(125, serde_json::json!({})), event(130, serde_json::json!({}))]);
    assert!(alerter.process(matches, at(130)).is_empty());
    assert_eq!(alerter.next_flush_due(), Some(at(900)));
    let alerts = alerter.flush_due(at(901));
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].matches.len(), 2);
    assert!(alerts[0].text.contains("\n----------------------------------------\n"));
}

#[test]
fn duplicate_rule_names_are_refused() {
    let error = RuleEngine::new(vec![rule("name: x\ntype: any\n"), rule("name: x\ntype: any\n")]).unwrap_err();
    assert!(error.to_string().contains("unique"), "{error}");
}

#[test]
fn percentage_match_evaluates_the_match_bucket_filter() {
    let mut engine = engine(
        "name: p\ntype: percentage_match\nmatch_bucket_filter: [{term: {status: 500}}]\nmax_percentage: 30\nbuffer_time: {minutes: 1}\nrun_every: {minutes: 1}\n",
    );
    let statuses = [500, 200, 500, 200, 200];
    let events = statuses
        .iter()
        .enumerate()
        .map(|(index, status)| event(index as i64, serde_json::json!({"status": status})))
        .collect();
    feed(&mut engine, events);
    let matches = engine.advance(at(60));
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0].body.get("percentage"), Some(&Value::Float(40.0)));
    assert_eq!(matches[0].body.get("denominator"), Some(&Value::Integer(5)));
}

#[test]
fn rule_filter_selects_the_events_a_rule_sees() {
    let mut engine = engine(
        "name: f\ntype: frequency\nnum_events: 2\ntimeframe: {minutes: 5}\nfilter:\n- query:\n    query_string:\n      query: \"message:*Exception* OR level:ERROR\"\n",
    );
    let matches = feed(
        &mut engine,
        vec![
            event(0, serde_json::json!({"message": "NullPointerException at x", "level": "WARN"})),
            event(1, serde_json::json!({"message": "all good", "level": "INFO"})),
            event(2, serde_json::json!({"message": "disk", "level": "ERROR"})),
        ],
    );
    assert_eq!(matches.len(), 1);
    assert_eq!(number(&matches[0], "num_hits"), 2.0, "the INFO event never reached the rule");
    assert_eq!(engine.stats()[0].events_total, 2);
}

#[test]
fn malformed_filters_are_build_errors_naming_the_rule_and_key() {
    let error =
        RuleEngine::new(vec![rule("name: bad\ntype: any\nfilter:\n- query_string: {query: \"message:(unclosed\"}\n")])
            .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("\"bad\"") && message.contains("\"filter\""), "{message}");
}

#[test]
fn top_count_keys_add_top_events_for_the_match_key() {
    let definition = rule(
        "name: top\ntype: frequency\nnum_events: 3\ntimeframe: {minutes: 5}\nquery_key: host\ntop_count_keys: [path]\ntop_count_number: 1\nuse_local_time: false\n",
    );
    let mut engine = RuleEngine::new(vec![definition]).unwrap();
    let mut alerter = Alerter::new(engine.definitions());
    let matches = feed(
        &mut engine,
        vec![
            event(0, serde_json::json!({"host": "a", "path": "/x"})),
            event(1, serde_json::json!({"host": "b", "path": "/y"})),
            event(2, serde_json::json!({"host": "b", "path": "/y"})),
            event(3, serde_json::json!({"host": "a", "path": "/x"})),
            event(4, serde_json::json!({"host": "a", "path": "/z"})),
        ],
    );
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0].body.get("top_events_path"), Some(&Value::from(serde_json::json!({"/x": 2}))));
    let alerts = alerter.process(matches, at(4));
    assert!(alerts[0].text.contains("\n\npath:\n/x: 2\n\n@timestamp"), "{}", alerts[0].text);
    assert!(!alerts[0].text.contains("top_events_path:"), "top_events fields are not listed again");
}

#[test]
fn wall_clock_advance_subtracts_each_rules_query_delay() {
    let mut engine = RuleEngine::new(vec![
        rule("name: a\ntype: flatline\nthreshold: 1\ntimeframe: {minutes: 5}\nrun_every: {minutes: 1}\n"),
        rule("name: b\ntype: flatline\nthreshold: 1\ntimeframe: {minutes: 5}\nrun_every: {minutes: 1}\nquery_delay: {minutes: 3}\n"),
    ])
    .unwrap();
    let mut matches = Vec::new();
    engine.advance_to_wall_clock(at(0), &mut matches);
    engine.advance_to_wall_clock(at(7 * 60), &mut matches);
    let fired: Vec<(&str, DateTime<Utc>)> = matches.iter().map(|matched| (&*matched.rule_name, matched.time)).collect();
    // Both rules anchor at their first watermark (a: 0:00, b: -3:00) and fire
    // five minutes after their first run; b's clock runs three minutes behind.
    assert_eq!(fired, vec![("a", at(6 * 60)), ("a", at(7 * 60)), ("b", at(3 * 60)), ("b", at(4 * 60))]);
    assert_eq!(engine.next_run_due(), Some(at(5 * 60)));
}

#[test]
fn spike_alert_on_new_data_fires_for_a_new_key_once_any_key_warmed_up() {
    let mut engine = engine(
        "name: s\ntype: spike\ntimeframe: {minutes: 5}\nspike_height: 2\nspike_type: up\nquery_key: host\nalert_on_new_data: true\nrun_every: {minutes: 1}\n",
    );
    let mut events: Vec<LogEvent> =
        (0..12).map(|minute| event(minute * 60, serde_json::json!({"host": "old"}))).collect();
    events.push(event(12 * 60 + 5, serde_json::json!({"host": "new"})));
    let matches = feed(&mut engine, events);
    let hosts: Vec<String> = matches.iter().map(|matched| text(matched, "host")).collect();
    assert_eq!(hosts, vec!["new"], "reference 0 for the new key, and the old key completed warm-up");
    assert_eq!(number(&matches[0], "reference_count"), 0.0);
}
