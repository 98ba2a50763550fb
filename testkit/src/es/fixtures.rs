//! Fixture documents: timestamped relative to now, written straight into
//! the store (no HTTP, no faults, no counters).
//!
//! `Fixture` is also the JSON body of `POST /_testkit/load`:
//!
//! ```json
//! {"index": "logstash-%Y.%m.%d", "timestamp_field": "@timestamp", "refresh": true,
//!  "docs": [{"offset_seconds": -30, "id": "optional", "doc": {"message": "..."}}]}
//! ```
//!
//! `index` may hold strftime fields (`%Y`, `%m`, `%d`, `%H`), expanded per
//! document from its own timestamp (UTC); `timestamp_field` (default
//! `@timestamp`, `""` for none) is set to `now + offset_seconds` as
//! ISO-8601 with milliseconds; `refresh` (default true) makes the documents
//! searchable at once. `DemoFixture` (`POST /_testkit/load_demo`) builds
//! documents from `pipe_demo_logs::DemoLogGenerator` in the shape the seed
//! ElastAlert plugin reads: `@timestamp`, `message`, `host.name`,
//! `fields.feature`, `source`, plus `level`, `logger`, `topic`, `seq`,
//! `client_ip`.

use std::collections::BTreeSet;

use pipe_demo_logs::{DemoLog, DemoLogGenerator};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::dates;
use super::error::EsEmulatorError;
use super::store::{Cluster, WriteOperation};

fn default_timestamp_field() -> String {
    "@timestamp".to_string()
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// Concrete index name or strftime pattern such as `logstash-%Y.%m.%d`.
    pub index: String,
    #[serde(default = "default_timestamp_field")]
    pub timestamp_field: String,
    #[serde(default = "default_true")]
    pub refresh: bool,
    #[serde(default)]
    pub docs: Vec<FixtureDocument>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureDocument {
    /// Seconds relative to now; negative is in the past.
    #[serde(default)]
    pub offset_seconds: f64,
    #[serde(default)]
    pub id: Option<String>,
    pub doc: Map<String, Value>,
}

fn default_demo_index() -> String {
    "logstash-%Y.%m.%d".to_string()
}

fn default_span_seconds() -> f64 {
    600.0
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DemoFixture {
    #[serde(default = "default_demo_index")]
    pub index: String,
    pub count: usize,
    #[serde(default)]
    pub seed: u64,
    /// Documents are spread evenly over `span_seconds` ending at
    /// `now + end_offset_seconds`.
    #[serde(default = "default_span_seconds")]
    pub span_seconds: f64,
    #[serde(default)]
    pub end_offset_seconds: f64,
    #[serde(default = "default_timestamp_field")]
    pub timestamp_field: String,
    #[serde(default = "default_true")]
    pub refresh: bool,
}

/// What a load wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    pub loaded: usize,
    pub indices: Vec<String>,
    pub ids: Vec<String>,
}

/// The document the seed ElastAlert plugin expects for one demo log.
pub fn demo_document(log: &DemoLog) -> Map<String, Value> {
    let content = |key: &str| log.contents.iter().find(|(name, _)| name == key).map(|(_, value)| value.clone());
    let tag = |key: &str| log.tags.iter().find(|(name, _)| name == key).map(|(_, value)| value.clone());
    let host = content("host").or_else(|| tag("__hostname__")).unwrap_or_default();
    let mut document = Map::new();
    document
        .insert("message".into(), Value::String(content("message").or_else(|| content("event")).unwrap_or_default()));
    document.insert("host".into(), json!({"name": host}));
    document.insert("fields".into(), json!({"feature": host}));
    document.insert("source".into(), Value::String(content("source").or_else(|| tag("__path__")).unwrap_or_default()));
    document.insert("topic".into(), Value::String(log.topic.clone()));
    document.insert("client_ip".into(), Value::String(log.source.clone()));
    if let Some(level) = content("level") {
        document.insert("level".into(), Value::String(level));
    }
    if let Some(logger) = content("logger") {
        document.insert("logger".into(), Value::String(logger));
    }
    if let Some(sequence) = content("seq").and_then(|text| text.parse::<u64>().ok()) {
        document.insert("seq".into(), Value::from(sequence));
    }
    document
}

/// Demo documents as a `Fixture`, timestamps relative to now.
pub fn demo_fixture(demo: &DemoFixture) -> Fixture {
    let mut generator = DemoLogGenerator::new(demo.seed);
    let count = demo.count.max(1);
    let step = demo.span_seconds / count as f64;
    let start = demo.end_offset_seconds - demo.span_seconds;
    let now_seconds = (dates::now_millis() / 1000) as u32;
    let docs = (0..demo.count)
        .map(|position| {
            let offset_seconds = start + step * (position + 1) as f64;
            let log = generator.next_log(now_seconds.saturating_add_signed(offset_seconds as i32));
            FixtureDocument { offset_seconds, id: None, doc: demo_document(&log) }
        })
        .collect();
    Fixture { index: demo.index.clone(), timestamp_field: demo.timestamp_field.clone(), refresh: demo.refresh, docs }
}

/// Writes a fixture into the cluster. The caller holds the cluster lock.
pub fn load(cluster: &mut Cluster, fixture: &Fixture) -> Result<LoadReport, EsEmulatorError> {
    if fixture.index.is_empty() {
        return Err(EsEmulatorError::InvalidFixture {
            problem: "\"index\" is empty; give a name or a pattern like logstash-%Y.%m.%d".into(),
        });
    }
    let now = dates::now_millis();
    let mut indices = BTreeSet::new();
    let mut ids = Vec::with_capacity(fixture.docs.len());
    for (position, document) in fixture.docs.iter().enumerate() {
        let millis = now + (document.offset_seconds * 1000.0) as i64;
        let index = if fixture.index.contains('%') {
            dates::format_index_pattern(&fixture.index, millis)
                .map_err(|problem| EsEmulatorError::InvalidFixture { problem })?
        } else {
            fixture.index.clone()
        };
        let mut source = document.doc.clone();
        if !fixture.timestamp_field.is_empty() {
            set_path(&mut source, &fixture.timestamp_field, Value::String(dates::format_iso_millis(millis)));
        }
        let source = Value::Object(source);
        let raw = source.to_string();
        let operation = WriteOperation::Index {
            id: document.id.clone(),
            source,
            create_only: false,
            if_seq_no: None,
            if_primary_term: None,
        };
        let outcome =
            cluster.write(&index, None, operation, &raw).map_err(|failure| EsEmulatorError::FixtureRejected {
                position,
                index: index.clone(),
                reason: format!("{}: {}", failure.cause.error_type, failure.cause.reason),
            })?;
        ids.push(outcome.id);
        indices.insert(index);
    }
    if fixture.refresh {
        for index in &indices {
            cluster.refresh_index(index);
        }
    }
    Ok(LoadReport { loaded: ids.len(), indices: indices.into_iter().collect(), ids })
}

/// Sets a dotted path, creating objects on the way.
fn set_path(object: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            object.insert(path.to_string(), value);
        }
        Some((head, rest)) => {
            let child = object.entry(head.to_string()).or_insert_with(|| json!({}));
            if !child.is_object() {
                *child = json!({});
            }
            if let Value::Object(child) = child {
                set_path(child, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::es::store::TargetOptions;
    use crate::es::version::Product;

    #[test]
    fn fixtures_expand_index_patterns_and_stamp_times() {
        let mut cluster = Cluster::new(Product::elasticsearch("8.15.0").unwrap(), None);
        let fixture: Fixture = serde_json::from_value(json!({
            "index": "logstash-%Y.%m.%d",
            "docs": [{"offset_seconds": -30, "id": "a", "doc": {"message": "x"}}, {"doc": {"message": "y"}}]
        }))
        .unwrap();
        let report = load(&mut cluster, &fixture).unwrap();
        assert_eq!(report.loaded, 2);
        assert_eq!(report.ids[0], "a");
        assert!(report.indices[0].starts_with("logstash-20"), "{:?}", report.indices);
        let snapshots = cluster.searchable_snapshots("logstash-*", TargetOptions::default()).unwrap();
        let visible: usize = snapshots.iter().map(|snapshot| snapshot.documents.len()).sum();
        assert_eq!(visible, 2, "fixtures are refreshed by default");
        let first = &snapshots
            .iter()
            .flat_map(|snapshot| snapshot.documents.iter())
            .find(|document| document.id == "a")
            .unwrap()
            .source;
        let stamped =
            dates::parse_date(first["@timestamp"].as_str().unwrap(), dates::DEFAULT_DATE_FORMAT, false, 0).unwrap();
        assert!((dates::now_millis() - stamped - 30_000).abs() < 5_000);
    }

    #[test]
    fn demo_documents_have_the_seed_plugin_shape() {
        let demo: DemoFixture = serde_json::from_value(json!({"count": 50, "seed": 7})).unwrap();
        let fixture = demo_fixture(&demo);
        assert_eq!(fixture.docs.len(), 50);
        for document in &fixture.docs {
            assert!(document.doc["host"]["name"].is_string());
            assert_eq!(document.doc["fields"]["feature"], document.doc["host"]["name"]);
            assert!(document.doc["source"].is_string() && document.doc["message"].is_string());
            assert!(document.offset_seconds <= 0.0 && document.offset_seconds >= -600.0);
        }
        let again = demo_fixture(&demo);
        for (first, second) in fixture.docs.iter().zip(&again.docs) {
            assert_eq!(
                (&first.doc["host"], &first.doc["source"]),
                (&second.doc["host"], &second.doc["source"]),
                "same seed, same documents"
            );
        }
        assert!(serde_json::from_value::<DemoFixture>(json!({"count": 1, "bogus": 1})).is_err());
    }
}
