//! The emulator's data: projects, logstores, shards holding pre-encoded log
//! groups, consumer groups, the pull-response cache, and pull counters.
//!
//! Guarantees: shards are append-only (nothing expires, so `begin` is always
//! index 0); a log group is encoded once, when appended, and every pull body
//! is the concatenation of stored entries, compressed once per distinct
//! (shard, start, count) and then served from the cache until its byte budget
//! is spent; receive times never decrease within a shard, so GetCursor by time
//! is a binary search. The state lock is held only to look things up and to
//! mutate, never while compressing. Never does IO.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};

use super::consumer_group::{AssignmentState, CheckpointCommit, ConsumerGroup, ShardFacts};
use super::cursor::{decode_cursor, encode_cursor};
use super::error::SlsError;
use super::proto::{encode_log_group_entry, lz4_block_compress, LogGroup};

/// The service cap on log groups per PullLogs request (reference §6).
pub const MAX_PULL_LOG_GROUPS: u32 = 1000;

/// At most this many consumer groups per logstore (reference §6).
pub const MAX_CONSUMER_GROUPS_PER_LOGSTORE: usize = 30;

/// Cursor bases of different shards are this far apart, so their ranges do
/// not overlap for any realistic amount of data.
const CURSOR_BASE_SPACING: i64 = 1_000_000_000_000;

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these structures half
    // updated in a way later requests would trip over, so keep serving.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn unix_seconds(time: SystemTime) -> u32 {
    time.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as u32
}

/// Whether a shard accepts writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardStatus {
    Readwrite,
    Readonly,
}

/// A shard as ListShards and the control handle describe it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardInfo {
    #[serde(rename = "shardID")]
    pub shard_id: u32,
    pub status: ShardStatus,
    #[serde(rename = "inclusiveBeginKey")]
    pub inclusive_begin_key: String,
    #[serde(rename = "exclusiveEndKey")]
    pub exclusive_end_key: String,
    #[serde(rename = "createTime")]
    pub create_time: u32,
}

#[derive(Debug)]
struct StoredLogGroup {
    entry: Bytes,
    receive_time: u32,
}

/// Pull counters of one shard; shared so the pull path updates them without
/// the state lock.
#[derive(Debug, Default)]
pub(crate) struct ShardPullCounters {
    pub pulls: AtomicU64,
    pub log_groups: AtomicU64,
    pub raw_bytes: AtomicU64,
    pub wire_bytes: AtomicU64,
}

#[derive(Debug, Clone)]
struct CachedPull {
    body: Bytes,
    raw_size: usize,
}

#[derive(Debug)]
pub(crate) struct Shard {
    id: u32,
    status: ShardStatus,
    begin_key: u128,
    /// `None` stands for the top of the hash space, rendered as 32 `f`s.
    end_key: Option<u128>,
    create_time: u32,
    parent: Option<u32>,
    cursor_base: i64,
    groups: Vec<StoredLogGroup>,
    raw_bytes: u64,
    counters: Arc<ShardPullCounters>,
    lz4_cache: HashMap<(usize, usize), CachedPull>,
}

impl Shard {
    fn new(id: u32, begin_key: u128, end_key: Option<u128>, parent: Option<u32>) -> Shard {
        let now = SystemTime::now();
        let nanos = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as i64;
        Shard {
            id,
            status: ShardStatus::Readwrite,
            begin_key,
            end_key,
            create_time: unix_seconds(now),
            parent,
            cursor_base: nanos + id as i64 * CURSOR_BASE_SPACING,
            groups: Vec::new(),
            raw_bytes: 0,
            counters: Arc::default(),
            lz4_cache: HashMap::new(),
        }
    }

    fn info(&self) -> ShardInfo {
        ShardInfo {
            shard_id: self.id,
            status: self.status,
            inclusive_begin_key: format!("{:032x}", self.begin_key),
            exclusive_end_key: match self.end_key {
                Some(key) => format!("{key:032x}"),
                None => "f".repeat(32),
            },
            create_time: self.create_time,
        }
    }

    fn facts(&self) -> ShardFacts {
        ShardFacts {
            id: self.id,
            read_only: self.status == ShardStatus::Readonly,
            end_cursor: self.cursor_base + self.groups.len() as i64,
            parent: self.parent,
        }
    }

    /// Index of a cursor within this shard, or `InvalidCursor` when it is
    /// outside `[begin, end]`.
    fn index_of(&self, cursor: &str, logstore: &str) -> Result<usize, SlsError> {
        let value = decode_cursor(cursor)?;
        let index = value - self.cursor_base;
        if index < 0 || index > self.groups.len() as i64 {
            return Err(SlsError::InvalidCursor {
                message: format!(
                    "cursor {cursor:?} is out of the range of shard {} of logstore {logstore:?} (it holds {} log groups)",
                    self.id,
                    self.groups.len()
                ),
            });
        }
        Ok(index as usize)
    }

    fn append(&mut self, groups: &[LogGroup], receive_time: u32) -> usize {
        let receive_time = self.groups.last().map_or(receive_time, |last| last.receive_time.max(receive_time));
        for group in groups {
            let entry = encode_log_group_entry(group);
            self.raw_bytes += entry.len() as u64;
            self.groups.push(StoredLogGroup { entry, receive_time });
        }
        self.groups.len()
    }
}

#[derive(Debug)]
pub(crate) struct Logstore {
    shards: BTreeMap<u32, Shard>,
    consumer_groups: BTreeMap<String, ConsumerGroup>,
}

impl Logstore {
    fn facts(&self) -> Vec<ShardFacts> {
        self.shards.values().map(Shard::facts).collect()
    }
}

#[derive(Debug, Default)]
pub(crate) struct Project {
    logstores: BTreeMap<String, Logstore>,
}

/// Where GetCursor should point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorPosition {
    /// The oldest log group.
    Begin,
    /// Where the next log group will be written.
    End,
    /// The first log group received at or after these unix seconds.
    ReceivedAt(u32),
}

/// The parameters of one PullLogs request; `count` is already clamped to
/// 1..=1000.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PullRequest<'a> {
    pub cursor: &'a str,
    pub count: u32,
    pub end_cursor: Option<&'a str>,
    pub lz4: bool,
}

/// What a pull found; the body is built outside the state lock.
pub(crate) struct PullPlan {
    /// Log groups this pull returns.
    pub group_count: usize,
    /// Their encoded entries; empty when the compressed body is cached.
    pub entries: Vec<Bytes>,
    pub start_index: usize,
    pub next_cursor: String,
    pub read_last_cursor: Option<i64>,
    pub end_of_cursor: bool,
    pub cursor_time: u32,
    pub cached_lz4: Option<(Bytes, usize)>,
    pub counters: Arc<ShardPullCounters>,
}

/// A finished pull response body.
pub(crate) struct PullBody {
    pub body: Bytes,
    pub raw_size: usize,
    pub compressed: bool,
}

/// A checkpoint as GetCheckPoint returns it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointInfo {
    pub shard: u32,
    /// Empty when the group never checkpointed the shard.
    pub checkpoint: String,
    #[serde(rename = "updateTime")]
    pub update_time: u64,
    pub consumer: String,
}

/// A consumer of a group, for tests and `/_testkit/stats`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsumerInfo {
    pub name: String,
    /// Shards the consumer reads now: allocated to it, or in transfer away
    /// from it but not yet released.
    pub held_shards: Vec<u32>,
    /// Shards listed in its last heartbeat.
    pub reported_shards: Vec<u32>,
    pub last_heartbeat_age_ms: u64,
    pub heartbeats: u64,
}

/// One shard of a consumer group, for tests and `/_testkit/stats`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupShardInfo {
    pub shard: u32,
    /// `wait`, `not_allocated`, `allocated`, `transfer` or `over`.
    pub state: String,
    pub holder: Option<String>,
    /// The consumer a `transfer` shard goes to.
    pub transfer_to: Option<String>,
    pub checkpoint: String,
    pub checkpoint_consumer: String,
    pub checkpoint_updates: u64,
}

/// A consumer group, for tests and `/_testkit/stats`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsumerGroupInfo {
    pub project: String,
    pub logstore: String,
    pub name: String,
    pub timeout_seconds: u64,
    pub order: bool,
    pub consumers: Vec<ConsumerInfo>,
    pub shards: Vec<GroupShardInfo>,
}

/// The shared state behind one emulator.
#[derive(Debug)]
pub(crate) struct EmulatorState {
    projects: Mutex<BTreeMap<String, Project>>,
    pull_cache_budget: usize,
    pull_cache_used: AtomicUsize,
}

impl EmulatorState {
    pub fn new(pull_cache_budget: usize) -> EmulatorState {
        EmulatorState { projects: Mutex::new(BTreeMap::new()), pull_cache_budget, pull_cache_used: AtomicUsize::new(0) }
    }

    pub fn create_project(&self, project: &str) -> Result<(), SlsError> {
        let mut projects = lock(&self.projects);
        if projects.contains_key(project) {
            return Err(SlsError::ProjectAlreadyExist { project: project.to_string() });
        }
        projects.insert(project.to_string(), Project::default());
        Ok(())
    }

    pub fn ensure_project(&self, project: &str) {
        lock(&self.projects).entry(project.to_string()).or_default();
    }

    pub fn project_exists(&self, project: &str) -> bool {
        lock(&self.projects).contains_key(project)
    }

    /// Creates a logstore whose `shard_count` shards split the MD5 hash space
    /// evenly, like the service does.
    pub fn create_logstore(&self, project: &str, logstore: &str, shard_count: u32) -> Result<(), SlsError> {
        if shard_count == 0 {
            return Err(SlsError::parameter(format!("logstore {logstore:?}: shard count is 0; give at least 1 shard")));
        }
        let mut projects = lock(&self.projects);
        let project_entry =
            projects.get_mut(project).ok_or_else(|| SlsError::ProjectNotExist { project: project.to_string() })?;
        if project_entry.logstores.contains_key(logstore) {
            return Err(SlsError::LogStoreAlreadyExist {
                project: project.to_string(),
                logstore: logstore.to_string(),
            });
        }
        let step = if shard_count == 1 { 0 } else { u128::MAX / shard_count as u128 + 1 };
        let shards = (0..shard_count)
            .map(|id| {
                let begin = step * id as u128;
                let end = if id + 1 == shard_count { None } else { Some(step * (id as u128 + 1)) };
                (id, Shard::new(id, begin, end, None))
            })
            .collect();
        project_entry.logstores.insert(logstore.to_string(), Logstore { shards, consumer_groups: BTreeMap::new() });
        Ok(())
    }

    fn with_logstore<T>(
        &self,
        project: &str,
        logstore: &str,
        action: impl FnOnce(&mut Logstore) -> Result<T, SlsError>,
    ) -> Result<T, SlsError> {
        let mut projects = lock(&self.projects);
        let project_entry =
            projects.get_mut(project).ok_or_else(|| SlsError::ProjectNotExist { project: project.to_string() })?;
        let logstore_entry = project_entry.logstores.get_mut(logstore).ok_or_else(|| SlsError::LogStoreNotExist {
            project: project.to_string(),
            logstore: logstore.to_string(),
        })?;
        action(logstore_entry)
    }

    fn shard_mut<'a>(store: &'a mut Logstore, logstore: &str, shard: u32) -> Result<&'a mut Shard, SlsError> {
        store.shards.get_mut(&shard).ok_or_else(|| SlsError::ShardNotExist { logstore: logstore.to_string(), shard })
    }

    pub fn list_logstores(&self, project: &str) -> Result<Vec<String>, SlsError> {
        let projects = lock(&self.projects);
        let project_entry =
            projects.get(project).ok_or_else(|| SlsError::ProjectNotExist { project: project.to_string() })?;
        Ok(project_entry.logstores.keys().cloned().collect())
    }

    pub fn list_shards(&self, project: &str, logstore: &str) -> Result<Vec<ShardInfo>, SlsError> {
        self.with_logstore(project, logstore, |store| Ok(store.shards.values().map(Shard::info).collect()))
    }

    /// Appends log groups received at `receive_time` (clamped so receive times
    /// never decrease); answers the shard's log-group count afterwards.
    pub fn append(
        &self,
        project: &str,
        logstore: &str,
        shard: u32,
        groups: &[LogGroup],
        receive_time: SystemTime,
    ) -> Result<usize, SlsError> {
        self.with_logstore(project, logstore, |store| {
            let shard_entry = Self::shard_mut(store, logstore, shard)?;
            if shard_entry.status == ShardStatus::Readonly {
                return Err(SlsError::ShardReadOnly { logstore: logstore.to_string(), shard });
            }
            Ok(shard_entry.append(groups, unix_seconds(receive_time)))
        })
    }

    /// Splits a read-write shard at `split_key` (its hash-range midpoint when
    /// `None`): the parent becomes read-only, two new read-write children take
    /// the next free ids. Answers the parent and both children.
    pub fn split(
        &self,
        project: &str,
        logstore: &str,
        shard: u32,
        split_key: Option<u128>,
    ) -> Result<Vec<ShardInfo>, SlsError> {
        self.with_logstore(project, logstore, |store| {
            let next_id = store.shards.keys().next_back().map_or(0, |id| id + 1);
            let parent = Self::shard_mut(store, logstore, shard)?;
            if parent.status == ShardStatus::Readonly {
                return Err(SlsError::parameter(format!(
                    "shard {shard} of logstore {logstore:?} is read-only and cannot be split again"
                )));
            }
            let upper = parent.end_key.unwrap_or(u128::MAX);
            let key = split_key.unwrap_or(parent.begin_key + (upper - parent.begin_key) / 2);
            if key <= parent.begin_key || key >= upper {
                return Err(SlsError::parameter(format!(
                    "split key {key:032x} is outside the hash range of shard {shard} ({:032x}..{upper:032x})",
                    parent.begin_key
                )));
            }
            parent.status = ShardStatus::Readonly;
            let (begin, end) = (parent.begin_key, parent.end_key);
            let parent_info = parent.info();
            let low = Shard::new(next_id, begin, Some(key), Some(shard));
            let high = Shard::new(next_id + 1, key, end, Some(shard));
            let infos = vec![parent_info, low.info(), high.info()];
            store.shards.insert(low.id, low);
            store.shards.insert(high.id, high);
            let facts = store.facts();
            for group in store.consumer_groups.values_mut() {
                group.sync_shards(&facts);
            }
            Ok(infos)
        })
    }

    pub fn cursor(
        &self,
        project: &str,
        logstore: &str,
        shard: u32,
        position: CursorPosition,
    ) -> Result<String, SlsError> {
        self.with_logstore(project, logstore, |store| {
            let shard_entry = Self::shard_mut(store, logstore, shard)?;
            let index = match position {
                CursorPosition::Begin => 0,
                CursorPosition::End => shard_entry.groups.len(),
                CursorPosition::ReceivedAt(seconds) => {
                    shard_entry.groups.partition_point(|group| group.receive_time < seconds)
                }
            };
            Ok(encode_cursor(shard_entry.cursor_base + index as i64))
        })
    }

    /// Server receive time of the group at `cursor`; at the end of a shard,
    /// that of the last group (or the shard's creation when it is empty).
    pub fn cursor_time(&self, project: &str, logstore: &str, shard: u32, cursor: &str) -> Result<u32, SlsError> {
        self.with_logstore(project, logstore, |store| {
            let shard_entry = Self::shard_mut(store, logstore, shard)?;
            let index = shard_entry.index_of(cursor, logstore)?;
            let group = shard_entry.groups.get(index).or(shard_entry.groups.last());
            Ok(group.map_or(shard_entry.create_time, |group| group.receive_time))
        })
    }

    pub fn log_group_count(&self, project: &str, logstore: &str, shard: u32) -> Result<usize, SlsError> {
        self.with_logstore(project, logstore, |store| Ok(Self::shard_mut(store, logstore, shard)?.groups.len()))
    }

    /// Validates a pull and collects what it returns.
    pub fn plan_pull(
        &self,
        project: &str,
        logstore: &str,
        shard: u32,
        request: &PullRequest<'_>,
    ) -> Result<PullPlan, SlsError> {
        let PullRequest { cursor, count, end_cursor, lz4 } = *request;
        self.with_logstore(project, logstore, |store| {
            let shard_entry = Self::shard_mut(store, logstore, shard)?;
            let start = shard_entry.index_of(cursor, logstore)?;
            let stop = match end_cursor {
                Some(end_cursor) => {
                    let end = shard_entry.index_of(end_cursor, logstore)?;
                    if end < start {
                        return Err(SlsError::parameter(format!(
                            "end_cursor {end_cursor:?} is before cursor {cursor:?}"
                        )));
                    }
                    end
                }
                None => shard_entry.groups.len(),
            };
            let next = stop.min(start + count as usize);
            let read = &shard_entry.groups[start..next];
            let cached_lz4 = if lz4 && next > start {
                shard_entry.lz4_cache.get(&(start, next - start)).map(|cached| (cached.body.clone(), cached.raw_size))
            } else {
                None
            };
            let entries =
                if cached_lz4.is_some() { Vec::new() } else { read.iter().map(|group| group.entry.clone()).collect() };
            Ok(PullPlan {
                group_count: next - start,
                entries,
                start_index: start,
                next_cursor: encode_cursor(shard_entry.cursor_base + next as i64),
                read_last_cursor: (next > start).then(|| shard_entry.cursor_base + next as i64 - 1),
                end_of_cursor: next == stop,
                cursor_time: read.last().map_or(0, |group| group.receive_time),
                cached_lz4,
                counters: Arc::clone(&shard_entry.counters),
            })
        })
    }

    /// Builds (or takes from the cache) the body of a planned pull.
    pub fn pull_body(&self, project: &str, logstore: &str, shard: u32, plan: &PullPlan, lz4: bool) -> PullBody {
        let group_count = plan.group_count;
        if let Some((body, raw_size)) = &plan.cached_lz4 {
            return PullBody { body: body.clone(), raw_size: *raw_size, compressed: true };
        }
        if group_count == 0 {
            return PullBody { body: Bytes::new(), raw_size: 0, compressed: false };
        }
        let raw_size: usize = plan.entries.iter().map(Bytes::len).sum();
        let mut raw = BytesMut::with_capacity(raw_size);
        for entry in &plan.entries {
            raw.extend_from_slice(entry);
        }
        if !lz4 {
            return PullBody { body: raw.freeze(), raw_size, compressed: false };
        }
        let pulled = PullBody { body: Bytes::from(lz4_block_compress(&raw)), raw_size, compressed: true };
        self.remember_lz4(project, logstore, shard, plan, &pulled);
        pulled
    }

    fn remember_lz4(&self, project: &str, logstore: &str, shard: u32, plan: &PullPlan, pulled: &PullBody) {
        let (body, raw_size) = (&pulled.body, pulled.raw_size);
        let key = (plan.start_index, plan.group_count);
        let used = self.pull_cache_used.load(Ordering::Relaxed);
        if used + body.len() > self.pull_cache_budget {
            return;
        }
        let inserted = self.with_logstore(project, logstore, |store| {
            let shard_entry = Self::shard_mut(store, logstore, shard)?;
            Ok(shard_entry.lz4_cache.insert(key, CachedPull { body: body.clone(), raw_size }).is_none())
        });
        if inserted == Ok(true) {
            self.pull_cache_used.fetch_add(body.len(), Ordering::Relaxed);
        }
    }

    /// Compresses the responses a reader pulling `count` groups at a time from
    /// the beginning will ask for, so the first read of preloaded data is as
    /// fast as later ones.
    pub fn warm_pull_cache(&self, project: &str, logstore: &str, count: u32) -> Result<(), SlsError> {
        for info in self.list_shards(project, logstore)? {
            let total = self.log_group_count(project, logstore, info.shard_id)?;
            let mut start = 0;
            while start < total {
                if self.pull_cache_used.load(Ordering::Relaxed) >= self.pull_cache_budget {
                    return Ok(());
                }
                let cursor = self.cursor_at(project, logstore, info.shard_id, start)?;
                let plan = self.plan_pull(
                    project,
                    logstore,
                    info.shard_id,
                    &PullRequest { cursor: &cursor, count, end_cursor: None, lz4: true },
                )?;
                let group_count = plan.group_count;
                self.pull_body(project, logstore, info.shard_id, &plan, true);
                start += group_count.max(1);
            }
        }
        Ok(())
    }

    fn cursor_at(&self, project: &str, logstore: &str, shard: u32, index: usize) -> Result<String, SlsError> {
        self.with_logstore(project, logstore, |store| {
            Ok(encode_cursor(Self::shard_mut(store, logstore, shard)?.cursor_base + index as i64))
        })
    }

    pub fn pull_cache_bytes(&self) -> usize {
        self.pull_cache_used.load(Ordering::Relaxed)
    }

    // ---- consumer groups ----

    pub fn create_consumer_group(
        &self,
        project: &str,
        logstore: &str,
        name: &str,
        timeout: Duration,
        order: bool,
    ) -> Result<(), SlsError> {
        self.with_logstore(project, logstore, |store| {
            if store.consumer_groups.contains_key(name) {
                return Err(SlsError::ConsumerGroupAlreadyExist {
                    logstore: logstore.to_string(),
                    group: name.to_string(),
                });
            }
            if store.consumer_groups.len() >= MAX_CONSUMER_GROUPS_PER_LOGSTORE {
                return Err(SlsError::ConsumerGroupQuotaExceed {
                    logstore: logstore.to_string(),
                    limit: MAX_CONSUMER_GROUPS_PER_LOGSTORE,
                });
            }
            let facts = store.facts();
            store
                .consumer_groups
                .insert(name.to_string(), ConsumerGroup::new(name.to_string(), timeout, order, &facts));
            Ok(())
        })
    }

    /// `(name, timeout, order)` of every group of the logstore.
    pub fn list_consumer_groups(
        &self,
        project: &str,
        logstore: &str,
    ) -> Result<Vec<(String, Duration, bool)>, SlsError> {
        self.with_logstore(project, logstore, |store| {
            Ok(store.consumer_groups.values().map(|group| (group.name.clone(), group.timeout, group.order)).collect())
        })
    }

    fn with_group<T>(
        &self,
        project: &str,
        logstore: &str,
        name: &str,
        action: impl FnOnce(&mut ConsumerGroup, &[ShardFacts]) -> Result<T, SlsError>,
    ) -> Result<T, SlsError> {
        self.with_logstore(project, logstore, |store| {
            let facts = store.facts();
            let group = store.consumer_groups.get_mut(name).ok_or_else(|| SlsError::ConsumerGroupNotExist {
                logstore: logstore.to_string(),
                group: name.to_string(),
            })?;
            action(group, &facts)
        })
    }

    pub fn update_consumer_group(
        &self,
        project: &str,
        logstore: &str,
        name: &str,
        timeout: Option<Duration>,
        order: Option<bool>,
    ) -> Result<(), SlsError> {
        self.with_group(project, logstore, name, |group, facts| {
            if let Some(timeout) = timeout {
                group.timeout = timeout;
            }
            if let Some(order) = order {
                group.order = order;
            }
            group.sync_shards(facts);
            Ok(())
        })
    }

    pub fn delete_consumer_group(&self, project: &str, logstore: &str, name: &str) -> Result<(), SlsError> {
        self.with_logstore(project, logstore, |store| {
            store.consumer_groups.remove(name).map(|_| ()).ok_or_else(|| SlsError::ConsumerGroupNotExist {
                logstore: logstore.to_string(),
                group: name.to_string(),
            })
        })
    }

    pub fn heartbeat(
        &self,
        project: &str,
        logstore: &str,
        name: &str,
        consumer: &str,
        reported: BTreeSet<u32>,
    ) -> Result<Vec<u32>, SlsError> {
        self.with_group(project, logstore, name, |group, facts| {
            group.heartbeat(consumer, reported, facts, Instant::now())
        })
    }

    pub fn update_checkpoint(
        &self,
        project: &str,
        logstore: &str,
        name: &str,
        commit: &CheckpointCommit<'_>,
    ) -> Result<(), SlsError> {
        self.with_logstore(project, logstore, |store| {
            let shard_entry = Self::shard_mut(store, logstore, commit.shard)?;
            let index = shard_entry.index_of(commit.cursor, logstore)?;
            let cursor_value = shard_entry.cursor_base + index as i64;
            let facts = store.facts();
            let group = store.consumer_groups.get_mut(name).ok_or_else(|| SlsError::ConsumerGroupNotExist {
                logstore: logstore.to_string(),
                group: name.to_string(),
            })?;
            group.update_checkpoint(commit, cursor_value, &facts, Instant::now())
        })
    }

    /// Checkpoints of every shard (or of `shard` only; empty when it does not
    /// exist), with an empty checkpoint for shards never committed.
    pub fn checkpoints(
        &self,
        project: &str,
        logstore: &str,
        name: &str,
        shard: Option<u32>,
    ) -> Result<Vec<CheckpointInfo>, SlsError> {
        self.with_group(project, logstore, name, |group, facts| {
            group.sync_shards(facts);
            Ok(group
                .shards
                .iter()
                .filter(|(id, _)| shard.is_none_or(|wanted| wanted == **id))
                .map(|(id, entry)| match &entry.checkpoint {
                    Some(checkpoint) => CheckpointInfo {
                        shard: *id,
                        checkpoint: checkpoint.cursor.clone(),
                        update_time: checkpoint.update_time_micros,
                        consumer: checkpoint.consumer.clone(),
                    },
                    None => CheckpointInfo {
                        shard: *id,
                        checkpoint: String::new(),
                        update_time: 0,
                        consumer: String::new(),
                    },
                })
                .collect())
        })
    }

    /// Every consumer group of every logstore, after expiring silent
    /// consumers, so ages and holdings are current.
    pub fn consumer_groups(&self) -> Vec<ConsumerGroupInfo> {
        let now = Instant::now();
        let mut projects = lock(&self.projects);
        let mut infos = Vec::new();
        for (project_name, project) in projects.iter_mut() {
            for (logstore_name, store) in project.logstores.iter_mut() {
                let facts = store.facts();
                for group in store.consumer_groups.values_mut() {
                    group.sync_shards(&facts);
                    group.expire_consumers(now);
                    infos.push(group_info(project_name, logstore_name, group, now));
                }
            }
        }
        infos
    }

    /// Pull counters per (project, logstore, shard).
    pub fn pull_counters(&self) -> Vec<(String, String, u32, Arc<ShardPullCounters>)> {
        let projects = lock(&self.projects);
        let mut counters = Vec::new();
        for (project_name, project) in projects.iter() {
            for (logstore_name, store) in project.logstores.iter() {
                for shard in store.shards.values() {
                    counters.push((project_name.clone(), logstore_name.clone(), shard.id, Arc::clone(&shard.counters)));
                }
            }
        }
        counters
    }
}

fn group_info(project: &str, logstore: &str, group: &ConsumerGroup, now: Instant) -> ConsumerGroupInfo {
    let consumers = group
        .consumers
        .iter()
        .map(|(name, record)| ConsumerInfo {
            name: name.clone(),
            held_shards: group
                .shards
                .iter()
                .filter(|(_, shard)| shard.state.holder() == Some(name))
                .map(|(id, _)| *id)
                .collect(),
            reported_shards: record.reported.iter().copied().collect(),
            last_heartbeat_age_ms: now.saturating_duration_since(record.last_heartbeat).as_millis() as u64,
            heartbeats: record.heartbeats,
        })
        .collect();
    let shards = group
        .shards
        .iter()
        .map(|(id, shard)| GroupShardInfo {
            shard: *id,
            state: shard.state.name().to_string(),
            holder: shard.state.holder().map(str::to_string),
            transfer_to: match &shard.state {
                AssignmentState::Transfer { next, .. } => Some(next.clone()),
                _ => None,
            },
            checkpoint: shard.checkpoint.as_ref().map(|checkpoint| checkpoint.cursor.clone()).unwrap_or_default(),
            checkpoint_consumer: shard
                .checkpoint
                .as_ref()
                .map(|checkpoint| checkpoint.consumer.clone())
                .unwrap_or_default(),
            checkpoint_updates: shard.checkpoint_updates,
        })
        .collect();
    ConsumerGroupInfo {
        project: project.to_string(),
        logstore: logstore.to_string(),
        name: group.name.clone(),
        timeout_seconds: group.timeout.as_secs(),
        order: group.order,
        consumers,
        shards,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sls::proto::{decode_log_group_list, lz4_block_decompress, Log};

    fn state_with_groups(groups: usize) -> EmulatorState {
        let state = EmulatorState::new(1 << 20);
        state.create_project("p").unwrap();
        state.create_logstore("p", "l", 2).unwrap();
        let batch: Vec<LogGroup> = (0..groups)
            .map(|index| LogGroup::new("t", "s", &[], vec![Log::new(1, &[("i", &index.to_string())])]))
            .collect();
        state.append("p", "l", 0, &batch, SystemTime::now()).unwrap();
        state
    }

    #[test]
    fn hash_ranges_cover_the_space_evenly() {
        let state = EmulatorState::new(0);
        state.create_project("p").unwrap();
        state.create_logstore("p", "l", 2).unwrap();
        let shards = state.list_shards("p", "l").unwrap();
        assert_eq!(shards[0].inclusive_begin_key, "00000000000000000000000000000000");
        assert_eq!(shards[0].exclusive_end_key, "80000000000000000000000000000000");
        assert_eq!(shards[1].inclusive_begin_key, "80000000000000000000000000000000");
        assert_eq!(shards[1].exclusive_end_key, "ffffffffffffffffffffffffffffffff");
    }

    #[test]
    fn pulls_advance_one_cursor_position_per_group_and_honour_count_and_end_cursor() {
        let state = state_with_groups(5);
        let begin = state.cursor("p", "l", 0, CursorPosition::Begin).unwrap();
        let end = state.cursor("p", "l", 0, CursorPosition::End).unwrap();
        assert_eq!(decode_cursor(&end).unwrap() - decode_cursor(&begin).unwrap(), 5);

        let plan = state
            .plan_pull("p", "l", 0, &PullRequest { cursor: &begin, count: 2, end_cursor: None, lz4: true })
            .unwrap();
        assert_eq!(plan.entries.len(), 2);
        assert!(!plan.end_of_cursor);
        assert_eq!(decode_cursor(&plan.next_cursor).unwrap(), decode_cursor(&begin).unwrap() + 2);
        let body = state.pull_body("p", "l", 0, &plan, true);
        let raw = lz4_block_decompress(&body.body, body.raw_size).unwrap();
        let list = decode_log_group_list(&raw).unwrap();
        assert_eq!(list.log_groups.len(), 2);
        assert_eq!(list.log_groups[1].logs[0].contents[0].value, "1");

        let stop = encode_cursor(decode_cursor(&begin).unwrap() + 3);
        let plan = state
            .plan_pull(
                "p",
                "l",
                0,
                &PullRequest { cursor: &plan.next_cursor, count: 1000, end_cursor: Some(&stop), lz4: true },
            )
            .unwrap();
        assert_eq!(plan.entries.len(), 1);
        assert_eq!(plan.next_cursor, stop);
        assert!(plan.end_of_cursor);

        let at_end = state
            .plan_pull("p", "l", 0, &PullRequest { cursor: &end, count: 1000, end_cursor: None, lz4: true })
            .unwrap();
        assert!(at_end.entries.is_empty() && at_end.end_of_cursor && at_end.next_cursor == end);
    }

    #[test]
    fn the_second_identical_pull_is_served_from_the_cache() {
        let state = state_with_groups(3);
        let begin = state.cursor("p", "l", 0, CursorPosition::Begin).unwrap();
        let first = state
            .plan_pull("p", "l", 0, &PullRequest { cursor: &begin, count: 1000, end_cursor: None, lz4: true })
            .unwrap();
        assert!(first.cached_lz4.is_none());
        let first_body = state.pull_body("p", "l", 0, &first, true);
        let second = state
            .plan_pull("p", "l", 0, &PullRequest { cursor: &begin, count: 1000, end_cursor: None, lz4: true })
            .unwrap();
        let (cached, raw_size) = second.cached_lz4.clone().expect("cached after the first pull");
        assert_eq!((cached, raw_size), (first_body.body, first_body.raw_size));
        assert_eq!(state.pull_cache_bytes(), first_body_len(&state, &begin));
    }

    fn first_body_len(state: &EmulatorState, begin: &str) -> usize {
        let plan = state
            .plan_pull("p", "l", 0, &PullRequest { cursor: begin, count: 1000, end_cursor: None, lz4: true })
            .unwrap();
        plan.cached_lz4.map_or(0, |(body, _)| body.len())
    }

    #[test]
    fn cursors_out_of_range_or_from_another_shard_are_invalid() {
        let state = state_with_groups(2);
        let other_shard = state.cursor("p", "l", 1, CursorPosition::Begin).unwrap();
        let error = state
            .plan_pull("p", "l", 0, &PullRequest { cursor: &other_shard, count: 10, end_cursor: None, lz4: true })
            .err()
            .unwrap();
        assert_eq!(error.code(), "InvalidCursor");
        let error = state
            .plan_pull("p", "l", 0, &PullRequest { cursor: "garbage", count: 10, end_cursor: None, lz4: true })
            .err()
            .unwrap();
        assert_eq!(error.code(), "ParameterInvalid");
    }

    #[test]
    fn get_cursor_by_time_finds_the_first_group_received_at_or_after() {
        let state = EmulatorState::new(0);
        state.create_project("p").unwrap();
        state.create_logstore("p", "l", 1).unwrap();
        let group = LogGroup::new("t", "s", &[], vec![Log::new(1, &[])]);
        for seconds in [100, 200, 300] {
            state.append("p", "l", 0, std::slice::from_ref(&group), UNIX_EPOCH + Duration::from_secs(seconds)).unwrap();
        }
        let begin = decode_cursor(&state.cursor("p", "l", 0, CursorPosition::Begin).unwrap()).unwrap();
        let at = |seconds| {
            decode_cursor(&state.cursor("p", "l", 0, CursorPosition::ReceivedAt(seconds)).unwrap()).unwrap() - begin
        };
        assert_eq!((at(50), at(100), at(150), at(300), at(301)), (0, 0, 1, 2, 3));
        let cursor_of_second = encode_cursor(begin + 1);
        assert_eq!(state.cursor_time("p", "l", 0, &cursor_of_second).unwrap(), 200);
    }

    #[test]
    fn split_makes_a_read_only_parent_and_two_read_write_children() {
        let state = state_with_groups(1);
        let infos = state.split("p", "l", 0, None).unwrap();
        assert_eq!(
            infos.iter().map(|info| (info.shard_id, info.status)).collect::<Vec<_>>(),
            [(0, ShardStatus::Readonly), (2, ShardStatus::Readwrite), (3, ShardStatus::Readwrite)]
        );
        assert_eq!(infos[1].inclusive_begin_key, "00000000000000000000000000000000");
        assert_eq!(infos[1].exclusive_end_key, "40000000000000000000000000000000");
        assert_eq!(infos[2].inclusive_begin_key, "40000000000000000000000000000000");
        assert_eq!(infos[2].exclusive_end_key, "80000000000000000000000000000000");
        let group = LogGroup::new("t", "s", &[], vec![]);
        assert_eq!(
            state.append("p", "l", 0, std::slice::from_ref(&group), SystemTime::now()).unwrap_err().code(),
            "ShardReadOnly"
        );
        state.append("p", "l", 3, &[group], SystemTime::now()).unwrap();
        assert_eq!(state.split("p", "l", 0, None).unwrap_err().code(), "ParameterInvalid");
    }

    #[test]
    fn at_most_thirty_consumer_groups() {
        let state = state_with_groups(0);
        for index in 0..MAX_CONSUMER_GROUPS_PER_LOGSTORE {
            state.create_consumer_group("p", "l", &format!("g{index}"), Duration::from_secs(10), false).unwrap();
        }
        let error = state.create_consumer_group("p", "l", "one-more", Duration::from_secs(10), false).unwrap_err();
        assert_eq!(error.code(), "ConsumerGroupQuotaExceed");
        let duplicate = state.create_consumer_group("p", "l", "g0", Duration::from_secs(10), false).unwrap_err();
        assert_eq!(duplicate.code(), "ConsumerGroupAlreadyExist");
    }
}
