//! The PullLogs body: LZ4 block decompression, protobuf decoding and the
//! SDK's flattening of log groups into events.
//!
//! `LogGroupList`, `LogGroup` and `LogTag` are `prost` messages with the
//! field numbers of the service's `log.proto` (proto2). Every string field is
//! declared `bytes` (wire-compatible) as `bytes::Bytes`, so decoding the
//! decompressed buffer copies no text: each one is a slice of that buffer.
//! The innermost message, `Log` (`1: time`, `2: Content {1: key, 2:
//! value}`, `4: time_ns` fixed32), is kept as its encoded bytes and walked by
//! hand while its event is built: keys are read in place into `KeyString`s
//! (inline when short) and each value becomes a `Str` over a slice of the
//! buffer (no copy when it is valid UTF-8; invalid sequences are replaced,
//! copying only that value). That skips a per-log `Vec` of contents and a
//! reference count per key, which were most of the decode cost. Fields 2
//! (`Reserved`) and 5 (`MachineUUID`) of a group, and unknown fields of a
//! log, are skipped.
//!
//! Flattening follows the Python SDK's `loggroups_to_flattern_list`: one
//! event per log with `__time__` (integer), `__topic__`, `__source__`,
//! `__time_ns_part__` (integer, only when non-zero), `__tag__:KEY` per group
//! tag, then the contents in order; a later key overwrites an earlier one in
//! place. Each event's `byte_size` is its raw size: the key and value lengths
//! of its contents and its group's tags, plus topic, source and 4 bytes of
//! time (`DemoLog::raw_size` counts the same way).
//!
//! Decompressed bodies come from a small pool and return to it when the last
//! event slicing them is dropped (see `BODY_BUFFERS`).
//!
//! Guarantees: malformed input (a bad LZ4 block, a size that does not match,
//! bad protobuf at any level, a group count that differs from `x-log-count`)
//! is a `BodyError`, never a panic, and a pull that fails to flatten adds no
//! events. Never does IO.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message;

use crate::event::{
    BatchNotifier, EventFinalizer, EventFinalizers, EventMetadata, KeyString, LogEvent, ObjectMapBuilder, Str, Value,
};

/// Refuse to allocate more than this for one decompressed body. The service
/// sends at most 1000 log groups of at most 5 MB each per pull, so a larger
/// `x-log-bodyrawsize` can only be a broken header.
pub const MAX_RAW_BODY_BYTES: usize = 1 << 30;

/// The body of a PullLogs response.
#[derive(Clone, PartialEq, Message)]
pub struct LogGroupList {
    #[prost(message, repeated, tag = "1")]
    pub log_groups: Vec<LogGroup>,
}

/// Logs sharing one topic, source and tag set. Each log is kept as its
/// encoded `Log` message (a length-delimited field is wire-compatible with
/// `bytes`) and walked by `flatten_log_groups` straight into an event, so no
/// per-log structure is built and thrown away.
#[derive(Clone, PartialEq, Message)]
pub struct LogGroup {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    pub logs: Vec<Bytes>,
    #[prost(bytes = "bytes", optional, tag = "3")]
    pub topic: Option<Bytes>,
    #[prost(bytes = "bytes", optional, tag = "4")]
    pub source: Option<Bytes>,
    #[prost(message, repeated, tag = "6")]
    pub log_tags: Vec<LogTag>,
}

#[derive(Clone, PartialEq, Message)]
pub struct LogTag {
    #[prost(bytes = "bytes", required, tag = "1")]
    pub key: Bytes,
    #[prost(bytes = "bytes", required, tag = "2")]
    pub value: Bytes,
}

/// How a PullLogs body is compressed (`x-log-compresstype`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compression {
    None,
    Lz4,
    /// A type this client never asks for; the body cannot be read.
    Other(String),
}

impl Compression {
    /// From the `x-log-compresstype` header; absent or empty is uncompressed.
    pub fn from_header(value: Option<&str>) -> Compression {
        match value.map(str::trim) {
            None | Some("") => Compression::None,
            Some(name) if name.eq_ignore_ascii_case("lz4") => Compression::Lz4,
            Some(name) => Compression::Other(name.to_string()),
        }
    }
}

/// Why a PullLogs body could not be read. The pull is retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the LZ4 block does not decompress to the announced {raw_size} bytes: {reason}")]
    Lz4 { raw_size: usize, reason: String },
    #[error("x-log-bodyrawsize announces {raw_size} bytes, over the {MAX_RAW_BODY_BYTES}-byte limit")]
    RawSizeTooLarge { raw_size: usize },
    #[error("the uncompressed body has {actual} bytes but x-log-bodyrawsize says {announced}")]
    RawSizeMismatch { announced: usize, actual: usize },
    #[error("the body is compressed with {0:?}, which this client does not read (it asks for lz4)")]
    UnsupportedCompression(String),
    #[error("the body is not a valid LogGroupList: {0}")]
    Protobuf(String),
    #[error("the body holds {decoded} log groups but x-log-count says {announced}")]
    CountMismatch { announced: usize, decoded: usize },
}

impl BodyError {
    /// The `error_code` label under which the retry is counted.
    pub fn code(&self) -> &'static str {
        match self {
            BodyError::Lz4 { .. } | BodyError::RawSizeTooLarge { .. } | BodyError::RawSizeMismatch { .. } => {
                "InvalidLz4Body"
            }
            BodyError::UnsupportedCompression(_) => "UnsupportedCompression",
            BodyError::Protobuf(_) | BodyError::CountMismatch { .. } => "InvalidProtobufBody",
        }
    }
}

/// The uncompressed protobuf of a pull body.
pub fn decompress(body: Bytes, compression: &Compression, raw_size: usize) -> Result<Bytes, BodyError> {
    match compression {
        Compression::None => {
            if body.len() != raw_size && raw_size != 0 {
                return Err(BodyError::RawSizeMismatch { announced: raw_size, actual: body.len() });
            }
            Ok(body)
        }
        Compression::Lz4 => {
            if raw_size > MAX_RAW_BODY_BYTES {
                return Err(BodyError::RawSizeTooLarge { raw_size });
            }
            if raw_size == 0 {
                // The SDKs skip decompression of empty pulls; so does this.
                return Ok(Bytes::new());
            }
            let mut raw = PooledBody::take(raw_size);
            let written = lz4_flex::block::decompress_into(&body, &mut raw.buffer)
                .map_err(|error| BodyError::Lz4 { raw_size, reason: error.to_string() })?;
            if written != raw_size {
                return Err(BodyError::RawSizeMismatch { announced: raw_size, actual: written });
            }
            Ok(Bytes::from_owner(raw))
        }
        Compression::Other(name) => Err(BodyError::UnsupportedCompression(name.clone())),
    }
}

/// Decompressed bodies kept for reuse. A body lives as long as any event
/// of its pull (every field value is a slice of it), so it is freed on
/// whichever thread drops the last event, usually a sink's after delivery.
/// Handing it back to the allocator there, and asking for a fresh one on the
/// decoding thread, made the kernel zero new pages for every pull (about
/// 5 % of the SLS → Splunk process in `perf`); a reused buffer is already
/// mapped and needs no zeroing before LZ4 overwrites it.
static BODY_BUFFERS: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
/// At most this many idle buffers are kept (a pull of 1 000 log groups
/// decompresses to a few MB, so this bounds idle memory to tens of MB).
const MAX_IDLE_BODY_BUFFERS: usize = 8;
/// Larger bodies are not kept: rare, and they would pin too much memory.
const MAX_POOLED_BODY_BYTES: usize = 16 << 20;

/// A decompressed body that returns its buffer to `BODY_BUFFERS` when the
/// last `Bytes` slice of it is dropped.
struct PooledBody {
    buffer: Vec<u8>,
}

impl PooledBody {
    /// A buffer of exactly `size` bytes, reused when one is idle. Its
    /// contents are whatever the last body left there: the caller
    /// overwrites all of it.
    fn take(size: usize) -> PooledBody {
        let idle = if size <= MAX_POOLED_BODY_BYTES {
            BODY_BUFFERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop()
        } else {
            None
        };
        let mut buffer = idle.unwrap_or_default();
        buffer.resize(size, 0);
        PooledBody { buffer }
    }
}

impl AsRef<[u8]> for PooledBody {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if self.buffer.capacity() > MAX_POOLED_BODY_BYTES {
            return;
        }
        let mut idle = BODY_BUFFERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < MAX_IDLE_BODY_BUFFERS {
            idle.push(std::mem::take(&mut self.buffer));
        }
    }
}

/// Decodes an uncompressed body; values stay slices of `raw`.
pub fn decode_log_group_list(raw: Bytes) -> Result<LogGroupList, BodyError> {
    LogGroupList::decode(raw).map_err(|error| BodyError::Protobuf(error.to_string()))
}

/// Decompresses and decodes a pull body, checking the announced group count.
pub fn decode_pull_body(
    body: Bytes,
    compression: &Compression,
    raw_size: usize,
    announced_groups: usize,
) -> Result<LogGroupList, BodyError> {
    let list = decode_log_group_list(decompress(body, compression, raw_size)?)?;
    if list.log_groups.len() != announced_groups {
        return Err(BodyError::CountMismatch { announced: announced_groups, decoded: list.log_groups.len() });
    }
    Ok(list)
}

/// What flattening one pull produced besides the events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlattenSummary {
    pub log_groups: usize,
    /// Sum of the events' `byte_size`.
    pub raw_bytes: usize,
    /// Server receive time (unix seconds) of the last non-empty log group:
    /// its `__receive_time__` tag, else the time of its last log.
    pub last_receive_time: Option<u32>,
}

const RECEIVE_TIME_TAG: &[u8] = b"__receive_time__";

/// The fields of one encoded `Log`: field 1 `time` (uint32), field 2
/// `contents` (`Content { 1: key, 2: value }`), field 4 `time_ns` (fixed32).
/// `contents` holds (key, value) byte ranges within the log's buffer.
struct LogFields {
    time: u32,
    time_ns: u32,
    contents: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
}

/// Reads one varint at `*position`.
#[inline]
fn read_varint(bytes: &[u8], position: &mut usize) -> Result<u64, BodyError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte =
            *bytes.get(*position).ok_or_else(|| BodyError::Protobuf("a varint runs past the end of a log".into()))?;
        *position += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(BodyError::Protobuf("a varint is longer than 10 bytes".into()))
}

/// Reads a length-delimited field's range at `*position`.
#[inline]
fn read_length_delimited(bytes: &[u8], position: &mut usize) -> Result<std::ops::Range<usize>, BodyError> {
    let length = usize::try_from(read_varint(bytes, position)?)
        .map_err(|_| BodyError::Protobuf("a field length overflows".into()))?;
    let start = *position;
    let end = start
        .checked_add(length)
        .filter(|end| *end <= bytes.len())
        .ok_or_else(|| BodyError::Protobuf("a field runs past the end of its log".into()))?;
    *position = end;
    Ok(start..end)
}

/// Skips a field of an unknown number (forward compatibility, as protobuf
/// decoders do).
fn skip_field(bytes: &[u8], position: &mut usize, wire_type: u64) -> Result<(), BodyError> {
    let skip = |position: &mut usize, width: usize| {
        let end = position.checked_add(width).filter(|end| *end <= bytes.len());
        end.map(|end| *position = end)
            .ok_or_else(|| BodyError::Protobuf("a fixed-width field runs past the end of its log".into()))
    };
    match wire_type {
        0 => read_varint(bytes, position).map(drop),
        1 => skip(position, 8),
        2 => read_length_delimited(bytes, position).map(drop),
        5 => skip(position, 4),
        other => Err(BodyError::Protobuf(format!("unsupported wire type {other} in a log"))),
    }
}

/// Parses an encoded `Log`, reusing `fields.contents`.
fn parse_log(bytes: &[u8], fields: &mut LogFields) -> Result<(), BodyError> {
    fields.time = 0;
    fields.time_ns = 0;
    fields.contents.clear();
    let mut position = 0;
    while position < bytes.len() {
        let key = read_varint(bytes, &mut position)?;
        match (key >> 3, key & 7) {
            (1, 0) => fields.time = read_varint(bytes, &mut position)? as u32,
            (2, 2) => {
                let content = read_length_delimited(bytes, &mut position)?;
                let (mut key_range, mut value_range) = (content.start..content.start, content.start..content.start);
                let mut inner = content.start;
                while inner < content.end {
                    let tag = read_varint(&bytes[..content.end], &mut inner)?;
                    match (tag >> 3, tag & 7) {
                        (1, 2) => key_range = read_length_delimited(&bytes[..content.end], &mut inner)?,
                        (2, 2) => value_range = read_length_delimited(&bytes[..content.end], &mut inner)?,
                        (_, wire_type) => skip_field(&bytes[..content.end], &mut inner, wire_type)?,
                    }
                }
                fields.contents.push((key_range, value_range));
            }
            (4, 5) => {
                let end = position + 4;
                let word = bytes
                    .get(position..end)
                    .ok_or_else(|| BodyError::Protobuf("time_ns runs past the end of a log".into()))?;
                fields.time_ns = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
                position = end;
            }
            (_, wire_type) => skip_field(bytes, &mut position, wire_type)?,
        }
    }
    Ok(())
}

/// Appends one event per log of `list` to `events`, in order, every one
/// carrying a clone of `metadata` (source id and partition, shared `Arc`s)
/// with its own `byte_size`. On a malformed log nothing is appended.
pub fn flatten_log_groups(
    list: LogGroupList,
    metadata: &EventMetadata,
    events: &mut Vec<LogEvent>,
) -> Result<FlattenSummary, BodyError> {
    let first_new_event = events.len();
    let result = flatten_into(list, metadata, events);
    if result.is_err() {
        events.truncate(first_new_event);
    }
    result
}

fn flatten_into(
    list: LogGroupList,
    metadata: &EventMetadata,
    events: &mut Vec<LogEvent>,
) -> Result<FlattenSummary, BodyError> {
    let mut summary = FlattenSummary::default();
    events.reserve(list.log_groups.iter().map(|group| group.logs.len()).sum());
    let mut fields = LogFields { time: 0, time_ns: 0, contents: Vec::with_capacity(32) };
    for group in list.log_groups {
        summary.log_groups += 1;
        let topic = group.topic.map(Str::from_utf8_lossy).unwrap_or_default();
        let source = group.source.map(Str::from_utf8_lossy).unwrap_or_default();
        let mut group_bytes = topic.len() + source.len() + 4;
        let mut tagged_receive_time = None;
        let tags: Vec<(KeyString, Str)> = group
            .log_tags
            .into_iter()
            .map(|tag| {
                group_bytes += tag.key.len() + tag.value.len();
                if tag.key.as_ref() == RECEIVE_TIME_TAG {
                    tagged_receive_time =
                        std::str::from_utf8(&tag.value).ok().and_then(|text| text.trim().parse::<u32>().ok());
                }
                let mut name = KeyString::const_new("__tag__:");
                name.push_str(&String::from_utf8_lossy(&tag.key));
                (name, Str::from_utf8_lossy(tag.value))
            })
            .collect();
        let mut last_log_time = None;
        for log in &group.logs {
            parse_log(log, &mut fields)?;
            last_log_time = Some(fields.time);
            let mut map = ObjectMapBuilder::with_capacity(4 + tags.len() + fields.contents.len());
            map.insert(KeyString::const_new("__time__"), Value::Integer(i64::from(fields.time)));
            map.insert(KeyString::const_new("__topic__"), Value::String(topic.clone()));
            map.insert(KeyString::const_new("__source__"), Value::String(source.clone()));
            if fields.time_ns != 0 {
                map.insert(KeyString::const_new("__time_ns_part__"), Value::Integer(i64::from(fields.time_ns)));
            }
            for (name, value) in &tags {
                map.insert(name.clone(), Value::String(value.clone()));
            }
            let mut byte_size = group_bytes;
            for (key, value) in fields.contents.drain(..) {
                byte_size += key.len() + value.len();
                map.insert(key_string(&log[key]), Value::String(Str::from_utf8_lossy(log.slice(value))));
            }
            summary.raw_bytes += byte_size;
            let mut event_metadata = metadata.clone();
            event_metadata.byte_size = byte_size;
            events.push(LogEvent::new(map.finish(), event_metadata));
        }
        if let Some(time) = last_log_time.map(|log_time| tagged_receive_time.unwrap_or(log_time)) {
            summary.last_receive_time = Some(time);
        }
    }
    Ok(summary)
}

/// Gives every event a finalizer share of `batch`.
pub fn attach_finalizers(events: &mut [LogEvent], batch: &Arc<BatchNotifier>) {
    for event in events {
        event.add_finalizers(EventFinalizers::new(EventFinalizer::new(Arc::clone(batch))));
    }
}

/// A field name from wire bytes. Names are almost always short ASCII, which
/// `is_ascii` confirms inline; others go through the standard validator,
/// since `CompactString::from_utf8_lossy` walks them character by character.
fn key_string(bytes: &[u8]) -> KeyString {
    if bytes.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        return KeyString::new(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => KeyString::new(text),
        Err(_) => KeyString::from(String::from_utf8_lossy(bytes)),
    }
}

/// The metadata template of one pull's events: the source id, the shared
/// `LOGSTORE/SHARD` partition and the time of receipt.
pub fn batch_metadata(source_id: &Arc<str>, partition: &Arc<str>) -> EventMetadata {
    let mut metadata = EventMetadata::new(Arc::clone(source_id), 0);
    metadata.partition = Some(Arc::clone(partition));
    metadata
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference §3.3: one group, topic `topic1`, source `10.0.0.1`, tag
    /// `__receive_time__`, one log at 1700000000 with 5 ns and `msg=hello`.
    const VECTOR_HEX: &str = "0a4d0a190880e2cfaa06120c0a036d7367120568656c6c6f25050000001a06746f70696331220831302e302e302e31321e0a105f5f726563656976655f74696d655f5f120a31373030303030303030";

    fn from_hex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|index| u8::from_str_radix(&text[index..index + 2], 16).unwrap()).collect()
    }

    fn metadata() -> EventMetadata {
        batch_metadata(&Arc::from("sls"), &Arc::from("store/0"))
    }

    fn varint(mut value: u64, out: &mut Vec<u8>) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    fn length_delimited(field: u64, bytes: &[u8], out: &mut Vec<u8>) {
        varint(field << 3 | 2, out);
        varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }

    /// An encoded `Log` with time_ns after the contents and an unknown field.
    fn encoded_log(time: u32, time_ns: u32, contents: &[(&[u8], &[u8])]) -> Bytes {
        let mut log = Vec::new();
        varint(1 << 3, &mut log);
        varint(u64::from(time), &mut log);
        for (key, value) in contents {
            let mut content = Vec::new();
            length_delimited(1, key, &mut content);
            length_delimited(2, value, &mut content);
            length_delimited(2, &content, &mut log);
        }
        varint(9 << 3, &mut log);
        varint(300, &mut log);
        varint(4 << 3 | 5, &mut log);
        log.extend_from_slice(&time_ns.to_le_bytes());
        Bytes::from(log)
    }

    fn flatten(list: LogGroupList) -> Result<(Vec<LogEvent>, FlattenSummary), BodyError> {
        let mut events = Vec::new();
        let summary = flatten_log_groups(list, &metadata(), &mut events)?;
        Ok((events, summary))
    }

    #[test]
    fn the_reference_vector_decodes_and_flattens_in_sdk_order() {
        let raw = from_hex(VECTOR_HEX);
        assert_eq!(raw.len(), 79);
        let list = decode_pull_body(Bytes::from(raw), &Compression::None, 79, 1).unwrap();
        let (events, summary) = flatten(list).unwrap();
        assert_eq!(events.len(), 1);
        let fields = events[0].fields();
        let keys: Vec<&str> = fields.keys().map(|key| key.as_str()).collect();
        assert_eq!(
            keys,
            ["__time__", "__topic__", "__source__", "__time_ns_part__", "__tag__:__receive_time__", "msg"]
        );
        assert_eq!(fields["__time__"], Value::Integer(1_700_000_000));
        assert_eq!(fields["__topic__"].as_str(), Some("topic1"));
        assert_eq!(fields["__source__"].as_str(), Some("10.0.0.1"));
        assert_eq!(fields["__time_ns_part__"], Value::Integer(5));
        assert_eq!(fields["__tag__:__receive_time__"].as_str(), Some("1700000000"));
        assert_eq!(fields["msg"].as_str(), Some("hello"));
        // topic 6 + source 8 + time 4 + tag 16+10 + content 3+5.
        assert_eq!(events[0].byte_size(), 52);
        assert_eq!(summary, FlattenSummary { log_groups: 1, raw_bytes: 52, last_receive_time: Some(1_700_000_000) });
        assert_eq!(events[0].metadata().partition.as_deref(), Some("store/0"));
    }

    #[test]
    fn reused_body_buffers_hold_only_the_new_body() {
        let long: Vec<u8> = (0..4096u32).map(|index| (index % 251) as u8).collect();
        let short = b"a shorter body, decompressed into a buffer a longer one used".to_vec();
        for _ in 0..3 {
            let first = decompress(Bytes::from(lz4_flex::block::compress(&long)), &Compression::Lz4, long.len());
            let first = first.unwrap();
            let slice = first.slice(10..20);
            drop(first);
            assert_eq!(slice.as_ref(), &long[10..20], "a slice keeps its body alive");
            drop(slice);
            let second = decompress(Bytes::from(lz4_flex::block::compress(&short)), &Compression::Lz4, short.len());
            assert_eq!(second.unwrap().as_ref(), short.as_slice());
        }
        let wrong_size = decompress(Bytes::from(lz4_flex::block::compress(&short)), &Compression::Lz4, 4096);
        assert!(matches!(wrong_size, Err(BodyError::Lz4 { .. } | BodyError::RawSizeMismatch { .. })), "{wrong_size:?}");
    }

    #[test]
    fn the_reference_lz4_block_is_the_raw_bytes_behind_a_literal_run_header() {
        let raw = from_hex(VECTOR_HEX);
        let mut block = vec![0xf0, 0x40];
        block.extend_from_slice(&raw);
        assert_eq!(block.len(), 81);
        let decompressed = decompress(Bytes::from(block), &Compression::Lz4, 79).unwrap();
        assert_eq!(decompressed.as_ref(), raw.as_slice());
        // And the encoder agrees: a block without a size prefix.
        assert_eq!(lz4_flex::block::compress(&raw)[..2], [0xf0, 0x40]);
    }

    #[test]
    fn decoded_values_share_the_body_buffer() {
        let raw = Bytes::from(from_hex(VECTOR_HEX));
        let range = raw.as_ptr() as usize..raw.as_ptr() as usize + raw.len();
        let (events, _) = flatten(decode_log_group_list(raw.clone()).unwrap()).unwrap();
        for field in ["msg", "__topic__", "__tag__:__receive_time__"] {
            let Value::String(text) = &events[0].fields()[field] else { panic!("{field} is a string") };
            assert!(range.contains(&(text.as_bytes().as_ptr() as usize)), "{field} was copied");
        }
    }

    #[test]
    fn later_keys_overwrite_in_place_fields_come_in_any_order_and_zero_nanoseconds_are_left_out() {
        let list = LogGroupList {
            log_groups: vec![LogGroup {
                logs: vec![
                    encoded_log(10, 0, &[(b"__topic__", b"override"), (b"bad", b"\xff\xfe")]),
                    encoded_log(11, 7, &[(b"k", b"v")]),
                ],
                topic: None,
                source: Some(Bytes::from_static(b"src")),
                log_tags: vec![],
            }],
        };
        let (events, summary) = flatten(list).unwrap();
        let keys: Vec<&str> = events[0].fields().keys().map(|key| key.as_str()).collect();
        assert_eq!(keys, ["__time__", "__topic__", "__source__", "bad"]);
        assert_eq!(events[0].fields()["__topic__"].as_str(), Some("override"));
        assert_eq!(events[0].fields()["bad"].as_str(), Some("\u{fffd}\u{fffd}"));
        let keys: Vec<&str> = events[1].fields().keys().map(|key| key.as_str()).collect();
        assert_eq!(
            keys,
            ["__time__", "__topic__", "__source__", "__time_ns_part__", "k"],
            "time_ns after the contents still goes first"
        );
        assert_eq!(events[1].fields()["__time_ns_part__"], Value::Integer(7));
        assert_eq!(summary.last_receive_time, Some(11), "without the tag, the log time stands in");
    }

    #[test]
    fn finalizers_are_attached_to_every_event() {
        let (mut events, _) = flatten(decode_log_group_list(Bytes::from(from_hex(VECTOR_HEX))).unwrap()).unwrap();
        let (batch, _status) = BatchNotifier::new_with_receiver();
        attach_finalizers(&mut events, &batch);
        assert_eq!(Arc::strong_count(&batch), 2);
        events.pop().unwrap().settle(crate::event::BatchStatus::Delivered);
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        let raw = from_hex(VECTOR_HEX);
        let corrupt_lz4 = decompress(Bytes::from_static(&[0xff, 0xff, 0xff]), &Compression::Lz4, 79).unwrap_err();
        assert_eq!(corrupt_lz4.code(), "InvalidLz4Body");
        let huge = decompress(Bytes::from_static(&[0]), &Compression::Lz4, MAX_RAW_BODY_BYTES + 1).unwrap_err();
        assert!(matches!(huge, BodyError::RawSizeTooLarge { .. }));
        let truncated = decode_pull_body(Bytes::from(raw[..40].to_vec()), &Compression::None, 40, 1).unwrap_err();
        assert_eq!(truncated.code(), "InvalidProtobufBody");
        let garbage = decode_log_group_list(Bytes::from_static(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])).unwrap_err();
        assert!(matches!(garbage, BodyError::Protobuf(_)));
        let miscounted = decode_pull_body(Bytes::from(raw.clone()), &Compression::None, 79, 2).unwrap_err();
        assert_eq!(miscounted, BodyError::CountMismatch { announced: 2, decoded: 1 });
        let zstd =
            decode_pull_body(Bytes::from(raw.clone()), &Compression::from_header(Some("zstd")), 79, 1).unwrap_err();
        assert_eq!(zstd.code(), "UnsupportedCompression");
        for length in 0..81 {
            let mut block = vec![0xf0, 0x40];
            block.extend_from_slice(&raw);
            if let Ok(list) = decode_pull_body(Bytes::from(block[..length].to_vec()), &Compression::Lz4, 79, 1) {
                let _ = flatten(list);
            }
        }
        // A log cut anywhere never panics; when it is an error, the events
        // of the groups before it are taken back. Cut inside the content, it
        // is always an error.
        let log = encoded_log(1, 2, &[(b"key", b"value")]);
        let group = |log: Bytes| LogGroup { logs: vec![log], topic: None, source: None, log_tags: vec![] };
        for length in 1..log.len() {
            let mut events = Vec::new();
            let list = LogGroupList { log_groups: vec![group(log.clone()), group(log.slice(..length))] };
            match flatten_log_groups(list, &metadata(), &mut events) {
                Ok(_) => assert_eq!(events.len(), 2),
                Err(_) => assert!(events.is_empty(), "a failed pull must add no events"),
            }
            if (3..15).contains(&length) {
                assert!(
                    flatten(LogGroupList { log_groups: vec![group(log.slice(..length))] }).is_err(),
                    "cut at {length}"
                );
            }
        }
    }

    #[test]
    fn compression_headers_are_read_case_insensitively() {
        assert_eq!(Compression::from_header(None), Compression::None);
        assert_eq!(Compression::from_header(Some("")), Compression::None);
        assert_eq!(Compression::from_header(Some("LZ4")), Compression::Lz4);
    }
}
