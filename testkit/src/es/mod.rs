//! `es`: a protocol-faithful Elasticsearch / OpenSearch emulator for pipe's
//! `elasticsearch_poller` source and `elasticsearch` sink.
//!
//! Start one with `EsEmulator::start(EsConfig::elasticsearch("8.15.0")?)`;
//! it serves on 127.0.0.1:0 through the harness `http::EmulatorServer`
//! (request log, `FaultPlan`) and is controlled through `EsHandle` in Rust
//! or `/_testkit/...` over HTTP (`server.rs` lists the endpoints).
//!
//! Code map: `version.rs` (product/release rules and `GET /`), `server.rs`
//! (routing, auth, compatibility headers, gzip, `filter_path`, control
//! endpoints), `bulk.rs`, `search.rs`, `query.rs` + `query_string.rs`,
//! `mapping.rs` (dynamic mapping, mapping errors, analysis), `dates.rs`,
//! `store.rs` (indices, refresh, PIT snapshots, templates), `faults.rs`
//! (item faults, shard failures, malformed responses), `fixtures.rs`.
//!
//! Invariants: documents are searchable only after a refresh; a PIT never
//! sees writes made after it was opened; every error body has
//! Elasticsearch's shape for the emulated release. Nothing here is shared
//! with the `pipe` crate, so a misunderstanding of the protocol in pipe's
//! client is not mirrored here. Secrets in `EsAuth` never appear in Debug
//! output or error bodies.

pub mod bulk;
pub mod dates;
pub mod error;
pub mod faults;
pub mod fixtures;
pub mod mapping;
pub mod query;
pub mod query_string;
pub mod search;
pub mod server;
pub mod store;
pub mod version;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};

use crate::http::{EmulatorServer, FaultPlan, RequestLog};

pub use error::EsEmulatorError;
pub use faults::{EsFaults, ItemFaultKind};
pub use fixtures::{DemoFixture, Fixture, FixtureDocument, LoadReport};
pub use version::{Distribution, Product, Version};

/// The refresh interval Elasticsearch uses when an index sets none.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// Credentials the emulator accepts. Empty means no authentication.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EsAuth {
    basic: Option<(String, String)>,
    /// `ApiKey` header values: base64 of `id:api_key`.
    api_keys: Vec<String>,
    bearer_tokens: Vec<String>,
}

impl fmt::Debug for EsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EsAuth")
            .field("basic_user", &self.basic.as_ref().map(|(user, _)| user.as_str()))
            .field("api_keys", &self.api_keys.len())
            .field("bearer_tokens", &self.bearer_tokens.len())
            .finish()
    }
}

impl EsAuth {
    pub fn is_open(&self) -> bool {
        self.basic.is_none() && self.api_keys.is_empty() && self.bearer_tokens.is_empty()
    }

    pub fn basic_user(&self) -> Option<&str> {
        self.basic.as_ref().map(|(user, _)| user.as_str())
    }

    fn accepts_basic(&self, user: &str, password: &str) -> bool {
        self.basic
            .as_ref()
            .is_some_and(|(expected_user, expected_password)| expected_user == user && expected_password == password)
    }

    fn accepts_api_key(&self, encoded: &str) -> bool {
        self.api_keys.iter().any(|key| key == encoded)
    }

    fn accepts_bearer(&self, token: &str) -> bool {
        self.bearer_tokens.iter().any(|expected| expected == token)
    }
}

/// How the emulator behaves.
#[derive(Debug, Clone)]
pub struct EsConfig {
    pub product: Product,
    /// Default `index.refresh_interval`; `None` refreshes only on request.
    pub refresh_interval: Option<Duration>,
    pub auth: EsAuth,
    pub cluster_name: String,
    pub node_name: String,
}

impl Default for EsConfig {
    fn default() -> EsConfig {
        EsConfig {
            product: Product::new(Distribution::Elasticsearch, Version::new(8, 15, 0)).expect("8.15.0 is emulated"),
            refresh_interval: Some(DEFAULT_REFRESH_INTERVAL),
            auth: EsAuth::default(),
            cluster_name: "testkit".to_string(),
            node_name: "testkit-node-1".to_string(),
        }
    }
}

impl EsConfig {
    pub fn elasticsearch(version: &str) -> Result<EsConfig, EsEmulatorError> {
        Ok(EsConfig { product: Product::elasticsearch(version)?, ..EsConfig::default() })
    }

    pub fn opensearch(version: &str) -> Result<EsConfig, EsEmulatorError> {
        Ok(EsConfig { product: Product::opensearch(version)?, ..EsConfig::default() })
    }

    pub fn with_refresh_interval(mut self, interval: Option<Duration>) -> EsConfig {
        self.refresh_interval = interval;
        self
    }

    pub fn with_basic_auth(mut self, user: &str, password: &str) -> EsConfig {
        self.auth.basic = Some((user.to_string(), password.to_string()));
        self
    }

    /// Accepts `Authorization: ApiKey <value>`. `value` is either the
    /// encoded form (base64 of `id:key`, the create-API-key `encoded`
    /// field) or `id:key`, which is encoded here.
    pub fn with_api_key(mut self, value: &str) -> EsConfig {
        let encoded = if value.contains(':') { STANDARD.encode(value) } else { value.to_string() };
        self.auth.api_keys.push(encoded);
        self
    }

    pub fn with_bearer_token(mut self, token: &str) -> EsConfig {
        self.auth.bearer_tokens.push(token.to_string());
        self
    }
}

/// Counters, as `GET /_testkit/stats` reports them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EsStats {
    pub searches: u64,
    pub counts: u64,
    pub bulk_requests: u64,
    /// Bulk items by `result` (`created`, `updated`, `deleted`,
    /// `not_found`, `noop`) plus `failed`.
    pub bulk_items: std::collections::BTreeMap<String, u64>,
    /// Bulk items by HTTP status (`"201"`, `"429"`, ...).
    pub bulk_item_statuses: std::collections::BTreeMap<String, u64>,
    pub pits_open: usize,
    pub pits_opened: u64,
    pub pits_closed: u64,
    pub pits_expired: u64,
    pub refreshes: u64,
    pub auth_failures: u64,
    pub injected_item_faults: u64,
    pub injected_shard_failures: u64,
    pub injected_malformed_responses: u64,
    pub indices: usize,
    /// Live documents (searchable or not) over all indices.
    pub documents: usize,
}

/// One stored document, for assertions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocumentView {
    #[serde(rename = "_index")]
    pub index: String,
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(rename = "_version")]
    pub version: u64,
    #[serde(rename = "_seq_no")]
    pub seq_no: u64,
    #[serde(rename = "_source")]
    pub source: Value,
    /// Whether search sees this version yet (refreshed).
    pub searchable: bool,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: EsConfig,
    /// One std mutex: no critical section awaits, and searches only clone
    /// `Arc` snapshots under it.
    pub(crate) cluster: Mutex<store::Cluster>,
    pub(crate) faults: EsFaults,
    /// The harness fault plan, known once the server has started.
    pub(crate) http_faults: OnceLock<FaultPlan>,
    pub(crate) node_id: String,
}

/// Control handle: cheap to clone, usable from tests while the server runs.
#[derive(Debug, Clone)]
pub struct EsHandle(pub(crate) Arc<Shared>);

impl EsHandle {
    pub(crate) fn cluster(&self) -> MutexGuard<'_, store::Cluster> {
        // The cluster is plain data; a panic in another request must not
        // take the whole emulator down.
        self.0.cluster.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn config(&self) -> &EsConfig {
        &self.0.config
    }

    pub fn product(&self) -> Product {
        self.0.config.product
    }

    /// Emulator-level faults (bulk items, shard failures, malformed bodies).
    pub fn faults(&self) -> &EsFaults {
        &self.0.faults
    }

    /// Creates an index with a create-index body (`settings`, `mappings`).
    pub fn create_index(&self, name: &str, body: Value) -> Result<(), EsEmulatorError> {
        self.cluster().create_index(name, &body)?;
        Ok(())
    }

    /// Writes fixture documents (see `fixtures.rs` for the shape).
    pub fn load(&self, fixture: &Fixture) -> Result<LoadReport, EsEmulatorError> {
        fixtures::load(&mut self.cluster(), fixture)
    }

    /// Writes `demo.count` documents made by `DemoLogGenerator`.
    pub fn load_demo(&self, demo: &DemoFixture) -> Result<LoadReport, EsEmulatorError> {
        let fixture = fixtures::demo_fixture(demo);
        self.load(&fixture)
    }

    /// Refreshes the indices an expression resolves to (`*` for all).
    pub fn refresh(&self, expression: &str) -> Result<(), EsEmulatorError> {
        let mut cluster = self.cluster();
        let names = cluster.resolve(expression, store::TargetOptions::default())?;
        for name in names {
            cluster.refresh_index(&name);
        }
        Ok(())
    }

    /// Live documents of the indices an expression resolves to, in index
    /// then sequence order, with whether search sees them yet.
    pub fn documents(&self, expression: &str) -> Result<Vec<DocumentView>, EsEmulatorError> {
        let cluster = self.cluster();
        let names =
            cluster.resolve(expression, store::TargetOptions { ignore_unavailable: true, allow_no_indices: true })?;
        let mut views = Vec::new();
        for name in names {
            let Some(index) = cluster.indices.get(&name) else { continue };
            let searchable = index.searchable();
            for document in index.live_documents() {
                let visible =
                    searchable.documents.iter().any(|seen| seen.id == document.id && seen.seq_no == document.seq_no);
                views.push(DocumentView {
                    index: name.clone(),
                    id: document.id.clone(),
                    version: document.version,
                    seq_no: document.seq_no,
                    source: document.source.clone(),
                    searchable: visible,
                });
            }
        }
        Ok(views)
    }

    pub fn stats(&self) -> EsStats {
        let mut cluster = self.cluster();
        cluster.expire_pits(Instant::now());
        let counters = cluster.counters.clone();
        EsStats {
            searches: counters.searches,
            counts: counters.counts,
            bulk_requests: counters.bulk_requests,
            bulk_items: counters.bulk_items_by_result,
            bulk_item_statuses: counters
                .bulk_items_by_status
                .iter()
                .map(|(status, count)| (status.to_string(), *count))
                .collect(),
            pits_open: cluster.pits.len(),
            pits_opened: counters.pits_opened,
            pits_closed: counters.pits_closed,
            pits_expired: counters.pits_expired,
            refreshes: counters.refreshes,
            auth_failures: counters.auth_failures,
            injected_item_faults: counters.injected_item_faults,
            injected_shard_failures: counters.injected_shard_failures,
            injected_malformed_responses: counters.injected_malformed_responses,
            indices: cluster.indices.len(),
            documents: cluster.indices.values().map(|index| index.live_documents().len()).sum(),
        }
    }

    /// Deletes every index, template and PIT, zeroes the counters and
    /// clears all faults (emulator and harness).
    pub fn reset(&self) {
        let mut cluster = self.cluster();
        let product = cluster.product;
        let interval = cluster.default_refresh_interval;
        *cluster = store::Cluster::new(product, interval);
        drop(cluster);
        self.0.faults.clear();
        if let Some(plan) = self.0.http_faults.get() {
            plan.clear();
        }
    }

    /// The harness fault plan (whole-response failures, latency, drops);
    /// `None` until the router is served by an `EmulatorServer`.
    pub fn http_faults(&self) -> Option<&FaultPlan> {
        self.0.http_faults.get()
    }

    /// A JSON error body Elasticsearch would send with `status`, for use
    /// with the harness `FaultPlan`.
    pub fn canned_error_body(&self, status: u16) -> Value {
        server::canned_error(status).to_json().unwrap_or_else(|| json!({"status": status}))
    }
}

/// The router and its control handle, for serving on a custom server.
pub fn router(config: EsConfig) -> (Router, EsHandle) {
    let cluster = store::Cluster::new(config.product, config.refresh_interval);
    let node_id = format!("{}-id", config.node_name);
    let handle = EsHandle(Arc::new(Shared {
        config,
        cluster: Mutex::new(cluster),
        faults: EsFaults::default(),
        http_faults: OnceLock::new(),
        node_id,
    }));
    (server::router(handle.clone()), handle)
}

/// A running emulator. Dropping it stops the server.
#[derive(Debug)]
pub struct EsEmulator {
    server: EmulatorServer,
    handle: EsHandle,
}

impl EsEmulator {
    /// Serves on 127.0.0.1 with a port the OS picks.
    pub async fn start(config: EsConfig) -> std::io::Result<EsEmulator> {
        EsEmulator::start_on("127.0.0.1:0".parse().expect("valid address"), config).await
    }

    pub async fn start_on(address: SocketAddr, config: EsConfig) -> std::io::Result<EsEmulator> {
        let (router, handle) = router(config);
        let server = EmulatorServer::start_on(address, router).await?;
        // Set exactly once, right after the server exists.
        let _ = handle.0.http_faults.set(server.faults().clone());
        Ok(EsEmulator { server, handle })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn address(&self) -> SocketAddr {
        self.server.address()
    }

    pub fn handle(&self) -> &EsHandle {
        &self.handle
    }

    /// Harness faults: whole-response status codes, latency, drops.
    pub fn http_faults(&self) -> &FaultPlan {
        self.server.faults()
    }

    pub fn requests(&self) -> &RequestLog {
        self.server.requests()
    }

    /// Prints `listening on http://ADDR` and serves until killed.
    pub async fn serve_forever(self) {
        let EsEmulator { server, handle } = self;
        let _keep_state = handle;
        server.serve_forever().await
    }
}
