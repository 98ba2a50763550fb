//! The query DSL: parsing a request's `query` object, compiling it against
//! one index's mapping, and matching compiled queries against documents.
//!
//! Supported: `match_all`, `match_none`, `bool` (`must`, `filter`, `should`,
//! `must_not`, `minimum_should_match`), `term`, `terms`, `range` (dates with
//! `format`, `time_zone` and date math; numbers; keywords; legacy
//! `from`/`to`/`include_*`), `match`, `match_phrase`, `exists`, `ids`,
//! `prefix`, `wildcard`, `constant_score`, and `query_string` (see
//! `query_string.rs`). Anything else is a `parsing_exception`, so a client
//! bug never silently matches everything.
//!
//! Compilation happens per index because a field's type decides how a query
//! value is read (a `term` on a `long` field parses its value, a `match` on a
//! `text` field analyzes it). A value that cannot be read for the field's
//! type is a shard-level `query_shard_exception`, as in Elasticsearch.
//! Scores are simplified: each matching scoring clause adds 1.0; filter
//! context scores 0.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::dates;
use super::error::{ApiError, ErrorCause};
use super::mapping::{self, FieldKind, IndexedFields, IndexedValue, LeafMapping, RootMapping};
use super::query_string::{self, DefaultOperator, Occur, QueryNode, TermKind};

/// A parsed query, independent of any mapping.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    MatchAll,
    MatchNone,
    Bool {
        must: Vec<Query>,
        filter: Vec<Query>,
        should: Vec<Query>,
        must_not: Vec<Query>,
        minimum_should_match: Option<Value>,
    },
    Term {
        field: String,
        value: Value,
        case_insensitive: bool,
    },
    Terms {
        field: String,
        values: Vec<Value>,
    },
    Range(RangeQuery),
    Match {
        field: String,
        text: String,
        operator_and: bool,
        minimum_should_match: Option<Value>,
    },
    MatchPhrase {
        field: String,
        text: String,
    },
    Exists {
        field: String,
    },
    Ids {
        values: Vec<String>,
    },
    Prefix {
        field: String,
        value: String,
        case_insensitive: bool,
    },
    Wildcard {
        field: String,
        pattern: String,
        case_insensitive: bool,
    },
    QueryString {
        query: String,
        fields: Vec<String>,
        default_operator: DefaultOperator,
        lenient: bool,
        tree: QueryNode,
    },
    ConstantScore(Box<Query>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RangeQuery {
    pub field: String,
    pub lower: Option<(Value, bool)>,
    pub upper: Option<(Value, bool)>,
    pub format: Option<String>,
    pub time_zone: Option<String>,
}

fn parsing_error(reason: impl Into<String>) -> ApiError {
    ApiError::parsing(reason)
}

fn single_entry<'a>(kind: &str, value: &'a Value) -> Result<(&'a String, &'a Value), ApiError> {
    let object = value
        .as_object()
        .ok_or_else(|| parsing_error(format!("[{kind}] query malformed, no start_object after query name")))?;
    let mut entries = object.iter().filter(|(key, _)| key.as_str() != "boost" && key.as_str() != "_name");
    let first = entries.next().ok_or_else(|| parsing_error(format!("[{kind}] query malformed, no field specified")))?;
    if let Some(second) = entries.next() {
        return Err(parsing_error(format!(
            "[{kind}] query doesn't support multiple fields, found [{}] and [{}]",
            first.0, second.0
        )));
    }
    Ok(first)
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn query_list(kind: &str, value: &Value) -> Result<Vec<Query>, ApiError> {
    match value {
        Value::Array(items) => items.iter().map(Query::parse).collect(),
        Value::Object(_) => Ok(vec![Query::parse(value)?]),
        _ => Err(parsing_error(format!("[bool] query does not support [{kind}] with a value of {value}"))),
    }
}

impl Query {
    /// Parses one query object such as `{"term": {"level": "ERROR"}}`.
    pub fn parse(value: &Value) -> Result<Query, ApiError> {
        let object = value
            .as_object()
            .ok_or_else(|| parsing_error(format!("query malformed, must start with start_object, got {value}")))?;
        let mut entries = object.iter();
        let (kind, body) = entries.next().ok_or_else(|| parsing_error("query malformed, empty clause found"))?;
        if let Some((extra, _)) = entries.next() {
            return Err(parsing_error(format!(
                "[{kind}] malformed query, expected [END_OBJECT] but found [FIELD_NAME] ([{extra}])"
            )));
        }
        match kind.as_str() {
            "match_all" => Ok(Query::MatchAll),
            "match_none" => Ok(Query::MatchNone),
            "bool" => Query::parse_bool(body),
            "term" => {
                let (field, spec) = single_entry("term", body)?;
                let (value, case_insensitive) = match spec {
                    Value::Object(options) => (
                        options
                            .get("value")
                            .cloned()
                            .ok_or_else(|| parsing_error("[term] query does not support a term without [value]"))?,
                        options.get("case_insensitive").and_then(Value::as_bool).unwrap_or(false),
                    ),
                    other => (other.clone(), false),
                };
                Ok(Query::Term { field: field.clone(), value, case_insensitive })
            }
            "terms" => {
                let (field, values) = single_entry("terms", body)?;
                let values = values.as_array().ok_or_else(|| {
                    parsing_error(format!("[terms] query does not support [{field}] without an array of values"))
                })?;
                Ok(Query::Terms { field: field.clone(), values: values.clone() })
            }
            "range" => Query::parse_range(body),
            "match" => {
                let (field, spec) = single_entry("match", body)?;
                match spec {
                    Value::Object(options) => Ok(Query::Match {
                        field: field.clone(),
                        text: options
                            .get("query")
                            .map(text_of)
                            .ok_or_else(|| parsing_error("[match] requires query value"))?,
                        operator_and: options
                            .get("operator")
                            .and_then(Value::as_str)
                            .is_some_and(|op| op.eq_ignore_ascii_case("and")),
                        minimum_should_match: options.get("minimum_should_match").cloned(),
                    }),
                    other => Ok(Query::Match {
                        field: field.clone(),
                        text: text_of(other),
                        operator_and: false,
                        minimum_should_match: None,
                    }),
                }
            }
            "match_phrase" => {
                let (field, spec) = single_entry("match_phrase", body)?;
                let text = match spec {
                    Value::Object(options) => options
                        .get("query")
                        .map(text_of)
                        .ok_or_else(|| parsing_error("[match_phrase] requires query value"))?,
                    other => text_of(other),
                };
                Ok(Query::MatchPhrase { field: field.clone(), text })
            }
            "exists" => {
                let field = body
                    .get("field")
                    .and_then(Value::as_str)
                    .ok_or_else(|| parsing_error("[exists] must be provided with a [field]"))?;
                Ok(Query::Exists { field: field.to_string() })
            }
            "ids" => {
                let values = body
                    .get("values")
                    .and_then(Value::as_array)
                    .ok_or_else(|| parsing_error("[ids] requires [values]"))?;
                Ok(Query::Ids { values: values.iter().map(text_of).collect() })
            }
            "prefix" | "wildcard" => {
                let (field, spec) = single_entry(kind, body)?;
                let (text, case_insensitive) = match spec {
                    Value::Object(options) => (
                        options
                            .get("value")
                            .or_else(|| options.get("wildcard"))
                            .map(text_of)
                            .ok_or_else(|| parsing_error(format!("[{kind}] requires a value")))?,
                        options.get("case_insensitive").and_then(Value::as_bool).unwrap_or(false),
                    ),
                    other => (text_of(other), false),
                };
                if kind == "prefix" {
                    Ok(Query::Prefix { field: field.clone(), value: text, case_insensitive })
                } else {
                    Ok(Query::Wildcard { field: field.clone(), pattern: text, case_insensitive })
                }
            }
            "query_string" => Query::parse_query_string(body),
            "constant_score" => {
                let filter =
                    body.get("filter").ok_or_else(|| parsing_error("[constant_score] requires a 'filter' element"))?;
                Ok(Query::ConstantScore(Box::new(Query::parse(filter)?)))
            }
            other => Err(parsing_error(format!("unknown query [{other}]"))),
        }
    }

    fn parse_bool(body: &Value) -> Result<Query, ApiError> {
        let object = body
            .as_object()
            .ok_or_else(|| parsing_error("[bool] query malformed, no start_object after query name"))?;
        let (mut must, mut filter, mut should, mut must_not, mut minimum_should_match) =
            (vec![], vec![], vec![], vec![], None);
        for (key, value) in object {
            match key.as_str() {
                "must" => must = query_list(key, value)?,
                "filter" => filter = query_list(key, value)?,
                "should" => should = query_list(key, value)?,
                "must_not" | "mustNot" => must_not = query_list(key, value)?,
                "minimum_should_match" => minimum_should_match = Some(value.clone()),
                "boost" | "_name" | "adjust_pure_negative" => {}
                other => return Err(parsing_error(format!("[bool] query does not support [{other}]"))),
            }
        }
        Ok(Query::Bool { must, filter, should, must_not, minimum_should_match })
    }

    fn parse_range(body: &Value) -> Result<Query, ApiError> {
        let (field, spec) = single_entry("range", body)?;
        let options = spec.as_object().ok_or_else(|| {
            parsing_error(format!("[range] query malformed, after field [{field}] missing start_object"))
        })?;
        let mut range = RangeQuery { field: field.clone(), lower: None, upper: None, format: None, time_zone: None };
        let include_lower = options.get("include_lower").and_then(Value::as_bool).unwrap_or(true);
        let include_upper = options.get("include_upper").and_then(Value::as_bool).unwrap_or(true);
        for (key, value) in options {
            let bound = || (!value.is_null()).then(|| value.clone());
            match key.as_str() {
                "gte" => range.lower = bound().map(|v| (v, true)),
                "gt" => range.lower = bound().map(|v| (v, false)),
                "lte" => range.upper = bound().map(|v| (v, true)),
                "lt" => range.upper = bound().map(|v| (v, false)),
                "from" => range.lower = bound().map(|v| (v, include_lower)),
                "to" => range.upper = bound().map(|v| (v, include_upper)),
                "format" => range.format = value.as_str().map(str::to_string),
                "time_zone" => range.time_zone = value.as_str().map(str::to_string),
                "include_lower" | "include_upper" | "boost" | "relation" | "_name" => {}
                other => return Err(parsing_error(format!("[range] query does not support [{other}]"))),
            }
        }
        Ok(Query::Range(range))
    }

    fn parse_query_string(body: &Value) -> Result<Query, ApiError> {
        let object = body.as_object().ok_or_else(|| parsing_error("[query_string] query malformed"))?;
        let query = object
            .get("query")
            .and_then(Value::as_str)
            .ok_or_else(|| parsing_error("[query_string] must be provided with a [query]"))?;
        let default_operator = match object.get("default_operator").and_then(Value::as_str) {
            Some(operator) if operator.eq_ignore_ascii_case("and") => DefaultOperator::And,
            _ => DefaultOperator::Or,
        };
        let mut fields: Vec<String> = object
            .get("fields")
            .and_then(Value::as_array)
            .map(|fields| {
                fields
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|field| field.split('^').next().unwrap_or(field).to_string())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(default_field) = object.get("default_field").and_then(Value::as_str) {
            fields.push(default_field.to_string());
        }
        let lenient = object.get("lenient").and_then(Value::as_bool).unwrap_or(false);
        let tree = query_string::parse(query, default_operator).map_err(|reason| {
            ApiError::new(
                400,
                ErrorCause::new("query_shard_exception", format!("Failed to parse query [{query}]"))
                    .caused_by(ErrorCause::new("parse_exception", reason)),
            )
        })?;
        Ok(Query::QueryString { query: query.to_string(), fields, default_operator, lenient, tree })
    }

    /// Compiles the query for one index's mapping.
    pub fn compile(&self, mapping: &RootMapping, now: i64) -> Result<Compiled, ErrorCause> {
        let compiler = Compiler { mapping, now };
        compiler.compile(self)
    }
}

/// A query ready to run against one index's documents.
#[derive(Debug, Clone)]
pub enum Compiled {
    All,
    Nothing,
    Bool {
        must: Vec<Compiled>,
        filter: Vec<Compiled>,
        should: Vec<Compiled>,
        must_not: Vec<Compiled>,
        minimum_should: usize,
    },
    /// Matches when any indexed value of `field` satisfies the predicate.
    Field {
        field: String,
        predicate: Predicate,
    },
    /// Matches when any of the alternatives matches (multi-field expansion).
    AnyOf(Vec<Compiled>),
    /// A field (or any field under an object path) has an indexed value.
    Exists {
        fields: Vec<String>,
    },
    Ids(HashSet<String>),
    Constant(Box<Compiled>),
}

#[derive(Debug, Clone)]
pub enum Predicate {
    KeywordEquals {
        value: String,
        case_insensitive: bool,
    },
    KeywordIn(HashSet<String>),
    KeywordRange {
        lower: Option<(String, bool)>,
        upper: Option<(String, bool)>,
    },
    KeywordPattern {
        pattern: Vec<char>,
        case_insensitive: bool,
    },
    TokenEquals(String),
    TokenIn(HashSet<String>),
    TokenPattern(Vec<char>),
    /// At least `minimum` of the tokens appear in the field.
    Tokens {
        tokens: Vec<String>,
        minimum: usize,
    },
    Phrase(Vec<String>),
    NumberRange {
        lower: Option<(f64, bool)>,
        upper: Option<(f64, bool)>,
    },
    NumberIn(Vec<f64>),
    DateRange {
        lower: Option<i64>,
        upper: Option<i64>,
    },
    BooleanEquals(bool),
}

struct QueryStringOptions<'a> {
    defaults: &'a [String],
    lenient: bool,
    operator: DefaultOperator,
}

struct Compiler<'a> {
    mapping: &'a RootMapping,
    now: i64,
}

fn shard_error(reason: impl Into<String>) -> ErrorCause {
    ErrorCause::new("query_shard_exception", reason)
}

fn create_failure(cause: impl Into<String>) -> ErrorCause {
    let cause = cause.into();
    shard_error(format!("failed to create query: {cause}")).caused_by(ErrorCause::new("number_format_exception", cause))
}

fn parse_number(value: &Value) -> Result<f64, String> {
    match value {
        Value::Number(number) => number.as_f64().ok_or_else(|| format!("For input string: \"{number}\"")),
        Value::String(text) => text.trim().parse::<f64>().map_err(|_| format!("For input string: \"{text}\"")),
        Value::Bool(flag) => Err(format!("For input string: \"{flag}\"")),
        other => Err(format!("For input string: \"{other}\"")),
    }
}

fn parse_boolean(value: &Value) -> Result<bool, String> {
    match value {
        Value::Bool(flag) => Ok(*flag),
        Value::String(text) if text == "true" => Ok(true),
        Value::String(text) if text == "false" || text.is_empty() => Ok(false),
        other => Err(format!("Can't parse boolean value [{}], expected [true] or [false]", text_of(other))),
    }
}

/// `minimum_should_match` as a count out of `optional` clauses.
fn minimum_should(value: Option<&Value>, optional: usize, default: usize) -> usize {
    let Some(value) = value else { return default };
    let text = text_of(value);
    let text = text.trim();
    let resolved = if let Some(percent) = text.strip_suffix('%') {
        let percent: f64 = percent.parse().unwrap_or(0.0);
        let count = (optional as f64 * percent.abs() / 100.0).floor() as i64;
        if percent < 0.0 {
            optional as i64 - count
        } else {
            count
        }
    } else {
        let count: i64 = text.parse().unwrap_or(default as i64);
        if count < 0 {
            optional as i64 + count
        } else {
            count
        }
    };
    resolved.clamp(0, optional as i64) as usize
}

impl Compiler<'_> {
    fn compile(&self, query: &Query) -> Result<Compiled, ErrorCause> {
        match query {
            Query::MatchAll => Ok(Compiled::All),
            Query::MatchNone => Ok(Compiled::Nothing),
            Query::Bool { must, filter, should, must_not, minimum_should_match } => {
                let compile_all =
                    |queries: &[Query]| queries.iter().map(|query| self.compile(query)).collect::<Result<Vec<_>, _>>();
                let (must, filter, should, must_not) =
                    (compile_all(must)?, compile_all(filter)?, compile_all(should)?, compile_all(must_not)?);
                // Optional clauses are required (one of them) only when
                // nothing else constrains the query.
                let default = usize::from(must.is_empty() && filter.is_empty() && !should.is_empty());
                let minimum_should = minimum_should(minimum_should_match.as_ref(), should.len(), default);
                Ok(Compiled::Bool { must, filter, should, must_not, minimum_should })
            }
            Query::Term { field, value, case_insensitive } => {
                self.on_field(field, |leaf| self.term_predicate(leaf, value, *case_insensitive))
            }
            Query::Terms { field, values } => self.on_field(field, |leaf| self.terms_predicate(leaf, values)),
            Query::Range(range) => self.on_field(&range.field, |leaf| self.range_predicate(leaf, range)),
            Query::Match { field, text, operator_and, minimum_should_match } => {
                self.on_field(field, |leaf| match leaf.kind {
                    FieldKind::Text => {
                        let tokens = mapping::analyze(text);
                        if tokens.is_empty() {
                            return Ok(None);
                        }
                        let minimum = if *operator_and {
                            tokens.len()
                        } else {
                            minimum_should(minimum_should_match.as_ref(), tokens.len(), 1).max(1)
                        };
                        Ok(Some(Predicate::Tokens { tokens, minimum }))
                    }
                    _ => self.term_predicate(leaf, &Value::String(text.clone()), false),
                })
            }
            Query::MatchPhrase { field, text } => self.on_field(field, |leaf| match leaf.kind {
                FieldKind::Text => Ok(Some(Predicate::Phrase(mapping::analyze(text)))),
                _ => self.term_predicate(leaf, &Value::String(text.clone()), false),
            }),
            Query::Exists { field } => Ok(self.exists(field)),
            Query::Ids { values } => Ok(Compiled::Ids(values.iter().cloned().collect())),
            Query::Prefix { field, value, case_insensitive } => {
                let pattern = format!("{}*", value.replace('*', "\\*").replace('?', "\\?"));
                self.on_field(field, |leaf| Ok(self.wildcard_predicate(leaf, &pattern, *case_insensitive)))
            }
            Query::Wildcard { field, pattern, case_insensitive } => {
                self.on_field(field, |leaf| Ok(self.wildcard_predicate(leaf, pattern, *case_insensitive)))
            }
            Query::QueryString { fields, lenient, tree, default_operator, .. } => self.compile_query_string(
                tree,
                &QueryStringOptions { defaults: fields, lenient: *lenient, operator: *default_operator },
            ),
            Query::ConstantScore(inner) => Ok(Compiled::Constant(Box::new(self.compile(inner)?))),
        }
    }

    /// Compiles a per-field predicate; an unmapped field matches nothing.
    fn on_field(
        &self,
        field: &str,
        build: impl Fn(&LeafMapping) -> Result<Option<Predicate>, ErrorCause>,
    ) -> Result<Compiled, ErrorCause> {
        let Some(leaf) = self.mapping.resolve_leaf(field) else { return Ok(Compiled::Nothing) };
        Ok(match build(leaf)? {
            Some(predicate) => Compiled::Field { field: field.to_string(), predicate },
            None => Compiled::Nothing,
        })
    }

    fn exists(&self, field: &str) -> Compiled {
        if self.mapping.is_object(field) {
            let prefix = format!("{field}.");
            let fields = self
                .mapping
                .leaf_paths()
                .into_iter()
                .map(|(path, _)| path)
                .filter(|path| path.starts_with(&prefix))
                .collect();
            return Compiled::Exists { fields };
        }
        Compiled::Exists { fields: vec![field.to_string()] }
    }

    fn term_predicate(
        &self,
        leaf: &LeafMapping,
        value: &Value,
        case_insensitive: bool,
    ) -> Result<Option<Predicate>, ErrorCause> {
        Ok(Some(match leaf.kind {
            FieldKind::Keyword => Predicate::KeywordEquals { value: text_of(value), case_insensitive },
            FieldKind::Text => {
                let text = text_of(value);
                if case_insensitive {
                    Predicate::TokenEquals(text.to_lowercase())
                } else {
                    Predicate::TokenEquals(text)
                }
            }
            FieldKind::Integer { .. } | FieldKind::Float => {
                let number = parse_number(value).map_err(create_failure)?;
                Predicate::NumberIn(vec![number])
            }
            FieldKind::Boolean => Predicate::BooleanEquals(
                parse_boolean(value).map_err(|reason| shard_error(format!("failed to create query: {reason}")))?,
            ),
            FieldKind::Date => {
                let format = leaf.date_format();
                let lower = self.date_bound(value, format, false, 0)?;
                let upper = self.date_bound(value, format, true, 0)?;
                Predicate::DateRange { lower: Some(lower), upper: Some(upper) }
            }
            FieldKind::Opaque => return Ok(None),
        }))
    }

    fn terms_predicate(&self, leaf: &LeafMapping, values: &[Value]) -> Result<Option<Predicate>, ErrorCause> {
        Ok(Some(match leaf.kind {
            FieldKind::Keyword => Predicate::KeywordIn(values.iter().map(text_of).collect()),
            FieldKind::Text => Predicate::TokenIn(values.iter().map(text_of).collect()),
            FieldKind::Integer { .. } | FieldKind::Float => {
                Predicate::NumberIn(values.iter().map(parse_number).collect::<Result<_, _>>().map_err(create_failure)?)
            }
            FieldKind::Boolean | FieldKind::Date | FieldKind::Opaque => {
                // Rare for pollers; expand to one exact match per value.
                let predicates: Vec<Predicate> = values
                    .iter()
                    .map(|value| self.term_predicate(leaf, value, false))
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .flatten()
                    .collect();
                return Ok(predicates.into_iter().next());
            }
        }))
    }

    fn date_bound(&self, value: &Value, format: &str, round_up: bool, offset_millis: i64) -> Result<i64, ErrorCause> {
        let parse_failure = |reason: String| {
            ErrorCause::new(
                "parse_exception",
                format!("{reason}: [failed to parse date field [{}] with format [{format}]]", text_of(value)),
            )
        };
        match value {
            Value::String(text) => {
                dates::resolve_date_math(text, format, self.now, round_up, offset_millis).map_err(parse_failure)
            }
            Value::Number(_) => {
                dates::parse_date_value(value, &format!("{format}||epoch_millis")).map_err(parse_failure)
            }
            other => Err(parse_failure(format!("unsupported date bound {other}"))),
        }
    }

    fn range_predicate(&self, leaf: &LeafMapping, range: &RangeQuery) -> Result<Option<Predicate>, ErrorCause> {
        Ok(Some(match leaf.kind {
            FieldKind::Date => {
                let format = range.format.as_deref().unwrap_or(leaf.date_format());
                let offset = match &range.time_zone {
                    Some(zone) => dates::parse_time_zone(zone).map_err(shard_error)?,
                    None => 0,
                };
                // `gt` and `lte` round up, `gte` and `lt` round down.
                let lower = match &range.lower {
                    Some((value, inclusive)) => {
                        let millis = self.date_bound(value, format, !inclusive, offset)?;
                        Some(if *inclusive { millis } else { millis.saturating_add(1) })
                    }
                    None => None,
                };
                let upper = match &range.upper {
                    Some((value, inclusive)) => {
                        let millis = self.date_bound(value, format, *inclusive, offset)?;
                        Some(if *inclusive { millis } else { millis.saturating_sub(1) })
                    }
                    None => None,
                };
                Predicate::DateRange { lower, upper }
            }
            FieldKind::Integer { .. } | FieldKind::Float => {
                let bound = |bound: &Option<(Value, bool)>| -> Result<Option<(f64, bool)>, ErrorCause> {
                    match bound {
                        Some((value, inclusive)) => {
                            Ok(Some((parse_number(value).map_err(create_failure)?, *inclusive)))
                        }
                        None => Ok(None),
                    }
                };
                Predicate::NumberRange { lower: bound(&range.lower)?, upper: bound(&range.upper)? }
            }
            FieldKind::Keyword | FieldKind::Text => Predicate::KeywordRange {
                lower: range.lower.as_ref().map(|(value, inclusive)| (text_of(value), *inclusive)),
                upper: range.upper.as_ref().map(|(value, inclusive)| (text_of(value), *inclusive)),
            },
            FieldKind::Boolean | FieldKind::Opaque => return Ok(None),
        }))
    }

    fn wildcard_predicate(&self, leaf: &LeafMapping, pattern: &str, case_insensitive: bool) -> Option<Predicate> {
        match leaf.kind {
            // Wildcard terms on text fields are normalized (lowercased) like
            // the field's analyzer would, then matched per token.
            FieldKind::Text => Some(Predicate::TokenPattern(pattern.to_lowercase().chars().collect())),
            FieldKind::Keyword => {
                Some(Predicate::KeywordPattern { pattern: pattern.chars().collect(), case_insensitive })
            }
            _ => None,
        }
    }

    /// Field names a query_string term applies to: explicit (with `*`
    /// patterns expanded), else the request's `fields`, else every field.
    /// The flag marks fields reached through a `*` pattern, which
    /// Elasticsearch queries leniently (a number field ignores "abc").
    fn query_string_fields(&self, field: Option<&str>, defaults: &[String]) -> Vec<(String, bool)> {
        let patterns: Vec<String> = match field {
            Some(field) => vec![field.to_string()],
            None if defaults.is_empty() => vec!["*".to_string()],
            None => defaults.to_vec(),
        };
        let mut resolved = Vec::new();
        for pattern in patterns {
            if !pattern.contains('*') {
                resolved.push((pattern, false));
                continue;
            }
            for (path, leaf) in self.mapping.leaf_paths() {
                if leaf.kind != FieldKind::Opaque && mapping::simple_wildcard_match(&pattern, &path) {
                    resolved.push((path, true));
                }
            }
        }
        resolved
    }

    fn compile_query_string(&self, node: &QueryNode, options: &QueryStringOptions<'_>) -> Result<Compiled, ErrorCause> {
        match node {
            QueryNode::Boolean(clauses) => {
                let (mut must, mut should, mut must_not) = (Vec::new(), Vec::new(), Vec::new());
                for (occur, clause) in clauses {
                    let compiled = self.compile_query_string(clause, options)?;
                    match occur {
                        Occur::Must => must.push(compiled),
                        Occur::Should => should.push(compiled),
                        Occur::MustNot => must_not.push(compiled),
                    }
                }
                if must.is_empty() && should.is_empty() {
                    // A purely negative query matches everything else.
                    must.push(Compiled::All);
                }
                let minimum_should = usize::from(must.is_empty() && !should.is_empty());
                Ok(Compiled::Bool { must, filter: Vec::new(), should, must_not, minimum_should })
            }
            QueryNode::Term { field, text, kind } => {
                if *kind == TermKind::Exists {
                    let target = field.as_deref().unwrap_or("*");
                    return Ok(self.exists(target));
                }
                let mut alternatives = Vec::new();
                for (path, field_lenient) in self.query_string_fields(field.as_deref(), options.defaults) {
                    let Some(leaf) = self.mapping.resolve_leaf(&path) else { continue };
                    match self.query_string_predicate(leaf, text, kind, options.operator) {
                        Ok(Some(predicate)) => alternatives.push(Compiled::Field { field: path, predicate }),
                        Ok(None) => {}
                        Err(_) if options.lenient || field_lenient => {}
                        Err(error) => return Err(error),
                    }
                }
                Ok(match alternatives.len() {
                    0 => Compiled::Nothing,
                    1 => alternatives.remove(0),
                    _ => Compiled::AnyOf(alternatives),
                })
            }
        }
    }

    fn query_string_predicate(
        &self,
        leaf: &LeafMapping,
        text: &str,
        kind: &TermKind,
        operator: DefaultOperator,
    ) -> Result<Option<Predicate>, ErrorCause> {
        match kind {
            TermKind::Wildcard => Ok(self.wildcard_predicate(leaf, text, false)),
            TermKind::Phrase => match leaf.kind {
                FieldKind::Text => Ok(Some(Predicate::Phrase(mapping::analyze(text)))),
                _ => self.term_predicate(leaf, &Value::String(text.to_string()), false),
            },
            TermKind::Plain => match leaf.kind {
                FieldKind::Text => {
                    let tokens = mapping::analyze(text);
                    // A term the analyzer splits (`wallet-qa-01`) becomes one
                    // clause per token joined by the default operator.
                    Ok(match tokens.len() {
                        0 => None,
                        1 => Some(Predicate::TokenEquals(tokens[0].clone())),
                        count => {
                            let minimum = if operator == DefaultOperator::And { count } else { 1 };
                            Some(Predicate::Tokens { tokens, minimum })
                        }
                    })
                }
                _ => self.term_predicate(leaf, &Value::String(text.to_string()), false),
            },
            TermKind::Range { lower, upper, include_lower, include_upper } => {
                let range = RangeQuery {
                    field: String::new(),
                    lower: lower.as_ref().map(|bound| (Value::String(bound.clone()), *include_lower)),
                    upper: upper.as_ref().map(|bound| (Value::String(bound.clone()), *include_upper)),
                    format: None,
                    time_zone: None,
                };
                self.range_predicate(leaf, &range)
            }
            TermKind::Exists => Ok(None),
        }
    }
}

/// `*` and `?` wildcard matching with backslash escapes.
fn wildcard_matches(pattern: &[char], text: &[char]) -> bool {
    let (mut pattern_index, mut text_index) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while text_index < text.len() {
        let (literal, step) = match pattern.get(pattern_index) {
            Some('\\') => (pattern.get(pattern_index + 1).copied(), 2),
            Some('*') => {
                backtrack = Some((pattern_index, text_index));
                pattern_index += 1;
                continue;
            }
            Some('?') => (None, 1),
            Some(other) => (Some(*other), 1),
            None => (Some('\u{0}'), 0),
        };
        let matched = step > 0 && literal.is_none_or(|expected| expected == text[text_index]);
        if matched {
            pattern_index += step;
            text_index += 1;
        } else if let Some((star, start)) = backtrack {
            pattern_index = star + 1;
            text_index = start + 1;
            backtrack = Some((star, start + 1));
        } else {
            return false;
        }
    }
    while pattern.get(pattern_index) == Some(&'*') {
        pattern_index += 1;
    }
    pattern_index == pattern.len()
}

fn keyword_of(value: &IndexedValue) -> Option<&str> {
    match value {
        IndexedValue::Keyword(text) => Some(text),
        _ => None,
    }
}

fn tokens_of(value: &IndexedValue) -> Option<&[String]> {
    match value {
        IndexedValue::Text(tokens) => Some(tokens),
        _ => None,
    }
}

fn number_of(value: &IndexedValue) -> Option<f64> {
    match value {
        IndexedValue::Integer(integer) => Some(*integer as f64),
        IndexedValue::Float(float) => Some(*float),
        _ => None,
    }
}

fn within<T: PartialOrd>(value: &T, lower: &Option<(T, bool)>, upper: &Option<(T, bool)>) -> bool {
    let above = match lower {
        Some((bound, true)) => value >= bound,
        Some((bound, false)) => value > bound,
        None => true,
    };
    let below = match upper {
        Some((bound, true)) => value <= bound,
        Some((bound, false)) => value < bound,
        None => true,
    };
    above && below
}

impl Predicate {
    fn matches(&self, values: &[IndexedValue]) -> bool {
        match self {
            Predicate::KeywordEquals { value, case_insensitive } => values.iter().filter_map(keyword_of).any(|text| {
                if *case_insensitive {
                    text.eq_ignore_ascii_case(value)
                } else {
                    text == value
                }
            }),
            Predicate::KeywordIn(set) => values.iter().filter_map(keyword_of).any(|text| set.contains(text)),
            Predicate::KeywordRange { lower, upper } => {
                let lower = lower.as_ref().map(|(text, inclusive)| (text.as_str(), *inclusive));
                let upper = upper.as_ref().map(|(text, inclusive)| (text.as_str(), *inclusive));
                values.iter().filter_map(keyword_of).any(|text| within(&text, &lower, &upper))
                    || values
                        .iter()
                        .filter_map(tokens_of)
                        .flatten()
                        .any(|token| within(&token.as_str(), &lower, &upper))
            }
            Predicate::KeywordPattern { pattern, case_insensitive } => {
                values.iter().filter_map(keyword_of).any(|text| {
                    if *case_insensitive {
                        let lowered: Vec<char> = pattern.iter().flat_map(|c| c.to_lowercase()).collect();
                        wildcard_matches(&lowered, &text.to_lowercase().chars().collect::<Vec<_>>())
                    } else {
                        wildcard_matches(pattern, &text.chars().collect::<Vec<_>>())
                    }
                })
            }
            Predicate::TokenEquals(expected) => {
                values.iter().filter_map(tokens_of).flatten().any(|token| token == expected)
            }
            Predicate::TokenIn(set) => values.iter().filter_map(tokens_of).flatten().any(|token| set.contains(token)),
            Predicate::TokenPattern(pattern) => values
                .iter()
                .filter_map(tokens_of)
                .flatten()
                .any(|token| wildcard_matches(pattern, &token.chars().collect::<Vec<_>>())),
            Predicate::Tokens { tokens, minimum } => {
                let present: HashSet<&String> = values.iter().filter_map(tokens_of).flatten().collect();
                tokens.iter().filter(|token| present.contains(token)).count() >= *minimum
            }
            Predicate::Phrase(phrase) => {
                if phrase.is_empty() {
                    return false;
                }
                values
                    .iter()
                    .filter_map(tokens_of)
                    .any(|tokens| tokens.windows(phrase.len()).any(|window| window == phrase.as_slice()))
            }
            Predicate::NumberRange { lower, upper } => {
                values.iter().filter_map(number_of).any(|number| within(&number, lower, upper))
            }
            Predicate::NumberIn(numbers) => values.iter().filter_map(number_of).any(|number| numbers.contains(&number)),
            Predicate::DateRange { lower, upper } => values.iter().any(|value| match value {
                IndexedValue::Date(millis) => {
                    lower.is_none_or(|bound| *millis >= bound) && upper.is_none_or(|bound| *millis <= bound)
                }
                _ => false,
            }),
            Predicate::BooleanEquals(expected) => values.contains(&IndexedValue::Boolean(*expected)),
        }
    }
}

/// What a compiled query needs from a document.
pub trait Matchable {
    fn document_id(&self) -> &str;
    fn indexed(&self) -> &IndexedFields;
}

impl Compiled {
    /// `None` when the document does not match, else its score.
    pub fn score<D: Matchable>(&self, document: &D) -> Option<f32> {
        self.evaluate(document, true)
    }

    fn evaluate<D: Matchable>(&self, document: &D, scoring: bool) -> Option<f32> {
        let unit = if scoring { 1.0 } else { 0.0 };
        match self {
            Compiled::All => Some(unit),
            Compiled::Nothing => None,
            Compiled::Bool { must, filter, should, must_not, minimum_should } => {
                let mut score = 0.0;
                for clause in must {
                    score += clause.evaluate(document, scoring)?;
                }
                for clause in filter {
                    clause.evaluate(document, false)?;
                }
                if must_not.iter().any(|clause| clause.evaluate(document, false).is_some()) {
                    return None;
                }
                let mut matched_should = 0;
                for clause in should {
                    if let Some(clause_score) = clause.evaluate(document, scoring) {
                        matched_should += 1;
                        score += clause_score;
                    }
                }
                if matched_should < *minimum_should {
                    return None;
                }
                let only_filters = must.is_empty() && should.is_empty();
                Some(if only_filters && scoring { 0.0 } else { score })
            }
            Compiled::Field { field, predicate } => {
                let values = document.indexed().get(field)?;
                predicate.matches(values).then_some(unit)
            }
            Compiled::AnyOf(alternatives) => {
                alternatives.iter().filter_map(|alternative| alternative.evaluate(document, scoring)).reduce(f32::max)
            }
            Compiled::Exists { fields } => fields
                .iter()
                .any(|field| document.indexed().get(field).is_some_and(|values| !values.is_empty()))
                .then_some(unit),
            Compiled::Ids(ids) => ids.contains(document.document_id()).then_some(unit),
            Compiled::Constant(inner) => inner.evaluate(document, false).map(|_| unit),
        }
    }
}

/// Reads the `query` of a search or count body; absent means `match_all`.
pub fn parse_optional(body: &Map<String, Value>) -> Result<Query, ApiError> {
    match body.get("query") {
        Some(query) => Query::parse(query),
        None => Ok(Query::MatchAll),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::es::mapping::DocumentContext;
    use serde_json::json;

    struct Doc {
        id: String,
        indexed: IndexedFields,
    }

    impl Matchable for Doc {
        fn document_id(&self) -> &str {
            &self.id
        }
        fn indexed(&self) -> &IndexedFields {
            &self.indexed
        }
    }

    const NOW: i64 = 1_767_268_800_000; // 2026-01-01T12:00:00Z

    fn corpus() -> (RootMapping, Vec<Doc>) {
        let mut mapping =
            RootMapping::parse(&json!({"properties": {"count": {"type": "long"}, "level": {"type": "keyword"}}}))
                .unwrap();
        let sources = [
            json!({"message": "Traceback (most recent call last): KeyError", "level": "ERROR", "count": 5, "@timestamp": "2026-01-01T11:59:00Z", "source": "/data/logs/wallet/app.log", "host": {"name": "wallet-qa-01"}}),
            json!({"message": "Exception in thread \"worker-3\" java.lang.NullPointerException", "level": "ERROR", "count": 10, "@timestamp": "2026-01-01T11:58:00Z", "source": "/data/logs/api/app.log", "host": {"name": "api-prod-03"}}),
            json!({"message": "blocked suspicious login", "level": "WARN", "count": 1, "@timestamp": "2026-01-01T11:00:00Z", "source": "/opt/DefendAgent/logs/DefendAgent.log", "host": {"name": "gateway-prod-01"}}),
            json!({"message": "request completed in 5 ms", "level": "INFO", "count": 7, "@timestamp": "2026-01-01T11:59:30.500Z", "source": "/data/logs/api/app.log"}),
        ];
        let mut documents = Vec::new();
        for (position, source) in sources.iter().enumerate() {
            let id = position.to_string();
            let context = DocumentContext {
                document_id: &id,
                raw_source: "",
                document_parsing_exception: false,
                names_document: true,
            };
            let indexed = mapping.index_document(source.as_object().unwrap(), &context).unwrap();
            documents.push(Doc { id, indexed });
        }
        (mapping, documents)
    }

    fn matching(query: Value) -> Vec<String> {
        let (mapping, documents) = corpus();
        let compiled = Query::parse(&query).unwrap().compile(&mapping, NOW).unwrap();
        documents
            .iter()
            .filter(|document| compiled.score(*document).is_some())
            .map(|document| document.id.clone())
            .collect()
    }

    #[test]
    fn the_seed_query_string_matches_tracebacks_exceptions_and_defend() {
        let query = json!({"query_string": {"query": "message:'Traceback' OR message:*Exception* OR source:*Defend*"}});
        assert_eq!(matching(query), vec!["0", "1", "2"]);
    }

    #[test]
    fn bool_filters_with_date_ranges_and_terms() {
        let window = json!({"bool": {"filter": [
            {"range": {"@timestamp": {"gt": "2026-01-01T11:58:00Z", "lte": "now", "format": "strict_date_optional_time"}}},
            {"terms": {"level": ["ERROR", "INFO"]}}
        ]}});
        assert_eq!(matching(window), vec!["0", "3"]);
        let millis = json!({"range": {"@timestamp": {"gte": NOW - 60_000, "format": "epoch_millis"}}});
        assert_eq!(matching(millis), vec!["0", "3"]);
        let seconds = json!({"range": {"@timestamp": {"lt": (NOW - 60_000) / 1000, "format": "epoch_second"}}});
        assert_eq!(matching(seconds), vec!["1", "2"]);
        let math = json!({"range": {"@timestamp": {"gte": "now-90s"}}});
        assert_eq!(matching(math), vec!["0", "3"]);
    }

    #[test]
    fn should_must_not_and_minimum_should_match() {
        let query = json!({"bool": {"should": [{"term": {"level": "ERROR"}}, {"range": {"count": {"gte": 7}}}], "minimum_should_match": 2}});
        assert_eq!(matching(query), vec!["1"]);
        let query = json!({"bool": {"must": [{"match": {"message": "completed login"}}], "must_not": [{"term": {"level": "WARN"}}]}});
        assert_eq!(matching(query), vec!["3"]);
        let query = json!({"bool": {"must": [{"match_all": {}}], "should": [{"term": {"level": "NOPE"}}]}});
        assert_eq!(matching(query).len(), 4, "should clauses are optional next to must");
    }

    #[test]
    fn term_on_text_is_not_analyzed_but_match_is() {
        assert!(matching(json!({"term": {"message": "Traceback"}})).is_empty());
        assert_eq!(matching(json!({"term": {"message": "traceback"}})), vec!["0"]);
        assert_eq!(matching(json!({"match": {"message": "TRACEBACK"}})), vec!["0"]);
        assert_eq!(matching(json!({"match_phrase": {"message": "most recent call"}})), vec!["0"]);
        assert_eq!(matching(json!({"term": {"host.name.keyword": "wallet-qa-01"}})), vec!["0"]);
    }

    #[test]
    fn exists_ids_wildcard_prefix() {
        assert_eq!(matching(json!({"exists": {"field": "host"}})), vec!["0", "1", "2"]);
        assert_eq!(matching(json!({"ids": {"values": ["2", "9"]}})), vec!["2"]);
        assert_eq!(matching(json!({"wildcard": {"level": {"value": "E*R"}}})), vec!["0", "1"]);
        assert_eq!(matching(json!({"prefix": {"source.keyword": "/opt"}})), vec!["2"]);
        assert!(matching(json!({"term": {"unmapped": "x"}})).is_empty());
    }

    #[test]
    fn query_string_defaults_negation_and_ranges() {
        assert_eq!(matching(json!({"query_string": {"query": "NOT level:ERROR"}})), vec!["2", "3"]);
        assert_eq!(matching(json!({"query_string": {"query": "count:[5 TO 7]"}})), vec!["0", "3"]);
        assert_eq!(matching(json!({"query_string": {"query": "\"suspicious login\""}})), vec!["2"]);
        // Like Elasticsearch, an analyzed term splits into optional tokens:
        // "01" alone also matches gateway-prod-01.
        assert_eq!(matching(json!({"query_string": {"query": "wallet-qa-01"}})), vec!["0", "2"]);
        assert_eq!(matching(json!({"query_string": {"query": "wallet-qa-01", "default_operator": "AND"}})), vec!["0"]);
        assert_eq!(matching(json!({"query_string": {"query": "level:ERROR AND count:>5"}})), vec!["1"]);
        assert_eq!(
            matching(json!({"query_string": {"query": "_exists_:host AND NOT host.name:wallet*"}})),
            vec!["1", "2"]
        );
    }

    #[test]
    fn bad_values_and_unknown_queries_are_errors() {
        let (mapping, _) = corpus();
        let error = Query::parse(&json!({"term": {"count": "abc"}})).unwrap().compile(&mapping, NOW).unwrap_err();
        assert_eq!(error.error_type, "query_shard_exception");
        assert_eq!(Query::parse(&json!({"fuzzy_thing": {}})).unwrap_err().error_type(), Some("parsing_exception"));
        let error = Query::parse(&json!({"bool": {"must": [], "nope": []}})).unwrap_err();
        assert_eq!(error.to_json().unwrap()["error"]["reason"], "[bool] query does not support [nope]");
        let date = Query::parse(&json!({"range": {"@timestamp": {"gte": "yesterday"}}}))
            .unwrap()
            .compile(&mapping, NOW)
            .unwrap_err();
        assert_eq!(date.error_type, "parse_exception");
    }

    #[test]
    fn wildcards_match_with_backtracking() {
        let chars = |text: &str| text.chars().collect::<Vec<_>>();
        assert!(wildcard_matches(&chars("*exception*"), &chars("java.lang.nullpointerexception")));
        assert!(wildcard_matches(&chars("a?c*"), &chars("abcdef")));
        assert!(!wildcard_matches(&chars("a*z"), &chars("abc")));
        assert!(wildcard_matches(&chars("a\\*"), &chars("a*")));
    }
}
