//! `new_term` (reference section 3.8): match the first time a value is seen
//! in a field (or a composite of fields).
//!
//! Upstream pre-loads the terms of the last `terms_window_size` (30 days)
//! from Elasticsearch at start-up; a stream has no such history. pipe
//! instead learns terms without alerting during `terms_warmup` (event time
//! from the rule's first event; default zero, so every term unseen since
//! start alerts once). Seen terms never expire, as upstream; memory is
//! bounded by `max_tracked_keys` terms per field, least recently seen
//! evicted (an evicted term alerts again when it returns).
//!
//! Per event and per configured field in order: an empty value (null, "",
//! 0, empty list) matches with `missing_field` when `alert_on_missing_field`;
//! an unseen value matches with `new_field`. A composite value is missing
//! when any part is empty. As upstream, fields set on the event by an
//! earlier field's match (`missing_field`/`new_field`) stay in later matches
//! from the same event.

use std::time::Duration;

use crate::event::{KeyString, Value};
use crate::rules::config::RuleDefinition;
use crate::rules::fields::{self, is_empty_value};
use crate::rules::time::{duration_nanos, EventTime};
use crate::rules::window::KeyedState;
use crate::rules::{IncomingEvent, RawMatch, RuleState};

pub(crate) struct NewTermRule {
    fields: Vec<Vec<String>>,
    alert_on_missing_field: bool,
    warmup: i64,
    started_at: Option<EventTime>,
    /// One seen-set per configured field; the value is unused.
    seen: Vec<KeyedState<()>>,
}

impl NewTermRule {
    pub fn new(
        fields: Vec<Vec<String>>,
        alert_on_missing_field: bool,
        warmup: Duration,
        capacity: usize,
    ) -> NewTermRule {
        let seen = fields.iter().map(|_| KeyedState::new(capacity)).collect();
        NewTermRule { fields, alert_on_missing_field, warmup: duration_nanos(warmup), started_at: None, seen }
    }
}

/// The field's name as upstream reports it: a string, or a list for a
/// composite (a Python tuple).
fn field_name_value(parts: &[String]) -> Value {
    match parts {
        [single] => Value::from(single.as_str()),
        many => Value::Array(many.iter().map(|part| Value::from(part.as_str())).collect()),
    }
}

impl RuleState for NewTermRule {
    fn add_event(&mut self, rule: &RuleDefinition, event: IncomingEvent<'_>, matches: &mut Vec<RawMatch>) {
        let started_at = *self.started_at.get_or_insert(event.time);
        let warming_up = event.time.saturating_sub(started_at) < self.warmup;
        let mut added_fields: Vec<(&'static str, Value)> = Vec::new();
        for (parts, seen) in self.fields.iter().zip(self.seen.iter_mut()) {
            let values: Vec<Option<&Value>> = parts.iter().map(|part| fields::lookup(event.fields, part)).collect();
            let missing = values.iter().any(|value| is_empty_value(*value));
            let is_match = if missing {
                if !self.alert_on_missing_field {
                    continue;
                }
                added_fields.push(("missing_field", field_name_value(parts)));
                true
            } else {
                let term: KeyString = match values.as_slice() {
                    [Some(single)] => fields::key_string(single),
                    many => {
                        let parts: Vec<Value> = many.iter().map(|value| value.cloned().unwrap_or_default()).collect();
                        KeyString::from(fields::python_str(&Value::Array(parts)))
                    }
                };
                let term = Some(term);
                if seen.contains(&term) {
                    seen.touch_or_insert_with(term, || ());
                    false
                } else {
                    seen.touch_or_insert_with(term, || ());
                    if warming_up {
                        false
                    } else {
                        added_fields.push(("new_field", field_name_value(parts)));
                        true
                    }
                }
            };
            if is_match {
                let mut body = rule.event_body(event.fields);
                for (name, value) in &added_fields {
                    body.insert((*name).into(), value.clone());
                }
                matches.push(RawMatch { time: event.time, body });
            }
        }
    }

    fn end_of_run(&mut self, _rule: &RuleDefinition, _run_end: EventTime, _matches: &mut Vec<RawMatch>) {}

    fn tracked_keys(&self) -> usize {
        self.seen.iter().map(KeyedState::len).sum()
    }

    fn evicted_keys_total(&self) -> u64 {
        self.seen.iter().map(KeyedState::evicted_total).sum()
    }
}
