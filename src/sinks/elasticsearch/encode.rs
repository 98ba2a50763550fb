//! Bulk encoding: one action line plus one source line per document, and
//! reading a `_bulk` answer item by item.
//!
//! Guarantees: every encoded item ends with `\n` (the NDJSON rule
//! Elasticsearch enforces); the source line never carries the metadata
//! fields `_id`, `_index`, `_type` (Elasticsearch refuses them inside a
//! document; the poller adds them to its events); `_type` goes into the
//! action only for 6.x. Item classification (`classify_item`) follows the
//! reference table: 2xx delivered, 409 on `create` already there, 429 and
//! 5xx retried individually, a read-only (flood-stage) block retried,
//! everything else permanent.

use std::collections::HashMap;

use bytes::Bytes;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use super::config::BulkAction;
use crate::event::{ObjectMap, Value};

/// Metadata fields that must not appear in a document's source.
const METADATA_FIELDS: [&str; 3] = ["_id", "_index", "_type"];

/// A document's fields without the metadata fields.
pub struct DocumentSource<'a>(pub &'a ObjectMap);

impl Serialize for DocumentSource<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in self.0 {
            if !METADATA_FIELDS.contains(&key.as_str()) {
                map.serialize_entry(key.as_str(), value)?;
            }
        }
        map.end()
    }
}

/// The metadata of one bulk action.
#[derive(Debug, Clone, Copy)]
pub struct ActionMeta<'a> {
    pub action: BulkAction,
    pub index: &'a str,
    pub id: Option<&'a str>,
    pub type_name: Option<&'a str>,
}

#[derive(Serialize)]
struct ActionBody<'a> {
    #[serde(rename = "_index")]
    index: &'a str,
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "_type", skip_serializing_if = "Option::is_none")]
    type_name: Option<&'a str>,
}

/// Appends the action line and the source line to `buffer`; returns the
/// length of the action line (with its newline), so the source can be found
/// again for dead-lettering.
pub fn encode_item(buffer: &mut Vec<u8>, meta: ActionMeta<'_>, source: &ObjectMap) -> usize {
    let start = buffer.len();
    let mut action = HashMap::with_capacity(1);
    action.insert(meta.action.name(), ActionBody { index: meta.index, id: meta.id, type_name: meta.type_name });
    serde_json::to_writer(&mut *buffer, &action).expect("serialising to memory cannot fail");
    buffer.push(b'\n');
    let action_length = buffer.len() - start;
    serde_json::to_writer(&mut *buffer, &DocumentSource(source)).expect("serialising to memory cannot fail");
    buffer.push(b'\n');
    action_length
}

/// One encoded document.
#[derive(Debug, Clone)]
pub struct EncodedItem {
    /// Action line and source line, each ending in `\n`.
    pub bytes: Bytes,
    pub action_length: usize,
    pub action: BulkAction,
}

impl EncodedItem {
    pub fn source_line(&self) -> &[u8] {
        let source = &self.bytes[self.action_length.min(self.bytes.len())..];
        source.strip_suffix(b"\n").unwrap_or(source)
    }
}

/// The event time that fills strftime specifiers of the index template:
/// `field` as RFC 3339 / ISO-8601 text (UTC when without offset) or epoch
/// seconds / milliseconds, else `fallback` (the write time).
pub fn event_time(fields: &ObjectMap, field: &str, fallback: DateTime<Utc>) -> DateTime<Utc> {
    match crate::event::lookup_path(fields, field) {
        Some(Value::String(text)) => DateTime::parse_from_rfc3339(text)
            .map(|time| time.with_timezone(&Utc))
            .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").map(|naive| naive.and_utc()))
            .unwrap_or(fallback),
        Some(Value::Integer(number)) if number.unsigned_abs() >= 100_000_000_000 => {
            DateTime::from_timestamp_millis(*number).unwrap_or(fallback)
        }
        Some(Value::Integer(number)) => DateTime::from_timestamp(*number, 0).unwrap_or(fallback),
        Some(Value::Float(number)) if number.is_finite() => {
            DateTime::from_timestamp_millis((number * 1000.0) as i64).unwrap_or(fallback)
        }
        _ => fallback,
    }
}

/// What to do with one item of a `_bulk` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    Delivered,
    /// 409 on `create`: the document is already there.
    AlreadyExists,
    /// Send this item again after a backoff.
    Retry,
    /// Refused for good; dead-letter with this reason.
    Reject(String),
}

pub fn classify_item(action: BulkAction, status: u16, error_type: Option<&str>, reason: Option<&str>) -> ItemOutcome {
    match status {
        200..=299 => ItemOutcome::Delivered,
        409 if action == BulkAction::Create => ItemOutcome::AlreadyExists,
        429 => ItemOutcome::Retry,
        500..=599 => ItemOutcome::Retry,
        // The flood-stage block lifts by itself once disk frees (7.4+);
        // older releases answer 403 for the same block.
        403 if error_type == Some("cluster_block_exception")
            && reason.is_some_and(|reason| reason.contains("read-only-allow-delete") || reason.contains("flood")) =>
        {
            ItemOutcome::Retry
        }
        _ => ItemOutcome::Reject(format!(
            "Elasticsearch refused the document: {status} {}: {}",
            error_type.unwrap_or("error"),
            reason.unwrap_or("no reason given")
        )),
    }
}

#[derive(Debug, Deserialize)]
struct BulkAnswer {
    #[serde(default)]
    items: Vec<HashMap<String, BulkItemAnswer>>,
}

#[derive(Debug, Deserialize)]
struct BulkItemAnswer {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// One item of the answer, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemResult {
    pub status: u16,
    pub error_type: Option<String>,
    pub reason: Option<String>,
}

/// Reads a `_bulk` answer, checking it has one item per request item.
pub fn parse_bulk_answer(body: &[u8], expected_items: usize) -> Result<Vec<ItemResult>, String> {
    let answer: BulkAnswer = serde_json::from_slice(body)
        .map_err(|error| format!("the _bulk answer is not valid JSON of the expected shape ({error})"))?;
    if answer.items.len() != expected_items {
        return Err(format!("the _bulk answer has {} items for {expected_items} documents", answer.items.len()));
    }
    answer
        .items
        .into_iter()
        .map(|item| {
            let (_, result) = item.into_iter().next().ok_or("a _bulk answer item is empty")?;
            let (error_type, reason) = match result.error {
                Some(serde_json::Value::Object(error)) => {
                    let text = |key: &str| error.get(key).and_then(serde_json::Value::as_str).map(str::to_string);
                    (text("type"), text("reason"))
                }
                Some(serde_json::Value::String(reason)) => (None, Some(reason)),
                _ => (None, None),
            };
            Ok(ItemResult { status: result.status, error_type, reason })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: serde_json::Value) -> ObjectMap {
        match Value::from(value) {
            Value::Object(map) => map,
            _ => panic!("object"),
        }
    }

    #[test]
    fn items_are_two_ndjson_lines_without_metadata_fields() {
        let mut buffer = Vec::new();
        let source = fields(json!({"message": "a\nb", "_id": "x", "_index": "old", "n": 1}));
        let action_length = encode_item(
            &mut buffer,
            ActionMeta { action: BulkAction::Create, index: "logs", id: Some("x"), type_name: None },
            &source,
        );
        let text = String::from_utf8(buffer.clone()).unwrap();
        assert_eq!(text, "{\"create\":{\"_index\":\"logs\",\"_id\":\"x\"}}\n{\"message\":\"a\\nb\",\"n\":1}\n");
        let item = EncodedItem { bytes: Bytes::from(buffer), action_length, action: BulkAction::Create };
        assert_eq!(item.source_line(), b"{\"message\":\"a\\nb\",\"n\":1}");
        let mut es6 = Vec::new();
        encode_item(
            &mut es6,
            ActionMeta { action: BulkAction::Index, index: "logs", id: None, type_name: Some("_doc") },
            &fields(json!({})),
        );
        assert_eq!(String::from_utf8(es6).unwrap(), "{\"index\":{\"_index\":\"logs\",\"_type\":\"_doc\"}}\n{}\n");
    }

    #[test]
    fn item_classification_retries_only_what_can_heal() {
        assert_eq!(classify_item(BulkAction::Index, 201, None, None), ItemOutcome::Delivered);
        assert_eq!(
            classify_item(BulkAction::Create, 409, Some("version_conflict_engine_exception"), None),
            ItemOutcome::AlreadyExists
        );
        assert!(matches!(
            classify_item(BulkAction::Index, 409, Some("version_conflict_engine_exception"), None),
            ItemOutcome::Reject(_)
        ));
        assert_eq!(
            classify_item(BulkAction::Index, 429, Some("es_rejected_execution_exception"), None),
            ItemOutcome::Retry
        );
        assert_eq!(
            classify_item(BulkAction::Index, 503, Some("unavailable_shards_exception"), None),
            ItemOutcome::Retry
        );
        assert_eq!(
            classify_item(BulkAction::Index, 403, Some("cluster_block_exception"), Some("index [x] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block];")),
            ItemOutcome::Retry
        );
        let mapping = classify_item(
            BulkAction::Index,
            400,
            Some("document_parsing_exception"),
            Some("[1:10] failed to parse field [n] of type [long]"),
        );
        assert_eq!(mapping, ItemOutcome::Reject("Elasticsearch refused the document: 400 document_parsing_exception: [1:10] failed to parse field [n] of type [long]".into()));
        assert!(matches!(
            classify_item(BulkAction::Index, 404, Some("index_not_found_exception"), None),
            ItemOutcome::Reject(_)
        ));
        assert!(matches!(
            classify_item(BulkAction::Index, 403, Some("security_exception"), None),
            ItemOutcome::Reject(_)
        ));
    }

    #[test]
    fn bulk_answers_are_read_in_order_and_checked() {
        let body = br#"{"took":3,"errors":true,"items":[{"index":{"_index":"a","_id":"1","status":201,"result":"created"}},{"create":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},{"index":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"bad"}}}]}"#;
        let items = parse_bulk_answer(body, 3).unwrap();
        assert_eq!(items[0], ItemResult { status: 201, error_type: None, reason: None });
        assert_eq!(items[1].error_type.as_deref(), Some("es_rejected_execution_exception"));
        assert_eq!(items[2].reason.as_deref(), Some("bad"));
        assert!(parse_bulk_answer(body, 2).unwrap_err().contains("3 items for 2"));
        assert!(parse_bulk_answer(b"{\"errors\":fal", 1).is_err());
        assert!(parse_bulk_answer(br#"{"items":[{}]}"#, 1).is_err());
    }

    #[test]
    fn index_time_comes_from_the_event() {
        let fallback = DateTime::from_timestamp(0, 0).unwrap();
        let event = fields(
            json!({"@timestamp": "2026-03-04T05:06:07.890Z", "ms": 1_772_600_767_890_i64, "s": 1_772_600_767, "naive": "2026-03-04T05:06:07"}),
        );
        let expected = DateTime::parse_from_rfc3339("2026-03-04T05:06:07.890Z").unwrap().with_timezone(&Utc);
        assert_eq!(event_time(&event, "@timestamp", fallback), expected);
        assert_eq!(event_time(&event, "ms", fallback).timestamp_millis(), 1_772_600_767_890);
        assert_eq!(event_time(&event, "s", fallback).timestamp(), 1_772_600_767);
        assert_eq!(event_time(&event, "naive", fallback).timestamp(), 1_772_600_767);
        assert_eq!(event_time(&event, "absent", fallback), fallback);
    }
}
