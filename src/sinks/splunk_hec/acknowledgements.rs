//! Indexer acknowledgement bookkeeping: which accepted requests wait for
//! their `ackId` to read `true` (reference §6).
//!
//! Owns: the pending map `ackId -> request`, ordered by id, with the instant
//! each request was accepted. The sink loop polls `/services/collector/ack`
//! with `ids()` every `acknowledgements.query_interval`, hands every `true`
//! to `take` (the first `true` is final: Splunk forgets the id right after),
//! and resends whatever `take_expired` returns after
//! `acknowledgements.timeout` (the data may be lost; a duplicate is
//! acceptable, a loss is not).
//!
//! Guarantees: a request is held by exactly one entry; an id answered after
//! its request expired or was displaced finds nothing and is ignored. If HEC
//! issues an id that is still pending (it restarted and forgot the channel,
//! so ids begin again at 0), the older request can no longer be tracked and
//! is handed back to be resent. Pure state: no IO, no clock of its own.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

struct PendingAck<T> {
    accepted_at: Instant,
    request: T,
}

/// Requests accepted by HEC and not yet known to be indexed.
pub struct PendingAcks<T> {
    entries: BTreeMap<u64, PendingAck<T>>,
}

impl<T> Default for PendingAcks<T> {
    fn default() -> PendingAcks<T> {
        PendingAcks { entries: BTreeMap::new() }
    }
}

impl<T> PendingAcks<T> {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Registers `request` under `ack_id`. Returns the request the id
    /// displaced, which must be resent.
    pub fn insert(&mut self, ack_id: u64, request: T, now: Instant) -> Option<T> {
        self.entries.insert(ack_id, PendingAck { accepted_at: now, request }).map(|displaced| displaced.request)
    }

    /// Every pending id, ascending: the body of the next ack query.
    pub fn ids(&self) -> Vec<u64> {
        self.entries.keys().copied().collect()
    }

    /// The request whose id read `true`, if it is still pending.
    pub fn take(&mut self, ack_id: u64) -> Option<T> {
        self.entries.remove(&ack_id).map(|pending| pending.request)
    }

    /// Requests accepted `timeout` or longer before `now`.
    pub fn take_expired(&mut self, now: Instant, timeout: Duration) -> Vec<T> {
        let expired: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, pending)| now.saturating_duration_since(pending.accepted_at) >= timeout)
            .map(|(id, _)| *id)
            .collect();
        expired.into_iter().filter_map(|id| self.take(id)).collect()
    }

    pub fn take_all(&mut self) -> Vec<T> {
        std::mem::take(&mut self.entries).into_values().map(|pending| pending.request).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn true_is_taken_once_and_late_answers_find_nothing() {
        let mut pending = PendingAcks::default();
        let now = Instant::now();
        assert!(pending.insert(0, "a", now).is_none());
        assert!(pending.insert(1, "b", now).is_none());
        assert_eq!(pending.ids(), vec![0, 1]);
        assert_eq!(pending.take(1), Some("b"));
        assert_eq!(pending.take(1), None);
        assert_eq!(pending.len(), 1);
    }

    #[test]
    fn expired_requests_come_back_for_resending() {
        let mut pending = PendingAcks::default();
        let start = Instant::now();
        pending.insert(3, "old", start);
        pending.insert(4, "new", start + Duration::from_secs(4));
        let expired = pending.take_expired(start + Duration::from_secs(5), Duration::from_secs(5));
        assert_eq!(expired, vec!["old"]);
        assert_eq!(pending.ids(), vec![4]);
        assert_eq!(pending.take_all(), vec!["new"]);
        assert!(pending.is_empty());
    }

    #[test]
    fn a_reissued_id_hands_back_the_request_it_displaces() {
        let mut pending = PendingAcks::default();
        let now = Instant::now();
        pending.insert(0, "before restart", now);
        assert_eq!(pending.insert(0, "after restart", now), Some("before restart"));
        assert_eq!(pending.take(0), Some("after restart"));
    }
}
