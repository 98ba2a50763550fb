//! Metrics, health, end-to-end latency, progress logging and the HTTP API.
//!
//! Counters and gauges go through the `metrics` facade; `main` installs the
//! Prometheus recorder and `api` serves it on `/metrics`, followed by the
//! hdrhistogram-backed `pipe_event_latency_seconds` summary that
//! `latency::LatencyRegistry` renders itself. Components register their metric
//! handles once (`ComponentMetrics::register`) and only increment them on the
//! hot path.
//!
//! `Telemetry` bundles the shared, non-metric state (health, latency,
//! progress) that the topology hands to every component context.

pub mod api;
mod component_metrics;
pub mod health;
pub mod latency;
pub mod progress;

use std::sync::Arc;

pub use component_metrics::ComponentMetrics;
pub use health::{ComponentHealth, HealthRegistry};
pub use latency::{LatencyRecorder, LatencyRegistry};
pub use progress::Progress;

/// Shared observability state for one process.
#[derive(Clone, Default)]
pub struct Telemetry {
    pub health: HealthRegistry,
    pub latency: LatencyRegistry,
    pub progress: Arc<Progress>,
}
