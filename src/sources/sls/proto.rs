//! The PullLogs body: LZ4 block decompression, protobuf decoding and the
//! SDK's flattening of log groups into events.
//!
//! Messages are written by hand for `prost` with the field numbers of the
//! service's `log.proto` (proto2). Every string field is declared `bytes`
//! (wire-compatible) as `bytes::Bytes`, so decoding the decompressed buffer
//! copies no text: each key and value is a slice of that one buffer, and a
//! value becomes a `Str` over the same slice when it is valid UTF-8 (invalid
//! sequences are replaced, which copies only that value). Keys are
//! `KeyString`s, stored inline when short. Fields 2 (`Reserved`) and 5
//! (`MachineUUID`) of a log group are skipped.
//!
//! Flattening follows the Python SDK's `loggroups_to_flattern_list`: one
//! event per log with `__time__` (integer), `__topic__`, `__source__`,
//! `__time_ns_part__` (integer, only when non-zero), `__tag__:KEY` per group
//! tag, then the contents in order; a later key overwrites an earlier one in
//! place. Each event's `byte_size` is its raw size: the key and value lengths
//! of its contents and its group's tags, plus topic, source and 4 bytes of
//! time (`DemoLog::raw_size` counts the same way).
//!
//! Guarantees: malformed input (a bad LZ4 block, a size that does not match,
//! bad protobuf, a group count that differs from `x-log-count`) is a
//! `BodyError`, never a panic. Never does IO.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message;

use crate::event::{object_map_with_capacity, BatchNotifier, EventFinalizer, EventMetadata, KeyString, LogEvent, Str, Value};

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

/// Logs sharing one topic, source and tag set.
#[derive(Clone, PartialEq, Message)]
pub struct LogGroup {
    #[prost(message, repeated, tag = "1")]
    pub logs: Vec<Log>,
    #[prost(bytes = "bytes", optional, tag = "3")]
    pub topic: Option<Bytes>,
    #[prost(bytes = "bytes", optional, tag = "4")]
    pub source: Option<Bytes>,
    #[prost(message, repeated, tag = "6")]
    pub log_tags: Vec<LogTag>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Log {
    /// Unix seconds.
    #[prost(uint32, required, tag = "1")]
    pub time: u32,
    #[prost(message, repeated, tag = "2")]
    pub contents: Vec<LogContent>,
    /// Nanoseconds within the second.
    #[prost(fixed32, optional, tag = "4")]
    pub time_ns: Option<u32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct LogContent {
    #[prost(bytes = "bytes", required, tag = "1")]
    pub key: Bytes,
    #[prost(bytes = "bytes", required, tag = "2")]
    pub value: Bytes,
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
            BodyError::Lz4 { .. } | BodyError::RawSizeTooLarge { .. } | BodyError::RawSizeMismatch { .. } => "InvalidLz4Body",
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
            let raw = lz4_flex::block::decompress(&body, raw_size).map_err(|error| BodyError::Lz4 { raw_size, reason: error.to_string() })?;
            if raw.len() != raw_size {
                return Err(BodyError::RawSizeMismatch { announced: raw_size, actual: raw.len() });
            }
            Ok(Bytes::from(raw))
        }
        Compression::Other(name) => Err(BodyError::UnsupportedCompression(name.clone())),
    }
}

/// Decodes an uncompressed body; values stay slices of `raw`.
pub fn decode_log_group_list(raw: Bytes) -> Result<LogGroupList, BodyError> {
    LogGroupList::decode(raw).map_err(|error| BodyError::Protobuf(error.to_string()))
}

/// Decompresses and decodes a pull body, checking the announced group count.
pub fn decode_pull_body(body: Bytes, compression: &Compression, raw_size: usize, announced_groups: usize) -> Result<LogGroupList, BodyError> {
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
}

const RECEIVE_TIME_TAG: &[u8] = b"__receive_time__";

/// Server receive time (unix seconds) of the last non-empty log group: its
/// `__receive_time__` tag, else the time of its last log.
pub fn last_receive_time(list: &LogGroupList) -> Option<u32> {
    let group = list.log_groups.iter().rev().find(|group| !group.logs.is_empty())?;
    let tagged = group
        .log_tags
        .iter()
        .find(|tag| tag.key.as_ref() == RECEIVE_TIME_TAG)
        .and_then(|tag| std::str::from_utf8(&tag.value).ok())
        .and_then(|text| text.trim().parse::<u32>().ok());
    tagged.or_else(|| group.logs.last().map(|log| log.time))
}

/// Appends one event per log of `list` to `events`, in order, every one
/// carrying a clone of `metadata` (source id and partition, shared `Arc`s)
/// with its own `byte_size`, and a finalizer share of `batch` when given.
pub fn flatten_log_groups(list: LogGroupList, metadata: &EventMetadata, batch: Option<&Arc<BatchNotifier>>, events: &mut Vec<LogEvent>) -> FlattenSummary {
    let mut summary = FlattenSummary::default();
    events.reserve(list.log_groups.iter().map(|group| group.logs.len()).sum());
    for group in list.log_groups {
        summary.log_groups += 1;
        let topic = group.topic.map(Str::from_utf8_lossy).unwrap_or_default();
        let source = group.source.map(Str::from_utf8_lossy).unwrap_or_default();
        let mut group_bytes = topic.len() + source.len() + 4;
        let tags: Vec<(KeyString, Str)> = group
            .log_tags
            .into_iter()
            .map(|tag| {
                group_bytes += tag.key.len() + tag.value.len();
                let mut name = KeyString::const_new("__tag__:");
                name.push_str(&String::from_utf8_lossy(&tag.key));
                (name, Str::from_utf8_lossy(tag.value))
            })
            .collect();
        for log in group.logs {
            let mut fields = object_map_with_capacity(4 + tags.len() + log.contents.len());
            fields.insert(KeyString::const_new("__time__"), Value::Integer(i64::from(log.time)));
            fields.insert(KeyString::const_new("__topic__"), Value::String(topic.clone()));
            fields.insert(KeyString::const_new("__source__"), Value::String(source.clone()));
            if let Some(nanos) = log.time_ns.filter(|nanos| *nanos != 0) {
                fields.insert(KeyString::const_new("__time_ns_part__"), Value::Integer(i64::from(nanos)));
            }
            for (name, value) in &tags {
                fields.insert(name.clone(), Value::String(value.clone()));
            }
            let mut byte_size = group_bytes;
            for content in log.contents {
                byte_size += content.key.len() + content.value.len();
                fields.insert(KeyString::from_utf8_lossy(&content.key), Value::String(Str::from_utf8_lossy(content.value)));
            }
            summary.raw_bytes += byte_size;
            let mut event_metadata = metadata.clone();
            event_metadata.byte_size = byte_size;
            let event = LogEvent::new(fields, event_metadata);
            events.push(match batch {
                Some(batch) => event.with_finalizer(EventFinalizer::new(Arc::clone(batch))),
                None => event,
            });
        }
    }
    summary
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

    #[test]
    fn the_reference_vector_decodes_and_flattens_in_sdk_order() {
        let raw = from_hex(VECTOR_HEX);
        assert_eq!(raw.len(), 79);
        let list = decode_pull_body(Bytes::from(raw), &Compression::None, 79, 1).unwrap();
        assert_eq!(last_receive_time(&list), Some(1_700_000_000));
        let mut events = Vec::new();
        let summary = flatten_log_groups(list, &metadata(), None, &mut events);
        assert_eq!(events.len(), 1);
        let fields = events[0].fields();
        let keys: Vec<&str> = fields.keys().map(|key| key.as_str()).collect();
        assert_eq!(keys, ["__time__", "__topic__", "__source__", "__time_ns_part__", "__tag__:__receive_time__", "msg"]);
        assert_eq!(fields["__time__"], Value::Integer(1_700_000_000));
        assert_eq!(fields["__topic__"].as_str(), Some("topic1"));
        assert_eq!(fields["__source__"].as_str(), Some("10.0.0.1"));
        assert_eq!(fields["__time_ns_part__"], Value::Integer(5));
        assert_eq!(fields["__tag__:__receive_time__"].as_str(), Some("1700000000"));
        assert_eq!(fields["msg"].as_str(), Some("hello"));
        // topic 6 + source 8 + time 4 + tag 16+10 + content 3+5.
        assert_eq!(events[0].byte_size(), 52);
        assert_eq!(summary, FlattenSummary { log_groups: 1, raw_bytes: 52 });
        assert_eq!(events[0].metadata().partition.as_deref(), Some("store/0"));
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
        let list = decode_log_group_list(raw.clone()).unwrap();
        let mut events = Vec::new();
        flatten_log_groups(list, &metadata(), None, &mut events);
        let Value::String(message) = &events[0].fields()["msg"] else { panic!("msg is a string") };
        assert!(range.contains(&(message.as_bytes().as_ptr() as usize)), "the value was copied");
    }

    #[test]
    fn later_keys_overwrite_earlier_ones_in_place_and_zero_nanoseconds_are_left_out() {
        let list = LogGroupList {
            log_groups: vec![LogGroup {
                logs: vec![Log {
                    time: 10,
                    contents: vec![
                        LogContent { key: Bytes::from_static(b"__topic__"), value: Bytes::from_static(b"override") },
                        LogContent { key: Bytes::from_static(b"bad"), value: Bytes::from_static(b"\xff\xfe") },
                    ],
                    time_ns: Some(0),
                }],
                topic: None,
                source: Some(Bytes::from_static(b"src")),
                log_tags: vec![],
            }],
        };
        assert_eq!(last_receive_time(&list), Some(10), "without the tag, the log time stands in");
        let mut events = Vec::new();
        flatten_log_groups(list, &metadata(), None, &mut events);
        let keys: Vec<&str> = events[0].fields().keys().map(|key| key.as_str()).collect();
        assert_eq!(keys, ["__time__", "__topic__", "__source__", "bad"]);
        assert_eq!(events[0].fields()["__topic__"].as_str(), Some("override"));
        assert_eq!(events[0].fields()["bad"].as_str(), Some("\u{fffd}\u{fffd}"));
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
        let zstd = decode_pull_body(Bytes::from(raw), &Compression::from_header(Some("zstd")), 79, 1).unwrap_err();
        assert_eq!(zstd.code(), "UnsupportedCompression");
        for length in 0..81 {
            let mut block = vec![0xf0, 0x40];
            block.extend_from_slice(&from_hex(VECTOR_HEX));
            let _ = decode_pull_body(Bytes::from(block[..length].to_vec()), &Compression::Lz4, 79, 1);
        }
    }

    #[test]
    fn compression_headers_are_read_case_insensitively() {
        assert_eq!(Compression::from_header(None), Compression::None);
        assert_eq!(Compression::from_header(Some("")), Compression::None);
        assert_eq!(Compression::from_header(Some("LZ4")), Compression::Lz4);
    }
}
