//! The runtime interface of components and the contexts they run with.
//!
//! A component's config (`SourceConfig`, `TransformConfig`, `SinkConfig`
//! variants) builds a runtime value without doing IO; the topology then runs
//! it with a context:
//! - `Source::run(SourceContext)`: reads, sends batches through
//!   `SourceContext::output`, stops when `SourceContext::shutdown` fires, waits
//!   for its outstanding acknowledgements (bounded), commits, returns.
//!   Sources are the only components that watch the shutdown token.
//! - `Transform::Function`: a synchronous per-batch function the topology
//!   drives; `Transform::Task`: owns its input loop (for timers, such as rule
//!   housekeeping) and returns when its input closes.
//! - `Sink::run(BufferReceiver, SinkContext)`: consumes batches until the
//!   input closes, settles each event's finalizers only after a durable write,
//!   flushes, returns.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use indexmap::IndexMap;
use metrics::Gauge;
use tokio_util::sync::CancellationToken;

use super::buffer::BufferReceiver;
use super::fanout::Fanout;
use crate::event::{EventBatch, LogEvent};
use crate::observability::{ComponentHealth, ComponentMetrics, LatencyRecorder, Telemetry};

/// Why a component stopped abnormally. The message is shown in the log and on
/// `/health`; it must not contain secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ComponentError {
    pub message: String,
}

impl ComponentError {
    pub fn new(message: impl Into<String>) -> ComponentError {
        ComponentError { message: message.into() }
    }
}

impl From<std::io::Error> for ComponentError {
    fn from(error: std::io::Error) -> ComponentError {
        ComponentError::new(error.to_string())
    }
}

/// A configuration problem found while building a component; the config layer
/// adds the file and component id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

impl BuildError {
    pub fn new(message: impl Into<String>) -> BuildError {
        BuildError(message.into())
    }
}

pub type ComponentFuture = BoxFuture<'static, Result<(), ComponentError>>;

/// What a component's `build` may look at. Building does no IO.
#[derive(Debug, Clone)]
pub struct BuildContext {
    pub id: String,
    pub data_dir: PathBuf,
}

pub trait Source: Send + 'static {
    fn run(self: Box<Self>, cx: SourceContext) -> ComponentFuture;
}

/// Output buffer of one synchronous transform call: events for the default
/// output and for named outputs.
#[derive(Default)]
pub struct TransformOutputBuffer {
    pub default: EventBatch,
    pub named: IndexMap<String, EventBatch>,
}

impl TransformOutputBuffer {
    /// Moves every event of `batch` to the default output, in order. A
    /// batch going to an empty output moves as a whole (a pointer swap, not
    /// a copy of ten thousand events).
    pub fn append(&mut self, batch: &mut EventBatch) {
        if self.default.is_empty() {
            std::mem::swap(&mut self.default, batch);
        } else {
            self.default.append(batch);
        }
    }

    pub fn push(&mut self, event: LogEvent) {
        self.default.push(event);
    }

    pub fn push_named(&mut self, output: &str, event: LogEvent) {
        match self.named.get_mut(output) {
            Some(batch) => batch.push(event),
            None => {
                self.named.insert(output.to_string(), vec![event]);
            }
        }
    }
}

pub trait FunctionTransform: Send + 'static {
    /// Transforms one batch. Every input event must end up in `output`, or be
    /// settled (`LogEvent::settle`) if the transform drops or consumes it.
    fn transform(&mut self, batch: EventBatch, output: &mut TransformOutputBuffer);
}

pub trait TaskTransform: Send + 'static {
    fn run(self: Box<Self>, input: BufferReceiver, outputs: TransformOutputs, cx: TransformContext) -> ComponentFuture;
}

pub enum Transform {
    Function(Box<dyn FunctionTransform>),
    Task(Box<dyn TaskTransform>),
}

pub trait Sink: Send + 'static {
    fn run(self: Box<Self>, input: BufferReceiver, cx: SinkContext) -> ComponentFuture;
}

/// The sending side of a source. Clone it to send from several tasks (one
/// per partition, say); the consumers' buffers close when the last clone is
/// dropped.
#[derive(Clone)]
pub struct SourceOutput {
    fanout: Fanout,
    metrics: ComponentMetrics,
    telemetry: Telemetry,
}

impl SourceOutput {
    pub(crate) fn new(fanout: Fanout, metrics: ComponentMetrics, telemetry: Telemetry) -> SourceOutput {
        SourceOutput { fanout, metrics, telemetry }
    }

    /// Sends a batch downstream, waiting while buffers are full.
    pub async fn send(&mut self, batch: EventBatch) {
        let events = batch.len() as u64;
        let bytes: usize = batch.iter().map(LogEvent::byte_size).sum();
        self.metrics.sent_events.increment(events);
        self.metrics.sent_bytes.increment(bytes as u64);
        self.telemetry.progress.add_in(events);
        self.fanout.send(batch).await;
    }
}

/// Everything a source runs with.
pub struct SourceContext {
    pub id: Arc<str>,
    pub output: SourceOutput,
    /// Fires when the pipeline stops or reloads. Only sources watch it.
    pub shutdown: CancellationToken,
    pub data_dir: PathBuf,
    pub health: ComponentHealth,
    pub metrics: ComponentMetrics,
    pub telemetry: Telemetry,
    pub acks_pending: Gauge,
}

impl SourceContext {
    /// Publishes `pipe_source_lag_seconds{partition}` and feeds the progress line.
    pub fn lag_gauge(&self, partition: &str) -> LagGauge {
        self.lag_gauge_with_labels(partition, &[])
    }

    /// Like `lag_gauge`, with source-specific labels next to `partition`
    /// (the SLS source adds `logstore` and `shard`).
    pub fn lag_gauge_with_labels(&self, partition: &str, extra: &[(&'static str, &str)]) -> LagGauge {
        self.lag_gauges().gauge(partition, extra)
    }

    /// A cloneable maker of lag gauges, for sources that discover partitions
    /// while running (SLS shards) in tasks that do not own the context.
    pub fn lag_gauges(&self) -> LagGauges {
        LagGauges { metrics: self.metrics.clone(), telemetry: self.telemetry.clone(), source: Arc::clone(&self.id) }
    }
}

/// Makes `LagGauge`s for one source; see `SourceContext::lag_gauges`.
#[derive(Clone)]
pub struct LagGauges {
    metrics: ComponentMetrics,
    telemetry: Telemetry,
    source: Arc<str>,
}

impl LagGauges {
    /// `pipe_source_lag_seconds{partition, extra...}` for one partition.
    pub fn gauge(&self, partition: &str, extra: &[(&'static str, &str)]) -> LagGauge {
        let mut labels = vec![("partition", partition)];
        labels.extend_from_slice(extra);
        LagGauge {
            gauge: self.metrics.gauge("pipe_source_lag_seconds", &labels),
            telemetry: self.telemetry.clone(),
            source: Arc::clone(&self.source),
            partition: Arc::from(partition),
        }
    }
}

/// One partition's lag gauge.
#[derive(Clone)]
pub struct LagGauge {
    gauge: Gauge,
    telemetry: Telemetry,
    source: Arc<str>,
    partition: Arc<str>,
}

impl LagGauge {
    pub fn set(&self, seconds: f64) {
        self.gauge.set(seconds);
        self.telemetry.progress.set_lag(&self.source, &self.partition, seconds);
    }

    /// The partition is no longer read by this process.
    pub fn clear(&self) {
        self.gauge.set(0.0);
        self.telemetry.progress.clear_lag(&self.source, &self.partition);
    }
}

/// The sending side of a transform: its default and named outputs.
pub struct TransformOutputs {
    pub(crate) default: Option<Fanout>,
    pub(crate) named: IndexMap<String, Fanout>,
    pub(crate) metrics: ComponentMetrics,
}

impl TransformOutputs {
    pub async fn send(&mut self, buffer: TransformOutputBuffer) {
        let TransformOutputBuffer { default, named } = buffer;
        if !default.is_empty() {
            self.record_sent(&default);
            match self.default.as_mut() {
                Some(fanout) => fanout.send(default).await,
                None => debug_assert!(false, "a transform without a default output pushed to it"),
            }
        }
        for (output, batch) in named {
            if batch.is_empty() {
                continue;
            }
            self.record_sent(&batch);
            match self.named.get_mut(&output) {
                Some(fanout) => fanout.send(batch).await,
                None => debug_assert!(false, "a transform pushed to an undeclared output {output}"),
            }
        }
    }

    fn record_sent(&self, batch: &EventBatch) {
        self.metrics.sent_events.increment(batch.len() as u64);
        self.metrics.sent_bytes.increment(batch.iter().map(LogEvent::byte_size).sum::<usize>() as u64);
    }
}

/// Everything a transform runs with.
#[derive(Clone)]
pub struct TransformContext {
    pub id: Arc<str>,
    pub data_dir: PathBuf,
    pub health: ComponentHealth,
    pub metrics: ComponentMetrics,
}

/// Everything a sink runs with.
#[derive(Clone)]
pub struct SinkContext {
    pub id: Arc<str>,
    pub data_dir: PathBuf,
    pub health: ComponentHealth,
    pub metrics: ComponentMetrics,
    pub latency: LatencyRecorder,
    pub telemetry: Telemetry,
}

impl SinkContext {
    /// Records a batch the sink has just durably delivered: sent counters,
    /// end-to-end latency and the progress line. Call it after settling.
    pub fn record_delivered(&self, events: usize, bytes: usize, received: impl IntoIterator<Item = Instant>) {
        self.metrics.sent_events.increment(events as u64);
        self.metrics.sent_bytes.increment(bytes as u64);
        self.latency.record_batch(received);
        self.telemetry.progress.add_out(events as u64);
    }

    /// Records a batch the sink has received from its input.
    pub fn record_received(&self, batch: &EventBatch) {
        self.metrics.received_events.increment(batch.len() as u64);
        self.metrics.received_bytes.increment(batch.iter().map(LogEvent::byte_size).sum::<usize>() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(names: &[&str]) -> EventBatch {
        names
            .iter()
            .map(|name| {
                let mut event = LogEvent::from_fields("test", Default::default());
                event.insert("n", *name);
                event
            })
            .collect()
    }

    fn names(batch: &EventBatch) -> Vec<&str> {
        batch.iter().map(|event| event.get("n").and_then(crate::event::Value::as_str).unwrap()).collect()
    }

    #[test]
    fn append_keeps_order_whether_the_output_is_empty_or_not() {
        let mut output = TransformOutputBuffer::default();
        let mut first = batch(&["a", "b"]);
        output.append(&mut first);
        let mut second = batch(&["c"]);
        output.append(&mut second);
        assert!(first.is_empty() && second.is_empty(), "appended batches are left empty");
        assert_eq!(names(&output.default), ["a", "b", "c"]);
    }
}
