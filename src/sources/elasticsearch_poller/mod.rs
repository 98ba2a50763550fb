//! `elasticsearch_poller`: ElastAlert's query loop as a source. Every
//! `run_every` it searches Elasticsearch (or OpenSearch) for the documents
//! of a time window, page by page, and emits one event per hit.
//!
//! Keys: `endpoints`, `auth.*`, `tls.*`, `request_timeout` (see
//! `elasticsearch::connection`); `index` (pattern, comma list, or strftime
//! names such as `logstash-%Y.%m.%d`, expanded in UTC only over the days, or
//! hours with `%H`, a window touches); `timestamp_field` (default
//! `@timestamp`); `timestamp_format` (how window bounds are written:
//! `strict_date_optional_time`, the default, `epoch_millis` or
//! `epoch_second`); `query` (a query_string text, or one query DSL clause
//! as a TOML table; ANDed with the time range); `run_every` (default 1 min);
//! `buffer_time` (default 15 min: each run re-reads that much history so
//! late documents are caught); `query_delay` (default 0: the window ends at
//! now minus this, leave room for the refresh interval); `page_size`
//! (default 1000, at most 10 000); `old_query_limit` (default 1 week: how far
//! back a restart catches up); `tiebreaker_field` (a unique keyword field;
//! needed only where neither `_shard_doc` nor `_id` can break timestamp
//! ties); `point_in_time` (default true), `pit_keep_alive` (default 1 min);
//! `retry_initial_backoff` (default 1 s), `retry_max_backoff` (default 60 s);
//! `writeback` (optional table: `writeback_index`, default `elastalert`;
//! `startup_timeout`, default 30 s; `endpoints`, `auth.*`, `tls.*`,
//! `request_timeout`, which default to the source's own connection): also
//! keep the checkpoint in the writeback index.
//!
//! Windows (`windows`): ElastAlert's, `(start, end]` with
//! `end = now − query_delay`; overlapping runs are de-duplicated by
//! `_index` + `_id` in a bounded processed-hits cache, so a late document
//! inside `buffer_time` is emitted once. Paging: `search_after` on
//! `timestamp_field` ascending plus a tiebreaker, inside a point in time
//! where the server has one (Elasticsearch 7.10+ `_pit` with the
//! `_shard_doc` tiebreaker from 7.12, OpenSearch 2.4+
//! `_search/point_in_time`), else plain `search_after` with `_id` (6.x, 7.x,
//! OpenSearch) or `tiebreaker_field`. The server is identified with `GET /`
//! (OpenSearch by `version.distribution`); `hits.total` may be a number or
//! an object; `_type` is kept on the event where the server reports it;
//! compatibility headers are never sent (requests are shaped per version
//! instead).
//!
//! Events: the hit's `_source` plus `_id` and `_index` (and `_type` on 6.x
//! and 7.x). `byte_size` is the page's body size divided by its hits.
//!
//! Acknowledgements and checkpoint: the end of the last window whose every
//! hit was delivered, kept in `DATA_DIR/<source id>/checkpoint.json`,
//! written after every run when it moved and at shutdown. With `writeback`
//! it is also written to `<writeback_index>_status`, document
//! `pipe_poller:<source id>` (`rule_name`, `endtime`, `@timestamp`), so
//! another host can take over; a start-up read of it is retried for
//! `startup_timeout`, then skipped with a warning. A restart resumes from
//! the newer of the two (never before it, and never further back than
//! `old_query_limit`), so no window is skipped; hits emitted but not yet
//! delivered at shutdown are emitted again (at-least-once). A batch that
//! comes back errored makes the source read again from the first
//! undelivered window.
//!
//! Faults: transport errors, timeouts, 429, 5xx, malformed answers, failed
//! shards (`_shards.failed > 0`), server-side timeouts and expired points in
//! time retry the whole window with backoff (`Degraded` on `/health`
//! meanwhile); 401/403 stop the source with the reason and a hint on
//! `/health`; other 4xx (a query Elasticsearch refuses) stop it too.
//!
//! Metrics: `pipe_source_lag_seconds{partition=<index>}` (now minus the end
//! of the last delivered window), `pipe_source_es_hits_total`,
//! `pipe_source_es_duplicate_hits_total`, `pipe_source_es_pages_total`,
//! `pipe_source_es_windows_total`, `pipe_source_es_retries_total`,
//! `pipe_source_es_query_duration_seconds` (summary),
//! `pipe_source_es_seen_evictions_total`, and
//! `pipe_component_errors_total{error_type}` for `timeout`,
//! `connection_failed`, `malformed_response`, `too_many_requests`,
//! `server_error`, `request_failed`, `shard_failures`, `delivery_failed`,
//! `checkpoint_write_failed`, `checkpoint_read_failed`.
//!
//! Never writes to Elasticsearch except its checkpoint document, never
//! uses scroll, never sorts on `_id` on Elasticsearch 8.

mod checkpoint;
mod config;
mod poller;
pub mod query;
pub mod windows;

pub use config::{ElasticsearchPollerConfig, PollerSettings, QueryConfig, CHECKPOINT_FILE_NAME};
pub use poller::ElasticsearchPoller;
