//! Field values of a log event.
//!
//! `Value` is the JSON data model plus one refinement: strings are `Str`, an
//! immutable UTF-8 view over a shared `bytes::Bytes` buffer. Sources that decode
//! a large buffer (SLS pulls, file reads) can hand out field values without
//! copying them, and cloning an event for fan-out never copies string data.
//!
//! Invariants:
//! - A `Str` always holds valid UTF-8; every constructor checks or guarantees it.
//! - `Value::Float` may hold NaN or infinities; they serialise as JSON `null`.
//! - Objects keep insertion order (`ObjectMap`, see `object_map`).

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use bytes::Bytes;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Field names. Most log field names fit the 24 inline bytes, so building an
/// event rarely allocates for its keys.
pub type KeyString = compact_str::CompactString;

pub use super::object_map::{ObjectMap, ObjectMapBuilder};

/// Creates an empty `ObjectMap` with room for `capacity` fields.
pub fn object_map_with_capacity(capacity: usize) -> ObjectMap {
    ObjectMap::with_capacity(capacity)
}

/// An immutable UTF-8 string backed by a shared byte buffer.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Str(Bytes);

impl Str {
    pub const fn from_static(text: &'static str) -> Str {
        Str(Bytes::from_static(text.as_bytes()))
    }

    /// Wraps `bytes` if they are valid UTF-8. The bytes are not copied.
    pub fn from_utf8(bytes: Bytes) -> Result<Str, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Str(bytes))
    }

    /// Wraps `bytes`, replacing invalid UTF-8 sequences with U+FFFD. Copies only
    /// when the input is invalid.
    pub fn from_utf8_lossy(bytes: Bytes) -> Str {
        // Log values are mostly short ASCII: checked inline, without the
        // general validator's call.
        if bytes.is_ascii() {
            return Str(bytes);
        }
        match std::str::from_utf8(&bytes) {
            Ok(_) => Str(bytes),
            Err(_) => Str::from(String::from_utf8_lossy(&bytes).into_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor guarantees the bytes are valid UTF-8 and
        // `Bytes` is immutable.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The underlying shared buffer (cheap to clone).
    pub fn as_shared_bytes(&self) -> &Bytes {
        &self.0
    }

    /// A sub-string sharing this buffer. `range` must lie on character boundaries.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Str {
        assert!(self.as_str().is_char_boundary(range.start) && self.as_str().is_char_boundary(range.end));
        Str(self.0.slice(range))
    }
}

impl Deref for Str {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Str {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Str {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Hash for Str {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl From<String> for Str {
    fn from(text: String) -> Str {
        Str(Bytes::from(text.into_bytes()))
    }
}

impl From<&str> for Str {
    fn from(text: &str) -> Str {
        Str(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl fmt::Debug for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Str {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Str {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One field value.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Boolean(bool),
    Integer(i64),
    Float(f64),
    String(Str),
    Array(Vec<Value>),
    Object(ObjectMap),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(text) => Some(text.as_str()),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&ObjectMap> {
        match self {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }

    pub fn as_object_mut(&mut self) -> Option<&mut ObjectMap> {
        match self {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }

    /// Numeric view: integers, floats, and strings holding a number (SLS sends
    /// every content value, `__time__` included, as a string).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Integer(number) => Some(*number as f64),
            Value::Float(number) => Some(*number),
            Value::String(text) => text.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// A short type name for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Boolean(_) => "boolean",
            Value::Integer(_) => "integer",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    /// Renders the value as text the way templates and alert bodies show it:
    /// strings bare, everything else as compact JSON.
    pub fn to_text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Value::String(text) => std::borrow::Cow::Borrowed(text.as_str()),
            Value::Null => std::borrow::Cow::Borrowed(""),
            other => std::borrow::Cow::Owned(serde_json::to_string(other).unwrap_or_default()),
        }
    }

    /// Approximate size of the value as JSON text, used for byte metrics and
    /// batch limits without serialising.
    pub fn estimated_json_size(&self) -> usize {
        match self {
            Value::Null => 4,
            Value::Boolean(_) => 5,
            Value::Integer(_) | Value::Float(_) => 8,
            Value::String(text) => text.len() + 2,
            Value::Array(items) => 2 + items.iter().map(|item| item.estimated_json_size() + 1).sum::<usize>(),
            Value::Object(map) => estimated_object_json_size(map),
        }
    }
}

pub(crate) fn estimated_object_json_size(map: &ObjectMap) -> usize {
    2 + map.iter().map(|(key, value)| key.len() + 4 + value.estimated_json_size()).sum::<usize>()
}

impl From<&str> for Value {
    fn from(text: &str) -> Value {
        Value::String(Str::from(text))
    }
}

impl From<String> for Value {
    fn from(text: String) -> Value {
        Value::String(Str::from(text))
    }
}

impl From<Str> for Value {
    fn from(text: Str) -> Value {
        Value::String(text)
    }
}

impl From<i64> for Value {
    fn from(number: i64) -> Value {
        Value::Integer(number)
    }
}

impl From<f64> for Value {
    fn from(number: f64) -> Value {
        Value::Float(number)
    }
}

impl From<bool> for Value {
    fn from(flag: bool) -> Value {
        Value::Boolean(flag)
    }
}

impl From<ObjectMap> for Value {
    fn from(map: ObjectMap) -> Value {
        Value::Object(map)
    }
}

impl From<serde_json::Value> for Value {
    fn from(json: serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(flag) => Value::Boolean(flag),
            serde_json::Value::Number(number) => match number.as_i64() {
                Some(integer) => Value::Integer(integer),
                None => Value::Float(number.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(text) => Value::from(text),
            serde_json::Value::Array(items) => Value::Array(items.into_iter().map(Value::from).collect()),
            serde_json::Value::Object(map) => {
                let mut object = object_map_with_capacity(map.len());
                for (key, value) in map {
                    object.insert(KeyString::from(key), Value::from(value));
                }
                Value::Object(object)
            }
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Boolean(flag) => serializer.serialize_bool(*flag),
            Value::Integer(number) => serializer.serialize_i64(*number),
            Value::Float(number) if number.is_finite() => serializer.serialize_f64(*number),
            Value::Float(_) => serializer.serialize_unit(),
            Value::String(text) => serializer.serialize_str(text.as_str()),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Object(map) => map.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Deserialize::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, flag: bool) -> Result<Value, E> {
        Ok(Value::Boolean(flag))
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<Value, E> {
        Ok(Value::Integer(number))
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<Value, E> {
        Ok(i64::try_from(number).map(Value::Integer).unwrap_or(Value::Float(number as f64)))
    }

    fn visit_f64<E: de::Error>(self, number: f64) -> Result<Value, E> {
        Ok(Value::Float(number))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Value, E> {
        Ok(Value::from(text))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Value, E> {
        Ok(Value::from(text))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Value, A::Error> {
        super::object_map::ObjectMapVisitor.visit_map(access).map(Value::Object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_order_and_types() {
        let text = r#"{"z":1,"a":"x","n":null,"f":1.5,"b":true,"arr":[1,"two"],"o":{"k":"v"}}"#;
        let value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&value).unwrap(), text);
    }

    #[test]
    fn lossy_construction_only_copies_invalid_input() {
        let valid = Bytes::from_static(b"hello");
        let text = Str::from_utf8_lossy(valid.clone());
        assert_eq!(text.as_bytes().as_ptr(), valid.as_ptr());
        let invalid = Str::from_utf8_lossy(Bytes::from_static(b"a\xffb"));
        assert_eq!(invalid.as_str(), "a\u{fffd}b");
    }

    #[test]
    fn non_finite_floats_serialise_as_null() {
        assert_eq!(serde_json::to_string(&Value::Float(f64::NAN)).unwrap(), "null");
    }

    #[test]
    fn numeric_strings_have_a_numeric_view() {
        assert_eq!(Value::from("1700000000").as_f64(), Some(1_700_000_000.0));
        assert_eq!(Value::from("abc").as_f64(), None);
    }
}
