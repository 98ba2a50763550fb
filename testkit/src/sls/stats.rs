//! What `GET /_testkit/stats` and `SlsControl::stats` report: request and
//! error counts, pulls in total and per shard, heartbeats, checkpoint
//! updates, and every consumer group with its consumers (held shards, last
//! heartbeat age) and per-shard state and checkpoint.
//!
//! Counters only grow; they are read without stopping the emulator, so
//! numbers from different counters may be a few requests apart.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::state::ConsumerGroupInfo;

/// Service-wide counters.
#[derive(Debug, Default)]
pub(crate) struct ServiceCounters {
    pub requests: AtomicU64,
    pub heartbeats: AtomicU64,
    pub checkpoint_updates: AtomicU64,
    /// Error answers by `errorCode`.
    pub errors: Mutex<BTreeMap<String, u64>>,
}

/// Pull totals over all shards, or for one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullTotals {
    /// Successful PullLogs answers, empty ones included.
    pub pulls: u64,
    pub log_groups: u64,
    /// Uncompressed protobuf bytes (`x-log-bodyrawsize`).
    pub raw_bytes: u64,
    /// Body bytes as sent.
    pub wire_bytes: u64,
}

/// Pull totals of one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPullStats {
    pub project: String,
    pub logstore: String,
    pub shard: u32,
    #[serde(flatten)]
    pub totals: PullTotals,
}

/// A snapshot of everything the emulator counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlsStats {
    /// SLS API requests (control endpoints excluded).
    pub requests: u64,
    /// Error answers by `errorCode`, injected faults included.
    pub errors: BTreeMap<String, u64>,
    pub pulls: PullTotals,
    pub shards: Vec<ShardPullStats>,
    pub heartbeats: u64,
    pub checkpoint_updates: u64,
    pub consumer_groups: Vec<ConsumerGroupInfo>,
    /// Bytes of compressed pull responses held in the cache.
    pub pull_cache_bytes: usize,
}

impl SlsStats {
    /// Pull totals of one shard (zero when it was never pulled).
    pub fn shard(&self, project: &str, logstore: &str, shard: u32) -> PullTotals {
        self.shards
            .iter()
            .find(|stats| stats.project == project && stats.logstore == logstore && stats.shard == shard)
            .map(|stats| stats.totals)
            .unwrap_or_default()
    }

    /// A consumer group's snapshot.
    pub fn consumer_group(&self, project: &str, logstore: &str, name: &str) -> Option<&ConsumerGroupInfo> {
        self.consumer_groups
            .iter()
            .find(|group| group.project == project && group.logstore == logstore && group.name == name)
    }

    /// Error answers with `code`.
    pub fn errors_with_code(&self, code: &str) -> u64 {
        self.errors.get(code).copied().unwrap_or(0)
    }
}

pub(crate) fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}
