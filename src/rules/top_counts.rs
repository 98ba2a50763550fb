//! `top_count_keys` over the stream (reference section 4.4).
//!
//! Upstream runs, when an alert is sent, a terms aggregation per key over
//! `[match time − timeframe, match time + 10 min]` (timeframe 10 minutes
//! when the rule has none, twice the timeframe for flatline), restricted to
//! the match's query_key value, and stores the `top_count_number` most
//! frequent values as `top_events_<key>`. A stream has no index to query,
//! so the engine keeps the recent events' values for those keys and counts
//! them when the match is made: the part of the range after the match time
//! holds only what has arrived so far.
//!
//! Bounded: entries older than the look-back before the newest entry are
//! dropped, and at most `MAX_TOP_COUNT_ENTRIES` are kept (oldest dropped).

use std::collections::VecDeque;
use std::time::Duration;

use crate::event::{KeyString, ObjectMap, Value};
use crate::rules::config::{RuleDefinition, RuleKind};
use crate::rules::fields;
use crate::rules::time::{duration_nanos, EventTime};

/// Cap on remembered events per rule.
pub const MAX_TOP_COUNT_ENTRIES: usize = 100_000;
/// Upstream counts up to ten minutes past the match time.
const AFTER_MATCH: i64 = 600_000_000_000;

struct RememberedEvent {
    time: EventTime,
    query_key: Option<KeyString>,
    values: Vec<Option<KeyString>>,
}

pub(crate) struct TopCounts {
    keys: Vec<String>,
    top_count_number: usize,
    look_back: i64,
    entries: VecDeque<RememberedEvent>,
}

impl TopCounts {
    /// `None` when the rule has no `top_count_keys`.
    pub fn for_rule(rule: &RuleDefinition) -> Option<TopCounts> {
        if rule.alerting.top_count_keys.is_empty() {
            return None;
        }
        let timeframe = match &rule.kind {
            RuleKind::Frequency { timeframe, .. } | RuleKind::Cardinality { timeframe, .. } => *timeframe,
            RuleKind::Flatline { timeframe, .. } => *timeframe * 2,
            RuleKind::Spike(settings) | RuleKind::SpikeAggregation { spike: settings, .. } => settings.timeframe,
            RuleKind::Change { timeframe: Some(timeframe), .. } => *timeframe,
            _ => Duration::from_secs(600),
        };
        Some(TopCounts {
            keys: rule.alerting.top_count_keys.clone(),
            top_count_number: rule.alerting.top_count_number,
            look_back: duration_nanos(timeframe),
            entries: VecDeque::new(),
        })
    }

    pub fn remember(&mut self, rule: &RuleDefinition, fields: &ObjectMap, time: EventTime) {
        let query_key = rule.query_key.as_ref().and_then(|query_key| query_key.key_text(fields));
        let values = self
            .keys
            .iter()
            .map(|key| fields::lookup(fields, key).filter(|value| !value.is_null()).map(fields::key_string))
            .collect();
        self.entries.push_back(RememberedEvent { time, query_key, values });
        let newest = self.entries.back().map_or(time, |entry| entry.time).max(time);
        let horizon = newest.saturating_sub(self.look_back.saturating_add(AFTER_MATCH));
        while self.entries.len() > MAX_TOP_COUNT_ENTRIES
            || self.entries.front().is_some_and(|entry| entry.time < horizon)
        {
            self.entries.pop_front();
        }
    }

    /// Adds `top_events_<key>` maps to a match body.
    pub fn annotate(&self, rule: &RuleDefinition, body: &mut ObjectMap, match_time: EventTime) {
        let query_key = match (&rule.query_key, &rule.kind) {
            (_, RuleKind::Flatline { .. }) => body.get("key").filter(|value| !value.is_null()).map(fields::key_string),
            (Some(query_key), _) => {
                fields::lookup(body, query_key.name()).filter(|value| !value.is_null()).map(fields::key_string)
            }
            (None, _) => None,
        };
        let start = match_time.saturating_sub(self.look_back);
        let end = match_time.saturating_add(AFTER_MATCH);
        for (index, key) in self.keys.iter().enumerate() {
            let mut tally: indexmap::IndexMap<&KeyString, i64> = indexmap::IndexMap::new();
            let in_range = self.entries.iter().filter(|entry| entry.time >= start && entry.time <= end);
            for entry in in_range.filter(|entry| query_key.is_none() || entry.query_key == query_key) {
                if let Some(Some(value)) = entry.values.get(index) {
                    *tally.entry(value).or_insert(0) += 1;
                }
            }
            let mut counts: Vec<(KeyString, i64)> =
                tally.into_iter().map(|(value, count)| (value.clone(), count)).collect();
            counts.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
            counts.truncate(self.top_count_number);
            let map: ObjectMap = counts.into_iter().map(|(value, count)| (value, Value::Integer(count))).collect();
            body.insert(format!("top_events_{key}").into(), Value::Object(map));
        }
    }
}
