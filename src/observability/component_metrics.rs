//! The metric handles every component emits, registered once per component.
//!
//! Names follow the public interface: `pipe_component_received_events_total`,
//! `pipe_component_received_bytes_total`, `pipe_component_sent_events_total`,
//! `pipe_component_sent_bytes_total`, `pipe_component_discarded_events_total{intentional}`,
//! `pipe_component_errors_total{error_type,stage}`, `pipe_source_acks_pending`,
//! `pipe_source_lag_seconds{partition}`; each carries `component_id`,
//! `component_kind` and `component_type`.

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram};

use crate::config::ComponentKind;

/// Registered handles plus the label set for component-specific metrics.
#[derive(Clone)]
pub struct ComponentMetrics {
    labels: Arc<[(&'static str, String); 3]>,
    pub received_events: Counter,
    pub received_bytes: Counter,
    pub sent_events: Counter,
    pub sent_bytes: Counter,
    pub discarded_intentional: Counter,
    pub discarded_unintentional: Counter,
}

impl ComponentMetrics {
    pub fn register(id: &str, kind: ComponentKind, component_type: &'static str) -> ComponentMetrics {
        let labels = Arc::new([
            ("component_id", id.to_string()),
            ("component_kind", kind.as_str().to_string()),
            ("component_type", component_type.to_string()),
        ]);
        let with = |extra: (&'static str, &str)| {
            let mut all: Vec<(&'static str, String)> = labels.to_vec();
            all.push((extra.0, extra.1.to_string()));
            all
        };
        ComponentMetrics {
            received_events: metrics::counter!("pipe_component_received_events_total", labels.as_slice()),
            received_bytes: metrics::counter!("pipe_component_received_bytes_total", labels.as_slice()),
            sent_events: metrics::counter!("pipe_component_sent_events_total", labels.as_slice()),
            sent_bytes: metrics::counter!("pipe_component_sent_bytes_total", labels.as_slice()),
            discarded_intentional: metrics::counter!(
                "pipe_component_discarded_events_total",
                &with(("intentional", "true"))
            ),
            discarded_unintentional: metrics::counter!(
                "pipe_component_discarded_events_total",
                &with(("intentional", "false"))
            ),
            labels,
        }
    }

    pub fn component_id(&self) -> &str {
        &self.labels[0].1
    }

    /// `pipe_component_errors_total{error_type, stage}`. Register the handle
    /// once per error class the component can hit and keep it.
    pub fn errors(&self, error_type: &'static str, stage: &'static str) -> Counter {
        self.counter("pipe_component_errors_total", &[("error_type", error_type), ("stage", stage)])
    }

    /// A component-specific counter carrying the standard labels plus `extra`.
    pub fn counter(&self, name: &'static str, extra: &[(&'static str, &str)]) -> Counter {
        metrics::counter!(name, &self.labels_with(extra))
    }

    /// A component-specific gauge carrying the standard labels plus `extra`.
    pub fn gauge(&self, name: &'static str, extra: &[(&'static str, &str)]) -> Gauge {
        metrics::gauge!(name, &self.labels_with(extra))
    }

    /// A component-specific histogram (rendered as a summary) carrying the
    /// standard labels plus `extra`.
    pub fn histogram(&self, name: &'static str, extra: &[(&'static str, &str)]) -> Histogram {
        metrics::histogram!(name, &self.labels_with(extra))
    }

    fn labels_with(&self, extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        let mut all: Vec<(&'static str, String)> = self.labels.to_vec();
        all.extend(extra.iter().map(|(key, value)| (*key, value.to_string())));
        all
    }
}
