//! The running `elasticsearch_poller`: the run loop, window reads with
//! retries, emission with the processed-hits cache, acknowledgements,
//! rewinds and checkpoints.
//!
//! One task. Each run plans its windows (`WindowPlanner`), reads each window
//! completely (all pages, inside a point in time when there is one), then
//! waits for the next run while folding in acknowledgements. A failed
//! attempt (transport error, 429, 5xx, malformed answer, failed shards, an
//! expired point in time) is retried from the start of the window after a
//! backoff: hits the failed attempt already emitted are in `SeenHits`, so
//! the retry emits only what is missing. A window is therefore never
//! skipped; the next window is read only after this one completed.
//!
//! Positions (`WindowMark`): each page's batch is registered with the mark
//! of the last completed window, and a completed window registers an empty
//! batch carrying its own mark, so the committable mark is the end of the
//! last window whose every hit was delivered. When a batch comes back
//! errored the source waits (1 s doubling to 30 s), forgets the hits of the
//! undelivered windows and reads again from the first of them.
//!
//! With `writeback`, the committed end is also written to the writeback
//! index after the file (`IndexCheckpoint`); a failed index write is counted
//! and tried again at the next run, never blocking the file checkpoint. At
//! start-up the newer of the file and the index wins, so a host taking over
//! another host's source resumes where that one stopped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use metrics::{Counter, Histogram};
use reqwest::Method;
use serde_json::{json, Value as JsonValue};
use tokio_util::sync::CancellationToken;

use super::checkpoint;
use super::config::PollerSettings;
use super::query::{PitReference, QueryBuilder, RawHit, SearchPage, Tiebreaker, Window};
use super::windows::{Resume, SeenHits, WindowPlanner};
use crate::elasticsearch::client::{encode_path_segment, RequestBody};
use crate::elasticsearch::server::PitApi;
use crate::elasticsearch::{EsClient, EsError, ServerInfo, WritebackTarget};
use crate::event::{BatchStatus, EventFinalizer};
use crate::observability::{ComponentHealth, ComponentMetrics};
use crate::retry::RetryDelays;
use crate::sources::checkpoint::PendingBatches;
use crate::topology::component::{LagGauge, SourceOutput};
use crate::topology::{ComponentError, ComponentFuture, Source, SourceContext};

const DELIVERY_RETRY_INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const DELIVERY_RETRY_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The error labels the source counts, registered once.
const ERROR_LABELS: &[&str] = &[
    "timeout",
    "connection_failed",
    "malformed_response",
    "too_many_requests",
    "server_error",
    "unauthorized",
    "request_failed",
    "shard_failures",
    "delivery_failed",
    "checkpoint_write_failed",
    "checkpoint_read_failed",
];

pub struct ElasticsearchPoller {
    settings: PollerSettings,
}

impl ElasticsearchPoller {
    pub fn new(settings: PollerSettings) -> ElasticsearchPoller {
        ElasticsearchPoller { settings }
    }
}

impl Source for ElasticsearchPoller {
    fn run(self: Box<Self>, cx: SourceContext) -> ComponentFuture {
        Box::pin(run_loop(self.settings, cx))
    }
}

/// A position: the window sequence number and its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WindowMark {
    seq: u64,
    end: Option<DateTime<Utc>>,
}

struct PollerMetrics {
    hits: Counter,
    duplicate_hits: Counter,
    pages: Counter,
    windows: Counter,
    retries: Counter,
    seen_evictions: Counter,
    query_duration: Histogram,
    errors: Vec<(&'static str, Counter)>,
}

impl PollerMetrics {
    fn register(metrics: &ComponentMetrics) -> PollerMetrics {
        PollerMetrics {
            hits: metrics.counter("pipe_source_es_hits_total", &[]),
            duplicate_hits: metrics.counter("pipe_source_es_duplicate_hits_total", &[]),
            pages: metrics.counter("pipe_source_es_pages_total", &[]),
            windows: metrics.counter("pipe_source_es_windows_total", &[]),
            retries: metrics.counter("pipe_source_es_retries_total", &[]),
            seen_evictions: metrics.counter("pipe_source_es_seen_evictions_total", &[]),
            query_duration: metrics.histogram("pipe_source_es_query_duration_seconds", &[]),
            errors: ERROR_LABELS.iter().map(|label| (*label, metrics.errors(label, "receiving"))).collect(),
        }
    }

    fn error(&self, label: &str) {
        if let Some((_, counter)) = self.errors.iter().find(|(known, _)| *known == label) {
            counter.increment(1);
        }
    }
}

/// Why one attempt at a window stopped.
enum AttemptError {
    Shutdown,
    /// Retry the window after a backoff.
    Retry {
        label: &'static str,
        message: String,
    },
    /// Stop the source.
    Fatal(String),
}

/// The window being read: its bounds, sequence number and index expression.
#[derive(Clone, Copy)]
struct WindowRead<'a> {
    window: &'a Window,
    seq: u64,
    index: &'a str,
}

enum WindowOutcome {
    Complete,
    Shutdown,
}

enum Paging {
    Pit(PitApi),
    Plain,
}

/// The checkpoint copy in the writeback index.
struct IndexCheckpoint {
    client: EsClient,
    writeback_index: String,
    /// The end last written (or read at start-up).
    stored_end: Option<DateTime<Utc>>,
}

struct Poller {
    settings: PollerSettings,
    index_checkpoint: Option<IndexCheckpoint>,
    source_id: Arc<str>,
    client: EsClient,
    builder: QueryBuilder,
    paging: Paging,
    pit_tiebreaker: Option<Tiebreaker>,
    plain_tiebreaker: Option<Tiebreaker>,
    pending: PendingBatches<WindowMark>,
    seen: SeenHits,
    /// Start of every window registered after the committed one, by sequence.
    window_starts: BTreeMap<u64, DateTime<Utc>>,
    last_registered: WindowMark,
    next_seq: u64,
    stored_end: Option<DateTime<Utc>>,
    health: ComponentHealth,
    component_metrics: ComponentMetrics,
    metrics: PollerMetrics,
    lag: LagGauge,
    degraded: bool,
}

async fn run_loop(settings: PollerSettings, cx: SourceContext) -> Result<(), ComponentError> {
    let lag = cx.lag_gauge(settings.index.as_str());
    let SourceContext { id, mut output, shutdown, health, metrics, acks_pending, .. } = cx;
    let client = EsClient::new(&settings.connection).map_err(ComponentError::new)?;
    let checkpoint_path = settings.checkpoint_path.clone();
    let stored_end = tokio::task::spawn_blocking(move || checkpoint::load(&checkpoint_path))
        .await
        .map_err(|error| ComponentError::new(format!("checkpoint task failed: {error}")))?
        .map_err(|error| ComponentError::new(error.to_string()))?;
    let poller_metrics = PollerMetrics::register(&metrics);

    let Some(server) = detect_server(&settings, &client, &shutdown, &health, &poller_metrics).await? else {
        return Ok(());
    };
    let field_tiebreaker = settings.tiebreaker_field.clone().map(Tiebreaker::Field);
    let pit_tiebreaker = field_tiebreaker.clone().or_else(|| {
        if server.has_shard_doc_sort() {
            Some(Tiebreaker::ShardDoc)
        } else {
            server.allows_id_sort().then_some(Tiebreaker::Id)
        }
    });
    let plain_tiebreaker = field_tiebreaker.or_else(|| server.allows_id_sort().then_some(Tiebreaker::Id));
    let paging = match server.pit_api() {
        Some(api) if settings.point_in_time && pit_tiebreaker.is_some() => Paging::Pit(api),
        _ if plain_tiebreaker.is_some() => Paging::Plain,
        _ => {
            return Err(ComponentError::new(format!(
                "{server} cannot sort on _id and point_in_time is off; set \"tiebreaker_field\" to a unique keyword field, or turn point_in_time on"
            )))
        }
    };
    tracing::info!(
        source = %id,
        server = %server,
        paging = match paging { Paging::Pit(_) => "point in time", Paging::Plain => "search_after" },
        "polling Elasticsearch"
    );

    let mut resume_end = stored_end;
    let mut index_checkpoint = None;
    if let Some(target) = &settings.writeback {
        let opened = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            opened = open_index_checkpoint(target, &id) => opened,
        };
        match opened {
            Ok(opened) => {
                if opened.stored_end > resume_end {
                    tracing::info!(source = %id, file = ?stored_end, index = ?opened.stored_end, "the writeback index holds a newer checkpoint than data_dir; resuming from the index");
                    resume_end = opened.stored_end;
                }
                index_checkpoint = Some(opened);
            }
            Err((error, client)) => {
                poller_metrics.error("checkpoint_read_failed");
                if error.is_auth() {
                    tracing::error!(source = %id, %error, "cannot read the checkpoint from the writeback index; resuming from data_dir only");
                } else {
                    tracing::warn!(source = %id, %error, "cannot read the checkpoint from the writeback index; resuming from data_dir only");
                }
                index_checkpoint = client.map(|client| IndexCheckpoint {
                    client,
                    writeback_index: target.index_prefix.clone(),
                    stored_end: None,
                });
            }
        }
    }

    let (mut planner, resume) = WindowPlanner::new(
        settings.buffer_time,
        settings.query_delay,
        settings.old_query_limit,
        resume_end,
        Utc::now(),
    );
    match resume {
        Resume::Fresh => tracing::info!(source = %id, "no checkpoint; starting with the last buffer_time"),
        Resume::FromCheckpoint(from) => tracing::info!(source = %id, from = %from, "resuming from the checkpoint"),
        Resume::Clamped { checkpoint, from } => tracing::warn!(
            source = %id,
            checkpoint = %checkpoint,
            from = %from,
            "the checkpoint is older than old_query_limit; resuming from the limit, documents before it are not read"
        ),
    }
    let initial = WindowMark { seq: 0, end: resume_end };
    let builder = QueryBuilder {
        timestamp_field: settings.timestamp_field.clone(),
        timestamp_format: settings.timestamp_format,
        query: settings.query.clone(),
        page_size: settings.page_size,
        track_total_hits: server.has_track_total_hits(),
    };
    let mut poller = Poller {
        index_checkpoint,
        source_id: Arc::clone(&id),
        client,
        builder,
        paging,
        pit_tiebreaker,
        plain_tiebreaker,
        pending: PendingBatches::new(Some(initial), acks_pending),
        seen: SeenHits::default(),
        window_starts: BTreeMap::new(),
        last_registered: initial,
        next_seq: 1,
        stored_end,
        health,
        component_metrics: metrics,
        metrics: poller_metrics,
        lag,
        degraded: false,
        settings,
    };

    let mut delivery_backoff = RetryDelays::new(DELIVERY_RETRY_INITIAL_BACKOFF, DELIVERY_RETRY_MAX_BACKOFF);
    'runs: while !shutdown.is_cancelled() {
        poller.fold_statuses();
        if poller.pending.blocked_by().is_some() {
            // Cancel-safe: a sleep holds nothing.
            tokio::select! {
                _ = shutdown.cancelled() => break 'runs,
                _ = tokio::time::sleep(delivery_backoff.next_delay()) => {}
            }
            poller.rewind(&mut planner);
        } else {
            delivery_backoff.reset();
        }
        let run_started = tokio::time::Instant::now();
        let now = Utc::now();
        for window in planner.plan(now) {
            match poller.read_window(window, &mut output, &shutdown).await? {
                WindowOutcome::Complete => {}
                WindowOutcome::Shutdown => break 'runs,
            }
            poller.fold_statuses();
            if poller.pending.blocked_by().is_some() {
                break;
            }
        }
        poller.after_run(planner.next_floor(now));
        poller.persist_checkpoint().await;
        let next_run = run_started + poller.settings.run_every;
        loop {
            // Every arm is cancel-safe: `next_status` polls a
            // FuturesUnordered, a sleep and a cancellation hold nothing.
            tokio::select! {
                _ = shutdown.cancelled() => break 'runs,
                _ = tokio::time::sleep_until(next_run) => break,
                Some(status) = poller.pending.next_status(), if poller.pending.in_flight() > 0 => {
                    poller.on_status(status);
                    poller.update_lag();
                }
            }
        }
    }

    // Downstream drains once the output is gone; only then can the last
    // acknowledgements arrive.
    drop(output);
    while let Some(status) = poller.pending.next_status().await {
        poller.on_status(status);
    }
    poller.update_lag();
    if let Err(error) = poller.store_checkpoint().await {
        return Err(ComponentError::new(error));
    }
    Ok(())
}

/// Builds the writeback client and reads the checkpoint document. On a
/// failure, the client (when it could be built) comes back with the error,
/// so the checkpoint is still written there later.
async fn open_index_checkpoint(
    target: &WritebackTarget,
    source_id: &str,
) -> Result<IndexCheckpoint, (crate::elasticsearch::StartupReadError, Option<EsClient>)> {
    let client = target.client().map_err(|error| (error, None))?;
    let read = target
        .read_at_startup(&client, "the checkpoint", || {
            checkpoint::load_from_index(&client, &target.index_prefix, source_id)
        })
        .await;
    match read {
        Ok(stored_end) => Ok(IndexCheckpoint { client, writeback_index: target.index_prefix.clone(), stored_end }),
        Err(error) => Err((error, Some(client))),
    }
}

/// `GET /` with retries. `None` when shutdown came first.
async fn detect_server(
    settings: &PollerSettings,
    client: &EsClient,
    shutdown: &CancellationToken,
    health: &ComponentHealth,
    metrics: &PollerMetrics,
) -> Result<Option<ServerInfo>, ComponentError> {
    let mut backoff = RetryDelays::new(settings.retry_initial_backoff, settings.retry_max_backoff);
    loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            attempt = client.server_info() => attempt,
        };
        match attempt {
            Ok(info) => {
                health.running();
                return Ok(Some(info));
            }
            Err(error) if error.is_auth() => return Err(ComponentError::new(error.with_hint(client.auth_strategy()))),
            Err(error) if error.is_transient() => {
                metrics.retries.increment(1);
                metrics.error(error.metric_label());
                tracing::warn!(%error, "cannot ask Elasticsearch for its version; retrying");
                health.degraded(error.to_string());
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
            Err(error) => {
                // Amazon OpenSearch Serverless has no GET /; behave like the
                // newest Elasticsearch, which needs the fewest assumptions.
                tracing::warn!(%error, "cannot tell the server version; assuming Elasticsearch 8");
                return Ok(Some(ServerInfo::elasticsearch(8, 0, 0)));
            }
        }
    }
}

impl Poller {
    fn classify(&self, error: EsError) -> AttemptError {
        if error.is_auth() {
            return AttemptError::Fatal(error.with_hint(self.client.auth_strategy()));
        }
        // 404: an expired point in time (search_context_missing_exception)
        // or an index deleted under us; the next attempt starts afresh.
        if error.is_transient() || error.status() == Some(404) {
            return AttemptError::Retry { label: error.metric_label(), message: error.to_string() };
        }
        AttemptError::Fatal(format!("{error}; Elasticsearch refuses the query; check \"query\", \"index\", \"timestamp_field\" and \"tiebreaker_field\""))
    }

    async fn read_window(
        &mut self,
        window: Window,
        output: &mut SourceOutput,
        shutdown: &CancellationToken,
    ) -> Result<WindowOutcome, ComponentError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.window_starts.insert(seq, window.start);
        let index = self.settings.index.expand(&window);
        let mut backoff = RetryDelays::new(self.settings.retry_initial_backoff, self.settings.retry_max_backoff);
        loop {
            match self.attempt_window(&window, seq, &index, output, shutdown).await {
                Ok(()) => break,
                Err(AttemptError::Shutdown) => return Ok(WindowOutcome::Shutdown),
                Err(AttemptError::Fatal(message)) => return Err(ComponentError::new(message)),
                Err(AttemptError::Retry { label, message }) => {
                    self.metrics.retries.increment(1);
                    self.metrics.error(label);
                    tracing::warn!(source = %self.source_id, window_start = %window.start, window_end = %window.end, error = %message, "reading the window failed; reading it again");
                    self.health.degraded(message);
                    self.degraded = true;
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(WindowOutcome::Shutdown),
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
        if self.degraded {
            self.health.running();
            self.degraded = false;
        }
        let mark = WindowMark { seq, end: Some(window.end) };
        // An empty batch: delivered as soon as every batch before it is.
        drop(self.pending.start_batch(mark));
        self.last_registered = mark;
        self.metrics.windows.increment(1);
        Ok(WindowOutcome::Complete)
    }

    async fn attempt_window(
        &mut self,
        window: &Window,
        seq: u64,
        index: &str,
        output: &mut SourceOutput,
        shutdown: &CancellationToken,
    ) -> Result<(), AttemptError> {
        let mut pit = None;
        if let Paging::Pit(api) = self.paging {
            pit = self.open_pit(api, index, shutdown).await?.map(|id| (api, id));
        }
        let tiebreaker = match &pit {
            Some(_) => self.pit_tiebreaker.clone(),
            None => self.plain_tiebreaker.clone(),
        };
        let Some(tiebreaker) = tiebreaker else {
            return Err(AttemptError::Retry {
                label: "request_failed",
                message: "no point in time could be opened and the server cannot sort on _id; set \"tiebreaker_field\""
                    .into(),
            });
        };
        let result = self.read_pages(WindowRead { window, seq, index }, &tiebreaker, &mut pit, output, shutdown).await;
        if let Some((api, id)) = pit {
            if !matches!(result, Err(AttemptError::Shutdown)) {
                self.close_pit(api, &id).await;
            }
        }
        result
    }

    /// Opens a point in time over `index`; `None` when the server says the
    /// indices do not exist (OpenSearch has no `ignore_unavailable` there),
    /// so the window is read without one.
    async fn open_pit(
        &mut self,
        api: PitApi,
        index: &str,
        shutdown: &CancellationToken,
    ) -> Result<Option<String>, AttemptError> {
        let keep_alive = self.keep_alive();
        let path = match api {
            PitApi::Elasticsearch => {
                format!("/{}/_pit?keep_alive={keep_alive}&ignore_unavailable=true", encode_path_segment(index))
            }
            PitApi::OpenSearch => {
                format!("/{}/_search/point_in_time?keep_alive={keep_alive}", encode_path_segment(index))
            }
        };
        let response = tokio::select! {
            _ = shutdown.cancelled() => return Err(AttemptError::Shutdown),
            response = self.client.send(Method::POST, &path, None) => response.map_err(|error| self.classify(error))?,
        };
        if response.status == 404 && api == PitApi::OpenSearch {
            return Ok(None);
        }
        let response = response.into_success().map_err(|error| self.classify(error))?;
        let body: JsonValue = response.json("point-in-time answer").map_err(|error| self.classify(error))?;
        let key = match api {
            PitApi::Elasticsearch => "id",
            PitApi::OpenSearch => "pit_id",
        };
        match body.get(key).and_then(JsonValue::as_str) {
            Some(id) => Ok(Some(id.to_string())),
            None => Err(AttemptError::Retry {
                label: "malformed_response",
                message: format!("the point-in-time answer has no \"{key}\""),
            }),
        }
    }

    /// Closes a point in time; failures only cost the server memory until
    /// `keep_alive` runs out, so they are logged, not retried.
    async fn close_pit(&mut self, api: PitApi, id: &str) {
        let (path, body) = match api {
            PitApi::Elasticsearch => ("/_pit", json!({"id": id})),
            PitApi::OpenSearch => ("/_search/point_in_time", json!({"pit_id": [id]})),
        };
        match self.client.send(Method::DELETE, path, Some(RequestBody::json(&body))).await {
            Ok(response) if response.is_success() || response.status == 404 => {}
            Ok(response) => {
                tracing::debug!(error = %response.into_error(), "closing a point in time failed; it expires on its own")
            }
            Err(error) => tracing::debug!(%error, "closing a point in time failed; it expires on its own"),
        }
    }

    fn keep_alive(&self) -> String {
        format!("{}ms", self.settings.pit_keep_alive.as_millis())
    }

    async fn read_pages(
        &mut self,
        read: WindowRead<'_>,
        tiebreaker: &Tiebreaker,
        pit: &mut Option<(PitApi, String)>,
        output: &mut SourceOutput,
        shutdown: &CancellationToken,
    ) -> Result<(), AttemptError> {
        let WindowRead { window, seq, index } = read;
        let keep_alive = self.keep_alive();
        let plain_path =
            format!("/{}/_search?ignore_unavailable=true&allow_no_indices=true", encode_path_segment(index));
        let mut search_after: Option<Vec<JsonValue>> = None;
        loop {
            if shutdown.is_cancelled() {
                return Err(AttemptError::Shutdown);
            }
            let reference = pit.as_ref().map(|(_, id)| PitReference { id, keep_alive: &keep_alive });
            let body = self.builder.page_body(window, tiebreaker, reference, search_after.as_deref());
            let path = if pit.is_some() { "/_search" } else { plain_path.as_str() };
            let started = std::time::Instant::now();
            let response = tokio::select! {
                _ = shutdown.cancelled() => return Err(AttemptError::Shutdown),
                response = self.client.send(Method::POST, path, Some(RequestBody::json(&body))) => response,
            };
            let response =
                response.and_then(|response| response.into_success()).map_err(|error| self.classify(error))?;
            self.metrics.query_duration.record(started.elapsed().as_secs_f64());
            self.component_metrics.received_bytes.increment(response.body.len() as u64);
            let page = SearchPage::parse(&response.body).map_err(|error| {
                let label = match error {
                    super::query::PageError::Malformed(_) => "malformed_response",
                    super::query::PageError::ShardsFailed { .. } => "shard_failures",
                    super::query::PageError::TimedOut => "timeout",
                };
                AttemptError::Retry { label, message: format!("{}: {error}", response.endpoint) }
            })?;
            if let (Some((_, id)), Some(newer)) = (pit.as_mut(), page.pit_id) {
                *id = newer;
            }
            self.metrics.pages.increment(1);
            self.metrics.hits.increment(page.hits.len() as u64);
            let full_page = page.hits.len() >= self.settings.page_size;
            let last_sort = page.hits.last().map(|hit| hit.sort.clone()).unwrap_or_default();
            if full_page && last_sort.is_empty() {
                return Err(AttemptError::Retry {
                    label: "malformed_response",
                    message: format!("{}: hits carry no sort values; cannot page", response.endpoint),
                });
            }
            self.emit(page.hits, window, seq, response.body.len(), output).await;
            if !full_page {
                return Ok(());
            }
            search_after = Some(last_sort);
        }
    }

    /// Sends the hits not emitted before as one acknowledged batch.
    async fn emit(
        &mut self,
        hits: Vec<RawHit>,
        window: &Window,
        seq: u64,
        body_bytes: usize,
        output: &mut SourceOutput,
    ) {
        if hits.is_empty() {
            return;
        }
        let byte_size = body_bytes / hits.len();
        let fallback_time = window.end.timestamp_millis();
        let mut fresh = Vec::with_capacity(hits.len());
        for hit in hits {
            if self.seen.insert(&hit.index, &hit.id, hit.sort_millis().unwrap_or(fallback_time), seq) {
                fresh.push(hit);
            } else {
                self.metrics.duplicate_hits.increment(1);
            }
        }
        if fresh.is_empty() {
            return;
        }
        let notifier = self.pending.start_batch(self.last_registered);
        let batch: Vec<_> = fresh
            .into_iter()
            .map(|hit| {
                hit.into_event(&self.source_id, byte_size).with_finalizer(EventFinalizer::new(Arc::clone(&notifier)))
            })
            .collect();
        drop(notifier);
        self.component_metrics.received_events.increment(batch.len() as u64);
        // Not raced against shutdown: a batch already built is handed over.
        output.send(batch).await;
    }

    fn fold_statuses(&mut self) {
        while let Some(Some(status)) = self.pending.next_status().now_or_never() {
            self.on_status(status);
        }
        self.update_lag();
    }

    fn on_status(&mut self, status: BatchStatus) {
        if status != BatchStatus::Delivered {
            self.metrics.error("delivery_failed");
        }
    }

    fn committed(&self) -> WindowMark {
        self.pending.committable().copied().unwrap_or(WindowMark { seq: 0, end: None })
    }

    fn update_lag(&self) {
        if let Some(end) = self.committed().end {
            self.lag.set((Utc::now() - end).num_milliseconds().max(0) as f64 / 1000.0);
        }
    }

    /// Forgets what is in flight and reads again from the first window
    /// that was not delivered.
    fn rewind(&mut self, planner: &mut WindowPlanner) {
        self.pending.reset();
        let committed = self.committed();
        self.seen.forget_after(committed.seq);
        let from = self.window_starts.range(committed.seq + 1..).next().map(|(_, start)| *start).or(committed.end);
        tracing::warn!(source = %self.source_id, from = ?from, "a batch was not delivered; reading again from the first undelivered window");
        if let Some(from) = from {
            planner.rewind(from);
        }
        self.window_starts.clear();
        self.last_registered = committed;
    }

    fn after_run(&mut self, next_floor: DateTime<Utc>) {
        let committed = self.committed();
        self.window_starts = self.window_starts.split_off(&(committed.seq + 1));
        let oldest_in_flight = self.window_starts.values().next().copied();
        let floor = oldest_in_flight.map_or(next_floor, |start| start.min(next_floor));
        let evicted = self.seen.purge(floor);
        if evicted > 0 {
            self.metrics.seen_evictions.increment(evicted as u64);
            tracing::warn!(source = %self.source_id, evicted, "the processed-hits cache is full; the oldest entries were dropped and may be emitted again");
        }
        self.update_lag();
    }

    /// Writes the checkpoint if it moved; a failure is counted and retried
    /// at the next run.
    async fn persist_checkpoint(&mut self) {
        if let Err(error) = self.store_checkpoint().await {
            self.metrics.error("checkpoint_write_failed");
            tracing::error!(source = %self.source_id, %error, "cannot write the checkpoint");
        }
    }

    /// The file first (it is what this host resumes from), then the
    /// writeback index, whose failure is counted and logged only: it is
    /// written again at the next run.
    async fn store_checkpoint(&mut self) -> Result<(), String> {
        let Some(end) = self.committed().end else { return Ok(()) };
        if self.stored_end != Some(end) {
            let path = self.settings.checkpoint_path.clone();
            tokio::task::spawn_blocking(move || checkpoint::store(&path, end))
                .await
                .map_err(|error| format!("checkpoint task failed: {error}"))?
                .map_err(|error| error.to_string())?;
            self.stored_end = Some(end);
        }
        let Some(index) = &mut self.index_checkpoint else { return Ok(()) };
        if index.stored_end == Some(end) {
            return Ok(());
        }
        match checkpoint::store_in_index(&index.client, &index.writeback_index, &self.source_id, end, Utc::now()).await
        {
            Ok(()) => index.stored_end = Some(end),
            Err(error) => {
                self.metrics.error("checkpoint_write_failed");
                tracing::warn!(source = %self.source_id, %error, "cannot write the checkpoint to the writeback index; trying again after the next run");
            }
        }
        Ok(())
    }
}
