//! Shared by the benches: one SLS PullLogs body of demo logs, built with the
//! emulator's encoder (which shares no code with the source), raw and as
//! the LZ4 block the service sends.
// Each bench reads the parts it needs.
#![allow(dead_code)]

use bytes::Bytes;
use testkit::sls::{demo_log_groups, encode_log_group_entry, lz4_block_compress, DemoData};

pub struct PullBody {
    /// The protobuf `LogGroupList` entries, uncompressed.
    pub raw: Bytes,
    pub compressed: Bytes,
    pub log_groups: usize,
    /// The logs' key and value text, as SLS counts it.
    pub raw_log_bytes: u64,
}

/// `log_groups` groups of `logs_per_group` demo logs (seed 7).
pub fn demo_pull(log_groups: usize, logs_per_group: usize) -> PullBody {
    let demo = DemoData::new(7, log_groups, logs_per_group);
    let (groups, summary) = demo_log_groups(&demo, "bench-logs", 0, 1_700_000_000);
    let mut raw = Vec::new();
    for group in &groups {
        raw.extend_from_slice(&encode_log_group_entry(group));
    }
    let compressed = lz4_block_compress(&raw);
    PullBody {
        raw: Bytes::from(raw),
        compressed: Bytes::from(compressed),
        log_groups,
        raw_log_bytes: summary.raw_bytes as u64,
    }
}
