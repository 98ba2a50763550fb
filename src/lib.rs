//! pipe: a stream-processing pipeline for log shipping and alerting.
//!
//! A TOML file describes a graph of sources, transforms and sinks. `config`
//! turns it into a validated graph, `topology` runs each component as tasks
//! joined by bounded channels, and acknowledgements flow back from sinks to
//! sources so checkpoints only move past delivered data. See ARCHITECTURE.md.

pub mod config;
pub mod elasticsearch;
pub mod event;
pub mod memory;
pub mod observability;
pub mod query;
pub mod retry;
pub mod rules;
pub mod runtime;
pub mod sinks;
pub mod sources;
pub mod template;
pub mod topology;
pub mod transforms;
