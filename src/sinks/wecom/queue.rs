//! The durable store of alerts waiting for WeCom: `DATA_DIR/wecom/SINK_ID/pending.ndjson`.
//!
//! Owns the pending state of one sink: alerts not yet in a message
//! (`waiting`, in arrival order), messages formed but not fully delivered
//! (their rendered parts and how many were delivered), and the events of
//! both. Every change is one appended NDJSON record, written and fsynced
//! (`sync_data`) before the method returns, so the sink may acknowledge an
//! alert upstream once `push_alerts` returned:
//!
//! - `{"op":"alert","id":N,"queued_at_ms":T,"event":{...}}`
//! - `{"op":"message","id":M,"alerts":[N,...],"parts":["...",...]}`: alerts
//!   grouped and rendered; from now on this message is what gets sent, so a
//!   restart resends the same text, not a re-rendering.
//! - `{"op":"progress","message":M,"parts_delivered":K}`
//! - `{"op":"message_done","message":M,"outcome":"delivered"|"dead_lettered"}`
//! - `{"op":"alerts_dead_lettered","alerts":[N,...]}`
//!
//! Guarantees: replaying the file gives back exactly the alerts and message
//! parts not yet delivered or dead-lettered, so a restart after a clean stop
//! sends each part exactly once (a crash between a send and its `progress`
//! record can repeat that one part: at least once). A torn last line (a crash
//! mid-append, never acknowledged) is ignored; any other unreadable line is
//! skipped and counted in `LoadReport`. Opening rewrites the file to the
//! pending state only; it is truncated whenever nothing is pending and
//! rewritten (temp file, fsync, rename, directory fsync) after
//! `COMPACT_AFTER_RECORDS` appends, so it never grows without bound.
//!
//! All methods do blocking file IO: call them from `spawn_blocking`
//! (`SharedQueue::run` does). Never sends anything.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{LogEvent, Value};

/// Appends after which the file is rewritten to the pending records only.
const COMPACT_AFTER_RECORDS: usize = 4096;
const FILE_NAME: &str = "pending.ndjson";

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("WeCom alert queue {path}: {source}; check that the data_dir is writable and the disk is not full")]
    Io { path: PathBuf, source: std::io::Error },
}

/// One queued alert.
#[derive(Debug, Clone)]
pub struct QueuedAlert {
    pub id: u64,
    pub queued_at: DateTime<Utc>,
    pub event: LogEvent,
    /// When the alert entered this process's queue (for loaded alerts: now
    /// minus their age), on tokio's clock, for `group_wait`.
    pub arrived: tokio::time::Instant,
    /// The source's receive time, for the latency metric; unknown for alerts
    /// loaded from disk.
    pub received_at: Option<std::time::Instant>,
}

/// A message formed from alerts, with its rendered parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMessage {
    pub id: u64,
    pub alert_ids: Vec<u64>,
    pub parts: Vec<String>,
    pub parts_delivered: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageOutcome {
    Delivered,
    DeadLettered,
}

/// What `open` found on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub waiting_alerts: usize,
    pub pending_messages: usize,
    pub skipped_lines: usize,
}

#[derive(Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum RecordOut<'a> {
    Alert { id: u64, queued_at_ms: i64, event: &'a LogEvent },
    Message { id: u64, alerts: &'a [u64], parts: &'a [String] },
    Progress { message: u64, parts_delivered: usize },
    MessageDone { message: u64, outcome: MessageOutcome },
    AlertsDeadLettered { alerts: &'a [u64] },
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum RecordIn {
    Alert { id: u64, queued_at_ms: i64, event: Value },
    Message { id: u64, alerts: Vec<u64>, parts: Vec<String> },
    Progress { message: u64, parts_delivered: usize },
    MessageDone { message: u64 },
    AlertsDeadLettered { alerts: Vec<u64> },
}

pub struct AlertQueue {
    directory: PathBuf,
    path: PathBuf,
    sink_id: String,
    file: File,
    alerts: HashMap<u64, QueuedAlert>,
    waiting: VecDeque<u64>,
    messages: VecDeque<PendingMessage>,
    next_alert_id: u64,
    next_message_id: u64,
    records_since_compaction: usize,
    compact_after_records: usize,
}

impl AlertQueue {
    /// Opens (creating) `directory/pending.ndjson`, replays it and rewrites
    /// it to the pending state.
    pub fn open(directory: &Path, sink_id: &str) -> Result<(AlertQueue, LoadReport), QueueError> {
        let path = directory.join(FILE_NAME);
        let io_error = |source| QueueError::Io { path: path.clone(), source };
        std::fs::create_dir_all(directory).map_err(io_error)?;
        let mut queue = AlertQueue {
            directory: directory.to_path_buf(),
            path: path.clone(),
            sink_id: sink_id.to_string(),
            file: File::options().create(true).append(true).open(&path).map_err(io_error)?,
            alerts: HashMap::new(),
            waiting: VecDeque::new(),
            messages: VecDeque::new(),
            next_alert_id: 1,
            next_message_id: 1,
            records_since_compaction: 0,
            compact_after_records: COMPACT_AFTER_RECORDS,
        };
        let mut report = LoadReport::default();
        let reader = BufReader::new(File::open(&path).map_err(io_error)?);
        let mut lines = reader.split(b'\n').peekable();
        let now = Utc::now();
        let tokio_now = tokio::time::Instant::now();
        while let Some(line) = lines.next() {
            let line = line.map_err(io_error)?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<RecordIn>(&line) {
                Ok(record) => queue.replay(record, now, tokio_now),
                // The last line without its newline is a write cut short by a
                // crash; it was never acknowledged, so the source resends it.
                Err(_) if lines.peek().is_none() => report.skipped_lines += 1,
                Err(error) => {
                    tracing::error!(path = %path.display(), %error, "skipping an unreadable line in the WeCom alert queue");
                    report.skipped_lines += 1;
                }
            }
        }
        report.waiting_alerts = queue.waiting.len();
        report.pending_messages = queue.messages.len();
        queue.rewrite().map_err(io_error)?;
        Ok((queue, report))
    }

    fn replay(&mut self, record: RecordIn, now: DateTime<Utc>, tokio_now: tokio::time::Instant) {
        match record {
            RecordIn::Alert { id, queued_at_ms, event } => {
                let Value::Object(fields) = event else { return };
                let queued_at = Utc.timestamp_millis_opt(queued_at_ms).single().unwrap_or(now);
                let age = (now - queued_at).to_std().unwrap_or_default();
                let arrived = tokio_now.checked_sub(age).unwrap_or(tokio_now);
                let event = LogEvent::from_fields(&self.sink_id, fields);
                self.alerts.insert(id, QueuedAlert { id, queued_at, event, arrived, received_at: None });
                self.waiting.push_back(id);
                self.next_alert_id = self.next_alert_id.max(id + 1);
            }
            RecordIn::Message { id, alerts, parts } => {
                let grouped: HashSet<u64> = alerts.iter().copied().collect();
                self.waiting.retain(|waiting| !grouped.contains(waiting));
                self.messages.push_back(PendingMessage { id, alert_ids: alerts, parts, parts_delivered: 0 });
                self.next_message_id = self.next_message_id.max(id + 1);
            }
            RecordIn::Progress { message, parts_delivered } => {
                if let Some(pending) = self.messages.iter_mut().find(|pending| pending.id == message) {
                    pending.parts_delivered = parts_delivered;
                }
            }
            RecordIn::MessageDone { message } => self.forget_message(message),
            RecordIn::AlertsDeadLettered { alerts } => self.forget_alerts(&alerts),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Alerts not yet delivered or dead-lettered (waiting or in a message).
    pub fn depth(&self) -> usize {
        self.alerts.len()
    }

    /// Waiting alerts in arrival order.
    pub fn waiting(&self) -> impl Iterator<Item = &QueuedAlert> {
        self.waiting.iter().filter_map(|id| self.alerts.get(id))
    }

    pub fn alert(&self, id: u64) -> Option<&QueuedAlert> {
        self.alerts.get(&id)
    }

    /// The oldest message not yet fully delivered.
    pub fn front_message(&self) -> Option<&PendingMessage> {
        self.messages.front()
    }

    /// Queues `events` durably; on `Ok` the caller may acknowledge them.
    pub fn push_alerts(&mut self, events: Vec<(LogEvent, Option<std::time::Instant>)>) -> Result<Vec<u64>, QueueError> {
        let now = Utc::now();
        let arrived = tokio::time::Instant::now();
        let mut buffer = Vec::new();
        let mut queued = Vec::with_capacity(events.len());
        for (offset, (event, received_at)) in events.into_iter().enumerate() {
            let id = self.next_alert_id + offset as u64;
            let record = RecordOut::Alert { id, queued_at_ms: now.timestamp_millis(), event: &event };
            serde_json::to_writer(&mut buffer, &record).expect("serialising to memory cannot fail");
            buffer.push(b'\n');
            queued.push(QueuedAlert { id, queued_at: now, event, arrived, received_at });
        }
        self.append(&buffer, queued.len())?;
        let ids: Vec<u64> = queued.iter().map(|alert| alert.id).collect();
        self.next_alert_id += queued.len() as u64;
        for alert in queued {
            self.waiting.push_back(alert.id);
            self.alerts.insert(alert.id, alert);
        }
        Ok(ids)
    }

    /// Records that `alert_ids` (waiting) now form a message with `parts`.
    pub fn form_message(&mut self, alert_ids: Vec<u64>, parts: Vec<String>) -> Result<u64, QueueError> {
        let id = self.next_message_id;
        let mut buffer = Vec::new();
        serde_json::to_writer(&mut buffer, &RecordOut::Message { id, alerts: &alert_ids, parts: &parts })
            .expect("serialising to memory cannot fail");
        buffer.push(b'\n');
        self.append(&buffer, 1)?;
        self.next_message_id += 1;
        let grouped: HashSet<u64> = alert_ids.iter().copied().collect();
        self.waiting.retain(|waiting| !grouped.contains(waiting));
        self.messages.push_back(PendingMessage { id, alert_ids, parts, parts_delivered: 0 });
        Ok(id)
    }

    /// Records that the first `parts_delivered` parts of `message` were
    /// delivered; when that is all of them the message and its alerts are done.
    /// Returns the finished message's alerts, if it finished.
    pub fn record_progress(
        &mut self,
        message: u64,
        parts_delivered: usize,
    ) -> Result<Option<Vec<QueuedAlert>>, QueueError> {
        let Some(pending) = self.messages.iter().find(|pending| pending.id == message) else { return Ok(None) };
        if parts_delivered >= pending.parts.len() {
            return self.finish_message(message, MessageOutcome::Delivered).map(Some);
        }
        let mut buffer = Vec::new();
        serde_json::to_writer(&mut buffer, &RecordOut::Progress { message, parts_delivered })
            .expect("serialising to memory cannot fail");
        buffer.push(b'\n');
        self.append(&buffer, 1)?;
        if let Some(pending) = self.messages.iter_mut().find(|pending| pending.id == message) {
            pending.parts_delivered = parts_delivered;
        }
        Ok(None)
    }

    /// Marks `message` done and returns its alerts (for metrics, or for the
    /// dead-letter file the caller has already written).
    pub fn finish_message(&mut self, message: u64, outcome: MessageOutcome) -> Result<Vec<QueuedAlert>, QueueError> {
        let mut buffer = Vec::new();
        serde_json::to_writer(&mut buffer, &RecordOut::MessageDone { message, outcome })
            .expect("serialising to memory cannot fail");
        buffer.push(b'\n');
        self.append(&buffer, 1)?;
        let finished: Vec<QueuedAlert> = match self.messages.iter().find(|pending| pending.id == message) {
            Some(pending) => pending.alert_ids.iter().filter_map(|id| self.alerts.get(id).cloned()).collect(),
            None => Vec::new(),
        };
        self.forget_message(message);
        self.compact_if_due()?;
        Ok(finished)
    }

    /// Removes waiting alerts that were dead-lettered (the caller wrote the
    /// dead-letter file first).
    pub fn dead_letter_alerts(&mut self, alert_ids: &[u64]) -> Result<(), QueueError> {
        let mut buffer = Vec::new();
        serde_json::to_writer(&mut buffer, &RecordOut::AlertsDeadLettered { alerts: alert_ids })
            .expect("serialising to memory cannot fail");
        buffer.push(b'\n');
        self.append(&buffer, 1)?;
        self.forget_alerts(alert_ids);
        self.compact_if_due()
    }

    fn forget_message(&mut self, message: u64) {
        if let Some(position) = self.messages.iter().position(|pending| pending.id == message) {
            let pending = self.messages.remove(position).expect("position is in range");
            for id in pending.alert_ids {
                self.alerts.remove(&id);
            }
        }
    }

    fn forget_alerts(&mut self, alert_ids: &[u64]) {
        let forgotten: HashSet<u64> = alert_ids.iter().copied().collect();
        self.waiting.retain(|waiting| !forgotten.contains(waiting));
        for id in alert_ids {
            self.alerts.remove(id);
        }
    }

    fn append(&mut self, buffer: &[u8], records: usize) -> Result<(), QueueError> {
        let io_error = |source| QueueError::Io { path: self.path.clone(), source };
        self.file.write_all(buffer).map_err(io_error)?;
        self.file.sync_data().map_err(io_error)?;
        self.records_since_compaction += records;
        Ok(())
    }

    fn compact_if_due(&mut self) -> Result<(), QueueError> {
        let path = self.path.clone();
        let io_error = |source| QueueError::Io { path, source };
        if self.alerts.is_empty() && self.messages.is_empty() {
            // Nothing pending: an empty file is the whole state.
            let truncated = self.file.set_len(0).and_then(|()| self.file.sync_data());
            truncated.map_err(io_error)?;
            self.records_since_compaction = 0;
        } else if self.records_since_compaction >= self.compact_after_records {
            self.rewrite().map_err(io_error)?;
        }
        Ok(())
    }

    /// Replaces the file with the pending state only.
    fn rewrite(&mut self) -> std::io::Result<()> {
        let mut buffer = Vec::new();
        let mut ids: Vec<u64> = self.alerts.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let alert = &self.alerts[&id];
            let record = RecordOut::Alert { id, queued_at_ms: alert.queued_at.timestamp_millis(), event: &alert.event };
            serde_json::to_writer(&mut buffer, &record)?;
            buffer.push(b'\n');
        }
        for pending in &self.messages {
            serde_json::to_writer(
                &mut buffer,
                &RecordOut::Message { id: pending.id, alerts: &pending.alert_ids, parts: &pending.parts },
            )?;
            buffer.push(b'\n');
            if pending.parts_delivered > 0 {
                serde_json::to_writer(
                    &mut buffer,
                    &RecordOut::Progress { message: pending.id, parts_delivered: pending.parts_delivered },
                )?;
                buffer.push(b'\n');
            }
        }
        let temporary = self.directory.join(format!("{FILE_NAME}.tmp"));
        {
            let mut file = File::create(&temporary)?;
            file.write_all(&buffer)?;
            file.sync_all()?;
        }
        std::fs::rename(&temporary, &self.path)?;
        // The rename is durable only once the directory entry is.
        File::open(&self.directory)?.sync_all()?;
        self.file = File::options().append(true).open(&self.path)?;
        self.records_since_compaction = 0;
        Ok(())
    }
}

/// The queue shared by a sink's input loop and its delivery loop. IO runs on
/// the blocking pool; the std mutex is only ever locked there or for quick
/// reads, never across an await.
#[derive(Clone)]
pub struct SharedQueue {
    inner: Arc<Mutex<AlertQueue>>,
}

impl SharedQueue {
    pub fn new(queue: AlertQueue) -> SharedQueue {
        SharedQueue { inner: Arc::new(Mutex::new(queue)) }
    }

    /// Runs `operation` on the blocking pool with the queue locked.
    pub async fn run<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&mut AlertQueue) -> T + Send + 'static,
    ) -> Result<T, QueueError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut queue = inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            operation(&mut queue)
        })
        .await
        .map_err(|error| QueueError::Io { path: PathBuf::from(FILE_NAME), source: std::io::Error::other(error) })
    }

    /// A quick read without IO, on the calling thread.
    pub fn read<T>(&self, reader: impl FnOnce(&AlertQueue) -> T) -> T {
        let queue = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        reader(&queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(name: &str) -> (LogEvent, Option<std::time::Instant>) {
        let mut event = LogEvent::from_fields("test", Default::default());
        event.insert("rule_name", name);
        (event, None)
    }

    fn names(queue: &AlertQueue) -> Vec<String> {
        queue.waiting().map(|alert| alert.event.get("rule_name").unwrap().to_text().into_owned()).collect()
    }

    #[tokio::test]
    async fn pending_state_survives_a_reopen() {
        let directory = tempfile::tempdir().unwrap();
        let (mut queue, report) = AlertQueue::open(directory.path(), "out").unwrap();
        assert_eq!(report, LoadReport::default());
        let ids = queue.push_alerts(vec![alert("a"), alert("b"), alert("c"), alert("d")]).unwrap();
        let message = queue.form_message(ids[..2].to_vec(), vec!["part 1".into(), "part 2".into()]).unwrap();
        assert!(queue.record_progress(message, 1).unwrap().is_none());
        queue.dead_letter_alerts(&ids[2..3]).unwrap();
        drop(queue);

        let (queue, report) = AlertQueue::open(directory.path(), "out").unwrap();
        assert_eq!(report, LoadReport { waiting_alerts: 1, pending_messages: 1, skipped_lines: 0 });
        assert_eq!(names(&queue), vec!["d"]);
        let pending = queue.front_message().unwrap();
        assert_eq!(pending.parts_delivered, 1, "the delivered part is not sent again");
        assert_eq!(pending.alert_ids, ids[..2].to_vec());
        assert_eq!(queue.depth(), 3);
    }

    #[tokio::test]
    async fn finishing_everything_truncates_the_file_and_ids_keep_growing() {
        let directory = tempfile::tempdir().unwrap();
        let (mut queue, _) = AlertQueue::open(directory.path(), "out").unwrap();
        let ids = queue.push_alerts(vec![alert("a")]).unwrap();
        let message = queue.form_message(ids.clone(), vec!["only".into()]).unwrap();
        let finished = queue.record_progress(message, 1).unwrap().unwrap();
        assert_eq!(finished.len(), 1);
        assert_eq!(queue.depth(), 0);
        assert_eq!(std::fs::metadata(queue.path()).unwrap().len(), 0);
        let next = queue.push_alerts(vec![alert("b")]).unwrap();
        assert!(next[0] > ids[0]);
    }

    #[tokio::test]
    async fn a_torn_last_line_is_ignored() {
        let directory = tempfile::tempdir().unwrap();
        let (mut queue, _) = AlertQueue::open(directory.path(), "out").unwrap();
        queue.push_alerts(vec![alert("kept")]).unwrap();
        let path = queue.path().to_path_buf();
        drop(queue);
        let mut file = File::options().append(true).open(&path).unwrap();
        file.write_all(br#"{"op":"alert","id":9,"queued_at_ms":1,"ev"#).unwrap();
        drop(file);
        let (queue, report) = AlertQueue::open(directory.path(), "out").unwrap();
        assert_eq!(report.skipped_lines, 1);
        assert_eq!(names(&queue), vec!["kept"]);
    }

    #[tokio::test]
    async fn the_file_is_compacted_after_many_appends() {
        let directory = tempfile::tempdir().unwrap();
        let (mut queue, _) = AlertQueue::open(directory.path(), "out").unwrap();
        queue.compact_after_records = 16;
        let kept = queue.push_alerts(vec![alert("kept")]).unwrap();
        for _ in 0..40 {
            let ids = queue.push_alerts(vec![alert("passing")]).unwrap();
            queue.dead_letter_alerts(&ids).unwrap();
        }
        let lines = std::fs::read_to_string(queue.path()).unwrap().lines().count();
        assert!(lines < 10, "{lines} lines after compaction");
        drop(queue);
        let (queue, _) = AlertQueue::open(directory.path(), "out").unwrap();
        assert_eq!(queue.waiting().map(|alert| alert.id).collect::<Vec<_>>(), kept);
    }
}
