//! The PullLogs body: LZ4 block decompression, protobuf decoding and the
//! SDK's flattening of log groups into events.
//!
//! The source walks the protobuf itself (`decode_pull`): `LogGroupList`
//! (`1: LogGroup`), `LogGroup` (`1: Log`, `3: Topic`, `4: Source`, `6:
//! LogTag`) and `Log` (`1: time`, `2: Content {1: key, 2: value}`, `4:
//! time_ns` fixed32), with the field numbers of the service's `log.proto`
//! (proto2). No message is built per log: a log is its offsets in the
//! decompressed buffer, walked again whenever its fields are read. Fields 2 (`Reserved`) and 5 (`MachineUUID`) of a group, and unknown
//! fields at every level, are skipped, as protobuf decoders do. The same
//! messages as `prost` types (`LogGroupList`, `LogGroup`, `LogTag`, every
//! string field `bytes::Bytes`) serve tests and tools that build or inspect
//! bodies; a proptest checks the walker against them. A built map reads keys
//! in place into `KeyString`s (inline when short) and makes each value a
//! `Str` over a slice of the buffer (no copy when it is valid UTF-8; invalid
//! sequences are replaced, copying only that value).
//!
//! Flattening follows the Python SDK's `loggroups_to_flattern_list`: one
//! event per log with `__time__` (integer), `__topic__`, `__source__`,
//! `__time_ns_part__` (integer, only when non-zero), `__tag__:KEY` per group
//! tag, then the contents in order; a later key overwrites an earlier one in
//! place. Each event's `byte_size` is its raw size: the key and value lengths
//! of its contents and its group's tags, plus topic, source and 4 bytes of
//! time (`DemoLog::raw_size` counts the same way).
//!
//! The map is not built while flattening: a pull becomes one `SlsPull` (the
//! body, each group's shared fields, each log's offsets and time), an
//! `event::DeferredFields` that every event of the pull shares by index, and
//! an event's fields are built on first need into exactly the map above. A
//! log whose keys that map would merge (a content key starting with `__`, a
//! repeated or non-ASCII key, two tags with one name) is built at once
//! instead, so a deferred event's fields never differ from its map.
//!
//! Decompressed bodies come from a small pool and return to it when the last
//! event slicing them is dropped (see `BODY_BUFFERS`).
//!
//! Guarantees: malformed input (a bad LZ4 block, a size that does not match,
//! bad protobuf at any level, a group count that differs from `x-log-count`)
//! is a `BodyError`, never a panic, and a pull that fails to flatten adds no
//! events. Never does IO.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;

use crate::event::{
    BatchNotifier, DeferredFields, EventFinalizer, EventFinalizers, EventMetadata, FieldRef, KeyString, LogEvent,
    ObjectMap, ObjectMapBuilder, Str, Value, Visit,
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
/// `bytes`).
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
/// New buffers' capacity is rounded up to a multiple of this.
const BODY_BUFFER_GRANULE: usize = 1 << 20;

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
        let (mut idle, mut discarded) = (None, None);
        if size <= MAX_POOLED_BODY_BYTES {
            let mut buffers = BODY_BUFFERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // The smallest idle buffer that holds `size` bytes. When none
            // does, the smallest one is let go (after the lock), so buffers
            // too small for the pulls that come now do not keep their places.
            let capacity = |at: &usize| buffers[*at].capacity();
            let fit = (0..buffers.len()).filter(|at| capacity(at) >= size).min_by_key(capacity);
            let smallest = (0..buffers.len()).min_by_key(capacity);
            match (fit, smallest) {
                (Some(at), _) => idle = Some(buffers.swap_remove(at)),
                (None, Some(at)) => discarded = Some(buffers.swap_remove(at)),
                (None, None) => {}
            }
        }
        drop(discarded);
        // A new buffer gets room for somewhat larger pulls, so pulls of
        // slightly varying size keep reusing it: growing a buffer would copy
        // its old bytes into freshly faulted-in pages.
        let mut buffer = idle.unwrap_or_else(|| Vec::with_capacity(size.next_multiple_of(BODY_BUFFER_GRANULE)));
        // Only the bytes past the buffer's last length are zeroed.
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

/// Decodes an uncompressed body with `prost`; values stay slices of `raw`.
/// The source reads bodies with `decode_pull` instead; this is the reference
/// its walker is tested against.
pub fn decode_log_group_list(raw: Bytes) -> Result<LogGroupList, BodyError> {
    LogGroupList::decode(raw).map_err(|error| BodyError::Protobuf(error.to_string()))
}

/// Decompresses a pull body and appends one event per log to `events`
/// (see `flatten_body`), checking the announced group count. On any error
/// nothing is appended.
pub fn decode_pull(
    body: Bytes,
    compression: &Compression,
    raw_size: usize,
    announced_groups: usize,
    metadata: &EventMetadata,
    events: &mut Vec<LogEvent>,
) -> Result<FlattenSummary, BodyError> {
    let raw = decompress(body, compression, raw_size)?;
    let parsed = parse_pull(raw)?;
    let decoded = parsed.summary.log_groups;
    if decoded != announced_groups {
        return Err(BodyError::CountMismatch { announced: announced_groups, decoded });
    }
    Ok(parsed.into_events(metadata, events))
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
#[derive(Default)]
struct LogFields {
    time: u32,
    time_ns: u32,
    contents: Vec<(Range<usize>, Range<usize>)>,
}

/// Reads one varint at `*position`.
#[inline]
fn read_varint(bytes: &[u8], position: &mut usize) -> Result<u64, BodyError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes
            .get(*position)
            .ok_or_else(|| BodyError::Protobuf("a varint runs past the end of its message".into()))?;
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
fn read_length_delimited(bytes: &[u8], position: &mut usize) -> Result<Range<usize>, BodyError> {
    let length = usize::try_from(read_varint(bytes, position)?)
        .map_err(|_| BodyError::Protobuf("a field length overflows".into()))?;
    let start = *position;
    let end = start
        .checked_add(length)
        .filter(|end| *end <= bytes.len())
        .ok_or_else(|| BodyError::Protobuf("a field runs past the end of its message".into()))?;
    *position = end;
    Ok(start..end)
}

/// Skips a field of an unknown number (forward compatibility, as protobuf
/// decoders do).
fn skip_field(bytes: &[u8], position: &mut usize, wire_type: u64) -> Result<(), BodyError> {
    let skip = |position: &mut usize, width: usize| {
        let end = position.checked_add(width).filter(|end| *end <= bytes.len());
        end.map(|end| *position = end)
            .ok_or_else(|| BodyError::Protobuf("a fixed-width field runs past the end of its message".into()))
    };
    match wire_type {
        0 => read_varint(bytes, position).map(drop),
        1 => skip(position, 8),
        2 => read_length_delimited(bytes, position).map(drop),
        5 => skip(position, 4),
        other => Err(BodyError::Protobuf(format!("unsupported wire type {other}"))),
    }
}

/// Parses an encoded `Log`, reusing `fields.contents`.
fn parse_log(bytes: &[u8], fields: &mut LogFields) -> Result<(), BodyError> {
    fields.contents.clear();
    let (time, time_ns) = walk_log(bytes, |key, value| fields.contents.push((key, value)))?;
    fields.time = time;
    fields.time_ns = time_ns;
    Ok(())
}

/// Walks an encoded `Log`: calls `content` with the (key, value) ranges of
/// every content in order and returns `(time, time_ns)`.
#[inline]
fn walk_log(bytes: &[u8], mut content: impl FnMut(Range<usize>, Range<usize>)) -> Result<(u32, u32), BodyError> {
    let (mut time, mut time_ns) = (0, 0);
    let mut position = 0;
    while position < bytes.len() {
        let key = read_varint(bytes, &mut position)?;
        match (key >> 3, key & 7) {
            (1, 0) => time = read_varint(bytes, &mut position)? as u32,
            (2, 2) => {
                let range = read_length_delimited(bytes, &mut position)?;
                let (mut key_range, mut value_range) = (range.start..range.start, range.start..range.start);
                let mut inner = range.start;
                while inner < range.end {
                    let tag = read_varint(&bytes[..range.end], &mut inner)?;
                    match (tag >> 3, tag & 7) {
                        (1, 2) => key_range = read_length_delimited(&bytes[..range.end], &mut inner)?,
                        (2, 2) => value_range = read_length_delimited(&bytes[..range.end], &mut inner)?,
                        (_, wire_type) => skip_field(&bytes[..range.end], &mut inner, wire_type)?,
                    }
                }
                content(key_range, value_range);
            }
            (4, 5) => {
                let end = position + 4;
                let word = bytes
                    .get(position..end)
                    .ok_or_else(|| BodyError::Protobuf("time_ns runs past the end of a log".into()))?;
                time_ns = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
                position = end;
            }
            (_, wire_type) => skip_field(bytes, &mut position, wire_type)?,
        }
    }
    Ok((time, time_ns))
}

/// Appends one event per log of the encoded `LogGroupList` `raw` to
/// `events`, in order, every one carrying a clone of `metadata` (source id
/// and partition, shared `Arc`s) with its own `byte_size`. On malformed
/// input nothing is appended.
pub fn flatten_body(
    raw: Bytes,
    metadata: &EventMetadata,
    events: &mut Vec<LogEvent>,
) -> Result<FlattenSummary, BodyError> {
    Ok(parse_pull(raw)?.into_events(metadata, events))
}

/// `flatten_body` for a decoded list (encoded again first): for tests and
/// benches that build their input as messages.
pub fn flatten_log_groups(
    list: LogGroupList,
    metadata: &EventMetadata,
    events: &mut Vec<LogEvent>,
) -> Result<FlattenSummary, BodyError> {
    flatten_body(Bytes::from(list.encode_to_vec()), metadata, events)
}

/// Most logs hold fewer contents; more than this are built at once, so the
/// duplicate-key check below stays cheap.
const MAX_DEFERRED_CONTENTS: usize = 64;

/// A pull read through once: every group's shared fields and every log's
/// place, checked, before any event exists.
struct ParsedPull {
    pull: SlsPull,
    /// Per log (as `pull.logs`): its `byte_size` and whether it is deferred.
    sizes: Vec<(u32, bool)>,
    summary: FlattenSummary,
}

/// Walks a `LogGroupList` (`1: LogGroup`, repeated; other fields skipped, as
/// protobuf decoders do) and every group and log in it.
fn parse_pull(raw: Bytes) -> Result<ParsedPull, BodyError> {
    let bytes: &[u8] = &raw;
    if u32::try_from(bytes.len()).is_err() {
        return Err(BodyError::RawSizeTooLarge { raw_size: bytes.len() });
    }
    let mut parsed = ParsedPull {
        pull: SlsPull { body: Bytes::new(), groups: Vec::new(), logs: Vec::new() },
        sizes: Vec::new(),
        summary: FlattenSummary::default(),
    };
    let mut scratch = GroupScratch::default();
    let mut position = 0;
    while position < bytes.len() {
        let key = read_varint(bytes, &mut position)?;
        match (key >> 3, key & 7) {
            (1, 2) => {
                let group = read_length_delimited(bytes, &mut position)?;
                parse_group(&raw, group, &mut scratch, &mut parsed)?;
            }
            (1, wire_type) => return Err(wrong_wire_type("LogGroupList.LogGroups", wire_type)),
            (_, wire_type) => skip_field(bytes, &mut position, wire_type)?,
        }
    }
    parsed.pull.body = raw;
    Ok(parsed)
}

fn wrong_wire_type(field: &str, wire_type: u64) -> BodyError {
    BodyError::Protobuf(format!("{field} has wire type {wire_type}, not 2 (length-delimited)"))
}

/// What `parse_group` reuses from one group to the next.
#[derive(Default)]
struct GroupScratch {
    logs: Vec<Range<usize>>,
    tags: Vec<(Range<usize>, Range<usize>)>,
    fields: LogFields,
}

/// Walks one `LogGroup` (`1: Log` repeated, `3: Topic`, `4: Source`, `6:
/// LogTag` repeated; `2: Reserved`, `5: MachineUUID` and unknown fields
/// skipped; a later topic or source replaces an earlier one) within
/// `raw[range]`, then every log of it, into `parsed`.
fn parse_group(
    raw: &Bytes,
    range: Range<usize>,
    scratch: &mut GroupScratch,
    parsed: &mut ParsedPull,
) -> Result<(), BodyError> {
    let bytes = &raw[..range.end];
    let (mut topic, mut source) = (None, None);
    scratch.logs.clear();
    scratch.tags.clear();
    let mut position = range.start;
    while position < range.end {
        let key = read_varint(bytes, &mut position)?;
        match (key >> 3, key & 7) {
            (1, 2) => scratch.logs.push(read_length_delimited(bytes, &mut position)?),
            (3, 2) => topic = Some(read_length_delimited(bytes, &mut position)?),
            (4, 2) => source = Some(read_length_delimited(bytes, &mut position)?),
            (6, 2) => {
                let tag = read_length_delimited(bytes, &mut position)?;
                scratch.tags.push(parse_tag(&bytes[..tag.end], tag.start)?);
            }
            (1, wire_type) => return Err(wrong_wire_type("LogGroup.Logs", wire_type)),
            (3, wire_type) => return Err(wrong_wire_type("LogGroup.Topic", wire_type)),
            (4, wire_type) => return Err(wrong_wire_type("LogGroup.Source", wire_type)),
            (6, wire_type) => return Err(wrong_wire_type("LogGroup.LogTags", wire_type)),
            (_, wire_type) => skip_field(bytes, &mut position, wire_type)?,
        }
    }
    let slice = |range: Range<usize>| raw.slice(range);
    let tags = scratch.tags.iter().map(|(key, value)| (slice(key.clone()), slice(value.clone())));
    let (group, tagged_receive_time) = GroupFields::new(topic.map(slice), source.map(slice), tags);
    let group_index = parsed.pull.groups.len() as u32;
    let summary = &mut parsed.summary;
    summary.log_groups += 1;
    let fields = &mut scratch.fields;
    for log in &scratch.logs {
        let log_bytes = &raw[log.clone()];
        parse_log(log_bytes, fields)?;
        let mut byte_size = group.byte_size;
        for (key, value) in &fields.contents {
            byte_size += key.len() + value.len();
        }
        summary.raw_bytes += byte_size;
        let deferred = group.deferrable && contents_are_deferrable(log_bytes, &fields.contents);
        // Offsets fit: `parse_pull` checked the body is under 4 GiB, and a
        // log's size is at most the body's.
        parsed.pull.logs.push(PulledLog {
            start: log.start as u32,
            end: log.end as u32,
            group: group_index,
            time: fields.time,
            time_ns: fields.time_ns,
            contents: fields.contents.len() as u32,
        });
        parsed.sizes.push((byte_size.min(u32::MAX as usize) as u32, deferred));
    }
    if !scratch.logs.is_empty() {
        // `fields` holds the group's last log.
        summary.last_receive_time = Some(tagged_receive_time.unwrap_or(fields.time));
    }
    parsed.pull.groups.push(group);
    Ok(())
}

/// Reads a `LogTag` (`1: Key`, `2: Value`) from `start` to the end of
/// `bytes`; an absent key or value reads as empty, as `prost` decodes it.
fn parse_tag(bytes: &[u8], start: usize) -> Result<(Range<usize>, Range<usize>), BodyError> {
    let (mut key, mut value) = (start..start, start..start);
    let mut position = start;
    while position < bytes.len() {
        let tag = read_varint(bytes, &mut position)?;
        match (tag >> 3, tag & 7) {
            (1, 2) => key = read_length_delimited(bytes, &mut position)?,
            (2, 2) => value = read_length_delimited(bytes, &mut position)?,
            (1 | 2, wire_type) => return Err(wrong_wire_type("LogTag", wire_type)),
            (_, wire_type) => skip_field(bytes, &mut position, wire_type)?,
        }
    }
    Ok((key, value))
}

impl ParsedPull {
    /// The pull's events, appended to `events`: one allocation for the whole
    /// pull, which every deferred event shares.
    fn into_events(self, metadata: &EventMetadata, events: &mut Vec<LogEvent>) -> FlattenSummary {
        let ParsedPull { pull, sizes, summary } = self;
        events.reserve(sizes.len());
        let pull = Arc::new(pull);
        let shared: Arc<dyn DeferredFields> = pull.clone();
        for (index, (byte_size, deferred)) in sizes.into_iter().enumerate() {
            let mut event_metadata = metadata.clone();
            event_metadata.byte_size = byte_size as usize;
            events.push(if deferred {
                LogEvent::deferred(Arc::clone(&shared), index as u32, event_metadata)
            } else {
                LogEvent::new(pull.build(index), event_metadata)
            });
        }
        summary
    }
}

/// Whether building the event's map would only append these contents after
/// the group's fields: every key ASCII, none starting with `__` (so none
/// replaces `__time__`, `__topic__`, `__source__`, `__time_ns_part__` or a
/// `__tag__:` field), and no key twice.
fn contents_are_deferrable(log: &[u8], contents: &[(Range<usize>, Range<usize>)]) -> bool {
    if contents.len() > MAX_DEFERRED_CONTENTS {
        return false;
    }
    // A key is compared with the earlier ones only when its 6-bit
    // fingerprint (length and last byte) has been seen: keys of one log
    // rarely share both, and most logs then need no comparison at all.
    let mut seen = 0u64;
    for (position, (key, _)) in contents.iter().enumerate() {
        let name = &log[key.clone()];
        if !name.is_ascii() || name.starts_with(b"__") {
            return false;
        }
        let last = name.last().copied().unwrap_or(0);
        let mixed = (name.len() as u64).wrapping_mul(0x9e37_79b9) ^ u64::from(last).wrapping_mul(0x85eb_ca6b);
        let bit = 1u64 << (mixed % 64);
        if seen & bit != 0 && contents[..position].iter().any(|(earlier, _)| &log[earlier.clone()] == name) {
            return false;
        }
        seen |= bit;
    }
    true
}

/// What every log of a group shares: `__topic__`, `__source__` and the
/// `__tag__:KEY` fields, built once per group.
#[derive(Debug)]
struct GroupFields {
    /// `__topic__`, `__source__`, then the tags: one slice, so that a
    /// writer can encode a group's fields once for all its logs
    /// (`Visit::Shared`).
    fields: Vec<(KeyString, Value)>,
    /// The raw bytes these fields count for in every log's `byte_size`.
    byte_size: usize,
    /// False when two tags turn into the same field name, so that building
    /// a map would merge them: such a group's logs are built at once.
    deferrable: bool,
}

/// `GroupFields::fields` before the tags.
const TOPIC_AND_SOURCE: usize = 2;

impl GroupFields {
    /// The group's fields and its `__receive_time__` tag, when it has one.
    fn new(
        topic: Option<Bytes>,
        source: Option<Bytes>,
        log_tags: impl ExactSizeIterator<Item = (Bytes, Bytes)>,
    ) -> (GroupFields, Option<u32>) {
        let topic = topic.map(Str::from_utf8_lossy).unwrap_or_default();
        let source = source.map(Str::from_utf8_lossy).unwrap_or_default();
        let mut byte_size = topic.len() + source.len() + 4;
        let mut tagged_receive_time = None;
        let mut deferrable = true;
        let mut fields: Vec<(KeyString, Value)> = Vec::with_capacity(TOPIC_AND_SOURCE + log_tags.len());
        fields.push((KeyString::const_new("__topic__"), Value::String(topic)));
        fields.push((KeyString::const_new("__source__"), Value::String(source)));
        for (key, value) in log_tags {
            byte_size += key.len() + value.len();
            if key.as_ref() == RECEIVE_TIME_TAG {
                tagged_receive_time = std::str::from_utf8(&value).ok().and_then(|text| text.trim().parse::<u32>().ok());
            }
            let mut name = KeyString::const_new("__tag__:");
            name.push_str(&String::from_utf8_lossy(&key));
            deferrable &= !fields[TOPIC_AND_SOURCE..].iter().any(|(earlier, _)| *earlier == name);
            fields.push((name, Value::String(Str::from_utf8_lossy(value))));
        }
        (GroupFields { fields, byte_size, deferrable }, tagged_receive_time)
    }

    fn topic_and_source(&self) -> &[(KeyString, Value)] {
        &self.fields[..TOPIC_AND_SOURCE]
    }

    fn tags(&self) -> &[(KeyString, Value)] {
        &self.fields[TOPIC_AND_SOURCE..]
    }

    /// The fields named `key` among the group's, when `key` names one of
    /// them (`None` for anything else).
    fn get(&self, key: &str) -> Option<Option<&Value>> {
        let found = match key {
            "__topic__" => 0..1,
            "__source__" => 1..2,
            _ if key.starts_with("__tag__:") => TOPIC_AND_SOURCE..self.fields.len(),
            _ => return None,
        };
        Some(self.fields[found].iter().find(|(name, _)| name.as_str() == key).map(|(_, value)| value))
    }
}

/// One pull's logs as the SDK flattens them, kept in their encoding until a
/// component needs their fields (see `event::DeferredFields`): the
/// decompressed body, each group's shared fields and where each log is.
/// Every event of the pull shares it, by index into `logs`.
///
/// A log's event is deferred only when `contents_are_deferrable` and its
/// group's tags are distinct; then its fields are, in order, `__time__`,
/// `__topic__`, `__source__`, `__time_ns_part__` when non-zero, the tags,
/// then the contents, with no key twice.
struct SlsPull {
    body: Bytes,
    groups: Vec<GroupFields>,
    logs: Vec<PulledLog>,
}

/// Where one log of a pull is, and what walking it found.
struct PulledLog {
    /// `body[start..end]`: the encoded `Log`, already walked once without
    /// error.
    start: u32,
    end: u32,
    /// Index into `SlsPull::groups`.
    group: u32,
    time: u32,
    time_ns: u32,
    contents: u32,
}

impl std::fmt::Debug for SlsPull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlsPull")
            .field("body_bytes", &self.body.len())
            .field("groups", &self.groups.len())
            .field("logs", &self.logs.len())
            .finish()
    }
}

impl SlsPull {
    /// Log `index`, its encoded bytes and its group.
    fn log(&self, index: usize) -> (&PulledLog, &[u8], &GroupFields) {
        let log = &self.logs[index];
        (log, &self.body[log.start as usize..log.end as usize], &self.groups[log.group as usize])
    }

    /// Calls `content` with every (key, value) of log `index`'s contents.
    /// Keys are ASCII (checked before deferring).
    fn for_each_content<'a>(&'a self, index: usize, mut content: impl FnMut(&'a str, &'a [u8])) {
        let (_, log, _) = self.log(index);
        // The log was walked without error when it was parsed and its
        // bytes are immutable, so this walk cannot fail either.
        let _ = walk_log(log, |key, value| {
            // SAFETY: `contents_are_deferrable` checked every key is ASCII.
            let key = unsafe { std::str::from_utf8_unchecked(&log[key]) };
            content(key, &log[value]);
        });
    }
}

impl DeferredFields for SlsPull {
    /// Also builds the events that are not deferred (see `into_events`):
    /// there a later key replaces an earlier one in place.
    fn build(&self, index: usize) -> ObjectMap {
        let (log, bytes, group) = self.log(index);
        let mut map = ObjectMapBuilder::with_capacity(2 + group.fields.len() + log.contents as usize);
        map.insert(KeyString::const_new("__time__"), Value::Integer(i64::from(log.time)));
        for (name, value) in group.topic_and_source() {
            map.insert(name.clone(), value.clone());
        }
        if log.time_ns != 0 {
            map.insert(KeyString::const_new("__time_ns_part__"), Value::Integer(i64::from(log.time_ns)));
        }
        for (name, value) in group.tags() {
            map.insert(name.clone(), value.clone());
        }
        let start = log.start as usize;
        // Walked without error when parsed (see `for_each_content`).
        let _ = walk_log(bytes, |key, value| {
            let value = self.body.slice(start + value.start..start + value.end);
            map.insert(key_string(&bytes[key]), Value::String(Str::from_utf8_lossy(value)));
        });
        map.finish()
    }

    fn field_count(&self, index: usize) -> usize {
        let (log, _, group) = self.log(index);
        1 + usize::from(log.time_ns != 0) + group.fields.len() + log.contents as usize
    }

    fn ready(&self, index: usize, key: &str) -> Option<Option<&Value>> {
        let (_, _, group) = self.log(index);
        if let Some(answer) = group.get(key) {
            return Some(answer);
        }
        match key {
            // Held as numbers, not `Value`s: built on request.
            "__time__" | "__time_ns_part__" => None,
            // No content key starts with `__` (see `contents_are_deferrable`).
            _ if key.starts_with("__") => Some(None),
            _ => None,
        }
    }

    fn field(&self, index: usize, key: &str) -> Option<FieldRef<'_>> {
        let (log, _, group) = self.log(index);
        match key {
            "__time__" => return Some(FieldRef::Integer(i64::from(log.time))),
            "__time_ns_part__" => return (log.time_ns != 0).then(|| FieldRef::Integer(i64::from(log.time_ns))),
            _ => {}
        }
        if let Some(answer) = group.get(key) {
            return answer.map(FieldRef::Value);
        }
        let mut found = None;
        self.for_each_content(index, |name, value| {
            if found.is_none() && name == key {
                found = Some(FieldRef::Text(value));
            }
        });
        found
    }

    fn visit<'a>(&'a self, index: usize, visit: &mut dyn FnMut(Visit<'a>)) {
        let (log, _, group) = self.log(index);
        visit(Visit::Field("__time__", FieldRef::Integer(i64::from(log.time))));
        if log.time_ns == 0 {
            visit(Visit::Shared(&group.fields));
        } else {
            visit(Visit::Shared(group.topic_and_source()));
            visit(Visit::Field("__time_ns_part__", FieldRef::Integer(i64::from(log.time_ns))));
            if !group.tags().is_empty() {
                visit(Visit::Shared(group.tags()));
            }
        }
        self.for_each_content(index, |key, value| visit(Visit::Field(key, FieldRef::Text(value))));
    }
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
    use proptest::prelude::*;

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
        let mut events = Vec::new();
        let summary = decode_pull(Bytes::from(raw), &Compression::None, 79, 1, &metadata(), &mut events).unwrap();
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
        let mut events = Vec::new();
        flatten_body(raw.clone(), &metadata(), &mut events).unwrap();
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
        let mut events = Vec::new();
        flatten_body(Bytes::from(from_hex(VECTOR_HEX)), &metadata(), &mut events).unwrap();
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
        let pull = |body: &[u8], compression: &Compression, raw_size: usize, announced: usize| {
            let mut events = Vec::new();
            let result =
                decode_pull(Bytes::from(body.to_vec()), compression, raw_size, announced, &metadata(), &mut events);
            assert!(result.is_ok() || events.is_empty(), "a failed pull must add no events");
            result
        };
        let truncated = pull(&raw[..40], &Compression::None, 40, 1).unwrap_err();
        assert_eq!(truncated.code(), "InvalidProtobufBody");
        let garbage = pull(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f], &Compression::None, 6, 1).unwrap_err();
        assert!(matches!(garbage, BodyError::Protobuf(_)));
        let varint_group = pull(&[0x08, 0x01], &Compression::None, 2, 1).unwrap_err();
        assert_eq!(
            varint_group.to_string(),
            "the body is not a valid LogGroupList: LogGroupList.LogGroups has wire type 0, not 2 (length-delimited)"
        );
        let miscounted = pull(&raw, &Compression::None, 79, 2).unwrap_err();
        assert_eq!(miscounted, BodyError::CountMismatch { announced: 2, decoded: 1 });
        let zstd = pull(&raw, &Compression::from_header(Some("zstd")), 79, 1).unwrap_err();
        assert_eq!(zstd.code(), "UnsupportedCompression");
        for length in 0..81 {
            let mut block = vec![0xf0, 0x40];
            block.extend_from_slice(&raw);
            let _ = pull(&block[..length], &Compression::Lz4, 79, 1);
        }
        for length in 0..raw.len() {
            assert!(pull(&raw[..length], &Compression::None, length, 1).is_err(), "cut at {length}");
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

    /// Every field as `visit_fields` reports it.
    fn visited(event: &LogEvent) -> Vec<(String, Value)> {
        let mut fields = Vec::new();
        event.visit_fields(&mut |key, field| fields.push((key.to_string(), field.to_value())));
        fields
    }

    /// Checks every way of reading `pristine` (not built yet, or built at
    /// once) against its built map, each on a fresh copy.
    fn assert_reads_agree_with_the_built_map(pristine: &LogEvent) {
        let built = pristine.clone().fields().clone();
        let pairs: Vec<(String, Value)> = built.iter().map(|(key, value)| (key.to_string(), value.clone())).collect();
        assert_eq!(visited(&pristine.clone()), pairs);
        assert_eq!(pristine.clone().field_count(), built.len());
        let mut keys: Vec<String> = built.keys().map(|key| key.to_string()).collect();
        keys.extend(["__time_ns_part__", "missing", "__missing__", "__tag__:missing", "k.a"].map(String::from));
        for key in &keys {
            let expected = built.get(key).cloned();
            assert_eq!(pristine.clone().field(key).map(|field| field.to_value()), expected, "field({key})");
            assert_eq!(pristine.clone().get(key).cloned(), expected, "get({key})");
            assert_eq!(pristine.clone().get_path(key), crate::event::lookup_path(&built, key), "get_path({key})");
        }
        let mut changed = pristine.clone();
        changed.insert("added", 1);
        assert!(changed.unbuilt_fields().is_none(), "a change builds the fields");
        assert_eq!(changed.field_count(), built.len() + usize::from(!built.contains_key("added")));
        assert_eq!(changed.into_parts().0.get("added"), Some(&Value::Integer(1)));
    }

    #[test]
    fn plain_logs_stay_unbuilt_while_group_fields_are_read() {
        let list = LogGroupList {
            log_groups: vec![LogGroup {
                logs: vec![encoded_log(10, 5, &[(b"level", b"INFO"), (b"message", b"caf\xc3\xa9 \xff")])],
                topic: Some(Bytes::from_static(b"app")),
                source: Some(Bytes::from_static(b"10.0.0.1")),
                log_tags: vec![LogTag { key: Bytes::from_static(b"__path__"), value: Bytes::from_static(b"/a.log") }],
            }],
        };
        let (events, _) = flatten(list).unwrap();
        let event = &events[0];
        assert!(event.unbuilt_fields().is_some(), "a plain log is deferred");
        assert_eq!(event.get("__topic__").and_then(Value::as_str), Some("app"));
        assert_eq!(event.get("__tag__:__path__").and_then(Value::as_str), Some("/a.log"));
        assert_eq!(event.get("__other__"), None);
        assert_eq!(event.field("message").map(|field| field.to_value()), Some(Value::from("caf\u{e9} \u{fffd}")));
        assert_eq!(event.field("__time__"), Some(FieldRef::Integer(10)));
        assert!(event.unbuilt_fields().is_some(), "none of those reads built the fields");
        assert_reads_agree_with_the_built_map(event);
        assert_eq!(event.get("level").and_then(Value::as_str), Some("INFO"));
        assert!(event.unbuilt_fields().is_none(), "a content field is read from the built map");
    }

    #[test]
    fn logs_whose_keys_would_merge_are_built_at_once() {
        let group = |contents: &[(&[u8], &[u8])], tags: &[&'static [u8]]| LogGroup {
            logs: vec![encoded_log(10, 0, contents)],
            topic: None,
            source: None,
            log_tags: tags
                .iter()
                .map(|key| LogTag { key: Bytes::from_static(key), value: Bytes::from_static(b"v") })
                .collect(),
        };
        let list = LogGroupList {
            log_groups: vec![
                group(&[(b"a", b"1"), (b"a", b"2")], &[]),
                group(&[(b"__source__", b"x")], &[]),
                group(&[(b"\xff", b"x")], &[]),
                group(&[(b"a", b"1")], &[b"\xfe", b"\xff"]),
                group(&[(b"a", b"1")], &[b"t"]),
            ],
        };
        let (events, _) = flatten(list).unwrap();
        let deferred: Vec<bool> = events.iter().map(|event| event.unbuilt_fields().is_some()).collect();
        assert_eq!(deferred, [false, false, false, false, true]);
        assert_eq!(events[0].get("a").and_then(Value::as_str), Some("2"));
        assert_eq!(events[3].fields().len(), 5, "both tags became __tag__:\u{fffd}");
    }

    fn arbitrary_key() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"__topic__".to_vec()),
            Just(b"__time__".to_vec()),
            Just(b"__tag__:t".to_vec()),
            Just(b"\xff".to_vec()),
            Just("é".as_bytes().to_vec()),
            "[ab_.]{0,3}".prop_map(String::into_bytes),
        ]
    }

    proptest! {
        /// The LZ4 decoder runs on whatever the network delivered: a
        /// corrupted block (bytes changed, cut short) or a wrong announced
        /// size is an error or the exact bytes, never a panic, and a reused
        /// buffer never shows an earlier body's bytes.
        #[test]
        fn corrupted_lz4_blocks_are_errors_never_panics(
            raw in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), any::<u8>()], 1..600),
            changes in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in any::<prop::sample::Index>(),
            announced_delta in -2i64..3,
        ) {
            let mut block = lz4_flex::block::compress(&raw);
            for (at, byte) in &changes {
                let at = at.index(block.len());
                block[at] = *byte;
            }
            if changes.len() % 2 == 1 {
                block.truncate(cut.index(block.len() + 1));
            }
            let announced = usize::try_from(raw.len() as i64 + announced_delta).unwrap_or(0);
            // Fill the buffer pool with another body's bytes first.
            drop(decompress(Bytes::from(lz4_flex::block::compress(&vec![b'z'; 700])), &Compression::Lz4, 700));
            match decompress(Bytes::from(block.clone()), &Compression::Lz4, announced) {
                Ok(body) => {
                    prop_assert_eq!(body.len(), announced);
                    if changes.is_empty() && announced == raw.len() {
                        prop_assert_eq!(body.as_ref(), raw.as_slice());
                    }
                    // Whatever came out is what the block says, not leftovers
                    // (an announced size of 0 is an empty pull, not decoded).
                    prop_assume!(announced > 0);
                    let mut fresh = vec![0u8; announced];
                    prop_assert_eq!(lz4_flex::block::decompress_into(&block, &mut fresh).ok(), Some(announced));
                    prop_assert_eq!(body.as_ref(), fresh.as_slice());
                }
                Err(error) => prop_assert!(
                    matches!(error, BodyError::Lz4 { .. } | BodyError::RawSizeMismatch { .. }),
                    "{error:?}"
                ),
            }
        }

        #[test]
        fn deferred_or_built_every_reader_sees_what_building_gives(
            tags in proptest::collection::vec((prop_oneof![Just(b"t".to_vec()), arbitrary_key()], any::<Vec<u8>>()), 0..3),
            logs in proptest::collection::vec(
                (any::<u32>(), 0u32..3, proptest::collection::vec((arbitrary_key(), any::<Vec<u8>>()), 0..6)),
                1..4,
            ),
        ) {
            let log_group = LogGroup {
                logs: logs
                    .iter()
                    .map(|(time, time_ns, contents)| {
                        let contents: Vec<(&[u8], &[u8])> =
                            contents.iter().map(|(key, value)| (key.as_slice(), value.as_slice())).collect();
                        encoded_log(*time, *time_ns, &contents)
                    })
                    .collect(),
                topic: Some(Bytes::from_static(b"topic")),
                source: None,
                log_tags: tags
                    .iter()
                    .map(|(key, value)| LogTag { key: Bytes::from(key.clone()), value: Bytes::from(value.clone()) })
                    .collect(),
            };
            let (events, _) = flatten(LogGroupList { log_groups: vec![log_group] }).unwrap();
            prop_assert_eq!(events.len(), logs.len());
            for event in &events {
                assert_reads_agree_with_the_built_map(event);
            }
        }
    }

    /// A length-delimited field `number` holding `bytes`.
    fn delimited(number: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![number << 3 | 2];
        prost::encoding::encode_varint(bytes.len() as u64, &mut out);
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn groups_read_fields_in_any_order_skip_unknown_ones_and_keep_the_last_topic() {
        let log = encoded_log(1_700_000_000, 0, &[(b"k", b"v")]);
        let mut tag = delimited(2, b"tag-value");
        tag.extend_from_slice(&[0x18, 0x07]); // LogTag field 3, a varint: unknown
        tag.extend(delimited(1, b"tag-key"));
        let mut group = delimited(3, b"first topic");
        group.extend(delimited(2, b"reserved")); // Reserved
        group.extend(delimited(1, &log));
        group.extend(delimited(5, b"machine-uuid")); // MachineUUID
        group.extend(delimited(6, &tag));
        group.extend([0x3d, 1, 2, 3, 4]); // field 7, fixed32: unknown
        group.extend(delimited(3, b"last topic"));
        group.extend(delimited(4, b"10.0.0.9"));
        group.extend(delimited(1, &log));
        let mut body = vec![0x10, 0x2a]; // LogGroupList field 2, a varint: unknown
        body.extend(delimited(1, &group));
        body.extend(delimited(1, &delimited(3, b"an empty group")));
        let body = Bytes::from(body);

        let mut events = Vec::new();
        let summary = flatten_body(body.clone(), &metadata(), &mut events).unwrap();
        let reference = decode_log_group_list(body).unwrap();
        assert_eq!(summary.log_groups, reference.log_groups.len());
        assert_eq!(summary.log_groups, 2);
        assert_eq!(events.len(), 2);
        for event in &events {
            assert_eq!(event.get("__topic__").and_then(Value::as_str), Some("last topic"));
            assert_eq!(event.get("__source__").and_then(Value::as_str), Some("10.0.0.9"));
            assert_eq!(event.get("__tag__:tag-key").and_then(Value::as_str), Some("tag-value"));
            assert_eq!(event.get("k").and_then(Value::as_str), Some("v"));
        }
        assert_eq!(reference.log_groups[0].topic.as_deref(), Some(b"last topic".as_slice()));
    }

    proptest! {
        /// The source's own `LogGroupList` reader against `prost` on valid
        /// and damaged bodies: whatever `prost` refuses it refuses, and what
        /// it reads has the groups, logs, topics, sources and tags `prost`
        /// reads (a log is opaque to `prost`; walking it can only add errors).
        #[test]
        fn the_body_reader_agrees_with_prost(
            groups in proptest::collection::vec(
                (
                    proptest::option::of(any::<Vec<u8>>()),
                    proptest::option::of(any::<Vec<u8>>()),
                    proptest::collection::vec((arbitrary_key(), any::<Vec<u8>>()), 0..3),
                    proptest::collection::vec((any::<u32>(), 0u32..3, proptest::collection::vec((arbitrary_key(), any::<Vec<u8>>()), 0..4)), 0..4),
                ),
                0..4,
            ),
            changes in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
            cut in proptest::option::of(any::<prop::sample::Index>()),
        ) {
            let list = LogGroupList {
                log_groups: groups
                    .iter()
                    .map(|(topic, source, tags, logs)| LogGroup {
                        logs: logs
                            .iter()
                            .map(|(time, time_ns, contents)| {
                                // Keys that cannot replace a group field.
                                let keys: Vec<Vec<u8>> = contents.iter().map(|(key, _)| [b"k", key.as_slice()].concat()).collect();
                                let contents: Vec<(&[u8], &[u8])> =
                                    keys.iter().zip(contents).map(|(key, (_, value))| (key.as_slice(), value.as_slice())).collect();
                                encoded_log(*time, *time_ns, &contents)
                            })
                            .collect(),
                        topic: topic.clone().map(Bytes::from),
                        source: source.clone().map(Bytes::from),
                        log_tags: tags
                            .iter()
                            .map(|(key, value)| LogTag { key: Bytes::from(key.clone()), value: Bytes::from(value.clone()) })
                            .collect(),
                    })
                    .collect(),
            };
            let mut body = list.encode_to_vec();
            let damaged = !changes.is_empty() || cut.is_some();
            for (at, byte) in &changes {
                if !body.is_empty() {
                    let at = at.index(body.len());
                    body[at] = *byte;
                }
            }
            if let Some(cut) = cut {
                body.truncate(cut.index(body.len() + 1));
            }
            let body = Bytes::from(body);
            let mut events = Vec::new();
            let ours = flatten_body(body.clone(), &metadata(), &mut events);
            let theirs = decode_log_group_list(body);
            if !damaged {
                prop_assert!(ours.is_ok(), "{:?}", ours);
            }
            match (ours, theirs) {
                (Ok(summary), Ok(reference)) => {
                    prop_assert_eq!(summary.log_groups, reference.log_groups.len());
                    let mut events = events.iter();
                    for group in &reference.log_groups {
                        let lossy = |bytes: &Option<Bytes>| Some(String::from_utf8_lossy(bytes.as_deref().unwrap_or_default()).into_owned());
                        for _ in &group.logs {
                            let event = events.next().expect("an event per log");
                            prop_assert_eq!(event.get("__topic__").and_then(Value::as_str).map(String::from), lossy(&group.topic));
                            prop_assert_eq!(event.get("__source__").and_then(Value::as_str).map(String::from), lossy(&group.source));
                            for tag in &group.log_tags {
                                let name = format!("__tag__:{}", String::from_utf8_lossy(&tag.key));
                                prop_assert!(event.get(&name).is_some(), "{} missing", name);
                            }
                        }
                    }
                    prop_assert!(events.next().is_none(), "no event beyond the logs");
                }
                (Ok(_), Err(error)) => prop_assert!(false, "prost refused what was read: {}", error),
                (Err(_), _) => prop_assert!(events.is_empty(), "a failed body must add no events"),
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
