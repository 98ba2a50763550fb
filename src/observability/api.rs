//! The HTTP listener on `[api] address`: `/metrics` and `/health`.
//!
//! It outlives reloads: the topology is replaced underneath it, and the
//! health registry it reads is reset and refilled by the new topology.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use super::Telemetry;

#[derive(Clone)]
struct ApiState {
    prometheus: Option<PrometheusHandle>,
    telemetry: Telemetry,
}

/// Binds the API listener; returns the bound address (useful with port 0)
/// and the serving future.
pub async fn bind(
    address: SocketAddr,
    prometheus: Option<PrometheusHandle>,
    telemetry: Telemetry,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = std::io::Result<()>>)> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(ApiState { prometheus, telemetry });
    Ok((bound, async move { axum::serve(listener, router).await }))
}

async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let mut body = state.prometheus.as_ref().map(PrometheusHandle::render).unwrap_or_default();
    body.push_str(&state.telemetry.latency.render());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

async fn health(State(state): State<ApiState>) -> impl IntoResponse {
    let (healthy, report) = state.telemetry.health.report();
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(report))
}
