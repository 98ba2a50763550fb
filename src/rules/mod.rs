//! The ElastAlert-compatible rule engine.
//!
//! Users bring their ElastAlert rule files; this module evaluates the same
//! rule types with the same semantics over a stream of `LogEvent`s instead
//! of periodic Elasticsearch queries. Reference: ElastAlert 2's code (where
//! its docs disagree, the code wins).
//!
//! Layers, each usable alone:
//! - `config`: rule files and TOML tables into `RuleConfig`, validated into
//!   `RuleDefinition`.
//! - `RuleEngine` (`engine`): per-rule state for all rule types. Events go in
//!   through `add_events`, matches come out. Windows run in event time; the
//!   end-of-run housekeeping ElastAlert does after each query (flatline
//!   checks, spike comparisons, aggregation evaluation, eviction) runs at
//!   every `run_every` boundary of the rule's watermark, which moves with
//!   event time and, via `advance`, with the wall clock when the stream is
//!   silent.
//! - `Alerter` (`realert`, `aggregation`, `alert`): realert and exponential
//!   realert silencing keyed by rule and query_key, aggregation by period or
//!   cron schedule, and alert subject/text rendered like ElastAlert's
//!   BasicMatchString. Produces `Alert`s that become alert events.
//! - `replay`: the `pipe rule test` loop over a recorded event list, driving
//!   the same engine and alerter.
//!
//! Mapping from ElastAlert's query model (see each type's module for details):
//! a plain search run over `(previous end, end]` becomes "every event once,
//! in arrival order"; `garbage_collect(end)` becomes housekeeping at each
//! run boundary; aggregation queries (metric_aggregation, percentage_match,
//! spike_aggregation) become per-key accumulators over the last `buffer_time`
//! (or `run_every` with `use_run_every_query_size`) evaluated at each run
//! boundary. Events at or before `next run end − max(buffer_time,
//! run_every)` would never have been seen by ElastAlert's queries and are
//! counted as late and dropped. `use_count_query`/`use_terms_query` are accepted and ignored:
//! every event is counted individually.
//!
//! Persistence is the caller's: `RuleEngine::record_runs` and
//! `Alerter::record_silences` keep what ElastAlert writes to its status and
//! silence indices until drained, and `Alerter::restore_silence` seeds a
//! silence read back at start-up.
//!
//! Never here: IO (the filter is the only external call, through
//! `crate::query`), wall-clock reads (callers pass the time; a monotonic
//! `Instant` measures `RunRecord::time_taken` only), alert delivery.

mod aggregation;
pub mod alert;
mod cardinality;
pub mod config;
mod engine;
pub mod fields;
mod filter;
mod frequency;
mod metric;
mod new_term;
mod realert;
pub mod replay;
mod simple;
mod spike;
pub mod time;
mod top_counts;
pub mod window;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::event::{ObjectMap, Value};

pub use alert::Alert;
pub use config::{
    load_global_config, load_rule_file, parse_rule_yaml, RuleConfig, RuleDefinition, RuleKind, RuleLoadError,
};
pub use engine::{FutureEventCap, RuleEngine, RuleEngineError, RuleStats, RunRecord};
pub use realert::{Alerter, SilenceRecord};
pub use replay::{replay, ReplayError, ReplayOptions, ReplayOutput, ReplaySummary};

use crate::rules::time::EventTime;

/// One rule match, before silencing and aggregation: ElastAlert's match
/// dictionary plus which rule produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// Index of the rule in the engine (stable for the engine's lifetime).
    pub rule_index: usize,
    pub rule_name: Arc<str>,
    /// The match timestamp: the event's time, or the run end for matches
    /// found by housekeeping and aggregation evaluation.
    pub time: DateTime<Utc>,
    /// The match body: the event's fields (restricted by `include`), the
    /// timestamp field rendered per `timestamp_type`, `num_hits`,
    /// `num_matches`, and the rule type's own fields.
    pub body: ObjectMap,
}

impl Match {
    /// The shape `elastalert-test-rule` prints for a would-be writeback
    /// record: `{rule_name, match_time, match_body}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "rule_name": &*self.rule_name,
            "match_time": time::iso_text(&self.time.fixed_offset()),
            "match_body": Value::Object(self.body.clone()),
        })
    }
}

/// A match as a rule type produces it; the engine finalises it into a
/// `Match` (timestamp rendering, hit and match counters).
#[derive(Debug, Clone)]
pub(crate) struct RawMatch {
    pub time: EventTime,
    pub body: ObjectMap,
}

/// One event as a rule type sees it: fields and parsed event time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IncomingEvent<'a> {
    pub event: &'a crate::event::LogEvent,
    pub fields: &'a ObjectMap,
    pub time: EventTime,
    /// End of the run this event is counted in (aggregation rules align
    /// their buckets to run ends).
    pub run_end: EventTime,
    /// Start of the rule's first run; an event exactly here belongs to the
    /// first run (which includes its start).
    pub schedule_anchor: EventTime,
}

/// The per-rule state machine every rule type implements. Called by the
/// engine only; never sees the wall clock.
pub(crate) trait RuleState: Send {
    /// ElastAlert's `add_data` for one event (already filtered, timestamp
    /// parsed, not late).
    fn add_event(&mut self, rule: &RuleDefinition, event: IncomingEvent<'_>, matches: &mut Vec<RawMatch>);

    /// ElastAlert's `garbage_collect(run_end)` plus, for aggregation types,
    /// the evaluation of the segment ending at `run_end`.
    fn end_of_run(&mut self, rule: &RuleDefinition, run_end: EventTime, matches: &mut Vec<RawMatch>);

    fn tracked_keys(&self) -> usize;

    fn evicted_keys_total(&self) -> u64;
}

impl RuleDefinition {
    /// The part of an event that goes into a match body: every field, or with
    /// `include` only those paths plus the ones upstream always adds.
    pub(crate) fn event_body(&self, fields: &ObjectMap) -> ObjectMap {
        let mut body = self.included_fields(fields);
        // Upstream gives every hit a synthetic field named after a compound
        // query_key, holding the joined key.
        if let Some(query_key @ fields::QueryKey::Compound { joined_name, .. }) = &self.query_key {
            if let Some(joined) = query_key.key_text(fields) {
                body.insert(joined_name.as_str().into(), Value::from(joined.as_str()));
            }
        }
        body
    }

    /// `event_body` for state kept across events: an owned copy (strings
    /// do not point into the source's buffer) written into `target`, reusing
    /// its allocation.
    pub(crate) fn stored_event_body_into(&self, fields: &ObjectMap, target: &mut ObjectMap) {
        if self.include.is_none() && !matches!(self.query_key, Some(fields::QueryKey::Compound { .. })) {
            fields::copy_object_into(target, fields);
            return;
        }
        let body = self.event_body(fields);
        fields::copy_object_into(target, &body);
    }

    /// `event_body` written into `target`, reusing its allocation. The
    /// copy shares string buffers with the event (cheap); state that keeps
    /// it beyond a run must make it owned (`fields::copy_object_into`).
    pub(crate) fn event_body_into(&self, fields: &ObjectMap, target: &mut ObjectMap) {
        if self.include.is_none() && !matches!(self.query_key, Some(fields::QueryKey::Compound { .. })) {
            target.clone_from(fields);
        } else {
            *target = self.event_body(fields);
        }
    }

    /// `stored_event_body_into` into a new map.
    pub(crate) fn stored_event_body(&self, fields: &ObjectMap) -> ObjectMap {
        let mut body = crate::event::object_map_with_capacity(fields.len());
        self.stored_event_body_into(fields, &mut body);
        body
    }

    fn included_fields(&self, fields: &ObjectMap) -> ObjectMap {
        let Some(include) = &self.include else {
            return fields.clone();
        };
        let mut body = ObjectMap::default();
        let always = self.always_included_paths();
        for path in include.iter().map(String::as_str).chain(always.iter().map(String::as_str)) {
            if let Some(pattern) = path.strip_suffix('*') {
                for (key, value) in fields.iter().filter(|(key, _)| key.starts_with(pattern)) {
                    body.insert(key.clone(), value.clone());
                }
                continue;
            }
            if let Some(value) = fields::lookup(fields, path) {
                if fields.contains_key(path) {
                    body.insert(path.into(), value.clone());
                } else {
                    fields::set_nested(&mut body, path, value.clone());
                }
            }
        }
        body
    }

    fn always_included_paths(&self) -> Vec<String> {
        let mut paths = vec![self.timestamp_field.clone()];
        match &self.query_key {
            Some(fields::QueryKey::Single(path)) => paths.push(path.clone()),
            Some(fields::QueryKey::Compound { fields, .. }) => paths.extend(fields.iter().cloned()),
            None => {}
        }
        match &self.kind {
            RuleKind::Blacklist { compare_key, .. } | RuleKind::Whitelist { compare_key, .. } => {
                paths.push(compare_key.clone())
            }
            RuleKind::Change { compare_keys, .. } => paths.extend(compare_keys.iter().cloned()),
            _ => {}
        }
        paths.extend(self.alerting.top_count_keys.iter().cloned());
        paths
    }
}
