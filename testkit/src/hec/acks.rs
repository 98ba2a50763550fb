//! Indexer acknowledgements: per-channel ack ids and their fate (reference §6).
//!
//! Guarantees: ids are per channel, start at 0 and grow by one per accepted
//! request; an id reads `true` at most once and is forgotten right after;
//! unknown ids, ids of another channel, pending, lost and expired ids all
//! read `false`, as on Splunk. The ledger takes the current instant as an
//! argument and never reads a clock, so its rules are testable without time
//! passing. It never decides whether a request is accepted.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How issued ack ids behave. Changes apply to ids issued afterwards, except
/// `expiry`, which is checked when an id is queried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AckSettings {
    /// An id reads `true` only once this long has passed since it was issued.
    #[serde(rename = "delay_ms", with = "duration_as_millis")]
    pub delay: Duration,
    /// Share of ids (0.0 to 1.0) that never become `true`. Deterministic: the
    /// emulator loses an id each time the accumulated share reaches one, so
    /// 0.5 loses ids 1, 3, 5, ... of the issue order.
    pub loss_fraction: f64,
    /// The next this-many issued ids never become `true` (counted down as ids
    /// are issued, before `loss_fraction` applies).
    pub lose_next: u64,
    /// An id not yet reported `true` this long after it was issued is
    /// forgotten (reads `false` forever), like Splunk's idle cleanup.
    #[serde(rename = "expiry_ms", with = "optional_duration_as_millis")]
    pub expiry: Option<Duration>,
}

impl Default for AckSettings {
    fn default() -> AckSettings {
        AckSettings { delay: Duration::ZERO, loss_fraction: 0.0, lose_next: 0, expiry: None }
    }
}

/// `loss_fraction` outside 0.0..=1.0.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("HEC ack settings: \"loss_fraction\" is {0}; set it between 0.0 and 1.0")]
pub struct InvalidLossFraction(pub f64);

impl AckSettings {
    pub fn validate(&self) -> Result<(), InvalidLossFraction> {
        if (0.0..=1.0).contains(&self.loss_fraction) {
            Ok(())
        } else {
            Err(InvalidLossFraction(self.loss_fraction))
        }
    }
}

/// Counts over the ledger's life (or since the last reset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AckCounts {
    pub issued: u64,
    /// Issued, not yet reported `true`, not expired (lost ids included: Splunk
    /// cannot tell lost from pending either).
    pub pending: u64,
    pub reported_true: u64,
    /// Ids marked never to become `true`.
    pub lost: u64,
    pub expired: u64,
    pub queries: u64,
}

#[derive(Debug)]
struct PendingAck {
    issued_at: Instant,
    /// `None` for an id that will never become `true`.
    ready_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct Channel {
    next_id: u64,
    pending: BTreeMap<u64, PendingAck>,
}

#[derive(Debug, Default)]
pub(crate) struct AckLedger {
    settings: AckSettings,
    loss_accumulator: f64,
    channels: HashMap<String, Channel>,
    counts: AckCounts,
}

impl AckLedger {
    pub fn new(settings: AckSettings) -> AckLedger {
        AckLedger { settings, ..AckLedger::default() }
    }

    pub fn settings(&self) -> &AckSettings {
        &self.settings
    }

    pub fn set_settings(&mut self, settings: AckSettings) {
        self.settings = settings;
    }

    pub fn lose_next(&mut self, count: u64) {
        self.settings.lose_next += count;
    }

    /// Forgets every channel and count; settings stay.
    pub fn reset(&mut self) {
        self.channels.clear();
        self.counts = AckCounts::default();
        self.loss_accumulator = 0.0;
    }

    /// Issues the next id of `channel` for one accepted request.
    pub fn issue(&mut self, channel: &str, now: Instant) -> u64 {
        let lost = self.decide_loss();
        let channel = self.channels.entry(channel.to_string()).or_default();
        let id = channel.next_id;
        channel.next_id += 1;
        let ready_at = if lost { None } else { Some(now + self.settings.delay) };
        channel.pending.insert(id, PendingAck { issued_at: now, ready_at });
        self.counts.issued += 1;
        if lost {
            self.counts.lost += 1;
        }
        id
    }

    fn decide_loss(&mut self) -> bool {
        if self.settings.lose_next > 0 {
            self.settings.lose_next -= 1;
            return true;
        }
        self.loss_accumulator += self.settings.loss_fraction;
        if self.loss_accumulator >= 1.0 {
            self.loss_accumulator -= 1.0;
            return true;
        }
        false
    }

    /// Answers an ack poll: each id with whether it is indexed now. Ids
    /// answered `true` are forgotten.
    pub fn query(&mut self, channel: &str, ids: &[u64], now: Instant) -> Vec<(u64, bool)> {
        self.counts.queries += 1;
        self.expire(now);
        let Some(channel) = self.channels.get_mut(channel) else {
            return ids.iter().map(|id| (*id, false)).collect();
        };
        let mut answers = Vec::with_capacity(ids.len());
        for id in ids {
            let ready =
                channel.pending.get(id).and_then(|pending| pending.ready_at).is_some_and(|ready_at| ready_at <= now);
            if ready {
                channel.pending.remove(id);
                self.counts.reported_true += 1;
            }
            answers.push((*id, ready));
        }
        answers
    }

    fn expire(&mut self, now: Instant) {
        let Some(expiry) = self.settings.expiry else { return };
        for channel in self.channels.values_mut() {
            let before = channel.pending.len();
            channel.pending.retain(|_, pending| now.saturating_duration_since(pending.issued_at) < expiry);
            self.counts.expired += (before - channel.pending.len()) as u64;
        }
    }

    pub fn counts(&self) -> AckCounts {
        let pending = self.channels.values().map(|channel| channel.pending.len() as u64).sum();
        AckCounts { pending, ..self.counts }
    }
}

mod duration_as_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(deserializer)?))
    }
}

mod optional_duration_as_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        match duration {
            Some(duration) => serializer.serialize_some(&u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(deserializer)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHANNEL: &str = "11111111-2222-3333-4444-555555555555";
    const OTHER: &str = "aaaaaaaa-2222-3333-4444-555555555555";

    #[test]
    fn ids_are_per_channel_from_zero_and_true_once() {
        let mut ledger = AckLedger::new(AckSettings::default());
        let now = Instant::now();
        assert_eq!(ledger.issue(CHANNEL, now), 0);
        assert_eq!(ledger.issue(CHANNEL, now), 1);
        assert_eq!(ledger.issue(OTHER, now), 0);
        assert_eq!(ledger.query(CHANNEL, &[0, 1, 7], now), vec![(0, true), (1, true), (7, false)]);
        assert_eq!(ledger.query(CHANNEL, &[0, 1], now), vec![(0, false), (1, false)]);
        assert_eq!(ledger.query("unknown", &[0], now), vec![(0, false)]);
        let counts = ledger.counts();
        assert_eq!((counts.issued, counts.pending, counts.reported_true, counts.queries), (3, 1, 2, 3));
    }

    #[test]
    fn delay_holds_ids_false_until_it_passes() {
        let mut ledger = AckLedger::new(AckSettings { delay: Duration::from_secs(10), ..AckSettings::default() });
        let issued = Instant::now();
        let id = ledger.issue(CHANNEL, issued);
        assert_eq!(ledger.query(CHANNEL, &[id], issued + Duration::from_secs(9)), vec![(id, false)]);
        assert_eq!(ledger.query(CHANNEL, &[id], issued + Duration::from_secs(10)), vec![(id, true)]);
    }

    #[test]
    fn lose_next_and_fraction_are_deterministic() {
        let mut ledger = AckLedger::new(AckSettings { loss_fraction: 0.5, lose_next: 2, ..AckSettings::default() });
        let now = Instant::now();
        let ids: Vec<u64> = (0..6).map(|_| ledger.issue(CHANNEL, now)).collect();
        let answers = ledger.query(CHANNEL, &ids, now);
        let truths: Vec<bool> = answers.iter().map(|(_, ready)| *ready).collect();
        assert_eq!(truths, vec![false, false, true, false, true, false]);
        assert_eq!(ledger.counts().lost, 4);
    }

    #[test]
    fn expiry_forgets_unreported_ids() {
        let mut ledger = AckLedger::new(AckSettings {
            delay: Duration::from_secs(5),
            expiry: Some(Duration::from_secs(3)),
            ..AckSettings::default()
        });
        let issued = Instant::now();
        let id = ledger.issue(CHANNEL, issued);
        assert_eq!(ledger.query(CHANNEL, &[id], issued + Duration::from_secs(6)), vec![(id, false)]);
        assert_eq!(ledger.counts().expired, 1);
        assert_eq!(ledger.counts().pending, 0);
    }

    #[test]
    fn settings_parse_from_json_and_validate() {
        let settings: AckSettings = serde_json::from_str(r#"{"delay_ms":250,"expiry_ms":1000}"#).unwrap();
        assert_eq!(settings.delay, Duration::from_millis(250));
        assert_eq!(settings.expiry, Some(Duration::from_secs(1)));
        assert!(AckSettings { loss_fraction: 1.5, ..AckSettings::default() }.validate().is_err());
        assert!(serde_json::from_str::<AckSettings>(r#"{"delay":1}"#).is_err());
    }
}
