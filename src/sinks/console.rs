//! `console`: writes events to standard output (or standard error).
//!
//! Keys: `encoding` = `"json"` (default; one JSON object per line) or
//! `"text"` (the `message` field, or the JSON object when there is none),
//! `target` = `"stdout"` (default) or `"stderr"`.
//!
//! Acknowledgements: events are settled after the batch is written and
//! flushed. A write failure (a closed pipe) settles the batch as errored and
//! stops the sink. Logs go to standard error, so standard output carries only
//! events.

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::event::{BatchStatus, LogEvent};
use crate::topology::buffer::BufferReceiver;
use crate::topology::{BuildContext, BuildError, ComponentError, ComponentFuture, Sink, SinkContext};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsoleEncoding {
    #[default]
    Json,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsoleTarget {
    #[default]
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSinkConfig {
    #[serde(default)]
    pub encoding: ConsoleEncoding,
    #[serde(default)]
    pub target: ConsoleTarget,
}

impl ConsoleSinkConfig {
    pub fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Sink>, BuildError> {
        Ok(Box::new(ConsoleSink { encoding: self.encoding, target: self.target }))
    }
}

pub struct ConsoleSink {
    encoding: ConsoleEncoding,
    target: ConsoleTarget,
}

impl Sink for ConsoleSink {
    fn run(self: Box<Self>, input: BufferReceiver, cx: SinkContext) -> ComponentFuture {
        Box::pin(self.run_loop(input, cx))
    }
}

/// Appends `event` to `out` in `encoding`, followed by a newline.
pub fn encode_line(event: &LogEvent, encoding: ConsoleEncoding, out: &mut Vec<u8>) {
    match (encoding, event.get("message").and_then(|value| value.as_str())) {
        (ConsoleEncoding::Text, Some(message)) => out.extend_from_slice(message.as_bytes()),
        _ => serde_json::to_writer(&mut *out, event).expect("serialising to memory cannot fail"),
    }
    out.push(b'\n');
}

impl ConsoleSink {
    async fn run_loop(self, mut input: BufferReceiver, cx: SinkContext) -> Result<(), ComponentError> {
        let mut out: Box<dyn tokio::io::AsyncWrite + Send + Unpin> = match self.target {
            ConsoleTarget::Stdout => Box::new(tokio::io::stdout()),
            ConsoleTarget::Stderr => Box::new(tokio::io::stderr()),
        };
        let mut buffer = Vec::with_capacity(64 * 1024);
        while let Some(mut batch) = input.recv().await {
            cx.record_received(&batch);
            buffer.clear();
            let mut finalizers = Vec::with_capacity(batch.len());
            let mut received = Vec::with_capacity(batch.len());
            for event in &mut batch {
                finalizers.push(event.take_finalizers());
                received.push(event.metadata().received_at);
                encode_line(event, self.encoding, &mut buffer);
            }
            let written = async {
                out.write_all(&buffer).await?;
                out.flush().await
            }
            .await;
            let status = if written.is_ok() { BatchStatus::Delivered } else { BatchStatus::Errored };
            for finalizer in finalizers {
                finalizer.update_status(status);
            }
            if let Err(error) = written {
                return Err(ComponentError::new(format!("cannot write to {:?}: {error}", self.target)));
            }
            cx.record_delivered(batch.len(), buffer.len(), received);
        }
        Ok(())
    }
}
