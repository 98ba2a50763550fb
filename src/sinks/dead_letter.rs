//! The dead-letter file: where a sink puts events its destination refused
//! for good, with the reason, so nothing is lost silently.
//!
//! Location: `DATA_DIR/dead_letter/SINK_ID.ndjson`, one JSON object per line:
//! `{"time": RFC 3339, "sink": ID, "reason": TEXT, "event": {...}}`. Each
//! append is fsynced before `append` returns, so a sink may settle the event
//! as delivered once it returns `Ok`. Metrics:
//! `pipe_component_dead_letters_total`.

use std::io::Write;
use std::path::PathBuf;

use crate::event::{BatchStatus, EventFinalizers, LogEvent};
use crate::observability::ComponentMetrics;

pub struct DeadLetterWriter {
    path: PathBuf,
    sink_id: String,
    written: metrics::Counter,
}

impl DeadLetterWriter {
    pub fn new(data_dir: &std::path::Path, sink_id: &str, metrics: &ComponentMetrics) -> DeadLetterWriter {
        DeadLetterWriter {
            path: data_dir.join("dead_letter").join(format!("{sink_id}.ndjson")),
            sink_id: sink_id.to_string(),
            written: metrics.counter("pipe_component_dead_letters_total", &[]),
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Appends `entries` (event, reason) durably. The caller settles the
    /// events: delivered on `Ok`, rejected on `Err`.
    pub async fn append(&self, entries: Vec<(LogEvent, String)>) -> std::io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut buffer = Vec::new();
        for (event, reason) in &entries {
            let line = serde_json::json!({ "time": time, "sink": self.sink_id, "reason": reason, "event": event });
            serde_json::to_writer(&mut buffer, &line)?;
            buffer.push(b'\n');
        }
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if let Some(directory) = path.parent() {
                std::fs::create_dir_all(directory)?;
            }
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
            file.write_all(&buffer)?;
            file.sync_data()
        })
        .await
        .map_err(std::io::Error::other)??;
        self.written.increment(entries.len() as u64);
        for (event, reason) in &entries {
            tracing::warn!(sink = %self.sink_id, reason = %reason, bytes = event.byte_size(), path = %self.path.display(), "event dead-lettered");
        }
        Ok(())
    }
    /// Dead-letters `entries` and settles each event: delivered once the
    /// dead-letter write is durable, rejected if even that write fails.
    pub async fn settle(&self, mut entries: Vec<(LogEvent, String)>) {
        if entries.is_empty() {
            return;
        }
        let finalizers: Vec<EventFinalizers> = entries.iter_mut().map(|(event, _)| event.take_finalizers()).collect();
        let status = match self.append(entries).await {
            Ok(()) => BatchStatus::Delivered,
            Err(error) => {
                tracing::error!(path = %self.path.display(), %error, "cannot write the dead-letter file; the events are rejected");
                BatchStatus::Rejected
            }
        };
        for finalizer in finalizers {
            finalizer.update_status(status);
        }
    }
}
