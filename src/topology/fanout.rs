//! Delivery of one component output to every downstream input buffer.
//!
//! With one consumer the batch moves; with several, each consumer but the
//! last gets a clone (each clone of an event gets its own finalizer share,
//! so the source's batch resolves only when every consumer settled its
//! copy). Sends happen one consumer after another, so the slowest consumer
//! sets the pace: that is the backpressure contract.
//!
//! An output nobody consumes (validation warned about it) settles its events
//! as delivered and counts them as intentionally discarded. A consumer that
//! has stopped stays in the list: every copy meant for it from then on is
//! dropped unsettled, which marks its batch errored, so no checkpoint passes
//! an event that consumer never got.

use metrics::Counter;

use super::buffer::BufferSender;
use crate::event::{BatchStatus, EventBatch};

#[derive(Clone)]
pub struct Fanout {
    consumers: Vec<Consumer>,
    discarded_without_consumer: Counter,
}

#[derive(Clone)]
struct Consumer {
    id: String,
    sender: BufferSender,
    reported_stopped: bool,
}

impl Fanout {
    pub fn new(consumers: Vec<(String, BufferSender)>, discarded_without_consumer: Counter) -> Fanout {
        let consumers =
            consumers.into_iter().map(|(id, sender)| Consumer { id, sender, reported_stopped: false }).collect();
        Fanout { consumers, discarded_without_consumer }
    }

    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    pub async fn send(&mut self, batch: EventBatch) {
        if batch.is_empty() {
            return;
        }
        if self.consumers.is_empty() {
            self.discarded_without_consumer.increment(batch.len() as u64);
            for event in batch {
                event.settle(BatchStatus::Delivered);
            }
            return;
        }
        let last = self.consumers.len() - 1;
        let mut batch = Some(batch);
        for (index, consumer) in self.consumers.iter_mut().enumerate() {
            let copy = if index == last {
                batch.take().expect("moved only once")
            } else {
                batch.as_ref().expect("still held").clone()
            };
            // A returned batch is dropped here unsettled: errored, never skipped.
            if consumer.sender.send(copy).await.is_err() && !consumer.reported_stopped {
                consumer.reported_stopped = true;
                tracing::error!(consumer = %consumer.id, "a downstream component has stopped; events meant for it are not delivered and checkpoints will not move past them");
            }
        }
    }
}
