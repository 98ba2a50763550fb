//! The puller of one shard: resume, pull, decode, send, track
//! acknowledgements, commit, and stop in one of the ways the group needs.
//!
//! One `ShardWorker` task per held shard, pulling strictly in order: the next
//! pull starts only after the previous batch was handed to the output.
//! Positions are cursors; each pull becomes one batch registered with a
//! `PendingBatches` under its next-cursor (the `x-log-cursor` answer), so the
//! committable cursor is the next-cursor of the last pull in the contiguous
//! delivered prefix.
//!
//! Invariants:
//! - Nothing past the committable cursor is ever committed; a checkpoint is
//!   committed at most every `checkpoint_interval`, when it changed, and
//!   always when the worker stops (release, shutdown, end of a read-only
//!   shard). The start position itself is not committed unless the group
//!   had a checkpoint before, so a source whose sink never succeeds leaves
//!   the group's checkpoints untouched.
//! - An errored or rejected batch blocks the prefix; after a backoff the
//!   worker forgets what is in flight and pulls again from the committable
//!   cursor (at-least-once).
//! - Bodies larger than `INLINE_DECODE_BYTES` are decoded and flattened on
//!   tokio's blocking pool, so an async worker never spends more than a
//!   fraction of a millisecond on one. A pull becomes a batch only once it
//!   decoded; an unreadable body is pulled again and never acknowledged.
//! - An abort (fatal error elsewhere) stops at once and commits nothing.
//!
//! Never retries a request by itself in a tight loop: every failure waits a
//! jittered, growing backoff, and every wait also folds in
//! acknowledgements and watches the stop tokens.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::{CursorFrom, ErrorClass, PullResponse, RequestError};
use super::consumer::{LogstoreContext, LogstoreMetrics};
use super::proto::{self, BodyError, FlattenSummary};
use super::SlsSourceError;
use crate::event::{BatchStatus, EventFinalizer, EventMetadata, LogEvent};
use crate::retry::RetryDelays;
use crate::sources::checkpoint::PendingBatches;
use crate::topology::component::{LagGauge, SourceOutput};

/// Bodies up to this raw size are decoded on the async worker (well under a
/// millisecond at the decoder's speed); larger ones on the blocking pool.
const INLINE_DECODE_BYTES: usize = 128 * 1024;
/// Pulls with up to this many events get their finalizers on the async
/// worker (about 10 ns each); larger ones on the blocking pool.
const INLINE_FINALIZER_EVENTS: usize = 10_000;
/// First wait after a failed request or unreadable body; doubled per failure.
const INITIAL_REQUEST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_REQUEST_BACKOFF: Duration = Duration::from_secs(30);
/// First wait before a failed batch is read again; doubled per failure so a
/// sink that is down is not flooded with the same data.
const INITIAL_REWIND_BACKOFF: Duration = Duration::from_secs(1);
const MAX_REWIND_BACKOFF: Duration = Duration::from_secs(30);
/// Attempts at the final commit when a worker stops.
const FINAL_COMMIT_ATTEMPTS: usize = 3;

/// How a worker ended without a fatal error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ShardExit {
    /// The group moved the shard elsewhere; committed and let go.
    Released,
    /// A read-only shard read to its end, end cursor committed.
    Finished,
    /// The service says the shard is not ours (or gone); stopped at once.
    NotOwned,
    /// The pipeline stopped; committed.
    ShutDown,
    /// Another task hit a fatal error; nothing committed.
    Aborted,
}

/// Why a worker stops pulling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Abort,
    Shutdown,
    Release,
}

/// Why a call did not produce its value.
enum Halt {
    Stop(Stop),
    NotOwned,
    Fatal(SlsSourceError),
}

/// A position in the shard: a cursor and the receive time of the log group
/// just before it (for the lag gauge), when known.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    cursor: String,
    receive_time: Option<u32>,
}

struct ShardState {
    /// Where the next pull starts.
    cursor: String,
    /// Where this worker started; not committed on its own unless the group
    /// already had a checkpoint.
    initial_cursor: String,
    last_committed: Option<String>,
    pending: PendingBatches<Position>,
    /// The last pull said nothing follows `cursor` (yet).
    at_end: bool,
    /// The cursor at which the last empty pull happened.
    caught_up_at: Option<String>,
    next_commit: Instant,
    rewind_at: Option<Instant>,
    rewind_backoff: RetryDelays,
    request_backoff: RetryDelays,
}

impl ShardState {
    fn new(cursor: String, checkpoint: Option<String>, cx: &LogstoreContext) -> ShardState {
        ShardState {
            initial_cursor: cursor.clone(),
            pending: PendingBatches::new(
                Some(Position { cursor: cursor.clone(), receive_time: None }),
                cx.acks_pending.clone(),
            ),
            cursor,
            last_committed: checkpoint,
            at_end: false,
            caught_up_at: None,
            next_commit: Instant::now() + cx.settings.checkpoint_interval,
            rewind_at: None,
            rewind_backoff: RetryDelays::new(INITIAL_REWIND_BACKOFF, MAX_REWIND_BACKOFF),
            request_backoff: RetryDelays::new(INITIAL_REQUEST_BACKOFF, MAX_REQUEST_BACKOFF),
        }
    }

    fn record(&mut self, status: BatchStatus, metrics: &LogstoreMetrics) {
        if status == BatchStatus::Delivered {
            self.rewind_backoff.reset();
        } else {
            metrics.delivery_failed.increment(1);
        }
    }

    fn fold_ready_statuses(&mut self, metrics: &LogstoreMetrics) {
        while let Some(Some(status)) = self.pending.next_status().now_or_never() {
            self.record(status, metrics);
        }
    }

    fn committable_cursor(&self) -> Option<&str> {
        self.pending.committable().map(|position| position.cursor.as_str())
    }

    /// Whether the committable cursor should be written. The start position
    /// counts only when the group had a checkpoint, or when `end_of_shard`
    /// (a read-only shard must be committed at its end to be released).
    fn needs_commit(&self, end_of_shard: bool) -> bool {
        let Some(cursor) = self.committable_cursor() else { return false };
        if self.last_committed.as_deref() == Some(cursor) {
            return false;
        }
        end_of_shard || self.last_committed.is_some() || cursor != self.initial_cursor
    }

    /// Forgets what is in flight and reads again from the committable cursor.
    fn rewind(&mut self) {
        self.pending.reset();
        if let Some(cursor) = self.committable_cursor() {
            self.cursor = cursor.to_string();
        }
        self.at_end = false;
        self.rewind_at = None;
    }

    /// Starts over at `cursor` (after `InvalidCursor`), forgetting everything.
    fn restart_at(&mut self, cursor: String, cx: &LogstoreContext) {
        self.pending.reset();
        self.pending =
            PendingBatches::new(Some(Position { cursor: cursor.clone(), receive_time: None }), cx.acks_pending.clone());
        self.cursor = cursor;
        self.at_end = false;
        self.caught_up_at = None;
        self.rewind_at = None;
    }
}

enum CommitOutcome {
    Committed,
    Unchanged,
    Failed,
}

pub(super) struct ShardWorker {
    cx: Arc<LogstoreContext>,
    shard: u32,
    partition: Arc<str>,
    read_only: Arc<AtomicBool>,
    release: CancellationToken,
    output: Option<SourceOutput>,
    lag: LagGauge,
    /// A read-only shard was read to its end and its end cursor committed.
    read_only_done: bool,
}

impl ShardWorker {
    pub fn new(
        cx: Arc<LogstoreContext>,
        shard: u32,
        read_only: Arc<AtomicBool>,
        release: CancellationToken,
        output: SourceOutput,
    ) -> ShardWorker {
        let partition: Arc<str> = Arc::from(format!("{}/{shard}", cx.logstore));
        let lag = cx.lag_gauges.gauge(&partition, &[("logstore", &cx.logstore), ("shard", &shard.to_string())]);
        ShardWorker { cx, shard, partition, read_only, release, output: Some(output), lag, read_only_done: false }
    }

    pub async fn run(mut self) -> Result<ShardExit, SlsSourceError> {
        let result = self.read().await;
        self.lag.clear();
        result
    }

    async fn read(&mut self) -> Result<ShardExit, SlsSourceError> {
        let (cursor, checkpoint) = match self.resume_position().await {
            Ok(found) => found,
            Err(halt) => return self.halted_early(halt),
        };
        tracing::info!(
            logstore = %self.cx.logstore,
            shard = self.shard,
            from = if checkpoint.is_some() { "checkpoint" } else { "start_position" },
            "reading shard"
        );
        let mut state = ShardState::new(cursor, checkpoint, &self.cx);
        let stop = loop {
            match self.step(&mut state).await {
                Ok(None) => {}
                Ok(Some(stop)) => break stop,
                Err(Halt::Stop(stop)) => break stop,
                Err(Halt::NotOwned) => return Ok(self.not_owned()),
                Err(Halt::Fatal(error)) => return Err(error),
            }
        };
        self.finish(state, stop).await
    }

    /// One round: fold acknowledgements, rewind or commit when due, then
    /// pull once (or wait). `Ok(Some(stop))` ends the loop.
    async fn step(&mut self, state: &mut ShardState) -> Result<Option<Stop>, Halt> {
        if let Some(stop) = self.stop_requested() {
            return Ok(Some(stop));
        }
        let metrics = &self.cx.metrics;
        state.fold_ready_statuses(metrics);
        let now = Instant::now();
        if let Some((_, status)) = state.pending.blocked_by() {
            let rewind_at = match state.rewind_at {
                Some(at) => at,
                None => {
                    let wait = state.rewind_backoff.next_delay();
                    tracing::warn!(
                        logstore = %self.cx.logstore,
                        shard = self.shard,
                        status = status.as_str(),
                        retry_in = ?wait,
                        "a batch was not delivered; reading again from the last delivered position"
                    );
                    let at = now + wait;
                    state.rewind_at = Some(at);
                    at
                }
            };
            if now >= rewind_at {
                state.rewind();
                return Ok(None);
            }
            return Ok(self.idle_until(state, rewind_at).await);
        }
        if now >= state.next_commit {
            self.commit(state, false).await?;
            state.next_commit = Instant::now() + self.cx.settings.checkpoint_interval;
        }
        self.update_lag(state);

        if state.at_end && self.read_only.load(Ordering::Relaxed) {
            return self.finish_read_only(state).await;
        }

        let pulled = tokio::select! {
            biased;
            stop = self.stopped() => return Ok(Some(stop)),
            pulled = self.cx.client.pull_logs(&self.cx.logstore, self.shard, &state.cursor, self.cx.settings.max_log_groups_per_fetch) => pulled,
        };
        match pulled {
            Ok(response) => self.handle_pull(state, response).await,
            Err(error) => self.handle_pull_error(state, error).await,
        }
    }

    async fn handle_pull(&mut self, state: &mut ShardState, mut response: PullResponse) -> Result<Option<Stop>, Halt> {
        let metrics = &self.cx.metrics;
        metrics.pulled_bytes_compressed.increment(response.body.len() as u64);
        if response.log_group_count == 0 {
            state.request_backoff.reset();
            state.caught_up_at = Some(state.cursor.clone());
            state.at_end = true;
            if response.next_cursor != state.cursor {
                // Nothing returned yet the cursor moved (empty groups): keep
                // the new position, the way the SDKs do.
                state.cursor = response.next_cursor;
                state.at_end = response.end_of_cursor;
            }
            let wake = Instant::now() + self.cx.settings.fetch_interval;
            return Ok(self.idle_until(state, wake).await);
        }
        let raw_size = response.raw_size;
        let group_count = response.log_group_count;
        let metadata = proto::batch_metadata(&self.cx.source_id, &self.partition);
        let (mut events, summary) = match decode(&mut response, metadata).await {
            Ok(decoded) => decoded,
            Err(error) => {
                metrics.parse_failed.increment(1);
                metrics.retry(error.code());
                let wait = state.request_backoff.next_delay();
                tracing::warn!(logstore = %self.cx.logstore, shard = self.shard, error = %error, retry_in = ?wait, "unreadable PullLogs body; pulling it again");
                return Ok(self.idle_until(state, Instant::now() + wait).await);
            }
        };
        state.request_backoff.reset();
        metrics.pulled_bytes_raw.increment(raw_size as u64);
        // Registered only now that the pull decoded: an unreadable body must
        // not become a batch that resolves as delivered.
        let notifier = state
            .pending
            .start_batch(Position { cursor: response.next_cursor.clone(), receive_time: summary.last_receive_time });
        if events.len() <= INLINE_FINALIZER_EVENTS {
            proto::attach_finalizers(&mut events, &notifier);
        } else {
            // If this task dies, the unsettled guard marks the batch errored
            // (a batch whose events were lost must not pass as delivered).
            let guard = EventFinalizer::new(Arc::clone(&notifier));
            let attached = tokio::task::spawn_blocking(move || {
                proto::attach_finalizers(&mut events, &notifier);
                events
            })
            .await;
            let Ok(attached) = attached else {
                drop(guard);
                tracing::error!(logstore = %self.cx.logstore, shard = self.shard, "preparing a pull failed; it will be read again");
                return Ok(None);
            };
            guard.update_status(BatchStatus::Delivered);
            events = attached;
        }
        metrics.pulled_log_groups.increment(summary.log_groups as u64);
        metrics.component.received_events.increment(events.len() as u64);
        metrics.component.received_bytes.increment(summary.raw_bytes as u64);
        if !events.is_empty() {
            if let Some(output) = self.output.as_mut() {
                // Not raced against the stop tokens: a batch built is always
                // handed over, and its acknowledgement is awaited at the end.
                output.send(events).await;
            }
        }
        state.cursor = response.next_cursor;
        state.at_end = response.end_of_cursor;
        state.caught_up_at = None;
        let pause = pause_after_pull(group_count, raw_size, self.cx.settings.max_log_groups_per_fetch);
        if pause.is_zero() {
            return Ok(None);
        }
        Ok(self.idle_until(state, Instant::now() + pause).await)
    }

    async fn handle_pull_error(&mut self, state: &mut ShardState, error: RequestError) -> Result<Option<Stop>, Halt> {
        if let Some(fatal) = self.cx.fatal(&error) {
            return Err(Halt::Fatal(fatal));
        }
        match error.class() {
            ErrorClass::NotOwned => {
                tracing::warn!(logstore = %self.cx.logstore, shard = self.shard, error = %error, "the shard is gone; stopping it");
                Err(Halt::NotOwned)
            }
            ErrorClass::InvalidCursor => {
                self.cx.metrics.cursor_resets.increment(1);
                tracing::warn!(
                    logstore = %self.cx.logstore,
                    shard = self.shard,
                    cursor = %state.cursor,
                    error = %error,
                    "the cursor is no longer valid (older than the logstore's retention?); restarting the shard from its oldest data"
                );
                let cx = Arc::clone(&self.cx);
                let shard = self.shard;
                let begin = self
                    .call_with_retries("GetCursor", || cx.client.get_cursor(&cx.logstore, shard, CursorFrom::Begin))
                    .await?;
                state.restart_at(begin, &self.cx);
                Ok(None)
            }
            _ => {
                self.cx.metrics.retry(error.code());
                let wait = state.request_backoff.next_delay();
                tracing::warn!(logstore = %self.cx.logstore, shard = self.shard, error = %error, retry_in = ?wait, "PullLogs failed; retrying");
                Ok(self.idle_until(state, Instant::now() + wait).await)
            }
        }
    }

    /// At the end of a read-only shard: once everything is acknowledged,
    /// commit the end cursor (so the group can retire the shard) and finish.
    async fn finish_read_only(&mut self, state: &mut ShardState) -> Result<Option<Stop>, Halt> {
        if state.pending.in_flight() > 0 {
            let wake = Instant::now() + self.cx.settings.fetch_interval;
            return Ok(self.idle_until(state, wake).await);
        }
        match self.commit(state, true).await? {
            CommitOutcome::Committed | CommitOutcome::Unchanged => {
                tracing::info!(logstore = %self.cx.logstore, shard = self.shard, "read-only shard read to its end and committed; releasing it");
                self.read_only_done = true;
                Ok(Some(Stop::Release))
            }
            CommitOutcome::Failed => {
                let wait = state.request_backoff.next_delay();
                Ok(self.idle_until(state, Instant::now() + wait).await)
            }
        }
    }

    /// Stops pulling, drops the output, waits for the batches in flight
    /// (bounded when releasing), commits and reports how it ended.
    async fn finish(&mut self, mut state: ShardState, stop: Stop) -> Result<ShardExit, SlsSourceError> {
        self.output = None;
        if stop == Stop::Abort {
            return Ok(ShardExit::Aborted);
        }
        if self.read_only_done {
            return Ok(ShardExit::Finished);
        }
        // Shutdown waits as long as the topology allows (it aborts the
        // source at `shutdown_timeout`); a release must let go in time for
        // the next owner, so it waits at most two heartbeat intervals.
        let deadline = match stop {
            Stop::Release => Some(Instant::now() + self.cx.settings.heartbeat_interval * 2),
            _ => None,
        };
        loop {
            let status = tokio::select! {
                biased;
                _ = self.cx.abort.cancelled() => return Ok(ShardExit::Aborted),
                _ = sleep_until_optional(deadline) => {
                    tracing::warn!(
                        logstore = %self.cx.logstore,
                        shard = self.shard,
                        unacknowledged = state.pending.in_flight(),
                        "released shard: batches still unacknowledged after two heartbeat intervals; the next owner reads them again"
                    );
                    break;
                }
                status = state.pending.next_status() => status,
            };
            match status {
                Some(status) => state.record(status, &self.cx.metrics),
                None => break,
            }
        }
        let mut backoff = RetryDelays::new(INITIAL_REQUEST_BACKOFF, MAX_REQUEST_BACKOFF);
        for attempt in 1..=FINAL_COMMIT_ATTEMPTS {
            match self.commit(&mut state, false).await {
                Ok(CommitOutcome::Committed | CommitOutcome::Unchanged) => break,
                Ok(CommitOutcome::Failed) if attempt < FINAL_COMMIT_ATTEMPTS => {
                    tokio::select! {
                        biased;
                        _ = self.cx.abort.cancelled() => return Ok(ShardExit::Aborted),
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
                Ok(CommitOutcome::Failed) => {
                    tracing::warn!(logstore = %self.cx.logstore, shard = self.shard, "the final checkpoint could not be committed; the next reader repeats the uncommitted part");
                }
                Err(Halt::NotOwned) => return Ok(ShardExit::NotOwned),
                Err(Halt::Stop(_)) => return Ok(ShardExit::Aborted),
                Err(Halt::Fatal(error)) => return Err(error),
            }
        }
        Ok(match stop {
            Stop::Release => ShardExit::Released,
            _ => ShardExit::ShutDown,
        })
    }

    /// Writes the committable cursor if it should be (see `needs_commit`).
    async fn commit(&self, state: &mut ShardState, end_of_shard: bool) -> Result<CommitOutcome, Halt> {
        if !state.needs_commit(end_of_shard) {
            return Ok(CommitOutcome::Unchanged);
        }
        let Some(cursor) = state.committable_cursor().map(str::to_string) else { return Ok(CommitOutcome::Unchanged) };
        let cx = &self.cx;
        let result = tokio::select! {
            biased;
            _ = cx.abort.cancelled() => return Err(Halt::Stop(Stop::Abort)),
            result = cx.client.update_checkpoint(&cx.logstore, &cx.settings.consumer_group, &cx.consumer_name, self.shard, &cursor, false) => result,
        };
        match result {
            Ok(()) => {
                cx.metrics.commits_ok.increment(1);
                state.last_committed = Some(cursor);
                Ok(CommitOutcome::Committed)
            }
            Err(error) => {
                if let Some(fatal) = cx.fatal(&error) {
                    return Err(Halt::Fatal(fatal));
                }
                if error.class() == ErrorClass::NotOwned {
                    cx.metrics.commits_refused.increment(1);
                    tracing::warn!(logstore = %cx.logstore, shard = self.shard, error = %error, "checkpoint refused: the shard belongs to another consumer now; stopping it");
                    return Err(Halt::NotOwned);
                }
                cx.metrics.commits_error.increment(1);
                cx.metrics.retry(error.code());
                tracing::warn!(logstore = %cx.logstore, shard = self.shard, error = %error, "checkpoint commit failed; retrying later");
                Ok(CommitOutcome::Failed)
            }
        }
    }

    /// The group checkpoint, else a cursor for the configured start position.
    async fn resume_position(&self) -> Result<(String, Option<String>), Halt> {
        let cx = Arc::clone(&self.cx);
        let shard = self.shard;
        let group = &cx.settings.consumer_group;
        let checkpoint =
            self.call_with_retries("GetCheckPoint", || cx.client.get_checkpoint(&cx.logstore, group, shard)).await?;
        if let Some(checkpoint) = checkpoint {
            return Ok((checkpoint.clone(), Some(checkpoint)));
        }
        let from = cx.settings.start_position.cursor_from();
        let cursor = self.call_with_retries("GetCursor", || cx.client.get_cursor(&cx.logstore, shard, from)).await?;
        Ok((cursor, None))
    }

    /// Calls until success, backing off on transient errors.
    async fn call_with_retries<T, F, Fut>(&self, api: &'static str, mut call: F) -> Result<T, Halt>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RequestError>>,
    {
        let mut backoff = RetryDelays::new(INITIAL_REQUEST_BACKOFF, MAX_REQUEST_BACKOFF);
        loop {
            let result = tokio::select! {
                biased;
                stop = self.stopped() => return Err(Halt::Stop(stop)),
                result = call() => result,
            };
            let error = match result {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if let Some(fatal) = self.cx.fatal(&error) {
                return Err(Halt::Fatal(fatal));
            }
            if error.class() == ErrorClass::NotOwned {
                return Err(Halt::NotOwned);
            }
            self.cx.metrics.retry(error.code());
            let wait = backoff.next_delay();
            tracing::warn!(logstore = %self.cx.logstore, shard = self.shard, api, error = %error, retry_in = ?wait, "request failed; retrying");
            tokio::select! {
                biased;
                stop = self.stopped() => return Err(Halt::Stop(stop)),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Waits until `deadline`, folding in acknowledgements as they arrive;
    /// returns early with the stop request, if one comes.
    async fn idle_until(&self, state: &mut ShardState, deadline: Instant) -> Option<Stop> {
        loop {
            // Cancel-safe: `next_status` polls a `FuturesUnordered`, the
            // others hold no state.
            tokio::select! {
                biased;
                stop = self.stopped() => return Some(stop),
                Some(status) = state.pending.next_status() => state.record(status, &self.cx.metrics),
                _ = tokio::time::sleep_until(deadline) => return None,
            }
        }
    }

    async fn stopped(&self) -> Stop {
        tokio::select! {
            biased;
            _ = self.cx.abort.cancelled() => Stop::Abort,
            _ = self.cx.shutdown.cancelled() => Stop::Shutdown,
            _ = self.release.cancelled() => Stop::Release,
        }
    }

    fn stop_requested(&self) -> Option<Stop> {
        if self.cx.abort.is_cancelled() {
            Some(Stop::Abort)
        } else if self.cx.shutdown.is_cancelled() {
            Some(Stop::Shutdown)
        } else if self.release.is_cancelled() {
            Some(Stop::Release)
        } else {
            None
        }
    }

    fn halted_early(&mut self, halt: Halt) -> Result<ShardExit, SlsSourceError> {
        self.output = None;
        match halt {
            Halt::Stop(Stop::Abort) => Ok(ShardExit::Aborted),
            Halt::Stop(Stop::Shutdown) => Ok(ShardExit::ShutDown),
            Halt::Stop(Stop::Release) => Ok(ShardExit::Released),
            Halt::NotOwned => Ok(self.not_owned()),
            Halt::Fatal(error) => Err(error),
        }
    }

    fn not_owned(&mut self) -> ShardExit {
        self.output = None;
        ShardExit::NotOwned
    }

    fn update_lag(&self, state: &ShardState) {
        let Some(position) = state.pending.committable() else { return };
        if state.caught_up_at.as_deref() == Some(position.cursor.as_str()) {
            self.lag.set(0.0);
        } else if let Some(received) = position.receive_time {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
            self.lag.set((now - f64::from(received)).max(0.0));
        }
    }
}

async fn sleep_until_optional(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Decompresses, decodes and flattens a pull body, off the async worker
/// when large.
async fn decode(
    response: &mut PullResponse,
    metadata: EventMetadata,
) -> Result<(Vec<LogEvent>, FlattenSummary), BodyError> {
    let body = std::mem::take(&mut response.body);
    let (raw_size, count) = (response.raw_size, response.log_group_count);
    let compression = response.compression.clone();
    let work = move || {
        let mut events = Vec::new();
        let summary = proto::decode_pull(body, &compression, raw_size, count, &metadata, &mut events)?;
        Ok((events, summary))
    };
    if raw_size <= INLINE_DECODE_BYTES {
        return work();
    }
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|join_error| Err(BodyError::Protobuf(format!("the decoder task failed: {join_error}"))))
}

/// The SDKs' pacing while data flows (Python and Go agree): small pulls
/// wait before the next one so a trickle does not cost a request per group.
/// A pull that filled `max_groups` never waits: more data is likely queued.
fn pause_after_pull(groups: usize, raw_bytes: usize, max_groups: u32) -> Duration {
    const MIB: usize = 1024 * 1024;
    if groups >= max_groups as usize {
        Duration::ZERO
    } else if groups < 100 && raw_bytes < MIB {
        Duration::from_millis(500)
    } else if groups < 500 && raw_bytes < 2 * MIB {
        Duration::from_millis(200)
    } else if groups < 1000 && raw_bytes < 4 * MIB {
        Duration::from_millis(50)
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_follows_the_sdk_thresholds_unless_the_pull_was_full() {
        let mib = 1024 * 1024;
        assert_eq!(pause_after_pull(10, 1000, 1000), Duration::from_millis(500));
        assert_eq!(pause_after_pull(10, 3 * mib / 2, 1000), Duration::from_millis(200));
        assert_eq!(pause_after_pull(600, 1000, 1000), Duration::from_millis(50));
        assert_eq!(pause_after_pull(999, 5 * mib, 1000), Duration::ZERO);
        assert_eq!(pause_after_pull(1000, 1000, 1000), Duration::ZERO);
        assert_eq!(pause_after_pull(10, 1000, 10), Duration::ZERO, "a full pull at a small max goes on at once");
    }
}
