//! `RuleEngine`: runs every loaded rule over batches of events and at run
//! boundaries, in event time.
//!
//! Per rule the engine keeps a run schedule anchored at the first event (or
//! the first `advance`): run ends fall at `anchor + k × run_every`. Before an
//! event later than the next run end is fed, the housekeeping of every run
//! end it passes is done first, so a stream fed in time order behaves
//! exactly like ElastAlert running each query `(previous end, end]` and then
//! `garbage_collect(end)`. `advance(watermark)` does the same for silence:
//! the caller passes wall clock minus `query_delay` when no events arrive,
//! which is how a flatline rule fires when logs stop.
//!
//! Events are dropped and counted (never errors) when the timestamp field is
//! missing or unparseable (ElastAlert aborts the whole run instead), or when
//! they are late: at or before `next run end − max(buffer_time, run_every)`,
//! a range no later ElastAlert query would cover. With a `FutureEventCap`
//! set (the streaming transform sets one per batch; the replay does not), an
//! event stamped after `beyond` is counted and evaluated as if stamped at
//! `treated_as`: one host with a clock running ahead must not drag a rule's
//! watermark into the future, which would make every on-time event late.
//!
//! Run records (`record_runs`): when asked, each rule keeps one `RunRecord`
//! per completed run (the run's bounds, the events it saw, the matches it
//! produced, the processing time spent on it), which the caller drains with
//! `drain_run_records` and writes as ElastAlert status records. Off by
//! default, so a caller that never drains (the replay) keeps nothing.
//!
//! Guarantees: matches come out in the order rules produce them, per rule in
//! event order; state per rule is bounded by `max_tracked_keys`; a catch-up
//! over a very long gap runs at most `MAX_CATCH_UP_RUNS` housekeeping passes
//! (and records at most that many runs). The only clock read is a monotonic
//! `Instant` for `RunRecord::time_taken`, and only while recording; it never
//! affects matches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::event::LogEvent;
use crate::rules::config::{RuleDefinition, RuleKind};
use crate::rules::filter::EventFilter;
use crate::rules::time::{self, duration_nanos, EventTime};
use crate::rules::top_counts::TopCounts;
use crate::rules::{cardinality, fields, frequency, metric, new_term, simple, spike};
use crate::rules::{IncomingEvent, Match, RawMatch, RuleState};

/// A jump in event time longer than this many runs skips the oldest
/// housekeeping passes: after a day of one-minute runs with no data the
/// result of earlier passes is the same as the last ones.
pub const MAX_CATCH_UP_RUNS: i64 = 1440;

/// Why rules could not be assembled into an engine.
#[derive(Debug, thiserror::Error)]
pub enum RuleEngineError {
    #[error("{origin}: rule {rule:?}: {message}")]
    Filter { origin: String, rule: String, message: String },
    #[error("rule name {name:?} is used by {first} and {second}; rule names must be unique")]
    DuplicateName { name: String, first: String, second: String },
}

/// Where event time stops being believable: events stamped after `beyond`
/// are evaluated at `treated_as` instead (normally the wall clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FutureEventCap {
    pub beyond: DateTime<Utc>,
    pub treated_as: DateTime<Utc>,
}

/// Counters and gauges of one rule, for `pipe_rules_*` metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleStats {
    pub rule_name: Arc<str>,
    /// Partition keys (or new_term terms) currently held.
    pub tracked_keys: usize,
    /// Keys evicted because `max_tracked_keys` was reached.
    pub evicted_keys_total: u64,
    /// Events dropped as older than the rule's look-back (`buffer_time`).
    pub late_events_total: u64,
    /// Events dropped for a missing or unparseable timestamp field.
    pub events_without_timestamp_total: u64,
    /// Events stamped after the `FutureEventCap`, evaluated at its
    /// `treated_as` time.
    pub future_events_total: u64,
    /// Events the rule evaluated.
    pub events_total: u64,
    pub matches_total: u64,
}

/// One completed run of one rule: what ElastAlert writes to its status
/// index after every run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub rule_index: usize,
    pub rule_name: Arc<str>,
    /// The run's start: its end minus `run_every` (events after it count
    /// towards this run).
    pub start: DateTime<Utc>,
    /// The run end the housekeeping ran for, in event time.
    pub end: DateTime<Utc>,
    /// Events the rule evaluated in this run (after its filter).
    pub hits: u64,
    /// Matches the run produced, before silencing.
    pub matches: u64,
    /// Processing time spent on the run's batches and its housekeeping. A
    /// batch that crosses a run end counts towards the later run.
    pub time_taken: Duration,
}

struct RuleRunner {
    index: usize,
    definition: Arc<RuleDefinition>,
    name: Arc<str>,
    filter: EventFilter,
    state: Box<dyn RuleState>,
    run_every: i64,
    buffer_time: i64,
    query_delay: i64,
    /// End of the run currently collecting events; `None` until anchored.
    next_run_end: Option<EventTime>,
    /// Where the schedule was anchored (the first run's start, inclusive).
    anchor: EventTime,
    first_run_end: Option<EventTime>,
    hits_in_run: u64,
    matches_in_run: u64,
    late_events_total: u64,
    events_without_timestamp_total: u64,
    future_events_total: u64,
    events_total: u64,
    matches_total: u64,
    raw_matches: Vec<RawMatch>,
    top_counts: Option<TopCounts>,
    /// Completed runs not yet drained; `None` while not recording.
    recorded_runs: Option<Vec<RunRecord>>,
    /// Processing time spent on the open run so far (while recording).
    busy_in_run: Duration,
}

/// The rule engine shared by the streaming transform and the replay.
pub struct RuleEngine {
    runners: Vec<RuleRunner>,
    /// `FutureEventCap` as (beyond, treated_as) event times.
    future_event_cap: Option<(EventTime, EventTime)>,
}

impl std::fmt::Debug for RuleEngine {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RuleEngine")
            .field("rules", &self.runners.iter().map(|runner| &*runner.name).collect::<Vec<_>>())
            .finish()
    }
}

impl RuleEngine {
    /// Builds state for every enabled rule. Rule indexes in `Match` follow
    /// the order of enabled rules in `definitions`.
    pub fn new(definitions: Vec<RuleDefinition>) -> Result<RuleEngine, RuleEngineError> {
        let mut runners: Vec<RuleRunner> = Vec::new();
        for definition in definitions.into_iter().filter(|definition| definition.enabled) {
            if let Some(existing) = runners.iter().find(|runner| runner.definition.name == definition.name) {
                return Err(RuleEngineError::DuplicateName {
                    name: definition.name.clone(),
                    first: existing.definition.origin.clone(),
                    second: definition.origin.clone(),
                });
            }
            let filter_error = |message: String| RuleEngineError::Filter {
                origin: definition.origin.clone(),
                rule: definition.name.clone(),
                message,
            };
            let filter = EventFilter::compile(&definition.filter, "filter", &definition.keyword_fields)
                .map_err(|error| filter_error(error.message))?;
            let state = build_state(&definition).map_err(filter_error)?;
            let top_counts = TopCounts::for_rule(&definition);
            runners.push(RuleRunner {
                index: runners.len(),
                name: Arc::from(definition.name.as_str()),
                run_every: duration_nanos(definition.run_every).max(1),
                buffer_time: duration_nanos(definition.buffer_time),
                query_delay: duration_nanos(definition.query_delay),
                definition: Arc::new(definition),
                filter,
                state,
                next_run_end: None,
                anchor: 0,
                first_run_end: None,
                hits_in_run: 0,
                matches_in_run: 0,
                late_events_total: 0,
                events_without_timestamp_total: 0,
                future_events_total: 0,
                events_total: 0,
                matches_total: 0,
                raw_matches: Vec::new(),
                top_counts,
                recorded_runs: None,
                busy_in_run: Duration::ZERO,
            });
        }
        Ok(RuleEngine { runners, future_event_cap: None })
    }

    /// The rules in index order, for building an `Alerter`.
    pub fn definitions(&self) -> Vec<Arc<RuleDefinition>> {
        self.runners.iter().map(|runner| Arc::clone(&runner.definition)).collect()
    }

    pub fn rule_count(&self) -> usize {
        self.runners.len()
    }

    /// Feeds a batch (in arrival order) to every rule.
    pub fn add_events(&mut self, events: &[LogEvent]) -> Vec<Match> {
        let mut matches = Vec::new();
        self.add_events_into(events, &mut matches);
        matches
    }

    /// `add_events` appending to a caller-owned buffer.
    pub fn add_events_into(&mut self, events: &[LogEvent], matches: &mut Vec<Match>) {
        for runner in &mut self.runners {
            let started = runner.recorded_runs.is_some().then(Instant::now);
            for event in events {
                runner.add_event(event, self.future_event_cap, matches);
            }
            if let Some(started) = started {
                runner.busy_in_run += started.elapsed();
            }
        }
    }

    /// Starts or stops keeping a `RunRecord` for every completed run.
    /// Stopping drops the records not yet drained.
    pub fn record_runs(&mut self, enabled: bool) {
        for runner in &mut self.runners {
            match (enabled, runner.recorded_runs.is_some()) {
                (true, false) => runner.recorded_runs = Some(Vec::new()),
                (false, true) => runner.recorded_runs = None,
                _ => {}
            }
            runner.busy_in_run = Duration::ZERO;
        }
    }

    /// Moves the runs completed since the last call into `records`, by rule
    /// index, then in run order.
    pub fn drain_run_records(&mut self, records: &mut Vec<RunRecord>) {
        for runner in &mut self.runners {
            if let Some(runs) = &mut runner.recorded_runs {
                records.append(runs);
            }
        }
    }

    /// Caps event time for the events fed from now on (`None`: no cap).
    pub fn set_future_event_cap(&mut self, cap: Option<FutureEventCap>) {
        self.future_event_cap = cap.map(|cap| (time::from_datetime(cap.beyond), time::from_datetime(cap.treated_as)));
    }

    /// Moves every rule's watermark to `watermark`, running the
    /// housekeeping of each run end reached. The first call (or first event)
    /// anchors a rule's schedule.
    pub fn advance(&mut self, watermark: DateTime<Utc>) -> Vec<Match> {
        let mut matches = Vec::new();
        self.advance_into(watermark, &mut matches);
        matches
    }

    /// `advance` appending to a caller-owned buffer.
    pub fn advance_into(&mut self, watermark: DateTime<Utc>, matches: &mut Vec<Match>) {
        let watermark = time::from_datetime(watermark);
        for runner in &mut self.runners {
            runner.advance(watermark, matches);
        }
    }

    /// The streaming form of `advance`: each rule's watermark moves to
    /// `now − query_delay` of that rule (upstream queries up to that time,
    /// whether or not data arrived), so silence still runs housekeeping.
    pub fn advance_to_wall_clock(&mut self, now: DateTime<Utc>, matches: &mut Vec<Match>) {
        let now = time::from_datetime(now);
        for runner in &mut self.runners {
            runner.advance(now.saturating_sub(runner.query_delay), matches);
        }
    }

    /// The earliest run end any rule waits for, so a caller can schedule
    /// its next `advance`.
    pub fn next_run_due(&self) -> Option<DateTime<Utc>> {
        self.runners.iter().filter_map(|runner| runner.next_run_end).min().map(time::to_datetime)
    }

    pub fn stats(&self) -> Vec<RuleStats> {
        self.runners
            .iter()
            .map(|runner| RuleStats {
                rule_name: Arc::clone(&runner.name),
                tracked_keys: runner.state.tracked_keys(),
                evicted_keys_total: runner.state.evicted_keys_total(),
                late_events_total: runner.late_events_total,
                events_without_timestamp_total: runner.events_without_timestamp_total,
                future_events_total: runner.future_events_total,
                events_total: runner.events_total,
                matches_total: runner.matches_total,
            })
            .collect()
    }
}

impl RuleRunner {
    fn advance(&mut self, watermark: EventTime, matches: &mut Vec<Match>) {
        match self.next_run_end {
            None => self.anchor_at(watermark),
            Some(_) => self.run_housekeeping_through(watermark, true, matches),
        }
    }

    fn anchor_at(&mut self, anchor: EventTime) {
        self.anchor = anchor;
        let first_run_end = anchor.saturating_add(self.run_every);
        self.first_run_end = Some(first_run_end);
        self.next_run_end = Some(first_run_end);
    }

    fn add_event(
        &mut self,
        event: &LogEvent,
        future_event_cap: Option<(EventTime, EventTime)>,
        matches: &mut Vec<Match>,
    ) {
        if !self.filter.matches(event) {
            return;
        }
        let fields = event.fields();
        let parsed = fields::lookup(fields, &self.definition.timestamp_field)
            .and_then(|value| time::parse_event_time(value, &self.definition.timestamp_type));
        let Some(mut event_time) = parsed else {
            self.events_without_timestamp_total += 1;
            return;
        };
        if let Some((beyond, treated_as)) = future_event_cap {
            if event_time > beyond {
                self.future_events_total += 1;
                event_time = treated_as;
            }
        }
        match self.next_run_end {
            None => self.anchor_at(event_time),
            Some(next_run_end) if event_time > next_run_end => {
                self.run_housekeeping_through(event_time, false, matches)
            }
            Some(_) => {}
        }
        let next_run_end = self.next_run_end.unwrap_or(event_time);
        // Upstream's next query starts at `end − buffer_time`, or at the
        // previous end when that is earlier (it never leaves a gap). The
        // first run also takes an event exactly at its start (the anchor).
        let mut horizon = next_run_end.saturating_sub(self.buffer_time.max(self.run_every));
        if Some(next_run_end) == self.first_run_end {
            horizon = horizon.min(self.anchor.saturating_sub(1));
        }
        if event_time <= horizon {
            self.late_events_total += 1;
            return;
        }
        self.events_total += 1;
        self.hits_in_run += 1;
        if let Some(top_counts) = &mut self.top_counts {
            top_counts.remember(&self.definition, fields, event_time);
        }
        let incoming =
            IncomingEvent { event, fields, time: event_time, run_end: next_run_end, schedule_anchor: self.anchor };
        self.state.add_event(&self.definition, incoming, &mut self.raw_matches);
        self.finish_matches(matches);
    }

    /// Runs housekeeping for every run end `e` with `e < target` (events:
    /// the event at `target` belongs to a later run) or `e ≤ target`
    /// (watermarks: the run ending exactly at the watermark is complete).
    fn run_housekeeping_through(&mut self, target: EventTime, inclusive: bool, matches: &mut Vec<Match>) {
        let Some(mut next_run_end) = self.next_run_end else {
            return;
        };
        let due = |run_end: EventTime| {
            if inclusive {
                run_end <= target
            } else {
                run_end < target
            }
        };
        if !due(next_run_end) {
            return;
        }
        let runs_needed = (target.saturating_sub(next_run_end)) / self.run_every + 1;
        if runs_needed > MAX_CATCH_UP_RUNS {
            let skipped = runs_needed - MAX_CATCH_UP_RUNS;
            next_run_end = next_run_end.saturating_add(skipped.saturating_mul(self.run_every));
        }
        while due(next_run_end) {
            let started = self.recorded_runs.is_some().then(Instant::now);
            self.state.end_of_run(&self.definition, next_run_end, &mut self.raw_matches);
            self.finish_matches(matches);
            if let (Some(runs), Some(started)) = (&mut self.recorded_runs, started) {
                runs.push(RunRecord {
                    rule_index: self.index,
                    rule_name: Arc::clone(&self.name),
                    start: time::to_datetime(next_run_end.saturating_sub(self.run_every)),
                    end: time::to_datetime(next_run_end),
                    hits: self.hits_in_run,
                    matches: self.matches_in_run,
                    time_taken: self.busy_in_run + started.elapsed(),
                });
            }
            self.hits_in_run = 0;
            self.matches_in_run = 0;
            self.busy_in_run = Duration::ZERO;
            next_run_end = next_run_end.saturating_add(self.run_every);
        }
        self.next_run_end = Some(next_run_end);
    }

    fn finish_matches(&mut self, matches: &mut Vec<Match>) {
        for raw in self.raw_matches.drain(..) {
            self.matches_in_run += 1;
            self.matches_total += 1;
            let mut body = raw.body;
            let timestamp_field = &self.definition.timestamp_field;
            let original = body.get(timestamp_field.as_str()).cloned();
            let rendered = time::render_match_time(raw.time, original.as_ref(), &self.definition.timestamp_type);
            if original.is_some() || !timestamp_field.contains('.') {
                body.insert(timestamp_field.as_str().into(), rendered);
            } else {
                fields::set_nested(&mut body, timestamp_field, rendered);
            }
            body.insert("num_hits".into(), crate::event::Value::Integer(self.hits_in_run as i64));
            body.insert("num_matches".into(), crate::event::Value::Integer(self.matches_in_run as i64));
            if let Some(top_counts) = &self.top_counts {
                top_counts.annotate(&self.definition, &mut body, raw.time);
            }
            matches.push(Match {
                rule_index: self.index,
                rule_name: Arc::clone(&self.name),
                time: time::to_datetime(raw.time),
                body,
            });
        }
    }
}

fn build_state(definition: &RuleDefinition) -> Result<Box<dyn RuleState>, String> {
    let capacity = definition.max_tracked_keys;
    Ok(match &definition.kind {
        RuleKind::Any => Box::new(simple::AnyRule),
        RuleKind::Blacklist { compare_key, values } => {
            Box::new(simple::ListRule::blacklist(compare_key.clone(), values.clone()))
        }
        RuleKind::Whitelist { compare_key, values, ignore_null } => {
            Box::new(simple::ListRule::whitelist(compare_key.clone(), values.clone(), *ignore_null))
        }
        RuleKind::Change { compare_keys, ignore_null, timeframe } => {
            Box::new(simple::ChangeRule::new(compare_keys.clone(), *ignore_null, *timeframe, capacity))
        }
        RuleKind::Frequency { num_events, timeframe, attach_related } => {
            Box::new(frequency::FrequencyRule::new(*num_events, *timeframe, *attach_related, capacity))
        }
        RuleKind::Flatline { threshold, timeframe, forget_keys } => {
            Box::new(frequency::FlatlineRule::new(*threshold, *timeframe, *forget_keys, capacity))
        }
        RuleKind::Spike(settings) => Box::new(spike::SpikeRule::new(settings.clone(), capacity)),
        RuleKind::NewTerm { fields, alert_on_missing_field, terms_warmup } => {
            Box::new(new_term::NewTermRule::new(fields.clone(), *alert_on_missing_field, *terms_warmup, capacity))
        }
        RuleKind::Cardinality { timeframe, cardinality_field, max_cardinality, min_cardinality } => {
            Box::new(cardinality::CardinalityRule::new(
                *timeframe,
                cardinality_field.clone(),
                *max_cardinality,
                *min_cardinality,
                capacity,
            ))
        }
        RuleKind::MetricAggregation(settings) => Box::new(metric::MetricAggregationRule::new(
            settings.clone(),
            metric::SegmentShape::new(settings.segment, definition.run_every),
            capacity,
        )),
        RuleKind::PercentageMatch(settings) => {
            let match_filter =
                EventFilter::compile(&settings.match_bucket_filter, "match_bucket_filter", &definition.keyword_fields)
                    .map_err(|error| error.message)?;
            let in_match_bucket: metric::EventPredicate = Box::new(move |event| match_filter.matches(event));
            Box::new(metric::PercentageMatchRule::new(
                settings.clone(),
                metric::SegmentShape::new(settings.segment, definition.run_every),
                in_match_bucket,
                capacity,
            ))
        }
        RuleKind::SpikeAggregation { spike, metric: metric_spec, min_doc_count, terms_size, segment } => {
            Box::new(spike::SpikeAggregationRule::new(
                spike.clone(),
                metric::SegmentShape::new(*segment, definition.run_every),
                metric_spec.clone(),
                *min_doc_count,
                *terms_size,
                capacity,
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Value;
    use crate::rules::parse_rule_yaml;

    fn engine(yaml: &str) -> RuleEngine {
        let definition = RuleDefinition::from_config(parse_rule_yaml(yaml, "test rule").unwrap()).unwrap();
        RuleEngine::new(vec![definition]).unwrap()
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_704_067_200 + seconds, 0).unwrap()
    }

    fn event(seconds: i64) -> LogEvent {
        let mut event = LogEvent::from_fields("test", Default::default());
        event.insert("@timestamp", Value::from(at(seconds).to_rfc3339()));
        event
    }

    const FREQUENCY: &str = "name: burst\ntype: frequency\nnum_events: 2\ntimeframe: {minutes: 5}\nrun_every: {seconds: 10}\nbuffer_time: {minutes: 5}\n";

    #[test]
    fn each_completed_run_is_recorded_with_its_hits_and_matches() {
        let mut engine = engine(FREQUENCY);
        engine.record_runs(true);
        engine.advance(at(0));
        engine.add_events(&[event(1), event(2), event(3)]);
        let matches = engine.advance(at(20));
        assert!(matches.is_empty(), "frequency matches at the event, not at the run end");
        let mut records = Vec::new();
        engine.drain_run_records(&mut records);
        assert_eq!(records.len(), 2, "run ends at 10 s and 20 s: {records:?}");
        let first = &records[0];
        assert_eq!((&*first.rule_name, first.rule_index), ("burst", 0));
        assert_eq!((first.start, first.end), (at(0), at(10)));
        assert_eq!((first.hits, first.matches), (3, 1), "two events matched, the third starts a new window");
        assert_eq!((records[1].start, records[1].end, records[1].hits, records[1].matches), (at(10), at(20), 0, 0));
        assert!(first.time_taken > Duration::ZERO);

        records.clear();
        engine.drain_run_records(&mut records);
        assert!(records.is_empty(), "drained once");
    }

    #[test]
    fn nothing_is_recorded_unless_asked_or_after_stopping() {
        let mut engine = engine(FREQUENCY);
        engine.advance(at(0));
        engine.add_events(&[event(1)]);
        engine.advance(at(30));
        let mut records = Vec::new();
        engine.drain_run_records(&mut records);
        assert!(records.is_empty());
        engine.record_runs(true);
        engine.advance(at(40));
        engine.record_runs(false);
        engine.drain_run_records(&mut records);
        assert!(records.is_empty(), "stopping drops what was not drained");
    }
}
