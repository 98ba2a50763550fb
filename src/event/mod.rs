//! The event model: what flows along the edges of the graph.
//!
//! A `LogEvent` is an ordered map of fields plus `EventMetadata` (which source
//! produced it, when, how many bytes it had on the wire, and its
//! acknowledgement finalizers). Events always travel in batches (`EventBatch`),
//! never one at a time.
//!
//! Field paths: `get_path("a.b")` first looks for a field literally named
//! `a.b` (Elasticsearch documents and SLS tags carry dots and colons in names),
//! then walks nested objects. Array elements are addressed by index
//! (`items.0.name`).

pub mod finalization;
mod object_map;
mod value;

use std::sync::Arc;
use std::time::Instant;

pub use finalization::{BatchNotifier, BatchStatus, BatchStatusReceiver, EventFinalizer, EventFinalizers};
pub use value::{object_map_with_capacity, KeyString, ObjectMap, ObjectMapBuilder, Str, Value};

/// What travels over one channel send.
pub type EventBatch = Vec<LogEvent>;

/// Facts about an event that are not fields.
#[derive(Debug, Clone)]
pub struct EventMetadata {
    /// Id of the source component that produced the event.
    pub source_id: Arc<str>,
    /// When the source received it; end-to-end latency is measured from here.
    pub received_at: Instant,
    /// Size of the event as the source read it (raw bytes), used by byte
    /// counters. Transforms do not recompute it.
    pub byte_size: usize,
    /// Where in the source the event came from, such as `logstore/shard`.
    /// Shared by every event of a batch.
    pub partition: Option<Arc<str>>,
    finalizers: EventFinalizers,
}

impl EventMetadata {
    pub fn new(source_id: Arc<str>, byte_size: usize) -> EventMetadata {
        EventMetadata {
            source_id,
            received_at: Instant::now(),
            byte_size,
            partition: None,
            finalizers: EventFinalizers::default(),
        }
    }
}

/// A log event: ordered fields plus metadata.
#[derive(Debug, Clone)]
pub struct LogEvent {
    fields: ObjectMap,
    metadata: EventMetadata,
}

impl LogEvent {
    pub fn new(fields: ObjectMap, metadata: EventMetadata) -> LogEvent {
        LogEvent { fields, metadata }
    }

    /// An event created inside the pipeline (an alert, a test fixture), owned by
    /// `component_id`, with no finalizer.
    pub fn from_fields(component_id: &str, fields: ObjectMap) -> LogEvent {
        let byte_size = value::estimated_object_json_size(&fields);
        LogEvent::new(fields, EventMetadata::new(Arc::from(component_id), byte_size))
    }

    pub fn fields(&self) -> &ObjectMap {
        &self.fields
    }

    pub fn fields_mut(&mut self) -> &mut ObjectMap {
        &mut self.fields
    }

    pub fn into_parts(self) -> (ObjectMap, EventMetadata) {
        (self.fields, self.metadata)
    }

    pub fn metadata(&self) -> &EventMetadata {
        &self.metadata
    }

    pub fn metadata_mut(&mut self) -> &mut EventMetadata {
        &mut self.metadata
    }

    pub fn byte_size(&self) -> usize {
        self.metadata.byte_size
    }

    pub fn with_finalizer(mut self, finalizer: EventFinalizer) -> LogEvent {
        self.metadata.finalizers.merge(EventFinalizers::new(finalizer));
        self
    }

    /// Takes the finalizers out, so a sink can settle them after its write
    /// while the event itself is encoded and dropped.
    pub fn take_finalizers(&mut self) -> EventFinalizers {
        std::mem::take(&mut self.metadata.finalizers)
    }

    pub fn add_finalizers(&mut self, finalizers: EventFinalizers) {
        self.metadata.finalizers.merge(finalizers);
    }

    /// Settles this event copy, consuming it. Used by components that drop or
    /// consume an event on purpose (`Delivered`) or give up on it.
    pub fn settle(mut self, status: BatchStatus) {
        self.take_finalizers().update_status(status);
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }

    pub fn insert(&mut self, key: impl Into<KeyString>, value: impl Into<Value>) -> Option<Value> {
        self.fields.insert(key.into(), value.into())
    }

    /// Removes a top-level field, keeping the order of the others.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.fields.shift_remove(key)
    }

    /// Looks up a field by dotted path (see the module doc).
    pub fn get_path(&self, path: &str) -> Option<&Value> {
        lookup_path(&self.fields, path)
    }

    pub fn get_path_mut(&mut self, path: &str) -> Option<&mut Value> {
        lookup_path_mut(&mut self.fields, path)
    }
}

/// Looks up `path` in `map`: the literal key first, then nested segments.
pub fn lookup_path<'a>(map: &'a ObjectMap, path: &str) -> Option<&'a Value> {
    if let Some(value) = map.get(path) {
        return Some(value);
    }
    let (head, rest) = path.split_once('.')?;
    let mut current = map.get(head)?;
    for segment in rest.split('.') {
        current = match current {
            Value::Object(inner) => inner.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

fn lookup_path_mut<'a>(map: &'a mut ObjectMap, path: &str) -> Option<&'a mut Value> {
    if let Some(index) = map.get_index_of(path) {
        return map.get_index_mut(index).map(|(_, value)| value);
    }
    let (head, rest) = path.split_once('.')?;
    let mut current = map.get_mut(head)?;
    for segment in rest.split('.') {
        current = match current {
            Value::Object(inner) => inner.get_mut(segment)?,
            Value::Array(items) => items.get_mut(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

impl serde::Serialize for LogEvent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.fields.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> LogEvent {
        let Value::Object(fields) = serde_json::from_str::<Value>(json).unwrap() else { panic!("not an object") };
        LogEvent::from_fields("test", fields)
    }

    #[test]
    fn literal_dotted_keys_win_over_nesting() {
        let event = event(r#"{"host.name":"flat","host":{"name":"nested"}}"#);
        assert_eq!(event.get_path("host.name").unwrap().as_str(), Some("flat"));
    }

    #[test]
    fn nested_paths_walk_objects_and_arrays() {
        let event = event(r#"{"a":{"b":[{"c":"x"}]}}"#);
        assert_eq!(event.get_path("a.b.0.c").unwrap().as_str(), Some("x"));
        assert!(event.get_path("a.b.1.c").is_none());
        assert!(event.get_path("a.z").is_none());
    }

    #[test]
    fn remove_keeps_field_order() {
        let mut event = event(r#"{"a":1,"b":2,"c":3}"#);
        event.remove("a");
        assert_eq!(serde_json::to_string(&event).unwrap(), r#"{"b":2,"c":3}"#);
    }
}
