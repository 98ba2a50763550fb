//! Requests and answers of the poller: index expansion over the days a
//! window touches, the search body of one page, and reading a page of hits
//! into events.
//!
//! Pure: no IO, no clock reads. The window is `(start, end]`, like
//! ElastAlert's (`gt` start, `lte` end), so consecutive windows share a
//! boundary without a gap or an overlap.

use std::sync::Arc;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Duration as ChronoDuration, Timelike, Utc};
use serde::Deserialize;
use serde_json::{json, Value as JsonValue};

use crate::event::{EventMetadata, KeyString, LogEvent, ObjectMap, Str, Value};

/// How window bounds are written in the range query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampFormat {
    /// ISO-8601 with milliseconds and `Z`.
    #[default]
    StrictDateOptionalTime,
    EpochMillis,
    EpochSecond,
}

impl TimestampFormat {
    pub fn name(self) -> &'static str {
        match self {
            TimestampFormat::StrictDateOptionalTime => "strict_date_optional_time",
            TimestampFormat::EpochMillis => "epoch_millis",
            TimestampFormat::EpochSecond => "epoch_second",
        }
    }

    pub fn render(self, time: DateTime<Utc>) -> JsonValue {
        match self {
            TimestampFormat::StrictDateOptionalTime => {
                JsonValue::String(time.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            }
            TimestampFormat::EpochMillis => JsonValue::from(time.timestamp_millis()),
            TimestampFormat::EpochSecond => JsonValue::from(time.timestamp()),
        }
    }
}

/// One window of event time, `(start, end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum IndexPart {
    Literal(String),
    /// Holds strftime specifiers; `hourly` when it uses `%H`.
    Dated {
        pattern: String,
        hourly: bool,
    },
}

/// The `index` key: comma-separated parts, each a name, a wildcard pattern
/// or a strftime pattern expanded (UTC) over the days (hours with `%H`) a
/// window touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPattern {
    text: String,
    parts: Vec<IndexPart>,
}

/// Expanding a strftime pattern over more periods than this means a window
/// far larger than any sensible buffer; a wildcard is the right tool then.
const MAX_EXPANDED_PERIODS: i64 = 400;

impl IndexPattern {
    pub fn parse(text: &str) -> Result<IndexPattern, String> {
        let mut parts = Vec::new();
        for part in text.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(format!(
                    "{text:?} has an empty entry; write names separated by commas, such as \"logs-a,logs-b\""
                ));
            }
            if part.contains('%') {
                if StrftimeItems::new(part).any(|item| matches!(item, Item::Error)) {
                    return Err(format!("{part:?} holds an invalid strftime specifier; use %Y, %m, %d, %H"));
                }
                parts.push(IndexPart::Dated { pattern: part.to_string(), hourly: part.contains("%H") });
            } else {
                parts.push(IndexPart::Literal(part.to_string()));
            }
        }
        Ok(IndexPattern { text: text.to_string(), parts })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The comma-separated index expression for `window`: strftime parts
    /// once per UTC day (or hour) from the start's to the end's, in order,
    /// without repeats.
    pub fn expand(&self, window: &Window) -> String {
        let mut names: Vec<String> = Vec::new();
        for part in &self.parts {
            match part {
                IndexPart::Literal(name) => names.push(name.clone()),
                IndexPart::Dated { pattern, hourly } => {
                    let step = if *hourly { ChronoDuration::hours(1) } else { ChronoDuration::days(1) };
                    let truncate = |time: DateTime<Utc>| -> DateTime<Utc> {
                        let time = time
                            .with_nanosecond(0)
                            .and_then(|time| time.with_second(0))
                            .and_then(|time| time.with_minute(0))
                            .unwrap_or(time);
                        if *hourly {
                            time
                        } else {
                            time.with_hour(0).unwrap_or(time)
                        }
                    };
                    // The start is exclusive, but a hit a millisecond after
                    // it still lives in the start's day.
                    let mut period = truncate(window.start);
                    let last = truncate(window.end);
                    let mut expanded = 0;
                    while period <= last && expanded < MAX_EXPANDED_PERIODS {
                        let name = period.format(pattern).to_string();
                        if !names.contains(&name) {
                            names.push(name);
                        }
                        period += step;
                        expanded += 1;
                    }
                }
            }
        }
        names.join(",")
    }
}

/// What breaks ties between hits with equal timestamps, so `search_after`
/// never skips or repeats one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tiebreaker {
    /// A unique keyword field the user named.
    Field(String),
    /// Inside an Elasticsearch 7.12+ point in time.
    ShardDoc,
    /// `_id` (Elasticsearch 6/7 and OpenSearch allow sorting on it).
    Id,
}

/// Builds page request bodies for one source.
#[derive(Debug, Clone)]
pub struct QueryBuilder {
    pub timestamp_field: String,
    pub timestamp_format: TimestampFormat,
    pub query: Option<JsonValue>,
    pub page_size: usize,
    pub track_total_hits: bool,
}

/// The point in time a page is read in.
#[derive(Debug, Clone, Copy)]
pub struct PitReference<'a> {
    pub id: &'a str,
    pub keep_alive: &'a str,
}

impl QueryBuilder {
    pub fn page_body(
        &self,
        window: &Window,
        tiebreaker: &Tiebreaker,
        pit: Option<PitReference<'_>>,
        search_after: Option<&[JsonValue]>,
    ) -> JsonValue {
        let mut range = serde_json::Map::new();
        range.insert("gt".into(), self.timestamp_format.render(window.start));
        range.insert("lte".into(), self.timestamp_format.render(window.end));
        range.insert("format".into(), JsonValue::from(self.timestamp_format.name()));
        let mut filters = vec![json!({"range": {&self.timestamp_field: range}})];
        if let Some(query) = &self.query {
            filters.push(query.clone());
        }
        // unmapped_type: an index of the list that lacks the field (a fresh
        // daily index) must not fail its shards.
        let mut sort = vec![json!({&self.timestamp_field: {"order": "asc", "unmapped_type": "date"}})];
        sort.push(match tiebreaker {
            Tiebreaker::Field(field) => json!({field: {"order": "asc", "unmapped_type": "keyword"}}),
            Tiebreaker::ShardDoc => json!({"_shard_doc": "asc"}),
            Tiebreaker::Id => json!({"_id": "asc"}),
        });
        let mut body = json!({
            "size": self.page_size,
            "query": {"bool": {"filter": filters}},
            "sort": sort,
        });
        if self.track_total_hits {
            body["track_total_hits"] = JsonValue::Bool(false);
        }
        if let Some(after) = search_after {
            body["search_after"] = JsonValue::Array(after.to_vec());
        }
        if let Some(pit) = pit {
            body["pit"] = json!({"id": pit.id, "keep_alive": pit.keep_alive});
        }
        body
    }
}

/// `hits.total`: a number on 6.x (or with `rest_total_hits_as_int`),
/// `{value, relation}` from 7.x.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum TotalHits {
    Number(u64),
    Object { value: u64, relation: String },
}

impl TotalHits {
    /// The count, and whether it is exact.
    pub fn value(&self) -> (u64, bool) {
        match self {
            TotalHits::Number(value) => (*value, true),
            TotalHits::Object { value, relation } => (*value, relation == "eq"),
        }
    }
}

#[derive(Debug, Deserialize)]
struct ShardsSection {
    #[serde(default)]
    failed: u64,
    #[serde(default)]
    failures: Vec<JsonValue>,
}

#[derive(Debug, Deserialize)]
struct HitsSection {
    #[serde(default)]
    total: Option<TotalHits>,
    hits: Vec<RawHit>,
}

#[derive(Debug, Deserialize)]
pub struct RawHit {
    #[serde(rename = "_index")]
    pub index: String,
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(rename = "_type", default)]
    pub type_name: Option<String>,
    #[serde(rename = "_source", default)]
    pub source: Option<Value>,
    #[serde(default)]
    pub sort: Vec<JsonValue>,
}

#[derive(Debug, Deserialize)]
struct RawSearchResponse {
    #[serde(default)]
    pit_id: Option<String>,
    #[serde(default)]
    timed_out: bool,
    #[serde(rename = "_shards", default)]
    shards: Option<ShardsSection>,
    hits: HitsSection,
}

/// One page, read.
#[derive(Debug)]
pub struct SearchPage {
    pub pit_id: Option<String>,
    pub total: Option<TotalHits>,
    pub hits: Vec<RawHit>,
}

/// Why a 200 answer cannot be used as a complete page.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PageError {
    #[error("the search answer is not valid JSON of the expected shape: {0}")]
    Malformed(String),
    #[error("{failed} shard(s) failed ({reason}); the page is incomplete and is read again")]
    ShardsFailed { failed: u64, reason: String },
    #[error("the search timed out on the server; the page is incomplete and is read again")]
    TimedOut,
}

impl SearchPage {
    pub fn parse(body: &[u8]) -> Result<SearchPage, PageError> {
        let raw: RawSearchResponse =
            serde_json::from_slice(body).map_err(|error| PageError::Malformed(error.to_string()))?;
        if let Some(shards) = &raw.shards {
            if shards.failed > 0 {
                let reason = shards
                    .failures
                    .first()
                    .and_then(|failure| failure.get("reason"))
                    .and_then(|reason| reason.get("type").or(Some(reason)))
                    .map(|reason| reason.as_str().map(str::to_string).unwrap_or_else(|| reason.to_string()))
                    .unwrap_or_else(|| "no reason given".to_string());
                return Err(PageError::ShardsFailed { failed: shards.failed, reason });
            }
        }
        if raw.timed_out {
            return Err(PageError::TimedOut);
        }
        Ok(SearchPage { pit_id: raw.pit_id, total: raw.hits.total, hits: raw.hits.hits })
    }
}

impl RawHit {
    /// The hit's event time in epoch milliseconds, from its first sort
    /// value (dates come back as epoch-millisecond longs there).
    pub fn sort_millis(&self) -> Option<i64> {
        self.sort.first().and_then(JsonValue::as_i64)
    }

    /// The event: `_source` plus `_id` and `_index` (and `_type` where the
    /// server still reports one).
    pub fn into_event(self, source_id: &Arc<str>, byte_size: usize) -> LogEvent {
        let mut fields = match self.source {
            Some(Value::Object(map)) => map,
            Some(other) => {
                let mut map = ObjectMap::default();
                map.insert(KeyString::const_new("_source"), other);
                map
            }
            None => ObjectMap::default(),
        };
        fields.insert(KeyString::const_new("_id"), Value::String(Str::from(self.id)));
        fields.insert(KeyString::const_new("_index"), Value::String(Str::from(self.index)));
        if let Some(type_name) = self.type_name {
            fields.insert(KeyString::const_new("_type"), Value::String(Str::from(type_name)));
        }
        LogEvent::new(fields, EventMetadata::new(Arc::clone(source_id), byte_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, day, hour, minute, 0).unwrap()
    }

    #[test]
    fn strftime_indices_expand_only_over_the_days_the_window_touches() {
        let pattern = IndexPattern::parse("logstash-%Y.%m.%d").unwrap();
        assert_eq!(pattern.expand(&Window { start: at(1, 10, 0), end: at(1, 10, 15) }), "logstash-2026.01.01");
        assert_eq!(
            pattern.expand(&Window { start: at(1, 23, 50), end: at(2, 0, 5) }),
            "logstash-2026.01.01,logstash-2026.01.02"
        );
        assert_eq!(
            pattern.expand(&Window { start: at(1, 0, 0), end: at(3, 0, 0) }),
            "logstash-2026.01.01,logstash-2026.01.02,logstash-2026.01.03"
        );
        let mixed = IndexPattern::parse("app-%Y.%m.%d-%H, audit-*").unwrap();
        assert_eq!(
            mixed.expand(&Window { start: at(1, 9, 59), end: at(1, 11, 0) }),
            "app-2026.01.01-09,app-2026.01.01-10,app-2026.01.01-11,audit-*"
        );
        assert_eq!(
            IndexPattern::parse("logs-a,logs-b").unwrap().expand(&Window { start: at(1, 0, 0), end: at(9, 0, 0) }),
            "logs-a,logs-b"
        );
        assert!(IndexPattern::parse("a,,b").is_err());
        assert!(IndexPattern::parse("a-%Q").is_err());
    }

    #[test]
    fn the_page_body_holds_the_window_the_query_and_a_stable_sort() {
        let builder = QueryBuilder {
            timestamp_field: "@timestamp".into(),
            timestamp_format: TimestampFormat::StrictDateOptionalTime,
            query: Some(json!({"query_string": {"query": "message:Traceback"}})),
            page_size: 500,
            track_total_hits: true,
        };
        let window = Window { start: at(1, 10, 0), end: at(1, 10, 15) };
        let body = builder.page_body(
            &window,
            &Tiebreaker::ShardDoc,
            Some(PitReference { id: "pit-1", keep_alive: "1m" }),
            Some(&[json!(1), json!(2)]),
        );
        assert_eq!(
            body,
            json!({
                "size": 500,
                "query": {"bool": {"filter": [
                    {"range": {"@timestamp": {"gt": "2026-01-01T10:00:00.000Z", "lte": "2026-01-01T10:15:00.000Z", "format": "strict_date_optional_time"}}},
                    {"query_string": {"query": "message:Traceback"}}
                ]}},
                "sort": [{"@timestamp": {"order": "asc", "unmapped_type": "date"}}, {"_shard_doc": "asc"}],
                "track_total_hits": false,
                "search_after": [1, 2],
                "pit": {"id": "pit-1", "keep_alive": "1m"}
            })
        );
        let epoch = QueryBuilder {
            timestamp_format: TimestampFormat::EpochMillis,
            query: None,
            track_total_hits: false,
            ..builder
        };
        let body = epoch.page_body(&window, &Tiebreaker::Field("event.id".into()), None, None);
        assert_eq!(
            body["query"]["bool"]["filter"][0]["range"]["@timestamp"]["gt"],
            json!(at(1, 10, 0).timestamp_millis())
        );
        assert_eq!(body["sort"][1], json!({"event.id": {"order": "asc", "unmapped_type": "keyword"}}));
        assert!(
            body.get("track_total_hits").is_none() && body.get("pit").is_none() && body.get("search_after").is_none()
        );
    }

    #[test]
    fn hit_totals_come_in_both_shapes() {
        let es6 = SearchPage::parse(br#"{"took":1,"timed_out":false,"_shards":{"total":5,"successful":5,"failed":0},"hits":{"total":2,"max_score":null,"hits":[{"_index":"a","_type":"doc","_id":"1","_source":{"m":1},"sort":[1700000000000]}]}}"#).unwrap();
        assert_eq!(es6.total, Some(TotalHits::Number(2)));
        assert_eq!(es6.hits[0].type_name.as_deref(), Some("doc"));
        let es8 = SearchPage::parse(br#"{"pit_id":"p2","_shards":{"total":1,"successful":1,"failed":0},"hits":{"total":{"value":10000,"relation":"gte"},"hits":[]}}"#).unwrap();
        assert_eq!(es8.total.as_ref().unwrap().value(), (10_000, false));
        assert_eq!(es8.pit_id.as_deref(), Some("p2"));
        let untracked = SearchPage::parse(br#"{"hits":{"hits":[]}}"#).unwrap();
        assert_eq!(untracked.total, None);
    }

    #[test]
    fn incomplete_and_malformed_pages_are_errors() {
        let failed = SearchPage::parse(br#"{"_shards":{"total":2,"successful":1,"failed":1,"failures":[{"shard":0,"reason":{"type":"node_not_connected_exception","reason":"x"}}]},"hits":{"hits":[]}}"#);
        assert_eq!(
            failed.unwrap_err(),
            PageError::ShardsFailed { failed: 1, reason: "node_not_connected_exception".into() }
        );
        assert_eq!(SearchPage::parse(br#"{"timed_out":true,"hits":{"hits":[]}}"#).unwrap_err(), PageError::TimedOut);
        assert!(matches!(SearchPage::parse(br#"{"hits":{"hits":[{"_id":"1"}]}}"#), Err(PageError::Malformed(_))));
        assert!(matches!(SearchPage::parse(b"{\"hits\":{\"hi"), Err(PageError::Malformed(_))));
    }

    #[test]
    fn a_hit_becomes_its_source_plus_id_and_index() {
        let page = SearchPage::parse(br#"{"hits":{"hits":[{"_index":"logs","_id":"x1","_source":{"message":"boom","host":{"name":"h"}},"sort":[1700000000123,"x1"]}]}}"#).unwrap();
        let hit = page.hits.into_iter().next().unwrap();
        assert_eq!(hit.sort_millis(), Some(1_700_000_000_123));
        let event = hit.into_event(&Arc::from("es"), 64);
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            json!({"message": "boom", "host": {"name": "h"}, "_id": "x1", "_index": "logs"})
        );
    }
}
