//! The Elasticsearch filter DSL as ElastAlert rules write it: JSON (or YAML /
//! TOML converted to JSON) to `QueryNode`.
//!
//! Owns the shape checks of every supported clause (listed in the `query`
//! module doc). Guarantees: an unknown clause type or key is an error that
//! names its path (`filter[1].bool.must[0].range.status`) and lists what is
//! accepted; keys that only affect scoring (`boost`, `_name`, `rewrite`) are
//! accepted and ignored. Never: guesses at unsupported options that change
//! which documents match (`analyzer`, `fuzziness` on `match`, phrase `slop`,
//! custom date formats); those are errors.

use serde_json::{Map, Value};

use super::lucene::{self, LuceneSettings};
use super::{
    BoolQuery, BoundValue, EpochUnit, FieldTarget, MinimumShouldMatch, Operator, QueryError, QueryNode, RangeBound,
    RangeQuery, ZeroTerms,
};

const CLAUSE_TYPES: &str = "query_string, term, terms, match, match_phrase, wildcard, prefix, regexp, fuzzy, range, \
exists, missing, bool, match_all, match_none, constant_score, filtered, query, and, or, not";

/// Keys that only influence scoring, caching or naming; they never change which documents match.
const IGNORED_KEYS: &[&str] = &["boost", "_name", "_cache", "_cache_key", "rewrite"];

fn error(path: &str, message: impl Into<String>) -> QueryError {
    QueryError::Dsl { path: path.to_string(), message: message.into() }
}

/// ElastAlert's `filter:` list: every clause must match.
pub(crate) fn parse_filter_list(list: &[Value]) -> Result<QueryNode, QueryError> {
    let mut clauses = list
        .iter()
        .enumerate()
        .map(|(index, clause)| parse_clause(clause, &format!("filter[{index}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(match clauses.len() {
        0 => QueryNode::MatchAll,
        1 => clauses.remove(0),
        _ => QueryNode::Bool(BoolQuery { filter: clauses, ..BoolQuery::default() }),
    })
}

/// One clause: an object with exactly one key naming the clause type.
pub(crate) fn parse_clause(value: &Value, path: &str) -> Result<QueryNode, QueryError> {
    let object = value.as_object().ok_or_else(|| {
        error(path, format!("expected a clause object such as {{\"term\": {{...}}}}, found {}", kind(value)))
    })?;
    let mut keys = object.keys().filter(|key| !IGNORED_KEYS.contains(&key.as_str()));
    let (Some(clause_type), None) = (keys.next(), keys.next()) else {
        let found: Vec<&String> = object.keys().collect();
        return Err(error(
            path,
            format!("expected exactly one clause type per object, found keys {found:?}; known types: {CLAUSE_TYPES}"),
        ));
    };
    let body = &object[clause_type];
    let path = format!("{path}.{clause_type}");
    let path = path.as_str();
    match clause_type.as_str() {
        "query" => match body {
            // The pre-5.x wrapper; ElastAlert rules also write it holding a list.
            Value::Array(items) => and_of(items, path),
            other => parse_clause(other, path),
        },
        "query_string" => parse_query_string(body, path),
        "term" => parse_term(body, path),
        "terms" => parse_terms(body, path),
        "match" => parse_match(body, path),
        "match_phrase" => parse_match_phrase(body, path),
        "wildcard" => parse_wildcard(body, path, false),
        "prefix" => parse_wildcard(body, path, true),
        "regexp" => parse_regexp(body, path),
        "fuzzy" => parse_fuzzy(body, path),
        "range" => parse_range(body, path),
        "exists" => Ok(QueryNode::Exists { field: field_target(&exists_field(body, path)?) }),
        "missing" => Ok(QueryNode::Bool(BoolQuery {
            must_not: vec![QueryNode::Exists { field: field_target(&exists_field(body, path)?) }],
            ..BoolQuery::default()
        })),
        "bool" => parse_bool(body, path),
        "match_all" => expect_no_options(body, path).map(|()| QueryNode::MatchAll),
        "match_none" => expect_no_options(body, path).map(|()| QueryNode::MatchNone),
        "constant_score" => {
            let object = options_object(body, path, &["filter"])?;
            let filter = object.get("filter").ok_or_else(|| error(path, "missing \"filter\""))?;
            parse_clause(filter, &format!("{path}.filter"))
        }
        "filtered" => {
            let object = options_object(body, path, &["query", "filter", "strategy"])?;
            let mut filter = Vec::new();
            for key in ["query", "filter"] {
                if let Some(clause) = object.get(key) {
                    filter.push(parse_clause(clause, &format!("{path}.{key}"))?);
                }
            }
            Ok(QueryNode::Bool(BoolQuery { filter, ..BoolQuery::default() }))
        }
        "and" => and_of(legacy_filters(body, path)?, path),
        "or" => {
            let should = clause_list(legacy_filters(body, path)?, path)?;
            Ok(QueryNode::Bool(BoolQuery { should, ..BoolQuery::default() }))
        }
        "not" => {
            let inner = match body.as_object() {
                Some(object) if object.len() == 1 && object.contains_key("filter") => &object["filter"],
                _ => body,
            };
            let clause = parse_clause(inner, path)?;
            Ok(QueryNode::Bool(BoolQuery { must_not: vec![clause], ..BoolQuery::default() }))
        }
        unknown => Err(error(path, format!("unknown clause type \"{unknown}\"; known types: {CLAUSE_TYPES}"))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn and_of(items: &[Value], path: &str) -> Result<QueryNode, QueryError> {
    let filter = clause_list(items, path)?;
    Ok(QueryNode::Bool(BoolQuery { filter, ..BoolQuery::default() }))
}

fn clause_list(items: &[Value], path: &str) -> Result<Vec<QueryNode>, QueryError> {
    items.iter().enumerate().map(|(index, item)| parse_clause(item, &format!("{path}[{index}]"))).collect()
}

/// `and` / `or` bodies: a list, or `{filters: [...]}`.
fn legacy_filters<'a>(body: &'a Value, path: &str) -> Result<&'a [Value], QueryError> {
    match body {
        Value::Array(items) => Ok(items),
        Value::Object(object) => match object.get("filters") {
            Some(Value::Array(items)) => Ok(items),
            _ => Err(error(path, "expected a list of clauses or {\"filters\": [...]}")),
        },
        other => Err(error(path, format!("expected a list of clauses, found {}", kind(other)))),
    }
}

/// The options object of a clause; keys outside `allowed` (and the ignored
/// scoring keys) are errors.
fn options_object<'a>(body: &'a Value, path: &str, allowed: &[&str]) -> Result<&'a Map<String, Value>, QueryError> {
    let object = body.as_object().ok_or_else(|| error(path, format!("expected an object, found {}", kind(body))))?;
    for key in object.keys() {
        if !allowed.contains(&key.as_str()) && !IGNORED_KEYS.contains(&key.as_str()) {
            return Err(error(path, format!("unknown key \"{key}\"; expected one of {}", allowed.join(", "))));
        }
    }
    Ok(object)
}

fn expect_no_options(body: &Value, path: &str) -> Result<(), QueryError> {
    match body {
        Value::Null => Ok(()),
        other => options_object(other, path, &[]).map(|_| ()),
    }
}

/// The `{field: spec}` body of a single-field clause.
fn single_field<'a>(body: &'a Value, path: &str) -> Result<(&'a str, &'a Value), QueryError> {
    let object =
        body.as_object().ok_or_else(|| error(path, format!("expected {{\"<field>\": ...}}, found {}", kind(body))))?;
    let mut fields = object.iter().filter(|(key, _)| !IGNORED_KEYS.contains(&key.as_str()));
    match (fields.next(), fields.next()) {
        (Some((field, spec)), None) => Ok((field, spec)),
        (None, _) => Err(error(path, "expected one field, found none")),
        (Some(_), Some(_)) => {
            let names: Vec<&String> = object.keys().collect();
            Err(error(path, format!("expected one field, found {names:?}; write one clause per field")))
        }
    }
}

fn field_target(name: &str) -> FieldTarget {
    if name == "*" {
        FieldTarget::All
    } else if name.contains('*') {
        FieldTarget::Pattern(name.to_string())
    } else {
        FieldTarget::Named(name.to_string())
    }
}

/// A scalar query value as text: strings as they are, numbers and booleans in JSON form.
fn scalar_text(value: &Value, path: &str) -> Result<String, QueryError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        Value::Bool(flag) => Ok(flag.to_string()),
        other => Err(error(path, format!("expected a string, number or boolean, found {}", kind(other)))),
    }
}

fn boolean_option(object: &Map<String, Value>, key: &str, path: &str) -> Result<bool, QueryError> {
    match object.get(key) {
        None => Ok(false),
        Some(Value::Bool(flag)) => Ok(*flag),
        Some(Value::String(text)) if text == "true" || text == "false" => Ok(text == "true"),
        Some(other) => Err(error(&format!("{path}.{key}"), format!("expected true or false, found {}", kind(other)))),
    }
}

fn exists_field(body: &Value, path: &str) -> Result<String, QueryError> {
    let object = options_object(body, path, &["field"])?;
    match object.get("field") {
        Some(Value::String(field)) => Ok(field.clone()),
        _ => Err(error(path, "expected {\"field\": \"<name>\"}")),
    }
}

fn parse_query_string(body: &Value, path: &str) -> Result<QueryNode, QueryError> {
    let object = options_object(
        body,
        path,
        &[
            "query",
            "default_field",
            "fields",
            "default_operator",
            "analyze_wildcard",
            "lenient",
            "allow_leading_wildcard",
            "auto_generate_synonyms_phrase_query",
            "escape",
        ],
    )?;
    let query = match object.get("query") {
        Some(Value::String(query)) => query,
        Some(other) => {
            return Err(error(&format!("{path}.query"), format!("expected a string, found {}", kind(other))))
        }
        None => return Err(error(path, "missing \"query\"")),
    };
    let mut settings = LuceneSettings::default();
    if let Some(default_field) = object.get("default_field") {
        let name =
            default_field.as_str().ok_or_else(|| error(&format!("{path}.default_field"), "expected a field name"))?;
        settings.default_field = field_target(name);
    }
    if let Some(fields) = object.get("fields") {
        let names = fields
            .as_array()
            .and_then(|items| {
                items
                    .iter()
                    .map(|item| item.as_str().map(|name| name.split('^').next().unwrap_or(name).to_string()))
                    .collect()
            })
            .ok_or_else(|| error(&format!("{path}.fields"), "expected a list of field names"))?;
        settings.default_field = FieldTarget::AnyOf(names);
    }
    if let Some(operator) = object.get("default_operator") {
        settings.default_operator = match operator.as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("or") => Operator::Or,
            Some("and") => Operator::And,
            _ => return Err(error(&format!("{path}.default_operator"), "expected \"OR\" or \"AND\"")),
        };
    }
    lucene::parse(query, &settings, &format!("{path}.query: "))
}

fn parse_term(body: &Value, path: &str) -> Result<QueryNode, QueryError> {
    let (field, spec) = single_field(body, path)?;
    let path = format!("{path}.{field}");
    let (value, case_insensitive) = match spec {
        Value::Object(_) => {
            let object = options_object(spec, &path, &["value", "case_insensitive"])?;
            let value = object.get("value").ok_or_else(|| error(&path, "missing \"value\""))?;
            (scalar_text(value, &path)?, boolean_option(object, "case_insensitive", &path)?)
        }
        other => (scalar_text(other, &path)?, false),
    };
    Ok(QueryNode::Term { field: field_target(field), value, case_insensitive })
}

fn parse_terms(body: &Value, path: &str) -> Result<QueryNode, QueryError> {
    let (field, spec) = single_field(body, path)?;
    let path = format!("{path}.{field}");
    let values =
        spec.as_array().ok_or_else(|| error(&path, format!("expected a list of values, found {}", kind(spec))))?;
    let should = values
        .iter()
        .enumerate()
        .map(|(index, value)| {
            Ok(QueryNode::Term {
                field: field_target(field),
                value: scalar_text(value, &format!("{path}[{index}]"))?,
                case_insensitive: false,
            })
        })
        .collect::<Result<Vec<_>, QueryError>>()?;
    if should.is_empty() {
        return Ok(QueryNode::MatchNone);
    }
    Ok(QueryNode::Bool(BoolQuery { should, ..BoolQuery::default() }))
}

fn parse_minimum_should_match(value: &Value, path: &str) -> Result<MinimumShouldMatch, QueryError> {
    let invalid = || {
        error(
            path,
            "expected an integer or a percentage such as \"75%\" (combinations like \"3<90%\" are not supported)",
        )
    };
    match value {
        Value::Number(number) => number.as_i64().map(MinimumShouldMatch::Count).ok_or_else(invalid),
        Value::String(text) => {
            let text = text.trim();
            match text.strip_suffix('%') {
                Some(percent) => percent.trim().parse().map(MinimumShouldMatch::Percent).map_err(|_| invalid()),
                None => text.parse().map(MinimumShouldMatch::Count).map_err(|_| invalid()),
            }
        }
        _ => Err(invalid()),
    }
}

fn parse_zero_terms(object: &Map<String, Value>, path: &str) -> Result<ZeroTerms, QueryError> {
    match object.get("zero_terms_query").map(|value| value.as_str()) {
        None | Some(Some("none")) => Ok(ZeroTerms::MatchNone),
        Some(Some("all")) => Ok(ZeroTerms::MatchAll),
        Some(_) => Err(error(&format!("{path}.zero_terms_query"), "expected \"none\" or \"all\"")),
    }
}

fn parse_match(body: &Value, path: &str) -> Result<QueryNode, QueryError> {
    let (field, spec) = single_field(body, path)?;
    let path = format!("{path}.{field}");
    let Value::Object(_) = spec else {
        return Ok(QueryNode::Match {
            field: field_target(field),
            query: scalar_text(spec, &path)?,
            operator: Operator::Or,
            minimum_should_match: None,
            zero_terms: ZeroTerms::MatchNone,
        });
    };
    if let Some(object) = spec.as_object() {
        for unsupported in ["analyzer", "fuzziness"] {
            if object.contains_key(unsupported) {
                return Err(error(
                    &path,
                    format!(
                        "\"{unsupported}\" is not supported; the standard analyzer is always used, without fuzziness"
                    ),
                ));
            }
        }
    }
    let object = options_object(
        spec,
        &path,
        &[
            "query",
            "operator",
            "minimum_should_match",
            "zero_terms_query",
            "lenient",
            "auto_generate_synonyms_phrase_query",
            "fuzzy_transpositions",
            "prefix_length",
            "max_expansions",
        ],
    )?;
    let query = object.get("query").ok_or_else(|| error(&path, "missing \"query\""))?;
    let operator = match object.get("operator").map(|value| value.as_str().map(str::to_ascii_lowercase)) {
        None => Operator::Or,
        Some(Some(operator)) if operator == "or" => Operator::Or,
        Some(Some(operator)) if operator == "and" => Operator::And,
        Some(_) => return Err(error(&format!("{path}.operator"), "expected \"or\" or \"and\"")),
    };
    let minimum_should_match = object
        .get("minimum_should_match")
        .map(|value| parse_minimum_should_match(value, &format!("{path}.minimum_should_match")))
        .transpose()?;
    Ok(QueryNode::Match {
        field: field_target(field),
        query: scalar_text(query, &path)?,
        operator,
        minimum_should_match,
        zero_terms: parse_zero_terms(object, &path)?,
    })
}

fn parse_match_phrase(body: &Value, path: &str) -> Result<QueryNode, QueryError> {
    let (field, spec) = single_field(body, path)?;
    let path = format!("{path}.{field}");
    let Value::Object(_) = spec else {
        return Ok(QueryNode::Phrase {
            field: field_target(field),
            query: scalar_text(spec, &path)?,
            zero_terms: ZeroTerms::MatchNone,
        });
    };
    let object = options_object(spec, &path, &["query", "slop", "zero_terms_query"])?;
    if let Some(slop) = object.get("slop") {
        if slop.as_u64() != Some(0) {
            return Err(error(&format!("{path}.slop"), "only slop 0 is supported"));
        }
    }
    let query = object.get("query").ok_or_else(|| error(&path, "missing \"query\""))?;
    Ok(QueryNode::Phrase {
        field: field_target(field),
        query: scalar_text(query, &path)?,
        zero_terms: parse_zero_terms(object, &path)?,
    })
}

/// Escapes wildcard characters so a prefix stays literal.
fn escape_wildcards(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() + 1);
    for character in text.chars() {
        if matches!(character, '*' | '?' | '\\') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

fn parse_wildcard(body: &Value, path: &str, prefix: bool) -> Result<QueryNode, QueryError> {
    let (field, spec) = single_field(body, path)?;
    let path = format!("{path}.{field}");
    let (value, case_insensitive) = match spec {
        Value::Object(_) => {
            let allowed: &[&str] =
                if prefix { &["value", "case_insensitive"] } else { &["value", "wildcard", "case_insensitive"] };
            let object = options_object(spec, &path, allowed)?;
            let value = object
                .get("value")
                .or_else(|| object.get("wildcard"))
                .ok_or_else(|| error(&path, "missing \"value\""))?;
            (scalar_text(value, &path)?, boolean_option(object, "case_insensitive", &path)?)
        }
        other => (scalar_text(other, &path)?, false),
    };
    let pattern = if prefix { format!("{}*", escape_wildcards(&value)) } else { value };
    Ok(QueryNode::Wildcard { field: field_target(field), pattern, case_insensitive, normalise: false })
}

fn parse_regexp(body: &Value, path: &str) -> Result<QueryNode, QueryError> {
    let (field, spec) = single_field(body, path)?;
    let path = format!("{path}.{field}");
    let (pattern, case_insensitive) = match spec {
        Value::Object(_) => {
            let object =
                options_object(spec, &path, &["value", "flags", "case_insensitive", "max_determinized_states"])?;
            let value = object.get("value").ok_or_else(|| error(&path, "missing \"value\""))?;
            (scalar_text(value, &path)?, boolean_option(object, "case_insensitive", &path)?)
        }
        other => (scalar_text(other, &path)?, false),
    };
    if let Some(operator) = lucene::lucene_only_regexp_operator(&pattern) {
        return Err(error(
            &path,
            format!("the Lucene-only operator '{operator}' is not supported; escape it with a backslash"),
        ));
    }
    if let Err(problem) = regex::Regex::new(&pattern) {
        return Err(error(&path, format!("invalid regular expression: {problem}")));
    }
    Ok(QueryNode::Regexp { field: field_target(field), pattern, case_insensitive })
}

fn parse_fuzzy(body: &Value, path: &str) -> Result<QueryNode, QueryError> {
    let (field, spec) = single_field(body, path)?;
    let path = format!("{path}.{field}");
    let (value, fuzziness) = match spec {
        Value::Object(_) => {
            let object = options_object(
                spec,
                &path,
                &["value", "fuzziness", "transpositions", "prefix_length", "max_expansions"],
            )?;
            let value = object.get("value").ok_or_else(|| error(&path, "missing \"value\""))?;
            (scalar_text(value, &path)?, object.get("fuzziness").cloned())
        }
        other => (scalar_text(other, &path)?, None),
    };
    let length = value.chars().count();
    let auto = match length {
        0..=2 => 0,
        3..=5 => 1,
        _ => 2,
    };
    let max_edits = match fuzziness {
        None => auto,
        Some(Value::String(text)) if text.eq_ignore_ascii_case("auto") => auto,
        Some(Value::Number(number)) if number.as_u64().is_some_and(|edits| edits <= 2) => {
            number.as_u64().unwrap_or(0) as u8
        }
        Some(Value::String(text)) if matches!(text.as_str(), "0" | "1" | "2") => text.parse().unwrap_or(0),
        Some(_) => return Err(error(&format!("{path}.fuzziness"), "expected 0, 1, 2 or \"AUTO\"")),
    };
    Ok(QueryNode::Fuzzy { field: field_target(field), value, max_edits, normalise: false })
}

/// Date formats whose strings `dates::parse_iso` reads; anything else would
/// silently compare differently, so it is refused.
const SUPPORTED_DATE_FORMATS: &[&str] = &[
    "strict_date_optional_time",
    "date_optional_time",
    "strict_date_optional_time_nanos",
    "strict_date_time",
    "date_time",
    "strict_date_time_no_millis",
    "date_time_no_millis",
    "strict_date",
    "date",
    "strict_date_hour_minute_second",
    "date_hour_minute_second",
    "epoch_millis",
    "epoch_second",
    "yyyy-MM-dd",
    "yyyy-MM-dd HH:mm:ss",
    "yyyy-MM-dd'T'HH:mm:ss",
    "yyyy-MM-dd'T'HH:mm:ss.SSSZ",
    "yyyy-MM-dd'T'HH:mm:ssZ",
    "yyyy/MM/dd HH:mm:ss",
    "yyyy/MM/dd",
];

fn parse_time_zone(text: &str, path: &str) -> Result<i32, QueryError> {
    let invalid =
        || error(path, format!("time zone {text:?} is not a fixed offset; write it as \"+08:00\" or \"UTC\""));
    if matches!(text, "Z" | "UTC" | "GMT" | "Etc/UTC" | "Etc/GMT") {
        return Ok(0);
    }
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(invalid()),
    };
    let digits: String = rest.chars().filter(|character| *character != ':').collect();
    if !(digits.len() == 2 || digits.len() == 4) || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(invalid());
    }
    let hours: i32 = digits[..2].parse().map_err(|_| invalid())?;
    let minutes: i32 = if digits.len() == 4 { digits[2..].parse().map_err(|_| invalid())? } else { 0 };
    if hours > 18 || minutes > 59 {
        return Err(invalid());
    }
    Ok(sign * (hours * 3600 + minutes * 60))
}

fn parse_range(body: &Value, path: &str) -> Result<QueryNode, QueryError> {
    let (field, spec) = single_field(body, path)?;
    let path = format!("{path}.{field}");
    let object = options_object(
        spec,
        &path,
        &["gt", "gte", "lt", "lte", "from", "to", "include_lower", "include_upper", "format", "time_zone", "relation"],
    )?;
    let bound_value = |key: &str| -> Result<Option<BoundValue>, QueryError> {
        match object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(BoundValue::Text(text.clone()))),
            Some(Value::Number(number)) => Ok(number.as_f64().map(BoundValue::Number)),
            Some(other) => {
                Err(error(&format!("{path}.{key}"), format!("expected a string or number, found {}", kind(other))))
            }
        }
    };
    let include_lower =
        object.get("include_lower").map_or(Ok(true), |_| boolean_option(object, "include_lower", &path))?;
    let include_upper =
        object.get("include_upper").map_or(Ok(true), |_| boolean_option(object, "include_upper", &path))?;
    let lower = match (bound_value("gt")?, bound_value("gte")?, bound_value("from")?) {
        (Some(value), _, _) => Some(RangeBound { value, inclusive: false }),
        (None, Some(value), _) => Some(RangeBound { value, inclusive: true }),
        (None, None, Some(value)) => Some(RangeBound { value, inclusive: include_lower }),
        (None, None, None) => None,
    };
    let upper = match (bound_value("lt")?, bound_value("lte")?, bound_value("to")?) {
        (Some(value), _, _) => Some(RangeBound { value, inclusive: false }),
        (None, Some(value), _) => Some(RangeBound { value, inclusive: true }),
        (None, None, Some(value)) => Some(RangeBound { value, inclusive: include_upper }),
        (None, None, None) => None,
    };
    if let Some(relation) = object.get("relation") {
        if relation.as_str().map(str::to_ascii_lowercase).as_deref() != Some("intersects") {
            return Err(error(&format!("{path}.relation"), "only \"intersects\" applies to single values"));
        }
    }
    let mut epoch_unit = EpochUnit::Guess;
    if let Some(format) = object.get("format") {
        let format_text = format.as_str().ok_or_else(|| error(&format!("{path}.format"), "expected a string"))?;
        for part in format_text.split("||").map(str::trim) {
            if !SUPPORTED_DATE_FORMATS.contains(&part) {
                return Err(error(
                    &format!("{path}.format"),
                    format!(
                        "date format {part:?} is not supported; use ISO 8601 bounds or one of {}",
                        SUPPORTED_DATE_FORMATS.join(", ")
                    ),
                ));
            }
        }
        if format_text.contains("epoch_millis") {
            epoch_unit = EpochUnit::Milliseconds;
        } else if format_text.contains("epoch_second") {
            epoch_unit = EpochUnit::Seconds;
        }
    }
    let time_zone_offset_seconds = match object.get("time_zone") {
        None => 0,
        Some(Value::String(zone)) => parse_time_zone(zone, &format!("{path}.time_zone"))?,
        Some(other) => {
            return Err(error(&format!("{path}.time_zone"), format!("expected a string, found {}", kind(other))))
        }
    };
    Ok(QueryNode::Range(RangeQuery {
        field: field_target(field),
        lower,
        upper,
        normalise: false,
        epoch_unit,
        time_zone_offset_seconds,
    }))
}

fn parse_bool(body: &Value, path: &str) -> Result<QueryNode, QueryError> {
    let object = options_object(
        body,
        path,
        &["must", "filter", "should", "must_not", "minimum_should_match", "adjust_pure_negative", "disable_coord"],
    )?;
    let occurrence = |key: &str| -> Result<Vec<QueryNode>, QueryError> {
        let clause_path = format!("{path}.{key}");
        match object.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => clause_list(items, &clause_path),
            Some(single) => Ok(vec![parse_clause(single, &clause_path)?]),
        }
    };
    let bool_query = BoolQuery {
        must: occurrence("must")?,
        filter: occurrence("filter")?,
        should: occurrence("should")?,
        must_not: occurrence("must_not")?,
        minimum_should_match: object
            .get("minimum_should_match")
            .map(|value| parse_minimum_should_match(value, &format!("{path}.minimum_should_match")))
            .transpose()?,
    };
    if bool_query.must.is_empty()
        && bool_query.filter.is_empty()
        && bool_query.should.is_empty()
        && bool_query.must_not.is_empty()
    {
        return Ok(QueryNode::MatchAll);
    }
    Ok(QueryNode::Bool(bool_query))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> QueryNode {
        parse_clause(&value, "filter").unwrap()
    }

    fn parse_error(value: Value) -> String {
        parse_clause(&value, "filter").unwrap_err().to_string()
    }

    #[test]
    fn term_forms() {
        let expected = QueryNode::Term {
            field: FieldTarget::Named("status".into()),
            value: "500".into(),
            case_insensitive: false,
        };
        assert_eq!(parse(json!({"term": {"status": 500}})), expected);
        assert_eq!(parse(json!({"term": {"status": {"value": "500", "boost": 2}}})), expected);
        assert!(matches!(
            parse(json!({"term": {"host": {"value": "A", "case_insensitive": true}}})),
            QueryNode::Term { case_insensitive: true, .. }
        ));
    }

    #[test]
    fn legacy_forms_unwrap() {
        let inner = json!({"query_string": {"query": "message:'Traceback' OR message:*Exception* OR source:*Defend*"}});
        let wrapped = parse(json!({"query": [inner.clone()]}));
        let QueryNode::Bool(bool_query) = wrapped else { panic!("expected a bool") };
        assert_eq!(bool_query.filter, vec![parse(inner.clone())]);
        assert_eq!(parse(json!({"query": inner.clone()})), parse(inner));
        assert!(
            matches!(parse(json!({"not": {"filter": {"term": {"a": "b"}}}})), QueryNode::Bool(BoolQuery { ref must_not, .. }) if must_not.len() == 1)
        );
        assert!(
            matches!(parse(json!({"or": {"filters": [{"term": {"a": "b"}}, {"term": {"a": "c"}}]}})), QueryNode::Bool(BoolQuery { ref should, .. }) if should.len() == 2)
        );
        assert!(
            matches!(parse(json!({"and": [{"term": {"a": "b"}}]})), QueryNode::Bool(BoolQuery { ref filter, .. }) if filter.len() == 1)
        );
        assert!(
            matches!(parse(json!({"filtered": {"filter": {"term": {"a": "b"}}}})), QueryNode::Bool(BoolQuery { ref filter, .. }) if filter.len() == 1)
        );
    }

    #[test]
    fn errors_name_the_path_and_the_fix() {
        assert_eq!(
            parse_error(json!({"bool": {"must": [{"range": {"status": {"gtee": 5}}}]}})),
            "filter.bool.must[0].range.status: unknown key \"gtee\"; expected one of gt, gte, lt, lte, from, to, include_lower, include_upper, format, time_zone, relation"
        );
        assert!(parse_error(json!({"termz": {"a": "b"}}))
            .starts_with("filter.termz: unknown clause type \"termz\"; known types: query_string"));
        assert!(parse_error(json!({"term": {"a": "b"}, "match": {"a": "b"}})).contains("exactly one clause type"));
        assert!(parse_error(json!({"terms": {"a": ["b"], "c": ["d"]}})).contains("write one clause per field"));
        assert_eq!(
            parse_error(json!({"query_string": {"query": "(a OR b"}})),
            "filter.query_string.query: query_string: expected ')' at position 7, found end of input, in \"(a OR b\""
        );
        assert!(parse_error(json!({"range": {"t": {"gte": "now", "time_zone": "Asia/Shanghai"}}}))
            .contains("not a fixed offset"));
        assert!(parse_error(json!({"range": {"t": {"gte": "01/02/2024", "format": "dd/MM/yyyy"}}}))
            .contains("not supported"));
        assert!(parse_error(json!({"match": {"m": {"query": "x", "fuzziness": 1}}})).contains("not supported"));
        assert!(parse_error(json!({"match_phrase": {"m": {"query": "x y", "slop": 2}}})).contains("slop 0"));
        assert!(parse_error(json!({"regexp": {"m": "a@b"}})).contains("Lucene-only"));
        assert!(parse_error(json!("term")).contains("expected a clause object"));
    }

    #[test]
    fn empty_bool_and_filter_list() {
        assert_eq!(parse(json!({"bool": {}})), QueryNode::MatchAll);
        assert_eq!(parse_filter_list(&[]).unwrap(), QueryNode::MatchAll);
        assert_eq!(parse(json!({"match_all": {}})), QueryNode::MatchAll);
        assert_eq!(parse(json!({"terms": {"a": []}})), QueryNode::MatchNone);
    }
}
