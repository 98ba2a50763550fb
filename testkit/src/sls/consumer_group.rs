//! One consumer group's server-side state: its consumers, the per-shard
//! assignment state machine with the transfer handshake (reference §4.2), and
//! checkpoints.
//!
//! Shard states: `Wait` (ordered group, an ancestor is not finished),
//! `NotAllocated`, `Allocated` (held), `Transfer` (the server wants to move it
//! but the holder still reports it), `Over` (read-only and checkpointed at its
//! end). Guarantees:
//! - a shard has at most one holder; a heartbeat answer lists only shards
//!   `Allocated` to that consumer, never `Transfer`, `Wait` or `Over` ones;
//! - a shard in `Transfer` passes to the next consumer only once the holder's
//!   heartbeat stops listing it (or the holder times out), so two consumers
//!   never read it at the same time;
//! - balancing keeps every two live consumers' counts (held plus incoming)
//!   within one of each other, moving as few shards as possible;
//! - a consumer whose last heartbeat is older than the group `timeout` is
//!   removed and its shards become `NotAllocated`; a heartbeat from an unknown
//!   consumer that reports shards is refused with `NotExistConsumerWithBody`.
//!
//! Never does IO and never reads the clock itself: callers pass `now`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::error::SlsError;

/// What a consumer group needs to know about one shard of its logstore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShardFacts {
    pub id: u32,
    pub read_only: bool,
    /// Cursor value one past the last log group (the shard's end cursor).
    pub end_cursor: i64,
    pub parent: Option<u32>,
}

/// The server-side state of one shard within one consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignmentState {
    Wait,
    NotAllocated,
    Allocated { holder: String },
    Transfer { holder: String, next: String },
    Over,
}

impl AssignmentState {
    pub fn name(&self) -> &'static str {
        match self {
            AssignmentState::Wait => "wait",
            AssignmentState::NotAllocated => "not_allocated",
            AssignmentState::Allocated { .. } => "allocated",
            AssignmentState::Transfer { .. } => "transfer",
            AssignmentState::Over => "over",
        }
    }

    /// The consumer currently reading the shard, if any.
    pub fn holder(&self) -> Option<&str> {
        match self {
            AssignmentState::Allocated { holder } | AssignmentState::Transfer { holder, .. } => Some(holder),
            _ => None,
        }
    }
}

/// A stored checkpoint, as GetCheckPoint reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub cursor: String,
    /// Cursor value of `cursor`, kept to detect the end of read-only shards.
    pub cursor_value: i64,
    /// Microseconds since the epoch (the unit the documentation example shows).
    pub update_time_micros: u64,
    pub consumer: String,
}

/// One UpdateCheckPoint request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckpointCommit<'a> {
    pub shard: u32,
    pub cursor: &'a str,
    /// May be empty when `force` is set.
    pub consumer: &'a str,
    /// `forceSuccess`: store even when the consumer does not hold the shard.
    pub force: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct GroupShard {
    pub state: AssignmentState,
    pub checkpoint: Option<StoredCheckpoint>,
    pub checkpoint_updates: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct ConsumerRecord {
    pub last_heartbeat: Instant,
    pub heartbeats: u64,
    /// Shards listed in the consumer's last heartbeat.
    pub reported: BTreeSet<u32>,
}

#[derive(Debug, Clone)]
pub(crate) struct ConsumerGroup {
    pub name: String,
    pub timeout: Duration,
    pub order: bool,
    pub consumers: BTreeMap<String, ConsumerRecord>,
    pub shards: BTreeMap<u32, GroupShard>,
}

impl ConsumerGroup {
    pub fn new(name: String, timeout: Duration, order: bool, facts: &[ShardFacts]) -> ConsumerGroup {
        let mut group = ConsumerGroup { name, timeout, order, consumers: BTreeMap::new(), shards: BTreeMap::new() };
        group.sync_shards(facts);
        group
    }

    /// Brings the shard table in line with the logstore: adds shards created
    /// since (split children), and recomputes the derived states `Over` and
    /// `Wait`.
    pub fn sync_shards(&mut self, facts: &[ShardFacts]) {
        for fact in facts {
            self.shards.entry(fact.id).or_insert_with(|| GroupShard {
                state: AssignmentState::NotAllocated,
                checkpoint: None,
                checkpoint_updates: 0,
            });
        }
        let new_shard_ids: Vec<u32> = facts.iter().map(|fact| fact.id).collect();
        self.shards.retain(|id, _| new_shard_ids.contains(id));

        for fact in facts {
            let finished = fact.read_only
                && self.shards[&fact.id]
                    .checkpoint
                    .as_ref()
                    .is_some_and(|checkpoint| checkpoint.cursor_value >= fact.end_cursor);
            let shard = self.shards.get_mut(&fact.id).expect("entry inserted above");
            if finished {
                shard.state = AssignmentState::Over;
            } else if shard.state == AssignmentState::Over {
                shard.state = AssignmentState::NotAllocated;
            }
        }
        for fact in facts {
            let waiting = self.order && self.has_unfinished_ancestor(fact, facts);
            let shard = self.shards.get_mut(&fact.id).expect("entry inserted above");
            match (&shard.state, waiting) {
                (AssignmentState::NotAllocated, true) => shard.state = AssignmentState::Wait,
                (AssignmentState::Wait, false) => shard.state = AssignmentState::NotAllocated,
                _ => {}
            }
        }
    }

    fn has_unfinished_ancestor(&self, fact: &ShardFacts, facts: &[ShardFacts]) -> bool {
        let mut parent = fact.parent;
        while let Some(parent_id) = parent {
            if self.shards.get(&parent_id).is_some_and(|shard| shard.state != AssignmentState::Over) {
                return true;
            }
            parent = facts.iter().find(|candidate| candidate.id == parent_id).and_then(|candidate| candidate.parent);
        }
        false
    }

    /// Removes consumers silent for longer than the group timeout.
    pub fn expire_consumers(&mut self, now: Instant) -> Vec<String> {
        let timeout = self.timeout;
        let expired: Vec<String> = self
            .consumers
            .iter()
            .filter(|(_, record)| now.saturating_duration_since(record.last_heartbeat) > timeout)
            .map(|(name, _)| name.clone())
            .collect();
        for name in &expired {
            self.consumers.remove(name);
            for shard in self.shards.values_mut() {
                shard.state = match std::mem::replace(&mut shard.state, AssignmentState::NotAllocated) {
                    AssignmentState::Allocated { holder } if &holder == name => AssignmentState::NotAllocated,
                    AssignmentState::Transfer { holder, .. } if &holder == name => AssignmentState::NotAllocated,
                    AssignmentState::Transfer { holder, next } if &next == name => {
                        AssignmentState::Allocated { holder }
                    }
                    other => other,
                };
            }
        }
        expired
    }

    /// Processes one heartbeat and answers the shards the consumer now holds.
    pub fn heartbeat(
        &mut self,
        consumer: &str,
        reported: BTreeSet<u32>,
        facts: &[ShardFacts],
        now: Instant,
    ) -> Result<Vec<u32>, SlsError> {
        self.sync_shards(facts);
        self.expire_consumers(now);
        if !self.consumers.contains_key(consumer) && !reported.is_empty() {
            return Err(SlsError::NotExistConsumerWithBody { consumer: consumer.to_string() });
        }
        let record = self.consumers.entry(consumer.to_string()).or_insert_with(|| ConsumerRecord {
            last_heartbeat: now,
            heartbeats: 0,
            reported: BTreeSet::new(),
        });
        record.last_heartbeat = now;
        record.heartbeats += 1;
        record.reported = reported.clone();

        for (id, shard) in self.shards.iter_mut() {
            let listed = reported.contains(id);
            shard.state = match std::mem::replace(&mut shard.state, AssignmentState::NotAllocated) {
                // The handshake: the holder gave the shard up, so the waiting
                // consumer may take it.
                AssignmentState::Transfer { holder, next } if holder == consumer && !listed => {
                    AssignmentState::Allocated { holder: next }
                }
                // A consumer still reading a shard nobody holds (for example
                // after the server restarted) keeps it; balancing may move it.
                AssignmentState::NotAllocated if listed => AssignmentState::Allocated { holder: consumer.to_string() },
                other => other,
            };
        }
        self.balance();
        Ok(self.held_by(consumer))
    }

    /// Shards answered to `consumer` in a heartbeat: only `Allocated` ones.
    pub fn held_by(&self, consumer: &str) -> Vec<u32> {
        self.shards
            .iter()
            .filter(|(_, shard)| matches!(&shard.state, AssignmentState::Allocated { holder } if holder == consumer))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Gives unallocated shards to the least-loaded consumers, then moves
    /// shards from the most to the least loaded until counts differ by at
    /// most one. A consumer's load counts the shards it holds plus the ones in
    /// transfer towards it, and excludes the ones it is handing over.
    fn balance(&mut self) {
        if self.consumers.is_empty() {
            return;
        }
        let mut load: BTreeMap<String, usize> = self.consumers.keys().map(|name| (name.clone(), 0)).collect();
        for shard in self.shards.values() {
            match &shard.state {
                AssignmentState::Allocated { holder } => *load.entry(holder.clone()).or_default() += 1,
                AssignmentState::Transfer { next, .. } => *load.entry(next.clone()).or_default() += 1,
                _ => {}
            }
        }
        let least_loaded = |load: &BTreeMap<String, usize>| {
            load.iter()
                .min_by_key(|(name, count)| (**count, (*name).clone()))
                .map(|(name, _)| name.clone())
                .expect("consumers exist")
        };
        for shard in self.shards.values_mut() {
            if shard.state == AssignmentState::NotAllocated {
                let target = least_loaded(&load);
                *load.get_mut(&target).expect("target comes from load") += 1;
                shard.state = AssignmentState::Allocated { holder: target };
            }
        }
        loop {
            let most = load
                .iter()
                .max_by_key(|(name, count)| (**count, std::cmp::Reverse((*name).clone())))
                .map(|(name, count)| (name.clone(), *count));
            let least = least_loaded(&load);
            let Some((most, most_count)) = most else { return };
            if most_count <= load[&least] + 1 {
                return;
            }
            // Prefer moving a shard the loaded consumer holds outright (the
            // highest id, so low ids stay put); otherwise redirect a transfer
            // that was heading to it.
            let held =
                self.shards.iter_mut().rev().find(
                    |(_, shard)| matches!(&shard.state, AssignmentState::Allocated { holder } if *holder == most),
                );
            let redirected = match held {
                Some((_, shard)) => {
                    shard.state = AssignmentState::Transfer { holder: most.clone(), next: least.clone() };
                    true
                }
                None => match self
                    .shards
                    .values_mut()
                    .rev()
                    .find(|shard| matches!(&shard.state, AssignmentState::Transfer { next, .. } if *next == most))
                {
                    Some(shard) => {
                        let holder = shard.state.holder().expect("transfer has a holder").to_string();
                        shard.state = if holder == least {
                            AssignmentState::Allocated { holder }
                        } else {
                            AssignmentState::Transfer { holder, next: least.clone() }
                        };
                        true
                    }
                    None => false,
                },
            };
            if !redirected {
                return;
            }
            *load.get_mut(&most).expect("most comes from load") -= 1;
            *load.get_mut(&least).expect("least comes from load") += 1;
        }
    }

    /// Stores a checkpoint. Without `force`, the consumer must be live and
    /// currently hold the shard (`ConsumerNotExist`/`ConsumerNotMatch`).
    pub fn update_checkpoint(
        &mut self,
        commit: &CheckpointCommit<'_>,
        cursor_value: i64,
        facts: &[ShardFacts],
        now: Instant,
    ) -> Result<(), SlsError> {
        let CheckpointCommit { shard: shard_id, cursor, consumer, force } = *commit;
        self.sync_shards(facts);
        self.expire_consumers(now);
        let group = self.name.clone();
        if !force && !self.consumers.contains_key(consumer) {
            return Err(SlsError::ConsumerNotExist { group, consumer: consumer.to_string() });
        }
        let Some(shard) = self.shards.get_mut(&shard_id) else {
            return Err(SlsError::ShardNotExist { logstore: String::new(), shard: shard_id });
        };
        if !force && shard.state.holder() != Some(consumer) {
            return Err(SlsError::ConsumerNotMatch { group, consumer: consumer.to_string(), shard: shard_id });
        }
        shard.checkpoint = Some(StoredCheckpoint {
            cursor: cursor.to_string(),
            cursor_value,
            update_time_micros: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64,
            consumer: consumer.to_string(),
        });
        shard.checkpoint_updates += 1;
        self.sync_shards(facts);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(count: u32) -> Vec<ShardFacts> {
        (0..count).map(|id| ShardFacts { id, read_only: false, end_cursor: 100, parent: None }).collect()
    }

    fn set(ids: &[u32]) -> BTreeSet<u32> {
        ids.iter().copied().collect()
    }

    #[test]
    fn a_lone_consumer_gets_every_shard() {
        let facts = facts(3);
        let mut group = ConsumerGroup::new("g".into(), Duration::from_secs(60), false, &facts);
        let now = Instant::now();
        assert_eq!(group.heartbeat("a", set(&[]), &facts, now).unwrap(), vec![0, 1, 2]);
    }

    #[test]
    fn a_joining_consumer_gets_shards_only_after_the_holder_releases_them() {
        let facts = facts(4);
        let mut group = ConsumerGroup::new("g".into(), Duration::from_secs(60), false, &facts);
        let now = Instant::now();
        assert_eq!(group.heartbeat("a", set(&[]), &facts, now).unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(group.heartbeat("a", set(&[0, 1, 2, 3]), &facts, now).unwrap(), vec![0, 1, 2, 3]);
        // b joins: two shards go to transfer, nobody answers them yet.
        assert_eq!(group.heartbeat("b", set(&[]), &facts, now).unwrap(), Vec::<u32>::new());
        assert_eq!(group.heartbeat("a", set(&[0, 1, 2, 3]), &facts, now).unwrap(), vec![0, 1]);
        // a still reports 2 and 3 (releasing): b must wait.
        assert_eq!(group.heartbeat("b", set(&[]), &facts, now).unwrap(), Vec::<u32>::new());
        // a stops listing them: they pass to b.
        assert_eq!(group.heartbeat("a", set(&[0, 1]), &facts, now).unwrap(), vec![0, 1]);
        assert_eq!(group.heartbeat("b", set(&[]), &facts, now).unwrap(), vec![2, 3]);
    }

    #[test]
    fn a_silent_consumer_times_out_and_its_shards_move() {
        let facts = facts(2);
        let mut group = ConsumerGroup::new("g".into(), Duration::from_secs(10), false, &facts);
        let start = Instant::now();
        group.heartbeat("a", set(&[]), &facts, start).unwrap();
        assert_eq!(group.heartbeat("b", set(&[]), &facts, start).unwrap(), Vec::<u32>::new());
        assert_eq!(group.heartbeat("a", set(&[0, 1]), &facts, start).unwrap(), vec![0]);
        assert_eq!(group.heartbeat("a", set(&[0]), &facts, start).unwrap(), vec![0]);
        assert_eq!(group.heartbeat("b", set(&[]), &facts, start).unwrap(), vec![1]);
        assert_eq!(group.heartbeat("b", set(&[1]), &facts, start + Duration::from_secs(6)).unwrap(), vec![1]);
        let later = start + Duration::from_secs(11);
        assert_eq!(group.heartbeat("b", set(&[1]), &facts, later).unwrap(), vec![0, 1]);
        let error = group.heartbeat("a", set(&[0]), &facts, later).unwrap_err();
        assert_eq!(error.code(), "NotExistConsumerWithBody");
        assert_eq!(group.heartbeat("a", set(&[]), &facts, later).unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn checkpoints_without_force_need_the_holder() {
        let facts = facts(2);
        let mut group = ConsumerGroup::new("g".into(), Duration::from_secs(60), false, &facts);
        let now = Instant::now();
        group.heartbeat("a", set(&[]), &facts, now).unwrap();
        group.heartbeat("b", set(&[]), &facts, now).unwrap();
        let not_held = group
            .update_checkpoint(
                &CheckpointCommit { shard: 0, cursor: "x", consumer: "nobody", force: false },
                1,
                &facts,
                now,
            )
            .unwrap_err();
        assert_eq!(not_held.code(), "ConsumerNotExist");
        group
            .update_checkpoint(&CheckpointCommit { shard: 0, cursor: "x", consumer: "a", force: false }, 1, &facts, now)
            .unwrap();
        group
            .update_checkpoint(&CheckpointCommit { shard: 0, cursor: "y", consumer: "", force: true }, 2, &facts, now)
            .unwrap();
        assert_eq!(group.shards[&0].checkpoint.as_ref().unwrap().cursor, "y");
    }

    #[test]
    fn a_read_only_shard_checkpointed_at_its_end_is_over_and_never_assigned() {
        let mut facts = facts(1);
        facts[0].read_only = true;
        facts.push(ShardFacts { id: 1, read_only: false, end_cursor: 0, parent: Some(0) });
        facts.push(ShardFacts { id: 2, read_only: false, end_cursor: 0, parent: Some(0) });
        let mut group = ConsumerGroup::new("g".into(), Duration::from_secs(60), true, &facts);
        let now = Instant::now();
        assert_eq!(
            group.heartbeat("a", set(&[]), &facts, now).unwrap(),
            vec![0],
            "ordered: children wait for the parent"
        );
        group
            .update_checkpoint(
                &CheckpointCommit { shard: 0, cursor: "end", consumer: "a", force: false },
                100,
                &facts,
                now,
            )
            .unwrap();
        assert_eq!(group.shards[&0].state, AssignmentState::Over);
        assert_eq!(group.heartbeat("a", set(&[0]), &facts, now).unwrap(), vec![1, 2]);
        // Forcing the checkpoint back makes the parent consumable again.
        group
            .update_checkpoint(
                &CheckpointCommit { shard: 0, cursor: "mid", consumer: "", force: true },
                50,
                &facts,
                now,
            )
            .unwrap();
        assert_eq!(group.heartbeat("a", set(&[1, 2]), &facts, now).unwrap(), vec![0, 1, 2]);
    }
}
