//! The `splunk_hec` run loop: batching, encoding, requests in flight,
//! retries, indexer acknowledgements and the fatal drain.
//!
//! One task owns all state; everything slow runs beside it and reports back
//! through a `FuturesUnordered`: encoding and compression on tokio's blocking
//! pool (a 1 MB batch takes milliseconds, far over what an async worker may
//! be blocked for), each HTTP attempt (with its backoff sleep in front), and
//! at most one ack query.
//!
//! Guarantees:
//! - An event's finalizers are settled exactly once: delivered when its
//!   request's ack reads `true` (or on HTTP 200 without acknowledgement),
//!   through the dead-letter file when Splunk refuses it for good, errored
//!   after a fatal error. Nothing is settled before Splunk has it.
//! - Input is read only while no request is being retried, fewer than the
//!   concurrency limit are in flight and fewer than
//!   `acknowledgements.max_pending` acks are outstanding, so a slow or failing
//!   Splunk holds the pipeline back instead of filling memory.
//! - Memory: one open batch, one batch being encoded, and up to the
//!   concurrency limit of requests in flight (each at most `batch.max_bytes`
//!   plus its events), plus one compressed body per pending ack.
//!
//! Never: drops an event silently, or retries a permanent refusal.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use metrics::{Counter, Gauge, Histogram};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::acknowledgements::PendingAcks;
use super::client::{
    classify_ack_response, classify_data_response, classify_health, classify_transport_error, AckOutcome, Disposition,
    HealthOutcome, HecClient, HecResponse, RetryReason, TransportError,
};
use super::concurrency::{ConcurrencyLimiter, ConcurrencySetting};
use super::encoder::{split_into_requests, Compression, HecEncoder, RawMetadata};
use crate::event::{BatchStatus, EventFinalizers, LogEvent};
use crate::sinks::dead_letter::DeadLetterWriter;
use crate::topology::buffer::BufferReceiver;
use crate::topology::{ComponentError, ComponentFuture, Sink, SinkContext};

/// The start-up health check never waits longer than this, whatever
/// `request.timeout` says: the sink reads nothing until it has an answer.
const HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// JSON punctuation per field plus the envelope's own keys, added to an
/// event's raw byte size to estimate its envelope before encoding it. Only
/// used to decide when a batch is full; the encoder cuts requests exactly.
const ESTIMATED_BYTES_PER_FIELD: usize = 6;
const ESTIMATED_ENVELOPE_OVERHEAD: usize = 64;
/// Encoding buffers kept for reuse; one per encoding that can run at once
/// in the common case (a new batch plus a resend).
const MAX_SPARE_BUFFERS: usize = 2;

/// The validated settings the loop runs with.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    pub batch_max_events: usize,
    pub batch_max_bytes: usize,
    pub batch_timeout: Duration,
    pub compression: Compression,
    pub concurrency: ConcurrencySetting,
    pub request_timeout: Duration,
    pub retry_initial_backoff: Duration,
    pub retry_max_backoff: Duration,
    pub indexer_acknowledgements: bool,
    pub ack_query_interval: Duration,
    pub max_pending_acks: usize,
    pub ack_timeout: Duration,
    pub healthcheck_required: bool,
}

pub struct SplunkHecSink {
    encoder: Arc<HecEncoder>,
    client: HecClient,
    options: SinkOptions,
}

impl SplunkHecSink {
    pub fn new(encoder: Arc<HecEncoder>, client: HecClient, options: SinkOptions) -> SplunkHecSink {
        SplunkHecSink { encoder, client, options }
    }
}

impl Sink for SplunkHecSink {
    fn run(self: Box<Self>, input: BufferReceiver, cx: SinkContext) -> ComponentFuture {
        Box::pin(Driver::new(*self, cx).run(input))
    }
}

/// What settling a delivered request needs once its events are gone.
struct Settlement {
    finalizers: EventFinalizers,
    received: Vec<std::time::Instant>,
    events: usize,
    bytes: usize,
}

impl Settlement {
    fn from_events(events: Vec<LogEvent>, bytes: usize) -> Settlement {
        let mut finalizers = EventFinalizers::default();
        let mut received = Vec::with_capacity(events.len());
        let count = events.len();
        for mut event in events {
            finalizers.merge(event.take_finalizers());
            received.push(event.metadata().received_at);
        }
        Settlement { finalizers, received, events: count, bytes }
    }
}

enum Contents {
    /// A first send: the events are kept until HEC answers, so a refused one
    /// can be dead-lettered and the rest re-encoded. `ends[i]` is where
    /// event `i`'s envelope ends in the uncompressed body.
    Events { events: Vec<LogEvent>, ends: Vec<usize> },
    /// A resend after a lost ack: only what settling needs.
    Resend(Settlement),
}

struct Request {
    payload: Bytes,
    body_bytes: usize,
    raw_metadata: Option<Arc<RawMetadata>>,
    contents: Contents,
    /// Failed attempts so far; above 0 the request holds input back.
    failures: u32,
}

impl Request {
    fn into_settlement(self) -> Settlement {
        match self.contents {
            Contents::Events { events, .. } => Settlement::from_events(events, self.body_bytes),
            Contents::Resend(settlement) => settlement,
        }
    }
}

/// An accepted request waiting for its ack to read `true`.
struct AwaitingAck {
    payload: Bytes,
    body_bytes: usize,
    raw_metadata: Option<Arc<RawMetadata>>,
    settlement: Settlement,
}

struct Attempt {
    request: Request,
    result: Result<HecResponse, TransportError>,
    latency: Duration,
}

struct Encoded {
    requests: Vec<Request>,
    unencodable: Vec<(LogEvent, String)>,
    buffer: Vec<u8>,
    new_batch: bool,
}

/// Metric handles, registered once.
struct HecMetrics {
    request_duration: Histogram,
    retries: [Counter; RetryReason::ALL.len()],
    acks_pending: Gauge,
    ack_query_failures: Counter,
}

impl HecMetrics {
    fn register(cx: &SinkContext) -> HecMetrics {
        HecMetrics {
            request_duration: cx.metrics.histogram("pipe_splunk_hec_request_duration_seconds", &[]),
            retries: RetryReason::ALL
                .map(|reason| cx.metrics.counter("pipe_splunk_hec_retries_total", &[("reason", reason.label())])),
            acks_pending: cx.metrics.gauge("pipe_splunk_hec_acks_pending", &[]),
            ack_query_failures: cx.metrics.errors("ack_query_failed", "receiving"),
        }
    }

    fn retry(&self, reason: RetryReason) {
        let position = RetryReason::ALL.iter().position(|known| *known == reason).expect("ALL lists every reason");
        self.retries[position].increment(1);
    }
}

struct Driver {
    cx: SinkContext,
    encoder: Arc<HecEncoder>,
    client: HecClient,
    options: SinkOptions,
    metrics: HecMetrics,
    dead_letters: DeadLetterWriter,
    limiter: ConcurrencyLimiter,
    /// Off when configured off, or once HEC showed it does not do them.
    acks_enabled: bool,

    open_batch: Vec<LogEvent>,
    open_batch_estimated_bytes: usize,
    open_batch_deadline: Option<Instant>,
    input_closed: bool,
    spare_buffers: Vec<Vec<u8>>,

    encoding: FuturesUnordered<JoinHandle<Encoded>>,
    new_batches_encoding: usize,
    in_flight: FuturesUnordered<BoxFuture<'static, Attempt>>,
    retrying: usize,
    pending_acks: PendingAcks<AwaitingAck>,
    ack_ticker: Interval,
    ack_query: FuturesUnordered<BoxFuture<'static, Result<HecResponse, TransportError>>>,

    /// Why delivery stopped for good; the sink drains and returns it.
    fatal: Option<String>,
    degraded: bool,
}

impl Driver {
    fn new(sink: SplunkHecSink, cx: SinkContext) -> Driver {
        let mut ack_ticker = tokio::time::interval(sink.options.ack_query_interval);
        ack_ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Driver {
            metrics: HecMetrics::register(&cx),
            dead_letters: DeadLetterWriter::new(&cx.data_dir, &cx.id, &cx.metrics),
            limiter: ConcurrencyLimiter::new(sink.options.concurrency),
            acks_enabled: sink.options.indexer_acknowledgements,
            cx,
            encoder: sink.encoder,
            client: sink.client,
            options: sink.options,
            open_batch: Vec::new(),
            open_batch_estimated_bytes: 0,
            open_batch_deadline: None,
            input_closed: false,
            spare_buffers: Vec::new(),
            encoding: FuturesUnordered::new(),
            new_batches_encoding: 0,
            in_flight: FuturesUnordered::new(),
            retrying: 0,
            pending_acks: PendingAcks::default(),
            ack_ticker,
            ack_query: FuturesUnordered::new(),
            fatal: None,
            degraded: false,
        }
    }

    async fn run(mut self, mut input: BufferReceiver) -> Result<(), ComponentError> {
        tracing::info!(sink = %self.cx.id, url = %self.client.data_url(), channel = %self.client.channel(), "Splunk HEC sink starting");
        self.check_health().await;
        loop {
            self.dispatch_if_due();
            if self.is_finished() {
                break;
            }
            let accepting = self.accepting();
            let flush_at = self.open_batch_deadline.filter(|_| !self.open_batch.is_empty() && self.can_dispatch());
            let awaiting_acks = !self.pending_acks.is_empty();
            // Every branch is cancel-safe: `FuturesUnordered::next` and
            // `BufferReceiver::recv` lose nothing when another branch wins, and
            // a tick or a deadline not taken now is taken on a later turn.
            tokio::select! {
                Some(attempt) = self.in_flight.next(), if !self.in_flight.is_empty() => self.on_attempt(attempt).await,
                Some(joined) = self.encoding.next(), if !self.encoding.is_empty() => match joined {
                    Ok(encoded) => self.on_encoded(encoded).await,
                    Err(error) => self.go_fatal(format!("the encoding task failed: {error}")),
                },
                Some(answer) = self.ack_query.next(), if !self.ack_query.is_empty() => self.on_ack_answer(answer),
                _ = self.ack_ticker.tick(), if awaiting_acks => self.on_ack_tick(),
                batch = input.recv(), if accepting => match batch {
                    Some(batch) => self.on_input(batch),
                    None => self.input_closed = true,
                },
                _ = tokio::time::sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => {}
            }
        }
        match self.fatal {
            Some(message) => Err(ComponentError::new(message)),
            None => Ok(()),
        }
    }

    async fn check_health(&mut self) {
        let timeout = self.options.request_timeout.min(HEALTHCHECK_TIMEOUT);
        match classify_health(&self.client.health(timeout).await) {
            HealthOutcome::Healthy => tracing::info!(sink = %self.cx.id, "Splunk HEC health check passed"),
            HealthOutcome::Unhealthy { reason } if self.options.healthcheck_required => {
                self.go_fatal(format!("{reason}; \"healthcheck.required\" is true, so the sink stops"));
            }
            HealthOutcome::Unhealthy { reason } => {
                tracing::warn!(sink = %self.cx.id, %reason, "Splunk HEC health check failed; sending anyway (set \"healthcheck.required\" = true to stop instead)");
                self.cx.health.degraded(reason);
                self.degraded = true;
            }
        }
    }

    fn is_finished(&self) -> bool {
        self.input_closed
            && self.open_batch.is_empty()
            && self.encoding.is_empty()
            && self.in_flight.is_empty()
            && self.pending_acks.is_empty()
    }

    fn accepting(&self) -> bool {
        !self.input_closed && (self.fatal.is_some() || (!self.open_batch_is_full() && self.retrying == 0))
    }

    fn open_batch_is_full(&self) -> bool {
        self.open_batch.len() >= self.options.batch_max_events
            || self.open_batch_estimated_bytes >= self.options.batch_max_bytes
    }

    fn can_dispatch(&self) -> bool {
        self.fatal.is_none()
            && self.new_batches_encoding == 0
            && self.retrying == 0
            && self.in_flight.len() < self.limiter.limit()
            && self.pending_acks.len() + self.in_flight.len() < self.options.max_pending_acks
    }

    fn on_input(&mut self, batch: Vec<LogEvent>) {
        self.cx.record_received(&batch);
        if self.fatal.is_some() {
            for event in batch {
                event.settle(BatchStatus::Errored);
            }
            return;
        }
        self.open_batch_estimated_bytes += batch.iter().map(estimated_envelope_bytes).sum::<usize>();
        if self.open_batch.is_empty() {
            self.open_batch_deadline = Some(Instant::now() + self.options.batch_timeout);
            // Adopt the incoming vector (a whole SLS pull, often): growing an
            // empty one event by event reallocated and copied it several
            // times per batch.
            self.open_batch = batch;
        } else {
            self.open_batch.extend(batch);
        }
    }

    fn dispatch_if_due(&mut self) {
        if self.open_batch.is_empty() || !self.can_dispatch() {
            return;
        }
        let due = self.open_batch_is_full()
            || self.input_closed
            || self.open_batch_deadline.is_some_and(|deadline| deadline <= Instant::now());
        if !due {
            return;
        }
        let keep = self.open_batch.len().min(self.options.batch_max_events);
        let rest = self.open_batch.split_off(keep);
        let events = std::mem::replace(&mut self.open_batch, rest);
        // What is left over is older than any batch still to come, so it
        // keeps the deadline and goes out on the next turn.
        self.open_batch_estimated_bytes = self.open_batch.iter().map(estimated_envelope_bytes).sum();
        if self.open_batch.is_empty() {
            self.open_batch_deadline = None;
        }
        self.new_batches_encoding += 1;
        self.spawn_encoding(events, true);
    }

    fn spawn_encoding(&mut self, events: Vec<LogEvent>, new_batch: bool) {
        let encoder = Arc::clone(&self.encoder);
        let buffer = self.spare_buffers.pop().unwrap_or_default();
        let max_bytes = self.options.batch_max_bytes;
        let compression = self.options.compression;
        let now = chrono::Utc::now();
        self.encoding.push(tokio::task::spawn_blocking(move || {
            encode_requests(&encoder, events, buffer, max_bytes, compression, now, new_batch)
        }));
    }

    async fn on_encoded(&mut self, encoded: Encoded) {
        let Encoded { requests, unencodable, buffer, new_batch } = encoded;
        if new_batch {
            self.new_batches_encoding -= 1;
        }
        if self.spare_buffers.len() < MAX_SPARE_BUFFERS {
            self.spare_buffers.push(buffer);
        }
        self.dead_letters.settle(unencodable).await;
        for request in requests {
            self.launch(request, Duration::ZERO);
        }
    }

    fn launch(&mut self, request: Request, delay: Duration) {
        if request.failures > 0 {
            self.retrying += 1;
        }
        let client = self.client.clone();
        self.in_flight.push(
            async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let started = Instant::now();
                let result = client.send(request.payload.clone(), request.raw_metadata.as_deref()).await;
                Attempt { request, result, latency: started.elapsed() }
            }
            .boxed(),
        );
    }

    async fn on_attempt(&mut self, attempt: Attempt) {
        let Attempt { request, result, latency } = attempt;
        let in_flight_when_answered = self.in_flight.len() + 1;
        if request.failures > 0 {
            self.retrying -= 1;
        }
        self.metrics.request_duration.record(latency.as_secs_f64());
        let disposition = match &result {
            Ok(response) => classify_data_response(response),
            Err(error) => classify_transport_error(error),
        };
        let overloaded = matches!(&disposition, Disposition::Retry { reason, .. } if reason.is_backpressure());
        self.limiter.record(latency, overloaded, in_flight_when_answered);
        match disposition {
            Disposition::Accepted { ack_id } => self.on_accepted(request, ack_id),
            Disposition::PartiallyRefused { event_number, reason } => {
                self.on_partially_refused(request, event_number, reason).await
            }
            Disposition::Refused { reason } => self.refuse(request, reason).await,
            Disposition::TooLarge => self.on_too_large(request).await,
            Disposition::Retry { reason, retry_after, detail } => self.retry(request, reason, retry_after, &detail),
            Disposition::Fatal { message } => {
                request.into_settlement().finalizers.update_status(BatchStatus::Errored);
                self.go_fatal(message);
            }
        }
    }

    fn on_accepted(&mut self, request: Request, ack_id: Option<u64>) {
        if self.degraded {
            self.degraded = false;
            self.cx.health.running();
            tracing::info!(sink = %self.cx.id, "Splunk HEC accepts data again");
        }
        let (payload, body_bytes, raw_metadata) =
            (request.payload.clone(), request.body_bytes, request.raw_metadata.clone());
        let settlement = request.into_settlement();
        match ack_id {
            Some(ack_id) if self.acks_enabled => {
                if self.pending_acks.is_empty() {
                    // The first poll comes one interval after the first id,
                    // not at once because the ticker sat idle.
                    self.ack_ticker.reset();
                }
                let awaiting = AwaitingAck { payload, body_bytes, raw_metadata, settlement };
                if let Some(displaced) = self.pending_acks.insert(ack_id, awaiting, Instant::now().into_std()) {
                    tracing::warn!(sink = %self.cx.id, ack_id, "Splunk HEC reissued a pending ackId (it restarted or dropped the channel); resending the older request");
                    self.resend(displaced);
                }
                self.metrics.acks_pending.set(self.pending_acks.len() as f64);
            }
            None if self.acks_enabled => {
                self.disable_acknowledgements("HEC answered HTTP 200 without an ackId");
                self.deliver(settlement);
            }
            _ => self.deliver(settlement),
        }
    }

    fn deliver(&self, settlement: Settlement) {
        let Settlement { finalizers, received, events, bytes } = settlement;
        finalizers.update_status(BatchStatus::Delivered);
        self.cx.record_delivered(events, bytes, received);
    }

    fn disable_acknowledgements(&mut self, evidence: &str) {
        self.acks_enabled = false;
        tracing::warn!(sink = %self.cx.id, evidence, "indexer acknowledgement is off for this HEC token; from now on HTTP 200 counts as delivered (enable useACK on the token, or set \"acknowledgements.indexer\" = false to silence this)");
        for awaiting in self.pending_acks.take_all() {
            self.deliver(awaiting.settlement);
        }
        self.metrics.acks_pending.set(0.0);
    }

    async fn on_partially_refused(&mut self, request: Request, event_number: usize, reason: String) {
        match request.contents {
            Contents::Events { events, ends } => match split_partial(events, &ends, event_number) {
                Ok(split) => {
                    if !split.accepted.is_empty() {
                        // Splunk took these, but an error answer carries no ackId,
                        // so HTTP acceptance is all that can be known.
                        self.deliver(Settlement::from_events(split.accepted, split.accepted_bytes));
                    }
                    let reason = format!("{reason}; it was event {event_number} of its request");
                    self.dead_letters.settle(vec![(split.refused, reason)]).await;
                    if !split.resend.is_empty() {
                        self.spawn_encoding(split.resend, false);
                    }
                }
                Err(events) => {
                    let reason = format!(
                        "{reason}; invalid-event-number {event_number} is outside the request of {} events",
                        events.len()
                    );
                    let request = Request { contents: Contents::Events { events, ends }, ..request };
                    self.refuse(request, reason).await;
                }
            },
            Contents::Resend(settlement) => self.refuse_resend(settlement, &reason),
        }
    }

    async fn refuse(&mut self, request: Request, reason: String) {
        match request.contents {
            Contents::Events { events, .. } => {
                self.dead_letters.settle(events.into_iter().map(|event| (event, reason.clone())).collect()).await;
            }
            Contents::Resend(settlement) => self.refuse_resend(settlement, &reason),
        }
    }

    /// A resent body no longer has its events to dead-letter. It was
    /// accepted once, so this is not expected; rejecting makes it visible.
    fn refuse_resend(&self, settlement: Settlement, reason: &str) {
        tracing::error!(sink = %self.cx.id, events = settlement.events, %reason, "Splunk HEC refused a request it had accepted before; its events are rejected");
        settlement.finalizers.update_status(BatchStatus::Rejected);
    }

    async fn on_too_large(&mut self, request: Request) {
        tracing::warn!(sink = %self.cx.id, bytes = request.body_bytes, "Splunk HEC refused a request as too large (HTTP 413); splitting it (lower \"batch.max_bytes\" to avoid this)");
        match request.contents {
            Contents::Events { mut events, .. } if events.len() > 1 => {
                let second_half = events.split_off(events.len() / 2);
                self.spawn_encoding(events, false);
                self.spawn_encoding(second_half, false);
            }
            Contents::Events { events, .. } => {
                let reason = format!(
                    "the event alone is larger ({} bytes as JSON) than Splunk HEC accepts (HTTP 413)",
                    request.body_bytes
                );
                self.dead_letters.settle(events.into_iter().map(|event| (event, reason.clone())).collect()).await;
            }
            Contents::Resend(settlement) => self.refuse_resend(settlement, "HTTP 413 on a resend"),
        }
    }

    fn retry(&mut self, mut request: Request, reason: RetryReason, retry_after: Option<Duration>, detail: &str) {
        self.metrics.retry(reason);
        request.failures += 1;
        let delay = retry_delay(
            self.options.retry_initial_backoff,
            self.options.retry_max_backoff,
            request.failures,
            retry_after,
            rand::random::<f64>(),
        );
        tracing::warn!(sink = %self.cx.id, reason = reason.label(), attempt = request.failures, ?delay, error = %detail, "Splunk HEC request failed; retrying, and reading no new input meanwhile");
        self.cx.health.degraded(format!("retrying ({}): {detail}", reason.label()));
        self.degraded = true;
        self.launch(request, delay);
    }

    fn resend(&mut self, awaiting: AwaitingAck) {
        self.metrics.retry(RetryReason::AckTimeout);
        let AwaitingAck { payload, body_bytes, raw_metadata, settlement } = awaiting;
        self.launch(
            Request { payload, body_bytes, raw_metadata, contents: Contents::Resend(settlement), failures: 1 },
            Duration::ZERO,
        );
    }

    fn on_ack_tick(&mut self) {
        let expired = self.pending_acks.take_expired(Instant::now().into_std(), self.options.ack_timeout);
        if !expired.is_empty() {
            tracing::warn!(sink = %self.cx.id, requests = expired.len(), timeout = ?self.options.ack_timeout, "indexer acknowledgements did not arrive within \"acknowledgements.timeout\"; resending (Splunk may index them twice)");
        }
        for awaiting in expired {
            self.resend(awaiting);
        }
        self.metrics.acks_pending.set(self.pending_acks.len() as f64);
        if self.ack_query.is_empty() && !self.pending_acks.is_empty() {
            let ids = self.pending_acks.ids();
            let client = self.client.clone();
            self.ack_query.push(async move { client.query_acks(&ids).await }.boxed());
        }
    }

    fn on_ack_answer(&mut self, answer: Result<HecResponse, TransportError>) {
        let outcome = match &answer {
            Ok(response) => classify_ack_response(response),
            Err(error) => AckOutcome::Transient { detail: error.to_string() },
        };
        match outcome {
            AckOutcome::Indexed(ids) => {
                for ack_id in ids {
                    if let Some(awaiting) = self.pending_acks.take(ack_id) {
                        self.deliver(awaiting.settlement);
                    }
                }
            }
            AckOutcome::Disabled if self.acks_enabled => {
                self.disable_acknowledgements("HEC answered code 14 (ACK is disabled) on /services/collector/ack");
            }
            AckOutcome::Disabled => {}
            AckOutcome::Fatal { message } => self.go_fatal(message),
            AckOutcome::Transient { detail } => {
                self.metrics.ack_query_failures.increment(1);
                tracing::warn!(sink = %self.cx.id, error = %detail, "Splunk HEC ack query failed; asking again at the next interval");
            }
        }
        self.metrics.acks_pending.set(self.pending_acks.len() as f64);
    }

    /// Stops delivery for good: reports the reason, settles everything held
    /// as errored (so no source commits past it), and from now on settles
    /// input as errored as it arrives.
    fn go_fatal(&mut self, message: String) {
        if self.fatal.is_some() {
            return;
        }
        let message = format!("sink \"{}\": {message}", self.cx.id);
        tracing::error!(sink = %self.cx.id, error = %message, "Splunk HEC sink stopped delivering; every event it receives is settled as errored until pipe is restarted with a fixed configuration");
        self.cx.health.failed(message.clone());
        self.fatal = Some(message);
        // Dropping requests in flight and encodings under way drops their
        // events' finalizers unsettled, which counts as errored (see
        // `event::finalization`); what the loop holds itself is settled here.
        self.in_flight = FuturesUnordered::new();
        self.encoding = FuturesUnordered::new();
        self.ack_query = FuturesUnordered::new();
        self.retrying = 0;
        self.new_batches_encoding = 0;
        for awaiting in self.pending_acks.take_all() {
            awaiting.settlement.finalizers.update_status(BatchStatus::Errored);
        }
        self.metrics.acks_pending.set(0.0);
        for event in std::mem::take(&mut self.open_batch) {
            event.settle(BatchStatus::Errored);
        }
        self.open_batch_estimated_bytes = 0;
        self.open_batch_deadline = None;
    }
}

fn estimated_envelope_bytes(event: &LogEvent) -> usize {
    event.byte_size() + event.field_count() * ESTIMATED_BYTES_PER_FIELD + ESTIMATED_ENVELOPE_OVERHEAD
}

/// Encodes `events` into requests. Runs on the blocking pool.
fn encode_requests(
    encoder: &HecEncoder,
    events: Vec<LogEvent>,
    mut buffer: Vec<u8>,
    max_bytes: usize,
    compression: Compression,
    now: chrono::DateTime<chrono::Utc>,
    new_batch: bool,
) -> Encoded {
    buffer.clear();
    let mut encoding = encoder.encode_batch(&events, now, &mut buffer);
    let failures = encoding.take_failures();
    let mut unencodable = Vec::new();
    // Usually every event encodes and the batch fills one request: the
    // events then move into it as they are, never copied element by element.
    let mut encoded_events = if failures.is_empty() {
        events
    } else {
        let mut failures = failures.into_iter().peekable();
        let mut encoded_events = Vec::with_capacity(events.len());
        for (index, event) in events.into_iter().enumerate() {
            match failures.next_if(|(failed, _)| *failed == index) {
                Some((_, error)) => unencodable.push((event, error.to_string())),
                None => encoded_events.push(event),
            }
        }
        encoded_events
    };
    let slices = split_into_requests(&buffer, &encoding, max_bytes, compression);
    let mut requests = Vec::with_capacity(slices.len());
    // From the last request back, so each takes the tail of what is left
    // and the first takes the rest whole.
    for (position, slice) in slices.into_iter().enumerate().rev() {
        debug_assert_eq!(encoded_events.len(), slice.events.end);
        let events = if position == 0 {
            std::mem::take(&mut encoded_events)
        } else {
            encoded_events.split_off(slice.events.start)
        };
        requests.push(Request {
            contents: Contents::Events { events, ends: slice.ends },
            payload: slice.payload,
            body_bytes: slice.body_bytes,
            raw_metadata: slice.raw_metadata,
            failures: 0,
        });
    }
    requests.reverse();
    Encoded { requests, unencodable, buffer, new_batch }
}

/// A request cut by `invalid-event-number`.
struct PartialSplit {
    /// Before the refused event: Splunk took them.
    accepted: Vec<LogEvent>,
    accepted_bytes: usize,
    refused: LogEvent,
    /// After it: never looked at, to be sent again.
    resend: Vec<LogEvent>,
}

/// Splits `events` around `event_number`, or hands them back if the number
/// is outside the request.
fn split_partial(
    mut events: Vec<LogEvent>,
    ends: &[usize],
    event_number: usize,
) -> Result<PartialSplit, Vec<LogEvent>> {
    if event_number >= events.len() {
        return Err(events);
    }
    let resend = events.split_off(event_number + 1);
    let refused = events.pop().expect("event_number is inside the request");
    let accepted_bytes = event_number.checked_sub(1).and_then(|last| ends.get(last)).copied().unwrap_or(0);
    Ok(PartialSplit { accepted: events, accepted_bytes, refused, resend })
}

/// Exponential backoff with equal jitter: half the step is fixed, half
/// random, so retries spread out but never collapse to zero. `Retry-After`
/// wins when it asks for longer. `jitter` is uniform in `[0, 1)`.
fn retry_delay(
    initial: Duration,
    max: Duration,
    failures: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    let step = initial.saturating_mul(1u32 << exponent).min(max);
    let delay = step / 2 + step.mul_f64(jitter.clamp(0.0, 1.0) / 2.0);
    delay.max(retry_after.unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{BatchNotifier, EventFinalizer, Value};
    use crate::sinks::splunk_hec::encoder::{EncoderSettings, EndpointTarget};

    fn event(json: &str) -> LogEvent {
        let Value::Object(fields) = serde_json::from_str::<Value>(json).unwrap() else { panic!("not an object") };
        LogEvent::from_fields("test", fields)
    }

    fn encoder(host: Option<&str>) -> HecEncoder {
        HecEncoder::new(EncoderSettings {
            target: EndpointTarget::Event,
            timestamp_field: Some("__time__".into()),
            indexed_fields: Vec::new(),
            host: host.map(str::to_string),
            source: None,
            sourcetype: None,
            index: None,
        })
        .unwrap()
    }

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_a_cap() {
        let second = Duration::from_secs(1);
        let max = Duration::from_secs(30);
        assert_eq!(retry_delay(second, max, 1, None, 0.0), Duration::from_millis(500));
        assert_eq!(
            retry_delay(second, max, 1, None, 0.999_999),
            Duration::from_millis(999) + Duration::from_nanos(999_500)
        );
        assert_eq!(retry_delay(second, max, 3, None, 0.0), Duration::from_secs(2));
        assert_eq!(retry_delay(second, max, 20, None, 1.0), max);
        assert_eq!(retry_delay(second, max, 1000, None, 0.0), max / 2, "no overflow for long outages");
        assert_eq!(retry_delay(second, max, 1, Some(Duration::from_secs(7)), 0.5), Duration::from_secs(7));
    }

    #[test]
    fn a_partial_refusal_splits_around_the_event_number() {
        let events: Vec<LogEvent> = (0..5).map(|n| event(&format!(r#"{{"n":{n}}}"#))).collect();
        let ends = [10, 20, 30, 40, 50];
        let split = split_partial(events.clone(), &ends, 2).ok().unwrap();
        let numbers =
            |events: &[LogEvent]| events.iter().map(|event| event.get("n").cloned().unwrap()).collect::<Vec<_>>();
        assert_eq!(numbers(&split.accepted), vec![Value::Integer(0), Value::Integer(1)]);
        assert_eq!(split.accepted_bytes, 20);
        assert_eq!(split.refused.get("n"), Some(&Value::Integer(2)));
        assert_eq!(numbers(&split.resend), vec![Value::Integer(3), Value::Integer(4)]);
        let first = split_partial(events.clone(), &ends, 0).ok().unwrap();
        assert!(first.accepted.is_empty() && first.accepted_bytes == 0 && first.resend.len() == 4);
        let last = split_partial(events.clone(), &ends, 4).ok().unwrap();
        assert!(last.resend.is_empty() && last.accepted.len() == 4);
        assert_eq!(split_partial(events, &ends, 5).err().unwrap().len(), 5);
    }

    /// A first send of `events` with `host` templated from field `h`, in
    /// uncompressed requests of at most `max_bytes`.
    fn encode_uncompressed(events: Vec<LogEvent>, max_bytes: usize) -> Encoded {
        encode_requests(
            &encoder(Some("{{ h }}")),
            events,
            Vec::new(),
            max_bytes,
            Compression::None,
            chrono::Utc::now(),
            true,
        )
    }

    #[test]
    fn every_request_carries_the_events_of_its_envelopes() {
        for failing in [None, Some(0), Some(3), Some(6)] {
            let events: Vec<LogEvent> = (0..7)
                .map(|n| {
                    let host = if Some(n) == failing { String::new() } else { r#""h":"x","#.to_string() };
                    event(&format!(r#"{{{host}"n":{n},"__time__":1}}"#))
                })
                .collect();
            let encoded = encode_uncompressed(events, 70);
            assert_eq!(encoded.unencodable.len(), usize::from(failing.is_some()));
            assert!(encoded.requests.len() > 2, "a small max_bytes cuts the batch into several requests");
            let mut seen = Vec::new();
            for request in &encoded.requests {
                let Contents::Events { events, .. } = &request.contents else {
                    panic!("a first send keeps its events")
                };
                let sent: Vec<Value> = serde_json::Deserializer::from_slice(&request.payload)
                    .into_iter::<serde_json::Value>()
                    .map(|envelope| Value::from(envelope.unwrap()["event"]["n"].as_i64().unwrap()))
                    .collect();
                let carried: Vec<Value> = events.iter().map(|event| event.get("n").unwrap().clone()).collect();
                assert_eq!(sent, carried, "failing event {failing:?}");
                seen.extend(carried);
            }
            let expected: Vec<Value> = (0..7).filter(|n| Some(*n) != failing).map(Value::from).collect();
            assert_eq!(seen, expected);
        }
    }

    #[tokio::test]
    async fn encoding_sets_unrenderable_events_aside_and_keeps_finalizers_with_their_events() {
        let (notifier, status) = BatchNotifier::new_with_receiver();
        let events: Vec<LogEvent> = [r#"{"h":"a","__time__":1}"#, r#"{"__time__":2}"#, r#"{"h":"c","__time__":3}"#]
            .iter()
            .map(|json| event(json).with_finalizer(EventFinalizer::new(Arc::clone(&notifier))))
            .collect();
        drop(notifier);
        let encoded = encode_uncompressed(events, 1_000_000);
        assert_eq!(encoded.unencodable.len(), 1);
        assert!(encoded.unencodable[0].1.contains("\"host\""), "{}", encoded.unencodable[0].1);
        assert_eq!(encoded.requests.len(), 1);
        let request = encoded.requests.into_iter().next().unwrap();
        assert_eq!(
            &request.payload[..],
            br#"{"time":1,"host":"a","event":{"h":"a"}}{"time":3,"host":"c","event":{"h":"c"}}"#
        );
        let Contents::Events { events, ends } = &request.contents else { panic!("a first send keeps its events") };
        assert_eq!(events.len(), 2);
        assert_eq!(ends.last().copied(), Some(request.body_bytes));
        let settlement = request.into_settlement();
        assert_eq!((settlement.events, settlement.finalizers.len()), (2, 1), "one batch's finalizers fold into one");
        settlement.finalizers.update_status(BatchStatus::Delivered);
        for (event, _) in encoded.unencodable {
            event.settle(BatchStatus::Delivered);
        }
        assert_eq!(status.await, BatchStatus::Delivered);
    }
}
