//! Parsing and validation of HEC request bodies: concatenated JSON envelopes
//! for `/event`, newline-broken text for `/raw` (reference §3).
//!
//! Guarantees: envelopes are validated strictly in order and the first
//! failure stops the batch, reporting its zero-based number; every envelope
//! before it is returned as accepted. Each envelope gets its own defaults
//! (token defaults and receipt time), never the previous envelope's values,
//! as real Splunk does. Pure functions: no IO, no clock, no shared state.
//!
//! Choices where the reference is silent or unverified, made strict so a
//! sender bug surfaces here rather than in production:
//! - a top-level value that is not an object (including an array) is code 6;
//! - an unknown top-level key is code 6 (real Splunk is erratic there);
//! - `event` of JSON `null` or `false` is code 6 (observed on real Splunk),
//!   a missing `event` is code 12, a blank string (empty or whitespace) 13;
//! - `fields` that is not an object, or holds an object or an array with a
//!   container inside, is code 15;
//! - `host`, `source`, `sourcetype`, `index` that are not strings are code 6.

use serde_json::{Map, Value};

use super::codes::HecCode;

/// Below this many "seconds" a time is read as seconds (the year 2400).
const MILLISECONDS_FROM: f64 = 13_569_465_600.0;
/// Below this many "milliseconds" a time is read as milliseconds (the year 9999);
/// anything larger is nanoseconds.
const NANOSECONDS_FROM: f64 = 253_402_300_800_000.0;

const KNOWN_ENVELOPE_KEYS: [&str; 7] = ["event", "time", "host", "source", "sourcetype", "index", "fields"];

/// What an envelope gets for every metadata key it leaves out.
#[derive(Debug, Clone)]
pub(crate) struct EnvelopeDefaults {
    pub host: String,
    pub source: String,
    pub sourcetype: String,
    pub index: String,
    /// Epoch seconds the request arrived at.
    pub receipt_time: f64,
}

/// One envelope that passed validation, with every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AcceptedEnvelope {
    /// Epoch seconds, truncated to microseconds as Splunk stores them.
    pub time: f64,
    pub host: String,
    pub source: String,
    pub sourcetype: String,
    pub index: String,
    pub fields: Option<Map<String, Value>>,
    /// The event as sent; JSON `null` for a metric envelope without `event`.
    pub event: Value,
}

/// Why a body, or the envelope numbered `event_number` in it, was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EnvelopeRejection {
    pub code: HecCode,
    /// Zero-based envelope number; `None` when the whole body is at fault.
    pub event_number: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BatchOutcome {
    pub accepted: Vec<AcceptedEnvelope>,
    pub rejection: Option<EnvelopeRejection>,
}

/// Validates an `/event` body. `index_allowed` answers whether the token may
/// write to an index.
pub(crate) fn parse_event_body(
    body: &[u8],
    defaults: &EnvelopeDefaults,
    index_allowed: &dyn Fn(&str) -> bool,
) -> BatchOutcome {
    if body.iter().all(u8::is_ascii_whitespace) {
        return BatchOutcome {
            accepted: Vec::new(),
            rejection: Some(EnvelopeRejection { code: HecCode::NoData, event_number: None }),
        };
    }
    let mut accepted = Vec::new();
    let stream = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    for (event_number, parsed) in stream.enumerate() {
        let validated = parsed
            .map_err(|_| HecCode::InvalidDataFormat)
            .and_then(|value| validate_envelope(value, defaults, index_allowed));
        match validated {
            Ok(envelope) => accepted.push(envelope),
            Err(code) => {
                return BatchOutcome {
                    accepted,
                    rejection: Some(EnvelopeRejection { code, event_number: Some(event_number) }),
                }
            }
        }
    }
    BatchOutcome { accepted, rejection: None }
}

fn validate_envelope(
    value: Value,
    defaults: &EnvelopeDefaults,
    index_allowed: &dyn Fn(&str) -> bool,
) -> Result<AcceptedEnvelope, HecCode> {
    let Value::Object(mut envelope) = value else {
        return Err(HecCode::InvalidDataFormat);
    };
    if envelope.keys().any(|key| !KNOWN_ENVELOPE_KEYS.contains(&key.as_str())) {
        return Err(HecCode::InvalidDataFormat);
    }
    let fields = match envelope.remove("fields") {
        None => None,
        Some(Value::Object(fields)) => Some(fields),
        Some(_) => return Err(HecCode::IndexedFieldsError),
    };
    let event = match envelope.remove("event") {
        None if fields.as_ref().is_some_and(carries_a_measurement) => Value::Null,
        None => return Err(HecCode::EventFieldRequired),
        Some(Value::Null) | Some(Value::Bool(false)) => return Err(HecCode::InvalidDataFormat),
        Some(Value::String(text)) if text.trim().is_empty() => return Err(HecCode::EventFieldBlank),
        Some(event) => event,
    };
    let time = match envelope.remove("time") {
        None => defaults.receipt_time,
        Some(time) => time_from_json(&time).ok_or(HecCode::InvalidDataFormat)?,
    };
    let host = metadata_string(&mut envelope, "host", &defaults.host)?;
    let source = metadata_string(&mut envelope, "source", &defaults.source)?;
    let sourcetype = metadata_string(&mut envelope, "sourcetype", &defaults.sourcetype)?;
    let index = metadata_string(&mut envelope, "index", &defaults.index)?;
    if let Some(fields) = &fields {
        if !fields.values().all(is_flat_field_value) {
            return Err(HecCode::IndexedFieldsError);
        }
    }
    if !index_allowed(&index) {
        return Err(HecCode::IncorrectIndex);
    }
    Ok(AcceptedEnvelope { time, host, source, sourcetype, index, fields, event })
}

fn metadata_string(envelope: &mut Map<String, Value>, key: &str, default: &str) -> Result<String, HecCode> {
    match envelope.remove(key) {
        None => Ok(default.to_string()),
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(HecCode::InvalidDataFormat),
    }
}

fn carries_a_measurement(fields: &Map<String, Value>) -> bool {
    fields.keys().any(|key| key.starts_with("metric_name:"))
        || (fields.contains_key("metric_name") && fields.contains_key("_value"))
}

fn is_flat_field_value(value: &Value) -> bool {
    match value {
        Value::Object(_) => false,
        Value::Array(items) => items.iter().all(|item| !matches!(item, Value::Object(_) | Value::Array(_))),
        _ => true,
    }
}

/// Reads an envelope `time`: a JSON number or a string holding one, in
/// seconds, or milliseconds/nanoseconds when its magnitude says so.
/// Negative or unparseable values are `None` (code 6).
pub(crate) fn time_from_json(time: &Value) -> Option<f64> {
    let number = match time {
        Value::Number(number) => number.as_f64()?,
        Value::String(text) => text.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    seconds_from_magnitude(number)
}

/// Reads a `time=` query parameter of the raw endpoint with the same rules.
pub(crate) fn time_from_query(text: &str) -> Option<f64> {
    seconds_from_magnitude(text.trim().parse::<f64>().ok()?)
}

fn seconds_from_magnitude(number: f64) -> Option<f64> {
    if !number.is_finite() || number < 0.0 {
        return None;
    }
    let seconds = if number < MILLISECONDS_FROM {
        number
    } else if number < NANOSECONDS_FROM {
        number / 1_000.0
    } else {
        number / 1_000_000_000.0
    };
    Some(truncate_to_microseconds(seconds))
}

/// Splunk keeps microseconds; finer digits are dropped, not rounded.
pub(crate) fn truncate_to_microseconds(seconds: f64) -> f64 {
    (seconds * 1_000_000.0).trunc() / 1_000_000.0
}

/// Breaks a raw body into events the way the default `LINE_BREAKER`
/// (`([\r\n]+)`) does; lines holding only whitespace are not events.
pub(crate) fn split_raw_lines(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .split(['\r', '\n'])
        .filter(|line| !line.trim().is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> EnvelopeDefaults {
        EnvelopeDefaults {
            host: "splunk:8088".into(),
            source: "http:testkit".into(),
            sourcetype: "httpevent".into(),
            index: "main".into(),
            receipt_time: 1_700_000_000.25,
        }
    }

    fn parse(body: &str) -> BatchOutcome {
        parse_event_body(body.as_bytes(), &defaults(), &|index| index != "forbidden")
    }

    fn rejection(body: &str) -> (u16, Option<usize>, usize) {
        let outcome = parse(body);
        let rejection = outcome.rejection.expect("the body must be rejected");
        (rejection.code.number(), rejection.event_number, outcome.accepted.len())
    }

    #[test]
    fn concatenated_envelopes_with_and_without_whitespace() {
        let outcome = parse("{\"event\":\"a\"}{\"event\":{\"k\":1}}\n \t{\"event\":\"c\",\"index\":\"other\"}");
        assert_eq!(outcome.rejection, None);
        assert_eq!(outcome.accepted.len(), 3);
        assert_eq!(outcome.accepted[1].event, serde_json::json!({"k": 1}));
        assert_eq!(outcome.accepted[2].index, "other");
    }

    #[test]
    fn metadata_never_carries_over_between_envelopes() {
        let outcome =
            parse(r#"{"event":"a","host":"h1","source":"s1","sourcetype":"t1","index":"i1","time":5}{"event":"b"}"#);
        let second = &outcome.accepted[1];
        assert_eq!(second.host, "splunk:8088");
        assert_eq!(second.source, "http:testkit");
        assert_eq!(second.sourcetype, "httpevent");
        assert_eq!(second.index, "main");
        assert_eq!(second.time, 1_700_000_000.25);
        assert_eq!(outcome.accepted[0].time, 5.0);
    }

    #[test]
    fn empty_and_whitespace_bodies_are_no_data() {
        assert_eq!(rejection(""), (5, None, 0));
        assert_eq!(rejection(" \n\t"), (5, None, 0));
    }

    #[test]
    fn each_envelope_error_reports_its_number_and_keeps_the_prefix() {
        let ok = r#"{"event":"ok"}"#;
        assert_eq!(rejection(&format!("{ok}{{\"time\":1}}")), (12, Some(1), 1));
        assert_eq!(rejection(&format!("{ok}{ok}{{\"event\":\"\"}}{ok}")), (13, Some(2), 2));
        assert_eq!(rejection(&format!("{ok}{{\"event\":\" \"}}")), (13, Some(1), 1));
        assert_eq!(rejection(&format!("{ok}{{\"event\":null}}")), (6, Some(1), 1));
        assert_eq!(rejection(&format!("{ok}{{\"event\":false}}")), (6, Some(1), 1));
        assert_eq!(rejection(&format!("{ok}{{\"event\":\"x\",\"time\":\"soon\"}}")), (6, Some(1), 1));
        assert_eq!(rejection(&format!("{ok}{{\"event\":\"x\",\"time\":-1}}")), (6, Some(1), 1));
        assert_eq!(rejection(&format!("{ok}{{\"event\":\"x\",\"fields\":{{\"a\":{{\"b\":1}}}}}}")), (15, Some(1), 1));
        assert_eq!(rejection(&format!("{ok}{{\"event\":\"x\",\"fields\":{{\"a\":[[1]]}}}}")), (15, Some(1), 1));
        assert_eq!(rejection(&format!("{ok}{{\"event\":\"x\",\"index\":\"forbidden\"}}")), (7, Some(1), 1));
        assert_eq!(rejection(&format!("{ok}{{\"event\":\"x\",\"extra\":1}}")), (6, Some(1), 1));
        assert_eq!(rejection(&format!("{ok}{{\"event\":\"x\",\"host\":5}}")), (6, Some(1), 1));
        assert_eq!(rejection(&format!("{ok}{{\"event\":\"x\"")), (6, Some(1), 1));
        assert_eq!(rejection(&format!("{ok}[{ok}]")), (6, Some(1), 1));
        assert_eq!(rejection(&format!("{ok}garbage")), (6, Some(1), 1));
    }

    #[test]
    fn empty_objects_and_flat_fields_are_accepted() {
        let outcome = parse(r#"{"event":{}}{"event":[]}{"event":"x","fields":{"a":"1","b":2,"c":["x",3]}}"#);
        assert_eq!(outcome.rejection, None);
        assert_eq!(outcome.accepted.len(), 3);
    }

    #[test]
    fn metric_envelopes_need_no_event() {
        let outcome = parse(r#"{"fields":{"metric_name:cpu":1.5}}{"fields":{"metric_name":"m","_value":2}}"#);
        assert_eq!(outcome.rejection, None);
        assert_eq!(outcome.accepted[0].event, Value::Null);
        assert_eq!(rejection(r#"{"fields":{"a":"b"}}"#), (12, Some(0), 0));
    }

    #[test]
    fn time_magnitudes_and_precision() {
        assert_eq!(time_from_json(&serde_json::json!(1433188255.5)), Some(1433188255.5));
        assert_eq!(time_from_json(&serde_json::json!("1433188255.500")), Some(1433188255.5));
        assert_eq!(time_from_json(&serde_json::json!(1433188255500u64)), Some(1433188255.5));
        assert_eq!(time_from_json(&serde_json::json!(1433188255500000000u64)), Some(1433188255.5));
        let truncated = time_from_json(&serde_json::json!(1.1234567)).unwrap();
        assert!((truncated - 1.123456).abs() < 1e-9, "{truncated}");
        assert_eq!(time_from_json(&serde_json::json!(true)), None);
        assert_eq!(time_from_query("-5"), None);
        assert_eq!(time_from_query("1700000000"), Some(1_700_000_000.0));
    }

    #[test]
    fn raw_bodies_break_on_newlines() {
        assert_eq!(split_raw_lines(b"one\r\ntwo\n\n  \nthree"), vec!["one", "two", "three"]);
        assert!(split_raw_lines(b"\n\n").is_empty());
    }
}
