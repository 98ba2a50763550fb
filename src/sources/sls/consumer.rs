//! One logstore's membership in the consumer group: group creation,
//! heartbeats, and starting and releasing shard pullers.
//!
//! The consumer task owns a `JoinSet` of `shard::ShardWorker` tasks, at most
//! one per shard. Each heartbeat reports the shards it holds (running or
//! still releasing) and receives the shards assigned:
//! - assigned and not held: a worker starts (it resumes from the group
//!   checkpoint);
//! - held and no longer assigned: the worker is told to release (stop
//!   pulling, wait for its batches, commit); the shard is reported until the
//!   worker has finished, which is the service's handover signal, and the
//!   next heartbeat goes out at once so the next owner gets it promptly;
//! - a shard assigned again while its old worker is still releasing starts
//!   after that worker ends, so one shard never has two pullers.
//!
//! ListShards runs with every heartbeat to learn which shards are read-only
//! (split parents), which workers read to their end and then finish.
//!
//! Failure handling: heartbeats that keep failing for longer than the group
//! timeout plus one interval mean the service has dropped this consumer, so
//! every shard is released locally (reference §4.3); `NotExistConsumerWithBody`
//! releases everything and reports `[]`; a missing group is created again.
//! Refused credentials or a skewed clock trip the source-wide `abort`
//! token: workers stop without committing and the error is returned.
//!
//! Shutdown: no new workers start, the output clone is dropped, heartbeats
//! continue (so the service does not hand the shards to someone else while
//! the last acknowledgements arrive), and the task ends once every worker
//! has committed and finished.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::{ErrorClass, RequestError, SlsClient};
use super::shard::{ShardExit, ShardWorker};
use super::{SlsSettings, SlsSourceError};
use crate::observability::ComponentMetrics;
use crate::retry::RetryDelays;
use crate::topology::component::{LagGauges, SourceOutput};

/// First wait after a failed heartbeat or group call; doubled after each
/// further failure, up to the heartbeat interval.
const INITIAL_RETRY_BACKOFF: Duration = Duration::from_millis(500);

/// Metric handles of one logstore, registered once.
pub(super) struct LogstoreMetrics {
    pub component: ComponentMetrics,
    logstore: String,
    pub pulled_log_groups: Counter,
    pub pulled_bytes_compressed: Counter,
    pub pulled_bytes_raw: Counter,
    pub heartbeats_ok: Counter,
    pub heartbeats_error: Counter,
    pub commits_ok: Counter,
    pub commits_refused: Counter,
    pub commits_error: Counter,
    pub assigned_shards: Gauge,
    pub cursor_resets: Counter,
    pub delivery_failed: Counter,
    pub parse_failed: Counter,
}

impl LogstoreMetrics {
    fn new(component: &ComponentMetrics, logstore: &str) -> LogstoreMetrics {
        fn with<'a>(logstore: &'a str, extra: &[(&'static str, &'a str)]) -> Vec<(&'static str, &'a str)> {
            let mut labels = vec![("logstore", logstore)];
            labels.extend_from_slice(extra);
            labels
        }
        LogstoreMetrics {
            pulled_log_groups: component.counter("pipe_sls_pulled_log_groups_total", &with(logstore, &[])),
            pulled_bytes_compressed: component
                .counter("pipe_sls_pulled_bytes_total", &with(logstore, &[("encoding", "compressed")])),
            pulled_bytes_raw: component.counter("pipe_sls_pulled_bytes_total", &with(logstore, &[("encoding", "raw")])),
            heartbeats_ok: component.counter("pipe_sls_heartbeats_total", &with(logstore, &[("result", "ok")])),
            heartbeats_error: component.counter("pipe_sls_heartbeats_total", &with(logstore, &[("result", "error")])),
            commits_ok: component.counter("pipe_sls_checkpoint_commits_total", &with(logstore, &[("result", "ok")])),
            commits_refused: component
                .counter("pipe_sls_checkpoint_commits_total", &with(logstore, &[("result", "refused")])),
            commits_error: component
                .counter("pipe_sls_checkpoint_commits_total", &with(logstore, &[("result", "error")])),
            assigned_shards: component.gauge("pipe_sls_assigned_shards", &with(logstore, &[])),
            cursor_resets: component.counter("pipe_sls_cursor_resets_total", &with(logstore, &[])),
            delivery_failed: component.errors("delivery_failed", "sending"),
            parse_failed: component.errors("parse_failed", "receiving"),
            component: component.clone(),
            logstore: logstore.to_string(),
        }
    }

    /// Counts one retried request under its error code. Codes come from the
    /// service, so the handle is looked up on this (error) path only.
    pub fn retry(&self, code: &str) {
        self.component
            .counter("pipe_sls_retries_total", &[("logstore", &self.logstore), ("error_code", code)])
            .increment(1);
    }
}

/// What every task of one logstore shares.
pub(super) struct LogstoreContext {
    pub client: SlsClient,
    pub settings: Arc<SlsSettings>,
    pub logstore: String,
    pub consumer_name: String,
    pub source_id: Arc<str>,
    pub metrics: LogstoreMetrics,
    pub acks_pending: Gauge,
    pub lag_gauges: LagGauges,
    /// The pipeline is stopping: commit and finish.
    pub shutdown: CancellationToken,
    /// A fatal error: stop everything, commit nothing.
    pub abort: CancellationToken,
}

impl LogstoreContext {
    /// Maps a request error that must stop the source; `None` for the rest.
    pub fn fatal(&self, error: &RequestError) -> Option<SlsSourceError> {
        let detail = error.to_string();
        match error.class() {
            ErrorClass::Credentials => {
                Some(SlsSourceError::Credentials { project: self.settings.project.clone(), detail })
            }
            ErrorClass::Clock => Some(SlsSourceError::Clock { detail }),
            ErrorClass::Configuration => Some(SlsSourceError::Configuration {
                project: self.settings.project.clone(),
                logstore: self.logstore.clone(),
                detail,
            }),
            _ => None,
        }
    }
}

/// The parts `SlsSource` hands each logstore consumer.
pub(super) struct ConsumerParts {
    pub client: SlsClient,
    pub settings: Arc<SlsSettings>,
    pub logstore: String,
    pub consumer_name: String,
    pub source_id: Arc<str>,
    pub metrics: ComponentMetrics,
    pub acks_pending: Gauge,
    pub lag_gauges: LagGauges,
    pub shutdown: CancellationToken,
    pub abort: CancellationToken,
}

/// A worker this consumer owns.
struct HeldShard {
    release: CancellationToken,
    /// Listed in heartbeats. Cleared when the service no longer knows this
    /// consumer, so the next heartbeat reports `[]`.
    reported: bool,
}

pub(super) struct LogstoreConsumer {
    cx: Arc<LogstoreContext>,
}

impl LogstoreConsumer {
    pub fn new(parts: ConsumerParts) -> LogstoreConsumer {
        let metrics = LogstoreMetrics::new(&parts.metrics, &parts.logstore);
        LogstoreConsumer {
            cx: Arc::new(LogstoreContext {
                client: parts.client,
                settings: parts.settings,
                logstore: parts.logstore,
                consumer_name: parts.consumer_name,
                source_id: parts.source_id,
                metrics,
                acks_pending: parts.acks_pending,
                lag_gauges: parts.lag_gauges,
                shutdown: parts.shutdown,
                abort: parts.abort,
            }),
        }
    }

    pub async fn run(self, output: SourceOutput) -> Result<(), SlsSourceError> {
        let cx = self.cx;
        let mut output = Some(output);
        let mut failure: Option<SlsSourceError> = None;
        match ensure_group(&cx).await {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(error) => {
                cx.abort.cancel();
                return Err(error);
            }
        }
        let interval = cx.settings.heartbeat_interval;
        let mut held: BTreeMap<u32, HeldShard> = BTreeMap::new();
        let mut tasks: JoinSet<(u32, Result<ShardExit, SlsSourceError>)> = JoinSet::new();
        let mut task_shards: HashMap<tokio::task::Id, u32> = HashMap::new();
        let mut read_only: HashMap<u32, Arc<AtomicBool>> = HashMap::new();
        let mut next_heartbeat = Instant::now();
        let mut last_success = Instant::now();
        let mut backoff = RetryDelays::new(INITIAL_RETRY_BACKOFF, interval);
        let mut group_missing = false;
        loop {
            let stopping = cx.shutdown.is_cancelled() || cx.abort.is_cancelled();
            if stopping {
                output = None;
                if held.is_empty() {
                    break;
                }
            }
            let aborting = cx.abort.is_cancelled();
            // Every arm is cancel-safe: `join_next` loses no task outcome,
            // token waits and sleeps hold no state.
            tokio::select! {
                biased;
                joined = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let Some(joined) = joined else { continue };
                    let (shard, result) = match joined {
                        Ok((task_id, outcome)) => {
                            task_shards.remove(&task_id);
                            outcome
                        }
                        Err(join_error) => {
                            // A worker panicked: a bug. Its events may be
                            // half sent, so stop without committing.
                            if let Some(shard) = task_shards.remove(&join_error.id()) {
                                held.remove(&shard);
                            }
                            cx.abort.cancel();
                            failure.get_or_insert(SlsSourceError::Task { logstore: cx.logstore.clone(), reason: join_error.to_string() });
                            continue;
                        }
                    };
                    held.remove(&shard);
                    match result {
                        Ok(exit) => {
                            tracing::debug!(logstore = %cx.logstore, shard, ?exit, "shard worker finished");
                            if matches!(exit, ShardExit::Released | ShardExit::Finished | ShardExit::NotOwned) {
                                next_heartbeat = Instant::now();
                            }
                        }
                        Err(error) => {
                            cx.abort.cancel();
                            failure.get_or_insert(error);
                        }
                    }
                    cx.metrics.assigned_shards.set(active_count(&held) as f64);
                }
                _ = cx.abort.cancelled(), if !aborting => {}
                _ = cx.shutdown.cancelled(), if !stopping => {}
                _ = tokio::time::sleep_until(next_heartbeat), if !aborting => {
                    if group_missing {
                        match ensure_group(&cx).await {
                            Ok(true) => group_missing = false,
                            Ok(false) => continue,
                            Err(error) => {
                                cx.abort.cancel();
                                failure.get_or_insert(error);
                                continue;
                            }
                        }
                    }
                    let reported: Vec<u32> = held.iter().filter(|(_, shard)| shard.reported).map(|(id, _)| *id).collect();
                    let answer = tokio::select! {
                        biased;
                        _ = cx.abort.cancelled() => continue,
                        answer = cx.client.heartbeat(&cx.logstore, &cx.settings.consumer_group, &cx.consumer_name, &reported) => answer,
                    };
                    match answer {
                        Ok(assigned) => {
                            cx.metrics.heartbeats_ok.increment(1);
                            last_success = Instant::now();
                            backoff.reset();
                            next_heartbeat = Instant::now() + interval;
                            if !stopping {
                                refresh_read_only(&cx, &mut read_only).await;
                            }
                            for (id, shard) in &held {
                                if !assigned.contains(id) && !shard.release.is_cancelled() {
                                    tracing::info!(logstore = %cx.logstore, shard = id, "shard reassigned by the consumer group; releasing it");
                                    shard.release.cancel();
                                }
                            }
                            if let (false, Some(output)) = (stopping, output.as_ref()) {
                                for id in assigned {
                                    if held.contains_key(&id) {
                                        continue;
                                    }
                                    let flag = Arc::clone(read_only.entry(id).or_default());
                                    let release = CancellationToken::new();
                                    let worker = ShardWorker::new(Arc::clone(&cx), id, flag, release.clone(), output.clone());
                                    tracing::info!(logstore = %cx.logstore, shard = id, "shard assigned; starting to read it");
                                    let handle = tasks.spawn(async move { (id, worker.run().await) });
                                    task_shards.insert(handle.id(), id);
                                    held.insert(id, HeldShard { release, reported: true });
                                }
                            }
                            cx.metrics.assigned_shards.set(active_count(&held) as f64);
                        }
                        Err(error) => {
                            cx.metrics.heartbeats_error.increment(1);
                            if let Some(fatal) = cx.fatal(&error) {
                                cx.abort.cancel();
                                failure.get_or_insert(fatal);
                                continue;
                            }
                            cx.metrics.retry(error.code());
                            match error.class() {
                                ErrorClass::GroupMissing => {
                                    tracing::warn!(logstore = %cx.logstore, error = %error, "the consumer group is gone; creating it again");
                                    group_missing = true;
                                }
                                ErrorClass::UnknownConsumerWithShards => {
                                    tracing::warn!(logstore = %cx.logstore, error = %error, "the consumer group no longer knows this consumer; releasing every shard");
                                    release_all(&mut held);
                                }
                                _ => tracing::warn!(logstore = %cx.logstore, error = %error, "heartbeat failed; retrying"),
                            }
                            let dropped_after = cx.settings.group_timeout + interval;
                            if last_success.elapsed() > dropped_after && held.values().any(|shard| shard.reported) {
                                tracing::warn!(
                                    logstore = %cx.logstore,
                                    silent_for = ?last_success.elapsed(),
                                    "heartbeats have failed for longer than the group timeout plus one interval; the service has dropped this consumer, releasing every shard"
                                );
                                release_all(&mut held);
                            }
                            next_heartbeat = Instant::now() + backoff.next_delay();
                        }
                    }
                    cx.metrics.assigned_shards.set(active_count(&held) as f64);
                }
            }
        }
        drop(output);
        cx.metrics.assigned_shards.set(0.0);
        match failure {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

fn active_count(held: &BTreeMap<u32, HeldShard>) -> usize {
    held.values().filter(|shard| !shard.release.is_cancelled()).count()
}

fn release_all(held: &mut BTreeMap<u32, HeldShard>) {
    for shard in held.values_mut() {
        shard.release.cancel();
        shard.reported = false;
    }
}

/// Updates the read-only flags the workers watch. A failed ListShards keeps
/// the previous flags; the next heartbeat tries again.
async fn refresh_read_only(cx: &LogstoreContext, flags: &mut HashMap<u32, Arc<AtomicBool>>) {
    match cx.client.list_shards(&cx.logstore).await {
        Ok(shards) => {
            for shard in shards {
                flags.entry(shard.shard_id).or_default().store(shard.read_only(), Ordering::Relaxed);
            }
        }
        Err(error) => {
            cx.metrics.retry(error.code());
            tracing::warn!(logstore = %cx.logstore, error = %error, "ListShards failed; read-only shards are noticed later");
        }
    }
}

/// Creates the group (timeout = twice the heartbeat interval), or updates it
/// when it exists, retrying transient failures. `Ok(false)` when the source
/// stopped before it succeeded.
async fn ensure_group(cx: &LogstoreContext) -> Result<bool, SlsSourceError> {
    let settings = &cx.settings;
    let mut backoff = RetryDelays::new(INITIAL_RETRY_BACKOFF, settings.heartbeat_interval);
    loop {
        let attempt = async {
            match cx
                .client
                .create_consumer_group(&cx.logstore, &settings.consumer_group, settings.group_timeout, settings.ordered)
                .await
            {
                Err(error) if error.class() == ErrorClass::GroupExists => {
                    cx.client
                        .update_consumer_group(
                            &cx.logstore,
                            &settings.consumer_group,
                            settings.group_timeout,
                            settings.ordered,
                        )
                        .await
                }
                other => other,
            }
        };
        let result = tokio::select! {
            biased;
            _ = cx.abort.cancelled() => return Ok(false),
            _ = cx.shutdown.cancelled() => return Ok(false),
            result = attempt => result,
        };
        let error = match result {
            Ok(()) => return Ok(true),
            Err(error) => error,
        };
        if let Some(fatal) = cx.fatal(&error) {
            return Err(fatal);
        }
        cx.metrics.retry(error.code());
        tracing::warn!(logstore = %cx.logstore, error = %error, "creating the consumer group failed; retrying");
        tokio::select! {
            biased;
            _ = cx.abort.cancelled() => return Ok(false),
            _ = cx.shutdown.cancelled() => return Ok(false),
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}
