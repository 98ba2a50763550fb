//! `blackhole`: accepts and counts events, delivering them nowhere.
//!
//! No keys. Every event is settled as delivered on receipt, so it is the sink
//! to measure the rest of a pipeline with. Metrics: the standard counters and
//! end-to-end latency.

use serde::Deserialize;

use crate::event::{BatchStatus, LogEvent};
use crate::topology::buffer::BufferReceiver;
use crate::topology::{BuildContext, BuildError, ComponentError, ComponentFuture, Sink, SinkContext};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeSinkConfig {}

impl BlackholeSinkConfig {
    pub fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Sink>, BuildError> {
        Ok(Box::new(BlackholeSink))
    }
}

pub struct BlackholeSink;

impl Sink for BlackholeSink {
    fn run(self: Box<Self>, input: BufferReceiver, cx: SinkContext) -> ComponentFuture {
        Box::pin(run(input, cx))
    }
}

async fn run(mut input: BufferReceiver, cx: SinkContext) -> Result<(), ComponentError> {
    let mut received = Vec::new();
    while let Some(batch) = input.recv().await {
        cx.record_received(&batch);
        let events = batch.len();
        let bytes: usize = batch.iter().map(LogEvent::byte_size).sum();
        received.clear();
        received.extend(batch.iter().map(|event| event.metadata().received_at));
        for event in batch {
            event.settle(BatchStatus::Delivered);
        }
        cx.record_delivered(events, bytes, received.iter().copied());
    }
    Ok(())
}
