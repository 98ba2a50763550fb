//! `_search` and `_count`: reading the request, running it over index
//! snapshots, and shaping the response per product version.
//!
//! Guarantees: hits come back in a total order (the sort keys, then index
//! and sequence number), so `search_after` paging over a fixed snapshot
//! never skips or repeats a document; dates in `sort` arrays are epoch
//! millisecond longs unless the sort names a `format`; a PIT search with an
//! explicit sort gets the implicit `_shard_doc` tiebreaker (Elasticsearch
//! 7.12+); `hits.total` is a number on 6.x or with `rest_total_hits_as_int`,
//! else `{value, relation}`, and is omitted with `track_total_hits: false`.
//! A query that cannot be built for an index fails that index's shards
//! (reported in `_shards.failures`); when every shard fails the request
//! fails with `search_phase_execution_exception`.
//!
//! Not implemented (rejected with a 400 naming the key): aggregations,
//! highlighting, `fields`/`docvalue_fields`, `collapse`, scroll, suggesters.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::dates;
use super::error::{ApiError, ErrorCause};
use super::mapping::{simple_wildcard_match, FieldKind, IndexedValue};
use super::query::{self, Compiled, Query};
use super::query_string::{self, DefaultOperator};
use super::store::{parse_time_value, IndexSnapshot, StoredDocument};
use super::version::{MappingTypeRule, Product};

/// The largest `from + size` Elasticsearch allows by default.
pub const MAX_RESULT_WINDOW: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    Ascending,
    Descending,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SortKey {
    Field {
        field: String,
        order: SortOrder,
        missing_first: bool,
        unmapped_type: Option<String>,
        format: Option<String>,
    },
    Score {
        order: SortOrder,
    },
    Doc {
        order: SortOrder,
    },
    ShardDoc {
        order: SortOrder,
    },
    Id {
        order: SortOrder,
    },
}

impl SortKey {
    fn order(&self) -> SortOrder {
        match self {
            SortKey::Field { order, .. }
            | SortKey::Score { order }
            | SortKey::Doc { order }
            | SortKey::ShardDoc { order }
            | SortKey::Id { order } => *order,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum TrackTotalHits {
    UpTo(u64),
    Exact,
    Off,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceFilter {
    pub enabled: bool,
    pub includes: Vec<String>,
    pub excludes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PitReference {
    pub id: String,
    pub keep_alive: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: Query,
    pub post_filter: Option<Query>,
    pub size: usize,
    pub from: usize,
    pub sort: Vec<SortKey>,
    pub search_after: Option<Vec<Value>>,
    pub source: SourceFilter,
    pub track_total_hits: Option<TrackTotalHits>,
    pub pit: Option<PitReference>,
    pub version: bool,
    pub seq_no_primary_term: bool,
    pub track_scores: bool,
}

/// Query-string parameters as decoded pairs.
pub type Params = [(String, String)];

pub fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

pub fn param_flag(params: &Params, name: &str) -> Option<bool> {
    param(params, name).map(|value| value.is_empty() || value == "true")
}

fn unknown_key(key: &str, value: &Value) -> ApiError {
    let token = match value {
        Value::Object(_) => "START_OBJECT",
        Value::Array(_) => "START_ARRAY",
        Value::String(_) => "VALUE_STRING",
        Value::Number(_) => "VALUE_NUMBER",
        Value::Bool(_) => "VALUE_BOOLEAN",
        Value::Null => "VALUE_NULL",
    };
    ApiError::parsing(format!("Unknown key for a {token} in [{key}]."))
}

fn not_emulated(key: &str) -> ApiError {
    ApiError::illegal_argument(format!("[{key}] is not implemented by the testkit Elasticsearch emulator; remove it from the request or extend testkit/src/es/search.rs"))
}

fn parse_order(text: &str) -> Result<SortOrder, ApiError> {
    match text.to_ascii_lowercase().as_str() {
        "asc" => Ok(SortOrder::Ascending),
        "desc" => Ok(SortOrder::Descending),
        other => Err(ApiError::illegal_argument(format!("Unknown SortOrder [{other}]"))),
    }
}

fn sort_key(field: &str, options: Option<&Map<String, Value>>, order: Option<SortOrder>) -> Result<SortKey, ApiError> {
    let order_from_options = match options.and_then(|options| options.get("order")).and_then(Value::as_str) {
        Some(text) => Some(parse_order(text)?),
        None => None,
    };
    let default_order = if field == "_score" { SortOrder::Descending } else { SortOrder::Ascending };
    let order = order.or(order_from_options).unwrap_or(default_order);
    Ok(match field {
        "_score" => SortKey::Score { order },
        "_doc" => SortKey::Doc { order },
        "_shard_doc" => SortKey::ShardDoc { order },
        "_id" => SortKey::Id { order },
        _ => {
            let text =
                |key: &str| options.and_then(|options| options.get(key)).and_then(Value::as_str).map(str::to_string);
            SortKey::Field {
                field: field.to_string(),
                order,
                missing_first: text("missing").as_deref() == Some("_first"),
                unmapped_type: text("unmapped_type"),
                format: text("format"),
            }
        }
    })
}

fn parse_sort(value: &Value) -> Result<Vec<SortKey>, ApiError> {
    let items = match value {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    let mut keys = Vec::new();
    for item in items {
        match item {
            Value::String(field) => keys.push(sort_key(&field, None, None)?),
            Value::Object(object) => {
                for (field, spec) in &object {
                    match spec {
                        Value::String(order) => keys.push(sort_key(field, None, Some(parse_order(order)?))?),
                        Value::Object(options) => keys.push(sort_key(field, Some(options), None)?),
                        other => {
                            return Err(ApiError::parsing(format!(
                                "[sort] for field [{field}] must be an order or an object, found {other}"
                            )))
                        }
                    }
                }
            }
            other => {
                return Err(ApiError::parsing(format!("[sort] element must be a string or an object, found {other}")))
            }
        }
    }
    Ok(keys)
}

/// `field:asc,other:desc` from the `sort` query parameter.
fn parse_sort_param(text: &str) -> Result<Vec<SortKey>, ApiError> {
    text.split(',')
        .filter(|part| !part.is_empty())
        .map(|part| match part.rsplit_once(':') {
            Some((field, order)) => sort_key(field, None, Some(parse_order(order)?)),
            None => sort_key(part, None, None),
        })
        .collect()
}

fn parse_source_filter(value: &Value) -> Result<SourceFilter, ApiError> {
    let list = |value: Option<&Value>| -> Vec<String> {
        match value {
            Some(Value::String(text)) => vec![text.clone()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
            _ => Vec::new(),
        }
    };
    Ok(match value {
        Value::Bool(enabled) => SourceFilter { enabled: *enabled, ..SourceFilter::default() },
        Value::String(_) | Value::Array(_) => {
            SourceFilter { enabled: true, includes: list(Some(value)), excludes: Vec::new() }
        }
        Value::Object(object) => SourceFilter {
            enabled: true,
            includes: list(object.get("includes").or_else(|| object.get("include"))),
            excludes: list(object.get("excludes").or_else(|| object.get("exclude"))),
        },
        other => {
            return Err(ApiError::parsing(format!(
                "[_source] must be a boolean, string, array or object, found {other}"
            )))
        }
    })
}

fn parse_track_total_hits(value: &Value) -> Result<TrackTotalHits, ApiError> {
    match value {
        Value::Bool(true) => Ok(TrackTotalHits::Exact),
        Value::Bool(false) => Ok(TrackTotalHits::Off),
        Value::Number(number) => match number.as_i64() {
            Some(-1) => Ok(TrackTotalHits::Exact),
            Some(limit) if limit >= 0 => Ok(TrackTotalHits::UpTo(limit as u64)),
            _ => Err(ApiError::illegal_argument(format!(
                "[track_total_hits] parameter must be positive or equals to -1, got {number}"
            ))),
        },
        Value::String(text) => match text.as_str() {
            "true" => Ok(TrackTotalHits::Exact),
            "false" => Ok(TrackTotalHits::Off),
            number => parse_track_total_hits(&Value::from(number.parse::<i64>().map_err(|_| {
                ApiError::illegal_argument(format!("Failed to parse value [{number}] for [track_total_hits]"))
            })?)),
        },
        other => Err(ApiError::parsing(format!("[track_total_hits] must be a boolean or a number, found {other}"))),
    }
}

fn usize_param(params: &Params, name: &str) -> Result<Option<usize>, ApiError> {
    match param(params, name) {
        None => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            ApiError::illegal_argument(format!("Failed to parse int parameter [{name}] with value [{text}]"))
        }),
    }
}

fn as_size(key: &str, value: &Value) -> Result<usize, ApiError> {
    value.as_u64().map(|number| number as usize).ok_or_else(|| {
        ApiError::illegal_argument(format!("[{key}] parameter cannot be negative or non-numeric, found [{value}]"))
    })
}

impl SearchRequest {
    /// Reads a search body and the URL parameters that shape a search.
    pub fn parse(body: &Map<String, Value>, params: &Params, product: &Product) -> Result<SearchRequest, ApiError> {
        let mut request = SearchRequest {
            query: Query::MatchAll,
            post_filter: None,
            size: 10,
            from: 0,
            sort: Vec::new(),
            search_after: None,
            source: SourceFilter { enabled: true, ..SourceFilter::default() },
            track_total_hits: None,
            pit: None,
            version: false,
            seq_no_primary_term: false,
            track_scores: false,
        };
        for (key, value) in body {
            match key.as_str() {
                "query" => request.query = Query::parse(value)?,
                "post_filter" => request.post_filter = Some(Query::parse(value)?),
                "size" => request.size = as_size(key, value)?,
                "from" => request.from = as_size(key, value)?,
                "sort" => request.sort = parse_sort(value)?,
                "search_after" => {
                    let values =
                        value.as_array().ok_or_else(|| ApiError::parsing("[search_after] must be an array"))?;
                    request.search_after = Some(values.clone());
                }
                "_source" => request.source = parse_source_filter(value)?,
                "track_total_hits" if product.shape_major() >= 7 => {
                    request.track_total_hits = Some(parse_track_total_hits(value)?)
                }
                "pit" if product.has_any_pit() => {
                    let id = value
                        .get("id")
                        .and_then(Value::as_str)
                        .ok_or_else(|| ApiError::parsing("[pit] requires an [id]"))?;
                    let keep_alive = match value.get("keep_alive").and_then(Value::as_str) {
                        Some(text) => Some(parse_time_value(text).flatten().ok_or_else(|| {
                            ApiError::parsing(format!("failed to parse [keep_alive] with value [{text}]"))
                        })?),
                        None => None,
                    };
                    request.pit = Some(PitReference { id: id.to_string(), keep_alive });
                }
                "version" => request.version = value.as_bool().unwrap_or(false),
                "seq_no_primary_term" => request.seq_no_primary_term = value.as_bool().unwrap_or(false),
                "track_scores" => request.track_scores = value.as_bool().unwrap_or(false),
                "timeout" | "terminate_after" | "stats" | "ext" | "explain" | "profile" | "request_cache" => {}
                "aggs" | "aggregations" | "highlight" | "fields" | "docvalue_fields" | "stored_fields"
                | "script_fields" | "collapse" | "suggest" | "rescore" | "runtime_mappings" | "indices_boost"
                | "min_score" | "slice" | "knn" => return Err(not_emulated(key)),
                _ => return Err(unknown_key(key, value)),
            }
        }
        if let Some(size) = usize_param(params, "size")? {
            request.size = size;
        }
        if let Some(from) = usize_param(params, "from")? {
            request.from = from;
        }
        if let Some(sort) = param(params, "sort") {
            request.sort = parse_sort_param(sort)?;
        }
        if let Some(text) = param(params, "q") {
            let default_operator = match param(params, "default_operator") {
                Some(operator) if operator.eq_ignore_ascii_case("and") => DefaultOperator::And,
                _ => DefaultOperator::Or,
            };
            let fields = param(params, "df").map(|field| vec![field.to_string()]).unwrap_or_default();
            let tree = query_string::parse(text, default_operator)
                .map_err(|reason| ApiError::bad_request("query_shard_exception", reason))?;
            request.query = Query::QueryString {
                query: text.to_string(),
                fields,
                default_operator,
                lenient: param_flag(params, "lenient").unwrap_or(false),
                tree,
            };
        }
        if let Some(text) = param(params, "_source") {
            request.source = match text {
                "true" => SourceFilter { enabled: true, ..SourceFilter::default() },
                "false" => SourceFilter::default(),
                list => SourceFilter {
                    enabled: true,
                    includes: list.split(',').map(str::to_string).collect(),
                    excludes: Vec::new(),
                },
            };
        }
        for name in ["_source_includes", "_source_include"] {
            if let Some(list) = param(params, name) {
                request.source.enabled = true;
                request.source.includes = list.split(',').map(str::to_string).collect();
            }
        }
        for name in ["_source_excludes", "_source_exclude"] {
            if let Some(list) = param(params, name) {
                request.source.enabled = true;
                request.source.excludes = list.split(',').map(str::to_string).collect();
            }
        }
        if let Some(text) = param(params, "track_total_hits") {
            if product.shape_major() >= 7 {
                request.track_total_hits = Some(parse_track_total_hits(&Value::String(text.to_string()))?);
            }
        }
        if param_flag(params, "version") == Some(true) {
            request.version = true;
        }
        if param_flag(params, "seq_no_primary_term") == Some(true) {
            request.seq_no_primary_term = true;
        }
        if param(params, "scroll").is_some() {
            return Err(not_emulated("scroll"));
        }
        if request.search_after.is_some() && request.from > 0 {
            return Err(ApiError::illegal_argument("[from] parameter must be set to 0 when [search_after] is used"));
        }
        if request.from + request.size > MAX_RESULT_WINDOW {
            let reason = format!(
                "Result window is too large, from + size must be less than or equal to: [{MAX_RESULT_WINDOW}] but was [{}]. See the scroll api for a more efficient way to request large data sets. This limit can be set by changing the [index.max_result_window] index level setting.",
                request.from + request.size
            );
            return Err(ApiError::illegal_argument(reason));
        }
        Ok(request)
    }
}

/// How the response is shaped and what is injected into it.
#[derive(Debug, Clone)]
pub struct ResponseShape {
    pub product: Product,
    /// 8.x in `compatible-with=7` mode: hits carry `_type: "_doc"`.
    pub compatible_with_7: bool,
    pub rest_total_hits_as_int: bool,
    /// Set when the search ran in a PIT: the id to return.
    pub pit_id: Option<String>,
    /// Fail the first N shards with this cause (emulator fault).
    pub injected_shard_failures: Option<(u32, ErrorCause)>,
    pub node_id: String,
    pub now_millis: i64,
}

impl ResponseShape {
    fn hits_have_type(&self) -> bool {
        self.product.mapping_types() != MappingTypeRule::Removed || self.compatible_with_7
    }
}

#[derive(Debug, Clone, PartialEq)]
enum SortValue {
    Long(i64),
    Double(f64),
    Text(String),
    Null,
}

impl SortValue {
    fn to_json(&self) -> Value {
        match self {
            SortValue::Long(number) => Value::from(*number),
            SortValue::Double(number) => {
                serde_json::Number::from_f64(*number).map(Value::Number).unwrap_or(Value::Null)
            }
            SortValue::Text(text) => Value::String(text.clone()),
            SortValue::Null => Value::Null,
        }
    }

    fn compare(&self, other: &SortValue, order: SortOrder, nulls_first: bool) -> Ordering {
        let natural = match (self, other) {
            (SortValue::Null, SortValue::Null) => return Ordering::Equal,
            (SortValue::Null, _) => return if nulls_first { Ordering::Less } else { Ordering::Greater },
            (_, SortValue::Null) => return if nulls_first { Ordering::Greater } else { Ordering::Less },
            (SortValue::Long(left), SortValue::Long(right)) => left.cmp(right),
            (SortValue::Text(left), SortValue::Text(right)) => left.as_bytes().cmp(right.as_bytes()),
            (left, right) => left.as_f64().partial_cmp(&right.as_f64()).unwrap_or(Ordering::Equal),
        };
        match order {
            SortOrder::Ascending => natural,
            SortOrder::Descending => natural.reverse(),
        }
    }

    fn as_f64(&self) -> f64 {
        match self {
            SortValue::Long(number) => *number as f64,
            SortValue::Double(number) => *number,
            SortValue::Text(_) | SortValue::Null => f64::NAN,
        }
    }
}

/// How one sort key reads values from documents of one index.
#[derive(Debug, Clone)]
enum KeyReader {
    Field { field: String, kind: Option<FieldKind>, format: Option<String>, date_format: String },
    Score,
    Doc,
    ShardDoc,
    Id,
}

struct Candidate {
    document: Arc<StoredDocument>,
    index: Arc<IndexSnapshot>,
    index_ordinal: usize,
    position: usize,
    score: f32,
    sort_values: Vec<SortValue>,
}

fn shard_doc_value(index_ordinal: usize, shard: u32, position: usize) -> i64 {
    (((index_ordinal as i64) << 8 | shard as i64) << 32) | position as i64
}

fn read_sort_value(reader: &KeyReader, key: &SortKey, candidate: &Candidate) -> SortValue {
    match reader {
        KeyReader::Score => SortValue::Double(candidate.score as f64),
        KeyReader::Doc => SortValue::Long(((candidate.index_ordinal as i64) << 32) | candidate.position as i64),
        KeyReader::ShardDoc => {
            SortValue::Long(shard_doc_value(candidate.index_ordinal, candidate.document.shard, candidate.position))
        }
        KeyReader::Id => SortValue::Text(candidate.document.id.clone()),
        KeyReader::Field { field, kind, .. } => {
            let SortKey::Field { order, missing_first, .. } = key else { return SortValue::Null };
            let values = candidate.document.indexed.get(field).map(Vec::as_slice).unwrap_or(&[]);
            let numeric: Vec<SortValue> = values
                .iter()
                .filter_map(|value| match value {
                    IndexedValue::Integer(number) | IndexedValue::Date(number) => Some(SortValue::Long(*number)),
                    IndexedValue::Boolean(flag) => Some(SortValue::Long(i64::from(*flag))),
                    IndexedValue::Float(number) => Some(SortValue::Double(*number)),
                    IndexedValue::Keyword(text) => Some(SortValue::Text(text.clone())),
                    IndexedValue::Text(_) => None,
                })
                .collect();
            // Multi-valued fields sort by their minimum ascending and their
            // maximum descending, Elasticsearch's default sort mode.
            let picked = match order {
                SortOrder::Ascending => numeric.into_iter().min_by(|a, b| a.compare(b, SortOrder::Ascending, false)),
                SortOrder::Descending => numeric.into_iter().max_by(|a, b| a.compare(b, SortOrder::Ascending, false)),
            };
            match picked {
                Some(value) => value,
                // Missing numeric values sort as the extreme Elasticsearch
                // substitutes (and reports in `sort`); keywords as null.
                None => match kind {
                    Some(FieldKind::Integer { .. }) | Some(FieldKind::Date) | Some(FieldKind::Boolean) => {
                        let last = (*order == SortOrder::Ascending) != *missing_first;
                        SortValue::Long(if last { i64::MAX } else { i64::MIN })
                    }
                    Some(FieldKind::Float) => {
                        let last = (*order == SortOrder::Ascending) != *missing_first;
                        SortValue::Double(if last { f64::MAX } else { f64::MIN })
                    }
                    _ => SortValue::Null,
                },
            }
        }
    }
}

fn unmapped_kind(unmapped_type: &str) -> Option<FieldKind> {
    match unmapped_type {
        "date" | "date_nanos" => Some(FieldKind::Date),
        "long" | "integer" | "short" | "byte" => Some(FieldKind::Integer { min: i64::MIN, max: i64::MAX }),
        "double" | "float" => Some(FieldKind::Float),
        "boolean" => Some(FieldKind::Boolean),
        _ => Some(FieldKind::Keyword),
    }
}

/// Builds per-index key readers, or the shard failure cause.
fn key_readers(
    sort: &[SortKey],
    index: &IndexSnapshot,
    product: &Product,
    in_pit: bool,
) -> Result<Vec<KeyReader>, ErrorCause> {
    sort.iter()
        .map(|key| match key {
            SortKey::Score { .. } => Ok(KeyReader::Score),
            SortKey::Doc { .. } => Ok(KeyReader::Doc),
            SortKey::ShardDoc { .. } if in_pit => Ok(KeyReader::ShardDoc),
            SortKey::ShardDoc { .. } => Err(ErrorCause::new("illegal_argument_exception", "[_shard_doc] sort field cannot be used without [point in time]")),
            SortKey::Id { .. } if product.rejects_id_sort() => Err(ErrorCause::new(
                "illegal_argument_exception",
                "Fielddata access on the _id field is disallowed, you can re-enable it by updating the dynamic cluster setting: indices.id_field_data.enabled",
            )),
            SortKey::Id { .. } => Ok(KeyReader::Id),
            SortKey::Field { field, unmapped_type, format, .. } => match index.mapping.resolve_leaf(field) {
                Some(leaf) if leaf.kind == FieldKind::Text => Err(ErrorCause::new(
                    "illegal_argument_exception",
                    format!("Text fields are not optimised for operations that require per-document field data like aggregations and sorting, so these operations are disabled by default. Please use a keyword field instead. Alternatively, set fielddata=true on [{field}] in order to load field data by uninverting the inverted index. Note that this can use significant memory."),
                )),
                Some(leaf) => Ok(KeyReader::Field { field: field.clone(), kind: Some(leaf.kind), format: format.clone(), date_format: leaf.date_format().to_string() }),
                None => match unmapped_type {
                    Some(unmapped) => Ok(KeyReader::Field {
                        field: field.clone(),
                        kind: unmapped_kind(unmapped),
                        format: format.clone(),
                        date_format: dates::DEFAULT_DATE_FORMAT.to_string(),
                    }),
                    None => Err(ErrorCause::new("query_shard_exception", format!("No mapping found for [{field}] in order to sort on"))),
                },
            },
        })
        .collect()
}

/// Reads a `search_after` value the way the key's field type does.
fn after_value(value: &Value, reader: &KeyReader) -> Result<SortValue, ApiError> {
    let invalid =
        |why: String| ApiError::illegal_argument(format!("Failed to parse search_after value for field: {why}"));
    Ok(match (reader, value) {
        (_, Value::Null) => SortValue::Null,
        (KeyReader::Field { kind: Some(FieldKind::Date), date_format, format, .. }, Value::String(text)) => {
            let format = format.as_deref().unwrap_or(date_format);
            match text.parse::<i64>() {
                Ok(millis) => SortValue::Long(millis),
                Err(_) => SortValue::Long(
                    dates::parse_date(text, &format!("{format}||{}", dates::DEFAULT_DATE_FORMAT), false, 0)
                        .map_err(invalid)?,
                ),
            }
        }
        (KeyReader::Field { kind: Some(FieldKind::Float), .. }, value) => SortValue::Double(
            value
                .as_f64()
                .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
                .ok_or_else(|| invalid(value.to_string()))?,
        ),
        (
            KeyReader::Field { kind: Some(FieldKind::Keyword), .. }
            | KeyReader::Field { kind: None, .. }
            | KeyReader::Id,
            Value::String(text),
        ) => SortValue::Text(text.clone()),
        (KeyReader::Score, value) => SortValue::Double(value.as_f64().ok_or_else(|| invalid(value.to_string()))?),
        (_, Value::Number(number)) => match number.as_i64() {
            Some(integer) => SortValue::Long(integer),
            None => SortValue::Double(number.as_f64().unwrap_or(f64::NAN)),
        },
        (_, Value::String(text)) => match text.parse::<i64>() {
            Ok(integer) => SortValue::Long(integer),
            Err(_) => SortValue::Text(text.clone()),
        },
        (_, Value::Bool(flag)) => SortValue::Long(i64::from(*flag)),
        (_, other) => return Err(invalid(other.to_string())),
    })
}

fn render_sort_value(value: &SortValue, key: &SortKey) -> Value {
    if let (SortKey::Field { format: Some(format), .. }, SortValue::Long(millis)) = (key, value) {
        if *millis != i64::MAX && *millis != i64::MIN {
            return dates::format_with(*millis, format);
        }
    }
    value.to_json()
}

/// Applies a `_source` filter; `None` when `_source` is disabled.
pub fn filter_source(source: &Value, filter: &SourceFilter) -> Option<Value> {
    if !filter.enabled {
        return None;
    }
    if filter.includes.is_empty() && filter.excludes.is_empty() {
        return Some(source.clone());
    }
    Some(filter_object(source, "", filter).unwrap_or_else(|| json!({})))
}

fn filter_object(value: &Value, prefix: &str, filter: &SourceFilter) -> Option<Value> {
    let Value::Object(object) = value else { return Some(value.clone()) };
    let mut kept = Map::new();
    for (key, child) in object {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        if filter.excludes.iter().any(|pattern| simple_wildcard_match(pattern, &path)) {
            continue;
        }
        let included = filter.includes.is_empty()
            || filter.includes.iter().any(|pattern| {
                simple_wildcard_match(pattern, &path) || simple_wildcard_match(&format!("{pattern}.*"), &path)
            });
        let filtered = if included {
            let only_excludes = SourceFilter { enabled: true, includes: Vec::new(), excludes: filter.excludes.clone() };
            match child {
                Value::Object(_) => filter_object(child, &path, &only_excludes),
                Value::Array(items) => Some(Value::Array(
                    items.iter().filter_map(|item| filter_object(item, &path, &only_excludes)).collect(),
                )),
                other => Some(other.clone()),
            }
        } else {
            match child {
                Value::Object(_) => filter_object(child, &path, filter)
                    .filter(|inner| inner.as_object().is_some_and(|object| !object.is_empty())),
                Value::Array(items) => {
                    let inner: Vec<Value> = items
                        .iter()
                        .filter(|item| item.is_object())
                        .filter_map(|item| filter_object(item, &path, filter))
                        .filter(|inner| inner.as_object().is_some_and(|object| !object.is_empty()))
                        .collect();
                    (!inner.is_empty()).then_some(Value::Array(inner))
                }
                _ => None,
            }
        };
        if let Some(filtered) = filtered {
            kept.insert(key.clone(), filtered);
        }
    }
    Some(Value::Object(kept))
}

fn shards_json(total: u32, failures: &[Value]) -> Value {
    let failed = failures.len() as u32;
    let mut shards = json!({"total": total, "successful": total - failed, "skipped": 0, "failed": failed});
    if !failures.is_empty() {
        shards["failures"] = Value::Array(failures.to_vec());
    }
    shards
}

fn shard_failure(index: &IndexSnapshot, shard: u32, node: &str, cause: &ErrorCause) -> Value {
    let reason = cause.clone().with("index_uuid", index.uuid.clone()).with("index", index.name.clone());
    json!({"shard": shard, "index": index.name, "node": node, "reason": reason.to_json()})
}

/// Which shards of which index are usable, plus the failure list.
/// One index's query, post filter and sort readers, ready to run.
struct PreparedIndex {
    query: Compiled,
    post_filter: Option<Compiled>,
    readers: Vec<KeyReader>,
}

struct ShardPlan {
    /// Per index, or `None` when all its shards failed.
    per_index: Vec<Option<PreparedIndex>>,
    /// (index ordinal, shard) pairs that failed.
    failed_shards: Vec<(usize, u32)>,
    failures: Vec<Value>,
    first_cause: Option<(u16, ErrorCause)>,
    total_shards: u32,
}

fn plan(
    query: &Query,
    post_filter: Option<&Query>,
    sort: &[SortKey],
    snapshots: &[Arc<IndexSnapshot>],
    shape: &ResponseShape,
    in_pit: bool,
) -> ShardPlan {
    let mut plan = ShardPlan {
        per_index: Vec::new(),
        failed_shards: Vec::new(),
        failures: Vec::new(),
        first_cause: None,
        total_shards: 0,
    };
    let mut injected_remaining = shape.injected_shard_failures.as_ref().map(|(count, _)| *count).unwrap_or(0);
    for (ordinal, snapshot) in snapshots.iter().enumerate() {
        plan.total_shards += snapshot.number_of_shards;
        let prepared = query.compile(&snapshot.mapping, shape.now_millis).and_then(|compiled| {
            let post = post_filter.map(|filter| filter.compile(&snapshot.mapping, shape.now_millis)).transpose()?;
            let readers = key_readers(sort, snapshot, &shape.product, in_pit)?;
            Ok(PreparedIndex { query: compiled, post_filter: post, readers })
        });
        match prepared {
            Ok(prepared) => {
                plan.per_index.push(Some(prepared));
                for shard in 0..snapshot.number_of_shards {
                    if injected_remaining == 0 {
                        break;
                    }
                    injected_remaining -= 1;
                    if let Some((_, cause)) = &shape.injected_shard_failures {
                        plan.failed_shards.push((ordinal, shard));
                        plan.failures.push(shard_failure(snapshot, shard, &shape.node_id, cause));
                        plan.first_cause.get_or_insert((500, cause.clone()));
                    }
                }
            }
            Err(cause) => {
                plan.per_index.push(None);
                for shard in 0..snapshot.number_of_shards {
                    plan.failed_shards.push((ordinal, shard));
                }
                // Elasticsearch groups identical failures per index.
                plan.failures.push(shard_failure(snapshot, 0, &shape.node_id, &cause));
                plan.first_cause.get_or_insert((400, cause));
            }
        }
    }
    plan
}

fn all_shards_failed(plan: &ShardPlan) -> Option<ApiError> {
    if plan.total_shards == 0 || (plan.failed_shards.len() as u32) < plan.total_shards {
        return None;
    }
    let (status, cause) = plan.first_cause.clone()?;
    Some(ApiError::search_phase(status, cause, plan.failures.clone()))
}

/// Runs a search over snapshots and renders the response body.
pub fn execute(
    request: &SearchRequest,
    snapshots: &[Arc<IndexSnapshot>],
    shape: &ResponseShape,
) -> Result<Value, ApiError> {
    let started = std::time::Instant::now();
    let in_pit = request.pit.is_some();
    let mut sort = request.sort.clone();
    if in_pit
        && !sort.is_empty()
        && shape.product.has_shard_doc_sort()
        && !sort.iter().any(|key| matches!(key, SortKey::ShardDoc { .. }))
    {
        sort.push(SortKey::ShardDoc { order: SortOrder::Ascending });
    }
    let sorted_by_score_only = sort.is_empty();
    let effective_sort =
        if sorted_by_score_only { vec![SortKey::Score { order: SortOrder::Descending }] } else { sort.clone() };
    if let Some(after) = &request.search_after {
        if sorted_by_score_only {
            return Err(ApiError::illegal_argument("Sort must contain at least one field."));
        }
        if after.len() != effective_sort.len() {
            return Err(ApiError::illegal_argument(format!(
                "search_after has {} value(s) but sort has {}.",
                after.len(),
                effective_sort.len()
            )));
        }
    }
    let plan = plan(&request.query, request.post_filter.as_ref(), &effective_sort, snapshots, shape, in_pit);
    if let Some(error) = all_shards_failed(&plan) {
        return Err(error);
    }

    let mut candidates: Vec<Candidate> = Vec::new();
    let mut readers_by_index: Vec<Option<&Vec<KeyReader>>> = Vec::new();
    for (ordinal, (snapshot, prepared)) in snapshots.iter().zip(&plan.per_index).enumerate() {
        let Some(PreparedIndex { query: compiled, post_filter, readers }) = prepared else {
            readers_by_index.push(None);
            continue;
        };
        readers_by_index.push(Some(readers));
        for (position, document) in snapshot.documents.iter().enumerate() {
            if plan.failed_shards.contains(&(ordinal, document.shard)) {
                continue;
            }
            let Some(score) = compiled.score(document.as_ref()) else { continue };
            if post_filter.as_ref().is_some_and(|filter| filter.score(document.as_ref()).is_none()) {
                continue;
            }
            let mut candidate = Candidate {
                document: Arc::clone(document),
                index: Arc::clone(snapshot),
                index_ordinal: ordinal,
                position,
                score,
                sort_values: Vec::new(),
            };
            candidate.sort_values = readers
                .iter()
                .zip(&effective_sort)
                .map(|(reader, key)| read_sort_value(reader, key, &candidate))
                .collect();
            candidates.push(candidate);
        }
    }
    let total_matching = candidates.len() as u64;

    let nulls_first = |key: &SortKey| matches!(key, SortKey::Field { missing_first: true, .. });
    let compare = |left: &[SortValue], right: &[SortValue]| -> Ordering {
        for ((left, right), key) in left.iter().zip(right).zip(&effective_sort) {
            let ordering = left.compare(right, key.order(), nulls_first(key));
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        Ordering::Equal
    };
    candidates.sort_by(|left, right| {
        compare(&left.sort_values, &right.sort_values)
            .then(left.index_ordinal.cmp(&right.index_ordinal))
            .then(left.position.cmp(&right.position))
    });

    if let Some(after) = &request.search_after {
        // The first usable index decides how each value is read; all
        // indices of a search agree on field types in practice.
        let readers = readers_by_index.iter().flatten().next();
        if let Some(readers) = readers {
            let after_values: Vec<SortValue> = after
                .iter()
                .zip(readers.iter())
                .map(|(value, reader)| after_value(value, reader))
                .collect::<Result<_, _>>()?;
            candidates.retain(|candidate| compare(&candidate.sort_values, &after_values) == Ordering::Greater);
        }
    }

    let page: Vec<&Candidate> = candidates.iter().skip(request.from).take(request.size).collect();
    let include_scores = sorted_by_score_only || request.track_scores;
    let hits_have_type = shape.hits_have_type();
    let hits: Vec<Value> = page
        .iter()
        .map(|candidate| {
            let mut hit = Map::new();
            hit.insert("_index".into(), Value::String(candidate.index.name.clone()));
            if hits_have_type {
                hit.insert("_type".into(), Value::String(candidate.document.type_name.clone()));
            }
            hit.insert("_id".into(), Value::String(candidate.document.id.clone()));
            if request.version {
                hit.insert("_version".into(), Value::from(candidate.document.version));
            }
            if request.seq_no_primary_term {
                hit.insert("_seq_no".into(), Value::from(candidate.document.seq_no));
                hit.insert("_primary_term".into(), Value::from(candidate.document.primary_term));
            }
            let score = if include_scores {
                serde_json::Number::from_f64(candidate.score as f64).map(Value::Number).unwrap_or(Value::Null)
            } else {
                Value::Null
            };
            hit.insert("_score".into(), score);
            if let Some(source) = filter_source(&candidate.document.source, &request.source) {
                hit.insert("_source".into(), source);
            }
            if !sorted_by_score_only {
                let values = candidate
                    .sort_values
                    .iter()
                    .zip(&effective_sort)
                    .map(|(value, key)| render_sort_value(value, key))
                    .collect();
                hit.insert("sort".into(), Value::Array(values));
            }
            Value::Object(hit)
        })
        .collect();
    let max_score = if include_scores {
        candidates
            .iter()
            .map(|candidate| candidate.score)
            .reduce(f32::max)
            .and_then(|score| serde_json::Number::from_f64(score as f64))
            .map(Value::Number)
            .unwrap_or(Value::Null)
    } else {
        Value::Null
    };

    let mut hits_object = Map::new();
    if let Some(total) = render_total(total_matching, request, shape) {
        hits_object.insert("total".into(), total);
    }
    hits_object.insert("max_score".into(), max_score);
    hits_object.insert("hits".into(), Value::Array(hits));

    let mut response = Map::new();
    if let Some(pit_id) = &shape.pit_id {
        response.insert("pit_id".into(), Value::String(pit_id.clone()));
    }
    response.insert("took".into(), Value::from(started.elapsed().as_millis() as u64));
    response.insert("timed_out".into(), Value::Bool(false));
    response.insert("_shards".into(), shards_json(plan.total_shards, &plan.failures_for_response()));
    response.insert("hits".into(), Value::Object(hits_object));
    Ok(Value::Object(response))
}

impl ShardPlan {
    /// `_shards.failed` counts failed shards; `failures` lists them.
    fn failures_for_response(&self) -> Vec<Value> {
        // Pad grouped per-index failures so `failed` counts every shard.
        let mut failures = self.failures.clone();
        while failures.len() < self.failed_shards.len() {
            failures.push(failures.last().cloned().unwrap_or(Value::Null));
        }
        failures
    }
}

fn render_total(total: u64, request: &SearchRequest, shape: &ResponseShape) -> Option<Value> {
    if shape.product.total_hits_as_number() {
        return Some(Value::from(total));
    }
    let tracking = request.track_total_hits.clone().unwrap_or(if shape.rest_total_hits_as_int {
        TrackTotalHits::Exact
    } else {
        TrackTotalHits::UpTo(MAX_RESULT_WINDOW as u64)
    });
    let (value, relation) = match tracking {
        TrackTotalHits::Off => {
            return shape.rest_total_hits_as_int.then(|| Value::from(-1));
        }
        TrackTotalHits::Exact => (total, "eq"),
        TrackTotalHits::UpTo(limit) if total > limit => (limit, "gte"),
        TrackTotalHits::UpTo(_) => (total, "eq"),
    };
    if shape.rest_total_hits_as_int {
        return Some(Value::from(value));
    }
    Some(json!({"value": value, "relation": relation}))
}

/// Runs `_count`.
pub fn count(query: &Query, snapshots: &[Arc<IndexSnapshot>], shape: &ResponseShape) -> Result<Value, ApiError> {
    let plan = plan(query, None, &[], snapshots, shape, false);
    if let Some(error) = all_shards_failed(&plan) {
        return Err(error);
    }
    let mut count = 0_u64;
    for (ordinal, (snapshot, prepared)) in snapshots.iter().zip(&plan.per_index).enumerate() {
        let Some(PreparedIndex { query: compiled, .. }) = prepared else { continue };
        count += snapshot
            .documents
            .iter()
            .filter(|document| {
                !plan.failed_shards.contains(&(ordinal, document.shard)) && compiled.score(document.as_ref()).is_some()
            })
            .count() as u64;
    }
    Ok(json!({"count": count, "_shards": shards_json(plan.total_shards, &plan.failures_for_response())}))
}

/// Reads a `_count` body: only `query` is allowed.
pub fn parse_count_body(body: &Map<String, Value>, params: &Params) -> Result<Query, ApiError> {
    for (key, value) in body {
        if key != "query" {
            return Err(unknown_key(key, value));
        }
    }
    if let Some(text) = param(params, "q") {
        let tree = query_string::parse(text, DefaultOperator::Or)
            .map_err(|reason| ApiError::bad_request("query_shard_exception", reason))?;
        let fields = param(params, "df").map(|field| vec![field.to_string()]).unwrap_or_default();
        return Ok(Query::QueryString {
            query: text.to_string(),
            fields,
            default_operator: DefaultOperator::Or,
            lenient: false,
            tree,
        });
    }
    query::parse_optional(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::es::store::{Cluster, TargetOptions, WriteOperation};

    const NOW: i64 = 1_767_268_800_000;

    fn cluster_with(product: Product, count: usize, same_timestamp_every: usize) -> (Cluster, Vec<Arc<IndexSnapshot>>) {
        let mut cluster = Cluster::new(product, None);
        for position in 0..count {
            let timestamp = dates::format_iso_millis(NOW - 100_000 + (position / same_timestamp_every) as i64 * 1000);
            let source = json!({"@timestamp": timestamp, "n": position, "level": if position % 2 == 0 { "even" } else { "odd" }});
            let raw = source.to_string();
            let operation = WriteOperation::Index {
                id: Some(format!("doc-{position}")),
                source,
                create_only: false,
                if_seq_no: None,
                if_primary_term: None,
            };
            cluster.write("logs", None, operation, &raw).unwrap();
        }
        cluster.refresh_index("logs");
        let snapshots = cluster.searchable_snapshots("logs", TargetOptions::default()).unwrap();
        (cluster, snapshots)
    }

    fn shape(product: Product) -> ResponseShape {
        ResponseShape {
            product,
            compatible_with_7: false,
            rest_total_hits_as_int: false,
            pit_id: None,
            injected_shard_failures: None,
            node_id: "node".into(),
            now_millis: NOW,
        }
    }

    fn request(body: Value, product: &Product) -> SearchRequest {
        SearchRequest::parse(body.as_object().unwrap(), &[], product).unwrap()
    }

    #[test]
    fn search_after_pages_without_gaps_or_duplicates_despite_equal_timestamps() {
        let product = Product::elasticsearch("7.17.0").unwrap();
        let (_cluster, snapshots) = cluster_with(product, 57, 4);
        let mut seen = Vec::new();
        let mut after: Option<Value> = None;
        loop {
            let mut body = json!({"size": 10, "sort": [{"@timestamp": "asc"}, {"n": "asc"}]});
            if let Some(after) = &after {
                body["search_after"] = after.clone();
            }
            let response = execute(&request(body, &product), &snapshots, &shape(product)).unwrap();
            let hits = response["hits"]["hits"].as_array().unwrap().clone();
            if hits.is_empty() {
                break;
            }
            for hit in &hits {
                seen.push(hit["_source"]["n"].as_u64().unwrap());
                assert!(hit["sort"][0].is_i64(), "dates sort as epoch millis: {}", hit["sort"]);
                assert_eq!(hit["_type"], "_doc");
                assert!(hit["_score"].is_null());
            }
            after = Some(hits.last().unwrap()["sort"].clone());
        }
        assert_eq!(seen, (0..57).collect::<Vec<u64>>());
    }

    #[test]
    fn total_shapes_follow_version_and_parameters() {
        let es6 = Product::elasticsearch("6.8.23").unwrap();
        let (_c, snapshots) = cluster_with(es6, 3, 1);
        assert_eq!(execute(&request(json!({}), &es6), &snapshots, &shape(es6)).unwrap()["hits"]["total"], 3);
        assert_eq!(
            execute(&request(json!({}), &es6), &snapshots, &shape(es6)).unwrap()["hits"]["hits"][0]["_type"],
            "doc"
        );

        let es8 = Product::elasticsearch("8.15.0").unwrap();
        let (_c, snapshots) = cluster_with(es8, 3, 1);
        let response = execute(&request(json!({}), &es8), &snapshots, &shape(es8)).unwrap();
        assert_eq!(response["hits"]["total"], json!({"value": 3, "relation": "eq"}));
        assert!(response["hits"]["hits"][0].get("_type").is_none());
        let limited = execute(&request(json!({"track_total_hits": 2}), &es8), &snapshots, &shape(es8)).unwrap();
        assert_eq!(limited["hits"]["total"], json!({"value": 2, "relation": "gte"}));
        let off = execute(&request(json!({"track_total_hits": false}), &es8), &snapshots, &shape(es8)).unwrap();
        assert!(off["hits"].get("total").is_none());
        let as_int = ResponseShape { rest_total_hits_as_int: true, ..shape(es8) };
        assert_eq!(execute(&request(json!({}), &es8), &snapshots, &as_int).unwrap()["hits"]["total"], 3);
        let compat = ResponseShape { compatible_with_7: true, ..shape(es8) };
        assert_eq!(
            execute(&request(json!({}), &es8), &snapshots, &compat).unwrap()["hits"]["hits"][0]["_type"],
            "_doc"
        );
    }

    #[test]
    fn sort_errors_and_shard_failures() {
        let product = Product::elasticsearch("8.15.0").unwrap();
        let (_c, snapshots) = cluster_with(product, 3, 1);
        let error =
            execute(&request(json!({"sort": ["missing_field"]}), &product), &snapshots, &shape(product)).unwrap_err();
        assert_eq!(error.status, 400);
        assert_eq!(error.error_type(), Some("search_phase_execution_exception"));
        let unmapped = execute(
            &request(json!({"sort": [{"missing_field": {"unmapped_type": "date"}}]}), &product),
            &snapshots,
            &shape(product),
        )
        .unwrap();
        assert_eq!(unmapped["hits"]["hits"][0]["sort"][0], i64::MAX);
        let shard_doc =
            execute(&request(json!({"sort": ["_shard_doc"]}), &product), &snapshots, &shape(product)).unwrap_err();
        assert_eq!(shard_doc.status, 400);
        let mismatch =
            execute(&request(json!({"sort": ["n"], "search_after": [1, 2]}), &product), &snapshots, &shape(product))
                .unwrap_err();
        assert_eq!(mismatch.to_json().unwrap()["error"]["reason"], "search_after has 2 value(s) but sort has 1.");
    }

    #[test]
    fn source_filtering_includes_excludes_and_wildcards() {
        let source = json!({"a": 1, "host": {"name": "x", "ip": "y"}, "tags": [{"k": 1, "v": 2}]});
        let filter = |includes: &[&str], excludes: &[&str]| {
            filter_source(
                &source,
                &SourceFilter {
                    enabled: true,
                    includes: includes.iter().map(|s| s.to_string()).collect(),
                    excludes: excludes.iter().map(|s| s.to_string()).collect(),
                },
            )
            .unwrap()
        };
        assert_eq!(filter(&["host.name"], &[]), json!({"host": {"name": "x"}}));
        assert_eq!(filter(&["host"], &["host.ip"]), json!({"host": {"name": "x"}}));
        assert_eq!(filter(&["*.k"], &[]), json!({"tags": [{"k": 1}]}));
        assert_eq!(filter(&[], &["a", "tags"]), json!({"host": {"name": "x", "ip": "y"}}));
        assert!(filter_source(&source, &SourceFilter::default()).is_none());
    }

    #[test]
    fn unknown_and_unemulated_keys_are_rejected() {
        let product = Product::elasticsearch("8.15.0").unwrap();
        let unknown = SearchRequest::parse(json!({"qeury": {}}).as_object().unwrap(), &[], &product).unwrap_err();
        assert_eq!(unknown.to_json().unwrap()["error"]["reason"], "Unknown key for a START_OBJECT in [qeury].");
        let aggs = SearchRequest::parse(json!({"aggs": {}}).as_object().unwrap(), &[], &product).unwrap_err();
        assert!(aggs.to_json().unwrap()["error"]["reason"].as_str().unwrap().contains("not implemented"));
        let window =
            SearchRequest::parse(json!({"from": 9995, "size": 10}).as_object().unwrap(), &[], &product).unwrap_err();
        assert_eq!(window.status, 400);
        let old = Product::elasticsearch("7.9.0").unwrap();
        let pit_on_old = SearchRequest::parse(json!({"pit": {"id": "x"}}).as_object().unwrap(), &[], &old).unwrap_err();
        assert_eq!(pit_on_old.to_json().unwrap()["error"]["reason"], "Unknown key for a START_OBJECT in [pit].");
    }
}
