//! `json_expand`: parses string fields that hold JSON into nested values.
//!
//! Keys: `fields` (paths of the string fields to parse; required),
//! `topics` (optional: only events whose `topic_field` value is one of these
//! are touched — the SLS → Splunk program mapped topic
//! `actiontrail_audit_event` to field `event`), `topic_field` (default
//! `__topic__`).
//!
//! A field is replaced only when its text is a JSON object or array; scalars
//! ("123", "true") stay strings, so a numeric-looking text field never changes
//! type by accident. Invalid JSON keeps the original string and counts a
//! `parse_failed` error; the event always continues. Missing and non-string
//! fields are left alone.
//!
//! Acknowledgements: pass-through. Metrics: the standard counters plus
//! `pipe_component_errors_total{error_type="parse_failed"}`.

use serde::Deserialize;

use crate::event::{EventBatch, FieldRef, LogEvent, Value};
use crate::topology::{BuildContext, BuildError, FunctionTransform, Transform, TransformOutputBuffer};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonExpandConfig {
    pub fields: Vec<String>,
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    #[serde(default = "default_topic_field")]
    pub topic_field: String,
}

fn default_topic_field() -> String {
    "__topic__".to_string()
}

impl JsonExpandConfig {
    pub fn build(&self, cx: &BuildContext) -> Result<Transform, BuildError> {
        Ok(Transform::Function(Box::new(self.build_expander(cx)?)))
    }

    /// The runtime value, exposed for benches and tests.
    pub fn build_expander(&self, cx: &BuildContext) -> Result<JsonExpand, BuildError> {
        if self.fields.is_empty() {
            return Err(BuildError::new(
                "\"fields\" is empty; list the string fields holding JSON, like fields = [\"event\"]",
            ));
        }
        if let Some(topics) = &self.topics {
            if topics.is_empty() {
                return Err(BuildError::new(
                    "\"topics\" is empty; list topics, or remove the key to expand every event",
                ));
            }
        }
        let parse_errors = metrics::counter!(
            "pipe_component_errors_total",
            "component_id" => cx.id.clone(),
            "component_kind" => "transform",
            "component_type" => "json_expand",
            "error_type" => "parse_failed",
            "stage" => "processing"
        );
        Ok(JsonExpand {
            fields: self.fields.clone(),
            topics: self.topics.clone(),
            topic_field: self.topic_field.clone(),
            parse_errors,
        })
    }
}

pub struct JsonExpand {
    fields: Vec<String>,
    topics: Option<Vec<String>>,
    topic_field: String,
    parse_errors: metrics::Counter,
}

impl JsonExpand {
    /// Expands the configured fields of `fields` in place.
    pub fn expand(&self, event: &mut LogEvent) {
        if let Some(topics) = &self.topics {
            let topic = event.get(&self.topic_field).and_then(Value::as_str);
            if !topic.is_some_and(|topic| topics.iter().any(|wanted| wanted == topic)) {
                return;
            }
        }
        for path in &self.fields {
            if !may_hold_json(event, path) {
                continue;
            }
            let Some(value) = event.get_path_mut(path) else { continue };
            let Value::String(text) = value else { continue };
            let trimmed = text.trim_start();
            if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
                continue;
            }
            match serde_json::from_str::<Value>(text) {
                Ok(parsed @ (Value::Object(_) | Value::Array(_))) => *value = parsed,
                Ok(_) => {}
                Err(_) => self.parse_errors.increment(1),
            }
        }
    }
}

/// False when `path` surely names no string holding a JSON object or
/// array, decided without building the fields of a deferred event (an SLS
/// event whose group has the topic but which lacks the field, say); true
/// when it may, and `expand` then looks at the built field as before.
fn may_hold_json(event: &LogEvent, path: &str) -> bool {
    if event.unbuilt_fields().is_none() {
        return true;
    }
    // The literal key first, then the nested walk, as `get_path_mut` does.
    match event.field(path) {
        Some(FieldRef::Text(bytes)) => may_start_json(bytes),
        Some(FieldRef::Value(Value::String(text))) => may_start_json(text.as_bytes()),
        Some(_) => false,
        None => path.split_once('.').is_some_and(|(head, _)| {
            matches!(event.field(head), Some(FieldRef::Value(Value::Object(_) | Value::Array(_))))
        }),
    }
}

/// Whether text may start with `{` or `[` after the whitespace `expand`
/// trims (`str::trim_start`: ASCII tab to carriage return and space). A
/// non-ASCII byte first answers yes: Unicode whitespace is left to `expand`,
/// which trims it too (and then counts the parse failure serde_json reports).
fn may_start_json(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|byte| !matches!(byte, b'\t'..=b'\r' | b' '))
        .is_some_and(|&byte| byte == b'{' || byte == b'[' || !byte.is_ascii())
}

impl FunctionTransform for JsonExpand {
    fn transform(&mut self, mut batch: EventBatch, output: &mut TransformOutputBuffer) {
        for event in &mut batch {
            self.expand(event);
        }
        output.append(&mut batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::LogEvent;

    fn expander(topics: Option<Vec<&str>>) -> JsonExpand {
        JsonExpandConfig {
            fields: vec!["event".into()],
            topics: topics.map(|topics| topics.into_iter().map(String::from).collect()),
            topic_field: default_topic_field(),
        }
        .build_expander(&BuildContext { id: "x".into(), data_dir: "data".into() })
        .unwrap()
    }

    fn event(topic: &str, payload: &str) -> LogEvent {
        let mut event = LogEvent::from_fields("test", Default::default());
        event.insert("__topic__", topic);
        event.insert("event", payload);
        event
    }

    #[test]
    fn expands_only_configured_topics() {
        let expander = expander(Some(vec!["actiontrail_audit_event"]));
        let mut audit =
            event("actiontrail_audit_event", r#"{"eventName":"ConsoleSignin","userIdentity":{"type":"ram-user"}}"#);
        expander.expand(&mut audit);
        assert_eq!(audit.get_path("event.userIdentity.type").unwrap().as_str(), Some("ram-user"));
        let mut other = event("app", r#"{"a":1}"#);
        expander.expand(&mut other);
        assert!(other.get("event").unwrap().as_str().is_some());
    }

    /// The events an SLS pull of one group with `topic` and these logs gives:
    /// deferred, as the `sls` source hands them over.
    fn sls_events(topic: &str, logs: &[&[(&str, &str)]]) -> Vec<LogEvent> {
        use prost::Message;
        let logs = logs.iter().map(|contents| testkit::sls::Log::new(1_700_000_000, contents)).collect();
        let group = testkit::sls::LogGroup::new(topic, "10.0.0.1", &[], logs);
        let body = testkit::sls::LogGroupList { log_groups: vec![group] }.encode_to_vec();
        let mut events = Vec::new();
        let metadata = crate::event::EventMetadata::new("sls".into(), 0);
        crate::sources::sls::proto::flatten_body(body.into(), &metadata, &mut events).unwrap();
        events
    }

    #[test]
    fn deferred_events_are_built_only_when_the_field_may_hold_json() {
        let expander = expander(Some(vec!["actiontrail_audit_event"]));
        let audit = r#" {"eventName":"ConsoleSignin"}"#;
        let mut events = sls_events(
            "actiontrail_audit_event",
            &[
                &[("level", "INFO"), ("message", "no event field")],
                &[("event", "plain text")],
                &[("event", audit)],
                &[("event", "\u{3000}{not json")],
            ],
        );
        for event in &mut events {
            expander.expand(event);
        }
        assert!(events[0].unbuilt_fields().is_some(), "no `event` field: nothing to build");
        assert!(events[1].unbuilt_fields().is_some(), "text that cannot be JSON: nothing to build");
        assert_eq!(events[2].get_path("event.eventName").and_then(Value::as_str), Some("ConsoleSignin"));
        // A non-ASCII start is looked at built: Unicode whitespace is trimmed
        // as before, and the parse failure counted.
        assert!(events[3].unbuilt_fields().is_none());
        assert_eq!(events[3].get("event").and_then(Value::as_str), Some("\u{3000}{not json"));
        // Every event reads as if it had been built first.
        let mut built = sls_events("actiontrail_audit_event", &[&[("level", "INFO"), ("message", "no event field")]]);
        built[0].fields_mut();
        expander.expand(&mut built[0]);
        assert_eq!(events[0].fields(), built[0].fields());
    }

    #[test]
    fn nested_paths_on_deferred_events_are_looked_up_as_on_built_ones() {
        let expander = JsonExpandConfig {
            fields: vec!["outer.inner".into(), "flat.key".into()],
            topics: None,
            topic_field: default_topic_field(),
        }
        .build_expander(&BuildContext { id: "x".into(), data_dir: "data".into() })
        .unwrap();
        let mut events = sls_events("t", &[&[("outer", r#"{"inner":"[1]"}"#)], &[("flat.key", "[1,2]")]]);
        for event in &mut events {
            expander.expand(event);
        }
        assert!(events[0].unbuilt_fields().is_some(), "`outer` is a string, so `outer.inner` does not exist");
        assert_eq!(events[1].get("flat.key"), Some(&serde_json::from_str::<Value>("[1,2]").unwrap()));
    }

    #[test]
    fn invalid_json_and_scalars_keep_the_string() {
        let expander = expander(None);
        let mut broken = event("t", r#"{"unterminated": "#);
        expander.expand(&mut broken);
        assert_eq!(broken.get("event").unwrap().as_str(), Some(r#"{"unterminated": "#));
        let mut scalar = event("t", "123");
        expander.expand(&mut scalar);
        assert_eq!(scalar.get("event").unwrap().as_str(), Some("123"));
    }
}
