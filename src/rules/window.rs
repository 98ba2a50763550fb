//! The two state primitives every rule type builds on.
//!
//! `EventWindow` is ElastAlert's sliding window (reference section 1): entries
//! `(time, count, payload)` kept in time order (ties after existing entries),
//! a running sum, and after every insert the oldest entries are removed while
//! `newest − oldest ≥ timeframe`, each handed to an "on removed" callback. The
//! window moves only on inserts, never with the clock.
//!
//! `KeyedState` is a per-rule map from partition key to state with a hard cap
//! on the number of keys: inserting a key beyond the cap evicts the least
//! recently seen one (an intrusive LRU list over a slab, O(1) per touch) and
//! counts the eviction, so per-rule memory is bounded whatever the key
//! cardinality of the stream.
//!
//! Neither does any IO or looks at the wall clock.

use std::collections::VecDeque;

use crate::event::KeyString;
use crate::rules::time::EventTime;

/// One window entry. `placeholder` marks zero-count entries inserted by
/// end-of-run housekeeping to make time pass.
#[derive(Debug, Clone)]
pub struct WindowEntry<P> {
    pub time: EventTime,
    pub count: f64,
    pub placeholder: bool,
    pub payload: P,
}

/// ElastAlert's EventWindow.
#[derive(Debug, Clone)]
pub struct EventWindow<P> {
    timeframe: i64,
    entries: VecDeque<WindowEntry<P>>,
    sum: f64,
    /// Entries with the same time are folded into one (counts added). Only
    /// correct when nothing averages over entries; it keeps a busy key with
    /// second-resolution timestamps at one entry per second.
    merge_ties: bool,
}

impl<P> EventWindow<P> {
    pub fn new(timeframe_nanos: i64, merge_ties: bool) -> EventWindow<P> {
        EventWindow { timeframe: timeframe_nanos, entries: VecDeque::new(), sum: 0.0, merge_ties }
    }

    /// Inserts in time order, then trims from the oldest end.
    pub fn insert(&mut self, entry: WindowEntry<P>, mut on_removed: impl FnMut(WindowEntry<P>)) {
        let position =
            self.entries.iter().rposition(|existing| existing.time <= entry.time).map_or(0, |index| index + 1);
        if entry.count.is_finite() {
            self.sum += entry.count;
        }
        let merge_into =
            position.checked_sub(1).filter(|&previous| self.merge_ties && self.entries[previous].time == entry.time);
        match merge_into {
            Some(previous) => {
                let existing = &mut self.entries[previous];
                // The group reports its first real event, as the first entry
                // with a non-zero count would have.
                if existing.count == 0.0 && entry.count != 0.0 {
                    existing.payload = entry.payload;
                    existing.placeholder = entry.placeholder;
                }
                existing.count += entry.count;
            }
            None => self.entries.insert(position, entry),
        }
        self.trim(&mut on_removed);
    }

    fn trim(&mut self, on_removed: &mut impl FnMut(WindowEntry<P>)) {
        while let (Some(oldest), Some(newest)) = (self.entries.front(), self.entries.back()) {
            if newest.time.saturating_sub(oldest.time) < self.timeframe {
                break;
            }
            if let Some(removed) = self.entries.pop_front() {
                if removed.count.is_finite() {
                    self.sum -= removed.count;
                }
                on_removed(removed);
            }
        }
        if self.entries.is_empty() {
            // Keeps float drift from surviving an empty window.
            self.sum = 0.0;
        }
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn oldest(&self) -> Option<&WindowEntry<P>> {
        self.entries.front()
    }

    pub fn newest(&self) -> Option<&WindowEntry<P>> {
        self.entries.back()
    }

    pub fn entries(&self) -> impl DoubleEndedIterator<Item = &WindowEntry<P>> {
        self.entries.iter()
    }

    pub fn entries_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut WindowEntry<P>> {
        self.entries.iter_mut()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.sum = 0.0;
    }

    /// Mean of counts over entries that are not placeholders.
    pub fn mean(&self) -> Option<f64> {
        let (total, entries) = self
            .entries
            .iter()
            .filter(|entry| !entry.placeholder)
            .fold((0.0, 0usize), |(total, entries), entry| (total + entry.count, entries + 1));
        (entries > 0).then(|| total / entries as f64)
    }

    /// Minimum count over all entries, placeholders included.
    pub fn min(&self) -> Option<f64> {
        self.entries.iter().map(|entry| entry.count).reduce(f64::min)
    }

    /// Maximum count over all entries, placeholders included.
    pub fn max(&self) -> Option<f64> {
        self.entries.iter().map(|entry| entry.count).reduce(f64::max)
    }
}

/// A partition key: the query_key value's text, or `None` for a missing
/// value where the rule type keeps missing values as their own key.
pub type PartitionKey = Option<KeyString>;

const NIL: u32 = u32::MAX;

#[derive(Debug)]
struct Slot<V> {
    key: PartitionKey,
    value: Option<V>,
    /// Towards the most recently seen end.
    newer: u32,
    /// Towards the least recently seen end.
    older: u32,
}

/// Per-key state with least-recently-seen eviction beyond `capacity` keys.
#[derive(Debug)]
pub struct KeyedState<V> {
    index: std::collections::HashMap<PartitionKey, u32, foldhash::fast::RandomState>,
    slots: Vec<Slot<V>>,
    free_slots: Vec<u32>,
    most_recent: u32,
    least_recent: u32,
    capacity: usize,
    evicted_total: u64,
}

impl<V> KeyedState<V> {
    /// `capacity` is at least 1.
    pub fn new(capacity: usize) -> KeyedState<V> {
        KeyedState {
            index: std::collections::HashMap::with_hasher(foldhash::fast::RandomState::default()),
            slots: Vec::new(),
            free_slots: Vec::new(),
            most_recent: NIL,
            least_recent: NIL,
            capacity: capacity.max(1),
            evicted_total: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Keys evicted because the cap was reached, since creation.
    pub fn evicted_total(&self) -> u64 {
        self.evicted_total
    }

    pub fn contains(&self, key: &PartitionKey) -> bool {
        self.index.contains_key(key)
    }

    /// The state for `key` without marking it seen.
    pub fn peek_mut(&mut self, key: &PartitionKey) -> Option<&mut V> {
        let slot = *self.index.get(key)?;
        self.slots[slot as usize].value.as_mut()
    }

    pub fn peek(&self, key: &PartitionKey) -> Option<&V> {
        let slot = *self.index.get(key)?;
        self.slots[slot as usize].value.as_ref()
    }

    /// The state for `key`, created with `create` when absent, and marks the
    /// key most recently seen. May evict the least recently seen key.
    pub fn touch_or_insert_with(&mut self, key: PartitionKey, create: impl FnOnce() -> V) -> &mut V {
        let slot = match self.index.get(&key) {
            Some(&slot) => {
                self.unlink(slot);
                self.link_most_recent(slot);
                slot
            }
            None => {
                if self.index.len() >= self.capacity {
                    self.evict_least_recent();
                }
                let slot = self.allocate(key.clone(), create());
                self.index.insert(key, slot);
                self.link_most_recent(slot);
                slot
            }
        };
        match &mut self.slots[slot as usize].value {
            Some(value) => value,
            None => unreachable_slot(),
        }
    }

    /// Removes `key` and returns its state.
    pub fn remove(&mut self, key: &PartitionKey) -> Option<V> {
        let slot = self.index.remove(key)?;
        self.unlink(slot);
        self.free_slots.push(slot);
        self.slots[slot as usize].value.take()
    }

    /// Keys, least recently seen first.
    pub fn keys(&self) -> Vec<PartitionKey> {
        let mut keys = Vec::with_capacity(self.index.len());
        let mut cursor = self.least_recent;
        while cursor != NIL {
            let slot = &self.slots[cursor as usize];
            keys.push(slot.key.clone());
            cursor = slot.newer;
        }
        keys
    }

    /// Every key and state, in no particular order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&PartitionKey, &mut V)> {
        self.slots.iter_mut().filter_map(|slot| slot.value.as_mut().map(|value| (&slot.key, value)))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PartitionKey, &V)> {
        self.slots.iter().filter_map(|slot| slot.value.as_ref().map(|value| (&slot.key, value)))
    }

    /// Removes every key for which `keep` returns false.
    pub fn retain(&mut self, mut keep: impl FnMut(&PartitionKey, &mut V) -> bool) {
        let doomed: Vec<PartitionKey> = self
            .slots
            .iter_mut()
            .filter_map(|slot| {
                let value = slot.value.as_mut()?;
                (!keep(&slot.key, value)).then(|| slot.key.clone())
            })
            .collect();
        for key in doomed {
            self.remove(&key);
        }
    }

    fn allocate(&mut self, key: PartitionKey, value: V) -> u32 {
        let slot = Slot { key, value: Some(value), newer: NIL, older: NIL };
        match self.free_slots.pop() {
            Some(index) => {
                self.slots[index as usize] = slot;
                index
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        }
    }

    fn evict_least_recent(&mut self) {
        let victim = self.least_recent;
        if victim == NIL {
            return;
        }
        let key = self.slots[victim as usize].key.clone();
        self.remove(&key);
        self.evicted_total += 1;
    }

    fn unlink(&mut self, slot: u32) {
        let (newer, older) = {
            let entry = &self.slots[slot as usize];
            (entry.newer, entry.older)
        };
        if newer != NIL {
            self.slots[newer as usize].older = older;
        } else {
            self.most_recent = older;
        }
        if older != NIL {
            self.slots[older as usize].newer = newer;
        } else {
            self.least_recent = newer;
        }
        let entry = &mut self.slots[slot as usize];
        entry.newer = NIL;
        entry.older = NIL;
    }

    fn link_most_recent(&mut self, slot: u32) {
        let previous_most_recent = self.most_recent;
        {
            let entry = &mut self.slots[slot as usize];
            entry.older = previous_most_recent;
            entry.newer = NIL;
        }
        if previous_most_recent != NIL {
            self.slots[previous_most_recent as usize].newer = slot;
        } else {
            self.least_recent = slot;
        }
        self.most_recent = slot;
    }
}

/// Slots referenced by the index always hold a value; reaching this would
/// be a bug in `KeyedState` itself, never an input problem.
#[cold]
fn unreachable_slot() -> ! {
    panic!("KeyedState invariant broken: indexed slot without a value")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000_000_000;

    fn entry(minute: i64) -> WindowEntry<i64> {
        WindowEntry { time: minute * MINUTE, count: 1.0, placeholder: false, payload: minute }
    }

    #[test]
    fn upstream_window_example_keeps_newest_timeframe() {
        let mut window = EventWindow::new(10 * MINUTE, false);
        let mut removed = Vec::new();
        // 10:00, 10:05, 10:03, 09:55, 10:09 as minutes since 09:00.
        for minute in [60, 65, 63, 55, 69] {
            window.insert(entry(minute), |gone| removed.push(gone.payload));
        }
        let kept: Vec<i64> = window.entries().map(|entry| entry.payload).collect();
        assert_eq!(kept, vec![60, 63, 65, 69]);
        assert_eq!(removed, vec![55]);
        window.insert(entry(74), |gone| removed.push(gone.payload));
        let kept: Vec<i64> = window.entries().map(|entry| entry.payload).collect();
        assert_eq!(kept, vec![65, 69, 74]);
        assert_eq!(window.sum(), 3.0);
    }

    #[test]
    fn ties_go_after_existing_entries_and_merge_when_asked() {
        let mut window = EventWindow::new(10 * MINUTE, false);
        window.insert(WindowEntry { payload: 1, ..entry(1) }, |_| {});
        window.insert(WindowEntry { payload: 2, ..entry(1) }, |_| {});
        assert_eq!(window.entries().map(|entry| entry.payload).collect::<Vec<_>>(), vec![1, 2]);
        let mut merged = EventWindow::new(10 * MINUTE, true);
        merged.insert(WindowEntry { count: 0.0, placeholder: true, payload: 0, ..entry(1) }, |_| {});
        merged.insert(WindowEntry { payload: 7, ..entry(1) }, |_| {});
        merged.insert(WindowEntry { payload: 8, ..entry(1) }, |_| {});
        assert_eq!(merged.len(), 1);
        assert_eq!(merged.sum(), 2.0);
        assert_eq!(merged.oldest().map(|entry| entry.payload), Some(7));
    }

    #[test]
    fn mean_skips_placeholders_but_min_counts_them() {
        let mut window = EventWindow::new(10 * MINUTE, false);
        window.insert(WindowEntry { count: 4.0, ..entry(1) }, |_| {});
        window.insert(WindowEntry { count: 0.0, placeholder: true, ..entry(2) }, |_| {});
        assert_eq!(window.mean(), Some(4.0));
        assert_eq!(window.min(), Some(0.0));
        assert_eq!(window.max(), Some(4.0));
    }

    #[test]
    fn keyed_state_evicts_least_recently_seen() {
        let mut state: KeyedState<u32> = KeyedState::new(2);
        *state.touch_or_insert_with(Some("a".into()), || 0) += 1;
        *state.touch_or_insert_with(Some("b".into()), || 0) += 1;
        *state.touch_or_insert_with(Some("a".into()), || 0) += 1;
        *state.touch_or_insert_with(Some("c".into()), || 0) += 1;
        assert_eq!(state.len(), 2);
        assert_eq!(state.evicted_total(), 1);
        assert!(!state.contains(&Some("b".into())));
        assert_eq!(state.peek(&Some("a".into())), Some(&2));
        assert_eq!(state.keys(), vec![Some("a".into()), Some("c".into())]);
        state.remove(&Some("a".into()));
        *state.touch_or_insert_with(None, || 5) += 1;
        assert_eq!(state.keys(), vec![Some("c".into()), None]);
    }
}
