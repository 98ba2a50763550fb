//! `cardinality` (reference section 3.9): the number of distinct values of
//! `cardinality_field` per key over `timeframe`.
//!
//! Upstream evaluates it per document (`add_data`), not with an aggregation
//! query, and so does pipe. Per key: each value's last-seen event time and
//! the key's first event time. An event with a value is recorded, then:
//! distinct `> max_cardinality`, or distinct `< min_cardinality` with more
//! than `timeframe` elapsed since the key's first event, is a violation;
//! on violation every key forgets values not seen within `timeframe` of the
//! event, and if the violation remains the event matches and the key's
//! first-event time restarts at its next event. Housekeeping forgets old
//! values and, with `min_cardinality`, checks every key at the run end.
//!
//! Memory: distinct values per key are capped at `max_tracked_keys` (least
//! recently seen evicted), as are keys.

use std::time::Duration;

use crate::event::{ObjectMap, Value};
use crate::rules::config::RuleDefinition;
use crate::rules::fields;
use crate::rules::frequency::counting_key;
use crate::rules::time::{duration_nanos, EventTime};
use crate::rules::window::{KeyedState, PartitionKey};
use crate::rules::{IncomingEvent, RawMatch, RuleState};

struct CardinalityKeyState {
    last_seen: KeyedState<EventTime>,
    first_event: Option<EventTime>,
}

pub(crate) struct CardinalityRule {
    timeframe: i64,
    field: String,
    max_cardinality: Option<u64>,
    min_cardinality: Option<u64>,
    capacity: usize,
    keys: KeyedState<CardinalityKeyState>,
}

impl CardinalityRule {
    pub fn new(
        timeframe: Duration,
        field: String,
        max_cardinality: Option<u64>,
        min_cardinality: Option<u64>,
        capacity: usize,
    ) -> CardinalityRule {
        CardinalityRule {
            timeframe: duration_nanos(timeframe),
            field,
            max_cardinality,
            min_cardinality,
            capacity,
            keys: KeyedState::new(capacity),
        }
    }

    fn violates(&self, key: &PartitionKey, time: EventTime) -> bool {
        let Some(state) = self.keys.peek(key) else {
            return false;
        };
        let distinct = state.last_seen.len() as u64;
        let elapsed = time.saturating_sub(state.first_event.unwrap_or(time));
        self.max_cardinality.is_some_and(|max| distinct > max)
            || self.min_cardinality.is_some_and(|min| distinct < min && elapsed > self.timeframe)
    }

    fn forget_old_values(&mut self, time: EventTime) {
        let horizon = time.saturating_sub(self.timeframe);
        for (_, state) in self.keys.iter_mut() {
            state.last_seen.retain(|_, last_seen| *last_seen >= horizon);
        }
    }
}

impl RuleState for CardinalityRule {
    fn add_event(&mut self, rule: &RuleDefinition, event: IncomingEvent<'_>, matches: &mut Vec<RawMatch>) {
        let key = counting_key(rule, event);
        let capacity = self.capacity;
        let state = self.keys.touch_or_insert_with(key.clone(), || CardinalityKeyState {
            last_seen: KeyedState::new(capacity),
            first_event: None,
        });
        state.first_event.get_or_insert(event.time);
        let Some(value) = fields::lookup(event.fields, &self.field).filter(|value| !value.is_null()) else {
            return;
        };
        *state.last_seen.touch_or_insert_with(Some(fields::key_string(value)), || event.time) = event.time;
        if !self.violates(&key, event.time) {
            return;
        }
        self.forget_old_values(event.time);
        if !self.violates(&key, event.time) {
            return;
        }
        if let Some(state) = self.keys.peek_mut(&key) {
            state.first_event = None;
        }
        matches.push(RawMatch { time: event.time, body: rule.event_body(event.fields) });
    }

    fn end_of_run(&mut self, rule: &RuleDefinition, run_end: EventTime, matches: &mut Vec<RawMatch>) {
        self.forget_old_values(run_end);
        if self.min_cardinality.is_none() {
            return;
        }
        for key in self.keys.keys() {
            if !self.violates(&key, run_end) {
                continue;
            }
            if let Some(state) = self.keys.peek_mut(&key) {
                state.first_event = None;
            }
            let mut body = ObjectMap::default();
            if let (Some(query_key), Some(text)) = (&rule.query_key, &key) {
                body.insert(query_key.name().into(), Value::from(text.as_str()));
            }
            matches.push(RawMatch { time: run_end, body });
        }
    }

    fn tracked_keys(&self) -> usize {
        self.keys.len()
    }

    fn evicted_keys_total(&self) -> u64 {
        self.keys.evicted_total()
    }
}
