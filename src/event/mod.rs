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

mod deferred;
pub mod finalization;
mod object_map;
mod value;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

pub use deferred::{DeferredFields, FieldRef, Unbuilt, Visit};
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
#[derive(Clone)]
pub struct LogEvent {
    fields: Fields,
    metadata: EventMetadata,
}

/// The fields, built or still deferred (see `deferred`).
#[derive(Clone)]
enum Fields {
    Built(ObjectMap),
    /// `built` caches `source.build()` for shared access; any mutable access
    /// turns the event into `Built`.
    Deferred {
        source: Arc<dyn DeferredFields>,
        /// Which of `source`'s events this is.
        index: u32,
        built: OnceLock<ObjectMap>,
    },
}

impl LogEvent {
    pub fn new(fields: ObjectMap, metadata: EventMetadata) -> LogEvent {
        LogEvent { fields: Fields::Built(fields), metadata }
    }

    /// Event `index` of `source`, whose fields `source` builds when they
    /// are first needed.
    pub fn deferred(source: Arc<dyn DeferredFields>, index: u32, metadata: EventMetadata) -> LogEvent {
        LogEvent { fields: Fields::Deferred { source, index, built: OnceLock::new() }, metadata }
    }

    /// An event created inside the pipeline (an alert, a test fixture), owned by
    /// `component_id`, with no finalizer.
    pub fn from_fields(component_id: &str, fields: ObjectMap) -> LogEvent {
        let byte_size = value::estimated_object_json_size(&fields);
        LogEvent::new(fields, EventMetadata::new(Arc::from(component_id), byte_size))
    }

    /// The fields, built on first use when they were deferred.
    pub fn fields(&self) -> &ObjectMap {
        match &self.fields {
            Fields::Built(map) => map,
            Fields::Deferred { source, index, built } => built.get_or_init(|| source.build(*index as usize)),
        }
    }

    pub fn fields_mut(&mut self) -> &mut ObjectMap {
        if let Fields::Deferred { source, index, built } = &mut self.fields {
            let map = built.take().unwrap_or_else(|| source.build(*index as usize));
            self.fields = Fields::Built(map);
        }
        match &mut self.fields {
            Fields::Built(map) => map,
            Fields::Deferred { .. } => unreachable!("deferred fields were built just above"),
        }
    }

    pub fn into_parts(mut self) -> (ObjectMap, EventMetadata) {
        let fields = std::mem::take(self.fields_mut());
        (fields, self.metadata)
    }

    /// The deferred fields of an event nothing has built yet: a reader that
    /// only needs every field in order, or a few by name, can use them
    /// without building a map (see `deferred`).
    pub fn unbuilt_fields(&self) -> Option<Unbuilt<'_>> {
        match &self.fields {
            Fields::Deferred { source, index, built } if built.get().is_none() => {
                Some(Unbuilt { source: source.as_ref(), index: *index as usize })
            }
            _ => None,
        }
    }

    /// How many top-level fields the event has, without building deferred
    /// fields.
    pub fn field_count(&self) -> usize {
        match self.unbuilt_fields() {
            Some(source) => source.field_count(),
            None => self.fields().len(),
        }
    }

    /// A top-level field, without building deferred fields.
    pub fn field(&self, key: &str) -> Option<FieldRef<'_>> {
        match self.unbuilt_fields() {
            Some(source) => source.field(key),
            None => self.fields().get(key).map(FieldRef::Value),
        }
    }

    /// Calls `visit` for every top-level field, in order, without building
    /// deferred fields.
    pub fn visit_fields(&self, visit: &mut dyn FnMut(&str, FieldRef<'_>)) {
        self.visit_runs(&mut |step| match step {
            Visit::Field(key, field) => visit(key, field),
            Visit::Shared(fields) => {
                for (key, value) in fields {
                    visit(key, FieldRef::Value(value));
                }
            }
        });
    }

    /// Like `visit_fields`, but fields that other events share may come as
    /// one `Visit::Shared` run (see `deferred`).
    pub fn visit_runs<'a>(&'a self, visit: &mut dyn FnMut(Visit<'a>)) {
        match self.unbuilt_fields() {
            Some(source) => source.visit(visit),
            None => {
                for (key, value) in self.fields() {
                    visit(Visit::Field(key, FieldRef::Value(value)));
                }
            }
        }
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
        if let Some(answer) = self.unbuilt_fields().and_then(|source| source.ready(key)) {
            return answer;
        }
        self.fields().get(key)
    }

    pub fn insert(&mut self, key: impl Into<KeyString>, value: impl Into<Value>) -> Option<Value> {
        self.fields_mut().insert(key.into(), value.into())
    }

    /// Removes a top-level field, keeping the order of the others.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.fields_mut().shift_remove(key)
    }

    /// Looks up a field by dotted path (see the module doc).
    pub fn get_path(&self, path: &str) -> Option<&Value> {
        if let Some(Some(value)) = self.unbuilt_fields().and_then(|source| source.ready(path)) {
            return Some(value);
        }
        lookup_path(self.fields(), path)
    }

    pub fn get_path_mut(&mut self, path: &str) -> Option<&mut Value> {
        lookup_path_mut(self.fields_mut(), path)
    }
}

impl fmt::Debug for LogEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogEvent").field("fields", self.fields()).field("metadata", &self.metadata).finish()
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
        self.fields().serialize(serializer)
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
