//! A protocol-faithful emulator of Alibaba Cloud Log Service (SLS) for the
//! consumer-group read path, so pipe's SLS source and the official SDKs can
//! be tested against it (reference: `/work/shared/reference/sls.md`).
//!
//! What it serves (all under the project named by the `Host` header):
//! ListLogStores, ListShards, GetCursor (`begin`, `end`, unix seconds),
//! GetCursorTime, PullLogs (raw LZ4 block or uncompressed protobuf, with
//! `x-log-cursor`, `x-log-count`, `x-log-bodyrawsize`, `x-log-compresstype`,
//! `x-log-end-of-cursor`, `x-log-read-last-cursor`, `x-log-cursor-time`),
//! SplitShard, and the consumer-group APIs (create, list, update, delete,
//! heartbeat with the transfer handshake, UpdateCheckPoint, GetCheckPoint).
//! v1 signatures are verified when credentials are configured (see
//! `signature` for the policy). SLS faults (`faults`) are applied after
//! authentication; the generic `http::FaultPlan` of the server applies
//! before everything.
//!
//! Usage from a test:
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use testkit::sls::{DemoData, SlsEmulator};
//! let emulator = SlsEmulator::builder()
//!     .credentials("test-id", "test-secret")
//!     .logstore("demo-project", "app-logs", 2)
//!     .demo_data("demo-project", "app-logs", DemoData::new(7, 10, 5))
//!     .build()
//!     .await?;
//! let control = emulator.control();
//! println!("endpoint {}", emulator.endpoint());
//! # let _ = control.stats();
//! # Ok(()) }
//! ```
//!
//! Control endpoints (no signature needed; JSON in and out; failures answer
//! `{"error": "..."}` with 400/404):
//! - `GET /_testkit/stats`: `SlsStats` (requests, errors by code, pulls in
//!   total and per shard, heartbeats, checkpoint updates, consumer groups with
//!   consumers, held shards, last heartbeat age, per-shard state and
//!   checkpoint, pull-cache bytes);
//! - `POST /_testkit/faults` with one `FaultSpec` or a list; `GET` lists the
//!   pending ones; `DELETE` clears them;
//! - `POST /_testkit/logstores` `{"project", "logstore", "shards"}`;
//! - `POST /_testkit/append` `{"project", "logstore", "shard", "log_groups":
//!   [{"topic", "source", "tags": [[k, v]], "logs": [{"time", "time_ns"?,
//!   "contents": [[k, v]]}]}]}`;
//! - `POST /_testkit/demo` `{"project", "logstore", "seed",
//!   "log_groups_per_shard", "logs_per_group", "log_time"?}`;
//! - `POST /_testkit/split` `{"project", "logstore", "shard", "split_key"?}`.
//!
//! Throughput: a log group is protobuf-encoded once when appended; an LZ4
//! pull body is compressed once per distinct (shard, start, count) and then
//! served from a byte-bounded cache, which the demo preload fills ahead of
//! time for readers pulling 1000 groups at a time from `begin`.
//!
//! What it never does: persist anything, expire data (TTL), merge shards,
//! accept writes through PutLogs (seed data through the control handle or
//! `/_testkit/append`), verify v4 signatures, or share code with `pipe`.

mod consumer_group;
mod cursor;
mod demo;
mod error;
mod faults;
mod handlers;
mod proto;
mod signature;
mod state;
mod stats;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;

pub use consumer_group::AssignmentState;
pub use cursor::{decode_cursor, encode_cursor};
pub use demo::{demo_log_groups, demo_shard_seed, DemoData, DemoSummary};
pub use error::SlsError;
pub use faults::{FaultEffect, FaultSpec, FaultSpecError, SlsApi, SlsFault};
pub use proto::{
    decode_log_group_list, encode_log_group_entry, lz4_block_compress, lz4_block_decompress, Log, LogContent, LogGroup,
    LogGroupList, LogTag,
};
pub use signature::{authorization, content_md5, format_http_date, parse_http_date, sign, string_to_sign, Credential};
pub use state::{
    CheckpointInfo, ConsumerGroupInfo, ConsumerInfo, CursorPosition, GroupShardInfo, ShardInfo, ShardStatus,
    MAX_CONSUMER_GROUPS_PER_LOGSTORE, MAX_PULL_LOG_GROUPS,
};
pub use stats::{PullTotals, ShardPullStats, SlsStats};

use crate::http::EmulatorServer;
use faults::FaultRules;
use state::{lock, unix_seconds, EmulatorState};
use stats::{load, ServiceCounters};

/// Default byte budget of the compressed pull-response cache.
pub const DEFAULT_PULL_CACHE_BYTES: usize = 512 * 1024 * 1024;

/// Everything the router and the control handle share.
#[derive(Debug)]
pub(crate) struct Shared {
    state: EmulatorState,
    credentials: Vec<Credential>,
    faults: Mutex<FaultRules>,
    counters: ServiceCounters,
    request_id_prefix: u32,
    next_request_id: AtomicU64,
}

impl Shared {
    fn next_request_id(&self) -> String {
        format!("{:08X}{:016X}", self.request_id_prefix, self.next_request_id.fetch_add(1, Ordering::Relaxed))
    }

    fn load_demo_data(&self, project: &str, logstore: &str, demo: &DemoData) -> Result<DemoSummary, SlsError> {
        let log_time = demo.resolved_log_time();
        let mut total = DemoSummary::default();
        for shard in self.state.list_shards(project, logstore)? {
            if shard.status == ShardStatus::Readonly {
                continue;
            }
            let (groups, summary) = demo_log_groups(demo, logstore, shard.shard_id, log_time);
            self.state.append(project, logstore, shard.shard_id, &groups, SystemTime::now())?;
            total.log_groups += summary.log_groups;
            total.logs += summary.logs;
            total.raw_bytes += summary.raw_bytes;
        }
        Ok(total)
    }

    fn stats(&self) -> SlsStats {
        let mut pulls = PullTotals::default();
        let shards = self
            .state
            .pull_counters()
            .into_iter()
            .map(|(project, logstore, shard, counters)| {
                let totals = PullTotals {
                    pulls: load(&counters.pulls),
                    log_groups: load(&counters.log_groups),
                    raw_bytes: load(&counters.raw_bytes),
                    wire_bytes: load(&counters.wire_bytes),
                };
                pulls.pulls += totals.pulls;
                pulls.log_groups += totals.log_groups;
                pulls.raw_bytes += totals.raw_bytes;
                pulls.wire_bytes += totals.wire_bytes;
                ShardPullStats { project, logstore, shard, totals }
            })
            .collect();
        SlsStats {
            requests: load(&self.counters.requests),
            errors: lock(&self.counters.errors).clone(),
            pulls,
            shards,
            heartbeats: load(&self.counters.heartbeats),
            checkpoint_updates: load(&self.counters.checkpoint_updates),
            consumer_groups: self.state.consumer_groups(),
            pull_cache_bytes: self.state.pull_cache_bytes(),
        }
    }
}

/// Configures an emulator; see the module doc for an example.
#[derive(Debug, Clone)]
pub struct SlsEmulatorBuilder {
    address: SocketAddr,
    credentials: Vec<Credential>,
    projects: Vec<String>,
    logstores: Vec<(String, String, u32)>,
    demo: Vec<(String, String, DemoData)>,
    pull_cache_bytes: usize,
    warm_pull_cache: bool,
}

/// Why an emulator did not start.
#[derive(Debug, thiserror::Error)]
pub enum SlsStartError {
    #[error("SLS emulator setup: {0}")]
    Setup(#[from] SlsError),
    #[error("SLS emulator: cannot listen: {0}")]
    Bind(#[from] std::io::Error),
}

impl SlsEmulatorBuilder {
    /// Listen address; defaults to 127.0.0.1 with a port the OS picks.
    pub fn address(mut self, address: SocketAddr) -> SlsEmulatorBuilder {
        self.address = address;
        self
    }

    /// Accept this key pair and verify every request's signature strictly.
    /// Without any credentials, signatures are not checked at all.
    pub fn credentials(mut self, access_key_id: &str, access_key_secret: &str) -> SlsEmulatorBuilder {
        self.credentials.push(Credential::new(access_key_id, access_key_secret));
        self
    }

    /// A project with no logstores (`logstore` creates projects implicitly).
    pub fn project(mut self, project: &str) -> SlsEmulatorBuilder {
        self.projects.push(project.to_string());
        self
    }

    /// A logstore with `shards` read-write shards splitting the hash space
    /// evenly; the project is created if needed.
    pub fn logstore(mut self, project: &str, logstore: &str, shards: u32) -> SlsEmulatorBuilder {
        self.logstores.push((project.to_string(), logstore.to_string(), shards));
        self
    }

    /// Preload deterministic demo data into every shard of a logstore.
    pub fn demo_data(mut self, project: &str, logstore: &str, demo: DemoData) -> SlsEmulatorBuilder {
        self.demo.push((project.to_string(), logstore.to_string(), demo));
        self
    }

    /// Byte budget of the compressed pull-response cache (0 disables it).
    pub fn pull_cache_bytes(mut self, bytes: usize) -> SlsEmulatorBuilder {
        self.pull_cache_bytes = bytes;
        self
    }

    /// Whether to compress preloaded demo data ahead of time, in the chunks
    /// of 1000 log groups a reader starting at `begin` asks for (default on).
    pub fn warm_pull_cache(mut self, warm: bool) -> SlsEmulatorBuilder {
        self.warm_pull_cache = warm;
        self
    }

    /// The router and its control handle, without a server.
    pub fn build_router(self) -> Result<(Router, SlsControl), SlsError> {
        let started = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let shared = Arc::new(Shared {
            state: EmulatorState::new(self.pull_cache_bytes),
            credentials: self.credentials,
            faults: Mutex::new(FaultRules::default()),
            counters: ServiceCounters::default(),
            request_id_prefix: started.as_secs() as u32 ^ started.subsec_nanos(),
            next_request_id: AtomicU64::new(1),
        });
        for project in &self.projects {
            shared.state.ensure_project(project);
        }
        for (project, logstore, shards) in &self.logstores {
            shared.state.ensure_project(project);
            shared.state.create_logstore(project, logstore, *shards)?;
        }
        for (project, logstore, demo) in &self.demo {
            shared.load_demo_data(project, logstore, demo)?;
            if self.warm_pull_cache {
                shared.state.warm_pull_cache(project, logstore, MAX_PULL_LOG_GROUPS)?;
            }
        }
        let control = SlsControl { shared: Arc::clone(&shared) };
        Ok((handlers::router(shared), control))
    }

    /// Builds the state, preloads data and starts serving.
    pub async fn build(self) -> Result<SlsEmulator, SlsStartError> {
        let address = self.address;
        let (router, control) = self.build_router()?;
        let server = EmulatorServer::start_on(address, router).await?;
        Ok(SlsEmulator { server, control })
    }
}

/// A running emulator. Dropping it stops the server.
#[derive(Debug)]
pub struct SlsEmulator {
    server: EmulatorServer,
    control: SlsControl,
}

impl SlsEmulator {
    pub fn builder() -> SlsEmulatorBuilder {
        SlsEmulatorBuilder {
            address: "127.0.0.1:0".parse().expect("valid address"),
            credentials: Vec::new(),
            projects: Vec::new(),
            logstores: Vec::new(),
            demo: Vec::new(),
            pull_cache_bytes: DEFAULT_PULL_CACHE_BYTES,
            warm_pull_cache: true,
        }
    }

    /// A cloneable handle to inspect and drive the emulator.
    pub fn control(&self) -> SlsControl {
        self.control.clone()
    }

    /// The HTTP harness: request log and generic `FaultPlan`.
    pub fn server(&self) -> &EmulatorServer {
        &self.server
    }

    pub fn address(&self) -> SocketAddr {
        self.server.address()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// `127.0.0.1:PORT`, the form SDK endpoints take.
    pub fn endpoint(&self) -> String {
        self.server.address().to_string()
    }

    /// Prints `listening on http://ADDR` and serves until the process ends.
    pub async fn serve_forever(self) {
        let SlsEmulator { server, control } = self;
        let _keep_state_alive = control;
        server.serve_forever().await
    }
}

/// A cloneable handle to the emulator's state, for tests. Every method is
/// synchronous and quick; none blocks on network activity.
#[derive(Debug, Clone)]
pub struct SlsControl {
    shared: Arc<Shared>,
}

impl SlsControl {
    pub fn create_project(&self, project: &str) -> Result<(), SlsError> {
        self.shared.state.create_project(project)
    }

    /// Creates a logstore (and its project when missing).
    pub fn create_logstore(&self, project: &str, logstore: &str, shards: u32) -> Result<(), SlsError> {
        self.shared.state.ensure_project(project);
        self.shared.state.create_logstore(project, logstore, shards)
    }

    /// Appends log groups received now; answers the shard's group count.
    pub fn append_log_groups(
        &self,
        project: &str,
        logstore: &str,
        shard: u32,
        groups: &[LogGroup],
    ) -> Result<usize, SlsError> {
        self.shared.state.append(project, logstore, shard, groups, SystemTime::now())
    }

    /// Appends log groups with a given server receive time, for GetCursor by
    /// time. Receive times never go backwards within a shard: an earlier time
    /// than the last group's is raised to it.
    pub fn append_log_groups_received_at(
        &self,
        project: &str,
        logstore: &str,
        shard: u32,
        groups: &[LogGroup],
        receive_time: SystemTime,
    ) -> Result<usize, SlsError> {
        self.shared.state.append(project, logstore, shard, groups, receive_time)
    }

    /// Appends deterministic demo data to every read-write shard.
    pub fn load_demo_data(&self, project: &str, logstore: &str, demo: &DemoData) -> Result<DemoSummary, SlsError> {
        self.shared.load_demo_data(project, logstore, demo)
    }

    /// Compresses a logstore's data ahead of time in chunks of 1000 groups.
    pub fn warm_pull_cache(&self, project: &str, logstore: &str) -> Result<(), SlsError> {
        self.shared.state.warm_pull_cache(project, logstore, MAX_PULL_LOG_GROUPS)
    }

    /// Splits a read-write shard (at its hash midpoint when `split_key` is
    /// `None`); answers the now read-only parent and the two new children.
    pub fn split_shard(
        &self,
        project: &str,
        logstore: &str,
        shard: u32,
        split_key: Option<u128>,
    ) -> Result<Vec<ShardInfo>, SlsError> {
        self.shared.state.split(project, logstore, shard, split_key)
    }

    pub fn shards(&self, project: &str, logstore: &str) -> Result<Vec<ShardInfo>, SlsError> {
        self.shared.state.list_shards(project, logstore)
    }

    pub fn log_group_count(&self, project: &str, logstore: &str, shard: u32) -> Result<usize, SlsError> {
        self.shared.state.log_group_count(project, logstore, shard)
    }

    /// The cursor GetCursor would answer.
    pub fn cursor(
        &self,
        project: &str,
        logstore: &str,
        shard: u32,
        position: CursorPosition,
    ) -> Result<String, SlsError> {
        self.shared.state.cursor(project, logstore, shard, position)
    }

    /// A group's checkpoint for a shard; `None` when never committed.
    pub fn checkpoint(
        &self,
        project: &str,
        logstore: &str,
        group: &str,
        shard: u32,
    ) -> Result<Option<String>, SlsError> {
        let checkpoints = self.shared.state.checkpoints(project, logstore, group, Some(shard))?;
        let entry = checkpoints
            .into_iter()
            .next()
            .ok_or_else(|| SlsError::ShardNotExist { logstore: logstore.to_string(), shard })?;
        Ok(Some(entry.checkpoint).filter(|checkpoint| !checkpoint.is_empty()))
    }

    /// Every shard's checkpoint, as GetCheckPoint answers it.
    pub fn checkpoints(&self, project: &str, logstore: &str, group: &str) -> Result<Vec<CheckpointInfo>, SlsError> {
        self.shared.state.checkpoints(project, logstore, group, None)
    }

    /// A consumer group's consumers and per-shard states, after expiring
    /// consumers that timed out.
    pub fn consumer_group(&self, project: &str, logstore: &str, group: &str) -> Result<ConsumerGroupInfo, SlsError> {
        self.shared.state.list_consumer_groups(project, logstore)?;
        self.shared
            .state
            .consumer_groups()
            .into_iter()
            .find(|info| info.project == project && info.logstore == logstore && info.name == group)
            .ok_or_else(|| SlsError::ConsumerGroupNotExist { logstore: logstore.to_string(), group: group.to_string() })
    }

    /// The live consumers of a group.
    pub fn consumers(&self, project: &str, logstore: &str, group: &str) -> Result<Vec<ConsumerInfo>, SlsError> {
        Ok(self.consumer_group(project, logstore, group)?.consumers)
    }

    pub fn stats(&self) -> SlsStats {
        self.shared.stats()
    }

    /// Adds an SLS fault after the ones already pending.
    pub fn inject_fault(&self, fault: SlsFault) {
        lock(&self.shared.faults).add(fault);
    }

    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Faults still to apply, with their remaining counts.
    pub fn pending_faults(&self) -> Vec<SlsFault> {
        lock(&self.shared.faults).pending()
    }

    /// Unix seconds now, as the emulator stamps receive times.
    pub fn now_unix_seconds(&self) -> u32 {
        unix_seconds(SystemTime::now())
    }
}
