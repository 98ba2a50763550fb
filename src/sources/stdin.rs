//! `stdin`: reads lines from standard input.
//!
//! Keys: `decoding` = `"text"` (default; each line is `{"message": line}`) or
//! `"json"` (NDJSON; see `decoding`), `max_line_bytes` (default 1 MiB; longer
//! lines are cut there and counted as `line_too_long` errors).
//!
//! Batches: whatever is already buffered is sent together (up to
//! `MAX_BATCH_LINES`), so piping a file in moves in large batches while an
//! interactive line is sent at once.
//!
//! Acknowledgements: standard input cannot be re-read, so the source counts
//! batches that come back errored (`delivery_failed`) rather than replaying
//! them. At end of input it waits for every acknowledgement, then finishes.

use std::sync::Arc;

use futures::FutureExt;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use super::checkpoint::PendingBatches;
use super::decoding::{decode_line, Decoding};
use crate::config::units;
use crate::event::{BatchStatus, EventFinalizer, EventMetadata, LogEvent};
use crate::topology::{BuildContext, BuildError, ComponentError, ComponentFuture, Source, SourceContext};

/// Most lines sent in one batch.
const MAX_BATCH_LINES: usize = 1000;
const DEFAULT_MAX_LINE_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinSourceConfig {
    #[serde(default)]
    pub decoding: Decoding,
    #[serde(default = "default_max_line_bytes", with = "units::size")]
    pub max_line_bytes: u64,
}

fn default_max_line_bytes() -> u64 {
    DEFAULT_MAX_LINE_BYTES
}

impl StdinSourceConfig {
    pub fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Source>, BuildError> {
        if self.max_line_bytes == 0 {
            return Err(BuildError::new("\"max_line_bytes\" is 0; set it above 0"));
        }
        Ok(Box::new(LineSource { decoding: self.decoding, max_line_bytes: self.max_line_bytes as usize, reader: None }))
    }
}

/// Reads lines from any async reader; standard input unless a test gives one.
pub struct LineSource {
    decoding: Decoding,
    max_line_bytes: usize,
    reader: Option<Box<dyn AsyncRead + Send + Unpin>>,
}

impl LineSource {
    /// A source reading `reader` instead of standard input.
    pub fn with_reader(decoding: Decoding, reader: Box<dyn AsyncRead + Send + Unpin>) -> LineSource {
        LineSource { decoding, max_line_bytes: DEFAULT_MAX_LINE_BYTES as usize, reader: Some(reader) }
    }
}

impl Source for LineSource {
    fn run(self: Box<Self>, cx: SourceContext) -> ComponentFuture {
        Box::pin(self.run_loop(cx))
    }
}

impl LineSource {
    async fn run_loop(self: Box<Self>, mut cx: SourceContext) -> Result<(), ComponentError> {
        let reader = self.reader.unwrap_or_else(|| Box::new(tokio::io::stdin()));
        let mut reader = BufReader::with_capacity(64 * 1024, reader);
        let mut pending = PendingBatches::new(None, cx.acks_pending.clone());
        let parse_errors = cx.metrics.errors("parse_failed", "processing");
        let long_lines = cx.metrics.errors("line_too_long", "receiving");
        let delivery_failures = cx.metrics.errors("delivery_failed", "sending");
        let source_id = Arc::clone(&cx.id);
        let mut line = Vec::new();
        let mut batch: Vec<(Vec<u8>, usize)> = Vec::new();
        let mut lines_read: u64 = 0;
        let mut at_end = false;

        while !at_end {
            line.clear();
            // `read_until` is not cancel-safe (a partial line would be lost),
            // but losing it only matters if we kept reading, and shutdown stops
            // reading for good.
            let read = tokio::select! {
                _ = cx.shutdown.cancelled() => break,
                read = reader.read_until(b'\n', &mut line) => read?,
            };
            if read == 0 {
                at_end = true;
            } else {
                let raw_length = line.len();
                while matches!(line.last(), Some(b'\n' | b'\r')) {
                    line.pop();
                }
                if line.len() > self.max_line_bytes {
                    line.truncate(self.max_line_bytes);
                    long_lines.increment(1);
                }
                batch.push((std::mem::take(&mut line), raw_length));
            }
            let more_buffered = !reader.buffer().is_empty();
            if !batch.is_empty() && (at_end || !more_buffered || batch.len() >= MAX_BATCH_LINES) {
                lines_read += batch.len() as u64;
                let notifier = pending.start_batch(lines_read);
                let mut events = Vec::with_capacity(batch.len());
                let mut bytes = 0;
                for (raw, raw_length) in batch.drain(..) {
                    let text = String::from_utf8_lossy(&raw);
                    let (fields, failed) = decode_line(&text, self.decoding);
                    if failed {
                        parse_errors.increment(1);
                    }
                    bytes += raw_length;
                    events.push(
                        LogEvent::new(fields, EventMetadata::new(Arc::clone(&source_id), raw_length))
                            .with_finalizer(EventFinalizer::new(Arc::clone(&notifier))),
                    );
                }
                cx.metrics.received_events.increment(events.len() as u64);
                cx.metrics.received_bytes.increment(bytes as u64);
                cx.output.send(events).await;
            }
            while let Some(Some(status)) = pending.next_status().now_or_never() {
                if status != BatchStatus::Delivered {
                    delivery_failures.increment(1);
                }
            }
        }
        drop(cx.output);
        while let Some(status) = pending.next_status().await {
            if status != BatchStatus::Delivered {
                delivery_failures.increment(1);
            }
        }
        Ok(())
    }
}
