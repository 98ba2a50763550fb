//! ElastAlert's writeback format: alert events (and status, error and
//! silence events) turned into the documents ElastAlert 2 writes to its
//! writeback indices, the mappings `pipe es setup` creates, and
//! `read_active_silences` for the rules transform to call at start-up.
//!
//! Indices, for prefix `P` (`writeback_index`, default `elastalert`): `P`
//! (alert records), `P_status` (run records), `P_silence`, `P_error`,
//! `P_past` (created for ElastAlert compatibility, never written).
//!
//! Which document an event becomes: its `writeback_type` field (`alert`,
//! the default when absent; `status`; `error`; `silence`), removed from the
//! document.
//!
//! Alert events (field names produced by the rules engine: the first
//! match's fields at the top level, plus `rule_name`, `alert_subject`,
//! `alert_text`, `alert_time`, `match_time`, `aggregation_key`,
//! `aggregated_matches`) map to alert records:
//! - `rule_name` ← `rule_name` (required; an event without it is
//!   dead-lettered);
//! - `match_body` ← the event's `match_body` object if it has one, else
//!   every field except the alert fields listed above, `alert_info`,
//!   `alert_sent`, `alert_exception`, `writeback_type` and `_id`/`_index`/
//!   `_type` (so `num_hits`, `num_matches`, `@timestamp` and the match
//!   fields stay in it, as in ElastAlert);
//! - `alert_time` ← `alert_time`, else the write time; `match_time` ←
//!   `match_time`, else the match body's `@timestamp`;
//! - `alert_sent` ← `alert_sent` (boolean), else true; `alert_info` ←
//!   `alert_info` (object), else `{"type": "pipe"}`; `alert_exception` and
//!   `aggregation_key` when present;
//! - `@timestamp` ← the write time (ElastAlert sets it when writing);
//! - pipe's additions: `alert_subject` and `alert_text`, so the sent text
//!   can be audited (ElastAlert readers ignore unknown fields).
//!
//! An event with `aggregated_matches` (two or more match bodies) becomes one
//! record per match, as ElastAlert writes them: the first is the root, the
//! others carry its id as `aggregate_id`.
//!
//! Status, error and silence events are written as they are (ElastAlert's
//! fields: `rule_name`, `starttime`, `endtime`, `matches`, `hits`,
//! `time_taken`; `message`, `traceback`, `data`; `rule_name`, `until`,
//! `exponent`), with `@timestamp` set to the write time when absent and
//! `exponent` defaulting to 0.
//!
//! Every document gets a client-made id, so a retried bulk item (or a
//! retried request whose answer was lost) replaces instead of duplicating.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;
use reqwest::Method;
use serde_json::{json, Value as JsonValue};

use crate::elasticsearch::client::{encode_path_segment, RequestBody};
use crate::elasticsearch::{EsClient, EsError};
use crate::event::{KeyString, ObjectMap, Value};

pub const WRITEBACK_TYPE_FIELD: &str = "writeback_type";

/// Fields of an alert event that are about the alert, not the match.
const ALERT_FIELDS: &[&str] = &[
    "rule_name",
    "alert_subject",
    "alert_text",
    "alert_time",
    "match_time",
    "aggregation_key",
    "aggregated_matches",
    "alert_info",
    "alert_sent",
    "alert_exception",
    "match_body",
    WRITEBACK_TYPE_FIELD,
    "_id",
    "_index",
    "_type",
];

/// The five writeback index names for one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritebackIndices {
    pub alerts: String,
    pub status: String,
    pub silence: String,
    pub error: String,
    pub past: String,
}

impl WritebackIndices {
    pub fn new(prefix: &str) -> WritebackIndices {
        WritebackIndices {
            alerts: prefix.to_string(),
            status: format!("{prefix}_status"),
            silence: format!("{prefix}_silence"),
            error: format!("{prefix}_error"),
            past: format!("{prefix}_past"),
        }
    }

    /// Every index with the mapping `pipe es setup` gives it, in creation order.
    pub fn with_mappings(&self) -> [(&str, JsonValue); 5] {
        let date = json!({"type": "date", "format": "date_optional_time"});
        [
            (
                self.alerts.as_str(),
                json!({
                    "numeric_detection": true,
                    "date_detection": false,
                    "dynamic_templates": [{"strings_as_keyword": {"match_mapping_type": "string", "mapping": {"type": "keyword", "ignore_above": 1024}}}],
                    "properties": {
                        "rule_name": {"type": "keyword"},
                        "@timestamp": date,
                        "alert_time": date,
                        "match_time": date,
                        "match_body": {"type": "object", "enabled": false},
                        "aggregate_id": {"type": "keyword"}
                    }
                }),
            ),
            (self.status.as_str(), json!({"properties": {"rule_name": {"type": "keyword"}, "@timestamp": date}})),
            (
                self.silence.as_str(),
                json!({"properties": {"rule_name": {"type": "keyword"}, "until": date, "@timestamp": date}}),
            ),
            (
                self.error.as_str(),
                json!({"properties": {"data": {"type": "object", "enabled": false}, "@timestamp": date}}),
            ),
            (
                self.past.as_str(),
                json!({"properties": {"rule_name": {"type": "keyword"}, "match_body": {"type": "object", "enabled": false}, "@timestamp": date, "aggregate_id": {"type": "keyword"}}}),
            ),
        ]
    }
}

/// One document to write.
#[derive(Debug, Clone, PartialEq)]
pub struct WritebackDocument {
    pub index: String,
    pub id: String,
    pub source: ObjectMap,
}

/// A random document id: 128 bits, URL-safe base64 (22 characters).
pub fn new_document_id() -> String {
    URL_SAFE_NO_PAD.encode(rand::rng().random::<u128>().to_be_bytes())
}

fn iso(time: DateTime<Utc>) -> Value {
    Value::from(time.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn key(name: &'static str) -> KeyString {
    KeyString::const_new(name)
}

/// The documents one event becomes. `Err` says why the event cannot be a
/// writeback document (it is dead-lettered with that reason).
pub fn writeback_documents(
    fields: &ObjectMap,
    indices: &WritebackIndices,
    now: DateTime<Utc>,
    mut new_id: impl FnMut() -> String,
) -> Result<Vec<WritebackDocument>, String> {
    let kind = match fields.get(WRITEBACK_TYPE_FIELD) {
        None => "alert",
        Some(Value::String(kind)) => kind.as_str(),
        Some(other) => {
            return Err(format!(
                "\"{WRITEBACK_TYPE_FIELD}\" is a {}; it must be alert, status, error or silence",
                other.kind_name()
            ))
        }
    };
    let passthrough =
        |index: &str, required: &[&str], defaults: &[(&'static str, Value)], new_id: &mut dyn FnMut() -> String| {
            for field in required {
                if fields.get(field).is_none_or(Value::is_null) {
                    return Err(format!("a {kind} writeback event needs the field \"{field}\""));
                }
            }
            let mut source = fields.clone();
            source.shift_remove(WRITEBACK_TYPE_FIELD);
            for metadata in ["_id", "_index", "_type"] {
                source.shift_remove(metadata);
            }
            for (name, value) in defaults {
                if !source.contains_key(name) {
                    source.insert(key(name), value.clone());
                }
            }
            if !source.contains_key("@timestamp") {
                source.insert(key("@timestamp"), iso(now));
            }
            Ok(vec![WritebackDocument { index: index.to_string(), id: new_id(), source }])
        };
    match kind {
        "alert" => alert_documents(fields, indices, now, &mut new_id),
        "status" => passthrough(&indices.status, &["rule_name", "endtime"], &[], &mut new_id),
        "error" => passthrough(&indices.error, &["message"], &[], &mut new_id),
        "silence" => {
            passthrough(&indices.silence, &["rule_name", "until"], &[("exponent", Value::Integer(0))], &mut new_id)
        }
        other => Err(format!("\"{WRITEBACK_TYPE_FIELD}\" is {other:?}; it must be alert, status, error or silence")),
    }
}

fn alert_documents(
    fields: &ObjectMap,
    indices: &WritebackIndices,
    now: DateTime<Utc>,
    new_id: &mut dyn FnMut() -> String,
) -> Result<Vec<WritebackDocument>, String> {
    let rule_name = match fields.get("rule_name") {
        Some(Value::String(name)) if !name.is_empty() => name.clone(),
        _ => return Err("an alert writeback event needs a text field \"rule_name\"".to_string()),
    };
    let first_body = match fields.get("match_body") {
        Some(Value::Object(body)) => body.clone(),
        _ => {
            let mut body = fields.clone();
            body.retain(|name, _| !ALERT_FIELDS.contains(&name.as_str()));
            body
        }
    };
    let mut bodies = vec![first_body];
    if let Some(Value::Array(matches)) = fields.get("aggregated_matches") {
        bodies.extend(matches.iter().skip(1).filter_map(|body| body.as_object().cloned()));
    }
    let mut common = ObjectMap::default();
    common.insert(key("@timestamp"), iso(now));
    common.insert(key("rule_name"), Value::String(rule_name));
    let text_or = |name: &str| fields.get(name).filter(|value| matches!(value, Value::String(_))).cloned();
    common.insert(key("alert_time"), text_or("alert_time").unwrap_or_else(|| iso(now)));
    common.insert(key("alert_sent"), Value::Boolean(!matches!(fields.get("alert_sent"), Some(Value::Boolean(false)))));
    let info = match fields.get("alert_info") {
        Some(Value::Object(info)) => Value::Object(info.clone()),
        _ => {
            let mut info = ObjectMap::default();
            info.insert(key("type"), Value::from("pipe"));
            Value::Object(info)
        }
    };
    common.insert(key("alert_info"), info);
    for optional in ["alert_exception", "aggregation_key", "alert_subject", "alert_text"] {
        if let Some(value) = fields.get(optional).filter(|value| !value.is_null()) {
            common.insert(KeyString::from(optional), value.clone());
        }
    }
    let root_id = new_id();
    let mut documents = Vec::with_capacity(bodies.len());
    for (position, body) in bodies.into_iter().enumerate() {
        let mut source = common.clone();
        let match_time = if position == 0 { text_or("match_time") } else { None }
            .or_else(|| body.get("@timestamp").filter(|value| matches!(value, Value::String(_))).cloned());
        if let Some(match_time) = match_time {
            source.insert(key("match_time"), match_time);
        }
        let id = if position == 0 {
            root_id.clone()
        } else {
            source.insert(key("aggregate_id"), Value::from(root_id.as_str()));
            new_id()
        };
        source.insert(key("match_body"), Value::Object(body));
        documents.push(WritebackDocument { index: indices.alerts.clone(), id, source });
    }
    Ok(documents)
}

/// An active silence: alerts for `rule_name` (a rule name, or
/// `rule.query_key_value`) are suppressed until `until`.
#[derive(Debug, Clone, PartialEq)]
pub struct Silence {
    pub rule_name: String,
    pub until: DateTime<Utc>,
    pub exponent: i64,
}

/// Reads the silences still active at `now` from `<writeback_index>_silence`:
/// for each silence key of `rule_names` (the name itself and every
/// `name.<value>` key, as silence keys are a rule's `realert_key` plus its
/// query_key value; all keys when `rule_names` is empty), the record with
/// the latest `until`. `rule_name` is matched as a keyword (the mapping of
/// `pipe es setup` and `elastalert-create-index`) or through its `.keyword`
/// sub-field (the dynamic mapping of an index the sink created by writing
/// to it); hits are checked against the names again, so a mapping that
/// matches loosely cannot restore another rule's silence. A missing index
/// means no silences. At most 10 000 records are read.
pub async fn read_active_silences(
    client: &EsClient,
    writeback_index: &str,
    rule_names: &[&str],
    now: DateTime<Utc>,
) -> Result<Vec<Silence>, EsError> {
    let mut filters = vec![json!({"range": {"until": {"gt": now.to_rfc3339_opts(SecondsFormat::Millis, true)}}})];
    if !rule_names.is_empty() {
        let should: Vec<JsonValue> = rule_names
            .iter()
            .flat_map(|name| {
                ["rule_name", "rule_name.keyword"].into_iter().flat_map(move |field| {
                    [json!({"term": {field: name}}), json!({"prefix": {field: format!("{name}.")}})]
                })
            })
            .collect();
        filters.push(json!({"bool": {"should": should, "minimum_should_match": 1}}));
    }
    let body = json!({"query": {"bool": {"filter": filters}}, "sort": [{"until": {"order": "desc"}}], "size": 10_000});
    let path = format!(
        "/{}/_search?ignore_unavailable=true",
        encode_path_segment(&WritebackIndices::new(writeback_index).silence)
    );
    let response = client.send(Method::POST, &path, Some(RequestBody::json(&body))).await?.into_success()?;
    let answer: JsonValue = response.json("silence search answer")?;
    let mut silences: Vec<Silence> = Vec::new();
    let hits = answer.pointer("/hits/hits").and_then(JsonValue::as_array).map(Vec::as_slice).unwrap_or_default();
    for hit in hits {
        let Some(source) = hit.get("_source") else { continue };
        let (Some(rule_name), Some(until)) =
            (source.get("rule_name").and_then(JsonValue::as_str), source.get("until").and_then(JsonValue::as_str))
        else {
            continue;
        };
        let Ok(until) = DateTime::parse_from_rfc3339(until) else { continue };
        if silences.iter().any(|silence| silence.rule_name == rule_name) || !is_key_of_any(rule_name, rule_names) {
            continue;
        }
        let exponent = source.get("exponent").and_then(JsonValue::as_i64).unwrap_or(0);
        silences.push(Silence { rule_name: rule_name.to_string(), until: until.with_timezone(&Utc), exponent });
    }
    Ok(silences)
}

/// Whether `key` is one of `rule_names` or `<name>.<value>` for one of
/// them; every key when `rule_names` is empty.
fn is_key_of_any(key: &str, rule_names: &[&str]) -> bool {
    rule_names.is_empty()
        || rule_names
            .iter()
            .any(|name| key.strip_prefix(name).is_some_and(|rest| rest.is_empty() || rest.starts_with('.')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_keys_belong_to_a_rule_by_name_or_name_dot_value() {
        assert!(is_key_of_any("web errors", &["web errors"]));
        assert!(is_key_of_any("web errors.web-1", &["other", "web errors"]));
        assert!(!is_key_of_any("web errors2", &["web errors"]));
        assert!(!is_key_of_any("web", &["web errors"]));
        assert!(is_key_of_any("anything", &[]));
    }

    fn fields(value: JsonValue) -> ObjectMap {
        match Value::from(value) {
            Value::Object(map) => map,
            _ => panic!("object"),
        }
    }

    fn ids() -> impl FnMut() -> String {
        let mut next = 0;
        move || {
            next += 1;
            format!("id{next}")
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:02:05Z").unwrap().with_timezone(&Utc)
    }

    #[test]
    fn an_alert_event_becomes_an_elastalert_alert_record() {
        let event = fields(json!({
            "@timestamp": "2026-01-01T00:01:10Z", "host": "web-1", "message": "error", "num_hits": 3, "num_matches": 1,
            "rule_name": "web errors burst", "alert_subject": "Errors on web-1", "alert_text": "web errors burst\n\n...",
            "alert_time": "2026-01-01T00:02:05Z", "match_time": "2026-01-01T00:01:10Z", "_id": "hit-1", "_index": "logs"
        }));
        let documents = writeback_documents(&event, &WritebackIndices::new("elastalert"), now(), ids()).unwrap();
        assert_eq!(documents.len(), 1);
        assert_eq!(documents[0].index, "elastalert");
        assert_eq!(documents[0].id, "id1");
        assert_eq!(
            serde_json::to_value(Value::Object(documents[0].source.clone())).unwrap(),
            json!({
                "@timestamp": "2026-01-01T00:02:05.000Z",
                "rule_name": "web errors burst",
                "alert_time": "2026-01-01T00:02:05Z",
                "alert_sent": true,
                "alert_info": {"type": "pipe"},
                "alert_subject": "Errors on web-1",
                "alert_text": "web errors burst\n\n...",
                "match_time": "2026-01-01T00:01:10Z",
                "match_body": {"@timestamp": "2026-01-01T00:01:10Z", "host": "web-1", "message": "error", "num_hits": 3, "num_matches": 1}
            })
        );
    }

    #[test]
    fn aggregated_alerts_become_a_root_and_children() {
        let event = fields(json!({
            "@timestamp": "2026-01-01T00:00:00Z", "user": "alice", "rule_name": "r", "aggregation_key": "alice", "alert_sent": false,
            "alert_info": {"type": "wecom"},
            "aggregated_matches": [{"@timestamp": "2026-01-01T00:00:00Z", "user": "alice"}, {"@timestamp": "2026-01-01T00:06:00Z", "user": "alice"}]
        }));
        let documents = writeback_documents(&event, &WritebackIndices::new("wb"), now(), ids()).unwrap();
        assert_eq!(documents.len(), 2);
        assert!(documents[0].source.get("aggregate_id").is_none());
        assert_eq!(documents[1].source["aggregate_id"], Value::from("id1"));
        assert_eq!(documents[1].source["match_time"], Value::from("2026-01-01T00:06:00Z"));
        assert_eq!(documents[1].source["alert_sent"], Value::Boolean(false));
        assert_eq!(documents[1].source["alert_info"], Value::from(json!({"type": "wecom"})));
        assert_eq!(documents[0].source["aggregation_key"], Value::from("alice"));
    }

    #[test]
    fn status_error_and_silence_events_keep_their_fields() {
        let indices = WritebackIndices::new("elastalert");
        let status = fields(
            json!({"writeback_type": "status", "rule_name": "r", "starttime": "a", "endtime": "b", "matches": 2, "hits": 10, "time_taken": 0.05}),
        );
        let documents = writeback_documents(&status, &indices, now(), ids()).unwrap();
        assert_eq!(documents[0].index, "elastalert_status");
        assert!(documents[0].source.get(WRITEBACK_TYPE_FIELD).is_none());
        assert_eq!(documents[0].source["@timestamp"], Value::from("2026-01-01T00:02:05.000Z"));
        let silence =
            fields(json!({"writeback_type": "silence", "rule_name": "r.web-1", "until": "2026-01-01T01:00:00Z"}));
        let documents = writeback_documents(&silence, &indices, now(), ids()).unwrap();
        assert_eq!(
            (documents[0].index.as_str(), &documents[0].source["exponent"]),
            ("elastalert_silence", &Value::Integer(0))
        );
        let error =
            fields(json!({"writeback_type": "error", "message": "boom", "traceback": ["a"], "data": {"rule": "r"}}));
        assert_eq!(writeback_documents(&error, &indices, now(), ids()).unwrap()[0].index, "elastalert_error");
        assert!(writeback_documents(&fields(json!({"message": "no rule"})), &indices, now(), ids())
            .unwrap_err()
            .contains("rule_name"));
        assert!(writeback_documents(
            &fields(json!({"writeback_type": "silence", "rule_name": "r"})),
            &indices,
            now(),
            ids()
        )
        .unwrap_err()
        .contains("until"));
        assert!(writeback_documents(&fields(json!({"writeback_type": "other"})), &indices, now(), ids()).is_err());
    }

    #[test]
    fn document_ids_are_unique_and_url_safe() {
        let first = new_document_id();
        assert_eq!(first.len(), 22);
        assert!(first.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'));
        assert_ne!(first, new_document_id());
    }
}
