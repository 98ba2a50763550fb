//! Rule loading: ElastAlert rule files (YAML) and the same keys from TOML,
//! into one raw `RuleConfig`, then validated into a `RuleDefinition`.
//!
//! Raw first, validated second: `RuleConfig` is a plain serde struct, so an
//! inline `[[transforms.ID.rule]]` TOML table and a YAML rule file
//! deserialise into the same type. `RuleDefinition::from_config` checks it
//! against what each rule type requires and what pipe supports.
//!
//! Key policy (every key of a rule lands in exactly one class):
//! - supported: used with ElastAlert's meaning (see `RuleConfig`);
//! - Elasticsearch connection and daemon keys (`es_host`, `index`,
//!   `writeback_index`, ...): accepted, ignored, one info line per rule;
//! - options of a known alerter listed in `alert:` (`slack_webhook_url`, ...):
//!   accepted, ignored, with an info line saying to route alerts to a sink;
//! - ElastAlert features pipe does not run (Python expressions, enhancements,
//!   Jinja, scripts, `bucket_interval`): a load error naming the origin, the
//!   key and what to use instead;
//! - anything else: a load error with the closest known key.
//!
//! `alert:` naming a Python class (`module.Class`) is an error pointing at
//! pipe's `wecom` sink. Durations take ElastAlert's `{minutes: 1}` form or
//! pipe's `"1m"` strings. YAML files support `import` (merged depth-first,
//! the importing file wins, filters concatenated) and `!file` list entries.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map as JsonMap, Value as Json};

use crate::rules::fields::QueryKey;
use crate::rules::time::{PrettyTime, TimestampType};

/// Used when neither the rule nor the defaults set `run_every`.
pub const DEFAULT_RUN_EVERY: Duration = Duration::from_secs(60);
/// Used when neither the rule nor the defaults set `buffer_time`
/// (`elastalert-test-rule`'s built-in default).
pub const DEFAULT_BUFFER_TIME: Duration = Duration::from_secs(45 * 60);
/// Per-rule cap on tracked partition keys (and new_term terms).
pub const DEFAULT_MAX_TRACKED_KEYS: usize = 100_000;
/// ElastAlert's default `realert`.
pub const DEFAULT_REALERT: Duration = Duration::from_secs(60);

/// A rule as written: every ElastAlert key pipe understands, all optional.
/// Unknown keys are collected in `other` and classified by validation.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuleConfig {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub rule_type: Option<String>,
    pub description: Option<String>,
    pub owner: Option<String>,
    pub category: Option<String>,
    pub priority: Option<Json>,
    pub is_enabled: Option<bool>,
    /// ES query DSL clauses, ANDed; compiled by `crate::query`.
    pub filter: Option<Vec<Json>>,
    pub timestamp_field: Option<String>,
    pub timestamp_type: Option<String>,
    pub timestamp_format: Option<String>,
    pub query_key: Option<OneOrMany<String>>,
    pub buffer_time: Option<DurationSetting>,
    pub query_delay: Option<DurationSetting>,
    pub run_every: Option<DurationSetting>,
    pub timeframe: Option<DurationSetting>,
    pub include: Option<Vec<String>>,
    /// An alerter name, or a list of names / `{name: {options}}` maps.
    pub alert: Option<Json>,

    pub realert: Option<DurationSetting>,
    pub realert_key: Option<String>,
    pub exponential_realert: Option<DurationSetting>,
    pub aggregation: Option<AggregationSetting>,
    pub aggregation_key: Option<OneOrMany<String>>,
    pub aggregate_by_match_time: Option<bool>,
    pub aggregation_alert_time_compared_with_timestamp_field: Option<bool>,
    pub summary_table_fields: Option<OneOrMany<String>>,
    pub summary_table_type: Option<String>,
    pub summary_table_max_rows: Option<usize>,
    pub summary_prefix: Option<String>,
    pub summary_suffix: Option<String>,

    pub alert_subject: Option<String>,
    pub alert_subject_args: Option<Vec<String>>,
    pub alert_subject_max_len: Option<usize>,
    pub alert_text: Option<String>,
    pub alert_text_args: Option<Vec<String>>,
    pub alert_text_kw: Option<indexmap::IndexMap<String, String>>,
    pub alert_text_type: Option<String>,
    pub alert_missing_value: Option<String>,
    pub use_local_time: Option<bool>,
    pub custom_pretty_ts_format: Option<String>,
    pub top_count_keys: Option<Vec<String>>,
    pub top_count_number: Option<usize>,
    pub raw_count_keys: Option<bool>,
    pub include_rule_params_in_matches: Option<Vec<String>>,
    pub include_rule_params_in_first_match_only: Option<bool>,

    pub num_events: Option<u64>,
    pub attach_related: Option<bool>,
    pub terms_size: Option<usize>,
    pub spike_height: Option<f64>,
    pub spike_type: Option<String>,
    pub threshold_ref: Option<f64>,
    pub threshold_cur: Option<f64>,
    pub alert_on_new_data: Option<bool>,
    pub field_value: Option<String>,
    pub threshold: Option<f64>,
    pub forget_keys: Option<bool>,
    pub fields: Option<Json>,
    pub terms_window_size: Option<DurationSetting>,
    pub window_step_size: Option<DurationSetting>,
    pub alert_on_missing_field: Option<bool>,
    pub cardinality_field: Option<String>,
    pub max_cardinality: Option<u64>,
    pub min_cardinality: Option<u64>,
    pub metric_agg_key: Option<String>,
    pub metric_agg_type: Option<String>,
    pub max_threshold: Option<f64>,
    pub min_threshold: Option<f64>,
    pub percentile_range: Option<f64>,
    pub min_doc_count: Option<u64>,
    pub use_run_every_query_size: Option<bool>,
    pub metric_format_string: Option<String>,
    pub match_bucket_filter: Option<Vec<Json>>,
    pub min_percentage: Option<f64>,
    pub max_percentage: Option<f64>,
    pub percentage_format_string: Option<String>,
    pub min_denominator: Option<u64>,
    pub compare_key: Option<OneOrMany<String>>,
    pub ignore_null: Option<bool>,
    pub blacklist: Option<Vec<Json>>,
    pub whitelist: Option<Vec<Json>>,

    /// pipe: cap on tracked keys for this rule (default 100 000).
    pub max_tracked_keys: Option<usize>,
    /// pipe: fields the original Elasticsearch mapping indexed as `keyword`
    /// (exact, case-sensitive matching in `filter`).
    pub keyword_fields: Option<Vec<String>>,
    /// pipe: new_term learns terms without alerting for this long after the
    /// rule starts (upstream pre-loads terms from Elasticsearch instead).
    pub terms_warmup: Option<DurationSetting>,

    /// Every key not listed above, classified during validation.
    #[serde(flatten)]
    pub other: BTreeMap<String, Json>,

    /// Where the rule came from, for error messages (`rule file "x.yaml"`,
    /// `transforms.alerts.rule[0]`). Set by the loader.
    #[serde(skip)]
    pub origin: String,
    /// Directory against which relative `!file` paths resolve.
    #[serde(skip)]
    pub base_directory: Option<PathBuf>,
    /// Every option as written (set by `RuleConfig::from_value`), so alert
    /// text prints option values exactly as the file has them (`1`, not
    /// `1.0`).
    #[serde(skip)]
    pub written_options: JsonMap<String, Json>,
}

/// A string or a list of strings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(item) => vec![item.clone()],
            OneOrMany::Many(items) => items.clone(),
        }
    }
}

/// A duration: ElastAlert's `{minutes: 1, seconds: 30}` or pipe's `"90s"` /
/// `"1h30m"` (parsed by `crate::config::units`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DurationSetting(pub Duration);

impl<'de> Deserialize<'de> for DurationSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Json::deserialize(deserializer)?;
        parse_duration(&raw).map(DurationSetting).map_err(serde::de::Error::custom)
    }
}

/// `aggregation`: a duration or `{schedule: "<cron>"}`.
#[derive(Debug, Clone, PartialEq)]
pub enum AggregationSetting {
    Every(Duration),
    Schedule(String),
}

impl<'de> Deserialize<'de> for AggregationSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Json::deserialize(deserializer)?;
        if let Some(schedule) = raw.get("schedule") {
            return match schedule.as_str() {
                Some(expression) => Ok(AggregationSetting::Schedule(expression.to_owned())),
                None => Err(serde::de::Error::custom("aggregation.schedule must be a cron expression string")),
            };
        }
        parse_duration(&raw).map(AggregationSetting::Every).map_err(serde::de::Error::custom)
    }
}

const DURATION_UNITS: [(&str, f64); 7] = [
    ("weeks", 604_800.0),
    ("days", 86_400.0),
    ("hours", 3600.0),
    ("minutes", 60.0),
    ("seconds", 1.0),
    ("milliseconds", 0.001),
    ("microseconds", 0.000_001),
];

/// Parses either duration form; the error says which forms are accepted.
pub fn parse_duration(raw: &Json) -> Result<Duration, String> {
    let seconds = match raw {
        Json::Object(map) => {
            let mut total = 0.0;
            for (unit, amount) in map {
                let factor =
                    DURATION_UNITS.iter().find(|(name, _)| name == unit).map(|(_, factor)| *factor).ok_or_else(
                        || {
                            format!(
                            "unknown duration unit {unit:?}; use weeks, days, hours, minutes, seconds or milliseconds"
                        )
                        },
                    )?;
                let amount = amount.as_f64().ok_or_else(|| format!("duration unit {unit:?} needs a number"))?;
                total += amount * factor;
            }
            total
        }
        Json::String(text) => {
            crate::config::units::parse_duration(text).map_err(|error| error.to_string())?.as_secs_f64()
        }
        other => return Err(format!("expected a duration like {{minutes: 5}} or \"5m\", found {other}")),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("duration must not be negative, found {raw}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A rule that failed to load. Messages name where the rule came from, the
/// key, and the fix.
#[derive(Debug, thiserror::Error)]
pub enum RuleLoadError {
    #[error("cannot read {origin}: {source}")]
    Read { origin: String, source: std::io::Error },
    #[error("{origin} is not valid YAML: {message}")]
    Yaml { origin: String, message: String },
    #[error("{origin}: {message}")]
    Invalid { origin: String, key: String, message: String },
}

impl RuleLoadError {
    fn invalid(origin: &str, key: &str, message: impl Into<String>) -> RuleLoadError {
        RuleLoadError::Invalid { origin: origin.to_owned(), key: key.to_owned(), message: message.into() }
    }

    /// The offending key, when the error is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            RuleLoadError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

impl RuleConfig {
    /// Deserialises a rule from a JSON-shaped value (TOML tables convert to
    /// it losslessly), filling keys the rule does not set from `defaults`
    /// (ElastAlert copies every global config key into each rule).
    pub fn from_value(
        value: Json,
        defaults: Option<&JsonMap<String, Json>>,
        origin: &str,
    ) -> Result<RuleConfig, RuleLoadError> {
        let Json::Object(mut map) = value else {
            return Err(RuleLoadError::invalid(origin, "", "a rule must be a table/mapping of options"));
        };
        if let Some(defaults) = defaults {
            for (key, default) in defaults {
                if !map.contains_key(key) {
                    map.insert(key.clone(), default.clone());
                }
            }
        }
        let written_options = map.clone();
        let mut config: RuleConfig = serde_json::from_value(Json::Object(map))
            .map_err(|error| RuleLoadError::invalid(origin, "", format!("{error}")))?;
        config.origin = origin.to_owned();
        config.written_options = written_options;
        Ok(config)
    }
}

/// Reads an ElastAlert rule file (YAML), following `import`, and names the
/// rule after the file (path without extension) when it has no `name`.
pub fn load_rule_file(path: &Path, defaults: Option<&JsonMap<String, Json>>) -> Result<RuleConfig, RuleLoadError> {
    let origin = format!("rule file {:?}", path.display().to_string());
    let mut seen_imports = HashSet::new();
    let base_directory = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut map = read_yaml_with_imports(path, &base_directory, &origin, &mut seen_imports)?;
    if !map.contains_key("name") {
        let name = path.with_extension("").display().to_string();
        map.insert("name".to_owned(), Json::String(name));
    }
    let mut config = RuleConfig::from_value(Json::Object(map), defaults, &origin)?;
    config.base_directory = Some(base_directory);
    Ok(config)
}

/// Parses rule YAML text (no imports), for tests and inline use.
pub fn parse_rule_yaml(text: &str, origin: &str) -> Result<RuleConfig, RuleLoadError> {
    let map = yaml_text_to_map(text, origin)?;
    RuleConfig::from_value(Json::Object(map), None, origin)
}

/// Reads an ElastAlert global `config.yaml` into the defaults map that
/// `load_rule_file` and `RuleConfig::from_value` apply to every rule.
pub fn load_global_config(path: &Path) -> Result<JsonMap<String, Json>, RuleLoadError> {
    let origin = format!("config file {:?}", path.display().to_string());
    let text =
        std::fs::read_to_string(path).map_err(|source| RuleLoadError::Read { origin: origin.clone(), source })?;
    yaml_text_to_map(&text, &origin)
}

fn yaml_text_to_map(text: &str, origin: &str) -> Result<JsonMap<String, Json>, RuleLoadError> {
    let mut yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)
        .map_err(|error| RuleLoadError::Yaml { origin: origin.to_owned(), message: error.to_string() })?;
    yaml.apply_merge()
        .map_err(|error| RuleLoadError::Yaml { origin: origin.to_owned(), message: error.to_string() })?;
    match yaml_to_json(yaml, origin)? {
        Json::Object(map) => Ok(map),
        Json::Null => Ok(JsonMap::new()),
        _ => Err(RuleLoadError::invalid(origin, "", "the file must hold a mapping of rule options")),
    }
}

/// YAML to JSON, keeping `!file path` tags as the string `"!file path"`
/// (some rule files write the tag unquoted).
fn yaml_to_json(yaml: serde_yaml_ng::Value, origin: &str) -> Result<Json, RuleLoadError> {
    use serde_yaml_ng::Value as Yaml;
    Ok(match yaml {
        Yaml::Null => Json::Null,
        Yaml::Bool(flag) => Json::Bool(flag),
        Yaml::Number(number) => {
            if let Some(integer) = number.as_i64() {
                Json::from(integer)
            } else if let Some(unsigned) = number.as_u64() {
                Json::from(unsigned)
            } else {
                number.as_f64().and_then(serde_json::Number::from_f64).map_or(Json::Null, Json::Number)
            }
        }
        Yaml::String(text) => Json::String(text),
        Yaml::Sequence(items) => {
            Json::Array(items.into_iter().map(|item| yaml_to_json(item, origin)).collect::<Result<_, _>>()?)
        }
        Yaml::Mapping(mapping) => {
            let mut map = JsonMap::new();
            for (key, value) in mapping {
                let key = match key {
                    Yaml::String(text) => text,
                    Yaml::Number(number) => number.to_string(),
                    Yaml::Bool(flag) => flag.to_string(),
                    other => {
                        return Err(RuleLoadError::invalid(
                            origin,
                            "",
                            format!("mapping keys must be strings, found {other:?}"),
                        ))
                    }
                };
                map.insert(key, yaml_to_json(value, origin)?);
            }
            Json::Object(map)
        }
        Yaml::Tagged(tagged) => {
            let inner = yaml_to_json(tagged.value, origin)?;
            match inner {
                Json::String(text) => Json::String(format!("{} {}", tagged.tag, text)),
                other => other,
            }
        }
    })
}

fn read_yaml_with_imports(
    path: &Path,
    base_directory: &Path,
    origin: &str,
    seen_imports: &mut HashSet<PathBuf>,
) -> Result<JsonMap<String, Json>, RuleLoadError> {
    let this_origin = format!("rule file {:?}", path.display().to_string());
    let text =
        std::fs::read_to_string(path).map_err(|source| RuleLoadError::Read { origin: this_origin.clone(), source })?;
    let mut map = yaml_text_to_map(&text, &this_origin)?;
    let Some(imports) = map.remove("import") else {
        return Ok(map);
    };
    let import_paths: Vec<String> = match imports {
        Json::String(single) => vec![single],
        Json::Array(items) => items.into_iter().filter_map(|item| item.as_str().map(str::to_owned)).collect(),
        _ => {
            return Err(RuleLoadError::invalid(origin, "import", "import must be a file path or a list of file paths"))
        }
    };
    // Later imports beat earlier ones; the importing file beats all imports.
    let mut merged_imports = JsonMap::new();
    let mut imported_filters = Vec::new();
    for import in import_paths {
        let import_path =
            if Path::new(&import).is_absolute() { PathBuf::from(&import) } else { base_directory.join(&import) };
        if !seen_imports.insert(import_path.clone()) {
            return Err(RuleLoadError::invalid(
                origin,
                "import",
                format!("{import:?} is imported twice or imports itself; remove the cycle"),
            ));
        }
        let mut imported = read_yaml_with_imports(&import_path, base_directory, origin, seen_imports)?;
        if let Some(Json::Array(filters)) = imported.remove("filter") {
            imported_filters.extend(filters);
        }
        for (key, value) in imported {
            merged_imports.insert(key, value);
        }
    }
    for (key, value) in merged_imports {
        map.entry(key).or_insert(value);
    }
    if !imported_filters.is_empty() {
        let own_filters = match map.remove("filter") {
            Some(Json::Array(filters)) => filters,
            _ => Vec::new(),
        };
        imported_filters.extend(own_filters);
        map.insert("filter".to_owned(), Json::Array(imported_filters));
    }
    Ok(map)
}

/// Rule type with its validated settings.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    Any,
    Blacklist {
        compare_key: String,
        values: ListValues,
    },
    Whitelist {
        compare_key: String,
        values: ListValues,
        ignore_null: bool,
    },
    Change {
        compare_keys: Vec<String>,
        ignore_null: bool,
        timeframe: Option<Duration>,
    },
    Frequency {
        num_events: u64,
        timeframe: Duration,
        attach_related: bool,
    },
    Flatline {
        threshold: f64,
        timeframe: Duration,
        forget_keys: bool,
    },
    Spike(SpikeSettings),
    NewTerm {
        fields: Vec<Vec<String>>,
        alert_on_missing_field: bool,
        terms_warmup: Duration,
    },
    Cardinality {
        timeframe: Duration,
        cardinality_field: String,
        max_cardinality: Option<u64>,
        min_cardinality: Option<u64>,
    },
    MetricAggregation(MetricAggregationSettings),
    PercentageMatch(PercentageMatchSettings),
    SpikeAggregation {
        spike: SpikeSettings,
        metric: MetricSpec,
        min_doc_count: u64,
        terms_size: usize,
        segment: Duration,
    },
}

/// A blacklist/whitelist: text entries, and numeric entries compared with
/// numeric field values (a number never equals a text entry, as upstream).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListValues {
    pub texts: HashSet<String>,
    pub numbers: Vec<f64>,
}

impl ListValues {
    pub fn contains(&self, value: &crate::event::Value) -> bool {
        match value {
            crate::event::Value::String(text) => self.texts.contains(text.as_str()),
            crate::event::Value::Integer(number) => self.numbers.contains(&(*number as f64)),
            crate::event::Value::Float(number) => self.numbers.contains(number),
            _ => false,
        }
    }
}

impl RuleKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            RuleKind::Any => "any",
            RuleKind::Blacklist { .. } => "blacklist",
            RuleKind::Whitelist { .. } => "whitelist",
            RuleKind::Change { .. } => "change",
            RuleKind::Frequency { .. } => "frequency",
            RuleKind::Flatline { .. } => "flatline",
            RuleKind::Spike(_) => "spike",
            RuleKind::NewTerm { .. } => "new_term",
            RuleKind::Cardinality { .. } => "cardinality",
            RuleKind::MetricAggregation(_) => "metric_aggregation",
            RuleKind::PercentageMatch(_) => "percentage_match",
            RuleKind::SpikeAggregation { .. } => "spike_aggregation",
        }
    }
}

/// The rule types pipe runs.
pub const SUPPORTED_RULE_TYPES: [&str; 12] = [
    "any",
    "blacklist",
    "whitelist",
    "change",
    "frequency",
    "spike",
    "flatline",
    "new_term",
    "cardinality",
    "metric_aggregation",
    "percentage_match",
    "spike_aggregation",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpikeDirection {
    Up,
    Down,
    Both,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpikeSettings {
    pub timeframe: Duration,
    pub spike_height: f64,
    pub spike_type: SpikeDirection,
    pub threshold_ref: Option<f64>,
    pub threshold_cur: Option<f64>,
    pub alert_on_new_data: bool,
    pub field_value: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricAggregationType {
    Min,
    Max,
    Avg,
    Sum,
    Cardinality,
    ValueCount,
    Percentiles,
}

impl MetricAggregationType {
    pub fn name(self) -> &'static str {
        match self {
            MetricAggregationType::Min => "min",
            MetricAggregationType::Max => "max",
            MetricAggregationType::Avg => "avg",
            MetricAggregationType::Sum => "sum",
            MetricAggregationType::Cardinality => "cardinality",
            MetricAggregationType::ValueCount => "value_count",
            MetricAggregationType::Percentiles => "percentiles",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricSpec {
    pub key: String,
    pub aggregation: MetricAggregationType,
    pub percentile: Option<f64>,
}

impl MetricSpec {
    /// `metric_<key>_<type>`, the field upstream reports the value under.
    pub fn field_name(&self) -> String {
        format!("metric_{}_{}", self.key, self.aggregation.name())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricAggregationSettings {
    pub metric: MetricSpec,
    pub max_threshold: Option<f64>,
    pub min_threshold: Option<f64>,
    pub min_doc_count: u64,
    pub terms_size: usize,
    /// The span each evaluation covers: `buffer_time`, or `run_every` with
    /// `use_run_every_query_size`.
    pub segment: Duration,
    pub format_string: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PercentageMatchSettings {
    pub match_bucket_filter: Vec<Json>,
    pub min_percentage: Option<f64>,
    pub max_percentage: Option<f64>,
    pub min_denominator: u64,
    pub terms_size: usize,
    pub segment: Duration,
    pub format_string: Option<String>,
}

/// When an aggregated alert is sent.
#[derive(Debug, Clone, PartialEq)]
pub enum AggregationWindow {
    Every(Duration),
    Schedule { expression: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertTextType {
    Default,
    AlertTextOnly,
    ExcludeFields,
    AggregationSummaryOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryTableType {
    Ascii,
    Markdown,
}

/// Alert-side settings: silencing, aggregation, and text.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSettings {
    pub realert: Duration,
    pub realert_key: String,
    pub exponential_realert: Option<Duration>,
    pub aggregation: Option<AggregationWindow>,
    pub aggregation_key: Option<QueryKey>,
    pub aggregate_by_match_time: bool,
    pub aggregation_compared_with_match_time: bool,
    pub summary_table_fields: Option<Vec<String>>,
    pub summary_table_type: SummaryTableType,
    pub summary_table_max_rows: Option<usize>,
    pub summary_prefix: String,
    pub summary_suffix: String,
    pub alert_subject: Option<String>,
    pub alert_subject_args: Vec<String>,
    pub alert_subject_max_len: usize,
    pub alert_text: Option<String>,
    pub alert_text_args: Option<Vec<String>>,
    pub alert_text_kw: Option<Vec<(String, String)>>,
    pub alert_text_type: AlertTextType,
    pub alert_missing_value: String,
    pub pretty_time: PrettyTime,
    pub top_count_keys: Vec<String>,
    pub top_count_number: usize,
    pub include_rule_params: Vec<String>,
    pub include_rule_params_in_first_match_only: bool,
}

/// A validated rule: everything the engine and the alerter need.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleDefinition {
    pub name: String,
    pub origin: String,
    /// `is_enabled` (default true); the engine skips disabled rules.
    pub enabled: bool,
    pub kind: RuleKind,
    /// Raw filter clauses (applied through `crate::rules::filter`).
    pub filter: Vec<Json>,
    pub timestamp_field: String,
    pub timestamp_type: TimestampType,
    pub query_key: Option<QueryKey>,
    pub run_every: Duration,
    pub buffer_time: Duration,
    pub query_delay: Duration,
    /// `_source` includes: when set (and not `*`), match bodies keep only
    /// these paths plus the always-included ones.
    pub include: Option<Vec<String>>,
    pub max_tracked_keys: usize,
    /// Passed to `crate::query` for `filter` and `match_bucket_filter`.
    pub keyword_fields: Vec<String>,
    pub alerting: AlertSettings,
    /// The rule's options as written, for `alert_text_args` fallbacks and
    /// `include_rule_params_in_matches`.
    pub options: JsonMap<String, Json>,
}

/// Keys accepted and ignored because they configure Elasticsearch access or
/// the ElastAlert daemon, which pipe replaces with its sources and topology.
const IGNORED_DAEMON_KEYS: &[&str] = &[
    "es_host",
    "es_port",
    "es_hosts",
    "es_username",
    "es_password",
    "es_api_key",
    "es_bearer",
    "es_url_prefix",
    "es_send_get_body_as",
    "es_conn_timeout",
    "es_debug",
    "es_debug_trace",
    "use_ssl",
    "verify_certs",
    "ca_certs",
    "client_cert",
    "client_key",
    "ssl_show_warn",
    "aws_region",
    "profile",
    "boto_profile",
    "index",
    "doc_type",
    "use_strftime_index",
    "search_extra_index",
    "writeback_index",
    "writeback_alias",
    "rules_folder",
    "rules_loader",
    "scan_subdirectories",
    "max_query_size",
    "max_scrolling_count",
    "scroll_keepalive",
    "max_threads",
    "misfire_grace_time",
    "alert_time_limit",
    "old_query_limit",
    "disable_rules_on_error",
    "notify_email",
    "notify_alert",
    "notify_all_errors",
    "max_aggregation",
    "add_metadata_alert",
    "replace_dots_in_field_names",
    "string_multi_field_name",
    "include_fields",
    "_source_enabled",
    "filter_by_list",
    "use_keyword_postfix",
    "use_count_query",
    "use_terms_query",
    "query_timezone",
    "scan_entire_timeframe",
    "allow_buffer_time_overlap",
    "generate_kibana_link",
    "generate_kibana_discover_url",
    "kibana_url",
    "kibana_username",
    "kibana_password",
    "kibana_discover_app_url",
    "kibana_discover_version",
    "kibana_discover_index_pattern_id",
    "kibana_discover_columns",
    "kibana_discover_from_timedelta",
    "kibana_discover_to_timedelta",
    "kibana_discover_security_tenant",
    "shorten_kibana_discover_url",
    "kibana4_start_timedelta",
    "kibana4_end_timedelta",
    "use_kibana4_dashboard",
    "use_kibana_dashboard",
    "use_local_time_for_query",
    "opensearch_discover_app_url",
    "opensearch_discover_version",
    "opensearch_discover_index_pattern_id",
    "opensearch_discover_columns",
    "opensearch_discover_from_timedelta",
    "opensearch_discover_to_timedelta",
    "jinja_root_name",
    "skip_invalid",
    "prometheus_port",
    "prometheus_addr",
    "show_ssl_warn",
    "rule_file",
    "smtp_host",
    "smtp_port",
    "smtp_ssl",
    "smtp_auth_file",
    "smtp_cert_file",
    "smtp_key_file",
    "from_addr",
    "email_reply_to",
    "limit_execution_coverage",
];

/// ElastAlert features pipe cannot run, with what to do instead.
const UNSUPPORTED_KEYS: &[(&str, &str)] = &[
    ("timestamp_to_datetime_format_expr", "Python expressions are not evaluated; normalise the timestamp field before the rules transform, or use timestamp_type: custom with timestamp_format"),
    ("timestamp_format_expr", "Python expressions are not evaluated; use timestamp_type: custom with timestamp_format"),
    ("match_enhancements", "Python enhancements cannot run in pipe; reshape events with a transform before or after the rules transform"),
    ("run_enhancements_first", "Python enhancements cannot run in pipe; remove it"),
    ("limit_execution", "rules run continuously in pipe; route alerts through a transform that drops them outside the allowed hours"),
    ("metric_agg_script", "scripts are not evaluated; aggregate a field with metric_agg_key (derive it with a transform first)"),
    ("bucket_interval", "pipe evaluates one bucket per run; set use_run_every_query_size: true and run_every to the bucket size"),
    ("sync_bucket_interval", "pipe evaluates one bucket per run; set use_run_every_query_size: true and run_every to the bucket size"),
    ("jinja_template_path", "Jinja templates are not supported; use alert_text with alert_text_args or alert_text_kw"),
    ("custom_rule_type", "custom Python rule types cannot run in pipe; use one of the built-in types"),
];

/// Alerter names ElastAlert 2 ships, mapped to the option prefixes each uses.
const KNOWN_ALERTERS: &[(&str, &[&str])] = &[
    ("alerta", &["alerta_"]),
    ("alertmanager", &["alertmanager_"]),
    ("chatwork", &["chatwork_"]),
    ("command", &["command", "pipe_match_json", "pipe_alert_text", "fail_on_non_zero_exit"]),
    ("datadog", &["datadog_"]),
    ("debug", &[]),
    ("dingtalk", &["dingtalk_"]),
    ("discord", &["discord_"]),
    ("email", &["email", "smtp_", "from_addr", "reply_to", "cc", "bcc", "assets_dir", "img_"]),
    ("exotel", &["exotel_"]),
    ("flashduty", &["flashduty_"]),
    ("gelf", &["gelf_"]),
    ("gitter", &["gitter_"]),
    ("googlechat", &["googlechat_"]),
    ("hivealerter", &["hive_"]),
    ("http_post", &["http_post_"]),
    ("http_post2", &["http_post2_"]),
    ("iris", &["iris_"]),
    ("jira", &["jira_"]),
    ("lark", &["lark_"]),
    ("linenotify", &["linenotify_"]),
    ("matrixhookshot", &["matrixhookshot_"]),
    ("mattermost", &["mattermost_"]),
    ("ms_teams", &["ms_teams_"]),
    ("ms_power_automate", &["ms_power_automate_"]),
    ("opsgenie", &["opsgenie_"]),
    ("pagerduty", &["pagerduty_"]),
    ("pagertree", &["pagertree_"]),
    ("post", &["http_post_"]),
    ("post2", &["http_post2_"]),
    ("rocketchat", &["rocket_chat_"]),
    (
        "servicenow",
        &[
            "servicenow_",
            "username",
            "password",
            "short_description",
            "comments",
            "assignment_group",
            "subcategory",
            "cmdb_ci",
            "caller_id",
        ],
    ),
    ("ses", &["ses_"]),
    ("slack", &["slack_"]),
    ("smseagle", &["smseagle_"]),
    ("sns", &["sns_"]),
    ("stomp", &["stomp_"]),
    ("telegram", &["telegram_"]),
    ("tencent_sms", &["tencent_sms_"]),
    ("twilio", &["twilio_"]),
    ("victorops", &["victorops_"]),
    ("webex_webhook", &["webex_webhook_"]),
    ("workwechat", &["work_wechat_"]),
    ("yzj", &["yzj_"]),
    ("zabbix", &["zbx_"]),
];

/// Every key `RuleConfig` names, for "did you mean" hints.
const SUPPORTED_KEYS: &[&str] = &[
    "name",
    "type",
    "description",
    "owner",
    "category",
    "priority",
    "is_enabled",
    "filter",
    "timestamp_field",
    "timestamp_type",
    "timestamp_format",
    "query_key",
    "buffer_time",
    "query_delay",
    "run_every",
    "timeframe",
    "include",
    "alert",
    "realert",
    "realert_key",
    "exponential_realert",
    "aggregation",
    "aggregation_key",
    "aggregate_by_match_time",
    "aggregation_alert_time_compared_with_timestamp_field",
    "summary_table_fields",
    "summary_table_type",
    "summary_table_max_rows",
    "summary_prefix",
    "summary_suffix",
    "alert_subject",
    "alert_subject_args",
    "alert_subject_max_len",
    "alert_text",
    "alert_text_args",
    "alert_text_kw",
    "alert_text_type",
    "alert_missing_value",
    "use_local_time",
    "custom_pretty_ts_format",
    "top_count_keys",
    "top_count_number",
    "raw_count_keys",
    "include_rule_params_in_matches",
    "include_rule_params_in_first_match_only",
    "num_events",
    "attach_related",
    "terms_size",
    "spike_height",
    "spike_type",
    "threshold_ref",
    "threshold_cur",
    "alert_on_new_data",
    "field_value",
    "threshold",
    "forget_keys",
    "fields",
    "terms_window_size",
    "window_step_size",
    "alert_on_missing_field",
    "cardinality_field",
    "max_cardinality",
    "min_cardinality",
    "metric_agg_key",
    "metric_agg_type",
    "max_threshold",
    "min_threshold",
    "percentile_range",
    "min_doc_count",
    "use_run_every_query_size",
    "metric_format_string",
    "match_bucket_filter",
    "min_percentage",
    "max_percentage",
    "percentage_format_string",
    "min_denominator",
    "compare_key",
    "ignore_null",
    "blacklist",
    "whitelist",
    "max_tracked_keys",
    "terms_warmup",
    "keyword_fields",
];

impl RuleDefinition {
    /// Validates a raw rule. Logs one info line per class of ignored keys.
    pub fn from_config(config: RuleConfig) -> Result<RuleDefinition, RuleLoadError> {
        let origin = if config.origin.is_empty() { "rule".to_owned() } else { config.origin.clone() };
        let origin = origin.as_str();
        let name = config.name.clone().ok_or_else(|| {
            RuleLoadError::invalid(origin, "name", "\"name\" is required; give the rule a unique name")
        })?;
        let alerters = validate_alerters(&config, origin)?;
        classify_other_keys(&config, origin, &name, &alerters)?;

        let required_duration = |value: Option<DurationSetting>, key: &str, type_name: &str| {
            value.map(|setting| setting.0).ok_or_else(|| {
                RuleLoadError::invalid(
                    origin,
                    key,
                    format!("type {type_name} requires \"{key}\"; set it, e.g. {key}: {{minutes: 5}}"),
                )
            })
        };
        let required = |present: bool, key: &str, type_name: &str, example: &str| {
            if present {
                Ok(())
            } else {
                Err(RuleLoadError::invalid(
                    origin,
                    key,
                    format!("type {type_name} requires \"{key}\"; set it, e.g. {key}: {example}"),
                ))
            }
        };

        let run_every = config.run_every.map_or(DEFAULT_RUN_EVERY, |setting| setting.0);
        if run_every.is_zero() {
            return Err(RuleLoadError::invalid(origin, "run_every", "run_every must be above zero"));
        }
        let buffer_time = config.buffer_time.map_or(DEFAULT_BUFFER_TIME, |setting| setting.0);
        let use_run_every_query_size = config.use_run_every_query_size.unwrap_or(false);
        let segment = if use_run_every_query_size { run_every } else { buffer_time };
        let terms_size = config.terms_size.unwrap_or(50);
        let min_doc_count = config.min_doc_count.unwrap_or(1);

        let rule_type = config.rule_type.clone().ok_or_else(|| {
            RuleLoadError::invalid(
                origin,
                "type",
                format!("\"type\" is required; use one of {}", SUPPORTED_RULE_TYPES.join(", ")),
            )
        })?;
        let query_key_fields = config.query_key.as_ref().map(OneOrMany::to_vec).unwrap_or_default();
        let query_key = QueryKey::from_fields(query_key_fields);

        let spike_settings = |type_name: &str| -> Result<SpikeSettings, RuleLoadError> {
            let timeframe = required_duration(config.timeframe, "timeframe", type_name)?;
            let spike_height = config.spike_height.ok_or_else(|| {
                RuleLoadError::invalid(
                    origin,
                    "spike_height",
                    format!("type {type_name} requires \"spike_height\", e.g. spike_height: 3"),
                )
            })?;
            if spike_height <= 0.0 {
                return Err(RuleLoadError::invalid(origin, "spike_height", "spike_height must be above 0"));
            }
            let spike_type = match config.spike_type.as_deref() {
                Some("up") => SpikeDirection::Up,
                Some("down") => SpikeDirection::Down,
                Some("both") => SpikeDirection::Both,
                Some(other) => {
                    return Err(RuleLoadError::invalid(
                        origin,
                        "spike_type",
                        format!("spike_type {other:?} is not one of up, down, both"),
                    ))
                }
                None => {
                    return Err(RuleLoadError::invalid(
                        origin,
                        "spike_type",
                        format!("type {type_name} requires \"spike_type\": up, down or both"),
                    ))
                }
            };
            Ok(SpikeSettings {
                timeframe,
                spike_height,
                spike_type,
                threshold_ref: config.threshold_ref,
                threshold_cur: config.threshold_cur,
                alert_on_new_data: config.alert_on_new_data.unwrap_or(false),
                field_value: config.field_value.clone(),
            })
        };
        let metric_spec = |type_name: &str| -> Result<MetricSpec, RuleLoadError> {
            let key = config.metric_agg_key.clone().ok_or_else(|| {
                RuleLoadError::invalid(
                    origin,
                    "metric_agg_key",
                    format!("type {type_name} requires \"metric_agg_key\" (the field to aggregate)"),
                )
            })?;
            let aggregation = match config.metric_agg_type.as_deref() {
                Some("min") => MetricAggregationType::Min,
                Some("max") => MetricAggregationType::Max,
                Some("avg") => MetricAggregationType::Avg,
                Some("sum") => MetricAggregationType::Sum,
                Some("cardinality") => MetricAggregationType::Cardinality,
                Some("value_count") => MetricAggregationType::ValueCount,
                Some("percentiles") => MetricAggregationType::Percentiles,
                other => {
                    return Err(RuleLoadError::invalid(
                        origin,
                        "metric_agg_type",
                        format!("metric_agg_type {other:?} is not one of min, max, avg, sum, cardinality, value_count, percentiles"),
                    ))
                }
            };
            if aggregation == MetricAggregationType::Percentiles && config.percentile_range.is_none() {
                return Err(RuleLoadError::invalid(
                    origin,
                    "percentile_range",
                    "metric_agg_type percentiles requires \"percentile_range\", e.g. percentile_range: 95",
                ));
            }
            Ok(MetricSpec { key, aggregation, percentile: config.percentile_range })
        };

        let kind = match rule_type.as_str() {
            "any" => RuleKind::Any,
            "blacklist" | "whitelist" => {
                let compare_key = config.compare_key.as_ref().map(|keys| keys.to_vec().join(",")).ok_or_else(|| {
                    RuleLoadError::invalid(
                        origin,
                        "compare_key",
                        format!("type {rule_type} requires \"compare_key\" (the field to check)"),
                    )
                })?;
                let list_key = rule_type.as_str();
                let entries = if rule_type == "blacklist" { &config.blacklist } else { &config.whitelist };
                let entries = entries.as_ref().ok_or_else(|| {
                    RuleLoadError::invalid(
                        origin,
                        list_key,
                        format!(
                            "type {rule_type} requires \"{list_key}\" (a list of values or \"!file <path>\" entries)"
                        ),
                    )
                })?;
                let values = expand_list(entries, config.base_directory.as_deref(), origin, list_key)?;
                if rule_type == "blacklist" {
                    RuleKind::Blacklist { compare_key, values }
                } else {
                    let ignore_null = config.ignore_null.ok_or_else(|| {
                        RuleLoadError::invalid(
                            origin,
                            "ignore_null",
                            "type whitelist requires \"ignore_null\" (true or false)",
                        )
                    })?;
                    RuleKind::Whitelist { compare_key, values, ignore_null }
                }
            }
            "change" => {
                let compare_keys =
                    config.compare_key.as_ref().map(OneOrMany::to_vec).filter(|keys| !keys.is_empty()).ok_or_else(
                        || {
                            RuleLoadError::invalid(
                                origin,
                                "compare_key",
                                "type change requires \"compare_key\" (field or list of fields)",
                            )
                        },
                    )?;
                let ignore_null = config.ignore_null.ok_or_else(|| {
                    RuleLoadError::invalid(
                        origin,
                        "ignore_null",
                        "type change requires \"ignore_null\" (true or false)",
                    )
                })?;
                required(query_key.is_some(), "query_key", "change", "host")?;
                RuleKind::Change { compare_keys, ignore_null, timeframe: config.timeframe.map(|setting| setting.0) }
            }
            "frequency" => {
                let num_events = config.num_events.ok_or_else(|| {
                    RuleLoadError::invalid(
                        origin,
                        "num_events",
                        "type frequency requires \"num_events\", e.g. num_events: 50",
                    )
                })?;
                RuleKind::Frequency {
                    num_events,
                    timeframe: required_duration(config.timeframe, "timeframe", "frequency")?,
                    attach_related: config.attach_related.unwrap_or(false),
                }
            }
            "flatline" => {
                let threshold = config.threshold.ok_or_else(|| {
                    RuleLoadError::invalid(
                        origin,
                        "threshold",
                        "type flatline requires \"threshold\", e.g. threshold: 1",
                    )
                })?;
                RuleKind::Flatline {
                    threshold,
                    timeframe: required_duration(config.timeframe, "timeframe", "flatline")?,
                    forget_keys: config.forget_keys.unwrap_or(false),
                }
            }
            "spike" => RuleKind::Spike(spike_settings("spike")?),
            "new_term" => {
                let fields = match &config.fields {
                    Some(raw) => parse_new_term_fields(raw, origin)?,
                    None => match &query_key {
                        Some(QueryKey::Single(path)) => vec![vec![path.clone()]],
                        Some(QueryKey::Compound { fields, .. }) => vec![fields.clone()],
                        None => {
                            return Err(RuleLoadError::invalid(
                                origin,
                                "fields",
                                "type new_term requires \"fields\" (or query_key), e.g. fields: [host]",
                            ))
                        }
                    },
                };
                RuleKind::NewTerm {
                    fields,
                    alert_on_missing_field: config.alert_on_missing_field.unwrap_or(false),
                    terms_warmup: config.terms_warmup.map_or(Duration::ZERO, |setting| setting.0),
                }
            }
            "cardinality" => {
                let cardinality_field = config.cardinality_field.clone().ok_or_else(|| {
                    RuleLoadError::invalid(
                        origin,
                        "cardinality_field",
                        "type cardinality requires \"cardinality_field\"",
                    )
                })?;
                if config.max_cardinality.is_none() && config.min_cardinality.is_none() {
                    return Err(RuleLoadError::invalid(
                        origin,
                        "max_cardinality",
                        "type cardinality requires \"max_cardinality\" and/or \"min_cardinality\"",
                    ));
                }
                RuleKind::Cardinality {
                    timeframe: required_duration(config.timeframe, "timeframe", "cardinality")?,
                    cardinality_field,
                    max_cardinality: config.max_cardinality,
                    min_cardinality: config.min_cardinality,
                }
            }
            "metric_aggregation" => {
                if config.max_threshold.is_none() && config.min_threshold.is_none() {
                    return Err(RuleLoadError::invalid(
                        origin,
                        "max_threshold",
                        "type metric_aggregation requires \"max_threshold\" and/or \"min_threshold\"",
                    ));
                }
                let format_string = config.metric_format_string.clone();
                validate_format_string(format_string.as_deref(), origin, "metric_format_string")?;
                RuleKind::MetricAggregation(MetricAggregationSettings {
                    metric: metric_spec("metric_aggregation")?,
                    max_threshold: config.max_threshold,
                    min_threshold: config.min_threshold,
                    min_doc_count,
                    terms_size,
                    segment,
                    format_string,
                })
            }
            "percentage_match" => {
                let match_bucket_filter = config.match_bucket_filter.clone().ok_or_else(|| {
                    RuleLoadError::invalid(
                        origin,
                        "match_bucket_filter",
                        "type percentage_match requires \"match_bucket_filter\" (a filter list)",
                    )
                })?;
                if config.min_percentage.is_none() && config.max_percentage.is_none() {
                    return Err(RuleLoadError::invalid(
                        origin,
                        "max_percentage",
                        "type percentage_match requires \"max_percentage\" and/or \"min_percentage\"",
                    ));
                }
                let format_string = config.percentage_format_string.clone();
                validate_format_string(format_string.as_deref(), origin, "percentage_format_string")?;
                RuleKind::PercentageMatch(PercentageMatchSettings {
                    match_bucket_filter,
                    min_percentage: config.min_percentage,
                    max_percentage: config.max_percentage,
                    min_denominator: config.min_denominator.unwrap_or(0),
                    terms_size,
                    segment,
                    format_string,
                })
            }
            "spike_aggregation" => {
                let spike = spike_settings("spike_aggregation")?;
                RuleKind::SpikeAggregation {
                    spike,
                    metric: metric_spec("spike_aggregation")?,
                    min_doc_count,
                    terms_size,
                    segment,
                }
            }
            other if other.contains('.') => {
                return Err(RuleLoadError::invalid(
                    origin,
                    "type",
                    format!(
                        "type {other:?} is a Python rule class, which pipe cannot load; use one of {}",
                        SUPPORTED_RULE_TYPES.join(", ")
                    ),
                ))
            }
            other => {
                return Err(RuleLoadError::invalid(
                    origin,
                    "type",
                    format!("unknown rule type {other:?}; pipe supports {}", SUPPORTED_RULE_TYPES.join(", ")),
                ))
            }
        };
        if matches!(kind, RuleKind::MetricAggregation(_) | RuleKind::PercentageMatch(_)) && segment.is_zero() {
            return Err(RuleLoadError::invalid(
                origin,
                "buffer_time",
                "buffer_time must be above zero for aggregation rules",
            ));
        }

        let timestamp_type = match config.timestamp_type.as_deref().unwrap_or("iso") {
            "iso" => TimestampType::Iso,
            "unix" => TimestampType::Unix,
            "unix_ms" => TimestampType::UnixMs,
            "custom" => TimestampType::Custom(
                config.timestamp_format.clone().unwrap_or_else(|| "%Y-%m-%dT%H:%M:%SZ".to_owned()),
            ),
            other => {
                return Err(RuleLoadError::invalid(
                    origin,
                    "timestamp_type",
                    format!("timestamp_type {other:?} is not one of iso, unix, unix_ms, custom"),
                ))
            }
        };

        let alerting = alert_settings(&config, origin, &name)?;
        let options: JsonMap<String, Json> = raw_options(&config);
        let include = config.include.clone().filter(|paths| !paths.iter().any(|path| path == "*"));
        Ok(RuleDefinition {
            name,
            origin: origin.to_owned(),
            enabled: config.is_enabled.unwrap_or(true),
            kind,
            filter: config.filter.clone().unwrap_or_default(),
            timestamp_field: config.timestamp_field.clone().unwrap_or_else(|| "@timestamp".to_owned()),
            timestamp_type,
            query_key,
            run_every,
            buffer_time,
            query_delay: config.query_delay.map_or(Duration::ZERO, |setting| setting.0),
            include,
            max_tracked_keys: config.max_tracked_keys.unwrap_or(DEFAULT_MAX_TRACKED_KEYS).max(1),
            keyword_fields: config.keyword_fields.clone().unwrap_or_default(),
            alerting,
            options,
        })
    }

    /// The rule option `name` as written (for `alert_text_args` fallbacks).
    pub fn option(&self, name: &str) -> Option<&Json> {
        self.options.get(name)
    }
}

fn raw_options(config: &RuleConfig) -> JsonMap<String, Json> {
    if !config.written_options.is_empty() {
        return config.written_options.clone();
    }
    let mut options: JsonMap<String, Json> =
        config.other.iter().map(|(key, value)| (key.clone(), value.clone())).collect();
    let mut put = |key: &str, value: Option<Json>| {
        if let Some(value) = value {
            options.insert(key.to_owned(), value);
        }
    };
    put("name", config.name.clone().map(Json::String));
    put("type", config.rule_type.clone().map(Json::String));
    put("description", config.description.clone().map(Json::String));
    put("owner", config.owner.clone().map(Json::String));
    put("category", config.category.clone().map(Json::String));
    put("priority", config.priority.clone());
    put("num_events", config.num_events.map(Json::from));
    put("threshold", config.threshold.map(Json::from));
    put("spike_height", config.spike_height.map(Json::from));
    put("max_threshold", config.max_threshold.map(Json::from));
    put("min_threshold", config.min_threshold.map(Json::from));
    put("compare_key", config.compare_key.as_ref().map(|keys| Json::from(keys.to_vec().join(","))));
    put("cardinality_field", config.cardinality_field.clone().map(Json::String));
    put("metric_agg_key", config.metric_agg_key.clone().map(Json::String));
    put("metric_agg_type", config.metric_agg_type.clone().map(Json::String));
    put("query_key", config.query_key.as_ref().map(|keys| Json::from(keys.to_vec().join(","))));
    options
}

fn validate_alerters(config: &RuleConfig, origin: &str) -> Result<Vec<String>, RuleLoadError> {
    let Some(alert) = &config.alert else {
        return Ok(Vec::new());
    };
    let entries = match alert {
        Json::Array(items) => items.clone(),
        single => vec![single.clone()],
    };
    let mut names = Vec::new();
    for entry in entries {
        let name = match &entry {
            Json::String(name) => name.clone(),
            Json::Object(map) if map.len() == 1 => map.keys().next().cloned().unwrap_or_default(),
            other => {
                return Err(RuleLoadError::invalid(
                    origin,
                    "alert",
                    format!("alert entries are names or {{name: {{options}}}} maps, found {other}"),
                ))
            }
        };
        if name.contains('.') {
            return Err(RuleLoadError::invalid(
                origin,
                "alert",
                format!(
                    "alert {name:?} is a Python alerter class, which pipe cannot load; remove it and route this rule's alert events to a sink: pipe's \"wecom\" sink delivers to WeCom (WeChat Work) robots and application messages"
                ),
            ));
        }
        if !KNOWN_ALERTERS.iter().any(|(known, _)| *known == name) {
            return Err(RuleLoadError::invalid(
                origin,
                "alert",
                format!("unknown alerter {name:?}; pipe does not run alerters: remove \"alert\" and route alert events to a sink (\"wecom\" for WeCom)"),
            ));
        }
        names.push(name);
    }
    if !names.is_empty() {
        tracing::info!(
            rule = config.name.as_deref().unwrap_or(""),
            alerters = ?names,
            "rule alerters are not run by pipe; route the rules transform's alert events to a sink (e.g. wecom)"
        );
    }
    Ok(names)
}

fn classify_other_keys(
    config: &RuleConfig,
    origin: &str,
    name: &str,
    alerters: &[String],
) -> Result<(), RuleLoadError> {
    let mut ignored_daemon = Vec::new();
    let mut ignored_alerter = Vec::new();
    for key in config.other.keys() {
        if IGNORED_DAEMON_KEYS.contains(&key.as_str()) {
            ignored_daemon.push(key.as_str());
            continue;
        }
        if let Some((_, hint)) = UNSUPPORTED_KEYS.iter().find(|(unsupported, _)| unsupported == key) {
            return Err(RuleLoadError::invalid(origin, key, format!("\"{key}\" is not supported: {hint}")));
        }
        let belongs_to_alerter = alerters.iter().any(|alerter| {
            KNOWN_ALERTERS
                .iter()
                .find(|(known, _)| known == alerter)
                .is_some_and(|(_, prefixes)| prefixes.iter().any(|prefix| key.starts_with(prefix)))
        });
        if belongs_to_alerter {
            ignored_alerter.push(key.as_str());
            continue;
        }
        let closest = SUPPORTED_KEYS
            .iter()
            .map(|known| (strsim::jaro_winkler(known, key), *known))
            .filter(|(score, _)| *score > 0.85)
            .max_by(|left, right| left.0.total_cmp(&right.0))
            .map(|(_, known)| format!(" (did you mean \"{known}\"?)"))
            .unwrap_or_default();
        return Err(RuleLoadError::invalid(
            origin,
            key,
            format!("unknown option \"{key}\"{closest}; remove it (alert delivery options belong on a pipe sink, not the rule)"),
        ));
    }
    if !ignored_daemon.is_empty() {
        tracing::info!(rule = name, keys = ?ignored_daemon, "ignoring Elasticsearch connection and daemon options; pipe evaluates the events routed to the rules transform");
    }
    if !ignored_alerter.is_empty() {
        tracing::info!(rule = name, keys = ?ignored_alerter, "ignoring alerter options; route alert events to a sink instead");
    }
    Ok(())
}

fn expand_list(
    entries: &[Json],
    base_directory: Option<&Path>,
    origin: &str,
    key: &str,
) -> Result<ListValues, RuleLoadError> {
    let mut values = ListValues::default();
    for entry in entries {
        let text = match entry {
            Json::String(text) => text.clone(),
            Json::Number(number) => {
                values.numbers.push(number.as_f64().unwrap_or(f64::NAN));
                continue;
            }
            Json::Object(map) if map.len() == 1 && map.contains_key("!file") => {
                format!("!file {}", map["!file"].as_str().unwrap_or_default())
            }
            other => {
                return Err(RuleLoadError::invalid(
                    origin,
                    key,
                    format!("{key} entries must be strings, found {other}"),
                ))
            }
        };
        match text.strip_prefix("!file ") {
            Some(file) => {
                let file = file.trim();
                let path = match base_directory {
                    Some(base) if Path::new(file).is_relative() => base.join(file),
                    _ => PathBuf::from(file),
                };
                let contents = std::fs::read_to_string(&path).map_err(|error| {
                    RuleLoadError::invalid(
                        origin,
                        key,
                        format!("cannot read list file {:?} named by \"!file\": {error}", path.display().to_string()),
                    )
                })?;
                values.texts.extend(contents.lines().map(|line| line.trim_end().to_owned()));
            }
            None => {
                values.texts.insert(text);
            }
        }
    }
    Ok(values)
}

fn parse_new_term_fields(raw: &Json, origin: &str) -> Result<Vec<Vec<String>>, RuleLoadError> {
    let invalid = || {
        RuleLoadError::invalid(
            origin,
            "fields",
            "fields must be a field name, a list of names, or a list holding lists for composite terms",
        )
    };
    match raw {
        Json::String(field) => Ok(vec![vec![field.clone()]]),
        Json::Array(items) => items
            .iter()
            .map(|item| match item {
                Json::String(field) => Ok(vec![field.clone()]),
                Json::Array(parts) => {
                    parts.iter().map(|part| part.as_str().map(str::to_owned).ok_or_else(invalid)).collect()
                }
                _ => Err(invalid()),
            })
            .collect(),
        _ => Err(invalid()),
    }
}

/// Accepts the subset of Python formatting pipe renders: `{:,.2f}`-style
/// (`{` `:` optional `,` optional `.N` `f`/`d` `}`) and `%.Nf`/`%d`.
fn validate_format_string(format: Option<&str>, origin: &str, key: &str) -> Result<(), RuleLoadError> {
    let Some(format) = format else { return Ok(()) };
    if crate::rules::alert::format_number(format, 1.0).is_some() {
        return Ok(());
    }
    Err(RuleLoadError::invalid(
        origin,
        key,
        format!("{key} {format:?} is not supported; use a form like \"{{:,.2f}}\" or \"%.2f\""),
    ))
}

fn alert_settings(config: &RuleConfig, origin: &str, name: &str) -> Result<AlertSettings, RuleLoadError> {
    let aggregation = match &config.aggregation {
        None => None,
        Some(AggregationSetting::Every(duration)) if duration.is_zero() => None,
        Some(AggregationSetting::Every(duration)) => Some(AggregationWindow::Every(*duration)),
        Some(AggregationSetting::Schedule(expression)) => {
            crate::rules::aggregation::parse_schedule(expression).map_err(|message| {
                RuleLoadError::invalid(
                    origin,
                    "aggregation",
                    format!("aggregation schedule {expression:?} is invalid: {message}"),
                )
            })?;
            Some(AggregationWindow::Schedule { expression: expression.clone() })
        }
    };
    let realert = config.realert.map(|setting| setting.0).unwrap_or(if aggregation.is_some() {
        Duration::ZERO
    } else {
        DEFAULT_REALERT
    });
    let alert_text_type = match config.alert_text_type.as_deref() {
        None | Some("alert_text") => AlertTextType::Default,
        Some("alert_text_only") => AlertTextType::AlertTextOnly,
        Some("exclude_fields") => AlertTextType::ExcludeFields,
        Some("aggregation_summary_only") => AlertTextType::AggregationSummaryOnly,
        Some("alert_text_jinja") => return Err(RuleLoadError::invalid(
            origin,
            "alert_text_type",
            "alert_text_jinja is not supported (no Jinja engine); use alert_text with alert_text_args or alert_text_kw",
        )),
        Some(other) => {
            return Err(RuleLoadError::invalid(
                origin,
                "alert_text_type",
                format!(
                    "alert_text_type {other:?} is not one of alert_text_only, exclude_fields, aggregation_summary_only"
                ),
            ))
        }
    };
    let summary_table_type = match config.summary_table_type.as_deref() {
        None | Some("ascii") => SummaryTableType::Ascii,
        Some("markdown") => SummaryTableType::Markdown,
        Some(other) => {
            return Err(RuleLoadError::invalid(
                origin,
                "summary_table_type",
                format!("summary_table_type {other:?} is not supported; use ascii or markdown"),
            ))
        }
    };
    let aggregation_key = config.aggregation_key.as_ref().and_then(|keys| QueryKey::from_fields(keys.to_vec()));
    Ok(AlertSettings {
        realert,
        realert_key: config.realert_key.clone().unwrap_or_else(|| name.to_owned()),
        exponential_realert: config.exponential_realert.map(|setting| setting.0),
        aggregation,
        aggregation_key,
        aggregate_by_match_time: config.aggregate_by_match_time.unwrap_or(false),
        aggregation_compared_with_match_time: config
            .aggregation_alert_time_compared_with_timestamp_field
            .unwrap_or(false),
        summary_table_fields: config.summary_table_fields.as_ref().map(OneOrMany::to_vec),
        summary_table_type,
        summary_table_max_rows: config.summary_table_max_rows,
        summary_prefix: config.summary_prefix.clone().unwrap_or_default(),
        summary_suffix: config.summary_suffix.clone().unwrap_or_default(),
        alert_subject: config.alert_subject.clone(),
        alert_subject_args: config.alert_subject_args.clone().unwrap_or_default(),
        alert_subject_max_len: config.alert_subject_max_len.unwrap_or(2048),
        alert_text: config.alert_text.clone(),
        alert_text_args: config.alert_text_args.clone(),
        alert_text_kw: config
            .alert_text_kw
            .as_ref()
            .map(|map| map.iter().map(|(path, placeholder)| (path.clone(), placeholder.clone())).collect()),
        alert_text_type,
        alert_missing_value: config.alert_missing_value.clone().unwrap_or_else(|| "<MISSING VALUE>".to_owned()),
        pretty_time: PrettyTime {
            use_local_time: config.use_local_time.unwrap_or(true),
            custom_format: config.custom_pretty_ts_format.clone(),
        },
        top_count_keys: config.top_count_keys.clone().unwrap_or_default(),
        top_count_number: config.top_count_number.unwrap_or(5),
        include_rule_params: config.include_rule_params_in_matches.clone().unwrap_or_default(),
        include_rule_params_in_first_match_only: config.include_rule_params_in_first_match_only.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition(yaml: &str) -> Result<RuleDefinition, RuleLoadError> {
        RuleDefinition::from_config(parse_rule_yaml(yaml, "rule file \"test.yaml\"")?)
    }

    #[test]
    fn durations_accept_elastalert_maps_and_pipe_strings() {
        assert_eq!(parse_duration(&serde_json::json!({"minutes": 1, "seconds": 30})).unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration(&serde_json::json!("1h30m")).unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration(&serde_json::json!("500ms")).unwrap(), Duration::from_millis(500));
        assert!(parse_duration(&serde_json::json!(15)).is_err(), "a bare number has no unit");
        assert!(parse_duration(&serde_json::json!({"fortnights": 1})).unwrap_err().contains("fortnights"));
        assert!(parse_duration(&serde_json::json!("5 parsecs")).is_err());
    }

    #[test]
    fn frequency_rule_loads_with_defaults() {
        let rule = definition("name: r\ntype: frequency\nnum_events: 3\ntimeframe: {minutes: 5}\nquery_key: host\nindex: logs-*\nes_host: localhost\n").unwrap();
        assert_eq!(
            rule.kind,
            RuleKind::Frequency { num_events: 3, timeframe: Duration::from_secs(300), attach_related: false }
        );
        assert_eq!(rule.query_key, Some(QueryKey::Single("host".into())));
        assert_eq!(rule.alerting.realert, DEFAULT_REALERT);
        assert_eq!(rule.run_every, DEFAULT_RUN_EVERY);
        assert_eq!(rule.timestamp_field, "@timestamp");
    }

    #[test]
    fn realert_defaults_to_zero_with_aggregation() {
        let rule = definition("name: r\ntype: any\naggregation: {minutes: 10}\n").unwrap();
        assert_eq!(rule.alerting.realert, Duration::ZERO);
        assert_eq!(rule.alerting.aggregation, Some(AggregationWindow::Every(Duration::from_secs(600))));
    }

    #[test]
    fn missing_required_option_names_key_and_example() {
        let error = definition("name: r\ntype: frequency\ntimeframe: {minutes: 5}\n").unwrap_err();
        assert_eq!(error.key(), Some("num_events"));
        assert!(error.to_string().contains("test.yaml"), "{error}");
    }

    #[test]
    fn unknown_type_lists_supported_ones() {
        let error = definition("name: r\ntype: freqency\n").unwrap_err();
        assert!(error.to_string().contains("frequency, spike"), "{error}");
    }

    #[test]
    fn unknown_option_suggests_closest_key() {
        let error = definition("name: r\ntype: any\nrealret: {minutes: 1}\n").unwrap_err();
        assert_eq!(error.key(), Some("realret"));
        assert!(error.to_string().contains("did you mean \"realert\""), "{error}");
    }

    #[test]
    fn unsupported_feature_says_what_to_use_instead() {
        let error = definition("name: r\ntype: any\nmatch_enhancements: [a.B]\n").unwrap_err();
        assert_eq!(error.key(), Some("match_enhancements"));
        assert!(error.to_string().contains("transform"), "{error}");
        let error = definition("name: r\ntype: any\nalert_text_type: alert_text_jinja\n").unwrap_err();
        assert!(error.to_string().contains("alert_text_args"), "{error}");
    }

    #[test]
    fn known_alerters_and_their_options_are_accepted() {
        let rule = definition(
            "name: r\ntype: any\nalert: [slack, email]\nslack_webhook_url: http://x\nemail: [a@b.c]\nsmtp_host: mail\n",
        )
        .unwrap();
        assert_eq!(rule.kind, RuleKind::Any);
        let error = definition("name: r\ntype: any\nslack_webhook_url: http://x\n").unwrap_err();
        assert_eq!(error.key(), Some("slack_webhook_url"));
    }

    #[test]
    fn python_alerter_class_points_to_wecom_sink() {
        let error =
            definition("name: r\ntype: any\nalert:\n- \"alert_plugin.wechat_qiye_alert.WeChatAlerter\"\n").unwrap_err();
        assert_eq!(error.key(), Some("alert"));
        let text = error.to_string();
        assert!(text.contains("alert_plugin.wechat_qiye_alert.WeChatAlerter") && text.contains("wecom"), "{text}");
    }

    #[test]
    fn blacklist_expands_file_entries_quoted_or_tagged() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(directory.path().join("bad.txt"), "evil  \nworse\n").unwrap();
        let rule_path = directory.path().join("rule.yaml");
        std::fs::write(
            &rule_path,
            "type: blacklist\ncompare_key: user\nblacklist:\n- plain\n- \"!file bad.txt\"\n- !file bad.txt\n",
        )
        .unwrap();
        let rule = RuleDefinition::from_config(load_rule_file(&rule_path, None).unwrap()).unwrap();
        let RuleKind::Blacklist { values, .. } = rule.kind else { panic!("not a blacklist") };
        assert_eq!(values.texts, HashSet::from(["plain".to_owned(), "evil".to_owned(), "worse".to_owned()]));
        assert!(rule.name.ends_with("rule"), "name defaults to the path without extension: {}", rule.name);
    }

    #[test]
    fn imports_merge_with_importing_file_winning_and_filters_concatenated() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(
            directory.path().join("base.rule"),
            "type: frequency\nnum_events: 9\ntimeframe: {minutes: 1}\nfilter:\n- term: {a: 1}\n",
        )
        .unwrap();
        let rule_path = directory.path().join("rule.yaml");
        std::fs::write(&rule_path, "name: r\nimport: base.rule\nnum_events: 2\nfilter:\n- term: {b: 2}\n").unwrap();
        let rule = RuleDefinition::from_config(load_rule_file(&rule_path, None).unwrap()).unwrap();
        assert!(matches!(rule.kind, RuleKind::Frequency { num_events: 2, .. }));
        assert_eq!(rule.filter, vec![serde_json::json!({"term": {"a": 1}}), serde_json::json!({"term": {"b": 2}})]);
    }

    #[test]
    fn global_config_keys_are_rule_defaults() {
        let mut defaults = JsonMap::new();
        defaults.insert("realert".into(), serde_json::json!({"minutes": 0}));
        defaults.insert("run_every".into(), serde_json::json!({"minutes": 1}));
        defaults.insert("writeback_index".into(), serde_json::json!("elastalert_status"));
        let value = serde_json::json!({"name": "r", "type": "any"});
        let rule =
            RuleDefinition::from_config(RuleConfig::from_value(value, Some(&defaults), "test").unwrap()).unwrap();
        assert_eq!(rule.alerting.realert, Duration::ZERO);
    }

    #[test]
    fn toml_tables_deserialize_into_the_same_struct() {
        let table: toml::Value = toml::from_str("name = \"r\"\ntype = \"spike\"\ntimeframe = \"10m\"\nspike_height = 2\nspike_type = \"up\"\nquery_key = [\"a\", \"b\"]\n").unwrap();
        let config: RuleConfig = table.try_into().unwrap();
        let rule = RuleDefinition::from_config(config).unwrap();
        assert!(matches!(
            rule.kind,
            RuleKind::Spike(SpikeSettings { spike_height: 2.0, spike_type: SpikeDirection::Up, .. })
        ));
        assert_eq!(rule.query_key.as_ref().map(QueryKey::name), Some("a,b"));
    }
}
