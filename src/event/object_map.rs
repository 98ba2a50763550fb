//! `ObjectMap`: the ordered field map of events and of JSON objects.
//!
//! Log events hold a dozen or two fields and are built once per log on the
//! hottest path of every source (an SLS pull turns into ten thousand maps).
//! A general hash map pays on every insert for hashing the key, probing a
//! table and a second allocation, and its index table is rarely consulted:
//! at this size, scanning the entries for a key touches the same cache lines
//! a hash lookup reads anyway. So the map is a vector of entries, searched by
//! scanning, and grows a hash index only when it holds more than
//! `LINEAR_SCAN_MAX_FIELDS` entries, so a document with thousands of keys
//! (crafted or not) still inserts and looks up in constant time.
//!
//! Guarantees:
//! - Keys are unique; entries keep insertion order; inserting an existing key
//!   replaces its value in place (JSON's and the SLS SDK's "last one wins").
//! - The method names and meanings follow `indexmap::IndexMap`
//!   (`get_index_of`, `shift_remove`, `swap_remove`, ...), so code written
//!   against one reads the same against the other.
//! - Equality ignores order, as for any map.
//! - The index is seeded (foldhash), so keys chosen by an attacker cannot
//!   force collisions.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::value::{KeyString, Value};

/// Up to this many entries a key is found by scanning; above it, through the
/// hash index.
pub const LINEAR_SCAN_MAX_FIELDS: usize = 16;

/// An ordered map of field names to values (see the module doc).
#[derive(Clone, Default)]
pub struct ObjectMap {
    entries: Vec<(KeyString, Value)>,
    /// Present once the map has held more than `LINEAR_SCAN_MAX_FIELDS`
    /// entries; maps each key's hash to its position in `entries`.
    index: Option<Box<KeyIndex>>,
}

#[derive(Clone)]
struct KeyIndex {
    hasher: foldhash::fast::RandomState,
    table: hashbrown::HashTable<usize>,
}

impl KeyIndex {
    fn hash(&self, key: &str) -> u64 {
        std::hash::BuildHasher::hash_one(&self.hasher, key)
    }

    fn build(entries: &[(KeyString, Value)]) -> KeyIndex {
        let mut index = KeyIndex {
            hasher: foldhash::fast::RandomState::default(),
            table: hashbrown::HashTable::with_capacity(entries.len()),
        };
        index.rebuild(entries);
        index
    }

    fn rebuild(&mut self, entries: &[(KeyString, Value)]) {
        self.table.clear();
        for position in 0..entries.len() {
            self.push(entries, position);
        }
    }

    fn find(&self, entries: &[(KeyString, Value)], key: &str) -> Option<usize> {
        self.table.find(self.hash(key), |&position| entries[position].0.as_str() == key).copied()
    }

    fn push(&mut self, entries: &[(KeyString, Value)], position: usize) {
        let hash = self.hash(entries[position].0.as_str());
        let hasher = &self.hasher;
        self.table.insert_unique(hash, position, |&existing| {
            std::hash::BuildHasher::hash_one(hasher, entries[existing].0.as_str())
        });
    }
}

impl ObjectMap {
    pub fn new() -> ObjectMap {
        ObjectMap::default()
    }

    pub fn with_capacity(capacity: usize) -> ObjectMap {
        ObjectMap { entries: Vec::with_capacity(capacity), index: None }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn reserve(&mut self, additional: usize) {
        self.entries.reserve(additional);
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.index = None;
    }

    /// The position of `key`.
    pub fn get_index_of(&self, key: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.find(&self.entries, key),
            None => self.entries.iter().position(|(candidate, _)| candidate.as_str() == key),
        }
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get_index_of(key).is_some()
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.get_index_of(key).map(|position| &self.entries[position].1)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.get_index_of(key).map(|position| &mut self.entries[position].1)
    }

    pub fn get_key_value(&self, key: &str) -> Option<(&KeyString, &Value)> {
        self.get_index_of(key).map(|position| {
            let (key, value) = &self.entries[position];
            (key, value)
        })
    }

    pub fn get_index(&self, position: usize) -> Option<(&KeyString, &Value)> {
        self.entries.get(position).map(|(key, value)| (key, value))
    }

    pub fn get_index_mut(&mut self, position: usize) -> Option<(&KeyString, &mut Value)> {
        self.entries.get_mut(position).map(|(key, value)| (&*key, value))
    }

    pub fn first(&self) -> Option<(&KeyString, &Value)> {
        self.get_index(0)
    }

    pub fn last(&self) -> Option<(&KeyString, &Value)> {
        self.entries.last().map(|(key, value)| (key, value))
    }

    /// Sets `key` to `value`: replaces the value in place when the key is
    /// present (returning the old one), else appends the entry.
    pub fn insert(&mut self, key: KeyString, value: Value) -> Option<Value> {
        self.insert_full(key, value).1
    }

    /// `insert`, also returning the entry's position.
    pub fn insert_full(&mut self, key: KeyString, value: Value) -> (usize, Option<Value>) {
        if let Some(position) = self.get_index_of(&key) {
            return (position, Some(std::mem::replace(&mut self.entries[position].1, value)));
        }
        (self.push_new(key, value), None)
    }

    /// Appends an entry whose key is known to be absent. Inlined so the
    /// entry is written straight into the vector rather than copied there
    /// through the stack (a measurable share of building a log event).
    #[inline]
    fn push_new(&mut self, key: KeyString, value: Value) -> usize {
        let position = self.entries.len();
        self.entries.push((key, value));
        match &mut self.index {
            Some(index) => index.push(&self.entries, position),
            None if self.entries.len() > LINEAR_SCAN_MAX_FIELDS => {
                self.index = Some(Box::new(KeyIndex::build(&self.entries)));
            }
            None => {}
        }
        position
    }

    /// The value of `key`, inserted from `default` first when absent.
    pub fn get_or_insert_with(&mut self, key: &str, default: impl FnOnce() -> Value) -> &mut Value {
        let position = match self.get_index_of(key) {
            Some(position) => position,
            None => self.push_new(KeyString::from(key), default()),
        };
        &mut self.entries[position].1
    }

    /// Removes `key`, keeping the order of the other entries (O(n)).
    pub fn shift_remove(&mut self, key: &str) -> Option<Value> {
        self.shift_remove_entry(key).map(|(_, value)| value)
    }

    pub fn shift_remove_entry(&mut self, key: &str) -> Option<(KeyString, Value)> {
        let position = self.get_index_of(key)?;
        Some(self.shift_remove_index(position))
    }

    /// Removes the entry at `position` (which must exist), keeping order.
    pub fn shift_remove_index(&mut self, position: usize) -> (KeyString, Value) {
        let removed = self.entries.remove(position);
        self.reindex();
        removed
    }

    /// Removes `key` by moving the last entry into its place (order changes).
    pub fn swap_remove(&mut self, key: &str) -> Option<Value> {
        let position = self.get_index_of(key)?;
        let (_, value) = self.entries.swap_remove(position);
        self.reindex();
        Some(value)
    }

    /// Keeps the entries for which `keep` returns true, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&KeyString, &mut Value) -> bool) {
        let before = self.entries.len();
        self.entries.retain_mut(|(key, value)| keep(key, value));
        if self.entries.len() != before {
            self.reindex();
        }
    }

    /// Sorts the entries by key.
    pub fn sort_keys(&mut self) {
        self.entries.sort_by(|(left, _), (right, _)| left.cmp(right));
        self.reindex();
    }

    /// Removes and returns every entry, in order.
    pub fn drain(&mut self) -> std::vec::Drain<'_, (KeyString, Value)> {
        self.index = None;
        self.entries.drain(..)
    }

    fn reindex(&mut self) {
        if let Some(index) = &mut self.index {
            index.rebuild(&self.entries);
        }
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter(self.entries.iter())
    }

    pub fn iter_mut(&mut self) -> IterMut<'_> {
        IterMut(self.entries.iter_mut())
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &KeyString> + ExactSizeIterator + Clone {
        self.entries.iter().map(|(key, _)| key)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Value> + ExactSizeIterator + Clone {
        self.entries.iter().map(|(_, value)| value)
    }

    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut Value> + ExactSizeIterator {
        self.entries.iter_mut().map(|(_, value)| value)
    }

    pub fn into_keys(self) -> impl DoubleEndedIterator<Item = KeyString> + ExactSizeIterator {
        self.entries.into_iter().map(|(key, _)| key)
    }

    pub fn into_values(self) -> impl DoubleEndedIterator<Item = Value> + ExactSizeIterator {
        self.entries.into_iter().map(|(_, value)| value)
    }
}

/// Builds an `ObjectMap` from a stream of entries (a decoded log, a parsed
/// JSON object), where keys repeat rarely. It remembers a 128-bit
/// fingerprint set of the keys inserted so far, so a key whose fingerprint is
/// new is appended without scanning for a duplicate; only a fingerprint hit
/// (a real duplicate, or one chance in eight for a log of 16 fields) pays
/// for the scan. The result is the same as inserting into the map directly.
pub struct ObjectMapBuilder {
    map: ObjectMap,
    seen: u128,
}

impl ObjectMapBuilder {
    pub fn with_capacity(capacity: usize) -> ObjectMapBuilder {
        ObjectMapBuilder { map: ObjectMap::with_capacity(capacity), seen: 0 }
    }

    /// `ObjectMap::insert`: a later value for a key replaces the earlier one
    /// in place.
    #[inline]
    pub fn insert(&mut self, key: KeyString, value: Value) {
        let bit = 1u128 << key_fingerprint(key.as_bytes());
        if self.seen & bit == 0 && self.map.index.is_none() {
            self.seen |= bit;
            self.map.push_new(key, value);
        } else {
            self.seen |= bit;
            self.map.insert(key, value);
        }
    }

    pub fn finish(self) -> ObjectMap {
        self.map
    }
}

/// 7 bits from a key's length and two of its bytes: field names of one log
/// mostly differ in length or ending (`__tag__:__path__`, `level`, ...).
fn key_fingerprint(key: &[u8]) -> u32 {
    let Some(&last) = key.last() else { return 0 };
    let middle = key[key.len() / 2];
    let mixed = (key.len() as u32).wrapping_mul(0x9e37_79b9)
        ^ u32::from(last).wrapping_mul(0x85eb_ca6b)
        ^ u32::from(middle).wrapping_mul(0xc2b2_ae35);
    mixed >> 25
}

/// Iterator over `(&key, &value)` in order.
#[derive(Clone)]
pub struct Iter<'a>(std::slice::Iter<'a, (KeyString, Value)>);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a KeyString, &'a Value);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(key, value)| (key, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(key, value)| (key, value))
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// Iterator over `(&key, &mut value)` in order.
pub struct IterMut<'a>(std::slice::IterMut<'a, (KeyString, Value)>);

impl<'a> Iterator for IterMut<'a> {
    type Item = (&'a KeyString, &'a mut Value);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(key, value)| (&*key, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl DoubleEndedIterator for IterMut<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(key, value)| (&*key, value))
    }
}

impl ExactSizeIterator for IterMut<'_> {}

impl<'a> IntoIterator for &'a ObjectMap {
    type Item = (&'a KeyString, &'a Value);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl<'a> IntoIterator for &'a mut ObjectMap {
    type Item = (&'a KeyString, &'a mut Value);
    type IntoIter = IterMut<'a>;

    fn into_iter(self) -> IterMut<'a> {
        self.iter_mut()
    }
}

impl IntoIterator for ObjectMap {
    type Item = (KeyString, Value);
    type IntoIter = std::vec::IntoIter<(KeyString, Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<K: Into<KeyString>> Extend<(K, Value)> for ObjectMap {
    fn extend<I: IntoIterator<Item = (K, Value)>>(&mut self, entries: I) {
        let entries = entries.into_iter();
        self.reserve(entries.size_hint().0);
        for (key, value) in entries {
            self.insert(key.into(), value);
        }
    }
}

impl<K: Into<KeyString>> FromIterator<(K, Value)> for ObjectMap {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(entries: I) -> ObjectMap {
        let mut map = ObjectMap::new();
        map.extend(entries);
        map
    }
}

impl<K: Into<KeyString>, const N: usize> From<[(K, Value); N]> for ObjectMap {
    fn from(entries: [(K, Value); N]) -> ObjectMap {
        entries.into_iter().collect()
    }
}

/// `map["key"]`, for tests and code that has just checked the key; panics
/// when it is absent, as `HashMap` and `IndexMap` do.
impl std::ops::Index<&str> for ObjectMap {
    type Output = Value;

    fn index(&self, key: &str) -> &Value {
        self.get(key).unwrap_or_else(|| panic!("no field {key:?} in the map"))
    }
}

impl PartialEq for ObjectMap {
    fn eq(&self, other: &ObjectMap) -> bool {
        self.len() == other.len() && self.iter().all(|(key, value)| other.get(key) == Some(value))
    }
}

impl fmt::Debug for ObjectMap {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for ObjectMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_map(Some(self.len()))?;
        for (key, value) in self {
            out.serialize_entry(key.as_str(), value)?;
        }
        out.end()
    }
}

impl<'de> Deserialize<'de> for ObjectMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMap, D::Error> {
        deserializer.deserialize_map(ObjectMapVisitor)
    }
}

pub(super) struct ObjectMapVisitor;

impl<'de> Visitor<'de> for ObjectMapVisitor {
    type Value = ObjectMap;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<ObjectMap, A::Error> {
        // The hint comes from the input; cap it so a lying length cannot
        // reserve gigabytes.
        let mut map = ObjectMapBuilder::with_capacity(access.size_hint().unwrap_or(0).min(1024));
        while let Some(key) = access.next_key::<KeyString>()? {
            let value = access.next_value()?;
            map.insert(key, value);
        }
        Ok(map.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(name: &str) -> KeyString {
        KeyString::from(name)
    }

    #[test]
    fn insert_replaces_in_place_and_keeps_order() {
        let mut map = ObjectMap::new();
        assert_eq!(map.insert(key("a"), Value::Integer(1)), None);
        assert_eq!(map.insert(key("b"), Value::Integer(2)), None);
        assert_eq!(map.insert(key("a"), Value::Integer(3)), Some(Value::Integer(1)));
        let keys: Vec<&str> = map.keys().map(|key| key.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(map.get("a"), Some(&Value::Integer(3)));
    }

    #[test]
    fn large_maps_switch_to_the_index_and_stay_consistent() {
        let mut map = ObjectMap::new();
        for number in 0..200 {
            map.insert(key(&format!("field_{number}")), Value::Integer(number));
        }
        assert!(map.index.is_some());
        assert_eq!(map.get_index_of("field_150"), Some(150));
        assert_eq!(map.shift_remove("field_10"), Some(Value::Integer(10)));
        assert_eq!(map.get_index_of("field_150"), Some(149));
        assert_eq!(map.get("field_10"), None);
        map.retain(|key, _| !key.ends_with('5'));
        assert_eq!(map.get("field_15"), None);
        assert_eq!(map.get("field_16"), Some(&Value::Integer(16)));
        assert_eq!(
            map.get_index_of("field_16").map(|position| map.get_index(position).unwrap().0.as_str()),
            Some("field_16")
        );
    }

    #[test]
    fn equality_ignores_order() {
        let left: ObjectMap = [("a", Value::Integer(1)), ("b", Value::Integer(2))].into();
        let right: ObjectMap = [("b", Value::Integer(2)), ("a", Value::Integer(1))].into();
        assert_eq!(left, right);
        let different: ObjectMap = [("b", Value::Integer(2)), ("a", Value::Integer(9))].into();
        assert_ne!(left, different);
    }

    #[test]
    fn duplicate_json_keys_keep_the_last_value_at_the_first_position() {
        let map: ObjectMap = serde_json::from_str(r#"{"a":1,"b":2,"a":3}"#).unwrap();
        assert_eq!(serde_json::to_string(&map).unwrap(), r#"{"a":3,"b":2}"#);
    }

    proptest! {
        /// The builder's fingerprint shortcut never lets a duplicate key in.
        #[test]
        fn the_builder_equals_plain_inserts(keys in proptest::collection::vec("[a-c_]{0,4}", 0..60)) {
            let mut built = ObjectMapBuilder::with_capacity(keys.len());
            let mut plain = ObjectMap::new();
            for (position, name) in keys.iter().enumerate() {
                built.insert(KeyString::from(name.as_str()), Value::Integer(position as i64));
                plain.insert(KeyString::from(name.as_str()), Value::Integer(position as i64));
            }
            let built = built.finish();
            let built_entries: Vec<_> = built.iter().collect();
            let plain_entries: Vec<_> = plain.iter().collect();
            prop_assert_eq!(built_entries, plain_entries);
        }
    }

    #[derive(Debug, Clone)]
    enum Operation {
        Insert(u8, i64),
        ShiftRemove(u8),
        SwapRemove(u8),
        RetainEven,
    }

    fn operation() -> impl Strategy<Value = Operation> {
        // Keys 0..40 cross the linear/index threshold both ways.
        prop_oneof![
            6 => (0u8..40, any::<i64>()).prop_map(|(key, value)| Operation::Insert(key, value)),
            2 => (0u8..40).prop_map(Operation::ShiftRemove),
            1 => (0u8..40).prop_map(Operation::SwapRemove),
            1 => Just(Operation::RetainEven),
        ]
    }

    proptest! {
        /// The map behaves exactly like `IndexMap` under any sequence of
        /// operations, below and above the index threshold.
        #[test]
        fn behaves_like_indexmap(operations in proptest::collection::vec(operation(), 0..200)) {
            let mut map = ObjectMap::new();
            let mut model: indexmap::IndexMap<String, i64> = indexmap::IndexMap::new();
            for operation in operations {
                match operation {
                    Operation::Insert(name, value) => {
                        let name = format!("k{name}");
                        let previous = map.insert(KeyString::from(name.as_str()), Value::Integer(value));
                        prop_assert_eq!(previous, model.insert(name, value).map(Value::Integer));
                    }
                    Operation::ShiftRemove(name) => {
                        let name = format!("k{name}");
                        prop_assert_eq!(map.shift_remove(&name), model.shift_remove(&name).map(Value::Integer));
                    }
                    Operation::SwapRemove(name) => {
                        let name = format!("k{name}");
                        prop_assert_eq!(map.swap_remove(&name), model.swap_remove(&name).map(Value::Integer));
                    }
                    Operation::RetainEven => {
                        map.retain(|_, value| matches!(value, Value::Integer(number) if *number % 2 == 0));
                        model.retain(|_, value| *value % 2 == 0);
                    }
                }
                let entries: Vec<(String, Value)> =
                    map.iter().map(|(key, value)| (key.to_string(), value.clone())).collect();
                let expected: Vec<(String, Value)> =
                    model.iter().map(|(key, value)| (key.clone(), Value::Integer(*value))).collect();
                prop_assert_eq!(entries, expected);
                for probe in 0..40 {
                    let name = format!("k{probe}");
                    prop_assert_eq!(map.get_index_of(&name), model.get_index_of(&name));
                }
            }
        }
    }
}
