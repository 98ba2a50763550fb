//! The PullLogs wire body: protobuf messages mirroring the SDKs' `log.proto`
//! (proto2), written by hand for `prost`, and the raw LZ4 block codec.
//!
//! Guarantees: field numbers and types match reference §3.1 (there is no
//! field 3 in `Log`; `time_ns` is `fixed32`); `encode_log_group_entry` yields
//! exactly the bytes one group contributes to a serialized `LogGroupList`, so
//! a response body is the concatenation of pre-encoded entries and is never
//! re-encoded per pull. LZ4 is the block format with no size prefix and no
//! frame (reference §2.3). Never panics on malformed input: decoding returns
//! errors.

use bytes::Bytes;
use prost::Message;

/// The body of a PullLogs response.
#[derive(Clone, PartialEq, Message)]
pub struct LogGroupList {
    #[prost(message, repeated, tag = "1")]
    pub log_groups: Vec<LogGroup>,
}

/// A batch of logs sharing one topic, source and tag set.
#[derive(Clone, PartialEq, Message)]
pub struct LogGroup {
    #[prost(message, repeated, tag = "1")]
    pub logs: Vec<Log>,
    /// Internal to SLS (Go calls it `Category`); the emulator leaves it unset.
    #[prost(string, optional, tag = "2")]
    pub reserved: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub topic: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub source: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub machine_uuid: Option<String>,
    #[prost(message, repeated, tag = "6")]
    pub log_tags: Vec<LogTag>,
}

/// One log: a time and ordered key/value contents.
#[derive(Clone, PartialEq, Message)]
pub struct Log {
    /// Unix seconds.
    #[prost(uint32, required, tag = "1")]
    pub time: u32,
    #[prost(message, repeated, tag = "2")]
    pub contents: Vec<LogContent>,
    /// Nanosecond part of the time, 0..999_999_999.
    #[prost(fixed32, optional, tag = "4")]
    pub time_ns: Option<u32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct LogContent {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, required, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct LogTag {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, required, tag = "2")]
    pub value: String,
}

impl LogGroup {
    /// A group with a topic, a source, tags and logs given as plain pairs.
    pub fn new(topic: &str, source: &str, tags: &[(&str, &str)], logs: Vec<Log>) -> LogGroup {
        LogGroup {
            logs,
            reserved: None,
            topic: Some(topic.to_string()),
            source: Some(source.to_string()),
            machine_uuid: None,
            log_tags: tags
                .iter()
                .map(|(key, value)| LogTag { key: key.to_string(), value: value.to_string() })
                .collect(),
        }
    }
}

impl Log {
    /// A log at `time` seconds with the given contents and no nanosecond part.
    pub fn new(time: u32, contents: &[(&str, &str)]) -> Log {
        Log {
            time,
            contents: contents
                .iter()
                .map(|(key, value)| LogContent { key: key.to_string(), value: value.to_string() })
                .collect(),
            time_ns: None,
        }
    }
}

/// The bytes `group` contributes to a serialized `LogGroupList`: the field-1
/// key, the length, and the encoded group. Concatenating entries gives a valid
/// `LogGroupList`, which is how the pull path builds bodies without encoding.
pub fn encode_log_group_entry(group: &LogGroup) -> Bytes {
    let group_length = group.encoded_len();
    let mut buffer = Vec::with_capacity(group_length + 6);
    prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut buffer);
    prost::encoding::encode_varint(group_length as u64, &mut buffer);
    group.encode_raw(&mut buffer);
    Bytes::from(buffer)
}

/// Decodes a PullLogs body that is already decompressed.
pub fn decode_log_group_list(body: &[u8]) -> Result<LogGroupList, prost::DecodeError> {
    LogGroupList::decode(body)
}

/// Raw LZ4 block compression, no size prefix (what every SDK decodes with
/// `x-log-bodyrawsize` as the output size).
pub fn lz4_block_compress(raw: &[u8]) -> Vec<u8> {
    lz4_flex::block::compress(raw)
}

/// Decompresses a raw LZ4 block of `raw_size` bytes.
pub fn lz4_block_decompress(compressed: &[u8], raw_size: usize) -> Result<Vec<u8>, lz4_flex::block::DecompressError> {
    lz4_flex::block::decompress(compressed, raw_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference §3.3: one group, topic `topic1`, source `10.0.0.1`, tag
    /// `__receive_time__`, one log at 1700000000 with time_ns 5 and msg=hello.
    const REFERENCE_VECTOR_HEX: &str = "0a4d0a190880e2cfaa06120c0a036d7367120568656c6c6f25050000001a06746f70696331220831302e302e302e31321e0a105f5f726563656976655f74696d655f5f120a31373030303030303030";

    fn reference_group() -> LogGroup {
        let mut log = Log::new(1_700_000_000, &[("msg", "hello")]);
        log.time_ns = Some(5);
        LogGroup::new("topic1", "10.0.0.1", &[("__receive_time__", "1700000000")], vec![log])
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    #[test]
    fn encodes_the_reference_test_vector_byte_for_byte() {
        let entry = encode_log_group_entry(&reference_group());
        assert_eq!(entry.len(), 79);
        assert_eq!(hex(&entry), REFERENCE_VECTOR_HEX);
        let list = LogGroupList { log_groups: vec![reference_group()] };
        assert_eq!(hex(&list.encode_to_vec()), REFERENCE_VECTOR_HEX);
    }

    #[test]
    fn lz4_block_of_the_test_vector_is_all_literals() {
        let entry = encode_log_group_entry(&reference_group());
        let compressed = lz4_block_compress(&entry);
        assert_eq!(compressed.len(), 81);
        assert_eq!(&compressed[..2], &[0xf0, 0x40]);
        assert_eq!(&compressed[2..], &entry[..]);
        assert_eq!(lz4_block_decompress(&compressed, entry.len()).unwrap(), entry.to_vec());
    }

    #[test]
    fn concatenated_entries_decode_as_one_list() {
        let mut body = Vec::new();
        for topic in ["a", "b", "c"] {
            let group = LogGroup::new(topic, "s", &[], vec![Log::new(1, &[("k", topic)])]);
            body.extend_from_slice(&encode_log_group_entry(&group));
        }
        let list = decode_log_group_list(&body).unwrap();
        let topics: Vec<_> = list.log_groups.iter().map(|group| group.topic.clone().unwrap()).collect();
        assert_eq!(topics, ["a", "b", "c"]);
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_panic() {
        assert!(decode_log_group_list(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        assert!(lz4_block_decompress(&[0x1f, b'a', 0xff, 0xff], 64).is_err());
    }
}
