//! The running `elasticsearch` sink: batching, encoding, bulk requests in
//! flight, per-item results, retries and dead letters.
//!
//! One task owns the input and the batch being filled; up to
//! `request.concurrency` bulk deliveries run as futures next to it
//! (`FuturesUnordered`, polled by the same task, so nothing is spawned
//! unowned). A delivery owns its items until each one is settled:
//! - 2xx items, and 409 on `create`, are settled delivered;
//! - 429 and 5xx items (and a read-only flood-stage block) are sent again,
//!   alone, after a backoff (1 s doubling to `request.retry_max_backoff`),
//!   as often as it takes; they are never settled before they are written
//!   (the data loss of Vector issue #25799 came from treating item-level
//!   429s as final);
//! - other item errors (mapping and parse errors, a missing index) go to the
//!   dead-letter file with Elasticsearch's type and reason, are counted
//!   (`pipe_component_errors_total{error_type="item_rejected"}`) and then
//!   settled.
//!
//! Whole requests: transport errors, timeouts, 429, 5xx and malformed
//! answers are retried whole; 413 splits the request in halves (a single
//! document too large is dead-lettered); 400 dead-letters the request's
//! documents; 401/403 and other 4xx stop the sink with the reason on
//! `/health` (its unsettled events count as errored, so sources replay them).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use metrics::{Counter, Histogram};
use reqwest::Method;

use super::config::{BulkAction, Compression, Destination, SinkSettings};
use super::encode::{
    classify_item, encode_item, event_time, parse_bulk_answer, ActionMeta, EncodedItem, ItemOutcome, ItemResult,
};
use super::writeback::{new_document_id, writeback_documents};
use crate::elasticsearch::client::{gzip, RequestBody};
use crate::elasticsearch::{EsClient, ServerInfo};
use crate::event::{BatchStatus, EventFinalizers, LogEvent, Value};
use crate::retry::RetryDelays;
use crate::sinks::dead_letter::DeadLetterWriter;
use crate::topology::buffer::BufferReceiver;
use crate::topology::{ComponentError, ComponentFuture, Sink, SinkContext};

/// Bodies above this are compressed on the blocking pool: gzip runs at
/// roughly 100 MB/s, so 64 KiB stays under the 0.5 ms budget.
const INLINE_GZIP_LIMIT: usize = 64 * 1024;
/// The answer carries only what item classification reads.
const BULK_PATH: &str = "/_bulk?filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason";

pub struct ElasticsearchSink {
    settings: SinkSettings,
}

impl ElasticsearchSink {
    pub fn new(settings: SinkSettings) -> ElasticsearchSink {
        ElasticsearchSink { settings }
    }
}

impl Sink for ElasticsearchSink {
    fn run(self: Box<Self>, input: BufferReceiver, cx: SinkContext) -> ComponentFuture {
        Box::pin(run_loop(self.settings, input, cx))
    }
}

/// One document waiting to be written.
struct PendingItem {
    encoded: EncodedItem,
    finalizers: EventFinalizers,
    received_at: Instant,
}

struct SinkMetrics {
    bulk_requests: Counter,
    request_retries: Counter,
    item_retries: Counter,
    conflicts: Counter,
    item_rejected: Counter,
    encode_failed: Counter,
    request_duration: Histogram,
    transport_errors: Vec<(&'static str, Counter)>,
}

impl SinkMetrics {
    fn register(cx: &SinkContext) -> SinkMetrics {
        let metrics = &cx.metrics;
        SinkMetrics {
            bulk_requests: metrics.counter("pipe_sink_es_bulk_requests_total", &[]),
            request_retries: metrics.counter("pipe_sink_es_request_retries_total", &[]),
            item_retries: metrics.counter("pipe_sink_es_item_retries_total", &[]),
            conflicts: metrics.counter("pipe_sink_es_conflicts_total", &[]),
            item_rejected: metrics.errors("item_rejected", "sending"),
            encode_failed: metrics.errors("encode_failed", "processing"),
            request_duration: metrics.histogram("pipe_sink_es_request_duration_seconds", &[]),
            transport_errors: [
                "timeout",
                "connection_failed",
                "malformed_response",
                "too_many_requests",
                "server_error",
                "request_failed",
            ]
            .into_iter()
            .map(|label| (label, metrics.errors(label, "sending")))
            .collect(),
        }
    }

    fn error(&self, label: &str) {
        if let Some((_, counter)) = self.transport_errors.iter().find(|(known, _)| *known == label) {
            counter.increment(1);
        }
    }
}

struct Shared {
    settings: SinkSettings,
    client: EsClient,
    server: ServerInfo,
    dead_letters: DeadLetterWriter,
    cx: SinkContext,
    metrics: SinkMetrics,
}

/// Items gathered for the next request.
#[derive(Default)]
struct Batch {
    items: Vec<PendingItem>,
    bytes: usize,
    deadline: Option<tokio::time::Instant>,
}

impl Batch {
    fn is_full(&self, settings: &SinkSettings) -> bool {
        self.items.len() >= settings.max_events || self.bytes >= settings.max_bytes
    }

    fn take(&mut self) -> Vec<PendingItem> {
        self.bytes = 0;
        self.deadline = None;
        std::mem::take(&mut self.items)
    }
}

async fn run_loop(settings: SinkSettings, mut input: BufferReceiver, cx: SinkContext) -> Result<(), ComponentError> {
    let client = EsClient::new(&settings.connection).map_err(ComponentError::new)?;
    let metrics = SinkMetrics::register(&cx);
    let server = detect_server(&settings, &client, &cx, &metrics).await?;
    tracing::info!(sink = %cx.id, server = %server, "writing to Elasticsearch");
    let dead_letters = DeadLetterWriter::new(&cx.data_dir, &cx.id, &cx.metrics);
    let shared = Arc::new(Shared { settings, client, server, dead_letters, cx, metrics });
    let concurrency = shared.settings.concurrency;
    let mut in_flight = FuturesUnordered::new();
    let mut batch = Batch::default();
    let mut input_open = true;
    loop {
        let room = in_flight.len() < concurrency;
        if room && !batch.items.is_empty() && (batch.is_full(&shared.settings) || !input_open) {
            in_flight.push(deliver(Arc::clone(&shared), batch.take()));
            continue;
        }
        if !input_open && batch.items.is_empty() && in_flight.is_empty() {
            break;
        }
        let deadline = batch.deadline;
        // Every arm is cancel-safe: `next` on FuturesUnordered and `recv`
        // lose nothing when not chosen, and a sleep holds nothing.
        tokio::select! {
            Some(result) = in_flight.next(), if !in_flight.is_empty() => result?,
            received = input.recv(), if input_open && !batch.is_full(&shared.settings) => match received {
                Some(events) => {
                    shared.cx.record_received(&events);
                    let unencodable = shared.encode_into(events, &mut batch);
                    if batch.deadline.is_none() && !batch.items.is_empty() {
                        batch.deadline = Some(tokio::time::Instant::now() + shared.settings.batch_timeout);
                    }
                    shared.dead_letters.settle(unencodable).await;
                }
                None => input_open = false,
            },
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() && room => {
                in_flight.push(deliver(Arc::clone(&shared), batch.take()));
            }
        }
    }
    Ok(())
}

/// `GET /` until it answers; the sink needs the version for `_type`.
async fn detect_server(
    settings: &SinkSettings,
    client: &EsClient,
    cx: &SinkContext,
    metrics: &SinkMetrics,
) -> Result<ServerInfo, ComponentError> {
    let mut backoff = RetryDelays::new(settings.retry_initial_backoff, settings.retry_max_backoff);
    loop {
        match client.server_info().await {
            Ok(info) => {
                cx.health.running();
                return Ok(info);
            }
            Err(error) if error.is_auth() => return Err(ComponentError::new(error.with_hint(client.auth_strategy()))),
            Err(error) if error.is_transient() => {
                metrics.request_retries.increment(1);
                metrics.error(error.metric_label());
                tracing::warn!(sink = %cx.id, %error, "cannot ask Elasticsearch for its version; retrying");
                cx.health.degraded(error.to_string());
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(error) => {
                tracing::warn!(sink = %cx.id, %error, "cannot tell the server version; assuming Elasticsearch 8");
                return Ok(ServerInfo::elasticsearch(8, 0, 0));
            }
        }
    }
}

enum ChunkOutcome {
    Answered(Vec<ItemResult>),
    RetryAll { label: &'static str, message: String },
    TooLarge,
    RejectAll(String),
    Fatal(String),
}

impl Shared {
    /// Encodes `events` into `batch`; returns the events that cannot be
    /// encoded, with why, for the dead-letter file.
    fn encode_into(&self, events: Vec<LogEvent>, batch: &mut Batch) -> Vec<(LogEvent, String)> {
        let now = chrono::Utc::now();
        let type_name = self.server.bulk_type_name();
        let mut unencodable = Vec::new();
        let mut buffer = Vec::with_capacity(512);
        for mut event in events {
            let received_at = event.metadata().received_at;
            // Each document: where its action line starts, the action
            // line's length, and the action.
            let documents = match &self.settings.destination {
                Destination::Bulk { index, id_field, action } => {
                    let time = event_time(event.fields(), &self.settings.timestamp_field, now);
                    match index.render_at(&event, time) {
                        Ok(index) => {
                            let id = id_field
                                .as_deref()
                                .and_then(|field| event.get_path(field))
                                .filter(|value| !value.is_null())
                                .map(|value| value.to_text().into_owned());
                            let action_length = encode_item(
                                &mut buffer,
                                ActionMeta { action: *action, index: &index, id: id.as_deref(), type_name },
                                event.fields(),
                            );
                            Ok(vec![(0, action_length, *action)])
                        }
                        Err(missing) => Err(format!("cannot render \"index\": {missing}")),
                    }
                }
                Destination::Writeback(indices) => writeback_documents(event.fields(), indices, now, new_document_id)
                    .map(|documents| {
                        documents
                            .iter()
                            .map(|document| {
                                let start = buffer.len();
                                let meta = ActionMeta {
                                    action: BulkAction::Index,
                                    index: &document.index,
                                    id: Some(&document.id),
                                    type_name,
                                };
                                (start, encode_item(&mut buffer, meta, &document.source), BulkAction::Index)
                            })
                            .collect()
                    }),
            };
            match documents {
                Ok(documents) => {
                    let mut finalizers = Some(event.take_finalizers());
                    let bytes = Bytes::from(std::mem::take(&mut buffer));
                    let count = documents.len();
                    for (position, &(start, action_length, action)) in documents.iter().enumerate() {
                        let end = documents.get(position + 1).map_or(bytes.len(), |next| next.0);
                        let encoded = EncodedItem { bytes: bytes.slice(start..end), action_length, action };
                        batch.bytes += encoded.bytes.len();
                        // Every document but the last gets its own share (a
                        // clone settles on its own), so the event is
                        // delivered exactly when all its documents are.
                        let share = if position + 1 == count {
                            finalizers.take().unwrap_or_default()
                        } else {
                            finalizers.clone().unwrap_or_default()
                        };
                        batch.items.push(PendingItem { encoded, finalizers: share, received_at });
                    }
                }
                Err(reason) => {
                    buffer.clear();
                    self.metrics.encode_failed.increment(1);
                    unencodable.push((event, reason));
                }
            }
        }
        unencodable
    }

    async fn send_chunk(&self, chunk: &[PendingItem]) -> ChunkOutcome {
        let size: usize = chunk.iter().map(|item| item.encoded.bytes.len()).sum();
        let mut body = Vec::with_capacity(size);
        for item in chunk {
            body.extend_from_slice(&item.encoded.bytes);
        }
        let body = match self.settings.compression {
            Compression::None => {
                RequestBody { bytes: Bytes::from(body), content_type: "application/x-ndjson", gzipped: false }
            }
            Compression::Gzip => {
                let compressed = if body.len() <= INLINE_GZIP_LIMIT {
                    gzip(&body)
                } else {
                    match tokio::task::spawn_blocking(move || gzip(&body)).await {
                        Ok(result) => result,
                        Err(error) => return ChunkOutcome::Fatal(format!("compression task failed: {error}")),
                    }
                };
                match compressed {
                    Ok(bytes) => {
                        RequestBody { bytes: Bytes::from(bytes), content_type: "application/x-ndjson", gzipped: true }
                    }
                    Err(error) => return ChunkOutcome::Fatal(format!("cannot gzip the bulk body: {error}")),
                }
            }
        };
        self.metrics.bulk_requests.increment(1);
        let started = Instant::now();
        let response = match self.client.send(Method::POST, BULK_PATH, Some(body)).await {
            Ok(response) => response,
            Err(error) => return ChunkOutcome::RetryAll { label: error.metric_label(), message: error.to_string() },
        };
        self.metrics.request_duration.record(started.elapsed().as_secs_f64());
        match response.status {
            200..=299 => match parse_bulk_answer(&response.body, chunk.len()) {
                Ok(results) => ChunkOutcome::Answered(results),
                Err(detail) => ChunkOutcome::RetryAll {
                    label: "malformed_response",
                    message: format!("{}: {detail}", response.endpoint),
                },
            },
            413 => ChunkOutcome::TooLarge,
            _ => {
                let error = response.into_error();
                if error.is_auth() {
                    ChunkOutcome::Fatal(error.with_hint(self.client.auth_strategy()))
                } else if error.is_transient() {
                    ChunkOutcome::RetryAll { label: error.metric_label(), message: error.to_string() }
                } else if error.status() == Some(400) {
                    ChunkOutcome::RejectAll(format!("Elasticsearch refused the whole bulk request: {error}"))
                } else {
                    ChunkOutcome::Fatal(format!("{error}; check \"endpoints\" (a path prefix?) and the cluster"))
                }
            }
        }
    }

    fn settle_delivered(&self, items: Vec<PendingItem>) {
        if items.is_empty() {
            return;
        }
        let count = items.len();
        let mut bytes = 0;
        let mut received = Vec::with_capacity(count);
        for item in items {
            bytes += item.encoded.bytes.len();
            received.push(item.received_at);
            item.finalizers.update_status(BatchStatus::Delivered);
        }
        self.cx.record_delivered(count, bytes, received);
    }

    async fn dead_letter(&self, items: Vec<(PendingItem, String)>) {
        if items.is_empty() {
            return;
        }
        self.metrics.item_rejected.increment(items.len() as u64);
        let entries = items
            .into_iter()
            .map(|(item, reason)| {
                // The document as it was sent (metadata fields stripped).
                let fields = match serde_json::from_slice::<Value>(item.encoded.source_line()) {
                    Ok(Value::Object(fields)) => fields,
                    _ => Default::default(),
                };
                let mut event = LogEvent::from_fields(&self.cx.id, fields);
                event.add_finalizers(item.finalizers);
                (event, reason)
            })
            .collect();
        self.dead_letters.settle(entries).await;
    }
}

/// Writes `items` until every one is settled; `Err` only for a fatal answer.
async fn deliver(shared: Arc<Shared>, items: Vec<PendingItem>) -> Result<(), ComponentError> {
    let mut chunks: VecDeque<Vec<PendingItem>> = VecDeque::from([items]);
    let mut backoff = RetryDelays::new(shared.settings.retry_initial_backoff, shared.settings.retry_max_backoff);
    let mut degraded = false;
    while let Some(mut chunk) = chunks.pop_front() {
        while !chunk.is_empty() {
            match shared.send_chunk(&chunk).await {
                ChunkOutcome::Answered(results) => {
                    let mut delivered = Vec::with_capacity(chunk.len());
                    let mut retry = Vec::new();
                    let mut rejected = Vec::new();
                    for (item, result) in chunk.drain(..).zip(results) {
                        match classify_item(
                            item.encoded.action,
                            result.status,
                            result.error_type.as_deref(),
                            result.reason.as_deref(),
                        ) {
                            ItemOutcome::Delivered => delivered.push(item),
                            ItemOutcome::AlreadyExists => {
                                shared.metrics.conflicts.increment(1);
                                delivered.push(item);
                            }
                            ItemOutcome::Retry => retry.push(item),
                            ItemOutcome::Reject(reason) => rejected.push((item, reason)),
                        }
                    }
                    shared.settle_delivered(delivered);
                    shared.dead_letter(rejected).await;
                    if retry.is_empty() {
                        break;
                    }
                    shared.metrics.item_retries.increment(retry.len() as u64);
                    let message = format!("{} document(s) answered 429 or 5xx; sending them again", retry.len());
                    tracing::warn!(sink = %shared.cx.id, "{message}");
                    shared.cx.health.degraded(message);
                    degraded = true;
                    chunk = retry;
                }
                ChunkOutcome::RetryAll { label, message } => {
                    shared.metrics.request_retries.increment(1);
                    shared.metrics.error(label);
                    tracing::warn!(sink = %shared.cx.id, error = %message, documents = chunk.len(), "bulk request failed; retrying");
                    shared.cx.health.degraded(message);
                    degraded = true;
                }
                ChunkOutcome::TooLarge if chunk.len() > 1 => {
                    let second = chunk.split_off(chunk.len() / 2);
                    chunks.push_front(second);
                    continue;
                }
                ChunkOutcome::TooLarge => {
                    let reason = "the document is larger than the cluster's http.max_content_length (413)".to_string();
                    shared.dead_letter(chunk.drain(..).map(|item| (item, reason.clone())).collect()).await;
                    break;
                }
                ChunkOutcome::RejectAll(reason) => {
                    shared.dead_letter(chunk.drain(..).map(|item| (item, reason.clone())).collect()).await;
                    break;
                }
                // The chunk's finalizers drop unsettled: errored, replayed.
                ChunkOutcome::Fatal(message) => return Err(ComponentError::new(message)),
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
        backoff.reset();
    }
    if degraded {
        shared.cx.health.running();
    }
    Ok(())
}
