//! Emulator-level faults: failures that need protocol knowledge, so the
//! generic harness `FaultPlan` (whole-response 429/5xx, latency, dropped
//! connections) cannot express them.
//!
//! - Bulk item faults: the next N items, or items whose document has a field
//!   equal to a value, answer with a per-item error (429
//!   `es_rejected_execution_exception`, 400 mapping error shaped for the
//!   emulated version, 503 `unavailable_shards_exception`, 429
//!   `circuit_breaking_exception`, or any status/type/reason) while the rest
//!   of the request succeeds. A faulted item is not written.
//! - Shard failures: the next N searches (and counts) report K failed shards
//!   in `_shards.failures`; their documents are missing from the hits, as
//!   with a real partial result. If every shard fails, the search fails.
//! - Malformed responses: the next N responses (optionally only under a path
//!   fragment such as `/_search`) are cut short, so the body is not valid JSON.
//!
//! All faults are consumed in the order they were added and can be listed
//! and cleared through the control handle or `/_testkit/faults`.

use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ErrorCause;
use super::mapping::source_values;

/// What a faulted bulk item answers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ItemFaultKind {
    /// 429 `es_rejected_execution_exception` (write queue full).
    Rejected,
    /// 400 `mapper_parsing_exception`, or `document_parsing_exception` on 8.8+.
    Mapping,
    /// 503 `unavailable_shards_exception`.
    Unavailable,
    /// 429 `circuit_breaking_exception`.
    CircuitBreaking,
    /// Any status, error type and reason.
    Custom { status: u16, error_type: String, reason: String },
}

/// Which bulk items a fault applies to.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemSelector {
    /// The next items, whatever they contain.
    Any,
    /// Items whose source has `field` (dotted path) equal to `value`.
    FieldEquals { field: String, value: Value },
}

impl ItemSelector {
    fn matches(&self, source: Option<&Value>) -> bool {
        match self {
            ItemSelector::Any => true,
            ItemSelector::FieldEquals { field, value } => {
                source.is_some_and(|source| source_values(source, field).contains(&value))
            }
        }
    }
}

#[derive(Debug, Clone)]
struct ItemFaultRule {
    selector: ItemSelector,
    kind: ItemFaultKind,
    /// `None`: applies to every matching item until cleared.
    remaining: Option<u64>,
}

#[derive(Debug, Clone)]
struct ShardFaultRule {
    remaining_searches: u64,
    failed_shards: u32,
    cause: ErrorCause,
}

#[derive(Debug, Clone)]
struct MalformedRule {
    path_contains: Option<String>,
    remaining: u64,
}

#[derive(Debug, Default)]
struct FaultState {
    items: Vec<ItemFaultRule>,
    shards: Vec<ShardFaultRule>,
    malformed: Vec<MalformedRule>,
}

/// The emulator's fault schedule; cheap to clone, shared with the server.
#[derive(Debug, Clone, Default)]
pub struct EsFaults(Arc<Mutex<FaultState>>);

/// The default shard failure cause.
pub fn default_shard_cause() -> ErrorCause {
    ErrorCause::new("node_not_connected_exception", "[testkit-node-2][127.0.0.1:9301] Node not connected")
}

impl EsFaults {
    fn state(&self) -> std::sync::MutexGuard<'_, FaultState> {
        // A panic while holding this lock can only come from a bug in this
        // file; the state is plain data, so keep serving.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next `count` bulk items answer 429 `es_rejected_execution_exception`.
    pub fn reject_next_items(&self, count: u64) {
        self.fail_next_items(count, ItemFaultKind::Rejected);
    }

    /// The next `count` bulk items fail with `kind`.
    pub fn fail_next_items(&self, count: u64, kind: ItemFaultKind) {
        if count > 0 {
            self.state().items.push(ItemFaultRule { selector: ItemSelector::Any, kind, remaining: Some(count) });
        }
    }

    /// Bulk items whose document has `field == value` fail with `kind`;
    /// `limit` caps how many (`None`: all until cleared).
    pub fn fail_items_where(&self, field: &str, value: Value, kind: ItemFaultKind, limit: Option<u64>) {
        let selector = ItemSelector::FieldEquals { field: field.to_string(), value };
        self.state().items.push(ItemFaultRule { selector, kind, remaining: limit });
    }

    /// The next `searches` searches or counts report `failed_shards` failed
    /// shards with `cause` (default: a node disconnect).
    pub fn fail_shards(&self, searches: u64, failed_shards: u32, cause: Option<ErrorCause>) {
        if searches > 0 && failed_shards > 0 {
            let cause = cause.unwrap_or_else(default_shard_cause);
            self.state().shards.push(ShardFaultRule { remaining_searches: searches, failed_shards, cause });
        }
    }

    /// The next `count` responses (whose path contains `path_contains`, if
    /// given) have a
    /// truncated, invalid JSON body.
    pub fn malformed_responses(&self, path_contains: Option<&str>, count: u64) {
        if count > 0 {
            self.state()
                .malformed
                .push(MalformedRule { path_contains: path_contains.map(str::to_string), remaining: count });
        }
    }

    pub fn clear(&self) {
        let mut state = self.state();
        state.items.clear();
        state.shards.clear();
        state.malformed.clear();
    }

    /// What is still scheduled, as JSON for `/_testkit/faults`.
    pub fn describe(&self) -> Value {
        let state = self.state();
        let items: Vec<Value> = state
            .items
            .iter()
            .map(|rule| {
                let selector = match &rule.selector {
                    ItemSelector::Any => json!("next"),
                    ItemSelector::FieldEquals { field, value } => json!({"field": field, "equals": value}),
                };
                json!({"selector": selector, "fault": format!("{:?}", rule.kind), "remaining": rule.remaining})
            })
            .collect();
        let shards: Vec<Value> = state
            .shards
            .iter()
            .map(|rule| json!({"searches": rule.remaining_searches, "failed_shards": rule.failed_shards, "type": rule.cause.error_type}))
            .collect();
        let malformed: Vec<Value> = state
            .malformed
            .iter()
            .map(|rule| json!({"path_contains": rule.path_contains, "remaining": rule.remaining}))
            .collect();
        json!({"items": items, "shards": shards, "malformed_responses": malformed})
    }

    /// Consumes and returns the fault for one bulk item, if any applies.
    pub fn take_item_fault(&self, source: Option<&Value>) -> Option<ItemFaultKind> {
        let mut state = self.state();
        let position = state.items.iter().position(|rule| rule.selector.matches(source))?;
        let rule = &mut state.items[position];
        let kind = rule.kind.clone();
        if let Some(remaining) = &mut rule.remaining {
            *remaining -= 1;
            if *remaining == 0 {
                state.items.remove(position);
            }
        }
        Some(kind)
    }

    /// Consumes one search's shard failure, if scheduled.
    pub fn take_shard_fault(&self) -> Option<(u32, ErrorCause)> {
        let mut state = self.state();
        let rule = state.shards.first_mut()?;
        rule.remaining_searches -= 1;
        let fault = (rule.failed_shards, rule.cause.clone());
        if rule.remaining_searches == 0 {
            state.shards.remove(0);
        }
        Some(fault)
    }

    /// Consumes one malformed-response fault for `path`, if scheduled.
    pub fn take_malformed(&self, path: &str) -> bool {
        let mut state = self.state();
        let Some(position) = state
            .malformed
            .iter()
            .position(|rule| rule.path_contains.as_deref().is_none_or(|fragment| path.contains(fragment)))
        else {
            return false;
        };
        state.malformed[position].remaining -= 1;
        if state.malformed[position].remaining == 0 {
            state.malformed.remove(position);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_faults_are_consumed_in_order_and_by_predicate() {
        let faults = EsFaults::default();
        faults.fail_items_where("level", json!("ERROR"), ItemFaultKind::Mapping, None);
        faults.reject_next_items(1);
        let error_doc = json!({"level": "ERROR"});
        let info_doc = json!({"level": "INFO"});
        assert_eq!(faults.take_item_fault(Some(&info_doc)), Some(ItemFaultKind::Rejected));
        assert_eq!(faults.take_item_fault(Some(&info_doc)), None);
        assert_eq!(faults.take_item_fault(Some(&error_doc)), Some(ItemFaultKind::Mapping));
        assert_eq!(faults.take_item_fault(Some(&error_doc)), Some(ItemFaultKind::Mapping), "unlimited until cleared");
        faults.clear();
        assert_eq!(faults.take_item_fault(Some(&error_doc)), None);
    }

    #[test]
    fn shard_and_malformed_faults_count_down() {
        let faults = EsFaults::default();
        faults.fail_shards(2, 1, None);
        faults.malformed_responses(Some("/_search"), 1);
        assert!(faults.take_shard_fault().is_some());
        assert!(faults.take_shard_fault().is_some());
        assert!(faults.take_shard_fault().is_none());
        assert!(!faults.take_malformed("/_bulk"));
        assert!(faults.take_malformed("/logs/_search"));
        assert!(!faults.take_malformed("/_search"));
    }
}
