//! `rules`: evaluates ElastAlert rules over the stream and emits one alert
//! event per alert on its default output, and ElastAlert's status and
//! silence records on its `writeback` output.
//!
//! Keys:
//! - `rule`: inline rules, `[[transforms.ID.rule]]` tables with ElastAlert's
//!   rule keys (`name`, `type`, `filter`, `timeframe = "5m"` or
//!   `timeframe = { minutes = 5 }`, ...);
//! - `rules_dir`: a folder of ElastAlert rule files (`*.yaml`, `*.yml`,
//!   subfolders included, loaded in path order), used unchanged;
//! - `config_file`: an ElastAlert `config.yaml` whose keys every rule takes
//!   as defaults, as ElastAlert copies its global config into each rule;
//! - `tick_interval` (default 1 s): how often wall-clock housekeeping runs;
//! - `max_event_time_ahead` (default 5 min): an event stamped later than
//!   this after the wall clock is counted and evaluated as if stamped now;
//! - `writeback` (optional table: `endpoints`, `auth.*`, `tls.*`,
//!   `request_timeout`, `writeback_index` (default `elastalert`),
//!   `startup_timeout` (default 30 s)): where realert silences are read back
//!   from at start-up.
//!
//! Outputs: the default output carries alert events; `ID.writeback` carries
//! one `writeback_type = "status"` event per completed rule run
//! (`rule_name`, `starttime`, `endtime` in ISO 8601 UTC, `matches`, `hits`
//! (events the rule evaluated in the run), `time_taken` (seconds of
//! processing)) and one `writeback_type = "silence"` event whenever realert
//! sets or extends a silence (`rule_name` = the silence key, `until`,
//! `exponent`). Wire it to an `elasticsearch` sink with `mode =
//! "writeback"`; kept apart so status records never reach alert sinks.
//! Nothing is built for it when nobody consumes it (and validation does not
//! warn about it).
//!
//! Building reads the rule files (this is configuration loading, the one
//! exception to "build does no IO"): an unreadable folder, bad YAML or an
//! invalid rule fails the build with the file and key, so `pipe validate`
//! reports it and nothing starts.
//!
//! Runtime (a task transform, one task):
//! - with `writeback` set, the task first reads the silences still active
//!   for its rules' realert keys (`read_active_silences`, by key prefix, as
//!   keys carry query_key values) and seeds the `Alerter` with them, so
//!   `realert` holds across a restart. An unreachable cluster is retried
//!   with backoff for `startup_timeout`; then, as on an authentication error
//!   or a refused query, the failure is logged and counted
//!   (`pipe_component_errors_total{error_type="silence_restore_failed"}`)
//!   and the transform runs without those silences: alerting late or twice
//!   is better than not alerting while the writeback cluster is down. Input
//!   waits meanwhile (backpressure), for at most `startup_timeout`;
//! - each input batch goes through the `RuleEngine` in event time; matches
//!   go through the `Alerter` (realert, aggregation) at the wall clock; each
//!   alert becomes one event (`Alert::to_event`) on the default output;
//! - every `tick_interval`, `advance_to_wall_clock(now)` runs the
//!   housekeeping of every run end up to `now − query_delay` that event time
//!   has not already passed, so a flatline rule fires when logs stop
//!   arriving, and due aggregations are sent;
//! - status and silence records are drained after every batch and tick and
//!   sent with the alerts;
//! - when the input closes, pending aggregations are sent (`flush_all`),
//!   then the task returns.
//!
//! Event time is trusted except far in the future (see `FutureEventCap`):
//! one host's clock running ahead must not move a rule's watermark past the
//! present. Events are not dropped for it, so an exception logged by a
//! skewed host still alerts. A consequence of advancing with the wall clock:
//! events older than a rule's look-back (`buffer_time`, default 45 min) when
//! they arrive are counted late and dropped, as ElastAlert's live queries
//! would never see them.
//!
//! Acknowledgements: the transform consumes every input event. A batch's
//! events are settled as delivered once the alerts they produced have been
//! handed to the output; alert and writeback events carry no finalizer.
//! Rule windows and pending aggregations live in memory only; silences
//! survive a restart only through the writeback index (written by the sink
//! from the `writeback` output, read back with the `writeback` key).
//!
//! Metrics, per rule (label `rule`): `pipe_rules_tracked_keys` (gauge),
//! `pipe_rules_evicted_keys_total`, `pipe_rules_matches_total`,
//! `pipe_rules_alerts_total`, `pipe_rules_late_events_total`,
//! `pipe_rules_events_without_timestamp_total`,
//! `pipe_rules_future_events_total`; plus `pipe_rules_silenced_matches_total`,
//! `pipe_rules_restored_silences` (gauge: silences read back at start-up)
//! and `pipe_rules_pending_aggregated_matches` (gauge) for the transform.
//! Engine counters are published as absolute values every tick and at the
//! end.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use metrics::{Counter, Gauge};
use serde::Deserialize;

use crate::config::units;
use crate::elasticsearch::{StartupReadError, WritebackTarget, WritebackTargetConfig};
use crate::event::{BatchStatus, EventBatch, KeyString, LogEvent, ObjectMap, Value};
use crate::observability::ComponentMetrics;
use crate::rules::{
    load_global_config, load_rule_file, Alert, Alerter, FutureEventCap, Match, RuleConfig, RuleDefinition, RuleEngine,
    RunRecord, SilenceRecord,
};
use crate::sinks::elasticsearch::{read_active_silences, WRITEBACK_TYPE_FIELD};
use crate::topology::buffer::BufferReceiver;
use crate::topology::{
    BuildContext, BuildError, ComponentError, ComponentFuture, TaskTransform, Transform, TransformContext,
    TransformOutputBuffer, TransformOutputs,
};

/// One second keeps flatline and aggregation sends within a second of due
/// while costing nothing measurable (a tick walks the rules, not the keys,
/// unless a run end is due).
pub const DEFAULT_TICK_INTERVAL: Duration = Duration::from_secs(1);
/// Wider than any sane clock skew between hosts, narrow enough that a wrong
/// clock cannot push rules far into the future.
pub const DEFAULT_MAX_EVENT_TIME_AHEAD: Duration = Duration::from_secs(5 * 60);
/// The named output carrying status and silence records.
pub const WRITEBACK_OUTPUT: &str = "writeback";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Inline rules, each an ElastAlert rule as a TOML table.
    #[serde(default)]
    pub rule: Vec<toml::Table>,
    /// A folder of ElastAlert rule files.
    #[serde(default)]
    pub rules_dir: Option<PathBuf>,
    /// An ElastAlert `config.yaml` providing defaults for every rule.
    #[serde(default)]
    pub config_file: Option<PathBuf>,
    #[serde(default = "default_tick_interval", with = "units::duration")]
    pub tick_interval: Duration,
    #[serde(default = "default_max_event_time_ahead", with = "units::duration")]
    pub max_event_time_ahead: Duration,
    /// The writeback indices to read realert silences back from at start-up.
    /// Boxed: the table is large and rarely set, and every transform config
    /// variant is as big as the largest.
    #[serde(default)]
    pub writeback: Option<Box<WritebackTargetConfig>>,
}

fn default_tick_interval() -> Duration {
    DEFAULT_TICK_INTERVAL
}

fn default_max_event_time_ahead() -> Duration {
    DEFAULT_MAX_EVENT_TIME_AHEAD
}

impl RulesConfig {
    /// The default output (alerts) and `writeback`.
    pub fn outputs(&self) -> Vec<Option<String>> {
        vec![None, Some(WRITEBACK_OUTPUT.to_string())]
    }

    pub fn build(&self, cx: &BuildContext) -> Result<Transform, BuildError> {
        Ok(Transform::Task(Box::new(self.build_rules(cx)?)))
    }

    /// The runtime transform; `build` boxes it.
    pub fn build_rules(&self, cx: &BuildContext) -> Result<RulesTransform, BuildError> {
        if self.tick_interval.is_zero() {
            return Err(BuildError::new("\"tick_interval\" is 0; set it above 0, e.g. \"1s\""));
        }
        let silence_store = match &self.writeback {
            Some(writeback) => Some(writeback.resolve(None).map_err(BuildError::new)?),
            None => None,
        };
        let definitions = self.load_definitions(&cx.id)?;
        let engine = RuleEngine::new(definitions).map_err(|error| BuildError::new(error.to_string()))?;
        if engine.rule_count() == 0 {
            tracing::warn!(component = %cx.id, "every rule has is_enabled: false; the transform consumes its input and never alerts");
        }
        let alerter = Alerter::new(engine.definitions());
        let mut rules = RulesTransform {
            alerts_total: vec![0; engine.rule_count()],
            engine,
            alerter,
            tick_interval: self.tick_interval,
            max_event_time_ahead: chrono::Duration::from_std(self.max_event_time_ahead)
                .unwrap_or(chrono::Duration::MAX),
            matches: Vec::new(),
            silence_store,
            run_records: Vec::new(),
            silence_records: Vec::new(),
            restored_silences: 0,
        };
        rules.record_writeback(true);
        Ok(rules)
    }

    /// Every rule, inline ones first, then the files of `rules_dir` in path
    /// order. Reports every rule that fails, not only the first.
    pub fn load_definitions(&self, component_id: &str) -> Result<Vec<RuleDefinition>, BuildError> {
        let defaults = match &self.config_file {
            Some(path) => {
                Some(load_global_config(path).map_err(|error| BuildError::new(format!("\"config_file\": {error}")))?)
            }
            None => None,
        };
        let mut configs: Vec<Result<RuleConfig, String>> = Vec::new();
        for (index, table) in self.rule.iter().enumerate() {
            let origin = format!("transforms.{component_id}.rule[{index}]");
            let loaded = serde_json::to_value(table).map_err(|error| format!("{origin}: {error}")).and_then(|value| {
                RuleConfig::from_value(value, defaults.as_ref(), &origin).map_err(|error| error.to_string())
            });
            configs.push(loaded);
        }
        if let Some(directory) = &self.rules_dir {
            let files = rule_files(directory).map_err(|error| {
                BuildError::new(format!(
                    "\"rules_dir\": cannot read {:?}: {error}; point it at a folder of ElastAlert rule files",
                    directory.display().to_string()
                ))
            })?;
            if files.is_empty() {
                return Err(BuildError::new(format!(
                    "\"rules_dir\": {:?} holds no *.yaml or *.yml rule files",
                    directory.display().to_string()
                )));
            }
            configs.extend(
                files.iter().map(|file| load_rule_file(file, defaults.as_ref()).map_err(|error| error.to_string())),
            );
        }
        if configs.is_empty() {
            return Err(BuildError::new(
                "no rules; add [[transforms.ID.rule]] tables or set \"rules_dir\" to a folder of ElastAlert rule files",
            ));
        }
        let mut definitions = Vec::with_capacity(configs.len());
        let mut errors = Vec::new();
        for config in configs {
            match config.and_then(|config| RuleDefinition::from_config(config).map_err(|error| error.to_string())) {
                Ok(definition) => definitions.push(definition),
                Err(error) => errors.push(error),
            }
        }
        match errors.len() {
            0 => Ok(definitions),
            1 => Err(BuildError::new(errors.remove(0))),
            count => Err(BuildError::new(format!("{count} rules failed to load:\n  - {}", errors.join("\n  - ")))),
        }
    }
}

/// `*.yaml` and `*.yml` files under `directory` (recursively, like
/// ElastAlert's default `scan_subdirectories`), sorted by path.
fn rule_files(directory: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![directory.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|extension| extension == "yaml" || extension == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The running transform: the engine, the alerter and reused buffers.
pub struct RulesTransform {
    engine: RuleEngine,
    alerter: Alerter,
    /// Alerts emitted, by rule index.
    alerts_total: Vec<u64>,
    tick_interval: Duration,
    max_event_time_ahead: chrono::Duration,
    matches: Vec<Match>,
    /// Where silences are read back from at start-up (`writeback`).
    silence_store: Option<WritebackTarget>,
    run_records: Vec<RunRecord>,
    silence_records: Vec<SilenceRecord>,
    /// Silences seeded from the writeback index at start-up.
    restored_silences: usize,
}

impl std::fmt::Debug for RulesTransform {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("RulesTransform").field("engine", &self.engine).finish_non_exhaustive()
    }
}

impl RulesTransform {
    /// Feeds one batch at wall-clock time `now` and returns the alert events
    /// to send. The batch's events stay with the caller, to be settled once
    /// the alerts are handed on.
    pub fn process_batch(&mut self, batch: &[LogEvent], now: DateTime<Utc>, component_id: &str) -> EventBatch {
        self.engine.set_future_event_cap(Some(FutureEventCap {
            beyond: now.checked_add_signed(self.max_event_time_ahead).unwrap_or(DateTime::<Utc>::MAX_UTC),
            treated_as: now,
        }));
        self.engine.add_events_into(batch, &mut self.matches);
        self.alert_events(now, component_id)
    }

    /// Wall-clock housekeeping at `now`: run ends reached by
    /// `now − query_delay`, then due aggregations.
    pub fn tick(&mut self, now: DateTime<Utc>, component_id: &str) -> EventBatch {
        self.engine.advance_to_wall_clock(now, &mut self.matches);
        self.alert_events(now, component_id)
    }

    /// Every pending aggregation, at shutdown.
    pub fn finish(&mut self, component_id: &str) -> EventBatch {
        let alerts = self.alerter.flush_all();
        self.alerts_to_events(&alerts, component_id)
    }

    /// Alerts for the buffered matches (`Alerter::process` also sends the
    /// aggregations due at `now`).
    fn alert_events(&mut self, now: DateTime<Utc>, component_id: &str) -> EventBatch {
        let matches = std::mem::take(&mut self.matches);
        let alerts = self.alerter.process(matches, now);
        self.alerts_to_events(&alerts, component_id)
    }

    fn alerts_to_events(&mut self, alerts: &[Alert], component_id: &str) -> EventBatch {
        for alert in alerts {
            if let Some(total) = self.alerts_total.get_mut(alert.rule_index) {
                *total += 1;
            }
        }
        alerts.iter().map(|alert| alert.to_event(component_id)).collect()
    }

    /// Starts or stops keeping status and silence records for
    /// `writeback_events` (on after `build`). Off when nobody consumes the
    /// `writeback` output, so nothing is built for it.
    pub fn record_writeback(&mut self, enabled: bool) {
        self.engine.record_runs(enabled);
        self.alerter.record_silences(enabled);
    }

    /// The status events of the runs completed and the silence events of
    /// the silences set since the last call, for the `writeback` output.
    pub fn writeback_events(&mut self, component_id: &str) -> EventBatch {
        self.engine.drain_run_records(&mut self.run_records);
        self.alerter.drain_silence_records(&mut self.silence_records);
        let mut events = Vec::with_capacity(self.run_records.len() + self.silence_records.len());
        events.extend(self.run_records.drain(..).map(|record| status_event(&record, component_id)));
        events.extend(self.silence_records.drain(..).map(|record| silence_event(&record, component_id)));
        events
    }

    /// Seeds the alerter with the silences active in the writeback index
    /// (`WritebackTarget::read_at_startup`: retried until
    /// `startup_timeout`). Returns how many were restored.
    pub async fn restore_silences(&mut self, target: &WritebackTarget) -> Result<usize, StartupReadError> {
        let client = target.client()?;
        let definitions = self.engine.definitions();
        let mut keys: Vec<&str> = definitions.iter().map(|rule| rule.alerting.realert_key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        let silences = target
            .read_at_startup(&client, "the realert silences", || {
                read_active_silences(&client, &target.index_prefix, &keys, Utc::now())
            })
            .await?;
        let count = silences.len();
        for silence in silences {
            let exponent = u32::try_from(silence.exponent.max(0)).unwrap_or(u32::MAX);
            self.alerter.restore_silence(silence.rule_name, silence.until, exponent);
        }
        self.restored_silences = count;
        Ok(count)
    }

    /// Alerts emitted so far, by rule index.
    pub fn alerts_total(&self) -> &[u64] {
        &self.alerts_total
    }

    pub fn engine(&self) -> &RuleEngine {
        &self.engine
    }

    pub fn alerter(&self) -> &Alerter {
        &self.alerter
    }

    async fn run_loop(
        mut self,
        mut input: BufferReceiver,
        mut outputs: TransformOutputs,
        cx: TransformContext,
    ) -> Result<(), ComponentError> {
        let metrics = RulesMetrics::register(&cx.metrics, &self.engine);
        let writeback_consumed = outputs.named.get(WRITEBACK_OUTPUT).is_some_and(|fanout| fanout.consumer_count() > 0);
        self.record_writeback(writeback_consumed);
        if let Some(target) = self.silence_store.take() {
            match self.restore_silences(&target).await {
                Ok(count) => {
                    tracing::info!(component = %cx.id, silences = count, index = %target.index_prefix, "restored the active realert silences from the writeback index")
                }
                Err(error) => {
                    cx.metrics.errors("silence_restore_failed", "processing").increment(1);
                    // Wrong credentials will not heal by themselves: say so louder.
                    if error.is_auth() {
                        tracing::error!(component = %cx.id, %error, "running without the realert silences from before the restart");
                    } else {
                        tracing::warn!(component = %cx.id, %error, "running without the realert silences from before the restart; a repeated match may alert again");
                    }
                }
            }
        }
        metrics.publish(&self);
        let mut ticker = tokio::time::interval(self.tick_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Cancel-safe: `BufferReceiver::recv` is an mpsc receive; a
                // batch is only taken (and its buffer room released) when the
                // arm completes.
                batch = input.recv() => {
                    let Some(batch) = batch else { break };
                    cx.metrics.received_events.increment(batch.len() as u64);
                    cx.metrics.received_bytes.increment(batch.iter().map(LogEvent::byte_size).sum::<usize>() as u64);
                    let alerts = self.process_batch(&batch, Utc::now(), &cx.id);
                    let writeback = self.writeback_events(&cx.id);
                    send(alerts, writeback, &mut outputs).await;
                    // The rules have consumed these events and their alerts
                    // are in the output buffer: the source may move on.
                    for event in batch {
                        event.settle(BatchStatus::Delivered);
                    }
                }
                // Cancel-safe: `Interval::tick` keeps its schedule when a tick
                // is not awaited to completion.
                _ = ticker.tick() => {
                    let alerts = self.tick(Utc::now(), &cx.id);
                    let writeback = self.writeback_events(&cx.id);
                    send(alerts, writeback, &mut outputs).await;
                    metrics.publish(&self);
                }
            }
        }
        let alerts = self.finish(&cx.id);
        let writeback = self.writeback_events(&cx.id);
        send(alerts, writeback, &mut outputs).await;
        metrics.publish(&self);
        Ok(())
    }
}

/// ElastAlert's status record of one run.
fn status_event(record: &RunRecord, component_id: &str) -> LogEvent {
    let mut fields = ObjectMap::default();
    fields.insert(KeyString::from(WRITEBACK_TYPE_FIELD), Value::from("status"));
    fields.insert("rule_name".into(), Value::from(&*record.rule_name));
    fields.insert("starttime".into(), Value::from(iso_utc(record.start)));
    fields.insert("endtime".into(), Value::from(iso_utc(record.end)));
    fields.insert("matches".into(), Value::Integer(i64::try_from(record.matches).unwrap_or(i64::MAX)));
    fields.insert("hits".into(), Value::Integer(i64::try_from(record.hits).unwrap_or(i64::MAX)));
    fields.insert("time_taken".into(), Value::Float(record.time_taken.as_secs_f64()));
    LogEvent::from_fields(component_id, fields)
}

/// ElastAlert's silence record.
fn silence_event(record: &SilenceRecord, component_id: &str) -> LogEvent {
    let mut fields = ObjectMap::default();
    fields.insert(KeyString::from(WRITEBACK_TYPE_FIELD), Value::from("silence"));
    fields.insert("rule_name".into(), Value::from(record.key.as_str()));
    fields.insert("until".into(), Value::from(iso_utc(record.until)));
    fields.insert("exponent".into(), Value::Integer(i64::from(record.exponent)));
    LogEvent::from_fields(component_id, fields)
}

/// ISO 8601 in UTC with `Z`, milliseconds only when there are some (how
/// ElastAlert writes times).
fn iso_utc(time: DateTime<Utc>) -> String {
    crate::rules::time::iso_text(&time.fixed_offset())
}

/// A free function: holding `&RulesTransform` across the await would need
/// the rule states to be `Sync`.
async fn send(alerts: EventBatch, writeback: EventBatch, outputs: &mut TransformOutputs) {
    if alerts.is_empty() && writeback.is_empty() {
        return;
    }
    let mut named = indexmap::IndexMap::new();
    if !writeback.is_empty() {
        named.insert(WRITEBACK_OUTPUT.to_string(), writeback);
    }
    outputs.send(TransformOutputBuffer { default: alerts, named }).await;
}

impl TaskTransform for RulesTransform {
    fn run(self: Box<Self>, input: BufferReceiver, outputs: TransformOutputs, cx: TransformContext) -> ComponentFuture {
        Box::pin(self.run_loop(input, outputs, cx))
    }
}

/// Metric handles of one rule, registered once.
struct RuleMetrics {
    name: String,
    tracked_keys: Gauge,
    evicted_keys: Counter,
    matches: Counter,
    alerts: Counter,
    late_events: Counter,
    events_without_timestamp: Counter,
    future_events: Counter,
}

struct RulesMetrics {
    rules: Vec<RuleMetrics>,
    silenced_matches: Counter,
    restored_silences: Gauge,
    pending_aggregated_matches: Gauge,
}

impl RulesMetrics {
    fn register(component: &ComponentMetrics, engine: &RuleEngine) -> RulesMetrics {
        let rules = engine
            .stats()
            .iter()
            .map(|stats| {
                let label = [("rule", &*stats.rule_name)];
                RuleMetrics {
                    name: stats.rule_name.to_string(),
                    tracked_keys: component.gauge("pipe_rules_tracked_keys", &label),
                    evicted_keys: component.counter("pipe_rules_evicted_keys_total", &label),
                    matches: component.counter("pipe_rules_matches_total", &label),
                    alerts: component.counter("pipe_rules_alerts_total", &label),
                    late_events: component.counter("pipe_rules_late_events_total", &label),
                    events_without_timestamp: component.counter("pipe_rules_events_without_timestamp_total", &label),
                    future_events: component.counter("pipe_rules_future_events_total", &label),
                }
            })
            .collect();
        RulesMetrics {
            rules,
            silenced_matches: component.counter("pipe_rules_silenced_matches_total", &[]),
            restored_silences: component.gauge("pipe_rules_restored_silences", &[]),
            pending_aggregated_matches: component.gauge("pipe_rules_pending_aggregated_matches", &[]),
        }
    }

    /// Engine figures are totals kept by the engine, so they are set, not
    /// added; stats come in rule index order, like `rules`.
    fn publish(&self, transform: &RulesTransform) {
        let alerter = &transform.alerter;
        for ((rule, stats), alerts) in self.rules.iter().zip(transform.engine.stats()).zip(&transform.alerts_total) {
            debug_assert_eq!(rule.name, &*stats.rule_name);
            rule.tracked_keys.set(stats.tracked_keys as f64);
            rule.evicted_keys.absolute(stats.evicted_keys_total);
            rule.matches.absolute(stats.matches_total);
            rule.late_events.absolute(stats.late_events_total);
            rule.events_without_timestamp.absolute(stats.events_without_timestamp_total);
            rule.future_events.absolute(stats.future_events_total);
            rule.alerts.absolute(*alerts);
        }
        self.silenced_matches.absolute(alerter.silenced_matches_total());
        self.restored_silences.set(transform.restored_silences as f64);
        self.pending_aggregated_matches.set(alerter.pending_aggregated_matches() as f64);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::ComponentKind;
    use crate::event::{BatchNotifier, EventFinalizer, Value};
    use crate::topology::buffer::{buffer, BufferMetrics, BufferOptions};
    use crate::topology::fanout::Fanout;

    fn context() -> BuildContext {
        BuildContext { id: "alerts".into(), data_dir: "data".into() }
    }

    fn config(text: &str) -> RulesConfig {
        toml::from_str(text).unwrap_or_else(|error| panic!("{error}"))
    }

    fn build(text: &str) -> RulesTransform {
        config(text).build_rules(&context()).unwrap_or_else(|error| panic!("{error}"))
    }

    fn build_error(text: &str) -> String {
        config(text).build_rules(&context()).expect_err("a build error").0
    }

    fn event(fields: &[(&str, Value)]) -> LogEvent {
        let mut event = LogEvent::from_fields("test", Default::default());
        for (key, value) in fields {
            event.insert(*key, value.clone());
        }
        event
    }

    fn at(seconds: i64, message: &str) -> LogEvent {
        event(&[("__time__", Value::Integer(seconds)), ("message", Value::from(message))])
    }

    fn time(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    const NOW: i64 = 1_704_067_200;

    const SEED_RULE: &str = r#"
[[rule]]
name = "exceptions"
type = "any"
timestamp_field = "__time__"
timestamp_type = "unix"
realert = "0s"
filter = [{ query = { query_string = { query = "message:'Traceback' OR message:*Exception* OR source:*Defend*" } } }]
"#;

    #[test]
    fn an_inline_any_rule_turns_each_matching_event_into_an_alert_event() {
        let mut rules = build(SEED_RULE);
        let batch = [
            at(NOW, "java.lang.IllegalStateException: boom"),
            at(NOW, "request served"),
            at(NOW + 1, "Traceback (most recent call last):"),
        ];
        let alerts = rules.process_batch(&batch, time(NOW + 1), "alerts");
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[0].get("rule_name").and_then(Value::as_str), Some("exceptions"));
        assert!(alerts[0].get("alert_text").and_then(Value::as_str).unwrap().contains("IllegalStateException"));
        assert!(alerts[1].get("message").and_then(Value::as_str).unwrap().starts_with("Traceback"));
        assert_eq!(&*alerts[0].metadata().source_id, "alerts");
        assert_eq!(rules.alerts_total(), [2]);
    }

    #[test]
    fn inline_rule_errors_name_the_table_and_the_key() {
        let error = build_error("[[rule]]\nname = \"r\"\ntype = \"frequency\"\nnum_events = 3\n");
        assert!(error.contains("transforms.alerts.rule[0]"), "{error}");
        assert!(error.contains("timeframe"), "{error}");
        let error = build_error("[[rule]]\nname = \"a\"\ntype = \"any\"\n[[rule]]\ntype = \"any\"\n[[rule]]\nname = \"c\"\ntype = \"bogus\"\n");
        assert!(error.starts_with("2 rules failed to load"), "{error}");
        assert!(error.contains("transforms.alerts.rule[1]") && error.contains("transforms.alerts.rule[2]"), "{error}");
        let error = build_error("[[rule]]\nname = \"a\"\ntype = \"any\"\n[[rule]]\nname = \"a\"\ntype = \"any\"\n");
        assert!(error.contains("unique"), "{error}");
        assert!(build_error("tick_interval = \"1s\"").starts_with("no rules"));
        assert!(build_error(&format!("tick_interval = \"0s\"\n{SEED_RULE}")).starts_with("\"tick_interval\" is 0"));
    }

    #[test]
    fn rules_dir_loads_yaml_files_in_path_order_with_config_file_defaults() {
        let directory = tempfile::tempdir().unwrap();
        let rules = directory.path().join("rules");
        std::fs::create_dir_all(rules.join("team")).unwrap();
        std::fs::write(rules.join("b.yaml"), "name: second\ntype: any\nindex: logs-*\nes_host: es.internal\n").unwrap();
        std::fs::write(rules.join("team/a.yml"), "name: third\ntype: any\n").unwrap();
        std::fs::write(rules.join("a.yaml"), "name: first\ntype: any\n").unwrap();
        std::fs::write(rules.join("notes.txt"), "not a rule").unwrap();
        let global = directory.path().join("config.yaml");
        std::fs::write(&global, "es_host: es.internal\nwriteback_index: elastalert_status\nrun_every:\n  seconds: 30\nbuffer_time:\n  minutes: 15\n").unwrap();
        let text = format!(
            "rules_dir = {:?}\nconfig_file = {:?}\n",
            rules.display().to_string(),
            global.display().to_string()
        );
        let definitions = config(&text).load_definitions("alerts").unwrap();
        let names: Vec<&str> = definitions.iter().map(|definition| definition.name.as_str()).collect();
        assert_eq!(names, ["first", "second", "third"]);
        assert!(definitions.iter().all(|definition| definition.run_every == Duration::from_secs(30)));
        assert!(definitions.iter().all(|definition| definition.buffer_time == Duration::from_secs(15 * 60)));

        std::fs::write(rules.join("broken.yaml"), "name: broken\ntype: any\nalert:\n- \"my_plugin.Alerter\"\n")
            .unwrap();
        let error = config(&text).load_definitions("alerts").unwrap_err().0;
        assert!(error.contains("broken.yaml") && error.contains("\"wecom\" sink"), "{error}");

        let missing = build_error("rules_dir = \"/nonexistent/rules\"");
        assert!(missing.contains("\"rules_dir\"") && missing.contains("/nonexistent/rules"), "{missing}");
        let empty = tempfile::tempdir().unwrap();
        let error = build_error(&format!("rules_dir = {:?}", empty.path().display().to_string()));
        assert!(error.contains("no *.yaml"), "{error}");
        let error = build_error(&format!("config_file = \"/nonexistent/config.yaml\"\n{SEED_RULE}"));
        assert!(error.starts_with("\"config_file\"") && error.contains("/nonexistent/config.yaml"), "{error}");
    }

    #[test]
    fn an_event_far_in_the_future_is_counted_and_evaluated_as_now() {
        let mut rules = build(
            "max_event_time_ahead = \"5m\"\n[[rule]]\nname = \"burst\"\ntype = \"frequency\"\nnum_events = 3\ntimeframe = \"1m\"\nrun_every = \"10s\"\nbuffer_time = \"1m\"\ntimestamp_field = \"__time__\"\ntimestamp_type = \"unix\"\n",
        );
        // One host's clock is a day ahead; without the cap the rule's
        // watermark would jump a day and the next events would all be late.
        let skewed = rules.process_batch(&[at(NOW + 86_400, "x")], time(NOW), "alerts");
        assert!(skewed.is_empty());
        let alerts = rules.process_batch(&[at(NOW + 1, "x"), at(NOW + 2, "x")], time(NOW + 2), "alerts");
        let stats = &rules.engine().stats()[0];
        assert_eq!(stats.future_events_total, 1);
        assert_eq!(stats.late_events_total, 0);
        assert_eq!(alerts.len(), 1, "three events within a minute");
        // Within the allowed skew, event time is kept.
        rules.process_batch(&[at(NOW + 200, "x")], time(NOW + 3), "alerts");
        assert_eq!(rules.engine().stats()[0].future_events_total, 1);
    }

    #[test]
    fn wall_clock_ticks_fire_a_flatline_rule_when_the_stream_is_silent() {
        let mut rules = build(
            "[[rule]]\nname = \"heartbeat\"\ntype = \"flatline\"\nthreshold = 1\ntimeframe = \"2s\"\nrun_every = \"1s\"\ntimestamp_field = \"__time__\"\ntimestamp_type = \"unix\"\n",
        );
        assert!(rules.process_batch(&[at(NOW, "alive")], time(NOW), "alerts").is_empty());
        assert!(rules.tick(time(NOW + 1), "alerts").is_empty(), "one event within the last 2 s");
        let mut alerts = EventBatch::new();
        for second in 2..=4 {
            alerts.extend(rules.tick(time(NOW + second), "alerts"));
        }
        assert!(!alerts.is_empty(), "silence for longer than the timeframe");
        assert_eq!(alerts[0].get("rule_name").and_then(Value::as_str), Some("heartbeat"));
        assert_eq!(alerts[0].get("count"), Some(&Value::Integer(0)));
    }

    const BURST_RULE: &str = "[[rule]]\nname = \"burst\"\ntype = \"frequency\"\nnum_events = 2\ntimeframe = \"1m\"\nrun_every = \"10s\"\nbuffer_time = \"1m\"\nquery_key = \"host\"\nrealert = \"10m\"\ntimestamp_field = \"__time__\"\ntimestamp_type = \"unix\"\n";

    fn host_event(seconds: i64, host: &str) -> LogEvent {
        event(&[("__time__", Value::Integer(seconds)), ("host", Value::from(host))])
    }

    fn text<'a>(event: &'a LogEvent, field: &str) -> &'a str {
        event.get(field).and_then(Value::as_str).unwrap_or_else(|| panic!("{field} in {:?}", event.fields()))
    }

    #[test]
    fn completed_runs_become_status_events_and_realert_silences_become_silence_events() {
        let mut rules = build(BURST_RULE);
        assert_eq!(config(BURST_RULE).outputs(), [None, Some("writeback".to_string())]);
        let batch = [host_event(NOW + 1, "web-1"), host_event(NOW + 2, "web-1"), host_event(NOW + 3, "web-1")];
        let alerts = rules.process_batch(&batch, time(NOW + 3), "alerts");
        assert_eq!(alerts.len(), 1, "the third event starts a new window");
        let writeback = rules.writeback_events("alerts");
        assert_eq!(writeback.len(), 1, "no run has ended yet, one silence was set: {writeback:?}");
        let silence = &writeback[0];
        assert_eq!(text(silence, "writeback_type"), "silence");
        assert_eq!(text(silence, "rule_name"), "burst.web-1");
        assert_eq!(text(silence, "until"), "2024-01-01T00:10:03Z");
        assert_eq!(silence.get("exponent"), Some(&Value::Integer(0)));

        assert!(rules.tick(time(NOW + 21), "alerts").is_empty());
        let statuses = rules.writeback_events("alerts");
        assert_eq!(statuses.len(), 2, "run ends at +11 s and +21 s: {statuses:?}");
        let first = &statuses[0];
        assert_eq!(text(first, "writeback_type"), "status");
        assert_eq!(text(first, "rule_name"), "burst");
        assert_eq!(text(first, "starttime"), "2024-01-01T00:00:01Z");
        assert_eq!(text(first, "endtime"), "2024-01-01T00:00:11Z");
        assert_eq!((first.get("hits"), first.get("matches")), (Some(&Value::Integer(3)), Some(&Value::Integer(1))));
        assert!(matches!(first.get("time_taken"), Some(Value::Float(seconds)) if *seconds >= 0.0));
        assert_eq!(statuses[1].get("hits"), Some(&Value::Integer(0)));
        assert!(rules.writeback_events("alerts").is_empty(), "records are drained once");

        rules.record_writeback(false);
        rules.process_batch(&[host_event(NOW + 22, "web-2"), host_event(NOW + 23, "web-2")], time(NOW + 23), "alerts");
        rules.tick(time(NOW + 41), "alerts");
        assert!(rules.writeback_events("alerts").is_empty(), "nothing is recorded for an unconsumed output");
    }

    #[test]
    fn the_writeback_key_is_validated_at_build_without_io() {
        let error = build_error(&format!("{SEED_RULE}[writeback]\nwriteback_index = \"wb\"\n"));
        assert!(error.contains("\"writeback.endpoints\""), "{error}");
        let error = build_error(&format!(
            "{SEED_RULE}[writeback]\nendpoints = [\"http://h:9200\"]\nwriteback_index = \"A*\"\n"
        ));
        assert!(error.contains("writeback_index"), "{error}");
        // Nothing listens there; building must not notice.
        let rules = build(&format!("{SEED_RULE}[writeback]\nendpoints = [\"http://127.0.0.1:9\"]\n"));
        let store = rules.silence_store.as_ref().expect("kept for start-up");
        assert_eq!((store.index_prefix.as_str(), store.startup_timeout), ("elastalert", Duration::from_secs(30)));
    }

    fn silence_target(url: &str, startup_timeout: &str) -> WritebackTarget {
        toml::from_str::<WritebackTargetConfig>(&format!(
            "endpoints = [\"{url}\"]\nstartup_timeout = \"{startup_timeout}\"\nrequest_timeout = \"1s\""
        ))
        .unwrap()
        .resolve(None)
        .unwrap()
    }

    #[tokio::test]
    async fn silences_read_back_at_start_up_suppress_repeated_matches() {
        let es = testkit::es::EsEmulator::start(testkit::es::EsConfig::elasticsearch("8.15.0").unwrap()).await.unwrap();
        let until = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        let expired = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
        let client = reqwest::Client::new();
        for (id, key, until) in
            [("1", "burst.web-1", &until), ("2", "burst.web-2", &expired), ("3", "burst2.web-3", &until)]
        {
            let response = client
                .put(format!("{}/elastalert_silence/_doc/{id}?refresh=true", es.url()))
                .json(&serde_json::json!({"rule_name": key, "until": until, "exponent": 0, "@timestamp": until}))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{}", response.text().await.unwrap());
        }
        let mut rules = build(BURST_RULE);
        let restored = rules.restore_silences(&silence_target(&es.url(), "5s")).await.unwrap();
        assert_eq!(restored, 1, "only the active silence of this rule's keys");
        let now = Utc::now().timestamp();
        let web1 = rules.process_batch(&[host_event(now, "web-1"), host_event(now, "web-1")], Utc::now(), "alerts");
        assert!(web1.is_empty(), "web-1 is still silenced from before the restart");
        assert_eq!(rules.alerter().silenced_matches_total(), 1);
        let web2 = rules.process_batch(&[host_event(now, "web-2"), host_event(now, "web-2")], Utc::now(), "alerts");
        assert_eq!(web2.len(), 1, "web-2's silence has expired");
    }

    #[tokio::test]
    async fn the_task_settles_input_after_sending_alerts_and_flushes_aggregations_at_the_end() {
        let rules = build(&format!("{SEED_RULE}aggregation = \"1h\"\n"));
        let (input_sender, input) = buffer(BufferOptions::default(), BufferMetrics::detached());
        let (output_sender, mut output) = buffer(BufferOptions::default(), BufferMetrics::detached());
        let metrics = ComponentMetrics::register("alerts", ComponentKind::Transform, "rules");
        let outputs = TransformOutputs {
            default: Some(Fanout::new(vec![("sink".into(), output_sender)], metrics.discarded_intentional.clone())),
            named: Default::default(),
            metrics: metrics.clone(),
        };
        let cx = TransformContext {
            id: "alerts".into(),
            data_dir: "data".into(),
            health: crate::observability::ComponentHealth::detached("alerts"),
            metrics,
        };
        let task = tokio::spawn(Box::new(rules).run(input, outputs, cx));

        let (notifier, status) = BatchNotifier::new_with_receiver();
        let now = Utc::now().timestamp();
        let batch: EventBatch = [at(now, "java.lang.RuntimeException"), at(now, "fine"), at(now, "Traceback")]
            .into_iter()
            .map(|event| event.with_finalizer(EventFinalizer::new(Arc::clone(&notifier))))
            .collect();
        drop(notifier);
        input_sender.send(batch).await.unwrap();
        assert_eq!(status.await, BatchStatus::Delivered, "consumed events are acknowledged");
        drop(input_sender);
        task.await.unwrap().unwrap();
        let aggregated = output.recv().await.expect("the pending aggregation is sent at the end");
        assert_eq!(aggregated.len(), 1);
        let fields = aggregated[0].fields();
        assert!(
            matches!(fields.get("aggregated_matches"), Some(Value::Array(bodies)) if bodies.len() == 2),
            "{fields:?}"
        );
        assert!(output.recv().await.is_none());
    }
}
