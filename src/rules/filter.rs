//! The one place where rules meet the query language: a rule's `filter:`
//! list and percentage_match's `match_bucket_filter`, compiled by
//! `crate::query` into a predicate over events.
//!
//! Both lists are ANDed clauses, as ElastAlert puts them in a `bool.must`.
//! Compilation happens once when the engine is built; a malformed filter is
//! a build error naming the rule and the key, never a per-event failure.
//! `keyword_fields` (a pipe rule option) marks fields that the original
//! Elasticsearch mapping indexed as `keyword` (exact, case-sensitive).

use serde_json::Value as Json;

use crate::event::LogEvent;
use crate::query::{Query, QueryOptions};

/// A compiled rule filter; an empty clause list passes every event.
#[derive(Debug, Clone)]
pub(crate) struct EventFilter {
    query: Option<Query>,
}

/// Why a filter cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct FilterError {
    pub message: String,
}

impl EventFilter {
    /// Compiles the clause list found under `key` (`filter` or
    /// `match_bucket_filter`).
    pub fn compile(clauses: &[Json], key: &str, keyword_fields: &[String]) -> Result<EventFilter, FilterError> {
        if clauses.is_empty() {
            return Ok(EventFilter { query: None });
        }
        let options = QueryOptions { keyword_fields: keyword_fields.to_vec() };
        let query = Query::from_filter_list(clauses, &options)
            .map_err(|error| FilterError { message: format!("\"{key}\" does not compile: {error}") })?;
        Ok(EventFilter { query: Some(query) })
    }

    /// Whether the event passes.
    pub fn matches(&self, event: &LogEvent) -> bool {
        self.query.as_ref().is_none_or(|query| query.matches(event))
    }
}
