//! Aggregation-query rule types over the stream: `metric_aggregation` and
//! `percentage_match`, plus the accumulator `spike_aggregation` shares.
//!
//! Upstream runs one Elasticsearch aggregation per run over the segment
//! `(end − buffer_time, end]` (or `(end − run_every, end]` with
//! `use_run_every_query_size`): a terms aggregation per query_key (top
//! `terms_size` by doc count, ties by key, at least `min_doc_count` docs)
//! with the metric inside, and tests each bucket. Consecutive runs therefore
//! overlap by `buffer_time − run_every`.
//!
//! Here each key keeps partial aggregates in time buckets whose edges fall
//! on run ends (bucket width = gcd(run_every, segment)); at each run end the
//! buckets inside the segment are merged and tested, and older buckets are
//! dropped. The numbers equal what the query would return for the same
//! events, with these differences: percentiles are exact (linear
//! interpolation between closest ranks) where Elasticsearch's TDigest is
//! approximate; a compound query_key is one flat terms list (its size limit
//! is `terms_size` per level, multiplied); events arriving after their bucket
//! was last evaluated are not counted (upstream would see them if they fell
//! in a later overlapping query).
//!
//! Without query_key the single bucket is tested even with no documents, as
//! the query's top-level aggregation is: `sum`, `value_count` and
//! `cardinality` read 0 and can cross a `min_threshold`.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use crate::event::{KeyString, LogEvent, ObjectMap, Value};
use crate::rules::config::{
    MetricAggregationSettings, MetricAggregationType, MetricSpec, PercentageMatchSettings, RuleDefinition,
};
use crate::rules::fields::{self, python_float, QueryKey};
use crate::rules::frequency::number_value;
use crate::rules::time::{duration_nanos, EventTime};
use crate::rules::window::{KeyedState, PartitionKey};
use crate::rules::{IncomingEvent, RawMatch, RuleState};

/// Decides whether an event falls in percentage_match's match bucket.
pub(crate) type EventPredicate = Box<dyn Fn(&LogEvent) -> bool + Send>;

/// Bucket geometry of one aggregation rule.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentShape {
    bucket_width: i64,
    buckets_per_segment: i64,
}

impl SegmentShape {
    pub fn new(segment: Duration, run_every: Duration) -> SegmentShape {
        let segment = duration_nanos(segment).max(1);
        let run_every = duration_nanos(run_every).max(1);
        let bucket_width = gcd(segment, run_every).max(1);
        SegmentShape { bucket_width, buckets_per_segment: segment / bucket_width }
    }

    /// Bucket `b` covers `(phase + (b−1)·w, phase + b·w]`, so a run end is
    /// always the upper edge of a bucket.
    fn bucket_index(&self, time: EventTime, phase: i64) -> i64 {
        let offset = time.saturating_sub(phase);
        offset.div_euclid(self.bucket_width) + i64::from(offset.rem_euclid(self.bucket_width) != 0)
    }
}

fn gcd(mut left: i64, mut right: i64) -> i64 {
    while right != 0 {
        (left, right) = (right, left % right);
    }
    left
}

/// Terms-aggregation bucket selection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TermsSelection {
    pub min_doc_count: u64,
    pub terms_size: usize,
}

/// Partial aggregates of one time bucket for one key.
#[derive(Debug, Clone, Default)]
struct MetricPartial {
    doc_count: u64,
    value_count: u64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
    /// cardinality only.
    distinct: HashSet<KeyString>,
    /// percentiles only.
    samples: Vec<f64>,
}

struct TimeBuckets<P> {
    components: Vec<Option<KeyString>>,
    buckets: VecDeque<(i64, P)>,
}

impl<P: Default> TimeBuckets<P> {
    fn bucket_mut(&mut self, index: i64) -> &mut P {
        let position = self.buckets.iter().rposition(|(existing, _)| *existing <= index);
        match position {
            Some(position) if self.buckets[position].0 == index => &mut self.buckets[position].1,
            Some(position) => {
                self.buckets.insert(position + 1, (index, P::default()));
                &mut self.buckets[position + 1].1
            }
            None => {
                self.buckets.push_front((index, P::default()));
                &mut self.buckets[0].1
            }
        }
    }

    fn drop_through(&mut self, index: i64) {
        while self.buckets.front().is_some_and(|(existing, _)| *existing <= index) {
            self.buckets.pop_front();
        }
    }
}

/// Per-key bucketed partials with the rule's key cap.
struct Bucketed<P> {
    shape: SegmentShape,
    phase: Option<i64>,
    /// Buckets at or below this index were evaluated for the last time.
    evaluated_through: Option<i64>,
    keys: KeyedState<TimeBuckets<P>>,
}

impl<P: Default> Bucketed<P> {
    fn new(shape: SegmentShape, capacity: usize) -> Bucketed<P> {
        Bucketed { shape, phase: None, evaluated_through: None, keys: KeyedState::new(capacity) }
    }

    /// The partial for the event's key and bucket, or `None` when the
    /// bucket already left every future segment.
    fn partial_for(&mut self, rule: &RuleDefinition, event: IncomingEvent<'_>) -> Option<&mut P> {
        let phase = *self.phase.get_or_insert(event.run_end.rem_euclid(self.shape.bucket_width));
        // The first run includes its start, so an event exactly at the
        // anchor counts in the first run's bucket.
        let bucket_time = if event.time == event.schedule_anchor { event.time.saturating_add(1) } else { event.time };
        let index = self.shape.bucket_index(bucket_time, phase);
        if self.evaluated_through.is_some_and(|through| index <= through) {
            return None;
        }
        let (key, components) = match &rule.query_key {
            None => (None, Vec::new()),
            Some(query_key) => (query_key.key_text(event.fields), query_key.component_texts(event.fields)),
        };
        // A terms aggregation has no bucket for documents missing the field.
        if rule.query_key.is_some() && components.iter().any(Option::is_none) {
            return None;
        }
        let state = self.keys.touch_or_insert_with(key, || TimeBuckets { components, buckets: VecDeque::new() });
        Some(state.bucket_mut(index))
    }

    /// Runs `merge` over each key's buckets inside the segment ending at
    /// `run_end`, then drops buckets no later segment needs.
    fn evaluate<R>(
        &mut self,
        run_end: EventTime,
        mut merge: impl FnMut(&PartitionKey, &[Option<KeyString>], &mut dyn Iterator<Item = &P>) -> R,
    ) -> Vec<R> {
        let phase = *self.phase.get_or_insert(run_end.rem_euclid(self.shape.bucket_width));
        let end_index = self.shape.bucket_index(run_end, phase);
        let first_index = end_index - self.shape.buckets_per_segment + 1;
        let mut results = Vec::new();
        for (key, state) in self.keys.iter() {
            let mut in_segment = state
                .buckets
                .iter()
                .filter(|(index, _)| (first_index..=end_index).contains(index))
                .map(|(_, partial)| partial);
            results.push(merge(key, &state.components, &mut in_segment));
        }
        // The next run's segment starts at least one bucket later.
        let keep_from = first_index + 1;
        self.evaluated_through = Some(keep_from - 1);
        self.keys.retain(|_, state| {
            state.drop_through(keep_from - 1);
            !state.buckets.is_empty()
        });
        results
    }
}

/// One key's aggregated value for one segment.
pub(crate) struct EvaluatedMetric {
    pub key: PartitionKey,
    pub components: Vec<Option<KeyString>>,
    pub doc_count: u64,
    pub value: Option<f64>,
}

/// Metric aggregation over segments, shared by metric_aggregation and
/// spike_aggregation.
pub(crate) struct MetricAccumulator {
    metric: MetricSpec,
    bucketed: Bucketed<MetricPartial>,
}

impl MetricAccumulator {
    pub fn new(shape: SegmentShape, metric: MetricSpec, capacity: usize) -> MetricAccumulator {
        MetricAccumulator { metric, bucketed: Bucketed::new(shape, capacity) }
    }

    pub fn add(&mut self, rule: &RuleDefinition, event: IncomingEvent<'_>) {
        let aggregation = self.metric.aggregation;
        let metric_key = &self.metric.key;
        let Some(partial) = self.bucketed.partial_for(rule, event) else {
            return;
        };
        partial.doc_count += 1;
        let Some(value) = fields::lookup(event.fields, metric_key) else {
            return;
        };
        let values: &[Value] = match value {
            Value::Array(items) => items,
            single => std::slice::from_ref(single),
        };
        for value in values.iter().filter(|value| !value.is_null()) {
            if aggregation == MetricAggregationType::Cardinality {
                partial.distinct.insert(fields::key_string(value));
                continue;
            }
            if aggregation == MetricAggregationType::ValueCount {
                partial.value_count += 1;
                continue;
            }
            let Some(number) = value.as_f64().filter(|number| number.is_finite()) else {
                continue;
            };
            partial.value_count += 1;
            partial.sum += number;
            partial.min = Some(partial.min.map_or(number, |min| min.min(number)));
            partial.max = Some(partial.max.map_or(number, |max| max.max(number)));
            if aggregation == MetricAggregationType::Percentiles {
                partial.samples.push(number);
            }
        }
    }

    /// Values of the selected terms buckets for the segment ending at
    /// `run_end` (without query_key: one unkeyed result, always).
    pub fn evaluate(
        &mut self,
        rule: &RuleDefinition,
        run_end: EventTime,
        selection: &TermsSelection,
    ) -> Vec<EvaluatedMetric> {
        let metric = self.metric.clone();
        let mut results = self.bucketed.evaluate(run_end, |key, components, partials| {
            let mut merged = MetricPartial::default();
            for partial in partials {
                merged.doc_count += partial.doc_count;
                merged.value_count += partial.value_count;
                merged.sum += partial.sum;
                merged.min = match (merged.min, partial.min) {
                    (Some(left), Some(right)) => Some(left.min(right)),
                    (left, right) => left.or(right),
                };
                merged.max = match (merged.max, partial.max) {
                    (Some(left), Some(right)) => Some(left.max(right)),
                    (left, right) => left.or(right),
                };
                merged.distinct.extend(partial.distinct.iter().cloned());
                merged.samples.extend_from_slice(&partial.samples);
            }
            EvaluatedMetric {
                key: key.clone(),
                components: components.to_vec(),
                doc_count: merged.doc_count,
                value: metric_value(&metric, &mut merged),
            }
        });
        if rule.query_key.is_none() {
            if results.is_empty() {
                let mut empty = MetricPartial::default();
                results.push(EvaluatedMetric {
                    key: None,
                    components: Vec::new(),
                    doc_count: 0,
                    value: metric_value(&metric, &mut empty),
                });
            }
            return results;
        }
        select_terms(results, |result| (result.doc_count, &result.key), selection, rule.query_key.as_ref())
    }

    pub fn tracked_keys(&self) -> usize {
        self.bucketed.keys.len()
    }

    pub fn evicted_keys_total(&self) -> u64 {
        self.bucketed.keys.evicted_total()
    }
}

fn metric_value(metric: &MetricSpec, merged: &mut MetricPartial) -> Option<f64> {
    match metric.aggregation {
        MetricAggregationType::Sum => Some(merged.sum),
        MetricAggregationType::ValueCount => Some(merged.value_count as f64),
        MetricAggregationType::Cardinality => Some(merged.distinct.len() as f64),
        MetricAggregationType::Min => merged.min,
        MetricAggregationType::Max => merged.max,
        MetricAggregationType::Avg => (merged.value_count > 0).then(|| merged.sum / merged.value_count as f64),
        MetricAggregationType::Percentiles => percentile(&mut merged.samples, metric.percentile.unwrap_or(50.0)),
    }
}

/// Linear interpolation between closest ranks.
fn percentile(samples: &mut [f64], percent: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(f64::total_cmp);
    let rank = (percent.clamp(0.0, 100.0) / 100.0) * (samples.len() - 1) as f64;
    let lower = rank.floor() as usize;
    let upper = rank.ceil() as usize;
    let weight = rank - lower as f64;
    Some(samples[lower] + (samples[upper] - samples[lower]) * weight)
}

/// Terms aggregation selection: at least `min_doc_count` docs, ordered by
/// doc count descending then key, at most `terms_size` (per level).
fn select_terms<T>(
    mut results: Vec<T>,
    rank: impl Fn(&T) -> (u64, &PartitionKey),
    selection: &TermsSelection,
    query_key: Option<&QueryKey>,
) -> Vec<T> {
    results.retain(|result| rank(result).0 >= selection.min_doc_count.max(1));
    results.sort_by(|left, right| {
        let (left_count, left_key) = rank(left);
        let (right_count, right_key) = rank(right);
        right_count.cmp(&left_count).then_with(|| left_key.cmp(right_key))
    });
    let levels = match query_key {
        Some(QueryKey::Compound { fields, .. }) => fields.len() as u32,
        _ => 1,
    };
    results.truncate(selection.terms_size.saturating_pow(levels));
    results
}

/// Puts the key into an aggregation match as upstream does: a single key at
/// its (possibly dotted, hence nested) path; a compound key as each
/// component field plus the joined field (joined with `,`).
fn insert_query_key(body: &mut ObjectMap, query_key: &QueryKey, components: &[Option<KeyString>]) {
    match query_key {
        QueryKey::Single(path) => {
            if let Some(Some(value)) = components.first() {
                fields::set_nested(body, path, Value::from(value.as_str()));
            }
        }
        QueryKey::Compound { fields: paths, joined_name } => {
            let texts: Vec<&str> = components.iter().map(|component| component.as_deref().unwrap_or("None")).collect();
            for (path, text) in paths.iter().zip(&texts) {
                body.insert(path.as_str().into(), Value::from(*text));
            }
            body.insert(joined_name.as_str().into(), Value::from(texts.join(",")));
        }
    }
}

pub(crate) struct MetricAggregationRule {
    settings: MetricAggregationSettings,
    accumulator: MetricAccumulator,
}

impl MetricAggregationRule {
    pub fn new(settings: MetricAggregationSettings, shape: SegmentShape, capacity: usize) -> MetricAggregationRule {
        MetricAggregationRule {
            accumulator: MetricAccumulator::new(shape, settings.metric.clone(), capacity),
            settings,
        }
    }

    fn crossed(&self, value: f64) -> bool {
        self.settings.max_threshold.is_some_and(|max| value > max)
            || self.settings.min_threshold.is_some_and(|min| value < min)
    }
}

impl RuleState for MetricAggregationRule {
    fn add_event(&mut self, rule: &RuleDefinition, event: IncomingEvent<'_>, _matches: &mut Vec<RawMatch>) {
        self.accumulator.add(rule, event);
    }

    fn end_of_run(&mut self, rule: &RuleDefinition, run_end: EventTime, matches: &mut Vec<RawMatch>) {
        let selection =
            TermsSelection { min_doc_count: self.settings.min_doc_count, terms_size: self.settings.terms_size };
        for evaluated in self.accumulator.evaluate(rule, run_end, &selection) {
            let Some(value) = evaluated.value else {
                continue;
            };
            if !self.crossed(value) {
                continue;
            }
            let metric_value = match self.settings.metric.aggregation {
                MetricAggregationType::Cardinality | MetricAggregationType::ValueCount => number_value(value),
                _ => Value::Float(value),
            };
            let field_name = self.settings.metric.field_name();
            let mut body = ObjectMap::default();
            body.insert(field_name.as_str().into(), metric_value.clone());
            body.insert("metric_agg_value".into(), metric_value.clone());
            if let Some(format) = &self.settings.format_string {
                let formatted =
                    crate::rules::alert::format_number(format, value).unwrap_or_else(|| python_float(value));
                body.insert(format!("{field_name}_formatted").into(), Value::from(formatted.as_str()));
                body.insert("metric_agg_value_formatted".into(), Value::from(formatted));
            }
            if let Some(query_key) = &rule.query_key {
                insert_query_key(&mut body, query_key, &evaluated.components);
            }
            matches.push(RawMatch { time: run_end, body });
        }
    }

    fn tracked_keys(&self) -> usize {
        self.accumulator.tracked_keys()
    }

    fn evicted_keys_total(&self) -> u64 {
        self.accumulator.evicted_keys_total()
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct PercentagePartial {
    matching: u64,
    other: u64,
}

pub(crate) struct PercentageMatchRule {
    settings: PercentageMatchSettings,
    in_match_bucket: EventPredicate,
    bucketed: Bucketed<PercentagePartial>,
}

impl PercentageMatchRule {
    pub fn new(
        settings: PercentageMatchSettings,
        shape: SegmentShape,
        in_match_bucket: EventPredicate,
        capacity: usize,
    ) -> PercentageMatchRule {
        PercentageMatchRule { settings, in_match_bucket, bucketed: Bucketed::new(shape, capacity) }
    }
}

impl RuleState for PercentageMatchRule {
    fn add_event(&mut self, rule: &RuleDefinition, event: IncomingEvent<'_>, _matches: &mut Vec<RawMatch>) {
        let matching = (self.in_match_bucket)(event.event);
        let Some(partial) = self.bucketed.partial_for(rule, event) else {
            return;
        };
        if matching {
            partial.matching += 1;
        } else {
            partial.other += 1;
        }
    }

    fn end_of_run(&mut self, rule: &RuleDefinition, run_end: EventTime, matches: &mut Vec<RawMatch>) {
        let mut results = self.bucketed.evaluate(run_end, |key, components, partials| {
            let merged = partials.fold(PercentagePartial::default(), |total, partial| PercentagePartial {
                matching: total.matching + partial.matching,
                other: total.other + partial.other,
            });
            (key.clone(), components.to_vec(), merged)
        });
        if rule.query_key.is_none() && results.is_empty() {
            results.push((None, Vec::new(), PercentagePartial::default()));
        }
        if rule.query_key.is_some() {
            let selection = TermsSelection { min_doc_count: 1, terms_size: self.settings.terms_size };
            results = select_terms(
                results,
                |(key, _, partial)| (partial.matching + partial.other, key),
                &selection,
                rule.query_key.as_ref(),
            );
        }
        for (_, components, partial) in results {
            let total = partial.matching + partial.other;
            if total == 0 || total < self.settings.min_denominator {
                continue;
            }
            let percentage = 100.0 * partial.matching as f64 / total as f64;
            let crossed = self.settings.max_percentage.is_some_and(|max| percentage > max)
                || self.settings.min_percentage.is_some_and(|min| percentage < min);
            if !crossed {
                continue;
            }
            let mut body = ObjectMap::default();
            body.insert("percentage".into(), Value::Float(percentage));
            body.insert("denominator".into(), Value::Integer(total as i64));
            if let Some(format) = &self.settings.format_string {
                let formatted =
                    crate::rules::alert::format_number(format, percentage).unwrap_or_else(|| python_float(percentage));
                body.insert("percentage_formatted".into(), Value::from(formatted));
            }
            if let Some(query_key) = &rule.query_key {
                insert_query_key(&mut body, query_key, &components);
            }
            matches.push(RawMatch { time: run_end, body });
        }
    }

    fn tracked_keys(&self) -> usize {
        self.bucketed.keys.len()
    }

    fn evicted_keys_total(&self) -> u64 {
        self.bucketed.keys.evicted_total()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_edges_fall_on_run_ends() {
        let shape = SegmentShape::new(Duration::from_secs(300), Duration::from_secs(60));
        let second = 1_000_000_000;
        assert_eq!(shape.bucket_width, 60 * second);
        assert_eq!(shape.buckets_per_segment, 5);
        let phase = 7 * second;
        assert_eq!(shape.bucket_index(7 * second + 60 * second, phase), 1);
        assert_eq!(shape.bucket_index(7 * second + 60 * second + 1, phase), 2);
        assert_eq!(shape.bucket_index(7 * second + 1, phase), 1);
    }

    fn percentage_rule(yaml: &str) -> (RuleDefinition, PercentageMatchRule) {
        let definition = RuleDefinition::from_config(crate::rules::parse_rule_yaml(yaml, "test").unwrap()).unwrap();
        let crate::rules::RuleKind::PercentageMatch(settings) = definition.kind.clone() else {
            panic!("not percentage_match")
        };
        let shape = SegmentShape::new(settings.segment, definition.run_every);
        // Stands in for the compiled match_bucket_filter: status 500.
        let is_error: EventPredicate =
            Box::new(|event: &LogEvent| event.get("status").and_then(Value::as_f64) == Some(500.0));
        let rule = PercentageMatchRule::new(settings, shape, is_error, 100);
        (definition, rule)
    }

    fn feed_statuses(
        definition: &RuleDefinition,
        rule: &mut PercentageMatchRule,
        statuses: &[(&str, i64)],
        run_end: EventTime,
    ) {
        for (index, (host, status)) in statuses.iter().enumerate() {
            let json = serde_json::json!({"host": host, "status": status});
            let Value::Object(fields) = Value::from(json) else { unreachable!("object") };
            let event = LogEvent::from_fields("test", fields);
            let incoming = IncomingEvent {
                event: &event,
                fields: event.fields(),
                time: run_end - 1_000_000_000 * (index as i64 + 1),
                run_end,
                schedule_anchor: 0,
            };
            rule.add_event(definition, incoming, &mut Vec::new());
        }
    }

    #[test]
    fn percentage_match_bounds_are_strict_and_respect_min_denominator() {
        let minute = 60_000_000_000;
        let yaml = "name: p\ntype: percentage_match\nmatch_bucket_filter: [{term: {status: 500}}]\nmax_percentage: 25\nmin_denominator: 4\nquery_key: host\nbuffer_time: {minutes: 1}\nrun_every: {minutes: 1}\n";
        let (definition, mut rule) = percentage_rule(yaml);
        feed_statuses(
            &definition,
            &mut rule,
            &[
                ("a", 500),
                ("a", 200),
                ("a", 200),
                ("a", 200),
                ("b", 500),
                ("b", 500),
                ("c", 500),
                ("c", 200),
                ("c", 200),
                ("c", 200),
                ("c", 500),
            ],
            minute,
        );
        let mut matches = Vec::new();
        rule.end_of_run(&definition, minute, &mut matches);
        // a: 25% is not above 25; b: 100% but only 2 items; c: 40%.
        assert_eq!(matches.len(), 1);
        assert_eq!(matches[0].body.get("host"), Some(&Value::from("c")));
        assert_eq!(matches[0].body.get("percentage"), Some(&Value::Float(40.0)));
        assert_eq!(matches[0].body.get("denominator"), Some(&Value::Integer(5)));
        let mut next_run = Vec::new();
        rule.end_of_run(&definition, 2 * minute, &mut next_run);
        assert!(next_run.is_empty(), "the one-minute segment moved past every event");
    }

    #[test]
    fn percentage_match_min_bound_without_query_key() {
        let minute = 60_000_000_000;
        let yaml = "name: p\ntype: percentage_match\nmatch_bucket_filter: [{term: {status: 500}}]\nmin_percentage: 50\npercentage_format_string: \"{:.1f}%\"\nbuffer_time: {minutes: 1}\nrun_every: {minutes: 1}\n";
        let (definition, mut rule) = percentage_rule(yaml);
        feed_statuses(&definition, &mut rule, &[("a", 500), ("a", 200), ("a", 200)], minute);
        let mut matches = Vec::new();
        rule.end_of_run(&definition, minute, &mut matches);
        assert_eq!(matches.len(), 1);
        assert_eq!(matches[0].body.get("percentage_formatted"), Some(&Value::from("33.3%")));
    }

    #[test]
    fn percentiles_interpolate_between_ranks() {
        assert_eq!(percentile(&mut [1.0, 2.0, 3.0, 4.0], 50.0), Some(2.5));
        assert_eq!(percentile(&mut [5.0], 95.0), Some(5.0));
        assert_eq!(percentile(&mut [], 95.0), None);
    }
}
