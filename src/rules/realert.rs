//! `Alerter`: turns matches into alerts the way ElastAlert's match
//! processing does (reference sections 5.6, 7.1, 7.2).
//!
//! For each match, in order: the silence key is `realert_key` (default the
//! rule name) plus `.` and the match's query_key value when the rule has a
//! query_key and the value is not null (flatline: the match's `key`, so
//! `.all` without query_key). A silenced key (`now < until`) drops the
//! match. Otherwise, with `realert` above zero, the key is silenced until
//! `now + realert`, or with `exponential_realert` for a doubling interval
//! capped at that value. Then the match is sent at once, or added to its
//! aggregation.
//!
//! "Now" is whatever the caller passes: the streaming transform passes the
//! wall clock, the replay passes the end of the run that produced the
//! match (what a live ElastAlert would read). State (silences, pending
//! aggregations) is in memory; expired silences are pruned on each flush.
//!
//! Persistence is the caller's: with `record_silences(true)` every silence
//! set or extended is also kept as a `SilenceRecord` until drained (the
//! transform writes them to ElastAlert's silence index), and
//! `restore_silence` seeds a silence read back at start-up, so realert
//! survives a restart. Off by default, so the replay keeps nothing.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::event::Value;
use crate::rules::aggregation::{parse_schedule, RuleAggregations};
use crate::rules::alert::Alert;
use crate::rules::config::{AggregationWindow, RuleDefinition, RuleKind};
use crate::rules::fields::{self, python_str};
use crate::rules::time::{self, duration_nanos, EventTime};
use crate::rules::Match;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Silence {
    until: EventTime,
    exponent: u32,
}

/// A silence the alerter set or extended: the record ElastAlert writes to
/// its silence index (`rule_name` = `key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilenceRecord {
    /// The silence key: `realert_key`, or `realert_key.<query_key value>`.
    pub key: String,
    pub until: DateTime<Utc>,
    pub exponent: u32,
}

/// Realert silencing and aggregation for the rules of one engine.
#[derive(Debug)]
pub struct Alerter {
    rules: Vec<Arc<RuleDefinition>>,
    schedules: Vec<Option<croner::Cron>>,
    silences: HashMap<String, Silence>,
    aggregations: Vec<RuleAggregations>,
    silenced_matches_total: u64,
    /// Silences set since the last drain; `None` while not recording.
    recorded_silences: Option<Vec<SilenceRecord>>,
}

impl Alerter {
    /// `rules` in engine index order (`RuleEngine::definitions`).
    pub fn new(rules: Vec<Arc<RuleDefinition>>) -> Alerter {
        let schedules = rules
            .iter()
            .map(|rule| match &rule.alerting.aggregation {
                // Validated when the rule was loaded.
                Some(AggregationWindow::Schedule { expression }) => parse_schedule(expression).ok(),
                _ => None,
            })
            .collect();
        let aggregations = rules.iter().map(|_| RuleAggregations::default()).collect();
        Alerter {
            rules,
            schedules,
            silences: HashMap::new(),
            aggregations,
            silenced_matches_total: 0,
            recorded_silences: None,
        }
    }

    /// Starts or stops keeping a `SilenceRecord` for every silence set or
    /// extended. Stopping drops the records not yet drained.
    pub fn record_silences(&mut self, enabled: bool) {
        match (enabled, self.recorded_silences.is_some()) {
            (true, false) => self.recorded_silences = Some(Vec::new()),
            (false, true) => self.recorded_silences = None,
            _ => {}
        }
    }

    /// Moves the silences set since the last call into `records`, in the
    /// order they were set.
    pub fn drain_silence_records(&mut self, records: &mut Vec<SilenceRecord>) {
        if let Some(recorded) = &mut self.recorded_silences {
            records.append(recorded);
        }
    }

    /// Seeds a silence read back from storage: matches for `key` are
    /// dropped until `until`, and exponential realert continues from
    /// `exponent`. A silence already held that lasts longer is kept. Not
    /// recorded (it is already stored).
    pub fn restore_silence(&mut self, key: String, until: DateTime<Utc>, exponent: u32) {
        let restored = Silence { until: time::from_datetime(until), exponent };
        match self.silences.get(&key) {
            Some(held) if held.until >= restored.until => {}
            _ => {
                self.silences.insert(key, restored);
            }
        }
    }

    /// Processes matches at processing time `now`; returns alerts to send now
    /// (due aggregations first, then unaggregated matches in order).
    pub fn process(&mut self, matches: Vec<Match>, now: DateTime<Utc>) -> Vec<Alert> {
        let mut alerts = self.flush_due(now);
        let now = time::from_datetime(now);
        for matched in matches {
            let Some(rule) = self.rules.get(matched.rule_index).cloned() else {
                continue;
            };
            let silence_key = silence_key(&rule, &matched);
            if self.silences.get(&silence_key).is_some_and(|silence| now < silence.until) {
                self.silenced_matches_total += 1;
                continue;
            }
            if !rule.alerting.realert.is_zero() {
                let previous = self.silences.get(&silence_key).copied();
                let silence = next_silence(previous, now, rule.alerting.realert, rule.alerting.exponential_realert);
                if let Some(recorded) = &mut self.recorded_silences {
                    recorded.push(SilenceRecord {
                        key: silence_key.clone(),
                        until: time::to_datetime(silence.until),
                        exponent: silence.exponent,
                    });
                }
                self.silences.insert(silence_key, silence);
            }
            let index = matched.rule_index;
            if rule.alerting.aggregation.is_none() {
                let matches = with_rule_params(&rule, vec![matched]);
                alerts.push(Alert::build(&rule, index, time::to_datetime(now), None, matches));
                continue;
            }
            let key = rule
                .alerting
                .aggregation_key
                .as_ref()
                .and_then(|aggregation_key| aggregation_key_value(aggregation_key, &matched));
            self.aggregations[index].add(&rule.alerting, self.schedules[index].as_ref(), key, matched, now);
        }
        alerts
    }

    /// Sends aggregations whose send time is before `now` and prunes expired
    /// silences.
    pub fn flush_due(&mut self, now: DateTime<Utc>) -> Vec<Alert> {
        let now = time::from_datetime(now);
        self.prune_silences(now);
        let mut alerts = Vec::new();
        for (index, aggregations) in self.aggregations.iter_mut().enumerate() {
            for due in aggregations.take_due(now) {
                alerts.push(build_aggregated(&self.rules[index], index, due));
            }
        }
        alerts
    }

    /// Sends every pending aggregation regardless of its time (end of a
    /// replay, shutdown); each keeps its scheduled `alert_time`.
    pub fn flush_all(&mut self) -> Vec<Alert> {
        let mut alerts = Vec::new();
        for (index, aggregations) in self.aggregations.iter_mut().enumerate() {
            for due in aggregations.take_all() {
                alerts.push(build_aggregated(&self.rules[index], index, due));
            }
        }
        alerts.sort_by_key(|alert| alert.alert_time);
        alerts
    }

    /// The earliest pending aggregation send time.
    pub fn next_flush_due(&self) -> Option<DateTime<Utc>> {
        self.aggregations.iter().filter_map(RuleAggregations::next_due).min().map(time::to_datetime)
    }

    /// Keys currently silenced or remembered for exponential realert.
    pub fn silence_keys(&self) -> usize {
        self.silences.len()
    }

    /// Matches held in pending aggregations.
    pub fn pending_aggregated_matches(&self) -> usize {
        self.aggregations.iter().map(RuleAggregations::pending_matches).sum()
    }

    /// Matches dropped by realert silencing, since creation.
    pub fn silenced_matches_total(&self) -> u64 {
        self.silenced_matches_total
    }

    fn prune_silences(&mut self, now: EventTime) {
        let rules = &self.rules;
        // An exponential entry is kept while it can still raise the
        // exponent; after twice the cap it decays to the plain case anyway.
        let longest_memory = rules
            .iter()
            .filter_map(|rule| rule.alerting.exponential_realert)
            .max()
            .map_or(0, |cap| duration_nanos(cap).saturating_mul(2));
        self.silences.retain(|_, silence| now < silence.until.saturating_add(longest_memory));
    }
}

fn build_aggregated(rule: &RuleDefinition, index: usize, due: crate::rules::aggregation::OpenAggregation) -> Alert {
    let matches = with_rule_params(rule, due.matches);
    Alert::build(rule, index, time::to_datetime(due.send_at), due.key, matches)
}

/// `include_rule_params_in_matches`: copies the named rule options into the
/// matches (or only the first) as `rule_param_<name>`.
fn with_rule_params(rule: &RuleDefinition, mut matches: Vec<Match>) -> Vec<Match> {
    let params = &rule.alerting.include_rule_params;
    if params.is_empty() {
        return matches;
    }
    let limit = if rule.alerting.include_rule_params_in_first_match_only { 1 } else { matches.len() };
    for matched in matches.iter_mut().take(limit) {
        for name in params {
            let value = rule.option(name).cloned().map(Value::from).unwrap_or(Value::Null);
            matched.body.insert(format!("rule_param_{name}").into(), value);
        }
    }
    matches
}

/// The silence key of a match.
pub(crate) fn silence_key(rule: &RuleDefinition, matched: &Match) -> String {
    let base = &rule.alerting.realert_key;
    let value = if matches!(rule.kind, RuleKind::Flatline { .. }) {
        matched.body.get("key")
    } else {
        rule.query_key.as_ref().and_then(|query_key| fields::lookup(&matched.body, query_key.name()))
    };
    match value.filter(|value| !value.is_null()) {
        Some(value) => format!("{base}.{}", python_str(value)),
        None => base.clone(),
    }
}

fn aggregation_key_value(aggregation_key: &fields::QueryKey, matched: &Match) -> Option<String> {
    match aggregation_key {
        fields::QueryKey::Single(path) => {
            fields::lookup(&matched.body, path).filter(|value| !value.is_null()).map(python_str)
        }
        fields::QueryKey::Compound { fields: paths, .. } => Some(
            paths
                .iter()
                .map(|path| fields::python_str_opt(fields::lookup(&matched.body, path)))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    }
}

/// Upstream's `next_alert_time`: plain realert, or a doubling interval
/// that decays with the time since the last silence ended.
fn next_silence(
    previous: Option<Silence>,
    now: EventTime,
    realert: std::time::Duration,
    exponential_cap: Option<std::time::Duration>,
) -> Silence {
    let realert_nanos = duration_nanos(realert);
    let (Some(cap), Some(previous)) = (exponential_cap, previous) else {
        return Silence { until: now.saturating_add(realert_nanos), exponent: 0 };
    };
    let realert_seconds = realert.as_secs_f64();
    let mut difference = (now.saturating_sub(previous.until) / 1_000_000_000) as f64;
    let mut exponent = previous.exponent;
    let interval = |exponent: u32| realert_seconds * 2f64.powi(exponent.min(62) as i32);
    if difference < interval(exponent) {
        exponent += 1;
    } else {
        while difference > interval(exponent) && exponent > 0 {
            difference -= interval(exponent);
            exponent -= 1;
        }
    }
    let wait_seconds = interval(exponent);
    if wait_seconds >= cap.as_secs_f64() {
        return Silence { until: now.saturating_add(duration_nanos(cap)), exponent: exponent.saturating_sub(1) };
    }
    Silence { until: now.saturating_add((wait_seconds * 1e9) as i64), exponent }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::rules::parse_rule_yaml;

    fn alerter(yaml: &str) -> Alerter {
        let definition = RuleDefinition::from_config(parse_rule_yaml(yaml, "test rule").unwrap()).unwrap();
        Alerter::new(vec![Arc::new(definition)])
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_704_067_200 + seconds, 0).unwrap()
    }

    fn host_match(host: &str, seconds: i64) -> Match {
        let mut body = crate::event::ObjectMap::default();
        body.insert("host".into(), Value::from(host));
        Match { rule_index: 0, rule_name: Arc::from("errors"), time: at(seconds), body }
    }

    const PER_HOST: &str = "name: errors\ntype: any\nquery_key: host\nrealert: {minutes: 10}\n";

    #[test]
    fn silences_set_are_recorded_with_their_key_until_and_exponent() {
        let mut alerter = alerter(PER_HOST);
        alerter.record_silences(true);
        let alerts =
            alerter.process(vec![host_match("web-1", 0), host_match("web-1", 1), host_match("web-2", 2)], at(5));
        assert_eq!(alerts.len(), 2, "the second web-1 match is silenced");
        let mut records = Vec::new();
        alerter.drain_silence_records(&mut records);
        assert_eq!(
            records,
            [
                SilenceRecord { key: "errors.web-1".into(), until: at(605), exponent: 0 },
                SilenceRecord { key: "errors.web-2".into(), until: at(605), exponent: 0 },
            ]
        );
        records.clear();
        alerter.drain_silence_records(&mut records);
        assert!(records.is_empty(), "drained once");
    }

    #[test]
    fn a_restored_silence_suppresses_matches_until_it_ends() {
        let mut alerter = alerter(PER_HOST);
        alerter.record_silences(true);
        alerter.restore_silence("errors.web-1".into(), at(600), 0);
        assert!(alerter.process(vec![host_match("web-1", 10)], at(10)).is_empty());
        assert_eq!(alerter.silenced_matches_total(), 1);
        let mut records = Vec::new();
        alerter.drain_silence_records(&mut records);
        assert!(records.is_empty(), "a restored silence is not written again");
        assert_eq!(alerter.process(vec![host_match("web-2", 11)], at(11)).len(), 1, "other keys are not silenced");
        // A shorter silence read later does not cut the held one short.
        alerter.restore_silence("errors.web-1".into(), at(100), 0);
        assert!(alerter.process(vec![host_match("web-1", 200)], at(200)).is_empty());
        assert_eq!(alerter.process(vec![host_match("web-1", 601)], at(601)).len(), 1, "alerts again once it ended");
    }

    #[test]
    fn exponential_realert_continues_from_a_restored_exponent() {
        let mut alerter = alerter("name: errors\ntype: any\nrealert: {seconds: 10}\nexponential_realert: {hours: 1}\n");
        alerter.record_silences(true);
        alerter.restore_silence("errors".into(), at(100), 3);
        assert!(alerter.process(vec![host_match("web-1", 50)], at(50)).is_empty(), "silenced until 100 s");
        assert_eq!(alerter.process(vec![host_match("web-1", 105)], at(105)).len(), 1);
        let mut records = Vec::new();
        alerter.drain_silence_records(&mut records);
        // 5 s after the restored silence ended, within 10 s × 2^3: the
        // exponent grows to 4 and the wait doubles to 160 s.
        assert_eq!(records, [SilenceRecord { key: "errors".into(), until: at(265), exponent: 4 }]);
    }

    #[test]
    fn exponential_realert_matches_upstream_table() {
        let second = 1_000_000_000i64;
        let until = 1_000 * second;
        let realert = Duration::from_secs(10);
        let cap = Some(Duration::from_secs(86_400));
        let exponent_after = |offset_seconds: i64, exponent: u32| {
            next_silence(Some(Silence { until, exponent }), until + offset_seconds * second, realert, cap).exponent
        };
        assert_eq!(exponent_after(5, 0), 1);
        assert_eq!(exponent_after(15, 0), 0);
        assert_eq!(exponent_after(15, 1), 2);
        assert_eq!(exponent_after(60, 2), 1);
        assert_eq!(exponent_after(60, 3), 4);
        assert_eq!(exponent_after(300, 1), 0);
        assert_eq!(exponent_after(4 * 3600, 9), 0);
        assert_eq!(exponent_after(4 * 3600, 10), 9);
        assert_eq!(exponent_after(4 * 3600, 11), 12);
    }

    #[test]
    fn exponential_realert_is_capped() {
        let second = 1_000_000_000i64;
        let silence = next_silence(
            Some(Silence { until: 0, exponent: 20 }),
            second,
            Duration::from_secs(10),
            Some(Duration::from_secs(3600)),
        );
        assert_eq!(silence.until, second + 3600 * second);
        assert_eq!(silence.exponent, 20);
    }
}
