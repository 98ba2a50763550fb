//! The one place where rules meet the query language: a rule's `filter:`
//! list (and percentage_match's `match_bucket_filter`) compiled into a
//! predicate over events.
//!
//! `crate::query` (the ES DSL / query_string compiler) is developed on its
//! own branch. Until it is merged here, a rule's `filter:` is carried but
//! not evaluated: the rules transform must receive events that are already
//! filtered. Rules whose semantics cannot hold without evaluating a filter
//! (percentage_match) are refused at build time with that explanation.
//! Wiring the query module in changes only this file.

use serde_json::Value as Json;

use crate::event::LogEvent;

/// A compiled rule filter.
#[derive(Debug, Clone)]
pub(crate) struct EventFilter {}

/// Why a filter cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct FilterError {
    pub message: String,
}

impl EventFilter {
    /// Compiles the rule's `filter:` list (clauses ANDed).
    pub fn for_rule_filter(clauses: &[Json]) -> Result<EventFilter, FilterError> {
        if !clauses.is_empty() {
            tracing::debug!(clauses = clauses.len(), "rule filter carried unevaluated until the query module is wired in; route pre-filtered events to this rule");
        }
        Ok(EventFilter {})
    }

    /// Compiles a filter whose result decides a match (percentage_match's
    /// match bucket); refused while filters cannot be evaluated.
    pub fn for_match_decision(clauses: &[Json], key: &str) -> Result<EventFilter, FilterError> {
        Err(FilterError {
            message: format!(
                "\"{key}\" ({} clause(s)) needs filter evaluation, which this build of pipe does not have yet; use a frequency or metric_aggregation rule on pre-filtered events instead",
                clauses.len()
            ),
        })
    }

    /// Whether the event passes. Without the query module every event
    /// passes (the stream is filtered upstream).
    pub fn matches(&self, _event: &LogEvent) -> bool {
        true
    }
}
