//! `elasticsearch`: a general `_bulk` writer, and ElastAlert's writeback
//! writer (`mode = "writeback"`).
//!
//! Keys: `endpoints`, `auth.*`, `tls.*`, `request_timeout` (see
//! `elasticsearch::connection`); `mode` (`bulk`, the default, or
//! `writeback`); `index` (bulk mode, required: a template with strftime
//! specifiers filled from the event's `timestamp_field` in UTC, falling
//! back to the write time, and `{{ field }}` placeholders); `id_field`
//! (field whose value becomes `_id`; absent or null lets Elasticsearch pick
//! one); `action` (`index`, the default, or `create`); `timestamp_field`
//! (default `@timestamp`); `batch.max_events` (default 1000),
//! `batch.max_bytes` (default 10 MiB), `batch.timeout` (default 1 s);
//! `compression` (`none`, the default, or `gzip`); `request.concurrency`
//! (bulk requests in flight, default 2), `request.retry_initial_backoff`
//! (default 1 s), `request.retry_max_backoff` (default 60 s);
//! `writeback_index` (writeback mode: index prefix, default `elastalert`).
//!
//! Documents: the event's fields without `_id`, `_index` and `_type`
//! (metadata Elasticsearch refuses in a source; the poller adds them).
//! 6.x gets `_type: "_doc"` in the action; later versions never do.
//! Writeback mode maps events to ElastAlert 2's writeback documents; the
//! field mapping is in `writeback`.
//!
//! Acknowledgements: an event is settled after Elasticsearch answered 2xx
//! for its document (409 for `create`: already there), or after it was
//! dead-lettered (`DATA_DIR/dead_letter/SINK_ID.ndjson`, with the reason).
//! Retries and failure handling are in `sink`.
//!
//! Metrics: the standard component counters (`sent` = written documents),
//! `pipe_sink_es_bulk_requests_total`, `pipe_sink_es_request_retries_total`,
//! `pipe_sink_es_item_retries_total`, `pipe_sink_es_conflicts_total`,
//! `pipe_sink_es_request_duration_seconds` (summary),
//! `pipe_component_dead_letters_total`, and
//! `pipe_component_errors_total{error_type}` for `item_rejected`,
//! `encode_failed`, `timeout`, `connection_failed`, `malformed_response`,
//! `too_many_requests`, `server_error`, `request_failed`.

mod config;
pub mod encode;
pub mod setup;
mod sink;
pub mod writeback;

pub use config::{
    BatchConfig, BulkAction, Compression, Destination, ElasticsearchSinkConfig, RequestConfig, SinkMode, SinkSettings,
    DEFAULT_WRITEBACK_INDEX,
};
pub use setup::{create_writeback_indices, SetupError, SetupReport};
pub use sink::ElasticsearchSink;
pub use writeback::{
    read_active_silences, writeback_documents, Silence, WritebackDocument, WritebackIndices, WRITEBACK_TYPE_FIELD,
};
