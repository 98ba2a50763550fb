//! Property test: the engine's frequency rule against a naive model of
//! ElastAlert's EventWindow (sorted list, evict while the span reaches the
//! timeframe, match at `count ≥ num_events` reporting the newest entry,
//! then discard the window), with out-of-order events and several keys.

use chrono::{TimeZone, Utc};
use pipe::event::{LogEvent, Value};
use pipe::rules::{parse_rule_yaml, RuleDefinition, RuleEngine};
use proptest::prelude::*;

fn naive_matches(events: &[(u8, i64)], num_events: usize, timeframe: i64) -> Vec<(u8, usize)> {
    let mut windows: std::collections::HashMap<u8, Vec<(i64, usize)>> = std::collections::HashMap::new();
    let mut matches = Vec::new();
    for (id, &(key, time)) in events.iter().enumerate() {
        let window = windows.entry(key).or_default();
        let position = window.iter().rposition(|(existing, _)| *existing <= time).map_or(0, |index| index + 1);
        window.insert(position, (time, id));
        while window.len() > 1 && window[window.len() - 1].0 - window[0].0 >= timeframe {
            window.remove(0);
        }
        if window.len() >= num_events {
            matches.push((key, window[window.len() - 1].1));
            window.clear();
        }
    }
    matches
}

fn engine_matches(events: &[(u8, i64)], num_events: usize, timeframe: i64) -> Vec<(u8, usize)> {
    // Runs so long and a look-back so deep that neither housekeeping nor
    // the late-event cut interferes with the window itself.
    let yaml = format!(
        "name: model\ntype: frequency\nnum_events: {num_events}\ntimeframe: {{seconds: {timeframe}}}\nquery_key: key\nrun_every: {{days: 100}}\nbuffer_time: {{days: 1000}}\n"
    );
    let definition = RuleDefinition::from_config(parse_rule_yaml(&yaml, "model").unwrap()).unwrap();
    let mut engine = RuleEngine::new(vec![definition]).unwrap();
    let base = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    let batch: Vec<LogEvent> = events
        .iter()
        .enumerate()
        .map(|(id, &(key, time))| {
            let timestamp = (base + chrono::Duration::seconds(time)).to_rfc3339();
            let json = serde_json::json!({"@timestamp": timestamp, "key": format!("k{key}"), "id": id});
            let Value::Object(fields) = Value::from(json) else { unreachable!("object") };
            LogEvent::from_fields("model", fields)
        })
        .collect();
    engine
        .add_events(&batch)
        .iter()
        .map(|matched| {
            let key = matched.body.get("key").and_then(Value::as_str).unwrap_or_default();
            let key: u8 = key.trim_start_matches('k').parse().unwrap_or(u8::MAX);
            let id = matched.body.get("id").and_then(Value::as_f64).unwrap_or(-1.0) as usize;
            (key, id)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn frequency_window_matches_naive_model(
        events in prop::collection::vec((0u8..3, 0i64..3600), 0..200),
        num_events in 1usize..6,
        timeframe in 1i64..1200,
    ) {
        prop_assert_eq!(engine_matches(&events, num_events, timeframe), naive_matches(&events, num_events, timeframe));
    }
}
