//! `pipe rule test` as a library function: replay recorded events through
//! rules in simulated runs.
//!
//! For each rule separately (each has its own `run_every`): events are
//! ordered by the rule's timestamp; runs end at `start + k × run_every`
//! (`start` defaults to the first event's time, `end` to the last event's
//! time plus the rule's `timeframe`), and the last run is the first whose
//! end reaches `end`. Each run feeds the events with timestamps in
//! `(previous end, this end]` (the first run also takes an event exactly
//! at `start`), then runs end-of-run housekeeping at this end; the same
//! `RuleEngine` the streaming transform uses does the work.
//!
//! Output: matches (before realert and aggregation) as
//! `{rule_name, match_time, match_body}` records, or with `alerts` the alert
//! events after silencing and aggregation, processed at each run's end (as
//! a live daemon would), pending aggregations sent at their scheduled time
//! after the last run. Plus a summary.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::event::{LogEvent, Value};
use crate::rules::config::{RuleDefinition, RuleKind};
use crate::rules::engine::{RuleEngine, RuleEngineError};
use crate::rules::fields;
use crate::rules::realert::Alerter;
use crate::rules::time::{self, duration_nanos, EventTime};

/// Replay bounds and output selection.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// First run starts here (default: the first event's time).
    pub start: Option<DateTime<Utc>>,
    /// Runs continue until one ends at or after this (default: the last
    /// event's time plus the rule's timeframe).
    pub end: Option<DateTime<Utc>>,
    /// Return alerts (after realert/aggregation) instead of raw matches.
    pub alerts: bool,
}

/// Counts over the whole replay.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplaySummary {
    /// Events given to the replay.
    pub events: usize,
    /// Runs simulated, summed over rules.
    pub runs: u64,
    /// Matches produced, before silencing and aggregation.
    pub matches: usize,
    /// Alerts produced (only counted with `alerts`).
    pub alerts: usize,
    /// Events some rule could not read a timestamp from, summed over rules.
    pub events_without_timestamp: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOutput {
    /// Match records or alert events, per rule in rule order, in time order.
    pub records: Vec<serde_json::Value>,
    pub summary: ReplaySummary,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Engine(#[from] RuleEngineError),
    #[error("events line {line}: {message}; each line must hold one JSON object")]
    InvalidEvent { line: usize, message: String },
}

/// Parses NDJSON (one object per line; blank lines skipped) into events
/// owned by `component_id`.
pub fn parse_ndjson(text: &str, component_id: &str) -> Result<Vec<LogEvent>, ReplayError> {
    let mut events = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .map_err(|error| ReplayError::InvalidEvent { line: index + 1, message: error.to_string() })?;
        let Value::Object(fields) = value else {
            return Err(ReplayError::InvalidEvent {
                line: index + 1,
                message: format!("found a JSON {}", value.kind_name()),
            });
        };
        events.push(LogEvent::from_fields(component_id, fields));
    }
    Ok(events)
}

/// Replays `events` through each rule.
pub fn replay(
    definitions: Vec<RuleDefinition>,
    events: &[LogEvent],
    options: &ReplayOptions,
) -> Result<ReplayOutput, ReplayError> {
    let mut output = ReplayOutput {
        records: Vec::new(),
        summary: ReplaySummary { events: events.len(), ..ReplaySummary::default() },
    };
    for definition in definitions.into_iter().filter(|definition| definition.enabled) {
        replay_rule(definition, events, options, &mut output)?;
    }
    Ok(output)
}

fn rule_timeframe(kind: &RuleKind) -> Duration {
    match kind {
        RuleKind::Frequency { timeframe, .. }
        | RuleKind::Flatline { timeframe, .. }
        | RuleKind::Cardinality { timeframe, .. } => *timeframe,
        RuleKind::Change { timeframe, .. } => timeframe.unwrap_or(Duration::ZERO),
        RuleKind::Spike(settings) | RuleKind::SpikeAggregation { spike: settings, .. } => settings.timeframe,
        _ => Duration::ZERO,
    }
}

fn replay_rule(
    definition: RuleDefinition,
    events: &[LogEvent],
    options: &ReplayOptions,
    output: &mut ReplayOutput,
) -> Result<(), ReplayError> {
    let mut timed: Vec<(EventTime, &LogEvent)> = Vec::with_capacity(events.len());
    let mut without_timestamp = 0u64;
    for event in events {
        let parsed = fields::lookup(event.fields(), &definition.timestamp_field)
            .and_then(|value| time::parse_event_time(value, &definition.timestamp_type));
        match parsed {
            Some(event_time) => timed.push((event_time, event)),
            None => without_timestamp += 1,
        }
    }
    output.summary.events_without_timestamp += without_timestamp;
    timed.sort_by_key(|(event_time, _)| *event_time);
    let Some(start) =
        options.start.map(time::from_datetime).or_else(|| timed.first().map(|(event_time, _)| *event_time))
    else {
        return Ok(());
    };
    let end = options
        .end
        .map(time::from_datetime)
        .or_else(|| {
            timed
                .last()
                .map(|(event_time, _)| event_time.saturating_add(duration_nanos(rule_timeframe(&definition.kind))))
        })
        .unwrap_or(start);
    let run_every = duration_nanos(definition.run_every).max(1);

    let mut engine = RuleEngine::new(vec![definition])?;
    let mut alerter = options.alerts.then(|| Alerter::new(engine.definitions()));
    engine.advance(time::to_datetime(start));
    let mut cursor = timed.partition_point(|(event_time, _)| *event_time < start);
    let mut batch: Vec<LogEvent> = Vec::new();
    let mut run_end = start;
    loop {
        run_end = run_end.saturating_add(run_every);
        batch.clear();
        while let Some((event_time, event)) = timed.get(cursor) {
            if *event_time > run_end {
                break;
            }
            batch.push((*event).clone());
            cursor += 1;
        }
        let mut matches = engine.add_events(&batch);
        matches.extend(engine.advance(time::to_datetime(run_end)));
        output.summary.runs += 1;
        output.summary.matches += matches.len();
        match &mut alerter {
            None => output.records.extend(matches.iter().map(super::Match::to_json)),
            Some(alerter) => {
                let alerts = alerter.process(matches, time::to_datetime(run_end));
                output.summary.alerts += alerts.len();
                output.records.extend(
                    alerts
                        .iter()
                        .map(|alert| serde_json::to_value(Value::Object(alert.to_fields())).unwrap_or_default()),
                );
            }
        }
        if run_end >= end {
            break;
        }
    }
    if let Some(alerter) = &mut alerter {
        let alerts = alerter.flush_all();
        output.summary.alerts += alerts.len();
        output.records.extend(
            alerts.iter().map(|alert| serde_json::to_value(Value::Object(alert.to_fields())).unwrap_or_default()),
        );
    }
    Ok(())
}
