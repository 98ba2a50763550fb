//! `blackhole-http`: accepts any POST and counts requests and body bytes.
//!
//! `GET /_testkit/stats` answers `{"requests": N, "bytes": M}`. Used by the
//! generic `http` sink's tests and as a throughput target.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};

#[derive(Debug, Default)]
pub struct BlackholeStats {
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
}

/// The router and the counters it updates.
pub fn router() -> (Router, Arc<BlackholeStats>) {
    let stats = Arc::new(BlackholeStats::default());
    let router =
        Router::new().route("/_testkit/stats", get(report)).fallback(post(accept)).with_state(Arc::clone(&stats));
    (router, stats)
}

async fn accept(State(stats): State<Arc<BlackholeStats>>, body: Bytes) -> &'static str {
    stats.requests.fetch_add(1, Ordering::Relaxed);
    stats.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    "{}"
}

async fn report(State(stats): State<Arc<BlackholeStats>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "requests": stats.requests.load(Ordering::Relaxed),
        "bytes": stats.bytes.load(Ordering::Relaxed),
    }))
}
