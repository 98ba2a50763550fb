//! `file`: tails files matched by glob patterns, survives rotation, and
//! checkpoints read offsets only after the lines before them were delivered.
//!
//! Keys: `include` (glob patterns; required; relative ones are resolved
//! against the working directory), `exclude` (glob patterns),
//! `decoding` (`"text"`, the default: `{"message": line}`; or `"json"`, see
//! `sources::decoding`), `start_at` (`"beginning"`, the default, or `"end"`;
//! only for files present at start-up that have no checkpoint),
//! `glob_interval` (default 1 s), `poll_interval` (default 250 ms),
//! `max_line_bytes` (default 1 MiB; longer lines are cut and counted as
//! `line_too_long`), `checkpoint_interval` (default 1 s), `file_field`
//! (default `"file"`: the field that holds the path; it overwrites a decoded
//! field of that name).
//!
//! Events: the decoded line plus the path field; `byte_size` is the line's
//! raw length in the file (terminator included); `partition` is the path.
//! Only complete lines are emitted: a last line without `\n` waits for more
//! data, and is not emitted at shutdown. The one exception is a file that is
//! gone (deleted or renamed out of the patterns) and idle for `glob_interval`:
//! nobody can finish its last line any more, so it is sent as is.
//!
//! Identity and rotation: a file is its device and inode (`FileId`; why, and
//! the inode-reuse caveat, are in `checkpoints`). A renamed file keeps being
//! read through its open handle; a new file at the old path is read from its
//! beginning once the old one was read to its end, so a path's lines stay in
//! order across a rename rotation. A file that shrinks below its read offset
//! (copytruncate) is read again from offset 0 with a warning; truncation
//! followed by writes that grow it past the old offset before the next poll
//! cannot be seen. A file that is gone is read to its end, and dropped once
//! its batches are acknowledged; its checkpoint entry goes with it. To read
//! the tail of files rotated while pipe was stopped, let `include` match the
//! rotated names too (`app.log*`, with `exclude = ["*.gz"]`).
//!
//! Acknowledgements: one batch per read chunk (at most 1000 lines, 64 KiB of
//! file). Each file has a `PendingBatches` of batch end offsets; its
//! checkpoint is the committable offset (the end of the delivered prefix).
//! A batch that comes back errored or rejected is counted as
//! `delivery_failed`; after a backoff (1 s, doubling to 30 s) the file is
//! rewound to its committable offset and read again (at-least-once).
//! Checkpoints go to `DATA_DIR/<source id>/checkpoints.json`, replaced
//! atomically, at most every `checkpoint_interval` and when something changed,
//! and always at shutdown after the outstanding acknowledgements arrived.
//! Checkpoints of files not found at start-up are dropped.
//!
//! Metrics: the standard component counters;
//! `pipe_component_errors_total{error_type}` for `parse_failed`,
//! `line_too_long`, `delivery_failed`, `read_failed`, `open_failed` and
//! `checkpoint_write_failed`; `pipe_source_acks_pending`; and
//! `pipe_source_file_unread_bytes{partition}` (file size minus read offset)
//! instead of a lag in seconds, which a file cannot tell.
//!
//! Never follows inotify events (polling is portable and bounded), never
//! reads compressed files, never writes to the files it tails.

mod checkpoints;
mod config;
mod lines;
mod source;

pub use config::{FileSourceConfig, StartAt};
