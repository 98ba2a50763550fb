//! End-to-end acknowledgements.
//!
//! A source creates one `BatchNotifier` per batch it emits (one SLS pull, one
//! block of file lines) and gives every event of the batch an `EventFinalizer`
//! pointing at it. The notifier reports the batch status to the source through a
//! `BatchStatusReceiver` when its last finalizer is gone.
//!
//! Guarantees:
//! - Every copy of an event settles separately: cloning an event (fan-out) gives
//!   the clone its own unsettled finalizer, so a batch resolves only after every
//!   sink that received a copy settled it.
//! - The batch status is the worst status of all its finalizers
//!   (`Delivered` < `Errored` < `Rejected`).
//! - A finalizer dropped without being settled counts as `Errored`: an event
//!   lost to a panic, an aborted task or a forgotten code path holds the
//!   checkpoint back instead of passing as delivered. Code that drops an event
//!   on purpose (a filter, a rule consuming it, a configured `drop_newest`
//!   buffer) settles it as `Delivered` first.
//! - The status is sent exactly once, from `Drop`, so it can never race with a
//!   later update.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use smallvec::SmallVec;
use tokio::sync::oneshot;

/// Outcome of delivering an event or a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum BatchStatus {
    /// Durably written by every sink that received it, or intentionally
    /// consumed or dropped by a transform.
    Delivered = 0,
    /// A transient failure that was not retried to success (for example the
    /// pipeline shut down with the event still in flight). Must be replayed.
    Errored = 1,
    /// A sink refused the event permanently and could not dead-letter it.
    Rejected = 2,
}

impl BatchStatus {
    fn from_u8(raw: u8) -> BatchStatus {
        match raw {
            0 => BatchStatus::Delivered,
            1 => BatchStatus::Errored,
            _ => BatchStatus::Rejected,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BatchStatus::Delivered => "delivered",
            BatchStatus::Errored => "errored",
            BatchStatus::Rejected => "rejected",
        }
    }
}

/// Shared by all finalizers of one batch; reports when the last one is dropped.
#[derive(Debug)]
pub struct BatchNotifier {
    status: AtomicU8,
    reporter: Option<oneshot::Sender<BatchStatus>>,
}

impl BatchNotifier {
    /// A new batch and the receiver that resolves with its final status.
    pub fn new_with_receiver() -> (Arc<BatchNotifier>, BatchStatusReceiver) {
        let (sender, receiver) = oneshot::channel();
        let notifier = BatchNotifier { status: AtomicU8::new(BatchStatus::Delivered as u8), reporter: Some(sender) };
        (Arc::new(notifier), BatchStatusReceiver { receiver })
    }

    fn update_status(&self, status: BatchStatus) {
        self.status.fetch_max(status as u8, Ordering::AcqRel);
    }
}

impl Drop for BatchNotifier {
    fn drop(&mut self) {
        if let Some(reporter) = self.reporter.take() {
            // The source may have stopped listening (it gave up waiting at
            // shutdown); nothing else is owed to it then.
            let _ = reporter.send(BatchStatus::from_u8(self.status.load(Ordering::Acquire)));
        }
    }
}

/// Resolves with the status of a batch once every event copy has settled.
#[derive(Debug)]
pub struct BatchStatusReceiver {
    receiver: oneshot::Receiver<BatchStatus>,
}

impl std::future::Future for BatchStatusReceiver {
    type Output = BatchStatus;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<BatchStatus> {
        std::pin::Pin::new(&mut self.receiver)
            .poll(cx)
            // The notifier always sends before it goes away; a closed channel
            // would mean it leaked, which must not count as delivered.
            .map(|result| result.unwrap_or(BatchStatus::Errored))
    }
}

/// One event copy's share of a batch.
#[derive(Debug)]
pub struct EventFinalizer {
    batch: Arc<BatchNotifier>,
    settled: bool,
}

impl EventFinalizer {
    pub fn new(batch: Arc<BatchNotifier>) -> EventFinalizer {
        EventFinalizer { batch, settled: false }
    }

    pub fn update_status(mut self, status: BatchStatus) {
        self.batch.update_status(status);
        self.settled = true;
    }
}

impl Clone for EventFinalizer {
    /// A clone is a new copy of the event that must settle on its own.
    fn clone(&self) -> EventFinalizer {
        EventFinalizer { batch: Arc::clone(&self.batch), settled: false }
    }
}

impl Drop for EventFinalizer {
    fn drop(&mut self) {
        if !self.settled {
            self.batch.update_status(BatchStatus::Errored);
        }
    }
}

/// The finalizers an event carries: usually none (acknowledgements off, or an
/// event a transform created) or one; more when events are merged.
#[derive(Debug, Default, Clone)]
pub struct EventFinalizers(SmallVec<[EventFinalizer; 1]>);

impl EventFinalizers {
    pub fn new(finalizer: EventFinalizer) -> EventFinalizers {
        let mut list = SmallVec::new();
        list.push(finalizer);
        EventFinalizers(list)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Adds `other`'s finalizers. One that points at the same batch as the
    /// last one held is folded into it: the list settles as a whole with one
    /// status, so one copy of the batch's share reports exactly what both
    /// would (the batch takes the worst status; a list dropped unsettled
    /// errs either way). A sink settling a request of ten thousand events
    /// from one SLS pull then holds one finalizer, not ten thousand.
    pub fn merge(&mut self, other: EventFinalizers) {
        for mut finalizer in other.0 {
            match self.0.last() {
                Some(last) if Arc::ptr_eq(&last.batch, &finalizer.batch) => finalizer.settled = true,
                _ => self.0.push(finalizer),
            }
        }
    }

    /// Settles every finalizer with `status`.
    pub fn update_status(self, status: BatchStatus) {
        for finalizer in self.0 {
            finalizer.update_status(status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finalizer_pair() -> (EventFinalizer, BatchStatusReceiver) {
        let (batch, receiver) = BatchNotifier::new_with_receiver();
        (EventFinalizer::new(batch), receiver)
    }

    #[tokio::test]
    async fn batch_resolves_when_last_copy_settles() {
        let (finalizer, mut receiver) = finalizer_pair();
        let copy = finalizer.clone();
        finalizer.update_status(BatchStatus::Delivered);
        assert!(futures::poll!(&mut receiver).is_pending());
        copy.update_status(BatchStatus::Delivered);
        assert_eq!(receiver.await, BatchStatus::Delivered);
    }

    #[tokio::test]
    async fn worst_status_wins() {
        let (finalizer, receiver) = finalizer_pair();
        let copy = finalizer.clone();
        copy.update_status(BatchStatus::Errored);
        finalizer.update_status(BatchStatus::Delivered);
        assert_eq!(receiver.await, BatchStatus::Errored);
    }

    #[tokio::test]
    async fn merged_copies_of_one_batch_fold_and_settle_as_they_would_apart() {
        let (first, first_status) = finalizer_pair();
        let (second, second_status) = finalizer_pair();
        let mut merged = EventFinalizers::default();
        for finalizer in [first.clone(), first.clone(), second.clone(), second, first.clone()] {
            merged.merge(EventFinalizers::new(finalizer));
        }
        assert_eq!(merged.len(), 3, "runs of one batch fold: first, second, first");
        merged.update_status(BatchStatus::Delivered);
        first.update_status(BatchStatus::Delivered);
        assert_eq!(first_status.await, BatchStatus::Delivered);
        assert_eq!(second_status.await, BatchStatus::Delivered);

        let (finalizer, status) = finalizer_pair();
        let mut merged = EventFinalizers::new(finalizer.clone());
        merged.merge(EventFinalizers::new(finalizer.clone()));
        finalizer.update_status(BatchStatus::Delivered);
        drop(merged);
        assert_eq!(status.await, BatchStatus::Errored, "a folded list dropped unsettled still errs");
    }

    #[tokio::test]
    async fn unsettled_drop_is_an_error_even_after_another_copy_was_delivered() {
        let (finalizer, receiver) = finalizer_pair();
        let copy = finalizer.clone();
        finalizer.update_status(BatchStatus::Delivered);
        drop(copy);
        assert_eq!(receiver.await, BatchStatus::Errored);
    }
}
