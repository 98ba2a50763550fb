//! ElastAlert's field lookup and value-to-text conventions.
//!
//! Owns three things every rule type shares: resolving a dotted path the way
//! ElastAlert's `lookup_es_key` does (longest literal key first, `.keyword`
//! suffix ignored, `name[N]` array indexing), turning a looked-up value into
//! the text ElastAlert would show or use as a key (Python `str()`), and
//! building partition keys from `query_key` (single, dotted or compound).
//!
//! Guarantees: lookups never allocate and never fail; a path that does not
//! resolve is `None`. Keys never borrow from event buffers (they are copied
//! into `KeyString`), so holding a key never pins a source's read buffer.

use std::fmt::Write as _;

use crate::event::{KeyString, ObjectMap, Value};

/// Looks up `path` in `map` with ElastAlert's rules (reference section 0.3).
pub fn lookup<'a>(map: &'a ObjectMap, path: &str) -> Option<&'a Value> {
    if let Some(value) = map.get(path) {
        return Some(value);
    }
    if let Some(open) = path.find('[') {
        return lookup_indexed(map, path, open);
    }
    if let Some(found) = lookup_dotted(map, path) {
        return Some(found);
    }
    // `user.keyword` names the keyword sub-field of `user` in Elasticsearch;
    // documents only carry `user`.
    let without_keyword = path.strip_suffix(".keyword")?;
    lookup(map, without_keyword)
}

fn lookup_dotted<'a>(map: &'a ObjectMap, path: &str) -> Option<&'a Value> {
    if let Some(value) = map.get(path) {
        return Some(value);
    }
    // Longest literal prefix first, so keys that contain dots win over nesting.
    let mut search_end = path.len();
    while let Some(dot) = path[..search_end].rfind('.') {
        let (prefix, rest) = (&path[..dot], &path[dot + 1..]);
        if let Some(value) = map.get(prefix) {
            match value {
                Value::Object(inner) => {
                    if let Some(found) = lookup_dotted(inner, rest) {
                        return Some(found);
                    }
                }
                // ElastAlert returns an intermediate scalar instead of null.
                Value::Array(_) => {}
                scalar => return Some(scalar),
            }
        }
        search_end = dot;
    }
    None
}

/// `name[N]rest`: N is a single digit and `rest` follows the bracket without a
/// dot; anything else resolves to nothing, as upstream.
fn lookup_indexed<'a>(map: &'a ObjectMap, path: &str, open: usize) -> Option<&'a Value> {
    let after_open = &path[open + 1..];
    let digit = after_open.chars().next()?.to_digit(10)? as usize;
    let rest = after_open.get(1..)?.strip_prefix(']')?;
    let array = lookup_dotted(map, &path[..open])?;
    let Value::Array(items) = array else {
        return None;
    };
    let element = items.get(digit)?;
    if rest.is_empty() {
        return Some(element);
    }
    if rest.starts_with('.') {
        return None;
    }
    match element {
        Value::Object(inner) => lookup(inner, rest),
        _ => None,
    }
}

/// Sets `path` in `map`, creating nested objects for each dotted component
/// (how upstream places a query_key value into an aggregation match).
pub fn set_nested(map: &mut ObjectMap, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            map.insert(KeyString::from(path), value);
        }
        Some((head, rest)) => {
            let entry = map.get_or_insert_with(head, || Value::Object(ObjectMap::default()));
            if !matches!(entry, Value::Object(_)) {
                *entry = Value::Object(ObjectMap::default());
            }
            if let Value::Object(inner) = entry {
                set_nested(inner, rest, value);
            }
        }
    }
}

/// True when ElastAlert treats the value as empty for `ignore_null` and
/// `alert_on_missing_field`: null, "", 0, empty list or map. `false` is not.
pub fn is_empty_value(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::String(text)) => text.is_empty(),
        Some(Value::Integer(number)) => *number == 0,
        Some(Value::Float(number)) => *number == 0.0,
        Some(Value::Array(items)) => items.is_empty(),
        Some(Value::Object(map)) => map.is_empty(),
        Some(Value::Boolean(_)) => false,
    }
}

/// Python `str(value)`: strings bare, `None`, `True`/`False`, Python float
/// repr, and `repr` of the elements inside lists and maps.
pub fn python_str(value: &Value) -> String {
    match value {
        Value::String(text) => text.as_str().to_owned(),
        other => {
            let mut out = String::new();
            write_python_repr(&mut out, other);
            out
        }
    }
}

/// Python `str()` of an optional value (`None` when missing).
pub fn python_str_opt(value: Option<&Value>) -> String {
    value.map_or_else(|| "None".to_owned(), python_str)
}

/// Python `repr(value)`.
pub fn write_python_repr(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("None"),
        Value::Boolean(true) => out.push_str("True"),
        Value::Boolean(false) => out.push_str("False"),
        Value::Integer(number) => {
            let _ = write!(out, "{number}");
        }
        Value::Float(number) => out.push_str(&python_float(*number)),
        Value::String(text) => write_python_string_repr(out, text),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_python_repr(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (index, (key, item)) in map.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_python_string_repr(out, key);
                out.push_str(": ");
                write_python_repr(out, item);
            }
            out.push('}');
        }
    }
}

/// Python's string repr: single quotes unless the text holds a single quote
/// and no double quote.
pub fn write_python_string_repr(out: &mut String, text: &str) {
    let quote = if text.contains('\'') && !text.contains('"') { '"' } else { '\'' };
    out.push(quote);
    for character in text.chars() {
        match character {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Python `repr(float)`: the shortest round-trip digits, scientific notation
/// when the decimal exponent is below -4 or at least 16, and always a `.0`
/// on integral values.
pub fn python_float(number: f64) -> String {
    if number.is_nan() {
        return "nan".to_owned();
    }
    if number.is_infinite() {
        return if number > 0.0 { "inf".to_owned() } else { "-inf".to_owned() };
    }
    let scientific = format!("{number:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if !(-4..16).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    let plain = format!("{number}");
    if plain.contains('.') {
        plain
    } else {
        format!("{plain}.0")
    }
}

/// Which field(s) partition a rule's state.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryKey {
    /// One path (may be dotted).
    Single(String),
    /// Two or more paths; upstream names the synthetic field by joining the
    /// paths with `,` and its value joins the parts' text with `, `.
    Compound { fields: Vec<String>, joined_name: String },
}

impl QueryKey {
    /// Builds from the configured list: empty means none, one element is the
    /// same as a string.
    pub fn from_fields(mut fields: Vec<String>) -> Option<QueryKey> {
        match fields.len() {
            0 => None,
            1 => fields.pop().map(QueryKey::Single),
            _ => {
                let joined_name = fields.join(",");
                Some(QueryKey::Compound { fields, joined_name })
            }
        }
    }

    /// The field name under which the key value appears in a match.
    pub fn name(&self) -> &str {
        match self {
            QueryKey::Single(path) => path,
            QueryKey::Compound { joined_name, .. } => joined_name,
        }
    }

    /// The key value's text, or `None` when a single key's value is missing
    /// (compound keys always have a value; missing parts read `None`).
    pub fn key_text(&self, fields: &ObjectMap) -> Option<KeyString> {
        match self {
            QueryKey::Single(path) => lookup(fields, path).filter(|value| !value.is_null()).map(key_string),
            QueryKey::Compound { fields: paths, .. } => {
                let mut joined = KeyString::default();
                for (index, path) in paths.iter().enumerate() {
                    if index > 0 {
                        joined.push_str(", ");
                    }
                    match lookup(fields, path) {
                        Some(value) if !value.is_null() => joined.push_str(&key_string(value)),
                        _ => joined.push_str("None"),
                    }
                }
                Some(joined)
            }
        }
    }

    /// Each component's text for a compound key, for aggregation matches
    /// that report every part separately.
    pub fn component_texts(&self, fields: &ObjectMap) -> Vec<Option<KeyString>> {
        match self {
            QueryKey::Single(path) => vec![lookup(fields, path).filter(|value| !value.is_null()).map(key_string)],
            QueryKey::Compound { fields: paths, .. } => {
                paths.iter().map(|path| lookup(fields, path).filter(|value| !value.is_null()).map(key_string)).collect()
            }
        }
    }
}

/// The text of a value used as a partition key, copied so it never borrows
/// the event's buffer.
pub fn key_string(value: &Value) -> KeyString {
    match value {
        Value::String(text) => KeyString::from(text.as_str()),
        Value::Integer(number) => {
            let mut out = KeyString::default();
            let _ = write!(out, "{number}");
            out
        }
        other => KeyString::from(python_str(other)),
    }
}

/// A deep copy whose strings own their bytes, so a value kept in rule
/// state never holds a source's whole read buffer alive.
pub fn owned_copy(value: &Value) -> Value {
    match value {
        Value::String(text) => Value::String(crate::event::Str::from(text.as_str())),
        Value::Array(items) => Value::Array(items.iter().map(owned_copy).collect()),
        Value::Object(map) => {
            let mut copy = crate::event::object_map_with_capacity(map.len());
            copy_object_into(&mut copy, map);
            Value::Object(copy)
        }
        other => other.clone(),
    }
}

/// Replaces `target`'s contents with an owned copy of `source`, reusing
/// `target`'s allocation.
pub fn copy_object_into(target: &mut ObjectMap, source: &ObjectMap) {
    target.clear();
    target.reserve(source.len());
    for (key, value) in source {
        target.insert(key.clone(), owned_copy(value));
    }
}

/// Parses a JSON text into an `ObjectMap` (test and replay helper).
pub fn object_from_json(json: serde_json::Value) -> Option<ObjectMap> {
    match Value::from(json) {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(json: &str) -> ObjectMap {
        object_from_json(serde_json::from_str(json).unwrap()).unwrap()
    }

    #[test]
    fn longest_literal_key_wins_then_nesting() {
        let fields = map(r#"{"a.b":{"c":1},"a":{"b":{"c":2}},"x":{"y.z":3}}"#);
        assert_eq!(lookup(&fields, "a.b.c"), Some(&Value::Integer(1)));
        assert_eq!(lookup(&fields, "x.y.z"), Some(&Value::Integer(3)));
        assert_eq!(lookup(&fields, "a.q"), None);
    }

    #[test]
    fn keyword_suffix_is_ignored_unless_literal() {
        let fields = map(r#"{"user":"bob","host":{"keyword":"k"}}"#);
        assert_eq!(lookup(&fields, "user.keyword").and_then(Value::as_str), Some("bob"));
        assert_eq!(lookup(&fields, "host.keyword").and_then(Value::as_str), Some("k"));
    }

    #[test]
    fn array_index_is_one_digit_and_sub_field_follows_without_dot() {
        let fields = map(r#"{"items":[{"price":1},{"price":2}]}"#);
        assert_eq!(lookup(&fields, "items[1]price"), Some(&Value::Integer(2)));
        assert_eq!(lookup(&fields, "items[1].price"), None);
        assert_eq!(lookup(&fields, "items[12]"), None);
        assert!(matches!(lookup(&fields, "items[0]"), Some(Value::Object(_))));
    }

    #[test]
    fn intermediate_scalar_is_returned() {
        let fields = map(r#"{"a":"x"}"#);
        assert_eq!(lookup(&fields, "a.b").and_then(Value::as_str), Some("x"));
    }

    #[test]
    fn python_text_forms() {
        assert_eq!(python_str(&Value::from(serde_json::json!(["qlo", 1, null, true]))), "['qlo', 1, None, True]");
        assert_eq!(python_str(&Value::Float(3.0)), "3.0");
        assert_eq!(python_str(&Value::Float(0.1)), "0.1");
        assert_eq!(python_str(&Value::Float(1e16)), "1e+16");
        assert_eq!(python_str(&Value::Float(1.5e-5)), "1.5e-05");
        assert_eq!(python_str(&Value::from(serde_json::json!({"k": "it's"}))), "{'k': \"it's\"}");
    }

    #[test]
    fn compound_keys_join_parts_and_mark_missing_ones() {
        let key = QueryKey::from_fields(vec!["host".into(), "user".into()]).unwrap();
        assert_eq!(key.name(), "host,user");
        let fields = map(r#"{"host":"h1"}"#);
        assert_eq!(key.key_text(&fields).unwrap().as_str(), "h1, None");
    }

    #[test]
    fn empty_values_follow_upstream() {
        assert!(is_empty_value(Some(&Value::Integer(0))));
        assert!(is_empty_value(Some(&Value::from(""))));
        assert!(!is_empty_value(Some(&Value::Boolean(false))));
        assert!(!is_empty_value(Some(&Value::from("x"))));
    }

    #[test]
    fn set_nested_builds_objects() {
        let mut fields = ObjectMap::default();
        set_nested(&mut fields, "a.b", Value::from("v"));
        assert_eq!(serde_json::to_string(&Value::Object(fields)).unwrap(), r#"{"a":{"b":"v"}}"#);
    }
}
