//! The running `file` source: discovery, reading, batching, acknowledgements
//! and checkpoints for every tailed file.
//!
//! One task drives all files. Each round it folds in the acknowledgements that
//! have arrived, expands the globs when `glob_interval` is due, reads at most
//! one chunk (`READ_CHUNK_BYTES`) from every file, retires finished files and
//! writes checkpoints when `checkpoint_interval` is due. It sleeps
//! `poll_interval` only after a round that read nothing, so a busy file is
//! read back to back and an idle source costs one `fstat` per file and poll.
//!
//! Invariants:
//! - A file's checkpoint is its `PendingBatches::committable` offset: the end
//!   of the longest prefix of delivered batches. Nothing else is ever stored.
//! - Blocking IO (glob expansion, `stat`, `open`, positional reads, checkpoint
//!   writes) runs on tokio's blocking pool; each call is bounded (one chunk).
//! - Events of one file are emitted in file order; after a rewind the lines
//!   from the committed offset on are emitted again (at-least-once).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use metrics::{Counter, Gauge};
use tokio::time::Instant;

use super::checkpoints::{self, FileCheckpoint, FileId};
use super::config::StartAt;
use super::lines::{Line, LineAssembler};
use crate::event::{BatchStatus, EventFinalizer, EventFinalizers, EventMetadata, KeyString, LogEvent, Str, Value};
use crate::observability::{ComponentHealth, ComponentMetrics};
use crate::sources::checkpoint::PendingBatches;
use crate::sources::decoding::{decode_line, Decoding};
use crate::topology::component::SourceOutput;
use crate::topology::{ComponentError, ComponentFuture, Source, SourceContext};

/// Bytes read from one file per round: large enough that a busy file moves
/// in full batches, small enough that one blocking read stays well under a
/// millisecond and one file cannot starve the others.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Most lines in one batch (one acknowledgement).
const MAX_BATCH_LINES: usize = 1000;
/// First wait before a file whose batch failed is read again; doubled after
/// each further failure up to `MAX_RETRY_BACKOFF`, so a sink that is down is
/// not flooded with the same lines.
const INITIAL_RETRY_BACKOFF: Duration = Duration::from_secs(1);
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(30);

/// Validated settings, produced by `FileSourceConfig::settings`.
#[derive(Debug, Clone)]
pub struct FileSourceSettings {
    /// The include patterns as written (validated); `glob::glob` takes strings.
    pub include_patterns: Vec<String>,
    pub exclude: Vec<glob::Pattern>,
    pub decoding: Decoding,
    pub start_at: StartAt,
    pub glob_interval: Duration,
    pub poll_interval: Duration,
    pub max_line_bytes: usize,
    pub checkpoint_interval: Duration,
    pub file_field: KeyString,
    pub checkpoint_path: PathBuf,
}

pub struct FileSource {
    settings: FileSourceSettings,
    initial_retry_backoff: Duration,
}

impl FileSource {
    pub fn new(settings: FileSourceSettings) -> FileSource {
        FileSource { settings, initial_retry_backoff: INITIAL_RETRY_BACKOFF }
    }
}

impl Source for FileSource {
    fn run(self: Box<Self>, cx: SourceContext) -> ComponentFuture {
        Box::pin(self.run_loop(cx))
    }
}

impl FileSource {
    async fn run_loop(self: Box<Self>, cx: SourceContext) -> Result<(), ComponentError> {
        let SourceContext { id, mut output, shutdown, health, metrics, acks_pending, .. } = cx;
        let checkpoint_path = self.settings.checkpoint_path.clone();
        let loaded = run_blocking(move || checkpoints::load(&checkpoint_path))
            .await?
            .map_err(|error| ComponentError::new(error.to_string()))?;
        let mut tailer = Tailer::new(*self, id, metrics, acks_pending, health);
        tailer.scan(Some(&loaded)).await?;
        drop(loaded);

        let mut next_scan = Instant::now() + tailer.settings.glob_interval;
        let mut next_checkpoint = Instant::now() + tailer.settings.checkpoint_interval;
        while !shutdown.is_cancelled() {
            tailer.collect_statuses();
            if Instant::now() >= next_scan {
                tailer.scan(None).await?;
                next_scan = Instant::now() + tailer.settings.glob_interval;
            }
            let read_anything = tailer.read_round(&mut output).await?;
            tailer.retire_finished_files();
            if Instant::now() >= next_checkpoint {
                if let Err(error) = tailer.write_checkpoints(false).await {
                    tailer.report_checkpoint_failure(&error);
                }
                next_checkpoint = Instant::now() + tailer.settings.checkpoint_interval;
            }
            if !read_anything {
                // Both arms are cancel-safe: a sleep holds no data, and
                // cancellation only ends the loop.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(tailer.settings.poll_interval) => {}
                }
            }
        }

        // Downstream drains once every source output is gone; only then can
        // the last acknowledgements arrive.
        drop(output);
        tailer.drain_statuses().await;
        tailer.write_checkpoints(true).await.map_err(|error| {
            tailer.report_checkpoint_failure(&error);
            ComponentError::new(error.to_string())
        })?;
        Ok(())
    }
}

/// Runs blocking IO on tokio's blocking pool.
async fn run_blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ComponentError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ComponentError::new(format!("file IO task failed: {error}")))
}

/// One file being tailed, identified by device and inode.
struct TrackedFile {
    id: FileId,
    /// Where the last glob scan found the file; events carry it and it is the
    /// `partition`. A renamed file keeps its old path until a scan finds it
    /// under the new one.
    path: Arc<str>,
    path_value: Str,
    /// Kept open so a renamed or deleted file can still be read to its end.
    handle: Arc<File>,
    /// Next byte to read. Bytes of the unterminated line are already read.
    read_offset: u64,
    /// File size at the last read.
    size: u64,
    /// How many times the file was `fstat`ed; a successor waits for a read
    /// that happened after it appeared.
    reads: u64,
    lines: LineAssembler,
    pending: PendingBatches<u64>,
    unread_bytes: Gauge,
    /// No path matched by the globs leads to this file any more (deleted, or
    /// renamed out of the patterns). It is read to its end, then retired.
    gone: bool,
    last_data_at: Instant,
    /// The file that had this path before (rename rotation) and the read
    /// count it had when this file appeared: this file is not read until the
    /// predecessor was read to its end after that point, so the lines of one
    /// path stay in order across a rotation.
    predecessor: Option<(FileId, u64)>,
    /// When a failed batch makes the file read again from its committed offset.
    retry_at: Option<Instant>,
    retry_backoff: Duration,
    read_error_reported: bool,
}

impl TrackedFile {
    fn at_end(&self) -> bool {
        self.read_offset >= self.size
    }

    fn committed_offset(&self) -> u64 {
        self.pending.committable().copied().unwrap_or(0)
    }

    /// Forgets what is in flight and reads again from the committed offset.
    fn rewind(&mut self) {
        self.pending.reset();
        self.read_offset = self.committed_offset();
        self.lines.clear();
        self.retry_at = None;
    }
}

/// What the blocking glob expansion found.
struct ScanResult {
    /// Every matched regular file, in path order, one path per file.
    found: Vec<FoundFile>,
    /// Paths that matched but could not be examined or opened, with why.
    problems: Vec<(PathBuf, String)>,
}

struct FoundFile {
    path: PathBuf,
    id: FileId,
    /// Opened (with its size) only when the file was not tracked yet.
    opened: Option<(File, u64)>,
}

struct Tailer {
    settings: FileSourceSettings,
    initial_retry_backoff: Duration,
    source_id: Arc<str>,
    metrics: ComponentMetrics,
    acks_pending: Gauge,
    health: ComponentHealth,
    files: BTreeMap<FileId, TrackedFile>,
    /// Reused for every read so reading allocates nothing per round.
    read_buffer: Vec<u8>,
    last_written: Option<Vec<FileCheckpoint>>,
    /// The last checkpoint write failed; health shows degraded until one succeeds.
    checkpoints_failing: bool,
    /// Paths whose open failed at the last scan; each failure is logged once.
    unopenable: HashSet<PathBuf>,
    parse_errors: Counter,
    long_lines: Counter,
    delivery_failures: Counter,
    read_failures: Counter,
    open_failures: Counter,
    checkpoint_failures: Counter,
}

impl Tailer {
    fn new(
        source: FileSource,
        source_id: Arc<str>,
        metrics: ComponentMetrics,
        acks_pending: Gauge,
        health: ComponentHealth,
    ) -> Tailer {
        Tailer {
            settings: source.settings,
            initial_retry_backoff: source.initial_retry_backoff,
            source_id,
            parse_errors: metrics.errors("parse_failed", "processing"),
            long_lines: metrics.errors("line_too_long", "receiving"),
            delivery_failures: metrics.errors("delivery_failed", "sending"),
            read_failures: metrics.errors("read_failed", "receiving"),
            open_failures: metrics.errors("open_failed", "receiving"),
            checkpoint_failures: metrics.errors("checkpoint_write_failed", "processing"),
            metrics,
            acks_pending,
            health,
            files: BTreeMap::new(),
            read_buffer: vec![0; READ_CHUNK_BYTES],
            last_written: None,
            checkpoints_failing: false,
            unopenable: HashSet::new(),
        }
    }

    /// Expands the globs and reconciles the result with the tracked files.
    /// `loaded` is given on the first scan only: the checkpoints and
    /// `start_at` apply to files present at start-up, while a file that
    /// appears later is new and is read from its beginning.
    async fn scan(&mut self, loaded: Option<&HashMap<FileId, FileCheckpoint>>) -> Result<(), ComponentError> {
        let include = self.settings.include_patterns.clone();
        let exclude = self.settings.exclude.clone();
        let known: HashSet<FileId> = self.files.keys().copied().collect();
        let result = run_blocking(move || expand_globs(&include, &exclude, &known)).await?;

        let mut failing = HashSet::new();
        for (path, problem) in result.problems {
            if !self.unopenable.contains(&path) {
                tracing::warn!(source = %self.source_id, path = %path.display(), %problem, "cannot open a matched file; will retry at every scan");
                self.open_failures.increment(1);
            }
            failing.insert(path);
        }
        self.unopenable = failing;

        let mut seen = HashSet::with_capacity(result.found.len());
        for found in result.found {
            seen.insert(found.id);
            let path_text = found.path.to_string_lossy();
            if let Some(file) = self.files.get_mut(&found.id) {
                file.gone = false;
                if *file.path != *path_text {
                    tracing::info!(source = %self.source_id, from = %file.path, to = %path_text, "file renamed; still reading it");
                    file.path = Arc::from(&*path_text);
                    file.path_value = Str::from(&*path_text);
                    file.unread_bytes =
                        self.metrics.gauge("pipe_source_file_unread_bytes", &[("partition", &path_text)]);
                }
                continue;
            }
            let Some((handle, size)) = found.opened else { continue };
            let start_offset = match loaded {
                Some(loaded) => match loaded.get(&found.id) {
                    Some(checkpoint) if checkpoint.offset <= size => checkpoint.offset,
                    Some(checkpoint) => {
                        tracing::warn!(source = %self.source_id, path = %path_text, checkpoint = checkpoint.offset, size, "file is smaller than its checkpoint (truncated, or a new file reusing the inode); reading it from the beginning");
                        0
                    }
                    None => match self.settings.start_at {
                        StartAt::Beginning => 0,
                        StartAt::End => size,
                    },
                },
                None => 0,
            };
            // After two rotations within one scan several files may have had
            // this path; the one still being read is the one to wait for.
            let predecessor = self
                .files
                .values()
                .filter(|other| *other.path == *path_text)
                .min_by_key(|other| other.at_end())
                .map(|other| (other.id, other.reads));
            tracing::info!(source = %self.source_id, path = %path_text, id = %found.id, offset = start_offset, "tailing file");
            self.files.insert(
                found.id,
                TrackedFile {
                    id: found.id,
                    path: Arc::from(&*path_text),
                    path_value: Str::from(&*path_text),
                    handle: Arc::new(handle),
                    read_offset: start_offset,
                    size,
                    reads: 0,
                    lines: LineAssembler::new(self.settings.max_line_bytes),
                    pending: PendingBatches::new(Some(start_offset), self.acks_pending.clone()),
                    unread_bytes: self.metrics.gauge("pipe_source_file_unread_bytes", &[("partition", &path_text)]),
                    gone: false,
                    last_data_at: Instant::now(),
                    predecessor,
                    retry_at: None,
                    retry_backoff: self.initial_retry_backoff,
                    read_error_reported: false,
                },
            );
        }
        for file in self.files.values_mut() {
            if !seen.contains(&file.id) && !file.gone {
                tracing::info!(source = %self.source_id, path = %file.path, "file deleted or renamed out of the include patterns; reading it to its end");
                file.gone = true;
            }
        }
        Ok(())
    }

    /// Folds every acknowledgement that has arrived into the trackers and
    /// schedules a rewind for files whose batches failed.
    fn collect_statuses(&mut self) {
        let now = Instant::now();
        for file in self.files.values_mut() {
            while let Some(Some(status)) = file.pending.next_status().now_or_never() {
                if status == BatchStatus::Delivered {
                    if file.retry_at.is_none() {
                        file.retry_backoff = self.initial_retry_backoff;
                    }
                    continue;
                }
                self.delivery_failures.increment(1);
                if file.retry_at.is_none() {
                    tracing::warn!(source = %self.source_id, path = %file.path, status = status.as_str(), offset = file.committed_offset(), backoff = ?file.retry_backoff, "a batch was not delivered; reading the file again from its checkpoint after a backoff");
                    file.retry_at = Some(now + file.retry_backoff);
                    file.retry_backoff = (file.retry_backoff * 2).min(MAX_RETRY_BACKOFF);
                }
            }
        }
    }

    /// Reads one chunk from every file that may be read; returns whether any
    /// bytes were read.
    async fn read_round(&mut self, output: &mut SourceOutput) -> Result<bool, ComponentError> {
        let mut read_anything = false;
        let mut next = self.files.keys().next().copied();
        while let Some(id) = next {
            read_anything |= self.read_file(id, output).await?;
            next = self.files.range((Bound::Excluded(id), Bound::Unbounded)).next().map(|(id, _)| *id);
        }
        Ok(read_anything)
    }

    async fn read_file(&mut self, id: FileId, output: &mut SourceOutput) -> Result<bool, ComponentError> {
        if !self.may_read(id) {
            return Ok(false);
        }
        let Some(file) = self.files.get_mut(&id) else { return Ok(false) };
        let job = ReadJob {
            handle: Arc::clone(&file.handle),
            offset: file.read_offset,
            buffer: std::mem::take(&mut self.read_buffer),
            lines: std::mem::replace(&mut file.lines, LineAssembler::new(self.settings.max_line_bytes)),
            batches: BatchBuilder::new(&self.settings, &self.source_id, file),
            // A file nobody can write to any more will never finish its last
            // line; send it rather than lose it.
            finish_unterminated: file.gone && file.last_data_at.elapsed() >= self.settings.glob_interval,
        };
        let ReadOutcome { buffer, lines, read } = run_blocking(move || job.run()).await?;
        self.read_buffer = buffer;
        let file = self.files.get_mut(&id).expect("only this task removes files");
        file.lines = lines;
        file.reads += 1;
        let chunk = match read {
            Ok(chunk) => {
                file.read_error_reported = false;
                chunk
            }
            Err(error) => {
                self.read_failures.increment(1);
                if !file.read_error_reported {
                    tracing::warn!(source = %self.source_id, path = %file.path, %error, "cannot read file; will retry");
                    file.read_error_reported = true;
                }
                return Ok(false);
            }
        };
        if chunk.size < file.read_offset {
            tracing::warn!(source = %self.source_id, path = %file.path, size = chunk.size, offset = file.read_offset, "file shrank below the read offset (truncated, such as by copytruncate); reading it again from the beginning");
            file.pending.reset();
            file.pending = PendingBatches::new(Some(0), self.acks_pending.clone());
            file.read_offset = 0;
            file.size = chunk.size;
            file.lines.clear();
            file.retry_at = None;
            return Ok(true);
        }
        file.size = chunk.size;
        file.read_offset += chunk.filled as u64;
        file.unread_bytes.set((file.size - file.read_offset) as f64);
        if chunk.filled > 0 {
            file.last_data_at = Instant::now();
        }
        self.long_lines.increment(chunk.long_lines);
        self.parse_errors.increment(chunk.parse_failures);
        let ready = chunk.batches;
        for (mut events, end_offset, bytes) in ready {
            let notifier = file.pending.start_batch(end_offset);
            for event in &mut events {
                event.add_finalizers(EventFinalizers::new(EventFinalizer::new(Arc::clone(&notifier))));
            }
            drop(notifier);
            self.metrics.received_events.increment(events.len() as u64);
            self.metrics.received_bytes.increment(bytes);
            // Not raced against shutdown: a batch already registered is always
            // handed over, and the topology's deadline bounds the wait.
            output.send(events).await;
        }
        Ok(chunk.filled > 0)
    }

    /// Whether `id` may be read this round: not waiting for a retry, and not
    /// waiting for the file it replaced to be read to its end.
    fn may_read(&mut self, id: FileId) -> bool {
        let predecessor_busy = match self.files.get(&id).and_then(|file| file.predecessor) {
            Some((predecessor, reads_when_replaced)) => self
                .files
                .get(&predecessor)
                .is_some_and(|predecessor| predecessor.reads <= reads_when_replaced || !predecessor.at_end()),
            None => false,
        };
        let Some(file) = self.files.get_mut(&id) else { return false };
        if predecessor_busy {
            return false;
        }
        file.predecessor = None;
        let Some(retry_at) = file.retry_at else { return true };
        if Instant::now() < retry_at {
            return false;
        }
        if file.pending.blocked_by().is_some() {
            tracing::info!(source = %self.source_id, path = %file.path, offset = file.committed_offset(), "reading again from the checkpoint");
            file.rewind();
            return true;
        }
        if file.pending.in_flight() == 0 {
            // A truncation reset the batches the failure belonged to.
            file.retry_at = None;
            return true;
        }
        // The failed batch waits for earlier ones to resolve first.
        false
    }

    /// Stops tracking files that are gone, fully read and fully acknowledged.
    /// Their checkpoint entries go too: a later file that reuses the inode
    /// must be read from its beginning.
    fn retire_finished_files(&mut self) {
        let glob_interval = self.settings.glob_interval;
        let finished: Vec<FileId> = self
            .files
            .values()
            .filter(|file| {
                file.gone
                    && file.at_end()
                    && file.lines.unterminated_raw_length() == 0
                    && file.last_data_at.elapsed() >= glob_interval
                    && file.retry_at.is_none()
                    && file.pending.in_flight() == 0
                    && file.pending.blocked_by().is_none()
            })
            .map(|file| file.id)
            .collect();
        for id in finished {
            let file = self.files.remove(&id).expect("listed above");
            if !self.files.values().any(|other| other.path == file.path) {
                file.unread_bytes.set(0.0);
            }
            tracing::info!(source = %self.source_id, path = %file.path, offset = file.committed_offset(), "finished file; no longer tracked");
        }
    }

    /// Waits for every batch in flight (shutdown), counting failures.
    async fn drain_statuses(&mut self) {
        for file in self.files.values_mut() {
            while let Some(status) = file.pending.next_status().await {
                if status != BatchStatus::Delivered {
                    self.delivery_failures.increment(1);
                }
            }
        }
    }

    /// Writes the committed offsets if they changed since the last write
    /// (always when `force`).
    async fn write_checkpoints(&mut self, force: bool) -> Result<(), checkpoints::CheckpointError> {
        let current: Vec<FileCheckpoint> = self
            .files
            .values()
            .map(|file| FileCheckpoint { id: file.id, offset: file.committed_offset(), path: file.path.to_string() })
            .collect();
        if !force && self.last_written.as_ref() == Some(&current) {
            return Ok(());
        }
        let path = self.settings.checkpoint_path.clone();
        let (current, written) = tokio::task::spawn_blocking(move || {
            let written = checkpoints::store(&path, &current);
            (current, written)
        })
        .await
        .map_err(|error| checkpoints::CheckpointError::Write {
            path: self.settings.checkpoint_path.clone(),
            source: std::io::Error::other(error.to_string()),
        })?;
        written?;
        if self.checkpoints_failing {
            self.checkpoints_failing = false;
            self.health.running();
        }
        self.last_written = Some(current);
        Ok(())
    }

    fn report_checkpoint_failure(&mut self, error: &checkpoints::CheckpointError) {
        self.checkpoints_failing = true;
        self.checkpoint_failures.increment(1);
        tracing::error!(source = %self.source_id, %error, "cannot write checkpoints; will retry");
        self.health.degraded(error.to_string());
    }
}

/// Turns the lines of one read into batches of events.
struct BatchBuilder {
    decoding: Decoding,
    file_field: KeyString,
    source_id: Arc<str>,
    path: Arc<str>,
    path_value: Str,
    current: Vec<LogEvent>,
    current_bytes: u64,
    current_end: u64,
    ready: Vec<(Vec<LogEvent>, u64, u64)>,
    parse_failures: u64,
}

impl BatchBuilder {
    fn new(settings: &FileSourceSettings, source_id: &Arc<str>, file: &TrackedFile) -> BatchBuilder {
        BatchBuilder {
            decoding: settings.decoding,
            file_field: settings.file_field.clone(),
            source_id: Arc::clone(source_id),
            path: Arc::clone(&file.path),
            path_value: file.path_value.clone(),
            current: Vec::new(),
            current_bytes: 0,
            current_end: 0,
            ready: Vec::new(),
            parse_failures: 0,
        }
    }

    fn push(&mut self, line: Line<'_>) {
        let text = String::from_utf8_lossy(line.bytes);
        let (mut fields, failed) = decode_line(&text, self.decoding);
        self.parse_failures += u64::from(failed);
        fields.insert(self.file_field.clone(), Value::String(self.path_value.clone()));
        let mut metadata = EventMetadata::new(Arc::clone(&self.source_id), line.raw_length as usize);
        metadata.partition = Some(Arc::clone(&self.path));
        self.current.push(LogEvent::new(fields, metadata));
        self.current_bytes += line.raw_length;
        self.current_end = line.end_offset;
        if self.current.len() >= MAX_BATCH_LINES {
            self.close_batch();
        }
    }

    fn close_batch(&mut self) {
        if !self.current.is_empty() {
            self.ready.push((std::mem::take(&mut self.current), self.current_end, self.current_bytes));
            self.current_bytes = 0;
        }
    }

    /// The batches, each with its end offset and raw bytes, and the number of
    /// lines that failed to decode.
    fn finish(mut self) -> (Vec<(Vec<LogEvent>, u64, u64)>, u64) {
        self.close_batch();
        (self.ready, self.parse_failures)
    }
}

/// One file's read, run on the blocking pool: reading, splitting into lines
/// and decoding are all CPU or IO work that must stay off the async workers.
/// The buffer and the line state travel there and back by value.
struct ReadJob {
    handle: Arc<File>,
    offset: u64,
    buffer: Vec<u8>,
    lines: LineAssembler,
    batches: BatchBuilder,
    finish_unterminated: bool,
}

struct ReadOutcome {
    buffer: Vec<u8>,
    lines: LineAssembler,
    read: std::io::Result<ReadChunk>,
}

struct ReadChunk {
    /// File size when the chunk was read.
    size: u64,
    /// Bytes read, starting at the job's offset.
    filled: usize,
    /// Events with the end offset and raw bytes of each batch.
    batches: Vec<(Vec<LogEvent>, u64, u64)>,
    long_lines: u64,
    parse_failures: u64,
}

impl ReadJob {
    fn run(self) -> ReadOutcome {
        let ReadJob { handle, offset, mut buffer, mut lines, mut batches, finish_unterminated } = self;
        let read = read_chunk(&handle, offset, &mut buffer).map(|(size, filled)| {
            let mut long_lines = 0;
            // A shrunken file is the caller's to handle; its old line state is void.
            if size >= offset {
                lines.feed(&buffer[..filled], offset, |line| {
                    long_lines += u64::from(line.truncated);
                    batches.push(line);
                });
                if filled == 0 && finish_unterminated {
                    lines.finish_unterminated(offset, |line| {
                        long_lines += u64::from(line.truncated);
                        batches.push(line);
                    });
                }
            }
            let (batches, parse_failures) = batches.finish();
            ReadChunk { size, filled, batches, long_lines, parse_failures }
        });
        ReadOutcome { buffer, lines, read }
    }
}

/// Reads up to `buffer.len()` bytes at `offset`. Returns the file size and
/// how many bytes were read. Blocking.
fn read_chunk(handle: &File, offset: u64, buffer: &mut [u8]) -> std::io::Result<(u64, usize)> {
    let size = handle.metadata()?.len();
    if size <= offset {
        return Ok((size, 0));
    }
    let wanted = buffer.len().min((size - offset).min(usize::MAX as u64) as usize);
    let mut filled = 0;
    while filled < wanted {
        match handle.read_at(&mut buffer[filled..wanted], offset + filled as u64) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok((size, filled))
}

/// Expands the include patterns, drops excluded and non-regular files, and
/// opens the files not in `known`. Blocking.
fn expand_globs(include: &[String], exclude: &[glob::Pattern], known: &HashSet<FileId>) -> ScanResult {
    let mut problems = Vec::new();
    let mut paths = std::collections::BTreeSet::new();
    for pattern in include {
        match glob::glob(pattern) {
            Ok(entries) => {
                for entry in entries {
                    match entry {
                        Ok(path) => {
                            paths.insert(path);
                        }
                        // An unreadable directory on the way; its files cannot be seen.
                        Err(error) => problems.push((error.path().to_path_buf(), error.error().to_string())),
                    }
                }
            }
            Err(error) => problems.push((PathBuf::from(pattern), error.to_string())),
        }
    }
    let mut found = Vec::new();
    let mut ids = HashSet::new();
    for path in paths {
        if exclude.iter().any(|pattern| pattern.matches_path(&path)) {
            continue;
        }
        let metadata = match std::fs::metadata(&path) {
            Ok(metadata) => metadata,
            // Deleted between the directory read and the stat: nothing to do.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => {
                problems.push((path, error.to_string()));
                continue;
            }
        };
        if !metadata.is_file() {
            continue;
        }
        let id = FileId::of(&metadata);
        if known.contains(&id) {
            // Hard links: the first path (in path order) stands for the file.
            if ids.insert(id) {
                found.push(FoundFile { path, id, opened: None });
            }
            continue;
        }
        // The identity that counts is that of the file actually opened, in
        // case the path was replaced between the stat and the open.
        let opened = File::open(&path).and_then(|handle| {
            let metadata = handle.metadata()?;
            Ok((handle, metadata))
        });
        match opened {
            Ok((handle, metadata)) => {
                let id = FileId::of(&metadata);
                if ids.insert(id) {
                    let opened = if known.contains(&id) { None } else { Some((handle, metadata.len())) };
                    found.push(FoundFile { path, id, opened });
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => problems.push((path, error.to_string())),
        }
    }
    ScanResult { found, problems }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::config::ComponentKind;
    use crate::observability::Telemetry;
    use crate::sources::file::FileSourceConfig;
    use crate::topology::buffer::{buffer, BufferMetrics, BufferOptions, BufferReceiver};
    use crate::topology::fanout::Fanout;
    use crate::topology::BuildContext;

    const WAIT: Duration = Duration::from_secs(10);

    /// A running source reading `include` under a temporary directory, with
    /// short intervals, feeding a buffer the test reads and settles itself.
    struct Harness {
        directory: tempfile::TempDir,
        receiver: BufferReceiver,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<Result<(), ComponentError>>,
    }

    impl Harness {
        fn start(directory: tempfile::TempDir, extra_config: &str) -> Harness {
            let source = test_source(directory.path(), extra_config);
            let (cx, receiver) = test_context(directory.path());
            let shutdown = cx.shutdown.clone();
            let task = tokio::spawn(Box::new(source).run(cx));
            Harness { directory, receiver, shutdown, task }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.directory.path().join(name)
        }

        /// Receives events until `count` have arrived.
        async fn receive(&mut self, count: usize) -> Vec<LogEvent> {
            let mut events = Vec::new();
            while events.len() < count {
                let batch = tokio::time::timeout(WAIT, self.receiver.recv())
                    .await
                    .unwrap_or_else(|_| panic!("only {} of {count} events arrived", events.len()))
                    .expect("the source is running");
                events.extend(batch);
            }
            assert_eq!(events.len(), count, "no more events than expected");
            events
        }

        async fn receive_and_settle(&mut self, count: usize, status: BatchStatus) -> Vec<String> {
            let events = self.receive(count).await;
            let messages = events.iter().map(message).collect();
            for event in events {
                event.settle(status);
            }
            messages
        }

        async fn stop(self) -> tempfile::TempDir {
            self.shutdown.cancel();
            let Harness { directory, receiver, task, .. } = self;
            drop(receiver);
            tokio::time::timeout(WAIT, task).await.expect("stops in time").expect("task joins").expect("stops cleanly");
            directory
        }

        fn checkpoints(&self) -> Vec<FileCheckpoint> {
            stored_checkpoints(self.directory.path())
        }
    }

    /// A source reading `directory/*.log` with short intervals.
    fn test_source(directory: &Path, extra_config: &str) -> FileSource {
        let text = format!(
            "include = [{:?}]\nglob_interval = \"30ms\"\npoll_interval = \"10ms\"\ncheckpoint_interval = \"20ms\"\n{extra_config}",
            directory.join("*.log").display().to_string()
        );
        let config: FileSourceConfig = toml::from_str(&text).expect("test config parses");
        let build = BuildContext { id: "tail".into(), data_dir: directory.join("data") };
        FileSource {
            settings: config.settings(&build).expect("valid config"),
            initial_retry_backoff: Duration::from_millis(30),
        }
    }

    /// A context built the way `RunningTopology::start` builds one, whose
    /// output feeds a buffer the test reads and settles itself.
    fn test_context(directory: &Path) -> (SourceContext, BufferReceiver) {
        let (sender, receiver) = buffer(BufferOptions::default(), BufferMetrics::detached());
        let metrics = ComponentMetrics::register("tail", ComponentKind::Source, "file");
        let telemetry = Telemetry::default();
        let cx = SourceContext {
            id: Arc::from("tail"),
            output: SourceOutput::new(
                Fanout::new(vec![("sink".into(), sender)], metrics.discarded_intentional.clone()),
                metrics.clone(),
                telemetry.clone(),
            ),
            shutdown: CancellationToken::new(),
            data_dir: directory.join("data"),
            health: ComponentHealth::detached("tail"),
            acks_pending: Gauge::noop(),
            metrics,
            telemetry,
        };
        (cx, receiver)
    }

    fn stored_checkpoints(directory: &Path) -> Vec<FileCheckpoint> {
        let loaded = checkpoints::load(&directory.join("data/tail/checkpoints.json")).expect("checkpoints load");
        let mut entries: Vec<FileCheckpoint> = loaded.into_values().collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        entries
    }

    fn message(event: &LogEvent) -> String {
        event.get("message").and_then(Value::as_str).expect("text decoding sets message").to_string()
    }

    fn append(path: &Path, text: &str) {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open for append");
        file.write_all(text.as_bytes()).expect("append");
    }

    fn file_id(path: &Path) -> FileId {
        FileId::of(&std::fs::metadata(path).expect("stat"))
    }

    /// Polls `condition` every 10 ms until it holds or `WAIT` passes.
    async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn existing_and_appended_lines_arrive_and_only_delivered_offsets_are_stored() {
        let directory = tempfile::tempdir().expect("temp dir");
        let log = directory.path().join("app.log");
        append(&log, "one\ntwo\r\nthr");
        let mut harness = Harness::start(directory, "");

        let events = harness.receive(2).await;
        assert_eq!(events.iter().map(message).collect::<Vec<_>>(), ["one", "two"]);
        let path_text = log.display().to_string();
        assert_eq!(events[0].get("file").and_then(Value::as_str), Some(path_text.as_str()));
        assert_eq!(events[0].metadata().partition.as_deref(), Some(path_text.as_str()));
        assert_eq!(events[1].byte_size(), 5, "raw length includes the terminator");
        for event in events {
            event.settle(BatchStatus::Delivered);
        }

        append(&log, "ee\nfour\nunfinished");
        assert_eq!(harness.receive_and_settle(2, BatchStatus::Delivered).await, ["three", "four"]);
        let expected_offset = "one\ntwo\r\nthree\nfour\n".len() as u64;
        wait_until("the delivered offset is checkpointed", || {
            harness.checkpoints().first().is_some_and(|entry| entry.offset == expected_offset)
        })
        .await;

        let directory = harness.stop().await;
        let stored = stored_checkpoints(directory.path());
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].id, file_id(&log));
        assert_eq!(stored[0].offset, expected_offset, "the unfinished last line is neither emitted nor checkpointed");
    }

    #[tokio::test]
    async fn an_errored_batch_holds_the_checkpoint_and_is_read_again() {
        let directory = tempfile::tempdir().expect("temp dir");
        let log = directory.path().join("app.log");
        append(&log, "a\nb\n");
        let mut harness = Harness::start(directory, "");

        assert_eq!(harness.receive_and_settle(2, BatchStatus::Errored).await, ["a", "b"]);
        let again = harness.receive(2).await;
        assert_eq!(again.iter().map(message).collect::<Vec<_>>(), ["a", "b"], "the failed lines are read again");
        // Written at least once by now (the first interval always writes), and
        // never past the failed batch.
        wait_until("checkpoints are written", || !harness.checkpoints().is_empty()).await;
        assert_eq!(harness.checkpoints()[0].offset, 0);

        for event in again {
            event.settle(BatchStatus::Delivered);
        }
        let directory = harness.stop().await;
        assert_eq!(stored_checkpoints(directory.path())[0].offset, 4);
    }

    #[tokio::test]
    async fn rename_rotation_reads_the_old_file_to_its_end_then_the_new_one() {
        let directory = tempfile::tempdir().expect("temp dir");
        let log = directory.path().join("app.log");
        append(&log, "1\n2\n");
        let mut harness = Harness::start(directory, "");
        assert_eq!(harness.receive_and_settle(2, BatchStatus::Delivered).await, ["1", "2"]);
        let old_id = file_id(&log);

        append(&log, "3\n");
        // The rotated name is outside `*.log`, so the old file is only read
        // through the handle the source holds.
        std::fs::rename(&log, harness.path("app.log.1")).expect("rename");
        append(&log, "4\n5\n");
        let new_id = file_id(&log);
        assert_ne!(old_id, new_id);

        let messages = harness.receive_and_settle(3, BatchStatus::Delivered).await;
        assert_eq!(messages, ["3", "4", "5"], "nothing lost, old file first");
        wait_until("the old file is retired and only the new one is checkpointed", || {
            let stored = harness.checkpoints();
            stored.len() == 1 && stored[0].id == new_id && stored[0].offset == 4
        })
        .await;
        harness.stop().await;
    }

    #[tokio::test]
    async fn a_truncated_file_is_read_again_from_the_beginning() {
        let directory = tempfile::tempdir().expect("temp dir");
        let log = directory.path().join("app.log");
        append(&log, "first line\nsecond line\n");
        let mut harness = Harness::start(directory, "");
        assert_eq!(harness.receive_and_settle(2, BatchStatus::Delivered).await, ["first line", "second line"]);

        // copytruncate: the content was copied away, the file is emptied in place.
        std::fs::OpenOptions::new().write(true).open(&log).expect("open").set_len(0).expect("truncate");
        append(&log, "new\n");
        assert_eq!(harness.receive_and_settle(1, BatchStatus::Delivered).await, ["new"]);
        let directory = harness.stop().await;
        assert_eq!(stored_checkpoints(directory.path())[0].offset, 4);
    }

    #[tokio::test]
    async fn start_at_end_skips_what_files_without_checkpoint_already_hold() {
        let directory = tempfile::tempdir().expect("temp dir");
        let log = directory.path().join("app.log");
        append(&log, "old\n");
        let mut harness = Harness::start(directory, "start_at = \"end\"");
        wait_until("the starting offset is checkpointed", || {
            harness.checkpoints().first().is_some_and(|entry| entry.offset == 4)
        })
        .await;
        append(&log, "new\n");
        append(&harness.path("later.log"), "from a file created later\n");
        let mut messages = harness.receive_and_settle(2, BatchStatus::Delivered).await;
        messages.sort();
        assert_eq!(
            messages,
            ["from a file created later", "new"],
            "files appearing later are read from their beginning"
        );
        harness.stop().await;
    }

    #[tokio::test]
    async fn json_lines_get_the_path_field_and_bad_lines_are_kept() {
        let directory = tempfile::tempdir().expect("temp dir");
        append(&directory.path().join("app.log"), "{\"level\":\"info\",\"path\":\"x\"}\nnot json\n");
        let mut harness = Harness::start(directory, "decoding = \"json\"\nfile_field = \"path\"");
        let events = harness.receive(2).await;
        assert_eq!(events[0].get("level").and_then(Value::as_str), Some("info"));
        let expected_path = harness.path("app.log").display().to_string();
        assert_eq!(events[0].get("path").and_then(Value::as_str), Some(expected_path.as_str()), "the path field wins");
        assert_eq!(events[1].get("message").and_then(Value::as_str), Some("not json"));
        for event in events {
            event.settle(BatchStatus::Delivered);
        }
        harness.stop().await;
    }

    /// Steps the tailer by hand so the order of events is exact.
    #[tokio::test]
    async fn a_deleted_file_is_retired_only_after_its_batches_resolve() {
        let directory = tempfile::tempdir().expect("temp dir");
        let log = directory.path().join("app.log");
        append(&log, "a\nb\n");
        let mut source = test_source(directory.path(), "");
        // A gone file must stay idle for one glob interval before it is retired.
        source.settings.glob_interval = Duration::from_nanos(1);
        let (cx, mut receiver) = test_context(directory.path());
        let SourceContext { id, mut output, health, metrics, acks_pending, .. } = cx;
        let mut tailer = Tailer::new(source, id, metrics, acks_pending, health);
        tailer.scan(Some(&HashMap::new())).await.expect("scan");
        assert!(tailer.read_round(&mut output).await.expect("read"));
        let batch = receiver.try_recv().expect("one batch was sent");
        assert_eq!(batch.len(), 2);

        std::fs::remove_file(&log).expect("delete");
        tailer.scan(None).await.expect("scan");
        assert!(!tailer.read_round(&mut output).await.expect("read"), "nothing left to read");
        tailer.collect_statuses();
        tailer.retire_finished_files();
        assert_eq!(tailer.files.len(), 1, "kept while its batch is unacknowledged");

        for event in batch {
            event.settle(BatchStatus::Delivered);
        }
        tailer.collect_statuses();
        tailer.write_checkpoints(true).await.expect("checkpoints written");
        assert_eq!(
            stored_checkpoints(directory.path())[0].offset,
            4,
            "the final offset is stored before the file is dropped"
        );
        tailer.retire_finished_files();
        assert!(tailer.files.is_empty(), "retired once everything resolved");
        tailer.write_checkpoints(false).await.expect("checkpoints written");
        assert!(stored_checkpoints(directory.path()).is_empty(), "a deleted file's checkpoint goes with it");
    }

    #[test]
    fn globs_skip_excluded_files_directories_and_hard_link_duplicates() {
        let directory = tempfile::tempdir().expect("temp dir");
        let root = directory.path();
        std::fs::write(root.join("a.log"), "a\n").expect("write");
        std::fs::hard_link(root.join("a.log"), root.join("b.log")).expect("hard link");
        std::fs::write(root.join("c.log.gz"), "zz").expect("write");
        std::fs::create_dir(root.join("dir.log")).expect("mkdir");
        let include = vec![root.join("*.log*").display().to_string()];
        let exclude = vec![glob::Pattern::new("*.gz").expect("pattern")];
        let result = expand_globs(&include, &exclude, &HashSet::new());
        let paths: Vec<PathBuf> = result.found.iter().map(|found| found.path.clone()).collect();
        assert_eq!(paths, [root.join("a.log")]);
        assert!(result.found[0].opened.is_some());
        assert!(result.problems.is_empty());
        let known = HashSet::from([result.found[0].id]);
        assert!(expand_globs(&include, &exclude, &known).found[0].opened.is_none(), "known files are not opened again");
    }
}
