//! Deferred fields: an event whose fields are still in the source's wire
//! encoding, built into an `ObjectMap` only when a component asks for them.
//!
//! An SLS pull turns into ten thousand events, and building each one's map
//! (a 64-byte entry per field, a reference count per value) was the largest
//! cost of the SLS → Splunk path after gzip. Most events on that path are
//! never looked at field by field: a transform reads the topic, a sink writes
//! the fields out in order. So a source may hand over an event as a
//! `DeferredFields` instead of a map:
//!
//! - `ready` answers a lookup the source holds already built (SLS: topic,
//!   source and tags, shared by a whole log group) without building the rest;
//! - `visit` and `field` let a sink read every field in order without
//!   building them (the Splunk HEC encoder does); `visit` hands fields that
//!   many events share (SLS: a log group's topic, source and tags) over as
//!   one `Visit::Shared` run, so a writer can encode such a run once and
//!   copy it for every event that holds it;
//! - anything else (`LogEvent::fields`, `get_path` on another field, any
//!   mutable access) builds the map once through `build`, and the event works
//!   exactly as if the source had built it.
//!
//! The contract an implementation keeps: `visit` yields exactly the
//! (key, value) pairs of `build()`, in its order, and `ready` and `field`
//! agree with `build()` for every key they answer. A source that cannot keep
//! it for some input (duplicate keys that `build` would merge, say) builds
//! that event's map itself instead of deferring it.

use std::fmt;

use super::value::{KeyString, ObjectMap, Value};

/// One field as `DeferredFields` reports it, without building a `Value`.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldRef<'a> {
    Value(&'a Value),
    /// A `Value::String` holding these bytes read as UTF-8, every invalid
    /// sequence replaced by U+FFFD (`String::from_utf8_lossy`). Left as bytes
    /// so a writer can check and copy them in one pass
    /// (`splunk_hec::json::write_lossy_str`).
    Text(&'a [u8]),
    /// A `Value::Integer`.
    Integer(i64),
}

impl FieldRef<'_> {
    /// The `Value` `build()` holds for this field.
    pub fn to_value(&self) -> Value {
        match self {
            FieldRef::Value(value) => (*value).clone(),
            FieldRef::Text(bytes) => Value::from(String::from_utf8_lossy(bytes).as_ref()),
            FieldRef::Integer(number) => Value::Integer(*number),
        }
    }
}

/// One step of `DeferredFields::visit`.
#[derive(Debug, Clone, PartialEq)]
pub enum Visit<'a> {
    Field(&'a str, FieldRef<'a>),
    /// Fields, in order, that other events hold too: the very same slice
    /// (same address and length) always holds the same fields, so a writer
    /// may encode it once and reuse the encoding for every event visited
    /// while it keeps the slice borrowed.
    Shared(&'a [(KeyString, Value)]),
}

/// The fields of a source's events kept in its encoding until they are
/// needed (see the module doc for the contract). One value serves many
/// events (SLS: every log of a pull), each told apart by its `index`, so a
/// source makes one allocation per batch rather than one per event.
pub trait DeferredFields: fmt::Debug + Send + Sync + 'static {
    /// Event `index`'s fields, built. Called at most once per event (the
    /// event keeps the result).
    fn build(&self, index: usize) -> ObjectMap;

    /// How many fields `build(index)` returns.
    fn field_count(&self, index: usize) -> usize;

    /// `Some(answer)` when `key` is decided without building: `Some(None)`
    /// means the event has no such field. `None` means "build to find out".
    fn ready(&self, index: usize, key: &str) -> Option<Option<&Value>>;

    /// The field named `key` (top level), or `None` when there is none.
    fn field(&self, index: usize, key: &str) -> Option<FieldRef<'_>>;

    /// Calls `visit` for every field, in order: one at a time, or in runs
    /// shared with other events.
    fn visit<'a>(&'a self, index: usize, visit: &mut dyn FnMut(Visit<'a>));
}

/// One event's deferred fields: `DeferredFields` with the event's index.
#[derive(Clone, Copy)]
pub struct Unbuilt<'a> {
    pub(super) source: &'a dyn DeferredFields,
    pub(super) index: usize,
}

impl<'a> Unbuilt<'a> {
    pub fn field_count(self) -> usize {
        self.source.field_count(self.index)
    }

    pub fn ready(self, key: &str) -> Option<Option<&'a Value>> {
        self.source.ready(self.index, key)
    }

    pub fn field(self, key: &str) -> Option<FieldRef<'a>> {
        self.source.field(self.index, key)
    }

    pub fn visit(self, visit: &mut dyn FnMut(Visit<'a>)) {
        self.source.visit(self.index, visit)
    }
}
