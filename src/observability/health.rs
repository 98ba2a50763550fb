//! Per-component health, served on `/health`.
//!
//! `/health` answers 200 while every component is starting, running or has
//! finished normally, and 503 when any component has failed or the pipeline
//! is shutting down. The JSON body lists each component with its status and,
//! for failures, the reason (which never contains secrets: components report
//! their own redacted messages).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::config::ComponentKind;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum ComponentStatus {
    Starting,
    Running,
    /// Running, but with a problem worth surfacing (a failed optional health
    /// check, say). Does not make `/health` fail.
    Degraded {
        reason: String,
    },
    Failed {
        reason: String,
    },
    Stopped,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComponentHealthEntry {
    pub kind: &'static str,
    #[serde(rename = "type")]
    pub component_type: &'static str,
    #[serde(flatten)]
    pub status: ComponentStatus,
}

#[derive(Debug, Default)]
struct HealthState {
    components: BTreeMap<String, ComponentHealthEntry>,
    shutting_down: bool,
}

/// The health of every component of the running pipeline.
#[derive(Debug, Clone, Default)]
pub struct HealthRegistry(Arc<Mutex<HealthState>>);

#[derive(Debug, Serialize)]
pub struct HealthReport {
    pub status: &'static str,
    pub components: BTreeMap<String, ComponentHealthEntry>,
}

impl HealthRegistry {
    /// Registers a component as starting and returns its handle.
    pub fn register(&self, id: &str, kind: ComponentKind, component_type: &'static str) -> ComponentHealth {
        self.0.lock().unwrap().components.insert(
            id.to_string(),
            ComponentHealthEntry { kind: kind.as_str(), component_type, status: ComponentStatus::Starting },
        );
        ComponentHealth { registry: self.clone(), id: Arc::from(id) }
    }

    /// Forgets every component (before a reload registers the new set).
    pub fn clear(&self) {
        let mut state = self.0.lock().unwrap();
        state.components.clear();
        state.shutting_down = false;
    }

    pub fn set_shutting_down(&self, shutting_down: bool) {
        self.0.lock().unwrap().shutting_down = shutting_down;
    }

    pub fn report(&self) -> (bool, HealthReport) {
        let state = self.0.lock().unwrap();
        let failed = state.components.values().any(|entry| matches!(entry.status, ComponentStatus::Failed { .. }));
        let healthy = !failed && !state.shutting_down;
        let status = if state.shutting_down {
            "shutting_down"
        } else if failed {
            "failed"
        } else {
            "ok"
        };
        (healthy, HealthReport { status, components: state.components.clone() })
    }

    pub fn status_of(&self, id: &str) -> Option<ComponentStatus> {
        self.0.lock().unwrap().components.get(id).map(|entry| entry.status.clone())
    }

    fn set(&self, id: &str, status: ComponentStatus) {
        if let Some(entry) = self.0.lock().unwrap().components.get_mut(id) {
            entry.status = status;
        }
    }
}

/// One component's handle on its health entry.
#[derive(Debug, Clone)]
pub struct ComponentHealth {
    registry: HealthRegistry,
    id: Arc<str>,
}

impl ComponentHealth {
    pub fn running(&self) {
        self.registry.set(&self.id, ComponentStatus::Running);
    }

    pub fn degraded(&self, reason: impl Into<String>) {
        self.registry.set(&self.id, ComponentStatus::Degraded { reason: reason.into() });
    }

    pub fn failed(&self, reason: impl Into<String>) {
        self.registry.set(&self.id, ComponentStatus::Failed { reason: reason.into() });
    }

    pub fn stopped(&self) {
        self.registry.set(&self.id, ComponentStatus::Stopped);
    }

    pub fn status(&self) -> Option<ComponentStatus> {
        self.registry.status_of(&self.id)
    }

    /// A handle that belongs to no registry, for tests and benches.
    pub fn detached(id: &str) -> ComponentHealth {
        let registry = HealthRegistry::default();
        registry.register(id, ComponentKind::Sink, "detached")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_component_or_shutdown_makes_the_pipeline_unhealthy() {
        let registry = HealthRegistry::default();
        let source = registry.register("in", ComponentKind::Source, "demo");
        let sink = registry.register("out", ComponentKind::Sink, "console");
        source.running();
        sink.running();
        assert!(registry.report().0);
        sink.failed("token rejected");
        let (healthy, report) = registry.report();
        assert!(!healthy);
        assert_eq!(report.status, "failed");
        sink.running();
        registry.set_shutting_down(true);
        assert!(!registry.report().0);
    }
}
