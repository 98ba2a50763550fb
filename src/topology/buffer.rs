//! The bounded channel in front of every transform and sink.
//!
//! Capacity is counted in events, not batches, so memory stays bounded
//! whatever the batch sizes: a sender takes one semaphore permit per event
//! before it enqueues a batch, and the receiver returns them as it dequeues.
//! A batch larger than the whole capacity takes all permits, so it waits
//! for an empty buffer instead of deadlocking.
//!
//! When the buffer is full, `when_full = "block"` (the default) waits, which
//! is how a slow sink slows down the sources feeding it; the time spent
//! waiting is recorded in the `pipe_buffer_blocked_seconds` summary (its
//! `_sum` is the total time senders waited, its `_count` the number of waits).
//! `when_full = "drop_newest"` settles the batch as delivered and counts it in
//! `pipe_component_discarded_events_total{intentional="true"}`: the operator
//! chose to lose data rather than slow down.
//!
//! The senders never see an error while the receiver lives. When the receiver
//! is gone (its component stopped), a send hands the batch back so the caller
//! can settle it.

use std::sync::Arc;
use std::time::Instant;

use metrics::{Counter, Gauge, Histogram};
use serde::Deserialize;
use tokio::sync::{mpsc, Semaphore};

use crate::event::{BatchStatus, EventBatch};

/// Default capacity of a component's input buffer, in events. Large enough to
/// hold a few full source batches (an SLS pull is up to ~1000 logs per log
/// group list) so producers and consumers overlap, small enough that a full
/// buffer of 1 KiB events stays around 8 MB.
pub const DEFAULT_BUFFER_MAX_EVENTS: usize = 8192;

/// What a sender does when the buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    #[default]
    Block,
    DropNewest,
}

/// `[sinks.ID.buffer]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferOptions {
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    #[serde(default)]
    pub when_full: WhenFull,
}

impl Default for BufferOptions {
    fn default() -> Self {
        BufferOptions { max_events: DEFAULT_BUFFER_MAX_EVENTS, when_full: WhenFull::Block }
    }
}

fn default_max_events() -> usize {
    DEFAULT_BUFFER_MAX_EVENTS
}

/// Metric handles of one buffer, registered once.
#[derive(Clone)]
pub struct BufferMetrics {
    pub events: Gauge,
    pub blocked_seconds: Histogram,
    pub discarded_events: Counter,
}

impl BufferMetrics {
    /// Handles for the input buffer of component `id`.
    pub fn register(id: &str, kind: &'static str, component_type: &'static str) -> BufferMetrics {
        let labels = [
            ("component_id", id.to_string()),
            ("component_kind", kind.to_string()),
            ("component_type", component_type.to_string()),
        ];
        let mut discarded_labels = labels.to_vec();
        discarded_labels.push(("intentional", "true".to_string()));
        BufferMetrics {
            events: metrics::gauge!("pipe_buffer_events", &labels),
            blocked_seconds: metrics::histogram!("pipe_buffer_blocked_seconds", &labels),
            discarded_events: metrics::counter!("pipe_component_discarded_events_total", &discarded_labels),
        }
    }

    /// Handles that record nowhere, for tests and benches.
    pub fn detached() -> BufferMetrics {
        BufferMetrics { events: Gauge::noop(), blocked_seconds: Histogram::noop(), discarded_events: Counter::noop() }
    }
}

struct Shared {
    permits: Semaphore,
    capacity: usize,
    metrics: BufferMetrics,
}

impl Shared {
    fn permits_for(&self, events: usize) -> u32 {
        events.min(self.capacity) as u32
    }
}

/// The sending half; cloneable, one per upstream edge.
#[derive(Clone)]
pub struct BufferSender {
    sender: mpsc::UnboundedSender<EventBatch>,
    shared: Arc<Shared>,
    when_full: WhenFull,
}

/// The receiving half, owned by the downstream component.
pub struct BufferReceiver {
    receiver: mpsc::UnboundedReceiver<EventBatch>,
    shared: Arc<Shared>,
}

/// Creates a buffer holding at most `options.max_events` events.
pub fn buffer(options: BufferOptions, metrics: BufferMetrics) -> (BufferSender, BufferReceiver) {
    let capacity = options.max_events.max(1);
    let shared = Arc::new(Shared { permits: Semaphore::new(capacity), capacity, metrics });
    // The channel itself is unbounded: the semaphore is the bound, counted in
    // events rather than in batches.
    let (sender, receiver) = mpsc::unbounded_channel();
    (
        BufferSender { sender, shared: Arc::clone(&shared), when_full: options.when_full },
        BufferReceiver { receiver, shared },
    )
}

impl BufferSender {
    /// Enqueues `batch`, waiting for room (or discarding it under
    /// `drop_newest`). Returns the batch if the receiver is gone.
    pub async fn send(&self, batch: EventBatch) -> Result<(), EventBatch> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.sender.is_closed() {
            return Err(batch);
        }
        let needed = self.shared.permits_for(batch.len());
        let permit = match self.shared.permits.try_acquire_many(needed) {
            Ok(permit) => permit,
            Err(_) if self.when_full == WhenFull::DropNewest => {
                self.shared.metrics.discarded_events.increment(batch.len() as u64);
                for event in batch {
                    event.settle(BatchStatus::Delivered);
                }
                return Ok(());
            }
            Err(_) => {
                let started = Instant::now();
                let permit = self.shared.permits.acquire_many(needed).await.expect("the semaphore is never closed");
                self.shared.metrics.blocked_seconds.record(started.elapsed().as_secs_f64());
                permit
            }
        };
        // The receiver gives the permits back when it dequeues the batch.
        permit.forget();
        let events = batch.len();
        match self.sender.send(batch) {
            Ok(()) => {
                self.shared.metrics.events.increment(events as f64);
                Ok(())
            }
            Err(mpsc::error::SendError(batch)) => {
                self.shared.permits.add_permits(needed as usize);
                Err(batch)
            }
        }
    }

    /// Whether the receiving component has stopped.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

impl BufferReceiver {
    /// The next batch, or `None` once every sender is gone and the buffer is empty.
    pub async fn recv(&mut self) -> Option<EventBatch> {
        let batch = self.receiver.recv().await?;
        self.release(&batch);
        Some(batch)
    }

    /// A batch if one is ready now; used by sinks that coalesce what is queued.
    pub fn try_recv(&mut self) -> Option<EventBatch> {
        let batch = self.receiver.try_recv().ok()?;
        self.release(&batch);
        Some(batch)
    }

    fn release(&self, batch: &EventBatch) {
        self.shared.permits.add_permits(self.shared.permits_for(batch.len()) as usize);
        self.shared.metrics.events.decrement(batch.len() as f64);
    }

    /// Stops accepting new batches; queued ones can still be received.
    pub fn close(&mut self) {
        self.receiver.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{object_map_with_capacity, BatchNotifier, EventFinalizer, LogEvent};
    use std::time::Duration;

    fn batch(events: usize) -> EventBatch {
        (0..events).map(|_| LogEvent::from_fields("test", object_map_with_capacity(0))).collect()
    }

    #[tokio::test]
    async fn a_full_buffer_blocks_the_sender_until_the_receiver_takes_events() {
        let (sender, mut receiver) =
            buffer(BufferOptions { max_events: 10, when_full: WhenFull::Block }, BufferMetrics::detached());
        sender.send(batch(6)).await.unwrap();
        sender.send(batch(4)).await.unwrap();
        let blocked = tokio::spawn({
            let sender = sender.clone();
            async move { sender.send(batch(1)).await }
        });
        // The send cannot complete while the buffer holds 10 events.
        assert!(tokio::time::timeout(Duration::from_millis(50), async {
            while !blocked.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .is_err());
        assert_eq!(receiver.recv().await.unwrap().len(), 6);
        blocked.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn oversized_batches_wait_for_an_empty_buffer_instead_of_deadlocking() {
        let (sender, mut receiver) =
            buffer(BufferOptions { max_events: 4, when_full: WhenFull::Block }, BufferMetrics::detached());
        sender.send(batch(100)).await.unwrap();
        assert_eq!(receiver.recv().await.unwrap().len(), 100);
        sender.send(batch(100)).await.unwrap();
    }

    #[tokio::test]
    async fn drop_newest_settles_discarded_events_as_delivered() {
        let (sender, _receiver) =
            buffer(BufferOptions { max_events: 1, when_full: WhenFull::DropNewest }, BufferMetrics::detached());
        sender.send(batch(1)).await.unwrap();
        let (notifier, status) = BatchNotifier::new_with_receiver();
        let event =
            LogEvent::from_fields("test", object_map_with_capacity(0)).with_finalizer(EventFinalizer::new(notifier));
        sender.send(vec![event]).await.unwrap();
        assert_eq!(status.await, BatchStatus::Delivered);
    }

    #[tokio::test]
    async fn send_to_a_stopped_receiver_returns_the_batch() {
        let (sender, receiver) = buffer(BufferOptions::default(), BufferMetrics::detached());
        drop(receiver);
        assert_eq!(sender.send(batch(3)).await.unwrap_err().len(), 3);
    }
}
