//! HEC request bodies: events to envelopes (`/event`) or lines (`/raw`), cut
//! into requests and compressed.
//!
//! Owns: the envelope layout, the event time (`timestamp_field` plus SLS's
//! `__time_ns_part__`), metadata templates, indexed fields, and the split of
//! an encoded batch into requests of at most `batch.max_bytes`.
//!
//! Guarantees:
//! - An envelope is `{"time":..,"host":..,"source":..,"sourcetype":..,
//!   "index":..,"fields":{..},"event":{..}}` with only the keys that have a
//!   non-empty value and nothing else at the top level; several envelopes are
//!   concatenated with no separator (reference §3).
//! - `time` is written as decimal text, `SECONDS[.FRACTION]`, so the
//!   nanoseconds an SLS log carries survive exactly (an `f64` would round
//!   them at today's epoch). The time field(s) used are left out of `event`.
//! - Encoding is a pure function over a batch writing into a caller-owned
//!   `Vec<u8>`: no IO, no clock (the time for strftime templates is an
//!   argument), no intermediate `serde_json::Value`; JSON text comes from
//!   `json`, which writes what serde_json would, faster.
//! - An event whose metadata template cannot be rendered leaves the buffer
//!   untouched and is reported, never silently dropped.
//!
//! Never: sends anything, or mutates an event (a resend re-encodes the same
//! event to the same bytes).

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::json::{self, SharedRuns};
use crate::event::{FieldRef, LogEvent, Value};
use crate::template::{MissingField, Template, TemplateError};

/// Nanoseconds within the second, as the SLS SDK flattens them next to
/// `__time__`. Used when the timestamp field holds whole seconds.
pub const SLS_NANOSECONDS_FIELD: &str = "__time_ns_part__";

const NANOS_PER_SECOND: u32 = 1_000_000_000;
/// Where the SLS SDK's flattening puts `__time__` and `__time_ns_part__`
/// (after `__topic__` and `__source__`).
const SLS_TIME_POSITION: usize = 0;
const SLS_NANOSECONDS_POSITION: usize = 3;

/// Which HEC endpoint the sink posts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointTarget {
    /// `/services/collector/event`: JSON envelopes.
    #[default]
    Event,
    /// `/services/collector/raw`: one JSON line per event, metadata in the
    /// query string.
    Raw,
}

/// Request body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    Gzip,
    None,
}

/// An event's time: whole seconds since the epoch and nanoseconds within the
/// second. Only non-negative times exist here: Splunk refuses negative ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTime {
    pub seconds: u64,
    pub nanoseconds: u32,
}

impl EventTime {
    /// Reads seconds from an integer, a float, or a string holding either
    /// (SLS delivers `__time__` as text). `None` for anything else, for
    /// negative or non-finite numbers.
    pub fn from_value(value: &Value) -> Option<EventTime> {
        match value {
            Value::Integer(seconds) => EventTime::from_integer(*seconds),
            Value::Float(seconds) => EventTime::from_f64(*seconds),
            Value::String(text) => EventTime::parse(text.trim()),
            _ => None,
        }
    }

    /// `from_value` for a field read without building the event's map.
    pub fn from_field(field: &FieldRef<'_>) -> Option<EventTime> {
        match field {
            FieldRef::Value(value) => EventTime::from_value(value),
            FieldRef::Text(bytes) => EventTime::parse(String::from_utf8_lossy(bytes).trim()),
            FieldRef::Integer(seconds) => EventTime::from_integer(*seconds),
        }
    }

    fn from_integer(seconds: i64) -> Option<EventTime> {
        Some(EventTime { seconds: u64::try_from(seconds).ok()?, nanoseconds: 0 })
    }

    fn from_f64(seconds: f64) -> Option<EventTime> {
        if !seconds.is_finite() || seconds < 0.0 || seconds >= u64::MAX as f64 {
            return None;
        }
        let whole = seconds.trunc();
        let nanoseconds = (((seconds - whole) * f64::from(NANOS_PER_SECOND)).round() as u32).min(NANOS_PER_SECOND - 1);
        Some(EventTime { seconds: whole as u64, nanoseconds })
    }

    /// Decimal text is read digit by digit so no precision is lost; other
    /// number spellings (`1.7e9`) go through `f64`.
    fn parse(text: &str) -> Option<EventTime> {
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
            return EventTime::from_f64(text.parse().ok()?);
        }
        let seconds = whole.parse().ok()?;
        let mut nanoseconds = 0u32;
        for position in 0..9 {
            let digit = fraction.as_bytes().get(position).map_or(0, |byte| u32::from(byte - b'0'));
            nanoseconds = nanoseconds * 10 + digit;
        }
        Some(EventTime { seconds, nanoseconds })
    }

    /// Writes `SECONDS` or `SECONDS.FRACTION` without trailing zeros.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(itoa::Buffer::new().format(self.seconds).as_bytes());
        if self.nanoseconds != 0 {
            let mut digits = [0u8; 9];
            let mut rest = self.nanoseconds;
            for slot in digits.iter_mut().rev() {
                *slot = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
            let significant = digits.iter().rposition(|digit| *digit != b'0').map_or(0, |last| last + 1);
            out.push(b'.');
            out.extend_from_slice(&digits[..significant]);
        }
    }
}

/// A metadata key (`host`, `source`, `sourcetype`, `index`) as configured.
#[derive(Debug, Clone)]
enum MetadataValue {
    /// Rendered at build time: the text, and the JSON member `"key":"text"`.
    Static {
        text: Arc<str>,
        member: Vec<u8>,
    },
    Dynamic(Template),
}

#[derive(Debug, Clone)]
struct MetadataKey {
    name: &'static str,
    value: MetadataValue,
}

/// Metadata sent in the query string of a `/raw` request; every event of a
/// request shares it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawMetadata {
    pub pairs: Vec<(&'static str, Arc<str>)>,
}

/// Why an event cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot render \"{key}\": {missing}")]
pub struct UnrenderableMetadata {
    pub key: &'static str,
    pub missing: MissingField,
}

/// What the encoder is configured with (validated by the sink's config).
#[derive(Debug, Clone)]
pub struct EncoderSettings {
    pub target: EndpointTarget,
    /// `None` sends no `time` and leaves the event untouched.
    pub timestamp_field: Option<String>,
    pub indexed_fields: Vec<String>,
    pub host: Option<String>,
    pub source: Option<String>,
    pub sourcetype: Option<String>,
    pub index: Option<String>,
}

/// Turns events into HEC bodies. Cheap to share (`Arc`) across encoding tasks.
#[derive(Debug, Clone)]
pub struct HecEncoder {
    target: EndpointTarget,
    timestamp_field: Option<String>,
    indexed_fields: Vec<String>,
    metadata: Vec<MetadataKey>,
    /// Set when every metadata key is static, so raw requests share one value.
    static_raw_metadata: Option<Arc<RawMetadata>>,
}

/// Result of encoding a batch: `ends[i]` is where event `i`'s envelope ends in
/// the buffer (an event that failed has an empty envelope: its end equals
/// the previous one), plus the events that failed and why.
#[derive(Debug, Default)]
pub struct BatchEncoding {
    pub ends: Vec<usize>,
    pub failures: Vec<(usize, UnrenderableMetadata)>,
    /// `/raw` only: each event's query metadata, in order.
    pub raw_metadata: Vec<Arc<RawMetadata>>,
}

impl BatchEncoding {
    /// Takes the failures out and forgets the failed events' (empty)
    /// envelopes, so that `ends` and `raw_metadata` describe only the events
    /// that were encoded, in order.
    pub fn take_failures(&mut self) -> Vec<(usize, UnrenderableMetadata)> {
        let failures = std::mem::take(&mut self.failures);
        if !failures.is_empty() {
            let failed: Vec<usize> = failures.iter().map(|(index, _)| *index).collect();
            remove_positions(&mut self.ends, &failed);
            if !self.raw_metadata.is_empty() {
                remove_positions(&mut self.raw_metadata, &failed);
            }
        }
        failures
    }
}

/// Removes the items at `positions` (ascending) from `items`.
fn remove_positions<T>(items: &mut Vec<T>, positions: &[usize]) {
    let mut positions = positions.iter().copied().peekable();
    let mut position = 0;
    items.retain(|_| {
        let keep = positions.next_if_eq(&position).is_none();
        position += 1;
        keep
    });
}

impl HecEncoder {
    /// Parses the templates. Errors name the key.
    pub fn new(settings: EncoderSettings) -> Result<HecEncoder, (&'static str, TemplateError)> {
        let mut metadata = Vec::new();
        for (name, template) in [
            ("host", &settings.host),
            ("source", &settings.source),
            ("sourcetype", &settings.sourcetype),
            ("index", &settings.index),
        ] {
            let Some(template) = template else { continue };
            let parsed = Template::parse(template).map_err(|error| (name, error))?;
            let value = if parsed.is_dynamic() {
                MetadataValue::Dynamic(parsed)
            } else if template.is_empty() {
                continue;
            } else {
                // Without placeholders or strftime specifiers the text is the value.
                let mut member = Vec::new();
                write_member_name(&mut member, name);
                json::write_str(&mut member, template);
                MetadataValue::Static { text: Arc::from(template.as_str()), member }
            };
            metadata.push(MetadataKey { name, value });
        }
        let static_raw_metadata = metadata
            .iter()
            .map(|key| match &key.value {
                MetadataValue::Static { text, .. } => Some((key.name, Arc::clone(text))),
                MetadataValue::Dynamic(_) => None,
            })
            .collect::<Option<Vec<_>>>()
            .map(|pairs| Arc::new(RawMetadata { pairs }));
        Ok(HecEncoder {
            target: settings.target,
            timestamp_field: settings.timestamp_field.filter(|field| !field.is_empty()),
            indexed_fields: settings.indexed_fields,
            metadata,
            static_raw_metadata,
        })
    }

    pub fn target(&self) -> EndpointTarget {
        self.target
    }

    /// Encodes `events` in order, appending to `out`.
    pub fn encode_batch(&self, events: &[LogEvent], now: DateTime<Utc>, out: &mut Vec<u8>) -> BatchEncoding {
        let mut encoding = BatchEncoding { ends: Vec::with_capacity(events.len()), ..BatchEncoding::default() };
        let mut runs = SharedRuns::default();
        for (index, event) in events.iter().enumerate() {
            let result = match self.target {
                EndpointTarget::Event => self.encode_envelope(event, now, &mut runs, out),
                EndpointTarget::Raw => self.encode_raw_line(event, now, &mut runs, out).map(|metadata| {
                    encoding.raw_metadata.push(metadata);
                }),
            };
            if let Err(error) = result {
                if self.target == EndpointTarget::Raw {
                    encoding.raw_metadata.push(Arc::default());
                }
                encoding.failures.push((index, error));
            }
            encoding.ends.push(out.len());
        }
        encoding
    }

    /// Appends one `/event` envelope for `event`. On error `out` is unchanged.
    fn encode_envelope<'a>(
        &self,
        event: &'a LogEvent,
        now: DateTime<Utc>,
        runs: &mut SharedRuns<'a>,
        out: &mut Vec<u8>,
    ) -> Result<(), UnrenderableMetadata> {
        let mut rendered: [Option<Cow<'_, [u8]>>; 4] = [None, None, None, None];
        for (slot, key) in rendered.iter_mut().zip(&self.metadata) {
            *slot = match &key.value {
                MetadataValue::Static { member, .. } => Some(Cow::Borrowed(member.as_slice())),
                MetadataValue::Dynamic(template) => {
                    let text = template
                        .render_at(event, now)
                        .map_err(|missing| UnrenderableMetadata { key: key.name, missing })?;
                    if text.is_empty() {
                        None
                    } else {
                        let mut member = Vec::with_capacity(text.len() + key.name.len() + 6);
                        write_member_name(&mut member, key.name);
                        json::write_str(&mut member, &text);
                        Some(Cow::Owned(member))
                    }
                }
            };
        }

        let time = self.event_time(event);
        out.push(b'{');
        let mut separator = Separator::default();
        if let Some((time, _)) = &time {
            separator.write(out);
            out.extend_from_slice(b"\"time\":");
            time.write_json(out);
        }
        for member in rendered.iter().flatten() {
            separator.write(out);
            out.extend_from_slice(member);
        }
        self.write_indexed_fields(event, &mut separator, out);
        separator.write(out);
        out.extend_from_slice(b"\"event\":");
        let mut skipped = time.map(|(_, skipped)| skipped).unwrap_or_default();
        json::write_event(out, event, runs, |key| skipped.take(key));
        out.push(b'}');
        Ok(())
    }

    /// Appends one `/raw` line (the event as JSON, unchanged: Splunk's
    /// timestamp extraction reads the time from it) and returns the query
    /// metadata it needs. On error `out` is unchanged.
    fn encode_raw_line<'a>(
        &self,
        event: &'a LogEvent,
        now: DateTime<Utc>,
        runs: &mut SharedRuns<'a>,
        out: &mut Vec<u8>,
    ) -> Result<Arc<RawMetadata>, UnrenderableMetadata> {
        let metadata = match &self.static_raw_metadata {
            Some(shared) => Arc::clone(shared),
            None => {
                let mut pairs = Vec::with_capacity(self.metadata.len());
                for key in &self.metadata {
                    let text: Arc<str> = match &key.value {
                        MetadataValue::Static { text, .. } => Arc::clone(text),
                        MetadataValue::Dynamic(template) => template
                            .render_at(event, now)
                            .map_err(|missing| UnrenderableMetadata { key: key.name, missing })?
                            .into(),
                    };
                    if !text.is_empty() {
                        pairs.push((key.name, text));
                    }
                }
                Arc::new(RawMetadata { pairs })
            }
        };
        json::write_event(out, event, runs, |_| false);
        out.push(b'\n');
        Ok(metadata)
    }

    /// The event's time and the fields it came from (left out of `event`).
    fn event_time<'a>(&'a self, event: &LogEvent) -> Option<(EventTime, Skipped<'a>)> {
        let field = self.timestamp_field.as_deref()?;
        let mut time = EventTime::from_field(&field_at(event, field, SLS_TIME_POSITION)?)?;
        let mut skipped = Skipped { first: Some(field), second: None };
        if time.nanoseconds == 0 && field != SLS_NANOSECONDS_FIELD {
            let nanoseconds = field_at(event, SLS_NANOSECONDS_FIELD, SLS_NANOSECONDS_POSITION)
                .and_then(|field| match field {
                    FieldRef::Integer(number) | FieldRef::Value(&Value::Integer(number)) => u32::try_from(number).ok(),
                    FieldRef::Value(Value::String(text)) => text.trim().parse::<u32>().ok(),
                    FieldRef::Text(bytes) => String::from_utf8_lossy(bytes).trim().parse::<u32>().ok(),
                    FieldRef::Value(_) => None,
                })
                .filter(|nanoseconds| *nanoseconds < NANOS_PER_SECOND);
            if let Some(nanoseconds) = nanoseconds {
                time.nanoseconds = nanoseconds;
                skipped.second = Some(SLS_NANOSECONDS_FIELD);
            }
        }
        Some((time, skipped))
    }

    fn write_indexed_fields(&self, event: &LogEvent, separator: &mut Separator, out: &mut Vec<u8>) {
        let mut opened = false;
        for path in &self.indexed_fields {
            let Some(value) = event.get_path(path).filter(|value| !value.is_null()) else { continue };
            if opened {
                out.push(b',');
            } else {
                separator.write(out);
                out.extend_from_slice(b"\"fields\":{");
                opened = true;
            }
            json::write_str(out, path);
            out.push(b':');
            json::write_value(out, value);
        }
        if opened {
            out.push(b'}');
        }
    }
}

/// Looks at `likely_position` before hashing `name`: the SLS SDK flattens
/// `__time__` first and `__time_ns_part__` fourth, and two hash lookups per
/// event showed up in the encoding profile. Deferred fields answer directly.
fn field_at<'a>(event: &'a LogEvent, name: &str, likely_position: usize) -> Option<FieldRef<'a>> {
    if event.unbuilt_fields().is_some() {
        return event.field(name);
    }
    match event.fields().get_index(likely_position) {
        Some((key, value)) if key == name => Some(FieldRef::Value(value)),
        _ => event.field(name),
    }
}

/// Writes `,` before every member but the first.
#[derive(Default)]
struct Separator {
    started: bool,
}

impl Separator {
    fn write(&mut self, out: &mut Vec<u8>) {
        if self.started {
            out.push(b',');
        }
        self.started = true;
    }
}

fn write_member_name(out: &mut Vec<u8>, name: &str) {
    json::write_str(out, name);
    out.push(b':');
}

/// Top-level fields left out of the `event` object.
#[derive(Debug, Clone, Copy, Default)]
struct Skipped<'a> {
    first: Option<&'a str>,
    second: Option<&'a str>,
}

impl Skipped<'_> {
    /// Whether `key` is skipped. Keys are unique within an event, so a
    /// match is forgotten: once both have gone by, the rest of the keys are
    /// not compared.
    fn take(&mut self, key: &str) -> bool {
        if self.first == Some(key) {
            self.first = None;
        } else if self.second == Some(key) {
            self.second = None;
        } else {
            return false;
        }
        true
    }
}

/// One request's share of an encoded batch.
#[derive(Debug)]
pub struct RequestSlice {
    /// The events (indexes into the batch) it carries.
    pub events: Range<usize>,
    /// What goes on the wire: the body, compressed or not.
    pub payload: Bytes,
    /// Uncompressed body size.
    pub body_bytes: usize,
    /// Each event's envelope end, relative to this request's body.
    pub ends: Vec<usize>,
    /// `/raw` only.
    pub raw_metadata: Option<Arc<RawMetadata>>,
}

/// Cuts an encoded batch into requests of at most `max_bytes` uncompressed
/// (an envelope larger than that travels alone), and, for `/raw`, wherever
/// the query metadata changes. Failed events (empty envelopes) are not
/// carried: callers remove them first with `BatchEncoding::take_failures`.
pub fn split_into_requests(
    body: &[u8],
    encoding: &BatchEncoding,
    max_bytes: usize,
    compression: Compression,
) -> Vec<RequestSlice> {
    let mut requests = Vec::new();
    let mut first_event = 0;
    let mut body_start = 0;
    let raw = !encoding.raw_metadata.is_empty();
    for index in 0..encoding.ends.len() {
        let end = encoding.ends[index];
        let next_end = encoding.ends.get(index + 1).copied();
        let metadata_changes = raw
            && index + 1 < encoding.ends.len()
            && !same_metadata(&encoding.raw_metadata[index], &encoding.raw_metadata[index + 1]);
        let would_overflow = next_end.is_some_and(|next_end| next_end - body_start > max_bytes);
        if next_end.is_none() || metadata_changes || would_overflow {
            let bytes = &body[body_start..end];
            requests.push(RequestSlice {
                events: first_event..index + 1,
                payload: compress(bytes, compression),
                body_bytes: bytes.len(),
                ends: encoding.ends[first_event..=index].iter().map(|end| end - body_start).collect(),
                raw_metadata: raw.then(|| Arc::clone(&encoding.raw_metadata[first_event])),
            });
            first_event = index + 1;
            body_start = end;
        }
    }
    requests
}

fn same_metadata(left: &Arc<RawMetadata>, right: &Arc<RawMetadata>) -> bool {
    Arc::ptr_eq(left, right) || left == right
}

/// gzip at zlib's level-1 ratio: the fastest setting keeps compression
/// from dominating the sink's CPU, and repetitive JSON logs still shrink
/// about seven times (the `splunk_hec` bench prints the ratio).
pub fn compress(body: &[u8], compression: Compression) -> Bytes {
    match compression {
        Compression::None => Bytes::copy_from_slice(body),
        Compression::Gzip => Bytes::from(gzip(body)),
    }
}

/// gzip with ISA-L's igzip level 1 (built with the `isal` feature), falling
/// back to pipe's own gzip if it ever reports an error.
#[cfg(feature = "isal")]
fn gzip(body: &[u8]) -> Vec<u8> {
    use std::cell::RefCell;
    thread_local! {
        /// Output space reused across requests, so it is zeroed only when it
        /// grows (igzip needs an initialised slice to write into).
        static OUTPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    static FALLBACK_WARNING: std::sync::Once = std::sync::Once::new();
    // Deflate's worst case (stored blocks) plus the gzip header and trailer.
    let bound = body.len() + body.len() / 64 + 1024;
    let compressed = OUTPUT.with_borrow_mut(|output| {
        if output.len() < bound {
            output.resize(bound, 0);
        }
        isal::compress_into(body, output, isal::CompressionLevel::One, isal::Codec::Gzip)
            .map(|written| output[..written].to_vec())
    });
    compressed.unwrap_or_else(|error| {
        FALLBACK_WARNING.call_once(|| {
            tracing::warn!(%error, "ISA-L gzip failed; this and later failures fall back to pipe's own gzip");
        });
        crate::sinks::gzip::gzip(body)
    })
}

#[cfg(not(feature = "isal"))]
fn gzip(body: &[u8]) -> Vec<u8> {
    crate::sinks::gzip::gzip(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::io::Read;

    fn event(json: &str) -> LogEvent {
        let Value::Object(fields) = serde_json::from_str::<Value>(json).unwrap() else { panic!("not an object") };
        LogEvent::from_fields("test", fields)
    }

    fn settings() -> EncoderSettings {
        EncoderSettings {
            target: EndpointTarget::Event,
            timestamp_field: Some("__time__".into()),
            indexed_fields: Vec::new(),
            host: None,
            source: None,
            sourcetype: None,
            index: None,
        }
    }

    fn encode(encoder: &HecEncoder, event: &LogEvent) -> String {
        let mut out = Vec::new();
        let now = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap();
        encoder.encode_envelope(event, now, &mut SharedRuns::default(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn time_keeps_nanoseconds_and_leaves_the_event() {
        let encoder = HecEncoder::new(settings()).unwrap();
        let sls = event(r#"{"__time__":1700000000,"__topic__":"t","__time_ns_part__":123456789,"msg":"hi"}"#);
        assert_eq!(encode(&encoder, &sls), r#"{"time":1700000000.123456789,"event":{"__topic__":"t","msg":"hi"}}"#);
        let text_time = event(r#"{"__time__":"1700000000","__time_ns_part__":"500000000","msg":"hi"}"#);
        assert_eq!(encode(&encoder, &text_time), r#"{"time":1700000000.5,"event":{"msg":"hi"}}"#);
        let whole = event(r#"{"__time__":1700000000,"msg":"hi"}"#);
        assert_eq!(encode(&encoder, &whole), r#"{"time":1700000000,"event":{"msg":"hi"}}"#);
        let custom = HecEncoder::new(EncoderSettings { timestamp_field: Some("ts".into()), ..settings() }).unwrap();
        let late_time = event(r#"{"a":1,"__time__":7,"ts":1700000000.25,"__time_ns_part__":9,"b":2}"#);
        assert_eq!(
            encode(&custom, &late_time),
            r#"{"time":1700000000.25,"event":{"a":1,"__time__":7,"__time_ns_part__":9,"b":2}}"#,
            "only the configured field is left out when it carries its own fraction"
        );
    }

    /// SLS events as the source hands them over: deferred, not built.
    fn deferred_sls_events() -> Vec<LogEvent> {
        use crate::sources::sls::proto::{batch_metadata, flatten_log_groups, LogGroup, LogGroupList, LogTag};
        use prost::Message;
        #[derive(Clone, PartialEq, prost::Message)]
        struct Content {
            #[prost(string, tag = "1")]
            key: String,
            #[prost(string, tag = "2")]
            value: String,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        struct Log {
            #[prost(uint32, tag = "1")]
            time: u32,
            #[prost(message, repeated, tag = "2")]
            contents: Vec<Content>,
            #[prost(fixed32, optional, tag = "4")]
            time_ns: Option<u32>,
        }
        let log = |time_ns: Option<u32>, contents: &[(&str, &str)]| {
            let contents =
                contents.iter().map(|(key, value)| Content { key: key.to_string(), value: value.to_string() });
            Bytes::from(Log { time: 1_700_000_000, contents: contents.collect(), time_ns }.encode_to_vec())
        };
        let tag = |key: &'static str, value: &'static str| LogTag {
            key: Bytes::from_static(key.as_bytes()),
            value: Bytes::from_static(value.as_bytes()),
        };
        // Groups whose shared fields (`Visit::Shared`) come as one run or
        // two (around `__time_ns_part__`), with and without tags.
        let list = LogGroupList {
            log_groups: vec![
                LogGroup {
                    logs: vec![
                        log(
                            Some(250_000_000),
                            &[("host", "api-1"), ("message", "said \"hi\"\n"), ("ts", "1700000001.5")],
                        ),
                        log(None, &[("host", "api-2"), ("message", "caf\u{e9}")]),
                    ],
                    topic: Some(Bytes::from_static(b"app")),
                    source: Some(Bytes::from_static(b"10.0.0.1")),
                    log_tags: vec![tag("__path__", "/a.log")],
                },
                LogGroup {
                    logs: vec![log(None, &[("host", "db-1")]), log(Some(7), &[("host", "db-2"), ("ts", "1700000002")])],
                    topic: Some(Bytes::from_static(b"db")),
                    source: None,
                    log_tags: Vec::new(),
                },
                LogGroup {
                    logs: vec![
                        log(Some(1), &[("message", "one")]),
                        log(None, &[("message", "two")]),
                        log(Some(3), &[("message", "three")]),
                    ],
                    topic: None,
                    source: Some(Bytes::from_static(b"10.0.0.2")),
                    log_tags: vec![tag("__receive_time__", "1700000009"), tag("__hostname__", "web-1")],
                },
            ],
        };
        let mut events = Vec::new();
        flatten_log_groups(list, &batch_metadata(&Arc::from("sls"), &Arc::from("s/0")), &mut events).unwrap();
        assert!(events.iter().all(|event| event.unbuilt_fields().is_some()));
        events
    }

    #[test]
    fn deferred_sls_events_encode_exactly_as_built_ones() {
        let configurations = [
            settings(),
            EncoderSettings { timestamp_field: Some("ts".into()), ..settings() },
            // A field of a shared run: that run is written without it.
            EncoderSettings { timestamp_field: Some("__tag__:__receive_time__".into()), ..settings() },
            EncoderSettings { timestamp_field: None, ..settings() },
            EncoderSettings {
                host: Some("{{ host }}".into()),
                index: Some("main".into()),
                indexed_fields: vec!["__topic__".into(), "host".into()],
                ..settings()
            },
            EncoderSettings { target: EndpointTarget::Raw, ..settings() },
        ];
        let now = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap();
        for settings in configurations {
            let encoder = HecEncoder::new(settings.clone()).unwrap();
            let deferred = deferred_sls_events();
            let built = deferred_sls_events();
            built.iter().for_each(|event| assert!(!event.fields().is_empty()));
            let (mut from_deferred, mut from_built) = (Vec::new(), Vec::new());
            encoder.encode_batch(&deferred, now, &mut from_deferred);
            encoder.encode_batch(&built, now, &mut from_built);
            assert_eq!(
                String::from_utf8(from_deferred).unwrap(),
                String::from_utf8(from_built).unwrap(),
                "{settings:?}"
            );
        }
        let mut out = Vec::new();
        HecEncoder::new(settings()).unwrap().encode_batch(&deferred_sls_events()[..2], now, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            concat!(
                r#"{"time":1700000000.25,"event":{"__topic__":"app","__source__":"10.0.0.1","__tag__:__path__":"/a.log","#,
                r#""host":"api-1","message":"said \"hi\"\n","ts":"1700000001.5"}}"#,
                r#"{"time":1700000000,"event":{"__topic__":"app","__source__":"10.0.0.1","__tag__:__path__":"/a.log","#,
                "\"host\":\"api-2\",\"message\":\"caf\u{e9}\"}}",
            )
        );
    }

    #[test]
    fn unusable_times_send_no_time_and_keep_the_field() {
        let encoder = HecEncoder::new(settings()).unwrap();
        assert_eq!(encode(&encoder, &event(r#"{"__time__":"soon"}"#)), r#"{"event":{"__time__":"soon"}}"#);
        assert_eq!(encode(&encoder, &event(r#"{"__time__":-5}"#)), r#"{"event":{"__time__":-5}}"#);
        assert_eq!(encode(&encoder, &event(r#"{"msg":"x"}"#)), r#"{"event":{"msg":"x"}}"#);
        let disabled = HecEncoder::new(EncoderSettings { timestamp_field: Some(String::new()), ..settings() }).unwrap();
        assert_eq!(encode(&disabled, &event(r#"{"__time__":5}"#)), r#"{"event":{"__time__":5}}"#);
    }

    #[test]
    fn event_times_parse_exactly() {
        let parse = |value: Value| EventTime::from_value(&value);
        assert_eq!(
            parse(Value::from("1700000000.000000001")),
            Some(EventTime { seconds: 1_700_000_000, nanoseconds: 1 })
        );
        assert_eq!(parse(Value::from("12.5")), Some(EventTime { seconds: 12, nanoseconds: 500_000_000 }));
        assert_eq!(parse(Value::from("1.7e9")), Some(EventTime { seconds: 1_700_000_000, nanoseconds: 0 }));
        assert_eq!(parse(Value::Float(2.25)), Some(EventTime { seconds: 2, nanoseconds: 250_000_000 }));
        assert_eq!(parse(Value::Float(f64::NAN)), None);
        assert_eq!(parse(Value::from("")), None);
        assert_eq!(parse(Value::Boolean(true)), None);
        let mut out = Vec::new();
        EventTime { seconds: 7, nanoseconds: 120_000_000 }.write_json(&mut out);
        assert_eq!(out, b"7.12");
    }

    #[test]
    fn metadata_templates_and_indexed_fields() {
        let encoder = HecEncoder::new(EncoderSettings {
            indexed_fields: vec!["__source__".into(), "ctx.env".into(), "absent".into()],
            host: Some("{{ __tag__:hostname }}".into()),
            source: Some("sls:%Y".into()),
            sourcetype: Some("".into()),
            index: Some("main".into()),
            ..settings()
        })
        .unwrap();
        let log =
            event(r#"{"__time__":1,"__source__":"10.0.0.1","__tag__:hostname":"api-prod-03","ctx":{"env":"prod"}}"#);
        assert_eq!(
            encode(&encoder, &log),
            concat!(
                r#"{"time":1,"host":"api-prod-03","source":"sls:2026","index":"main","#,
                r#""fields":{"__source__":"10.0.0.1","ctx.env":"prod"},"#,
                r#""event":{"__source__":"10.0.0.1","__tag__:hostname":"api-prod-03","ctx":{"env":"prod"}}}"#
            )
        );
        let mut out = b"prefix".to_vec();
        let event = event(r#"{"msg":"x"}"#);
        let error = encoder.encode_envelope(&event, Utc::now(), &mut SharedRuns::default(), &mut out).unwrap_err();
        assert_eq!(error.to_string(), "cannot render \"host\": the event has no field \"__tag__:hostname\"");
        assert_eq!(out, b"prefix", "a failed envelope leaves the buffer as it was");
    }

    #[test]
    fn envelopes_escape_text_and_parse_back() {
        let encoder =
            HecEncoder::new(EncoderSettings { source: Some("a \"quoted\" source".into()), ..settings() }).unwrap();
        let text = encode(&encoder, &event(r#"{"msg":"line1\nline2 \"x\" \u0001"}"#));
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["source"], "a \"quoted\" source");
        assert_eq!(parsed["event"]["msg"], "line1\nline2 \"x\" \u{1}");
    }

    #[test]
    fn raw_lines_carry_the_whole_event_and_group_by_metadata() {
        let encoder = HecEncoder::new(EncoderSettings {
            target: EndpointTarget::Raw,
            index: Some("{{ team }}".into()),
            sourcetype: Some("json".into()),
            ..settings()
        })
        .unwrap();
        let events = [
            event(r#"{"__time__":1,"team":"a"}"#),
            event(r#"{"__time__":2,"team":"a"}"#),
            event(r#"{"__time__":3}"#),
            event(r#"{"__time__":4,"team":"b"}"#),
        ];
        let mut body = Vec::new();
        let encoding = encoder.encode_batch(&events, Utc::now(), &mut body);
        assert_eq!(encoding.failures.len(), 1);
        assert_eq!(encoding.failures[0].0, 2);
        assert_eq!(
            String::from_utf8(body.clone()).unwrap(),
            "{\"__time__\":1,\"team\":\"a\"}\n{\"__time__\":2,\"team\":\"a\"}\n{\"__time__\":4,\"team\":\"b\"}\n"
        );
        let mut kept = encoding;
        assert_eq!(kept.take_failures().len(), 1);
        assert_eq!(kept.ends.len(), 3);
        let requests = split_into_requests(&body, &kept, 1_000_000, Compression::None);
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].events, 0..2);
        assert_eq!(
            requests[0].raw_metadata.as_ref().unwrap().pairs,
            vec![("sourcetype", Arc::from("json")), ("index", Arc::from("a"))]
        );
        assert_eq!(&requests[1].payload[..], b"{\"__time__\":4,\"team\":\"b\"}\n");
    }

    #[test]
    fn gzip_state_reused_on_a_thread_starts_afresh_for_every_body() {
        let first: Vec<u8> = (0..200_000u32).flat_map(|number| number.to_le_bytes()).collect();
        let second = b"a second, shorter body".repeat(3);
        let mut decompressed = Vec::new();
        for body in [&first[..], &second[..], &first[..]] {
            let payload = compress(body, Compression::Gzip);
            decompressed.clear();
            flate2::read::GzDecoder::new(&payload[..]).read_to_end(&mut decompressed).unwrap();
            assert_eq!(decompressed, body);
        }
        assert_eq!(compress(&first, Compression::Gzip), compress(&first, Compression::Gzip));
    }

    #[cfg(feature = "isal")]
    #[test]
    fn with_the_isal_feature_igzip_compresses_every_body_including_incompressible_ones() {
        use rand::{Rng, SeedableRng};
        let text = br#"{"time":1700000000.5,"event":{"message":"request completed in 12 ms"}}"#.repeat(30_000);
        let mut noise = vec![0u8; 3 << 20];
        rand::rngs::SmallRng::seed_from_u64(7).fill(&mut noise[..]);
        for body in [&text[..], &noise[..], b""] {
            let payload = gzip(body);
            assert_ne!(payload, crate::sinks::gzip::gzip(body), "igzip wrote it, not the fallback");
            let mut decompressed = Vec::new();
            flate2::read::GzDecoder::new(&payload[..]).read_to_end(&mut decompressed).unwrap();
            assert_eq!(decompressed, body);
        }
    }

    #[test]
    fn batches_split_at_max_bytes_and_compress() {
        let encoder = HecEncoder::new(settings()).unwrap();
        let events: Vec<LogEvent> =
            (0..10).map(|n| event(&format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(80)))).collect();
        let mut body = Vec::new();
        let encoding = encoder.encode_batch(&events, Utc::now(), &mut body);
        let envelope = encoding.ends[0];
        let requests = split_into_requests(&body, &encoding, envelope * 3 + 1, Compression::Gzip);
        assert_eq!(
            requests.iter().map(|request| request.events.clone()).collect::<Vec<_>>(),
            vec![0..3, 3..6, 6..9, 9..10]
        );
        let mut decompressed = Vec::new();
        flate2::read::GzDecoder::new(&requests[1].payload[..]).read_to_end(&mut decompressed).unwrap();
        assert_eq!(decompressed, &body[encoding.ends[2]..encoding.ends[5]]);
        assert_eq!(requests[1].ends, vec![envelope, 2 * envelope, 3 * envelope]);
        let oversized = split_into_requests(&body, &encoding, 1, Compression::None);
        assert_eq!(oversized.len(), 10, "an envelope over the limit travels alone");
    }
}
