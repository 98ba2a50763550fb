//! Ordered checkpoint tracking for sources.
//!
//! A source hands out one ticket per batch, in read order, together with the
//! position just past the batch (`end_position`). Batches resolve in any
//! order; the committable position is the `end_position` of the last batch in
//! the longest prefix of `Delivered` batches.
//!
//! Invariant: the committable position never moves past a batch that is
//! unresolved, `Errored` or `Rejected`. A failed batch stays at the front and
//! blocks the prefix until the source rewinds (`reset`) and reads it again;
//! it is never skipped because later batches succeeded.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};
use metrics::Gauge;

use crate::event::{BatchNotifier, BatchStatus, BatchStatusReceiver};

/// Identifies one registered batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchTicket(u64);

#[derive(Debug)]
struct PendingBatch<P> {
    ticket: BatchTicket,
    end_position: P,
    status: Option<BatchStatus>,
}

#[derive(Debug)]
pub struct OrderedCheckpointTracker<P> {
    next_ticket: u64,
    /// Registered batches from the first one not yet folded into `committable`.
    pending: VecDeque<PendingBatch<P>>,
    committable: Option<P>,
}

impl<P> Default for OrderedCheckpointTracker<P> {
    fn default() -> Self {
        OrderedCheckpointTracker { next_ticket: 0, pending: VecDeque::new(), committable: None }
    }
}

impl<P: Clone> OrderedCheckpointTracker<P> {
    /// Starts with `committed` as the committable position (for example the
    /// checkpoint loaded at start-up).
    pub fn new(committed: Option<P>) -> Self {
        OrderedCheckpointTracker { committable: committed, ..Default::default() }
    }

    /// Registers the next batch in read order.
    pub fn register(&mut self, end_position: P) -> BatchTicket {
        let ticket = BatchTicket(self.next_ticket);
        self.next_ticket += 1;
        self.pending.push_back(PendingBatch { ticket, end_position, status: None });
        ticket
    }

    /// Records the status of a batch and advances the delivered prefix.
    /// Tickets from before a `reset` are ignored.
    pub fn resolve(&mut self, ticket: BatchTicket, status: BatchStatus) {
        let Some(front) = self.pending.front() else { return };
        let Some(offset) = ticket.0.checked_sub(front.ticket.0) else { return };
        let Some(batch) = self.pending.get_mut(offset as usize) else { return };
        debug_assert_eq!(batch.ticket, ticket);
        batch.status = Some(status);
        while let Some(front) = self.pending.front() {
            if front.status != Some(BatchStatus::Delivered) {
                break;
            }
            let front = self.pending.pop_front().expect("front exists");
            self.committable = Some(front.end_position);
        }
    }

    /// The position up to which everything was delivered.
    pub fn committable(&self) -> Option<&P> {
        self.committable.as_ref()
    }

    /// Number of registered batches not yet folded into the committable prefix.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The failed batch that blocks the prefix, if the front batch failed.
    pub fn blocked_by(&self) -> Option<(BatchTicket, BatchStatus)> {
        let front = self.pending.front()?;
        match front.status {
            Some(status) if status != BatchStatus::Delivered => Some((front.ticket, status)),
            _ => None,
        }
    }

    /// Forgets every pending batch, keeping the committable position. A source
    /// calls this when it rewinds to the committable position to read the
    /// failed batches again; late statuses for the old tickets are ignored.
    pub fn reset(&mut self) {
        self.pending.clear();
    }
}

/// Replaces the file at `path` with `body` atomically and durably: write a
/// temporary file beside it, fsync, rename over the old one, fsync the
/// directory. A crash leaves either the old content or the new, never a torn
/// file. Blocking: call it from a blocking thread. Sources keep their local
/// checkpoints with it.
pub fn replace_file_durably(path: &std::path::Path, body: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let directory =
        path.parent().filter(|directory| !directory.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(directory)?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = std::path::PathBuf::from(temporary);
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(body)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    std::fs::File::open(directory)?.sync_all()
}

type StatusFuture = Pin<Box<dyn Future<Output = (BatchTicket, BatchStatus)> + Send>>;

/// A checkpoint tracker joined with the acknowledgement receivers of the
/// batches in flight: the piece every checkpointing source needs.
///
/// `start_batch` registers a batch and returns the notifier its events'
/// finalizers share; `next_status` waits for the next batch to resolve and
/// folds it into the tracker. `next_status` is cancel-safe (it polls a
/// `FuturesUnordered`), so it can sit in a `select!` next to reading.
pub struct PendingBatches<P> {
    tracker: OrderedCheckpointTracker<P>,
    in_flight: FuturesUnordered<StatusFuture>,
    acks_pending: Gauge,
}

impl<P: Clone> PendingBatches<P> {
    pub fn new(committed: Option<P>, acks_pending: Gauge) -> Self {
        PendingBatches {
            tracker: OrderedCheckpointTracker::new(committed),
            in_flight: FuturesUnordered::new(),
            acks_pending,
        }
    }

    /// Registers the next batch, ending at `end_position`.
    pub fn start_batch(&mut self, end_position: P) -> Arc<BatchNotifier> {
        let ticket = self.tracker.register(end_position);
        let (notifier, receiver) = BatchNotifier::new_with_receiver();
        self.in_flight.push(Box::pin(with_ticket(ticket, receiver)));
        self.acks_pending.increment(1.0);
        notifier
    }

    /// Waits for the next batch to resolve, records it and returns its
    /// status; `None` when nothing is in flight.
    pub async fn next_status(&mut self) -> Option<BatchStatus> {
        let (ticket, status) = self.in_flight.next().await?;
        self.acks_pending.decrement(1.0);
        self.tracker.resolve(ticket, status);
        Some(status)
    }

    /// Waits until every batch in flight has resolved.
    pub async fn drain(&mut self) {
        while self.next_status().await.is_some() {}
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn committable(&self) -> Option<&P> {
        self.tracker.committable()
    }

    pub fn blocked_by(&self) -> Option<(BatchTicket, BatchStatus)> {
        self.tracker.blocked_by()
    }

    /// Forgets everything in flight (after a rewind). Their late statuses are ignored.
    pub fn reset(&mut self) {
        self.acks_pending.decrement(self.in_flight.len() as f64);
        self.in_flight = FuturesUnordered::new();
        self.tracker.reset();
    }
}

async fn with_ticket(ticket: BatchTicket, receiver: BatchStatusReceiver) -> (BatchTicket, BatchStatus) {
    (ticket, receiver.await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn out_of_order_resolution_commits_only_the_contiguous_prefix() {
        let mut tracker = OrderedCheckpointTracker::new(None);
        let first = tracker.register(10);
        let second = tracker.register(20);
        let third = tracker.register(30);
        tracker.resolve(third, BatchStatus::Delivered);
        assert_eq!(tracker.committable(), None);
        tracker.resolve(first, BatchStatus::Delivered);
        assert_eq!(tracker.committable(), Some(&10));
        tracker.resolve(second, BatchStatus::Delivered);
        assert_eq!(tracker.committable(), Some(&30));
        assert_eq!(tracker.pending(), 0);
    }

    #[test]
    fn an_errored_batch_holds_the_checkpoint_even_when_later_batches_succeed() {
        let mut tracker = OrderedCheckpointTracker::new(Some(0));
        let first = tracker.register(10);
        let second = tracker.register(20);
        let third = tracker.register(30);
        tracker.resolve(first, BatchStatus::Delivered);
        tracker.resolve(second, BatchStatus::Errored);
        tracker.resolve(third, BatchStatus::Delivered);
        assert_eq!(tracker.committable(), Some(&10));
        assert_eq!(tracker.blocked_by(), Some((second, BatchStatus::Errored)));
        tracker.reset();
        let again = tracker.register(20);
        tracker.resolve(third, BatchStatus::Delivered);
        assert_eq!(tracker.committable(), Some(&10), "a stale ticket must not advance anything");
        tracker.resolve(again, BatchStatus::Delivered);
        assert_eq!(tracker.committable(), Some(&20));
    }

    proptest! {
        /// Against a naive model: the committable position is the end of the
        /// longest all-delivered prefix, for any resolution order and statuses.
        #[test]
        fn matches_the_naive_prefix_model(
            statuses in prop::collection::vec(prop_oneof![
                6 => Just(BatchStatus::Delivered),
                1 => Just(BatchStatus::Errored),
                1 => Just(BatchStatus::Rejected),
            ], 0..40),
            order_seed in any::<u64>(),
            resolved_fraction in 0.0f64..=1.0,
        ) {
            let mut tracker = OrderedCheckpointTracker::new(None);
            let tickets: Vec<_> = (0..statuses.len()).map(|index| tracker.register(index + 1)).collect();
            let mut order: Vec<usize> = (0..statuses.len()).collect();
            let mut state = order_seed;
            for index in (1..order.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                order.swap(index, (state >> 33) as usize % (index + 1));
            }
            let resolved_count = (order.len() as f64 * resolved_fraction) as usize;
            let mut resolved = vec![false; statuses.len()];
            for &index in &order[..resolved_count] {
                tracker.resolve(tickets[index], statuses[index]);
                resolved[index] = true;
                let prefix = (0..statuses.len())
                    .take_while(|&i| resolved[i] && statuses[i] == BatchStatus::Delivered)
                    .count();
                let expected = if prefix == 0 { None } else { Some(prefix) };
                prop_assert_eq!(tracker.committable().copied(), expected);
            }
        }
    }
}
