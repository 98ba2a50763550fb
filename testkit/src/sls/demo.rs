//! Deterministic demo data for preloading shards, built from
//! `pipe_demo_logs::DemoLogGenerator`.
//!
//! Each shard gets its own generator, seeded from (seed, logstore, shard), so
//! a shard's content does not depend on how many shards or logstores there
//! are, and tests can recompute exactly what a shard holds with
//! `demo_log_groups`. A log group carries a single topic, source and tag set,
//! so a group takes them from its first `DemoLog`; every log keeps its own
//! time, nanoseconds and contents. Use `logs_per_group: 1` when every log's
//! own topic matters.

use std::time::SystemTime;

use pipe_demo_logs::{DemoLog, DemoLogGenerator};

use super::proto::{Log, LogContent, LogGroup, LogTag};
use super::state::unix_seconds;

/// How much demo data to preload into every shard of a logstore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoData {
    pub seed: u64,
    pub log_groups_per_shard: usize,
    pub logs_per_group: usize,
    /// Log time in unix seconds; `None` stamps the logs with the load time.
    /// Fix it when tests compare content across runs.
    pub log_time: Option<u32>,
}

impl DemoData {
    pub fn new(seed: u64, log_groups_per_shard: usize, logs_per_group: usize) -> DemoData {
        DemoData { seed, log_groups_per_shard, logs_per_group, log_time: None }
    }

    pub fn with_log_time(mut self, unix_seconds: u32) -> DemoData {
        self.log_time = Some(unix_seconds);
        self
    }

    pub(crate) fn resolved_log_time(&self) -> u32 {
        self.log_time.unwrap_or_else(|| unix_seconds(SystemTime::now()))
    }
}

/// What a demo preload wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DemoSummary {
    pub log_groups: usize,
    pub logs: usize,
    /// Sum of `DemoLog::raw_size` over the logs written.
    pub raw_bytes: usize,
}

/// The seed of one shard's generator: FNV-1a over the logstore name, mixed
/// with the seed and shard id.
pub fn demo_shard_seed(seed: u64, logstore: &str, shard: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in logstore.bytes() {
        hash ^= byte as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    seed ^ hash ^ (shard as u64).wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The log groups a demo preload writes into one shard, and their raw size.
pub fn demo_log_groups(demo: &DemoData, logstore: &str, shard: u32, log_time: u32) -> (Vec<LogGroup>, DemoSummary) {
    let mut generator = DemoLogGenerator::new(demo_shard_seed(demo.seed, logstore, shard));
    let mut summary = DemoSummary::default();
    let groups = (0..demo.log_groups_per_shard)
        .map(|_| {
            let logs: Vec<DemoLog> = (0..demo.logs_per_group).map(|_| generator.next_log(log_time)).collect();
            summary.log_groups += 1;
            summary.logs += logs.len();
            summary.raw_bytes += logs.iter().map(DemoLog::raw_size).sum::<usize>();
            group_from_demo_logs(&logs)
        })
        .collect();
    (groups, summary)
}

fn group_from_demo_logs(logs: &[DemoLog]) -> LogGroup {
    let header = logs.first();
    LogGroup {
        logs: logs
            .iter()
            .map(|log| Log {
                time: log.time,
                contents: log
                    .contents
                    .iter()
                    .map(|(key, value)| LogContent { key: key.clone(), value: value.clone() })
                    .collect(),
                time_ns: Some(log.time_ns),
            })
            .collect(),
        reserved: None,
        topic: header.map(|log| log.topic.clone()),
        source: header.map(|log| log.source.clone()),
        machine_uuid: None,
        log_tags: header
            .map(|log| log.tags.iter().map(|(key, value)| LogTag { key: key.clone(), value: value.clone() }).collect())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_inputs_give_the_same_groups_and_shards_differ() {
        let demo = DemoData::new(7, 4, 3);
        let (first, summary) = demo_log_groups(&demo, "l", 0, 1_700_000_000);
        let (again, _) = demo_log_groups(&demo, "l", 0, 1_700_000_000);
        let (other_shard, _) = demo_log_groups(&demo, "l", 1, 1_700_000_000);
        assert_eq!(first, again);
        assert_ne!(first, other_shard);
        assert_eq!((summary.log_groups, summary.logs), (4, 12));
        assert!(first.iter().all(|group| group.logs.len() == 3 && group.topic.is_some()));
        assert!(first[0].log_tags.iter().any(|tag| tag.key == "__hostname__"));
    }
}
