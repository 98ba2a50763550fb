//! Counting rule types over per-key sliding windows: `frequency` and
//! `flatline` (reference sections 3.5 and 3.7).
//!
//! frequency: each event is inserted into its key's window and checked at
//! once; `sum ≥ num_events` matches with the newest event in the window and
//! discards the window. Housekeeping drops keys whose newest entry is more
//! than `timeframe` before the run end.
//!
//! flatline: events only fill windows; the key of the run's last event is
//! checked at the run end (upstream checks it after each query), then every
//! key gets a zero-count placeholder at the run end and is checked:
//! eligible once `newest − first ≥ timeframe`, matching while
//! `count < threshold`. Without `query_key` the single key `all` exists from
//! the first run on, so a silent stream alerts once `timeframe` has passed.
//!
//! Memory per key: the window holds one entry per distinct timestamp (equal
//! timestamps are merged, which keeps counts and eviction exact) plus one
//! stored event body (the newest). The body first shares the source's
//! string buffers (a cheap copy into a reused map); one that survives a
//! whole run unreplaced is turned into an owned copy at the next run end, so
//! a quiet key never pins a source read buffer for more than two runs while
//! a busy key never pays for a deep copy.

use std::time::Duration;

use crate::event::{ObjectMap, Value};
use crate::rules::config::RuleDefinition;
use crate::rules::fields;
use crate::rules::time::{duration_nanos, EventTime};
use crate::rules::window::{EventWindow, KeyedState, PartitionKey, WindowEntry};
use crate::rules::{IncomingEvent, RawMatch, RuleState};

/// The key for counting types: the query_key text, `None` when the value
/// is missing, `all` without a query_key.
pub(crate) fn counting_key(rule: &RuleDefinition, event: IncomingEvent<'_>) -> PartitionKey {
    match &rule.query_key {
        Some(query_key) => query_key.key_text(event.fields),
        None => Some("all".into()),
    }
}

/// frequency's newest event: shares source buffers until `owned`.
struct NewestEvent {
    time: EventTime,
    body: ObjectMap,
    owned: bool,
    stored_in_run: u64,
}

struct FrequencyKeyState {
    /// Payload: the event body, only with `attach_related`; boxed so an
    /// entry without one stays small.
    window: EventWindow<Option<Box<ObjectMap>>>,
    newest: Option<NewestEvent>,
}

pub(crate) struct FrequencyRule {
    num_events: f64,
    timeframe: i64,
    attach_related: bool,
    keys: KeyedState<FrequencyKeyState>,
    /// Counts run ends; tells which newest events survived a whole run.
    run_generation: u64,
}

impl FrequencyRule {
    pub fn new(num_events: u64, timeframe: Duration, attach_related: bool, capacity: usize) -> FrequencyRule {
        FrequencyRule {
            num_events: num_events as f64,
            timeframe: duration_nanos(timeframe),
            attach_related,
            keys: KeyedState::new(capacity),
            run_generation: 0,
        }
    }
}

impl RuleState for FrequencyRule {
    fn add_event(&mut self, rule: &RuleDefinition, event: IncomingEvent<'_>, matches: &mut Vec<RawMatch>) {
        let key = counting_key(rule, event);
        let timeframe = self.timeframe;
        let attach_related = self.attach_related;
        // Related events need every entry separately.
        let state = self.keys.touch_or_insert_with(key, || FrequencyKeyState {
            window: EventWindow::new(timeframe, !attach_related),
            newest: None,
        });
        let is_newest = state.newest.as_ref().is_none_or(|newest| event.time >= newest.time);
        let payload = attach_related.then(|| Box::new(rule.stored_event_body(event.fields)));
        state.window.insert(WindowEntry { time: event.time, count: 1.0, placeholder: false, payload }, |_| {});
        if state.window.sum() < self.num_events {
            if is_newest {
                let generation = self.run_generation;
                let newest = state.newest.get_or_insert_with(|| NewestEvent {
                    time: event.time,
                    body: ObjectMap::default(),
                    owned: false,
                    stored_in_run: generation,
                });
                newest.time = event.time;
                rule.event_body_into(event.fields, &mut newest.body);
                newest.owned = false;
                newest.stored_in_run = generation;
            }
            return;
        }
        let stored = state.newest.take();
        let (match_time, mut body) = match stored {
            // The event that completes the window is the newest: it leaves
            // right away, no owned copy needed.
            _ if is_newest => (event.time, rule.event_body(event.fields)),
            Some(stored) => (stored.time, stored.body),
            None => return,
        };
        if attach_related {
            let newest_position = state.window.len().saturating_sub(1);
            let related: Vec<Value> = state
                .window
                .entries_mut()
                .enumerate()
                .filter(|(position, _)| *position != newest_position)
                .filter_map(|(_, entry)| entry.payload.take().map(|payload| Value::Object(*payload)))
                .collect();
            body.insert("related_events".into(), Value::Array(related));
        }
        state.window.clear();
        matches.push(RawMatch { time: match_time, body });
    }

    fn end_of_run(&mut self, _rule: &RuleDefinition, run_end: EventTime, _matches: &mut Vec<RawMatch>) {
        let horizon = run_end.saturating_sub(self.timeframe);
        self.keys.retain(|_, state| state.window.newest().is_some_and(|newest| newest.time >= horizon));
        let generation = self.run_generation;
        for (_, state) in self.keys.iter_mut() {
            let survivor = state.newest.as_mut().filter(|newest| !newest.owned && newest.stored_in_run < generation);
            if let Some(newest) = survivor {
                let shared = std::mem::take(&mut newest.body);
                fields::copy_object_into(&mut newest.body, &shared);
                newest.owned = true;
            }
        }
        self.run_generation += 1;
    }

    fn tracked_keys(&self) -> usize {
        self.keys.len()
    }

    fn evicted_keys_total(&self) -> u64 {
        self.keys.evicted_total()
    }
}

struct FlatlineKeyState {
    window: EventWindow<()>,
    /// The newest entry's event; `None` when the newest is a placeholder.
    newest: Option<ObjectMap>,
    newest_time: Option<EventTime>,
    first_event: Option<EventTime>,
}

pub(crate) struct FlatlineRule {
    threshold: f64,
    timeframe: i64,
    forget_keys: bool,
    keys: KeyedState<FlatlineKeyState>,
    /// Key of the latest event fed in this run, checked at the run end as
    /// upstream checks the last event of each query.
    last_key_of_run: Option<PartitionKey>,
}

impl FlatlineRule {
    pub fn new(threshold: f64, timeframe: Duration, forget_keys: bool, capacity: usize) -> FlatlineRule {
        FlatlineRule {
            threshold,
            timeframe: duration_nanos(timeframe),
            forget_keys,
            keys: KeyedState::new(capacity),
            last_key_of_run: None,
        }
    }

    fn new_key_state(&self) -> FlatlineKeyState {
        FlatlineKeyState {
            window: EventWindow::new(self.timeframe, true),
            newest: None,
            newest_time: None,
            first_event: None,
        }
    }

    fn insert(&mut self, key: PartitionKey, time: EventTime, count: f64, event: Option<ObjectMap>) {
        let fresh = self.new_key_state();
        let state = self.keys.touch_or_insert_with(key, || fresh);
        state.window.insert(WindowEntry { time, count, placeholder: event.is_none(), payload: () }, |_| {});
        if state.newest_time.is_none_or(|newest| time >= newest) {
            state.newest_time = Some(time);
            state.newest = event;
        }
    }

    fn check(&mut self, rule: &RuleDefinition, key: &PartitionKey, matches: &mut Vec<RawMatch>) {
        let Some(state) = self.keys.peek_mut(key) else {
            return;
        };
        let Some(newest_time) = state.window.newest().map(|entry| entry.time) else {
            return;
        };
        let first_event = *state.first_event.get_or_insert(newest_time);
        if newest_time.saturating_sub(first_event) < self.timeframe {
            return;
        }
        let count = state.window.sum();
        if count >= self.threshold {
            return;
        }
        let mut body = match &state.newest {
            Some(stored) => stored.clone(),
            None => ObjectMap::default(),
        };
        let key_value = match (&rule.query_key, key) {
            (None, _) => Value::from("all"),
            (Some(_), Some(text)) => Value::from(text.as_str()),
            (Some(_), None) => Value::Null,
        };
        body.insert("key".into(), key_value);
        body.insert("count".into(), number_value(count));
        body.insert("threshold".into(), number_value(self.threshold));
        matches.push(RawMatch { time: newest_time, body });
        if self.forget_keys {
            self.keys.remove(key);
        } else {
            let oldest = state.window.oldest().map_or(newest_time, |entry| entry.time);
            state.first_event = Some(oldest.min(newest_time.saturating_sub(self.timeframe)));
        }
    }
}

/// Integral numbers as integers, as Python prints counts and int thresholds.
pub(crate) fn number_value(number: f64) -> Value {
    if number.fract() == 0.0 && number.abs() < 9.0e15 {
        Value::Integer(number as i64)
    } else {
        Value::Float(number)
    }
}

impl RuleState for FlatlineRule {
    fn add_event(&mut self, rule: &RuleDefinition, event: IncomingEvent<'_>, _matches: &mut Vec<RawMatch>) {
        let key = counting_key(rule, event);
        let is_newer =
            self.keys.peek(&key).is_none_or(|state| state.newest_time.is_none_or(|newest| event.time >= newest));
        let body = is_newer.then(|| rule.stored_event_body(event.fields));
        self.insert(key.clone(), event.time, 1.0, body);
        self.last_key_of_run = Some(key);
    }

    fn end_of_run(&mut self, rule: &RuleDefinition, run_end: EventTime, matches: &mut Vec<RawMatch>) {
        if let Some(key) = self.last_key_of_run.take() {
            self.check(rule, &key, matches);
        }
        let mut keys = self.keys.keys();
        if keys.is_empty() && rule.query_key.is_none() {
            keys.push(Some("all".into()));
        }
        for key in keys {
            self.insert(key.clone(), run_end, 0.0, None);
            if let Some(state) = self.keys.peek_mut(&key) {
                state.first_event.get_or_insert(run_end);
            }
            self.check(rule, &key, matches);
        }
    }

    fn tracked_keys(&self) -> usize {
        self.keys.len()
    }

    fn evicted_keys_total(&self) -> u64 {
        self.keys.evicted_total()
    }
}
