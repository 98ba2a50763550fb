//! The Elasticsearch / OpenSearch client shared by the `elasticsearch_poller`
//! source, the `elasticsearch` sink and `pipe es setup`.
//!
//! Owns: the connection keys every Elasticsearch component accepts
//! (`endpoints`, `auth.*`, `tls.*`, `request_timeout`; `connection`), one
//! HTTP attempt against the current endpoint with failover to the next one
//! (`client`), the error shapes Elasticsearch answers with and whether each
//! is worth retrying (`client::EsError`), and what the server is
//! (`server::ServerInfo`, from `GET /`: distribution, version and the
//! request/response differences that follow from them), and the `writeback`
//! table of components that reach ElastAlert's writeback indices
//! (`writeback_target`).
//!
//! Guarantees: secrets (passwords, API keys, tokens) never appear in Debug
//! output, logs or error messages; an error names the endpoint, the HTTP
//! status, Elasticsearch's error type and reason, and what to do.
//!
//! Never here: retry loops and backoff for reading and writing data (callers
//! own them, because a source and a sink retry different units; the bounded
//! start-up read of `writeback_target` is the one exception), compatibility headers (pipe adapts its
//! requests to the detected version instead, so it always sends plain
//! `application/json` / `application/x-ndjson`).

pub mod client;
pub mod connection;
pub mod server;
pub mod writeback_target;

pub use client::{EsClient, EsError, EsResponse};
pub use connection::{EsAuthConfig, EsAuthStrategy, EsConnectionConfig, EsTlsConfig};
pub use server::{Distribution, ServerInfo};
pub use writeback_target::{StartupReadError, WritebackTarget, WritebackTargetConfig};
