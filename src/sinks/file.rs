//! `file`: appends events as NDJSON to files named by a template.
//!
//! Keys: `path` (a template: strftime specifiers in UTC, such as
//! `out/%Y-%m-%d.ndjson`, and `{{ field }}` placeholders; required),
//! `idle_timeout` (default 30 s: files not written for this long are closed),
//! `max_batch_events` (default 10 000: how many queued events one write may
//! gather).
//!
//! Acknowledgements: a batch is written, flushed and fsynced (`sync_data`)
//! before its events are settled as delivered, so a crash never loses an
//! acknowledged event. Queued batches are gathered into one write so the
//! fsync cost is shared. An event whose path template cannot be rendered (a
//! missing field) goes to the dead-letter file. A write error settles the
//! batch as errored and stops the sink.
//!
//! Blocking file IO runs on tokio's blocking pool, never on the async workers.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::dead_letter::DeadLetterWriter;
use crate::config::units;
use crate::event::{BatchStatus, EventFinalizers};
use crate::template::Template;
use crate::topology::buffer::BufferReceiver;
use crate::topology::{BuildContext, BuildError, ComponentError, ComponentFuture, Sink, SinkContext};

const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_BATCH_EVENTS: usize = 10_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    pub path: String,
    #[serde(default = "default_idle_timeout", with = "units::duration")]
    pub idle_timeout: Duration,
    #[serde(default = "default_max_batch_events")]
    pub max_batch_events: usize,
}

fn default_idle_timeout() -> Duration {
    DEFAULT_IDLE_TIMEOUT
}

fn default_max_batch_events() -> usize {
    DEFAULT_MAX_BATCH_EVENTS
}

impl FileSinkConfig {
    pub fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Sink>, BuildError> {
        let path = Template::parse(&self.path).map_err(|error| BuildError::new(format!("\"path\": {error}")))?;
        if self.max_batch_events == 0 {
            return Err(BuildError::new("\"max_batch_events\" is 0; set it above 0"));
        }
        Ok(Box::new(FileSink { path, idle_timeout: self.idle_timeout, max_batch_events: self.max_batch_events }))
    }
}

pub struct FileSink {
    path: Template,
    idle_timeout: Duration,
    max_batch_events: usize,
}

impl Sink for FileSink {
    fn run(self: Box<Self>, input: BufferReceiver, cx: SinkContext) -> ComponentFuture {
        Box::pin(self.run_loop(input, cx))
    }
}

struct OpenFile {
    file: File,
    last_write: Instant,
}

impl FileSink {
    async fn run_loop(self, mut input: BufferReceiver, cx: SinkContext) -> Result<(), ComponentError> {
        let dead_letters = DeadLetterWriter::new(&cx.data_dir, &cx.id, &cx.metrics);
        let mut open_files: HashMap<PathBuf, OpenFile> = HashMap::new();
        while let Some(first) = input.recv().await {
            let mut events = first;
            while events.len() < self.max_batch_events {
                match input.try_recv() {
                    Some(mut more) => events.append(&mut more),
                    None => break,
                }
            }
            cx.record_received(&events);

            let now = chrono::Utc::now();
            let mut per_file: HashMap<PathBuf, Vec<u8>> = HashMap::new();
            let mut finalizers = EventFinalizers::default();
            let mut received = Vec::with_capacity(events.len());
            let mut unroutable = Vec::new();
            let mut bytes = 0;
            for mut event in events {
                match self.path.render_at(&event, now) {
                    Ok(path) => {
                        let buffer = per_file.entry(PathBuf::from(path)).or_default();
                        let start = buffer.len();
                        serde_json::to_writer(&mut *buffer, &event).expect("serialising to memory cannot fail");
                        buffer.push(b'\n');
                        bytes += buffer.len() - start;
                        finalizers.merge(event.take_finalizers());
                        received.push(event.metadata().received_at);
                    }
                    Err(missing) => unroutable.push((event, format!("cannot render \"path\": {missing}"))),
                }
            }

            let delivered = received.len();
            let files = std::mem::take(&mut open_files);
            let idle_timeout = self.idle_timeout;
            let written = tokio::task::spawn_blocking(move || write_and_sync(files, per_file, idle_timeout))
                .await
                .map_err(|error| ComponentError::new(format!("file writer task failed: {error}")))?;
            match written {
                Ok(files) => {
                    open_files = files;
                    finalizers.update_status(BatchStatus::Delivered);
                    cx.record_delivered(delivered, bytes, received);
                }
                Err(error) => {
                    finalizers.update_status(BatchStatus::Errored);
                    return Err(ComponentError::new(format!("cannot write events: {error}")));
                }
            }
            dead_letters.settle(unroutable).await;
        }
        Ok(())
    }
}

fn write_and_sync(
    mut files: HashMap<PathBuf, OpenFile>,
    per_file: HashMap<PathBuf, Vec<u8>>,
    idle_timeout: Duration,
) -> std::io::Result<HashMap<PathBuf, OpenFile>> {
    let now = Instant::now();
    for (path, buffer) in per_file {
        let open = match files.entry(path) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                if let Some(directory) = entry.key().parent().filter(|directory| !directory.as_os_str().is_empty()) {
                    std::fs::create_dir_all(directory)?;
                }
                let file = std::fs::OpenOptions::new().create(true).append(true).open(entry.key())?;
                entry.insert(OpenFile { file, last_write: now })
            }
        };
        open.file.write_all(&buffer)?;
        open.file.sync_data()?;
        open.last_write = now;
    }
    files.retain(|_, open| now.duration_since(open.last_write) < idle_timeout);
    Ok(files)
}
