//! `spike` and `spike_aggregation` (reference sections 3.6 and 3.11).
//!
//! Per key a current window and a reference window, both `timeframe` long;
//! entries leaving the current window enter the reference window. Each entry
//! is checked at once: a key is in warm-up for `2 × timeframe` after its
//! first entry (unless `alert_on_new_data` with a query_key and some key has
//! completed warm-up — the "filled once" flag is shared by all keys, as
//! upstream), thresholds are inclusive minimums on both windows, and
//! `up`/`down` compare `cur ≥ ref × h` / `cur ≤ ref ÷ h`. A match reports the
//! first non-zero entry of the current window, clears the reference window
//! and mutes the key for `2 × timeframe`.
//!
//! spike: one entry per event (weight 1, or `field_value`'s integer);
//! housekeeping adds a zero placeholder per key at the run end (so a drop
//! to silence is a "down" spike) and forgets keys whose windows are empty.
//!
//! spike_aggregation: no per-event entries; at each run end the metric over
//! the last segment (`buffer_time`, or `run_every`) gives one entry per key
//! (upstream: one aggregation query per run), compared by mean (avg),
//! min, max or sum depending on `metric_agg_type`. No housekeeping, as
//! upstream does not garbage-collect aggregation-query rules.

use crate::event::{ObjectMap, Value};
use crate::rules::config::{MetricAggregationType, MetricSpec, RuleDefinition, SpikeDirection, SpikeSettings};
use crate::rules::fields;
use crate::rules::frequency::number_value;
use crate::rules::metric::{MetricAccumulator, SegmentShape, TermsSelection};
use crate::rules::time::{duration_nanos, EventTime};
use crate::rules::window::{EventWindow, KeyedState, PartitionKey, WindowEntry};
use crate::rules::{IncomingEvent, RawMatch, RuleState};

/// How the two windows are turned into the compared numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpikeValues {
    /// Window sums; thresholds apply.
    Count,
    /// Mean of non-placeholder entries; thresholds ignored, 0 or null skip.
    FieldValueMean,
    /// spike_aggregation: mean / min / max / sum of per-run values.
    AggregateMean,
    AggregateMin,
    AggregateMax,
    AggregateSum,
}

struct SpikeKeyState {
    current: EventWindow<Option<ObjectMap>>,
    reference: EventWindow<()>,
    first_event: Option<EventTime>,
    skip_until: Option<EventTime>,
}

/// The spike state machine shared by both rule types.
struct SpikeCore {
    settings: SpikeSettings,
    timeframe: i64,
    values: SpikeValues,
    keys: KeyedState<SpikeKeyState>,
    reference_window_filled_once: bool,
}

impl SpikeCore {
    fn new(settings: SpikeSettings, values: SpikeValues, capacity: usize) -> SpikeCore {
        SpikeCore {
            timeframe: duration_nanos(settings.timeframe),
            settings,
            values,
            keys: KeyedState::new(capacity),
            reference_window_filled_once: false,
        }
    }

    fn handle_entry(
        &mut self,
        rule: &RuleDefinition,
        key: PartitionKey,
        entry: WindowEntry<Option<ObjectMap>>,
        matches: &mut Vec<RawMatch>,
    ) {
        let timeframe = self.timeframe;
        // Averages and per-run values need every entry kept apart.
        let merge_ties = self.values == SpikeValues::Count;
        let entry_time = entry.time;
        let state = self.keys.touch_or_insert_with(key.clone(), || SpikeKeyState {
            current: EventWindow::new(timeframe, merge_ties),
            reference: EventWindow::new(timeframe, merge_ties),
            first_event: None,
            skip_until: None,
        });
        let first_event = *state.first_event.get_or_insert(entry_time);
        let SpikeKeyState { current, reference, .. } = state;
        current.insert(entry, |removed| {
            reference.insert(
                WindowEntry { time: removed.time, count: removed.count, placeholder: removed.placeholder, payload: () },
                |_| {},
            );
        });

        if entry_time.saturating_sub(first_event) < 2 * timeframe {
            if !self.reference_window_filled_once {
                return;
            }
            if !(rule.query_key.is_some() && self.settings.alert_on_new_data) {
                return;
            }
            if state.skip_until.is_some_and(|skip_until| entry_time < skip_until) {
                return;
            }
        } else {
            self.reference_window_filled_once = true;
        }

        let (reference_value, current_value) = match self.values {
            SpikeValues::Count | SpikeValues::AggregateSum => (Some(state.reference.sum()), Some(state.current.sum())),
            SpikeValues::FieldValueMean | SpikeValues::AggregateMean => (state.reference.mean(), state.current.mean()),
            SpikeValues::AggregateMin => (state.reference.min(), state.current.min()),
            SpikeValues::AggregateMax => (state.reference.max(), state.current.max()),
        };
        let (Some(reference_value), Some(current_value)) = (reference_value, current_value) else {
            return;
        };
        if self.values == SpikeValues::FieldValueMean {
            if reference_value == 0.0 || current_value == 0.0 {
                return;
            }
        } else {
            if self.settings.threshold_cur.is_some_and(|threshold| current_value < threshold) {
                return;
            }
            if self.settings.threshold_ref.is_some_and(|threshold| reference_value < threshold) {
                return;
            }
        }
        let height = self.settings.spike_height;
        let spiked_up = current_value >= reference_value * height;
        let spiked_down = current_value <= reference_value / height;
        let is_match = match self.settings.spike_type {
            SpikeDirection::Up => spiked_up,
            SpikeDirection::Down => spiked_down,
            SpikeDirection::Both => spiked_up || spiked_down,
        };
        if !is_match {
            return;
        }
        let reported = if self.values == SpikeValues::FieldValueMean {
            state.current.entries().find(|entry| !entry.placeholder)
        } else {
            state.current.entries().find(|entry| entry.count != 0.0)
        }
        .or_else(|| state.current.newest());
        let Some(reported) = reported else { return };
        let match_time = reported.time;
        let mut body = match &reported.payload {
            Some(event_body) => event_body.clone(),
            None => placeholder_body(rule, &key),
        };
        let as_value = |number: f64| {
            if self.values == SpikeValues::Count {
                number_value(number)
            } else {
                Value::Float(number)
            }
        };
        body.insert("spike_count".into(), as_value(current_value));
        body.insert("reference_count".into(), as_value(reference_value));
        state.reference.clear();
        state.first_event = None;
        state.skip_until = Some(match_time.saturating_add(2 * timeframe));
        matches.push(RawMatch { time: match_time, body });
    }
}

/// `{placeholder: true, <query_key>: key}`; the engine adds the timestamp.
fn placeholder_body(rule: &RuleDefinition, key: &PartitionKey) -> ObjectMap {
    let mut body = ObjectMap::default();
    body.insert("placeholder".into(), Value::Boolean(true));
    if let (Some(query_key), Some(text)) = (&rule.query_key, key) {
        body.insert(query_key.name().into(), Value::from(text.as_str()));
    }
    body
}

pub(crate) struct SpikeRule {
    core: SpikeCore,
}

impl SpikeRule {
    pub fn new(settings: SpikeSettings, capacity: usize) -> SpikeRule {
        let values = if settings.field_value.is_some() { SpikeValues::FieldValueMean } else { SpikeValues::Count };
        SpikeRule { core: SpikeCore::new(settings, values, capacity) }
    }
}

impl RuleState for SpikeRule {
    fn add_event(&mut self, rule: &RuleDefinition, event: IncomingEvent<'_>, matches: &mut Vec<RawMatch>) {
        let weight = match &self.core.settings.field_value {
            None => 1.0,
            // Upstream reads a literal top-level key and needs an integer.
            Some(field) => match event.fields.get(field.as_str()) {
                Some(Value::Integer(number)) => *number as f64,
                Some(Value::String(text)) => match text.trim().parse::<i64>() {
                    Ok(number) => number as f64,
                    Err(_) => return,
                },
                _ => return,
            },
        };
        let key = match &rule.query_key {
            Some(query_key) => Some(query_key.key_text(event.fields).unwrap_or_else(|| "other".into())),
            None => Some("all".into()),
        };
        let entry = WindowEntry {
            time: event.time,
            count: weight,
            placeholder: false,
            payload: Some(rule.stored_event_body(event.fields)),
        };
        self.core.handle_entry(rule, key, entry, matches);
    }

    fn end_of_run(&mut self, rule: &RuleDefinition, run_end: EventTime, matches: &mut Vec<RawMatch>) {
        for key in self.core.keys.keys() {
            let Some(state) = self.core.keys.peek(&key) else {
                continue;
            };
            let is_all = key.as_deref() == Some("all");
            if !is_all && state.current.sum() + state.reference.sum() == 0.0 {
                self.core.keys.remove(&key);
                continue;
            }
            let entry = WindowEntry { time: run_end, count: 0.0, placeholder: true, payload: None };
            self.core.handle_entry(rule, key, entry, matches);
        }
    }

    fn tracked_keys(&self) -> usize {
        self.core.keys.len()
    }

    fn evicted_keys_total(&self) -> u64 {
        self.core.keys.evicted_total()
    }
}

pub(crate) struct SpikeAggregationRule {
    core: SpikeCore,
    metric: MetricSpec,
    accumulator: MetricAccumulator,
    selection: TermsSelection,
}

impl SpikeAggregationRule {
    pub fn new(
        settings: SpikeSettings,
        shape: SegmentShape,
        metric: MetricSpec,
        min_doc_count: u64,
        terms_size: usize,
        capacity: usize,
    ) -> SpikeAggregationRule {
        let values = match metric.aggregation {
            MetricAggregationType::Avg => SpikeValues::AggregateMean,
            MetricAggregationType::Min => SpikeValues::AggregateMin,
            MetricAggregationType::Max => SpikeValues::AggregateMax,
            _ => SpikeValues::AggregateSum,
        };
        SpikeAggregationRule {
            core: SpikeCore::new(settings, values, capacity),
            accumulator: MetricAccumulator::new(shape, metric.clone(), capacity),
            metric,
            selection: TermsSelection { min_doc_count, terms_size },
        }
    }
}

impl RuleState for SpikeAggregationRule {
    fn add_event(&mut self, rule: &RuleDefinition, event: IncomingEvent<'_>, _matches: &mut Vec<RawMatch>) {
        self.accumulator.add(rule, event);
    }

    fn end_of_run(&mut self, rule: &RuleDefinition, run_end: EventTime, matches: &mut Vec<RawMatch>) {
        for evaluated in self.accumulator.evaluate(rule, run_end, &self.selection) {
            let Some(value) = evaluated.value else {
                continue;
            };
            let key = match &rule.query_key {
                Some(_) => evaluated.key,
                None => Some("all".into()),
            };
            let mut body = ObjectMap::default();
            if let (Some(query_key), Some(text)) = (&rule.query_key, &key) {
                fields::set_nested(&mut body, query_key.name(), Value::from(text.as_str()));
            }
            body.insert(self.metric.field_name().into(), Value::Float(value));
            let entry = WindowEntry { time: run_end, count: value, placeholder: false, payload: Some(body) };
            self.core.handle_entry(rule, key, entry, matches);
        }
    }

    fn tracked_keys(&self) -> usize {
        self.core.keys.len().max(self.accumulator.tracked_keys())
    }

    fn evicted_keys_total(&self) -> u64 {
        self.core.keys.evicted_total() + self.accumulator.evicted_keys_total()
    }
}
