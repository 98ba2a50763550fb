//! The running `wecom` sink: an input loop that queues alerts durably and
//! acknowledges them, and a delivery loop that groups, renders, splits,
//! paces and sends them (see the module doc of `wecom` for the contract).
//!
//! Ownership: `run` owns both loops. The delivery loop is a spawned task
//! whose handle `run` awaits before returning; the two share the
//! `SharedQueue`, a `Notify` (new alerts), a watch of the queue depth
//! (backpressure at `max_pending_alerts`) and two cancellation tokens (input
//! closed; delivery failed). Only the delivery loop sends; only the input
//! loop acknowledges.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use metrics::{Counter, Gauge, Histogram};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::api::SendError;
use super::app::{AppClient, TokenCache};
use super::message::{split_content, MessageFormat};
use super::queue::{AlertQueue, MessageOutcome, PendingMessage, QueueError, QueuedAlert, SharedQueue};
use super::rate::RateLimiter;
use super::robot::RobotClient;
use super::{DestinationSettings, WecomSettings};
use crate::event::{BatchStatus, EventFinalizers, LogEvent};
use crate::observability::ComponentMetrics;
use crate::sinks::dead_letter::DeadLetterWriter;
use crate::sinks::redact::redact_url;
use crate::topology::buffer::BufferReceiver;
use crate::topology::{ComponentError, ComponentFuture, Sink, SinkContext};

pub struct WecomSink {
    settings: WecomSettings,
}

impl WecomSink {
    pub fn new(settings: WecomSettings) -> WecomSink {
        WecomSink { settings }
    }
}

impl Sink for WecomSink {
    fn run(self: Box<Self>, input: BufferReceiver, cx: SinkContext) -> ComponentFuture {
        Box::pin(run(self.settings, input, cx))
    }
}

impl From<QueueError> for ComponentError {
    fn from(error: QueueError) -> ComponentError {
        ComponentError::new(error.to_string())
    }
}

/// Handles registered once per sink.
struct WecomMetrics {
    component: ComponentMetrics,
    messages_sent: Counter,
    split_parts: Counter,
    alerts_summarised: Counter,
    rate_limit_waits: Counter,
    rate_limit_wait_seconds: Histogram,
    queue_depth: Gauge,
    retries: HashMap<String, Counter>,
    message_rejected: Counter,
    configuration_errors: Counter,
    expired: Counter,
}

impl WecomMetrics {
    fn register(component: &ComponentMetrics) -> WecomMetrics {
        WecomMetrics {
            messages_sent: component.counter("pipe_wecom_messages_sent_total", &[]),
            split_parts: component.counter("pipe_wecom_split_parts_total", &[]),
            alerts_summarised: component.counter("pipe_wecom_alerts_summarised_total", &[]),
            rate_limit_waits: component.counter("pipe_wecom_rate_limit_waits_total", &[]),
            rate_limit_wait_seconds: component.histogram("pipe_wecom_rate_limit_wait_seconds", &[]),
            queue_depth: component.gauge("pipe_wecom_queue_depth", &[]),
            retries: HashMap::new(),
            message_rejected: component.errors("message_rejected", "sending"),
            configuration_errors: component.errors("configuration", "sending"),
            expired: component.errors("alert_time_limit", "sending"),
            component: component.clone(),
        }
    }

    /// `pipe_wecom_retries_total{errcode}`; the label set is small (a few
    /// errcodes and transport causes), so handles are registered on first use.
    fn retry(&mut self, label: &str) {
        if !self.retries.contains_key(label) {
            let counter = self.component.counter("pipe_wecom_retries_total", &[("errcode", label)]);
            self.retries.insert(label.to_string(), counter);
        }
        self.retries[label].increment(1);
    }
}

enum Destination {
    Robot(RobotClient),
    App(AppClient),
}

impl Destination {
    async fn send(&self, format: MessageFormat, content: &str) -> Result<(), SendError> {
        match self {
            Destination::Robot(robot) => robot.send(format, content).await,
            Destination::App(app) => app.send(format, content).await,
        }
    }

    fn limit_bytes(&self, format: MessageFormat) -> usize {
        match self {
            Destination::Robot(_) => RobotClient::limit_bytes(format),
            Destination::App(_) => AppClient::limit_bytes(format),
        }
    }
}

fn build_destination(
    settings: &WecomSettings,
    metrics: &ComponentMetrics,
) -> Result<(Destination, Arc<RateLimiter>), ComponentError> {
    let client = reqwest::Client::builder()
        .timeout(settings.request_timeout)
        .build()
        .map_err(|error| ComponentError::new(format!("cannot build the HTTP client: {error}")))?;
    let endpoint = settings.endpoint.as_str();
    match &settings.destination {
        DestinationSettings::Robot { key, mentioned_list, mentioned_mobile_list } => {
            let robot = RobotClient::new(client, endpoint, key, mentioned_list.clone(), mentioned_mobile_list.clone())
                .map_err(ComponentError::new)?;
            let limiter = RateLimiter::shared(
                &[endpoint, "robot", key.expose()],
                settings.rate_limit_messages,
                settings.rate_limit_window,
            );
            Ok((Destination::Robot(robot), limiter))
        }
        DestinationSettings::App { corp_id, corp_secret, agent_id, recipients, duplicate_check_interval } => {
            let tokens = TokenCache::shared(endpoint, corp_id, corp_secret).map_err(ComponentError::new)?;
            let app = AppClient::new(
                client,
                endpoint,
                tokens,
                *agent_id,
                recipients.clone(),
                *duplicate_check_interval,
                metrics.counter("pipe_wecom_token_fetches_total", &[]),
            )
            .map_err(ComponentError::new)?;
            let agent = agent_id.to_string();
            let limiter = RateLimiter::shared(
                &[endpoint, "app", corp_id, &agent],
                settings.rate_limit_messages,
                settings.rate_limit_window,
            );
            Ok((Destination::App(app), limiter))
        }
    }
}

async fn run(settings: WecomSettings, mut input: BufferReceiver, cx: SinkContext) -> Result<(), ComponentError> {
    let (destination, limiter) = build_destination(&settings, &cx.metrics)?;
    let directory = cx.data_dir.join("wecom").join(&*cx.id);
    let sink_id = cx.id.to_string();
    let (queue, report) = tokio::task::spawn_blocking(move || AlertQueue::open(&directory, &sink_id))
        .await
        .map_err(|error| ComponentError::new(format!("cannot open the WeCom alert queue: {error}")))??;
    let queue_path = queue.path().display().to_string();
    let initial_depth = queue.depth();
    if report.waiting_alerts + report.pending_messages > 0 || report.skipped_lines > 0 {
        tracing::info!(
            sink = %cx.id,
            waiting_alerts = report.waiting_alerts,
            pending_messages = report.pending_messages,
            skipped_lines = report.skipped_lines,
            path = %queue_path,
            "resuming WeCom alerts queued before the last stop"
        );
    }
    let endpoint = redact_url(&settings.endpoint);
    let mode = match destination {
        Destination::Robot(_) => "robot",
        Destination::App(_) => "app",
    };
    tracing::info!(sink = %cx.id, %endpoint, mode, "WeCom sink started");

    let metrics = WecomMetrics::register(&cx.metrics);
    metrics.queue_depth.set(initial_depth as f64);
    let queue = SharedQueue::new(queue);
    let alerts_queued = Arc::new(Notify::new());
    let (depth_sender, mut depth) = watch::channel(initial_depth);
    let depth_publisher = Arc::new(DepthPublisher { gauge: metrics.queue_depth.clone(), sender: depth_sender });
    let input_closed = CancellationToken::new();
    let delivery_failed = CancellationToken::new();

    let delivery = Delivery {
        queue: queue.clone(),
        limit_bytes: destination.limit_bytes(settings.renderer.format),
        destination,
        limiter,
        dead_letters: DeadLetterWriter::new(&cx.data_dir, &cx.id, &cx.metrics),
        metrics,
        cx: cx.clone(),
        alerts_queued: Arc::clone(&alerts_queued),
        input_closed: input_closed.clone(),
        depth: Arc::clone(&depth_publisher),
        settings: settings.clone(),
    };
    let failed = delivery_failed.clone();
    let delivery_task = tokio::spawn(async move {
        let result = delivery.run().await;
        if result.is_err() {
            failed.cancel();
        }
        result
    });

    let input_result: Result<(), ComponentError> = async {
        loop {
            // Backpressure: stop reading while the queue is full.
            // Cancel-safe: `wait_for` and `cancelled` hold no data.
            tokio::select! {
                waited = depth.wait_for(|queued| *queued < settings.max_pending_alerts) => {
                    if waited.is_err() { return Ok(()) }
                }
                _ = delivery_failed.cancelled() => return Ok(()),
            }
            // Cancel-safe: `recv` loses nothing when the other arm wins.
            let batch = tokio::select! {
                batch = input.recv() => batch,
                _ = delivery_failed.cancelled() => return Ok(()),
            };
            let Some(mut batch) = batch else { return Ok(()) };
            while let Some(mut more) = input.try_recv() {
                batch.append(&mut more);
            }
            cx.record_received(&batch);
            let mut finalizers = EventFinalizers::default();
            let events: Vec<(LogEvent, Option<std::time::Instant>)> = batch
                .into_iter()
                .map(|mut event| {
                    finalizers.merge(event.take_finalizers());
                    let received_at = event.metadata().received_at;
                    (event, Some(received_at))
                })
                .collect();
            match queue.run(move |queue| queue.push_alerts(events).map(|_| queue.depth())).await {
                Ok(Ok(queued)) => {
                    // The durable write is done: acknowledge upstream now; the
                    // queue guarantees delivery or dead-lettering from here on.
                    finalizers.update_status(BatchStatus::Delivered);
                    depth_publisher.publish(queued);
                    alerts_queued.notify_one();
                }
                Ok(Err(error)) | Err(error) => {
                    finalizers.update_status(BatchStatus::Errored);
                    return Err(ComponentError::from(error));
                }
            }
        }
    }
    .await;

    input_closed.cancel();
    let delivery_result =
        delivery_task.await.map_err(|error| ComponentError::new(format!("WeCom delivery task failed: {error}")))?;
    input_result?;
    delivery_result
}

/// The queue depth, published to the gauge and to the input loop (which
/// stops reading at `max_pending_alerts`).
struct DepthPublisher {
    gauge: Gauge,
    sender: watch::Sender<usize>,
}

impl DepthPublisher {
    fn publish(&self, depth: usize) {
        self.gauge.set(depth as f64);
        self.sender.send_replace(depth);
    }
}

/// How one attempt at a pending message ended.
enum Progress {
    /// Delivered or dead-lettered: the message is done.
    Finished,
    /// The input closed while waiting; start over with a drain deadline.
    Interrupted,
    /// The drain deadline would pass before the next attempt: leave it queued.
    Postponed,
}

struct Delivery {
    queue: SharedQueue,
    destination: Destination,
    limit_bytes: usize,
    limiter: Arc<RateLimiter>,
    dead_letters: DeadLetterWriter,
    metrics: WecomMetrics,
    cx: SinkContext,
    alerts_queued: Arc<Notify>,
    input_closed: CancellationToken,
    depth: Arc<DepthPublisher>,
    settings: WecomSettings,
}

impl Delivery {
    async fn run(mut self) -> Result<(), ComponentError> {
        let mut drain_deadline: Option<Instant> = None;
        loop {
            if drain_deadline.is_none() && self.input_closed.is_cancelled() {
                drain_deadline = Some(Instant::now() + self.settings.drain_timeout);
            }
            if let Some(message) = self.queue.read(|queue| queue.front_message().cloned()) {
                match self.deliver(message, drain_deadline).await? {
                    Progress::Finished | Progress::Interrupted => continue,
                    Progress::Postponed => break,
                }
            }
            let Some(first_arrived) = self.queue.read(|queue| queue.waiting().next().map(|alert| alert.arrived)) else {
                if drain_deadline.is_some() {
                    break;
                }
                // Cancel-safe: neither arm holds data; a notification that
                // arrives while nobody waits is kept as a permit.
                tokio::select! {
                    _ = self.alerts_queued.notified() => {}
                    _ = self.input_closed.cancelled() => {}
                }
                continue;
            };
            let ready_at = first_arrived + self.settings.group_wait;
            if drain_deadline.is_none() && Instant::now() < ready_at {
                // Cancel-safe: a timer and a token.
                tokio::select! {
                    _ = tokio::time::sleep_until(ready_at) => {}
                    _ = self.input_closed.cancelled() => {}
                }
                continue;
            }
            self.form_message(first_arrived).await?;
        }
        let left = self.queue.read(AlertQueue::depth);
        if left > 0 {
            tracing::info!(sink = %self.cx.id, alerts = left, "WeCom alerts stay queued for the next start");
        }
        Ok(())
    }

    /// Groups the waiting alerts that arrived within `group_wait` of the
    /// first, dead-letters the expired ones, renders and splits the rest and
    /// records the message durably.
    async fn form_message(&mut self, first_arrived: Instant) -> Result<(), ComponentError> {
        let group_end = first_arrived + self.settings.group_wait;
        let now = Utc::now();
        let time_limit = self.settings.alert_time_limit;
        let group_max = self.settings.group_max;
        // Only the alerts shown (and the expired ones, for the dead-letter
        // file) are copied out; a burst of thousands is counted by id.
        let (expired, group_ids, shown) = self.queue.read(|queue| {
            let mut expired = Vec::new();
            let mut group_ids = Vec::new();
            let mut shown: Vec<LogEvent> = Vec::new();
            for alert in queue.waiting().take_while(|alert| alert.arrived <= group_end) {
                if (now - alert.queued_at).to_std().is_ok_and(|age| age > time_limit) {
                    expired.push(alert.clone());
                } else {
                    group_ids.push(alert.id);
                    if shown.len() < group_max {
                        shown.push(alert.event.clone());
                    }
                }
            }
            (expired, group_ids, shown)
        });
        if !expired.is_empty() {
            self.metrics.expired.increment(expired.len() as u64);
            let ids: Vec<u64> = expired.iter().map(|alert| alert.id).collect();
            let reason = format!(
                "not delivered within alert_time_limit ({}); not sent",
                crate::config::units::format_duration(time_limit)
            );
            self.dead_letter(expired, &reason).await?;
            self.queue.run(move |queue| queue.dead_letter_alerts(&ids)).await??;
            self.publish_depth();
        }
        if group_ids.is_empty() {
            return Ok(());
        }
        let summarised = group_ids.len() - shown.len();
        let events: Vec<&LogEvent> = shown.iter().collect();
        let content = self.settings.renderer.render_group(&events, summarised, now);
        let parts = split_content(&content, self.limit_bytes, self.settings.renderer.format);
        if parts.len() > 1 {
            self.metrics.split_parts.increment(parts.len() as u64);
        }
        if summarised > 0 {
            self.metrics.alerts_summarised.increment(summarised as u64);
        }
        self.queue.run(move |queue| queue.form_message(group_ids, parts)).await??;
        Ok(())
    }

    /// Sends the remaining parts of `message` in order.
    async fn deliver(
        &mut self,
        message: PendingMessage,
        drain_deadline: Option<Instant>,
    ) -> Result<Progress, ComponentError> {
        let mut parts_delivered = message.parts_delivered;
        let mut attempt = 0u32;
        while parts_delivered < message.parts.len() {
            if self.message_expired(&message) {
                self.metrics.expired.increment(message.alert_ids.len() as u64);
                let reason = format!(
                    "not delivered within alert_time_limit ({}); {} of {} parts were sent",
                    crate::config::units::format_duration(self.settings.alert_time_limit),
                    parts_delivered,
                    message.parts.len()
                );
                self.dead_letter_message(&message, &reason).await?;
                return Ok(Progress::Finished);
            }
            // Cancel-safe: `acquire` takes a slot only when it returns.
            let acquired = tokio::select! {
                acquired = self.limiter.acquire(drain_deadline) => acquired,
                _ = self.input_closed.cancelled(), if drain_deadline.is_none() => return Ok(Progress::Interrupted),
            };
            match acquired {
                Ok(waited) if !waited.is_zero() => {
                    self.metrics.rate_limit_waits.increment(1);
                    self.metrics.rate_limit_wait_seconds.record(waited.as_secs_f64());
                }
                Ok(_) => {}
                Err(_) => return Ok(Progress::Postponed),
            }
            let part = &message.parts[parts_delivered];
            match self.destination.send(self.settings.renderer.format, part).await {
                Ok(()) => {
                    self.metrics.messages_sent.increment(1);
                    parts_delivered += 1;
                    attempt = 0;
                    let id = message.id;
                    let finished = self.queue.run(move |queue| queue.record_progress(id, parts_delivered)).await??;
                    if let Some(alerts) = finished {
                        let bytes = alerts.iter().map(|alert| alert.event.byte_size()).sum();
                        self.cx.record_delivered(
                            alerts.len(),
                            bytes,
                            alerts.iter().filter_map(|alert| alert.received_at),
                        );
                        self.publish_depth();
                    }
                }
                Err(SendError::Retryable { label, reason }) => {
                    attempt += 1;
                    self.metrics.retry(&label);
                    let delay = self.settings.backoff.delay(attempt);
                    tracing::warn!(sink = %self.cx.id, %reason, attempt, retry_in = ?delay, "WeCom send failed; retrying");
                    if let Some(progress) = self.wait(delay, drain_deadline).await {
                        return Ok(progress);
                    }
                }
                Err(SendError::FrequencyLimited { errcode, summary }) => {
                    self.metrics.retry(&errcode.to_string());
                    let window = self.limiter.window();
                    tracing::warn!(sink = %self.cx.id, errcode, %summary, wait = ?window, "WeCom frequency limit; waiting the window out");
                    self.limiter.block_for(window);
                }
                Err(SendError::MessageRejected { errcode, summary }) => {
                    self.metrics.message_rejected.increment(1);
                    let reason = format!("WeCom refused the message with errcode {errcode}: {summary}");
                    tracing::warn!(sink = %self.cx.id, errcode, %summary, "WeCom refused a message; dead-lettering its alerts");
                    self.dead_letter_message(&message, &reason).await?;
                    return Ok(Progress::Finished);
                }
                Err(error @ (SendError::Fatal { .. } | SendError::TokenRejected { .. })) => {
                    self.metrics.configuration_errors.increment(1);
                    let reason = format!("sink \"{}\": {error}", self.cx.id);
                    self.dead_letter_message(&message, &reason).await?;
                    self.cx.health.failed(reason.clone());
                    return Err(ComponentError::new(reason));
                }
            }
        }
        Ok(Progress::Finished)
    }

    /// Waits `delay` before a retry. `None` to go on; otherwise why not.
    async fn wait(&self, delay: std::time::Duration, drain_deadline: Option<Instant>) -> Option<Progress> {
        let retry_at = Instant::now() + delay;
        if drain_deadline.is_some_and(|deadline| retry_at > deadline) {
            return Some(Progress::Postponed);
        }
        // Cancel-safe: a timer and a token.
        tokio::select! {
            _ = tokio::time::sleep_until(retry_at) => None,
            _ = self.input_closed.cancelled(), if drain_deadline.is_none() => Some(Progress::Interrupted),
        }
    }

    /// Whether even the newest alert of `message` is past `alert_time_limit`.
    fn message_expired(&self, message: &PendingMessage) -> bool {
        let now = Utc::now();
        let limit = self.settings.alert_time_limit;
        self.queue.read(|queue| {
            let newest = message.alert_ids.iter().filter_map(|id| queue.alert(*id)).map(|alert| alert.queued_at).max();
            newest.is_some_and(|queued_at| (now - queued_at).to_std().is_ok_and(|age| age > limit))
        })
    }

    async fn dead_letter_message(&mut self, message: &PendingMessage, reason: &str) -> Result<(), ComponentError> {
        let alerts: Vec<QueuedAlert> =
            self.queue.read(|queue| message.alert_ids.iter().filter_map(|id| queue.alert(*id).cloned()).collect());
        self.dead_letter(alerts, reason).await?;
        let id = message.id;
        self.queue.run(move |queue| queue.finish_message(id, MessageOutcome::DeadLettered)).await??;
        self.publish_depth();
        Ok(())
    }

    /// Writes the dead-letter file; the alerts were acknowledged when queued,
    /// so there is nothing to settle. If the write fails the sink stops and
    /// the alerts stay queued.
    async fn dead_letter(&self, alerts: Vec<QueuedAlert>, reason: &str) -> Result<(), ComponentError> {
        let entries = alerts.into_iter().map(|alert| (alert.event, reason.to_string())).collect();
        self.dead_letters.append(entries).await.map_err(|error| {
            ComponentError::new(format!(
                "cannot write the dead-letter file {}: {error}; the alerts stay queued",
                self.dead_letters.path().display()
            ))
        })
    }

    fn publish_depth(&self) {
        self.depth.publish(self.queue.read(AlertQueue::depth));
    }
}
